//! Binlog objects in the archive store: table `archive_objects` (migration
//! `0005_archive_objects.sql`). A row is written after its object is stored, so a row
//! always points at data; a crash between the upload and the row leaves an object
//! without a row, which the shipper finds again (the key exists) and checks before it
//! records it.

use serde::Serialize;
use sqlx::FromRow;

use crate::{query_err, size_to_db, unix_now, Catalog, CatalogError};

/// What an archive object holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    /// A closed, checked binlog file, whole.
    File,
    /// A range of a file's durable prefix, shipped while the file was open.
    Chunk,
}

impl ArchiveKind {
    /// The stored form: `"file"` or `"chunk"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::File => "file",
            ArchiveKind::Chunk => "chunk",
        }
    }
}

/// What [`Catalog::archive_fingerprint`] returns: opaque, compared for equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArchiveFingerprint(i64);

/// One archive object (see the migration for the columns' meaning). Offsets and sizes
/// are bytes; times unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchiveObjectRow {
    /// Source name.
    pub source: String,
    /// Binlog file name.
    pub file: String,
    /// File or chunk.
    pub kind: ArchiveKind,
    /// First byte of the file the object holds.
    pub start_offset: u64,
    /// One past its last byte.
    pub end_offset: u64,
    /// Object key in the archive store.
    pub object_key: String,
    /// SHA-256 (hex) of the plaintext bytes `[start_offset, end_offset)`.
    pub sha256: String,
    /// Size of the object as stored.
    pub stored_bytes: u64,
    /// SHA-256 (hex) of the object as stored.
    pub stored_sha256: String,
    /// objstore codec descriptor.
    pub codec: String,
    /// Encryption key id, when encrypted.
    pub key_id: Option<String>,
    /// Writer's fencing epoch.
    pub epoch: i64,
    /// When the row was written.
    pub created_at: i64,
    /// When the object was removed from the store (chunks after their file object).
    pub deleted_at: Option<i64>,
}

#[derive(FromRow)]
struct Raw {
    source: String,
    file: String,
    kind: String,
    start_offset: i64,
    end_offset: i64,
    object_key: String,
    sha256: String,
    stored_bytes: i64,
    stored_sha256: String,
    codec: String,
    key_id: Option<String>,
    epoch: i64,
    created_at: i64,
    deleted_at: Option<i64>,
}

impl TryFrom<Raw> for ArchiveObjectRow {
    type Error = CatalogError;
    fn try_from(r: Raw) -> Result<Self, CatalogError> {
        let key = format!("{}/{}/{}/{}", r.source, r.file, r.kind, r.end_offset);
        let corrupt = |column: &'static str, detail: String| CatalogError::Corrupt {
            table: "archive_objects",
            key: key.clone(),
            column,
            detail,
        };
        let kind = match r.kind.as_str() {
            "file" => ArchiveKind::File,
            "chunk" => ArchiveKind::Chunk,
            other => return Err(corrupt("kind", format!("{other:?} is not file or chunk"))),
        };
        let u = |v: i64, column: &'static str| {
            u64::try_from(v).map_err(|_| corrupt(column, format!("{v} is negative")))
        };
        Ok(ArchiveObjectRow {
            start_offset: u(r.start_offset, "start_offset")?,
            end_offset: u(r.end_offset, "end_offset")?,
            stored_bytes: u(r.stored_bytes, "stored_bytes")?,
            source: r.source,
            file: r.file,
            kind,
            object_key: r.object_key,
            sha256: r.sha256,
            stored_sha256: r.stored_sha256,
            codec: r.codec,
            key_id: r.key_id,
            epoch: r.epoch,
            created_at: r.created_at,
            deleted_at: r.deleted_at,
        })
    }
}

/// The end of the contiguous coverage from offset 0 of byte ranges `[start, end)`, in
/// any order (a hole stops it): how much of a file's prefix its chunks hold.
pub fn contiguous_end(ranges: impl IntoIterator<Item = (u64, u64)>) -> u64 {
    let mut v: Vec<(u64, u64)> = ranges.into_iter().collect();
    v.sort_unstable();
    let mut end = 0;
    for (s, e) in v {
        if s > end {
            break;
        }
        end = end.max(e);
    }
    end
}

/// One file's objects for [`Catalog::archive_upload_totals`]: the whole object's end,
/// and the chunks' ranges.
type FileObjects = (Option<u64>, Vec<(u64, u64)>);

const COLUMNS: &str = "source, file, kind, start_offset, end_offset, object_key, sha256, \
    stored_bytes, stored_sha256, codec, key_id, epoch, created_at, deleted_at";

impl Catalog {
    /// Records an object that is in the store. Recording the same (source, file, kind,
    /// end_offset) again is a no-op (a retry after a crash), whatever the other fields,
    /// except over a whole-file row marked deleted (by a scrub's repair, before it
    /// removed the damaged object), which the new row replaces.
    ///
    /// A row of epoch 1 or more is **fenced**: it is recorded only while that epoch is
    /// the source's lease, in the same statement ([`leases`](crate::leases)), so an old
    /// owner woken after a takeover can never make its object the canonical one. Epoch 0
    /// (a single node, no leases) is not fenced.
    ///
    /// # Errors
    ///
    /// [`CatalogError::InvalidArgument`] for offsets or sizes past i64;
    /// [`CatalogError::Fenced`] when the row's epoch no longer holds the lease (nothing
    /// was recorded: stop writing for the source); [`CatalogError::Query`].
    pub async fn record_archive_object(&self, o: &ArchiveObjectRow) -> Result<(), CatalogError> {
        self.insert_archive_object(o, o.epoch > 0).await
    }

    /// Records an object found in the store by a rebuild (no writer, so no lease):
    /// [`record_archive_object`](Catalog::record_archive_object) without the fence,
    /// whatever the row's epoch. Only for rows read back from the store's own manifests
    /// and chunk names.
    ///
    /// # Errors
    ///
    /// [`CatalogError::InvalidArgument`] for offsets or sizes past i64;
    /// [`CatalogError::Query`].
    pub async fn import_archive_object(&self, o: &ArchiveObjectRow) -> Result<(), CatalogError> {
        self.insert_archive_object(o, false).await
    }

    async fn insert_archive_object(
        &self,
        o: &ArchiveObjectRow,
        fenced: bool,
    ) -> Result<(), CatalogError> {
        const OP: &str = "record_archive_object";
        let values = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL";
        // A live row for the same (source, file, kind, end offset) stays as it is; a
        // whole-file row marked deleted (a damaged object being replaced) is replaced.
        let conflict = "ON CONFLICT (source, file, kind, end_offset) DO UPDATE SET \
             start_offset = excluded.start_offset, object_key = excluded.object_key, \
             sha256 = excluded.sha256, stored_bytes = excluded.stored_bytes, \
             stored_sha256 = excluded.stored_sha256, codec = excluded.codec, \
             key_id = excluded.key_id, epoch = excluded.epoch, \
             created_at = excluded.created_at, deleted_at = NULL \
             WHERE archive_objects.deleted_at IS NOT NULL AND archive_objects.kind = 'file'";
        let sql = if fenced {
            format!(
                "INSERT INTO archive_objects ({COLUMNS}) SELECT {values} WHERE {} {conflict}",
                crate::leases::fence_sql(self.backend, "$1", "$12")
            )
        } else {
            format!("INSERT INTO archive_objects ({COLUMNS}) VALUES ({values}) {conflict}")
        };
        let r = sqlx::query(&sql)
            .bind(&o.source)
            .bind(&o.file)
            .bind(o.kind.as_str())
            .bind(size_to_db(o.start_offset)?)
            .bind(size_to_db(o.end_offset)?)
            .bind(&o.object_key)
            .bind(&o.sha256)
            .bind(size_to_db(o.stored_bytes)?)
            .bind(&o.stored_sha256)
            .bind(&o.codec)
            .bind(&o.key_id)
            .bind(o.epoch)
            .bind(unix_now())
            .execute(self.pool())
            .await
            .map_err(query_err(OP))?;
        if r.rows_affected() == 0 && fenced && !self.tenure_live(&o.source, o.epoch).await? {
            tracing::warn!(
                source = %o.source,
                file = %o.file,
                epoch = o.epoch,
                "archive object not recorded: this writer's lease is over"
            );
            return Err(CatalogError::Fenced {
                source_name: o.source.clone(),
                epoch: o.epoch,
                op: OP,
            });
        }
        Ok(())
    }

    /// The archive objects of `source` that are still in the store (not deleted),
    /// ordered by file order (`seq` of the file name), kind and end offset.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; [`CatalogError::Corrupt`] for a row this build cannot read.
    pub async fn list_archive_objects(
        &self,
        source: &str,
    ) -> Result<Vec<ArchiveObjectRow>, CatalogError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM archive_objects WHERE source = $1 AND deleted_at IS NULL \
             ORDER BY file, kind, end_offset"
        );
        let raw = sqlx::query_as::<_, Raw>(&sql)
            .bind(source)
            .fetch_all(self.pool())
            .await
            .map_err(query_err("list_archive_objects"))?;
        let mut rows = raw
            .into_iter()
            .map(ArchiveObjectRow::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort_by(|a, b| {
            (
                binlog::binlog_seq(&a.file),
                &a.file,
                a.kind.as_str(),
                a.end_offset,
            )
                .cmp(&(
                    binlog::binlog_seq(&b.file),
                    &b.file,
                    b.kind.as_str(),
                    b.end_offset,
                ))
        });
        Ok(rows)
    }

    /// A fingerprint of `source`'s file rows and archive object rows: its change
    /// counter, which the database itself moves (triggers, migration 0008) at every row
    /// added or removed and every change of a column a shipper acts on (a file's state,
    /// size, SHA-256, state or last event time; any change of an object row), whoever
    /// wrote it. Equal fingerprints mean nothing changed. One lookup by key, whatever
    /// the archive's size, so a shipper with nothing to do skips its listings
    /// (`archive::ship`).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub async fn archive_fingerprint(
        &self,
        source: &str,
    ) -> Result<ArchiveFingerprint, CatalogError> {
        let n: Option<(i64,)> = sqlx::query_as("SELECT n FROM source_changes WHERE source = $1")
            .bind(source)
            .fetch_optional(self.pool())
            .await
            .map_err(query_err("archive_fingerprint"))?;
        Ok(ArchiveFingerprint(n.map_or(0, |(n,)| n)))
    }

    /// The live whole-file object of `file` of `source` (`None`: the store does not hold
    /// it whole), by one lookup on the table's key, whatever the archive's size: a
    /// reader takes the object's epoch from it instead of listing the store.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; [`CatalogError::Corrupt`] for a row this build cannot read.
    pub async fn file_object(
        &self,
        source: &str,
        file: &str,
    ) -> Result<Option<ArchiveObjectRow>, CatalogError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM archive_objects WHERE source = $1 AND file = $2 \
             AND kind = 'file' AND deleted_at IS NULL ORDER BY end_offset DESC LIMIT 1"
        );
        sqlx::query_as::<_, Raw>(&sql)
            .bind(source)
            .bind(file)
            .fetch_optional(self.pool())
            .await
            .map_err(query_err("file_object"))?
            .map(ArchiveObjectRow::try_from)
            .transpose()
    }

    /// Upload totals of `source` over its whole history (deleted chunks included):
    /// `(plaintext bytes uploaded, binlog bytes the store holds or held)`, the second
    /// counting each file once (its whole object's size, or its chunks' contiguous
    /// coverage). Their ratio is the upload amplification.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub async fn archive_upload_totals(&self, source: &str) -> Result<(u64, u64), CatalogError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT file, kind, start_offset, end_offset FROM archive_objects WHERE source = $1",
        )
        .bind(source)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("archive_upload_totals"))?;
        let mut uploaded = 0u64;
        let mut per_file: std::collections::HashMap<String, FileObjects> = Default::default();
        for (file, kind, start, end) in rows {
            let (s, e) = (start.max(0) as u64, end.max(0) as u64);
            uploaded += e.saturating_sub(s);
            let entry = per_file.entry(file).or_default();
            if kind == "file" {
                entry.0 = Some(e);
            } else {
                entry.1.push((s, e));
            }
        }
        let held = per_file
            .into_values()
            .map(|(whole, chunks)| whole.unwrap_or_else(|| contiguous_end(chunks)))
            .sum();
        Ok((uploaded, held))
    }

    /// Forgets `file` of `source` entirely (archive retention, after its bytes were
    /// deleted everywhere): its `binlog_files` row and its `archive_objects` rows, in
    /// one transaction. Forgetting an unknown file is a no-op. On a handle from
    /// [`Catalog::fenced`] the row's delete is fenced by its tenure.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; [`CatalogError::Fenced`] when the handle's tenure is
    /// over (nothing forgotten).
    pub async fn forget_file(&self, source: &str, file: &str) -> Result<(), CatalogError> {
        const OP: &str = "forget_file";
        let mut tx = self.pool().begin().await.map_err(query_err(OP))?;
        let gone = sqlx::query(&format!(
            "DELETE FROM binlog_files WHERE source = $1 AND name = $2{}",
            self.fence_clause(source, "$1")
        ))
        .bind(source)
        .bind(file)
        .execute(&mut *tx)
        .await
        .map_err(query_err(OP))?;
        if gone.rows_affected() == 0 {
            // No row (forgotten before), or a fenced handle's tenure is over.
            drop(tx);
            self.refuse_if_fenced(source, OP).await?;
            sqlx::query("DELETE FROM archive_objects WHERE source = $1 AND file = $2")
                .bind(source)
                .bind(file)
                .execute(self.pool())
                .await
                .map_err(query_err(OP))?;
            return Ok(());
        }
        sqlx::query("DELETE FROM archive_objects WHERE source = $1 AND file = $2")
            .bind(source)
            .bind(file)
            .execute(&mut *tx)
            .await
            .map_err(query_err(OP))?;
        tx.commit().await.map_err(query_err(OP))?;
        Ok(())
    }

    /// Records that every object of `file` of `source` expired (archive retention marks
    /// them deleted before it deletes them from the store), and returns how many rows
    /// changed. On a handle from [`Catalog::fenced`] the mark is fenced by its tenure, so
    /// a stale owner records nothing and must delete nothing.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; [`CatalogError::Fenced`] when the handle's tenure is
    /// over (nothing marked: delete nothing).
    pub async fn mark_file_expired(&self, source: &str, file: &str) -> Result<u64, CatalogError> {
        self.mark_rows_deleted(source, file, "", "mark_file_expired")
            .await
    }

    /// Forgets the whole-file object row of `file` (a damaged object being replaced:
    /// the shipper then ships the file again). The file's own row and its chunk rows
    /// stay. Forgetting a missing row is a no-op.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; [`CatalogError::Fenced`] on a fenced handle whose
    /// tenure is over (nothing forgotten).
    pub async fn forget_file_object(&self, source: &str, file: &str) -> Result<(), CatalogError> {
        const OP: &str = "forget_file_object";
        let r = sqlx::query(&format!(
            "DELETE FROM archive_objects WHERE source = $1 AND file = $2 AND kind = 'file'{}",
            self.fence_clause(source, "$1")
        ))
        .bind(source)
        .bind(file)
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        if r.rows_affected() == 0 {
            self.refuse_if_fenced(source, OP).await?;
        }
        Ok(())
    }

    /// Marks the whole-file object of `file` deleted before a scrub's repair removes
    /// it from the store (the record goes before the delete). Returns how many rows
    /// changed.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; [`CatalogError::Fenced`] on a fenced handle whose
    /// tenure is over (nothing marked: delete nothing).
    pub async fn mark_file_object_deleted(
        &self,
        source: &str,
        file: &str,
    ) -> Result<u64, CatalogError> {
        self.mark_rows_deleted(
            source,
            file,
            " AND kind = 'file'",
            "mark_file_object_deleted",
        )
        .await
    }

    /// Marks the chunk objects of `file` deleted, once the file's whole object is
    /// recorded and before they are removed from the store. Returns how many rows
    /// changed.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; [`CatalogError::Fenced`] on a handle from
    /// [`Catalog::fenced`] whose tenure is over (nothing marked: delete nothing).
    pub async fn mark_chunks_deleted(&self, source: &str, file: &str) -> Result<u64, CatalogError> {
        self.mark_rows_deleted(source, file, " AND kind = 'chunk'", "mark_chunks_deleted")
            .await
    }

    /// The live object rows of `source` whose objects are locked (S3 Object Lock) until
    /// before `due` (unix seconds): the date a lock extension recorded
    /// ([`Catalog::set_archive_lock_until`]), or else `created_at + default_secs` (the
    /// bucket's default rule). At most `limit` rows, oldest lock first; one query (it
    /// reads the source's live rows).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; [`CatalogError::Corrupt`] for a row this build cannot read.
    pub async fn archive_locks_due(
        &self,
        source: &str,
        due: i64,
        default_secs: i64,
        limit: u32,
    ) -> Result<Vec<ArchiveObjectRow>, CatalogError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM archive_objects WHERE source = $1 AND deleted_at IS NULL \
             AND COALESCE(lock_until, created_at + $2) < $3 \
             ORDER BY COALESCE(lock_until, created_at + $2) LIMIT $4"
        );
        let raw = sqlx::query_as::<_, Raw>(&sql)
            .bind(source)
            .bind(default_secs)
            .bind(due)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(query_err("archive_locks_due"))?;
        raw.into_iter().map(ArchiveObjectRow::try_from).collect()
    }

    /// Records that the objects of row (`source`, `file`, `kind`, `end_offset`) are
    /// locked until `until` (unix seconds), fenced on a fenced handle.
    ///
    /// # Errors
    ///
    /// [`CatalogError::InvalidArgument`] for an offset past i64; [`CatalogError::Fenced`]
    /// on a handle whose tenure is over; [`CatalogError::Query`].
    pub async fn set_archive_lock_until(
        &self,
        source: &str,
        file: &str,
        kind: ArchiveKind,
        end_offset: u64,
        until: i64,
    ) -> Result<(), CatalogError> {
        const OP: &str = "set_archive_lock_until";
        let end = size_to_db(end_offset)?;
        let r = sqlx::query(&format!(
            "UPDATE archive_objects SET lock_until = $1 \
             WHERE source = $2 AND file = $3 AND kind = $4 AND end_offset = $5{}",
            self.fence_clause(source, "$2")
        ))
        .bind(until)
        .bind(source)
        .bind(file)
        .bind(kind.as_str())
        .bind(end)
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        if r.rows_affected() == 0 {
            self.refuse_if_fenced(source, OP).await?;
        }
        Ok(())
    }

    /// Marks the live object rows of `file` that `kind_clause` selects (`""`: all)
    /// deleted now, fenced on a fenced handle; how many changed.
    async fn mark_rows_deleted(
        &self,
        source: &str,
        file: &str,
        kind_clause: &str,
        op: &'static str,
    ) -> Result<u64, CatalogError> {
        let r = sqlx::query(&format!(
            "UPDATE archive_objects SET deleted_at = $1 \
             WHERE source = $2 AND file = $3{kind_clause} AND deleted_at IS NULL{}",
            self.fence_clause(source, "$2")
        ))
        .bind(unix_now())
        .bind(source)
        .bind(file)
        .execute(self.pool())
        .await
        .map_err(query_err(op))?;
        if r.rows_affected() == 0 {
            self.refuse_if_fenced(source, op).await?;
        }
        Ok(r.rows_affected())
    }
}
