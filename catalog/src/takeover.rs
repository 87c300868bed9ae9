//! A new lease owner adopts the binlog rows of the source's previous owner.
//!
//! When a node takes a source over (`binlog-server` `fleet::capture`), the catalog holds
//! what the previous owner recorded: closed files (REPORTED, SUCC, FAIL), the file it
//! was writing (ACTIVE, with the size it last published) and the chunks it shipped. The
//! new owner resumes from what the archive store holds, which may end before what the
//! rows say (the old owner's last bytes were on its own disk only). [`Catalog::adopt_tail`]
//! makes the rows say what the new owner resumes from, in one transaction fenced by its
//! epoch: the file it resumes becomes ACTIVE at the length it rebuilt, closed files that
//! nothing durable holds whole become FAIL (pulled again from the primary), and the rows
//! of files after it, which nothing durable backs, are dropped (the primary sends those
//! binlogs again). Their chunk objects stay in the store until the file's retirement
//! deletes its chunk prefix.

use crate::{query_err, size_to_db, unix_now, Catalog, CatalogError};

impl Catalog {
    /// Under `epoch` (the caller's tenure of `source`): makes `active` = (file, length in
    /// bytes) the ACTIVE file at that length, forgetting its chunk rows past the length;
    /// marks every file in `lost` FAIL (closed files that neither the store nor the new
    /// owner holds whole: the checker pulls them again from the primary while it has
    /// them); and deletes the file and chunk rows of every file in `drop`. All or
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Fenced`] when `epoch` no longer holds the source's lease (nothing
    /// changed: the caller must not capture); [`CatalogError::Query`] otherwise (retry).
    pub async fn adopt_tail(
        &self,
        source: &str,
        epoch: i64,
        active: Option<(&str, u64)>,
        lost: &[String],
        drop: &[String],
    ) -> Result<(), CatalogError> {
        const OP: &str = "adopt_tail";
        let mut tx = self.pool().begin().await.map_err(query_err(OP))?;
        // The fence is the transaction's first statement and a write: it locks the lease
        // row until the commit (PostgreSQL), and it takes SQLite's write lock at once,
        // so that no renewal can slip in between and void the transaction's snapshot.
        let fenced = sqlx::query(&crate::leases::fence_update_sql(self.backend))
            .bind(source)
            .bind(epoch)
            .execute(&mut *tx)
            .await
            .map_err(query_err(OP))?;
        if fenced.rows_affected() != 1 {
            return Err(CatalogError::Fenced {
                source_name: source.to_string(),
                epoch,
                op: OP,
            });
        }
        if let Some((file, len)) = active {
            let len = size_to_db(len)?;
            sqlx::query(
                "UPDATE binlog_files SET state = 'ACTIVE', size = $1, sha256 = NULL, \
                 reported_at = NULL, checked_at = NULL, state_changed_at = $2, \
                 info = 'adopted by a new lease owner' WHERE source = $3 AND name = $4",
            )
            .bind(len)
            .bind(unix_now())
            .bind(source)
            .bind(file)
            .execute(&mut *tx)
            .await
            .map_err(query_err(OP))?;
            sqlx::query(
                "DELETE FROM archive_objects WHERE source = $1 AND file = $2 \
                 AND kind = 'chunk' AND end_offset > $3",
            )
            .bind(source)
            .bind(file)
            .bind(len)
            .execute(&mut *tx)
            .await
            .map_err(query_err(OP))?;
        }
        mark_lost(&mut tx, source, lost).await?;
        drop_rows(&mut tx, source, drop).await?;
        tx.commit().await.map_err(query_err(OP))?;
        Ok(())
    }
}

/// Marks `lost` files of `source` FAIL, inside `tx` (see [`Catalog::adopt_tail`]).
async fn mark_lost(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    source: &str,
    lost: &[String],
) -> Result<(), CatalogError> {
    for file in lost {
        sqlx::query(
            "UPDATE binlog_files SET state = 'FAIL', state_changed_at = $1, \
             info = 'not held whole by the archive store or the new lease owner after \
             a takeover: pulled again from the primary' \
             WHERE source = $2 AND name = $3 AND state <> 'FAIL'",
        )
        .bind(unix_now())
        .bind(source)
        .bind(file)
        .execute(&mut **tx)
        .await
        .map_err(query_err("adopt_tail"))?;
    }
    Ok(())
}

/// Deletes the file and chunk rows of the `drop` files of `source`, inside `tx`.
async fn drop_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    source: &str,
    drop: &[String],
) -> Result<(), CatalogError> {
    for file in drop {
        for sql in [
            "DELETE FROM archive_objects WHERE source = $1 AND file = $2 AND kind = 'chunk'",
            "DELETE FROM binlog_files WHERE source = $1 AND name = $2",
        ] {
            sqlx::query(sql)
                .bind(source)
                .bind(file)
                .execute(&mut **tx)
                .await
                .map_err(query_err("adopt_tail"))?;
        }
    }
    Ok(())
}
