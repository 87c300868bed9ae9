//! Taking one base: the state flow around the methods.
//!
//! 1. For an incremental, the parent is the newest COMPLETED physical base of the source
//!    (full or incremental) with an end LSN; with none, a full base is taken instead and
//!    `info` says so.
//! 2. The catalog row is inserted in DOING (so a failure to even reach the server is
//!    recorded as ERROR, not lost).
//! 3. The server's version, `read_only` and datadir are read. Replica-only and a primary
//!    (`read_only=OFF`) → SKIPPED with the reason.
//! 4. The method runs, streaming into the object store (physical, mysqldump) or staging
//!    locally first (mydumper, clone); UPLOADING while the last objects go up.
//! 5. `manifest.json` (what the catalog row will say) is uploaded last, then the row moves
//!    to COMPLETED with the object list in one transaction. Any failure before that →
//!    ERROR with the tool's stderr tail in `info`, the partial objects deleted (best
//!    effort; retention collects what is left).
//!
//! The work directory `<staging_dir>/<base id>/` (defaults file, tool logs, LSN files,
//! mydumper output) is removed at the end whatever happened.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use catalog::{BackupRow, BackupState, Catalog, NewBackup};
use objstore::store::StoredObject;

use crate::config::{LogicalTool, Method, SourceBackupSettings};
use crate::error::BaseError;
use crate::method::{MethodOutput, Run};
use crate::sql::{run_query, server_facts, SessionFailure, Sql};
use crate::tool::{write_defaults_file, Endpoint, Tools};
use crate::{clone, logical, physical};
use objstore::store::Store;

/// Kept here too so that `snapshotter::take::Progress` still names it.
pub use crate::method::Progress;

/// What the snapshotter needs to run: catalog, store, staging directory, tools.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// The object store.
    pub store: Store,
    /// Local working directory.
    pub staging_dir: PathBuf,
    /// Tool paths.
    pub tools: Tools,
}

/// One base to take.
#[derive(Debug, Clone)]
pub struct TakeRequest {
    /// Source name.
    pub source: String,
    /// Where the tools connect (an account with backup privileges).
    pub endpoint: Endpoint,
    /// The source's backup settings.
    pub settings: SourceBackupSettings,
    /// Method of this base.
    pub method: Method,
    /// Incremental (physical only).
    pub incremental: bool,
}

/// Why a base was not taken: the reason, and the base id when a row was written.
///
/// `Display` is the cause's text (what the row's `info` says), with the incremental
/// fallback note on a second line when there is one.
#[derive(Debug)]
pub struct TakeError {
    /// The catalog row (ERROR) if one was written.
    pub id: Option<String>,
    /// What went wrong.
    pub cause: BaseError,
    /// "no COMPLETED physical base to build an incremental on: took a full base
    /// instead", when that happened before the failure.
    pub note: Option<String>,
}

impl std::fmt::Display for TakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.note {
            Some(n) => write!(f, "{}\n({n})", self.cause),
            None => write!(f, "{}", self.cause),
        }
    }
}

impl std::error::Error for TakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// A new base id: `<source>-<yyyymmddThhmmssZ>-<8 hex>`.
pub fn new_backup_id(source: &str) -> String {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    // Not security-relevant: uniqueness between bases started in the same second.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = <sha2::Sha256 as sha2::Digest>::digest(format!(
        "{}-{}-{n}",
        now.unix_timestamp_nanos(),
        std::process::id()
    ));
    let rnd = h.get(..4).unwrap_or_default();
    format!("{source}-{stamp}-{}", hex::encode(rnd))
}

static COUNTER: AtomicU64 = AtomicU64::new(1);

impl Snapshotter {
    /// The tool a method uses on this server flavour.
    pub fn tool_for(
        &self,
        method: Method,
        mariadb: bool,
        logical: Option<LogicalTool>,
    ) -> &'static str {
        match method {
            Method::Physical if mariadb => "mariabackup",
            Method::Physical => "xtrabackup",
            Method::Clone => "clone",
            Method::Logical => match logical {
                Some(LogicalTool::Mydumper) => "mydumper",
                Some(LogicalTool::Mysqldump) => "mysqldump",
                None if self.tools.find("mydumper").is_ok() => "mydumper",
                None => "mysqldump",
            },
        }
    }

    /// Takes one base (see the module doc for the flow) under the id `id` (from
    /// [`new_backup_id`]). `sql` is a session on the server, or the error connecting to
    /// it (recorded as the base's ERROR).
    ///
    /// Returns the catalog row, COMPLETED or SKIPPED.
    ///
    /// # Errors
    ///
    /// [`TakeError`] with the reason; the row (if written) is ERROR.
    pub async fn take<S: Sql>(
        &self,
        req: &TakeRequest,
        id: &str,
        sql: Result<S, SessionFailure>,
        progress: &Progress,
    ) -> Result<BackupRow, TakeError> {
        if req.incremental && req.method != Method::Physical {
            return Err(take_error(
                id,
                BaseError::Unusable(format!(
                    "incremental bases exist only for the physical method, not {}",
                    req.method.as_str()
                )),
                false,
            ));
        }
        // 1. Parent of an incremental.
        let (parent, note) = self.incremental_parent(req, id).await?;
        let new = self.new_backup(req, id, parent.as_ref());
        self.catalog.begin_backup(&new).await.map_err(|e| {
            take_error(
                id,
                BaseError::catalog("record the base in the catalog")(e),
                false,
            )
        })?;
        progress.set_phase("connecting");

        let workdir = self.staging_dir.join(id);
        let outcome = self
            .run_method(req, id, sql, progress, &workdir, new.from_lsn)
            .await;
        let _ = tokio::fs::remove_dir_all(&workdir).await;
        self.record_outcome(req, id, outcome, note).await?;
        progress.set_phase("done");
        self.catalog
            .get_backup(id)
            .await
            .map_err(|e| take_error(id, BaseError::catalog("read the base back")(e), true))?
            .ok_or_else(|| take_error(id, BaseError::Vanished, true))
    }

    /// Step 1: the parent of an incremental (none for a full base), and the note saying
    /// a full base is taken instead when an incremental has no parent.
    async fn incremental_parent(
        &self,
        req: &TakeRequest,
        id: &str,
    ) -> Result<(Option<BackupRow>, Option<String>), TakeError> {
        let mut note = None;
        let mut parent: Option<BackupRow> = None;
        if req.incremental {
            let bases =
                self.catalog.list_backups(&req.source).await.map_err(|e| {
                    take_error(id, BaseError::catalog("read the catalog")(e), false)
                })?;
            parent = bases.into_iter().rev().find(|b| {
                b.state == BackupState::Completed && b.method == "physical" && b.to_lsn.is_some()
            });
            if parent.is_none() {
                note = Some(
                    "no COMPLETED physical base to build an incremental on: took a full base instead"
                        .to_string(),
                );
            }
        }
        Ok((parent, note))
    }

    /// Step 2: the catalog row to insert in DOING for this request and parent.
    fn new_backup(&self, req: &TakeRequest, id: &str, parent: Option<&BackupRow>) -> NewBackup {
        NewBackup {
            id: id.to_owned(),
            source: req.source.clone(),
            method: req.method.as_str().to_owned(),
            tool: match req.method {
                Method::Physical => "physical".into(),
                Method::Logical => "logical".into(),
                Method::Clone => "clone".into(),
            },
            incremental: parent.is_some(),
            parent_id: parent.map(|p| p.id.clone()),
            db_list: (req.method == Method::Logical)
                .then(|| req.settings.databases.as_str().to_owned()),
            store_url: Some(self.store.url().to_owned()),
            from_lsn: parent.and_then(|p| p.to_lsn),
            ..Default::default()
        }
    }

    /// Step 5: moves the row to SKIPPED, COMPLETED or ERROR after the method's outcome
    /// (cleaning the store after a failure); `note` is the incremental-fallback note.
    async fn record_outcome(
        &self,
        req: &TakeRequest,
        id: &str,
        outcome: Result<Outcome, BaseError>,
        note: Option<String>,
    ) -> Result<(), TakeError> {
        match outcome {
            Ok(Outcome::Skipped(reason)) => {
                self.catalog
                    .skip_backup(id, &reason)
                    .await
                    .map_err(|e| take_error(id, BaseError::catalog("record the skip")(e), true))?;
            }
            Ok(Outcome::Done(out)) => {
                let mut result = out.result;
                result.objects = out.objects;
                if let Err(e) = self.catalog.complete_backup(id, &result).await {
                    let e = BaseError::catalog("record the COMPLETED base in the catalog")(e);
                    self.cleanup_failed(id, &req.source, &e.to_string()).await;
                    return Err(take_error(id, e, true));
                }
                if let Some(n) = note {
                    tracing::warn!(base = id, "{n}");
                }
            }
            Err(cause) => {
                let e = TakeError {
                    note,
                    ..take_error(id, cause, true)
                };
                self.cleanup_failed(id, &req.source, &e.to_string()).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn cleanup_failed(&self, id: &str, source: &str, msg: &str) {
        if let Err(e) = self.catalog.fail_backup(id, msg).await {
            tracing::error!(base = id, error = %e, "could not record the failed base");
        }
        let prefix = format!("{source}/{id}");
        if let Ok(keys) = self.store.list(&prefix).await {
            for (k, _) in keys {
                let _ = self.store.delete(&k).await;
            }
        }
    }

    /// Steps 3–5 on the server: reads its facts, runs the method, uploads the manifest.
    async fn run_method<S: Sql>(
        &self,
        req: &TakeRequest,
        id: &str,
        sql: Result<S, SessionFailure>,
        progress: &Progress,
        workdir: &Path,
        from_lsn: Option<u64>,
    ) -> Result<Outcome, BaseError> {
        let mut sql = sql.map_err(|source| BaseError::Connect {
            endpoint: format!("{:?}", req.endpoint),
            source,
        })?;
        let facts = server_facts(&mut sql).await?;
        if req.settings.replica_only && !facts.read_only {
            return Ok(Outcome::Skipped(format!(
                "replica_only is set and {:?} is a primary (read_only=OFF): no base taken on \
                 the primary; point [source.backup] url at a replica",
                req.endpoint
            )));
        }
        let tool = self.tool_for(req.method, facts.mariadb, req.settings.logical_tool);
        self.catalog
            .set_backup_details(id, Some(tool), Some(&facts.version), None, None)
            .await
            .map_err(BaseError::catalog("record the server version"))?;
        let defaults_file = prepare_workdir(req, workdir).await?;
        let databases = select_databases(req, &mut sql).await?;
        let run = Run {
            catalog: &self.catalog,
            store: &self.store,
            tools: &self.tools,
            source: &req.source,
            settings: &req.settings,
            id,
            workdir: workdir.to_owned(),
            defaults_file,
            facts,
            progress,
            from_lsn,
            databases,
            uploading: AtomicBool::new(false),
        };
        let mut out = match (req.method, tool) {
            (Method::Physical, _) => physical::take(&run).await?,
            (Method::Logical, "mydumper") => logical::take_mydumper(&run).await?,
            (Method::Logical, _) => logical::take_mysqldump(&run).await?,
            (Method::Clone, _) => clone::take(&run, &mut sql).await?,
        };
        drop(sql);
        self.record_tool_details(id, &out).await?;
        if out.result.consistent_at.is_none() {
            out.result.consistent_at = Some(catalog::unix_now());
        }
        run.mark_uploading().await?;
        // The manifest goes last: a DBA without the catalog finds everything in it.
        progress.set_phase("writing manifest");
        let m = self.upload_manifest(req, tool, &run, &out).await?;
        out.objects.push(m);
        Ok(Outcome::Done(out))
    }

    /// Records the tool's version and command line on the row once the method ran.
    async fn record_tool_details(&self, id: &str, out: &MethodOutput) -> Result<(), BaseError> {
        self.catalog
            .set_backup_details(
                id,
                None,
                None,
                out.tool_version.as_deref(),
                out.command.as_deref(),
            )
            .await
            .map_err(BaseError::catalog("record the tool version"))
    }

    /// Uploads `manifest.json` (what the catalog row will say) and returns its object.
    async fn upload_manifest(
        &self,
        req: &TakeRequest,
        tool: &str,
        run: &Run<'_>,
        out: &MethodOutput,
    ) -> Result<StoredObject, BaseError> {
        // What the row says already (parent, start, filter, store): a rebuild from the
        // store (`binlog-server rebuild`) recreates the row from this manifest alone.
        let row = self
            .catalog
            .get_backup(run.id)
            .await
            .map_err(BaseError::catalog("read the base's row"))?;
        let manifest = serde_json::json!({
            "version": 2,
            "id": run.id,
            "source": req.source,
            "method": req.method.as_str(),
            "tool": tool,
            "incremental": row.as_ref().is_some_and(|r| r.incremental),
            "parent_id": row.as_ref().and_then(|r| r.parent_id.clone()),
            "started_at": row.as_ref().map(|r| r.started_at),
            "finished_at": catalog::unix_now(),
            "db_list": row.as_ref().and_then(|r| r.db_list.clone()),
            "store_url": row.as_ref().and_then(|r| r.store_url.clone()),
            "tool_version": out.tool_version,
            "server_version": run.facts.version,
            "incremental_from_lsn": run.from_lsn,
            "databases": (req.method == Method::Logical).then_some(&run.databases),
            "binlog_file": out.result.binlog_file,
            "binlog_pos": out.result.binlog_pos,
            "gtid_pos": out.result.gtid_pos,
            "to_lsn": out.result.to_lsn,
            "consistent_at": out.result.consistent_at,
            "command": out.command,
            "objects": out.objects,
        });
        let text = serde_json::to_vec_pretty(&manifest).map_err(BaseError::Manifest)?;
        Ok(self
            .store
            .put_bytes(&run.key("manifest.json"), &text)
            .await?)
    }
}

/// A [`TakeError`] for base `id`, naming the id only when its row was `written`.
fn take_error(id: &str, cause: BaseError, written: bool) -> TakeError {
    TakeError {
        id: written.then(|| id.to_owned()),
        cause,
        note: None,
    }
}

/// Creates the work directory and writes the client defaults file in it; returns its path.
async fn prepare_workdir(req: &TakeRequest, workdir: &Path) -> Result<PathBuf, BaseError> {
    tokio::fs::create_dir_all(workdir)
        .await
        .map_err(BaseError::io("create the work directory", workdir))?;
    let defaults_file = workdir.join("client.cnf");
    write_defaults_file(&req.endpoint, &defaults_file)?;
    Ok(defaults_file)
}

/// Logical: the server's databases selected by the filter (an error if none); else empty.
async fn select_databases<S: Sql>(
    req: &TakeRequest,
    sql: &mut S,
) -> Result<Vec<String>, BaseError> {
    let mut databases = Vec::new();
    if req.method == Method::Logical {
        let rows = run_query(sql, "SHOW DATABASES", "SHOW DATABASES").await?;
        let all: Vec<String> = rows
            .rows
            .iter()
            .filter_map(|r| r.first().cloned().flatten())
            .collect();
        databases = req
            .settings
            .databases
            .select(all.iter().map(String::as_str));
        if databases.is_empty() {
            return Err(BaseError::Unusable(format!(
                "the database filter {:?} selects no database on the server (it has: {})",
                req.settings.databases.as_str(),
                all.join(", ")
            )));
        }
    }
    Ok(databases)
}

enum Outcome {
    Done(MethodOutput),
    Skipped(String),
}

/// The flow (DOING → COMPLETED | ERROR | SKIPPED, the work directory removed, nothing
/// left in the store after a failure), driven through the clone method against a
/// stand-in server; they are the clone method's tests too.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use catalog::{BackupState, Catalog};
    use object_store::memory::InMemory;

    use super::{Progress, Snapshotter, TakeRequest};
    use crate::config::{Method, SourceBackupConfig};
    use crate::sql::{Rows, SessionFailure, Sql};
    use crate::tool::{Endpoint, Tools};
    use objstore::store::Store;

    /// A stand-in MySQL 8 that answers with the rows the MySQL manual documents and, on
    /// CLONE LOCAL DATA DIRECTORY, writes a directory as the server would.
    struct StandIn {
        version: &'static str,
        read_only: &'static str,
        plugin: &'static str,
        clone_state: &'static str,
        statements: Vec<String>,
    }

    fn rows(cols: &[&str], vals: &[&str]) -> Rows {
        Rows {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            rows: vec![vals.iter().map(|v| Some(v.to_string())).collect()],
        }
    }

    impl Sql for StandIn {
        async fn query(&mut self, sql: &str) -> Result<Rows, SessionFailure> {
            self.statements.push(sql.to_owned());
            if sql.starts_with("SELECT VERSION()") {
                Ok(rows(
                    &["v", "ro", "d"],
                    &[self.version, self.read_only, "/var/lib/mysql/"],
                ))
            } else if sql.contains("information_schema.PLUGINS") {
                Ok(rows(&["PLUGIN_STATUS"], &[self.plugin]))
            } else if let Some(dir) = sql.strip_prefix("CLONE LOCAL DATA DIRECTORY = '") {
                let dir = dir.trim_end_matches('\'');
                std::fs::create_dir_all(format!("{dir}/mysql")).map_err(|e| e.to_string())?;
                std::fs::write(format!("{dir}/ibdata1"), vec![7u8; 70_000])
                    .map_err(|e| e.to_string())?;
                std::fs::write(format!("{dir}/mysql/mysql.ibd"), b"dictionary")
                    .map_err(|e| e.to_string())?;
                Ok(Rows::default())
            } else if sql.contains("performance_schema.clone_status") {
                Ok(rows(
                    &[
                        "STATE",
                        "ERROR_NO",
                        "ERROR_MESSAGE",
                        "BINLOG_FILE",
                        "BINLOG_POSITION",
                        "GTID_EXECUTED",
                    ],
                    &[
                        self.clone_state,
                        "0",
                        "",
                        "binlog.000007",
                        "1234",
                        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77",
                    ],
                ))
            } else {
                Err(format!("stand-in: unexpected statement {sql}").into())
            }
        }
    }

    async fn setup() -> (Snapshotter, tempfile::TempDir) {
        let staging = tempfile::tempdir().unwrap();
        let catalog = Arc::new(Catalog::open("sqlite::memory:").await.unwrap());
        let store = Store::from_object_store(Arc::new(InMemory::new()), "memory://", 5 << 20);
        (
            Snapshotter {
                catalog,
                store,
                staging_dir: staging.path().to_owned(),
                tools: Tools::default(),
            },
            staging,
        )
    }

    fn request(replica_only: bool) -> TakeRequest {
        let cfg = SourceBackupConfig {
            method: Method::Clone,
            replica_only,
            ..Default::default()
        };
        TakeRequest {
            source: "m8".into(),
            endpoint: Endpoint {
                host: "127.0.0.1".into(),
                port: 3306,
                user: "backup".into(),
                password: Some("pw".into()),
                tls: None,
            },
            settings: cfg.validate("source[0].backup").unwrap(),
            method: Method::Clone,
            incremental: false,
        }
    }

    fn stand_in(version: &'static str) -> StandIn {
        StandIn {
            version,
            read_only: "1",
            plugin: "ACTIVE",
            clone_state: "Completed",
            statements: Vec::new(),
        }
    }

    #[tokio::test]
    async fn clone_flow_against_documented_rows() {
        let (snap, staging) = setup().await;
        let mut sql = stand_in("8.0.36");
        let row = snap
            .take(&request(false), "m8-1", Ok(&mut sql), &Progress::default())
            .await
            .unwrap();
        assert_eq!(row.state, BackupState::Completed);
        assert_eq!(row.tool, "clone");
        assert_eq!(row.binlog_file.as_deref(), Some("binlog.000007"));
        assert_eq!(row.binlog_pos, Some(1234));
        assert_eq!(
            row.gtid_pos.as_deref(),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77")
        );
        let keys: Vec<&str> = row.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "m8/m8-1/clone/ibdata1",
                "m8/m8-1/clone/mysql/mysql.ibd",
                "m8/m8-1/manifest.json"
            ]
        );
        assert_eq!(row.bytes, row.objects.iter().map(|o| o.bytes).sum::<u64>());
        // The statements, in order; the directory is inside the staging area.
        assert_eq!(sql.statements.len(), 4, "{:?}", sql.statements);
        assert!(sql.statements[2].starts_with(&format!(
            "CLONE LOCAL DATA DIRECTORY = '{}",
            staging.path().join("m8-1").display()
        )));
        // The work directory is gone.
        assert!(!staging.path().join("m8-1").exists());
    }

    #[tokio::test]
    async fn clone_refusals_and_failures_end_in_error() {
        let (snap, _staging) = setup().await;
        for (i, (mut sql, needle)) in [
            (
                stand_in("10.11.19-MariaDB-log"),
                "MariaDB has no clone plugin",
            ),
            (stand_in("8.0.16"), "8.0.17 or later"),
            (
                StandIn {
                    plugin: "DISABLED",
                    ..stand_in("8.0.36")
                },
                "INSTALL PLUGIN clone",
            ),
            (
                StandIn {
                    clone_state: "Failed",
                    ..stand_in("8.0.36")
                },
                "clone ended in state \"Failed\"",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("m8-err-{i}");
            let e = snap
                .take(&request(false), &id, Ok(&mut sql), &Progress::default())
                .await
                .unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            let row = snap.catalog.get_backup(&id).await.unwrap().unwrap();
            assert_eq!(row.state, BackupState::Error);
            assert!(row.info.unwrap_or_default().contains(needle));
            assert!(row.objects.is_empty());
        }
        // Nothing was left in the store.
        assert!(snap.store.list("m8").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn replica_only_skips_a_primary() {
        let (snap, _staging) = setup().await;
        let mut sql = StandIn {
            read_only: "0",
            ..stand_in("8.0.36")
        };
        let row = snap
            .take(
                &request(true),
                "m8-skip",
                Ok(&mut sql),
                &Progress::default(),
            )
            .await
            .unwrap();
        assert_eq!(row.state, BackupState::Skipped);
        assert!(row.info.unwrap_or_default().contains("read_only=OFF"));
        assert_eq!(sql.statements.len(), 1, "nothing but the facts query ran");
    }
}
