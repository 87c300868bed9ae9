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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use catalog::{BackupObject, BackupResult, BackupRow, BackupState, Catalog, NewBackup};

use crate::config::{LogicalTool, Method, SourceBackupSettings};
use crate::objstore::BaseStore;
use crate::sql::{server_facts, ServerFacts, Sql};
use crate::tool::{write_defaults_file, Endpoint, Tools};
use crate::{clone, logical, physical};

/// What the snapshotter needs to run: catalog, store, staging directory, tools.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// The object store.
    pub store: BaseStore,
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

/// Live progress of a running base, shared with the API.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes uploaded (taking) or downloaded (restoring) so far.
    pub bytes: AtomicU64,
    /// What is happening now, e.g. "streaming mariabackup".
    pub phase: Mutex<String>,
}

impl Progress {
    /// Sets the phase text.
    pub fn set_phase(&self, p: &str) {
        if let Ok(mut g) = self.phase.lock() {
            *g = p.to_owned();
        }
    }

    /// The phase text.
    pub fn phase(&self) -> String {
        self.phase.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Why a base was not taken: the reason, and the base id when a row was written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TakeError {
    /// The catalog row (ERROR) if one was written.
    pub id: Option<String>,
    /// What went wrong and what to do.
    pub message: String,
}

/// What a method produced.
#[derive(Debug, Default)]
pub(crate) struct MethodOutput {
    pub tool_version: Option<String>,
    pub command: Option<String>,
    pub objects: Vec<BackupObject>,
    pub result: BackupResult,
}

/// Everything a method needs while it runs.
pub(crate) struct Run<'a> {
    pub snap: &'a Snapshotter,
    pub req: &'a TakeRequest,
    pub id: &'a str,
    pub workdir: PathBuf,
    pub defaults_file: PathBuf,
    pub facts: ServerFacts,
    pub progress: &'a Progress,
    pub from_lsn: Option<u64>,
    /// Databases selected by the filter (logical).
    pub databases: Vec<String>,
    /// The row has moved to UPLOADING.
    pub uploading: std::sync::atomic::AtomicBool,
}

impl Run<'_> {
    /// DOING → UPLOADING once the tool has finished and only uploads remain (idempotent).
    pub async fn mark_uploading(&self) -> Result<(), String> {
        if self.uploading.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.snap
            .catalog
            .set_uploading(self.id)
            .await
            .map_err(|e| format!("record UPLOADING: {e}"))
    }

    /// `<source>/<id>/<name>`.
    pub fn key(&self, name: &str) -> String {
        format!("{}/{}/{}", self.req.source, self.id, name)
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

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

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
        sql: Result<S, String>,
        progress: &Progress,
    ) -> Result<BackupRow, TakeError> {
        let err = |message: String, written: bool| TakeError {
            id: written.then(|| id.to_owned()),
            message,
        };
        if req.incremental && req.method != Method::Physical {
            return Err(err(
                format!(
                    "incremental bases exist only for the physical method, not {}",
                    req.method.as_str()
                ),
                false,
            ));
        }
        // 1. Parent of an incremental.
        let mut note = None;
        let mut parent: Option<BackupRow> = None;
        if req.incremental {
            let bases = self
                .catalog
                .list_backups(&req.source)
                .await
                .map_err(|e| err(format!("read the catalog: {e}"), false))?;
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
        let incremental = parent.is_some();
        let new = NewBackup {
            id: id.to_owned(),
            source: req.source.clone(),
            method: req.method.as_str().to_owned(),
            tool: match req.method {
                Method::Physical => "physical".into(),
                Method::Logical => "logical".into(),
                Method::Clone => "clone".into(),
            },
            incremental,
            parent_id: parent.as_ref().map(|p| p.id.clone()),
            db_list: (req.method == Method::Logical)
                .then(|| req.settings.databases.as_str().to_owned()),
            store_url: Some(self.store.url().to_owned()),
            from_lsn: parent.as_ref().and_then(|p| p.to_lsn),
            ..Default::default()
        };
        self.catalog
            .begin_backup(&new)
            .await
            .map_err(|e| err(format!("record the base in the catalog: {e}"), false))?;
        progress.set_phase("connecting");

        let workdir = self.staging_dir.join(id);
        let outcome = self
            .run_method(req, id, sql, progress, &workdir, new.from_lsn)
            .await;
        let _ = tokio::fs::remove_dir_all(&workdir).await;
        match outcome {
            Ok(Outcome::Skipped(reason)) => {
                self.catalog
                    .skip_backup(id, &reason)
                    .await
                    .map_err(|e| err(format!("record the skip: {e}"), true))?;
            }
            Ok(Outcome::Done(out)) => {
                let mut result = out.result;
                result.objects = out.objects;
                if let Err(e) = self.catalog.complete_backup(id, &result).await {
                    let msg = format!("record the COMPLETED base in the catalog: {e}");
                    self.cleanup_failed(id, &req.source, &msg).await;
                    return Err(err(msg, true));
                }
                if let Some(n) = note {
                    tracing::warn!(base = id, "{n}");
                }
            }
            Err(msg) => {
                let msg = match note {
                    Some(n) => format!("{msg}\n({n})"),
                    None => msg,
                };
                self.cleanup_failed(id, &req.source, &msg).await;
                return Err(err(msg, true));
            }
        }
        progress.set_phase("done");
        self.catalog
            .get_backup(id)
            .await
            .map_err(|e| err(format!("read the base back: {e}"), true))?
            .ok_or_else(|| err("the base vanished from the catalog".into(), true))
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

    async fn run_method<S: Sql>(
        &self,
        req: &TakeRequest,
        id: &str,
        sql: Result<S, String>,
        progress: &Progress,
        workdir: &Path,
        from_lsn: Option<u64>,
    ) -> Result<Outcome, String> {
        let mut sql = sql.map_err(|e| format!("connect to {:?}: {e}", req.endpoint))?;
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
            .map_err(|e| format!("record the server version: {e}"))?;
        tokio::fs::create_dir_all(workdir)
            .await
            .map_err(|e| format!("create the work directory {}: {e}", workdir.display()))?;
        let defaults_file = workdir.join("client.cnf");
        write_defaults_file(&req.endpoint, &defaults_file)?;
        let mut databases = Vec::new();
        if req.method == Method::Logical {
            let rows = sql
                .query("SHOW DATABASES")
                .await
                .map_err(|e| format!("SHOW DATABASES: {e}"))?;
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
                return Err(format!(
                    "the database filter {:?} selects no database on the server (it has: {})",
                    req.settings.databases.as_str(),
                    all.join(", ")
                ));
            }
        }
        let run = Run {
            snap: self,
            req,
            id,
            workdir: workdir.to_owned(),
            defaults_file,
            facts,
            progress,
            from_lsn,
            databases,
            uploading: std::sync::atomic::AtomicBool::new(false),
        };
        let mut out = match (req.method, tool) {
            (Method::Physical, _) => physical::take(&run).await?,
            (Method::Logical, "mydumper") => logical::take_mydumper(&run).await?,
            (Method::Logical, _) => logical::take_mysqldump(&run).await?,
            (Method::Clone, _) => clone::take(&run, &mut sql).await?,
        };
        drop(sql);
        self.catalog
            .set_backup_details(
                id,
                None,
                None,
                out.tool_version.as_deref(),
                out.command.as_deref(),
            )
            .await
            .map_err(|e| format!("record the tool version: {e}"))?;
        if out.result.consistent_at.is_none() {
            out.result.consistent_at = Some(unix_now());
        }
        run.mark_uploading().await?;
        // The manifest goes last: a DBA without the catalog finds everything in it.
        progress.set_phase("writing manifest");
        let manifest = serde_json::json!({
            "id": id,
            "source": req.source,
            "method": req.method.as_str(),
            "tool": tool,
            "tool_version": out.tool_version,
            "server_version": run.facts.version,
            "incremental_from_lsn": from_lsn,
            "databases": (req.method == Method::Logical).then_some(&run.databases),
            "binlog_file": out.result.binlog_file,
            "binlog_pos": out.result.binlog_pos,
            "gtid_pos": out.result.gtid_pos,
            "to_lsn": out.result.to_lsn,
            "consistent_at": out.result.consistent_at,
            "command": out.command,
            "objects": out.objects,
        });
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| format!("manifest: {e}"))?;
        let m = self
            .store
            .put_bytes(&run.key("manifest.json"), &text)
            .await
            .map_err(|e| e.to_string())?;
        out.objects.push(m);
        Ok(Outcome::Done(out))
    }

    /// Uploads every file under `dir` (recursively) as `<prefix>/<relative path>`, in
    /// name order.
    pub(crate) async fn upload_dir(
        &self,
        dir: &Path,
        prefix: &str,
        progress: &Progress,
    ) -> Result<Vec<BackupObject>, String> {
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files).map_err(|e| format!("list {}: {e}", dir.display()))?;
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for rel in files {
            let key = format!("{prefix}/{rel}");
            let obj = self
                .store
                .put_file(&key, &dir.join(&rel), &progress.bytes)
                .await
                .map_err(|e| e.to_string())?;
            out.push(obj);
        }
        Ok(out)
    }
}

enum Outcome {
    Done(MethodOutput),
    Skipped(String),
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}
