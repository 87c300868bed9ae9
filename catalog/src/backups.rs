//! Base backups in the catalog: tables `base_backups` and `base_backup_objects`
//! (migration `0002_base_backups.sql`).
//!
//! # States (seed 003's full_backup_metadata, extended)
//!
//! ```text
//!   begin_backup --> DOING --set_uploading--> UPLOADING --complete_backup--> COMPLETED
//!                      \                          \--fail_backup--> ERROR
//!                       \--fail_backup--> ERROR
//!                       \--skip_backup--> SKIPPED          (replica-only, target is a primary)
//!   COMPLETED --expire_backup--> EXPIRED --mark_deleted--> DELETED
//! ```
//!
//! `complete_backup` inserts the object rows and moves the base to COMPLETED in one
//! transaction, after every object has been uploaded: a crash before it leaves the base in
//! DOING/UPLOADING (turned to ERROR by [`Catalog::fail_interrupted_backups`] at the next
//! start) and unreferenced objects, never a COMPLETED base with missing parts. ERROR rows
//! stay as the record of the failure; retention removes their leftover objects.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::{query_err, size_to_db, unix_now, Catalog, CatalogError};
use objstore::store::StoredObject;

/// State of a base backup; stored as the upper-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BackupState {
    /// The tool is running.
    Doing,
    /// The tool has finished; the last objects are being uploaded.
    Uploading,
    /// Every object is stored and listed; usable for restore.
    Completed,
    /// Failed; `info` holds the reason (the tool's stderr tail).
    Error,
    /// Not taken on purpose (replica-only and the target was a primary); `info` says why.
    Skipped,
    /// Retention decided to drop it; objects are being deleted.
    Expired,
    /// Its objects are gone.
    Deleted,
}

impl BackupState {
    /// Every state.
    pub const ALL: [BackupState; 7] = [
        BackupState::Doing,
        BackupState::Uploading,
        BackupState::Completed,
        BackupState::Error,
        BackupState::Skipped,
        BackupState::Expired,
        BackupState::Deleted,
    ];

    /// The stored form, e.g. `"COMPLETED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupState::Doing => "DOING",
            BackupState::Uploading => "UPLOADING",
            BackupState::Completed => "COMPLETED",
            BackupState::Error => "ERROR",
            BackupState::Skipped => "SKIPPED",
            BackupState::Expired => "EXPIRED",
            BackupState::Deleted => "DELETED",
        }
    }
}

impl fmt::Display for BackupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackupState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackupState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown base backup state {s:?}"))
    }
}

/// What is known when a base backup starts ([`Catalog::begin_backup`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBackup {
    /// Unique id, also the object-key prefix.
    pub id: String,
    /// Source name.
    pub source: String,
    /// `"physical"`, `"logical"` or `"clone"`.
    pub method: String,
    /// `"mariabackup"`, `"xtrabackup"`, `"mydumper"`, `"mysqldump"` or `"clone"`.
    pub tool: String,
    /// Incremental on top of `parent_id`.
    pub incremental: bool,
    /// The base this incremental applies on top of.
    pub parent_id: Option<String>,
    /// Server version (`SELECT VERSION()`).
    pub server_version: Option<String>,
    /// Tool version (its `--version` line).
    pub tool_version: Option<String>,
    /// The command line, passwords redacted (none are passed on command lines anyway).
    pub command: Option<String>,
    /// Databases included (logical), comma-separated; `None` = the whole instance.
    pub db_list: Option<String>,
    /// The object store URL (no credentials).
    pub store_url: Option<String>,
    /// InnoDB LSN an incremental starts from.
    pub from_lsn: Option<u64>,
}

/// The consistency point and results recorded by [`Catalog::complete_backup`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupResult {
    /// Binlog file at the consistency point.
    pub binlog_file: Option<String>,
    /// Byte position in that file.
    pub binlog_pos: Option<u64>,
    /// GTID position at the consistency point (`gtid_binlog_pos` form).
    pub gtid_pos: Option<String>,
    /// When the consistency point was taken, unix seconds.
    pub consistent_at: Option<i64>,
    /// InnoDB LSN at the end (physical), the next incremental's `from_lsn`.
    pub to_lsn: Option<u64>,
    /// The objects, all uploaded.
    pub objects: Vec<StoredObject>,
}

/// One row of `base_backups`, with its objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupRow {
    /// Unique id.
    pub id: String,
    /// Source name.
    pub source: String,
    /// `physical`, `logical` or `clone`.
    pub method: String,
    /// Tool that made it.
    pub tool: String,
    /// Incremental on top of `parent_id`.
    pub incremental: bool,
    /// Parent base of an incremental.
    pub parent_id: Option<String>,
    /// State.
    pub state: BackupState,
    /// Failure reason / skip reason / notes.
    pub info: Option<String>,
    /// Start, unix seconds.
    pub started_at: i64,
    /// End (COMPLETED, ERROR or SKIPPED), unix seconds.
    pub finished_at: Option<i64>,
    /// Sum of the objects' sizes, bytes (bytes done so far while running).
    pub bytes: u64,
    /// Binlog file at the consistency point.
    pub binlog_file: Option<String>,
    /// Position in that file, bytes.
    pub binlog_pos: Option<u64>,
    /// GTID position at the consistency point.
    pub gtid_pos: Option<String>,
    /// Time of the consistency point, unix seconds.
    pub consistent_at: Option<i64>,
    /// InnoDB LSN an incremental starts from.
    pub from_lsn: Option<u64>,
    /// InnoDB LSN at the end.
    pub to_lsn: Option<u64>,
    /// Server version.
    pub server_version: Option<String>,
    /// Tool version.
    pub tool_version: Option<String>,
    /// Command line (redacted).
    pub command: Option<String>,
    /// Databases included, comma-separated; `None` = all.
    pub db_list: Option<String>,
    /// Object store URL.
    pub store_url: Option<String>,
    /// When `state` last changed, unix seconds.
    pub state_changed_at: i64,
    /// Objects (empty unless COMPLETED, EXPIRED or DELETED).
    pub objects: Vec<StoredObject>,
}

#[derive(FromRow)]
struct BackupRaw {
    id: String,
    source: String,
    method: String,
    tool: String,
    incremental: i64,
    parent_id: Option<String>,
    state: String,
    info: Option<String>,
    started_at: i64,
    finished_at: Option<i64>,
    bytes: i64,
    binlog_file: Option<String>,
    binlog_pos: Option<i64>,
    gtid_pos: Option<String>,
    consistent_at: Option<i64>,
    from_lsn: Option<i64>,
    to_lsn: Option<i64>,
    server_version: Option<String>,
    tool_version: Option<String>,
    command: Option<String>,
    db_list: Option<String>,
    store_url: Option<String>,
    state_changed_at: i64,
}

#[derive(FromRow)]
struct ObjectRaw {
    backup_id: String,
    object_key: String,
    bytes: i64,
    sha256: String,
}

const COLUMNS: &str = "id, source, method, tool, incremental, parent_id, state, info, \
    started_at, finished_at, bytes, binlog_file, binlog_pos, gtid_pos, consistent_at, \
    from_lsn, to_lsn, server_version, tool_version, command, db_list, store_url, \
    state_changed_at";

fn corrupt(id: &str, column: &'static str, detail: String) -> CatalogError {
    CatalogError::Corrupt {
        table: "base_backups",
        key: id.to_owned(),
        column,
        detail,
    }
}

fn unsigned(id: &str, column: &'static str, v: Option<i64>) -> Result<Option<u64>, CatalogError> {
    v.map(|x| u64::try_from(x).map_err(|_| corrupt(id, column, format!("{x} is negative"))))
        .transpose()
}

fn opt_to_db(field: &'static str, v: Option<u64>) -> Result<Option<i64>, CatalogError> {
    v.map(|x| {
        i64::try_from(x).map_err(|_| CatalogError::InvalidArgument {
            field,
            value: x.to_string(),
            reason: "above i64::MAX",
        })
    })
    .transpose()
}

impl BackupRaw {
    fn into_row(self, objects: Vec<StoredObject>) -> Result<BackupRow, CatalogError> {
        let id = self.id;
        let state = self
            .state
            .parse()
            .map_err(|e: String| corrupt(&id, "state", e))?;
        let bytes = u64::try_from(self.bytes)
            .map_err(|_| corrupt(&id, "bytes", format!("{} is negative", self.bytes)))?;
        Ok(BackupRow {
            binlog_pos: unsigned(&id, "binlog_pos", self.binlog_pos)?,
            from_lsn: unsigned(&id, "from_lsn", self.from_lsn)?,
            to_lsn: unsigned(&id, "to_lsn", self.to_lsn)?,
            source: self.source,
            method: self.method,
            tool: self.tool,
            incremental: self.incremental != 0,
            parent_id: self.parent_id,
            state,
            info: self.info,
            started_at: self.started_at,
            finished_at: self.finished_at,
            bytes,
            binlog_file: self.binlog_file,
            gtid_pos: self.gtid_pos,
            consistent_at: self.consistent_at,
            server_version: self.server_version,
            tool_version: self.tool_version,
            command: self.command,
            db_list: self.db_list,
            store_url: self.store_url,
            state_changed_at: self.state_changed_at,
            objects,
            id,
        })
    }
}

impl Catalog {
    /// Inserts a base in DOING with `started_at` = now.
    ///
    /// # Errors
    ///
    /// [`CatalogError::InvalidArgument`] for an id that already exists or an LSN above
    /// `i64::MAX`; [`CatalogError::Query`] if the statement fails.
    pub async fn begin_backup(&self, b: &NewBackup) -> Result<(), CatalogError> {
        const OP: &str = "begin_backup";
        let ts = unix_now();
        // INSERT ... SELECT, so that a fenced handle's insert carries its fence.
        let sql = format!(
            "INSERT INTO base_backups (id, source, method, tool, incremental, parent_id, state, \
             info, started_at, finished_at, bytes, binlog_file, binlog_pos, gtid_pos, \
             consistent_at, from_lsn, to_lsn, server_version, tool_version, command, db_list, \
             store_url, state_changed_at, node) \
             SELECT $1, $2, $3, $4, $5, $6, 'DOING', CAST(NULL AS TEXT), $7, CAST(NULL AS BIGINT), \
             CAST(0 AS BIGINT), CAST(NULL AS TEXT), CAST(NULL AS BIGINT), CAST(NULL AS TEXT), \
             CAST(NULL AS BIGINT), $8, CAST(NULL AS BIGINT), $9, $10, $11, $12, $13, $14, $15 \
             WHERE 1 = 1{}",
            self.fence_clause(&b.source, "$2")
        );
        let r = sqlx::query(&sql)
            .bind(&b.id)
            .bind(&b.source)
            .bind(&b.method)
            .bind(&b.tool)
            .bind(i64::from(b.incremental))
            .bind(b.parent_id.as_deref())
            .bind(ts)
            .bind(opt_to_db("from_lsn", b.from_lsn)?)
            .bind(b.server_version.as_deref())
            .bind(b.tool_version.as_deref())
            .bind(b.command.as_deref())
            .bind(b.db_list.as_deref())
            .bind(b.store_url.as_deref())
            .bind(ts)
            .bind(self.node())
            .execute(self.pool())
            .await;
        match r {
            Ok(r) if r.rows_affected() == 0 => {
                self.refuse_if_fenced(&b.source, OP).await?;
                Err(query_err(OP)(sqlx::Error::RowNotFound))
            }
            Ok(_) => Ok(()),
            Err(e) if crate::is_unique_violation(&e) => Err(CatalogError::InvalidArgument {
                field: "base backup id",
                value: b.id.clone(),
                reason: "already exists",
            }),
            Err(e) => Err(query_err(OP)(e)),
        }
    }

    /// Records bytes done so far on a DOING/UPLOADING base (progress; no state change).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn set_backup_progress(&self, id: &str, bytes: u64) -> Result<(), CatalogError> {
        const OP: &str = "set_backup_progress";
        let sql = format!(
            "UPDATE base_backups SET bytes = $1 WHERE id = $2 AND state IN ('DOING','UPLOADING'){}",
            self.base_fence()
        );
        let r = sqlx::query(&sql)
            .bind(size_to_db(bytes)?)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_err(OP))?;
        if r.rows_affected() == 0 {
            self.refuse_if_base_fenced(OP).await?;
        }
        Ok(())
    }

    /// The fence of a statement writing one `base_backups` row on a fenced handle (the
    /// row's source's lease, held under the handle's epoch), or `""`.
    fn base_fence(&self) -> String {
        match &self.fence {
            Some((_, epoch)) => format!(
                " AND {}",
                crate::leases::fence_sql(self.backend, "base_backups.source", &epoch.to_string())
            ),
            None => String::new(),
        }
    }

    /// After a fenced base write changed nothing: [`CatalogError::Fenced`] when the
    /// handle's tenure is over, `Ok` otherwise.
    async fn refuse_if_base_fenced(&self, op: &'static str) -> Result<(), CatalogError> {
        match &self.fence {
            Some((source, _)) => {
                let source = source.clone();
                self.refuse_if_fenced(&source, op).await
            }
            None => Ok(()),
        }
    }

    /// Fills in what became known once the server was reached (tool, server version, tool
    /// version, command line) without changing the state; `None` keeps the stored value.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn set_backup_details(
        &self,
        id: &str,
        tool: Option<&str>,
        server_version: Option<&str>,
        tool_version: Option<&str>,
        command: Option<&str>,
    ) -> Result<(), CatalogError> {
        const OP: &str = "set_backup_details";
        let sql = format!(
            "UPDATE base_backups SET tool = COALESCE($1, tool), \
             server_version = COALESCE($2, server_version), \
             tool_version = COALESCE($3, tool_version), command = COALESCE($4, command) \
             WHERE id = $5{}",
            self.base_fence()
        );
        let r = sqlx::query(&sql)
            .bind(tool)
            .bind(server_version)
            .bind(tool_version)
            .bind(command)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_err(OP))?;
        if r.rows_affected() == 0 {
            self.refuse_if_base_fenced(OP).await?;
        }
        Ok(())
    }

    async fn transition(
        &self,
        op: &'static str,
        id: &str,
        from: &[BackupState],
        to: BackupState,
        info: Option<&str>,
        finished: bool,
    ) -> Result<(), CatalogError> {
        let ts = unix_now();
        let list = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "UPDATE base_backups SET info = COALESCE($1, info), \
             finished_at = CASE WHEN $2 = 1 THEN $3 ELSE finished_at END, \
             state_changed_at = $4, state = $5 WHERE id = $6 AND state IN ({list}){}",
            self.base_fence()
        );
        let r = sqlx::query(&sql)
            .bind(info)
            .bind(i64::from(finished))
            .bind(ts)
            .bind(ts)
            .bind(to.as_str())
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_err(op))?;
        if r.rows_affected() == 0 {
            self.refuse_if_base_fenced(op).await?;
            return Err(self.state_error(id, to).await);
        }
        Ok(())
    }

    async fn state_error(&self, id: &str, to: BackupState) -> CatalogError {
        match self.get_backup(id).await {
            Ok(Some(row)) => CatalogError::InvalidArgument {
                field: "base backup state",
                value: format!("{id}: {} -> {to}", row.state),
                reason: "transition not allowed",
            },
            Ok(None) => CatalogError::NotFound {
                what: "base backup",
                key: id.to_owned(),
            },
            Err(e) => e,
        }
    }

    /// DOING → UPLOADING.
    ///
    /// # Errors
    ///
    /// [`CatalogError::NotFound`], [`CatalogError::InvalidArgument`] (other state),
    /// [`CatalogError::Query`].
    pub async fn set_uploading(&self, id: &str) -> Result<(), CatalogError> {
        self.transition(
            "set_uploading",
            id,
            &[BackupState::Doing],
            BackupState::Uploading,
            None,
            false,
        )
        .await
    }

    /// DOING | UPLOADING → ERROR with `info` (the reason, e.g. the tool's stderr tail).
    ///
    /// # Errors
    ///
    /// As [`Catalog::set_uploading`].
    pub async fn fail_backup(&self, id: &str, info: &str) -> Result<(), CatalogError> {
        self.transition(
            "fail_backup",
            id,
            &[BackupState::Doing, BackupState::Uploading],
            BackupState::Error,
            Some(info),
            true,
        )
        .await
    }

    /// DOING → SKIPPED with the reason.
    ///
    /// # Errors
    ///
    /// As [`Catalog::set_uploading`].
    pub async fn skip_backup(&self, id: &str, info: &str) -> Result<(), CatalogError> {
        self.transition(
            "skip_backup",
            id,
            &[BackupState::Doing],
            BackupState::Skipped,
            Some(info),
            true,
        )
        .await
    }

    /// COMPLETED → EXPIRED (retention), before any object is deleted (seed 004's
    /// mark-then-delete).
    ///
    /// # Errors
    ///
    /// As [`Catalog::set_uploading`].
    pub async fn expire_backup(&self, id: &str, info: &str) -> Result<(), CatalogError> {
        self.transition(
            "expire_backup",
            id,
            &[BackupState::Completed],
            BackupState::Expired,
            Some(info),
            false,
        )
        .await
    }

    /// EXPIRED → DELETED, once every object of the base is gone.
    ///
    /// # Errors
    ///
    /// As [`Catalog::set_uploading`].
    pub async fn mark_deleted(&self, id: &str) -> Result<(), CatalogError> {
        self.transition(
            "mark_deleted",
            id,
            &[BackupState::Expired],
            BackupState::Deleted,
            None,
            false,
        )
        .await
    }

    /// DOING | UPLOADING → COMPLETED, recording the consistency point and inserting the
    /// object rows, all in one transaction (the "row written last" of the snapshotter's
    /// storage rule). `bytes` becomes the sum of the objects' sizes.
    ///
    /// # Errors
    ///
    /// As [`Catalog::set_uploading`]; nothing is written on error.
    pub async fn complete_backup(&self, id: &str, r: &BackupResult) -> Result<(), CatalogError> {
        const OP: &str = "complete_backup";
        let total: u64 = r.objects.iter().map(|o| o.bytes).sum();
        let mut tx = self.pool().begin().await.map_err(query_err(OP))?;
        for o in &r.objects {
            sqlx::query(
                "INSERT INTO base_backup_objects (backup_id, object_key, bytes, sha256) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(&o.key)
            .bind(size_to_db(o.bytes)?)
            .bind(&o.sha256)
            .execute(&mut *tx)
            .await
            .map_err(query_err(OP))?;
        }
        let ts = unix_now();
        let sql = format!(
            "UPDATE base_backups SET bytes = $1, binlog_file = $2, binlog_pos = $3, gtid_pos = $4, \
             consistent_at = $5, to_lsn = $6, finished_at = $7, state_changed_at = $8, \
             state = 'COMPLETED' WHERE id = $9 AND state IN ('DOING','UPLOADING'){}",
            self.base_fence()
        );
        let updated = sqlx::query(&sql)
            .bind(size_to_db(total)?)
            .bind(r.binlog_file.as_deref())
            .bind(opt_to_db("binlog_pos", r.binlog_pos)?)
            .bind(r.gtid_pos.as_deref())
            .bind(r.consistent_at)
            .bind(opt_to_db("to_lsn", r.to_lsn)?)
            .bind(ts)
            .bind(ts)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(query_err(OP))?;
        if updated.rows_affected() == 0 {
            tx.rollback().await.map_err(query_err(OP))?;
            self.refuse_if_base_fenced(OP).await?;
            return Err(self.state_error(id, BackupState::Completed).await);
        }
        tx.commit().await.map_err(query_err(OP))?;
        Ok(())
    }

    /// This node's bases left in DOING or UPLOADING by a process that died: set to ERROR
    /// ("interrupted: the process stopped before the base was complete"). Call once at
    /// start-up, before any backup runs. Returns their ids (their objects are garbage to
    /// collect). Other nodes' bases are left alone ([`Catalog::with_node`]).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub async fn fail_interrupted_backups(&self) -> Result<Vec<String>, CatalogError> {
        const OP: &str = "fail_interrupted_backups";
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM base_backups WHERE state IN ('DOING','UPLOADING') AND node = $1",
        )
        .bind(self.node())
        .fetch_all(self.pool())
        .await
        .map_err(query_err(OP))?;
        let mut out = Vec::new();
        for (id,) in ids {
            match self
                .fail_backup(
                    &id,
                    "interrupted: the process stopped before the base was complete; \
                     its partial objects are removed by retention",
                )
                .await
            {
                Ok(()) => out.push(id),
                Err(CatalogError::InvalidArgument { .. }) => {} // finished meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Inserts a COMPLETED base as described elsewhere (a rebuild from the base's
    /// `manifest.json` in the store), with its own times and objects, in one transaction.
    /// Returns `false` (and writes nothing) when a base with that id exists already.
    ///
    /// # Errors
    ///
    /// [`CatalogError::InvalidArgument`] for a size or LSN above `i64::MAX`;
    /// [`CatalogError::Query`] if a statement fails (nothing is written).
    pub async fn import_backup(&self, b: &BackupRow) -> Result<bool, CatalogError> {
        const OP: &str = "import_backup";
        if self.get_backup(&b.id).await?.is_some() {
            return Ok(false);
        }
        let total: u64 = b.objects.iter().map(|o| o.bytes).sum();
        let mut tx = self.pool().begin().await.map_err(query_err(OP))?;
        sqlx::query(
            "INSERT INTO base_backups (id, source, method, tool, incremental, parent_id, state, \
             info, started_at, finished_at, bytes, binlog_file, binlog_pos, gtid_pos, \
             consistent_at, from_lsn, to_lsn, server_version, tool_version, command, db_list, \
             store_url, state_changed_at, node) \
             VALUES ($1, $2, $3, $4, $5, $6, 'COMPLETED', $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19, $20, $21, $22, $23)",
        )
        .bind(&b.id)
        .bind(&b.source)
        .bind(&b.method)
        .bind(&b.tool)
        .bind(i64::from(b.incremental))
        .bind(b.parent_id.as_deref())
        .bind(b.info.as_deref())
        .bind(b.started_at)
        .bind(b.finished_at)
        .bind(size_to_db(total)?)
        .bind(b.binlog_file.as_deref())
        .bind(opt_to_db("binlog_pos", b.binlog_pos)?)
        .bind(b.gtid_pos.as_deref())
        .bind(b.consistent_at)
        .bind(opt_to_db("from_lsn", b.from_lsn)?)
        .bind(opt_to_db("to_lsn", b.to_lsn)?)
        .bind(b.server_version.as_deref())
        .bind(b.tool_version.as_deref())
        .bind(b.command.as_deref())
        .bind(b.db_list.as_deref())
        .bind(b.store_url.as_deref())
        .bind(unix_now())
        .bind(self.node())
        .execute(&mut *tx)
        .await
        .map_err(query_err(OP))?;
        for o in &b.objects {
            sqlx::query(
                "INSERT INTO base_backup_objects (backup_id, object_key, bytes, sha256) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&b.id)
            .bind(&o.key)
            .bind(size_to_db(o.bytes)?)
            .bind(&o.sha256)
            .execute(&mut *tx)
            .await
            .map_err(query_err(OP))?;
        }
        tx.commit().await.map_err(query_err(OP))?;
        Ok(true)
    }

    /// One base with its objects.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`], [`CatalogError::Corrupt`].
    pub async fn get_backup(&self, id: &str) -> Result<Option<BackupRow>, CatalogError> {
        const OP: &str = "get_backup";
        let raw: Option<BackupRaw> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM base_backups WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(query_err(OP))?;
        let Some(raw) = raw else { return Ok(None) };
        let objects = self
            .objects_where("backup_id = $1", id)
            .await?
            .remove(id)
            .unwrap_or_default();
        Ok(Some(raw.into_row(objects)?))
    }

    /// Objects grouped by base id, in key order. `filter` is `"backup_id = $1"` (one base)
    /// or `"backup_id IN (SELECT id FROM base_backups WHERE source = $1)"` (a source),
    /// with `key` bound to its `$1`: one query either way.
    async fn objects_where(
        &self,
        filter: &str,
        key: &str,
    ) -> Result<HashMap<String, Vec<StoredObject>>, CatalogError> {
        let raw: Vec<ObjectRaw> = sqlx::query_as(&format!(
            "SELECT backup_id, object_key, bytes, sha256 FROM base_backup_objects \
             WHERE {filter} ORDER BY backup_id, object_key"
        ))
        .bind(key)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("read base backup objects"))?;
        let mut out: HashMap<String, Vec<StoredObject>> = HashMap::new();
        for o in raw {
            let bytes = u64::try_from(o.bytes).map_err(|_| CatalogError::Corrupt {
                table: "base_backup_objects",
                key: format!("{}/{}", o.backup_id, o.object_key),
                column: "bytes",
                detail: format!("{} is negative", o.bytes),
            })?;
            out.entry(o.backup_id).or_default().push(StoredObject {
                key: o.object_key,
                bytes,
                sha256: o.sha256,
            });
        }
        Ok(out)
    }

    /// The ids of the COMPLETED bases of `source` whose objects are locked (S3 Object
    /// Lock) until before `due` (unix seconds): the date recorded by
    /// [`Catalog::set_base_lock_until`], or else `started_at + default_secs` (the
    /// bucket's rule, from before the base's first object was written). Oldest first.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub async fn base_locks_due(
        &self,
        source: &str,
        due: i64,
        default_secs: i64,
    ) -> Result<Vec<String>, CatalogError> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM base_backups WHERE source = $1 AND state = 'COMPLETED' \
             AND COALESCE(lock_until, started_at + $2) < $3 ORDER BY started_at, id",
        )
        .bind(source)
        .bind(default_secs)
        .bind(due)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("base_locks_due"))?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// Records that base `id`'s objects are locked until `until` (unix seconds), fenced
    /// on a fenced handle.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Fenced`] on a handle whose tenure is over; [`CatalogError::Query`].
    pub async fn set_base_lock_until(&self, id: &str, until: i64) -> Result<(), CatalogError> {
        const OP: &str = "set_base_lock_until";
        let r = sqlx::query(&format!(
            "UPDATE base_backups SET lock_until = $1 WHERE id = $2{}",
            self.base_fence()
        ))
        .bind(until)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        if r.rows_affected() == 0 {
            self.refuse_if_base_fenced(OP).await?;
        }
        Ok(())
    }

    /// The bases of a source, oldest first, with their objects.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`], [`CatalogError::Corrupt`].
    pub async fn list_backups(&self, source: &str) -> Result<Vec<BackupRow>, CatalogError> {
        const OP: &str = "list_backups";
        let raw: Vec<BackupRaw> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM base_backups WHERE source = $1 ORDER BY started_at, id"
        ))
        .bind(source)
        .fetch_all(self.pool())
        .await
        .map_err(query_err(OP))?;
        let mut objects = self
            .objects_where(
                "backup_id IN (SELECT id FROM base_backups WHERE source = $1)",
                source,
            )
            .await?;
        raw.into_iter()
            .map(|r| {
                let o = objects.remove(&r.id).unwrap_or_default();
                r.into_row(o)
            })
            .collect()
    }
}
