//! Base backups inside the daemon: jobs started by the API or by the per-source cron
//! schedules, one running base per source at a time, retention after every base.
//!
//! A job's id is the id of the base it takes, so `GET /v1/jobs/{id}` keeps answering
//! from the catalog after a restart (the in-memory job table holds the live progress and
//! the last 1000 jobs).
//!
//! At start-up, bases left DOING/UPLOADING by a previous process are set to ERROR
//! ([`catalog::Catalog::fail_interrupted_backups`]); retention then removes their objects.

use node::util::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use catalog::{BackupRow, BackupState, Catalog};
use chrono::Utc;
use objstore::store::Store;
use serde::Serialize;
use snapshotter::retention::{self, RetentionReport};
use snapshotter::sql::SessionFailure;
use snapshotter::{BaseError, Method, Progress, Snapshotter, TakeError, TakeRequest};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use mysql_wire::conn::{Conn, ConnectOptions};
use node::config::{Settings, Source};

/// Opens a SQL session with the backup account (long query timeout: CLONE can take hours).
///
/// # Errors
///
/// The client's error, boxed as the snapshotter's [`SessionFailure`] (a base records it
/// as its ERROR).
pub async fn connect_sql(
    source: &Source,
    connect_timeout: Duration,
) -> Result<Conn, SessionFailure> {
    let opts = ConnectOptions {
        url: source.backup_url_now(),
        connect_timeout,
        query_timeout: Duration::from_secs(24 * 3600),
    };
    Conn::connect(&opts)
        .await
        .map_err(|e| Box::new(e) as SessionFailure)
}

/// State of a job.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Running.
    Running,
    /// The base is COMPLETED.
    Completed,
    /// The base was SKIPPED (replica-only on a primary).
    Skipped,
    /// Failed; `error` says why.
    Failed,
}

/// One job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// Job id = base id.
    pub id: String,
    /// `"backup"`.
    pub kind: &'static str,
    /// Source name.
    pub source: String,
    /// State.
    pub state: JobState,
    /// What is happening now.
    pub phase: String,
    /// Bytes uploaded so far.
    pub bytes_done: u64,
    /// Start, unix seconds.
    pub started_at: i64,
    /// End, unix seconds.
    pub finished_at: Option<i64>,
    /// Failure reason.
    pub error: Option<String>,
    /// The base (when finished).
    pub backup: Option<BackupRow>,
}

struct Job {
    source: String,
    progress: Arc<Progress>,
    started_at: i64,
    end: Mutex<Option<(JobState, i64, Option<String>)>>,
}

/// Why a job was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No such source.
    #[error("no source named {0:?}")]
    UnknownSource(String),
    /// A base of this source is being taken.
    #[error("a base of {0} is already being taken (job {1}); wait for it to finish")]
    Busy(String, String),
    /// Bad request (e.g. incremental with a logical method).
    #[error("{0}")]
    Invalid(String),
    /// This fleet node does not hold the source's lease: its owner takes bases.
    #[error("this node does not hold the lease of source {0}: its owner takes its bases")]
    NotOwner(String),
}

/// The daemon's base-backup service.
pub struct BackupService {
    snap: Snapshotter,
    /// Archive retention: the archive store, `keep_days`, the data directory; `None`
    /// without `[archive] keep_days`.
    binlog_retention: Option<(Store, u32, std::path::PathBuf)>,
    sources: BTreeMap<String, Source>,
    connect_timeout: Duration,
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
    busy: Mutex<BTreeMap<String, String>>,
    /// Where each source's jobs run and under which lease epoch (set once, by
    /// [`BackupService::spawn_schedulers`]; until then every source, epoch 0).
    owners: std::sync::OnceLock<node::status::Ownership>,
}

const MAX_JOBS_KEPT: usize = 1000;

/// Why [`BackupService::retention`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionFailed {
    /// No source of that name is configured.
    #[error("no source named {0:?}")]
    UnknownSource(String),
    /// Base retention failed (the catalog or the store).
    #[error("base retention: {0}")]
    Bases(#[source] snapshotter::BaseError),
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] catalog::CatalogError),
    /// Archive retention failed.
    #[error("archive retention: {0}")]
    Binlogs(#[from] archive::retention::RetentionError),
    /// This fleet node does not hold the source's lease: retention runs on the owner
    /// (a request to this node is forwarded there).
    #[error("this node does not hold the lease of {0:?}: its owner applies retention")]
    NotOwner(String),
}

/// What a retention pass did: the bases (fields at the top level, as before archive
/// retention existed) and, with `[archive] keep_days`, the binlogs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetentionOutcome {
    /// Base retention.
    #[serde(flatten)]
    pub bases: RetentionReport,
    /// Archive retention (`None` without `keep_days`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binlogs: Option<archive::retention::BinlogRetentionReport>,
}

impl BackupService {
    /// Opens the store; with `recover_interrupted` (the daemon, at start-up) marks bases
    /// left DOING/UPLOADING by a previous process ERROR. The `snapshotter` command passes
    /// false: the daemon may be taking a base at the same moment.
    ///
    /// # Errors
    ///
    /// The store cannot be opened; the catalog fails.
    pub async fn open(
        settings: &Settings,
        catalog: Arc<Catalog>,
        recover_interrupted: bool,
        archive_lock: Option<objstore::lock::Retain>,
    ) -> anyhow::Result<Arc<Self>> {
        let mut store = settings
            .store
            .open()
            .context("open the base-backup store ([backup] store)")?;
        // Bases in the archive's locked bucket are locked as its objects are.
        if let Some(r) = archive_lock {
            if settings.store.options.same_bucket(&settings.archive.store) {
                store = store.with_retention(r.mode, r.days);
            }
        }
        if recover_interrupted {
            let failed = catalog
                .fail_interrupted_backups()
                .await
                .context("mark interrupted bases in the catalog")?;
            for id in failed {
                warn!(base = %id, "base interrupted by a previous stop: now ERROR");
            }
        }
        let binlog_retention = match (settings.archive.enabled, settings.archive.keep_days) {
            (true, Some(days)) => Some((
                Store::open(&settings.archive.store)
                    .context("open the archive store ([archive] store)")?,
                days,
                settings.data_dir.clone(),
            )),
            _ => None,
        };
        Ok(Arc::new(BackupService {
            binlog_retention,
            snap: Snapshotter {
                catalog,
                store,
                staging_dir: settings.store.staging_dir.clone(),
                tools: settings.tools.clone(),
            },
            sources: settings
                .sources
                .iter()
                .map(|s| (s.name.clone(), s.clone()))
                .collect(),
            connect_timeout: settings.capture.connect_timeout,
            jobs: Mutex::new(BTreeMap::new()),
            busy: Mutex::new(BTreeMap::new()),
            owners: std::sync::OnceLock::new(),
        }))
    }

    /// The snapshotter (catalog, store, tools).
    pub fn snapshotter(&self) -> &Snapshotter {
        &self.snap
    }

    /// The configured source `name`.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.get(name)
    }

    fn request(
        &self,
        source: &Source,
        method: Option<Method>,
        incremental: bool,
    ) -> Result<TakeRequest, StartError> {
        let method = method.unwrap_or(source.backup.method);
        if incremental && method != Method::Physical {
            return Err(StartError::Invalid(format!(
                "incremental bases exist only for the physical method, not {}",
                method.as_str()
            )));
        }
        Ok(TakeRequest {
            source: source.name.clone(),
            endpoint: node::config::tool_endpoint(&source.backup_url_now()),
            settings: source.backup.clone(),
            method,
            incremental,
        })
    }

    /// Takes a base now and waits for it (the CLI). Retention runs afterwards.
    ///
    /// # Errors
    ///
    /// [`TakeError`] (the base row, if written, is ERROR).
    pub async fn take_now(
        &self,
        name: &str,
        method: Option<Method>,
        incremental: bool,
        progress: &Progress,
    ) -> Result<BackupRow, TakeError> {
        let terr = |message: String| TakeError {
            id: None,
            cause: BaseError::Unusable(message),
            note: None,
        };
        let source = self
            .sources
            .get(name)
            .ok_or_else(|| terr(format!("no source named {name:?} in the config")))?;
        let req = self
            .request(source, method, incremental)
            .map_err(|e| terr(e.to_string()))?;
        let snap = self
            .fenced_snapshotter(name)
            .ok_or_else(|| terr(StartError::NotOwner(name.to_owned()).to_string()))?;
        let id = snapshotter::new_backup_id(name);
        let sql = connect_sql(source, self.connect_timeout).await;
        let r = snap.take(&req, &id, sql, progress).await;
        if let Err(e) = self.retention(name).await {
            warn!(source = name, error = %e, "retention failed");
        }
        r
    }

    /// Starts a base in the background; returns the job (= base) id.
    ///
    /// # Errors
    ///
    /// [`StartError`].
    pub fn start(
        self: &Arc<Self>,
        name: &str,
        method: Option<Method>,
        incremental: bool,
    ) -> Result<String, StartError> {
        let source = self
            .sources
            .get(name)
            .ok_or_else(|| StartError::UnknownSource(name.to_owned()))?
            .clone();
        let req = self.request(&source, method, incremental)?;
        let snap = self
            .fenced_snapshotter(name)
            .ok_or_else(|| StartError::NotOwner(name.to_owned()))?;
        let id = snapshotter::new_backup_id(name);
        {
            let mut busy = lock(&self.busy);
            if let Some(running) = busy.get(name) {
                return Err(StartError::Busy(name.to_owned(), running.clone()));
            }
            busy.insert(name.to_owned(), id.clone());
        }
        let job = Arc::new(Job {
            source: name.to_owned(),
            progress: Arc::new(Progress::default()),
            started_at: catalog::unix_now(),
            end: Mutex::new(None),
        });
        {
            let mut jobs = lock(&self.jobs);
            jobs.insert(id.clone(), job.clone());
            while jobs.len() > MAX_JOBS_KEPT {
                let oldest = jobs
                    .iter()
                    .filter(|(_, j)| j.end.lock().map(|e| e.is_some()).unwrap_or(true))
                    .min_by_key(|(_, j)| j.started_at)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => {
                        jobs.remove(&k);
                    }
                    None => break,
                }
            }
        }
        let this = self.clone();
        let job_id = id.clone();
        let span = tracing::info_span!("base_backup", source = %source.name, base = %job_id);
        tokio::spawn(async move {
            info!(source = %source.name, base = %job_id, method = req.method.as_str(), incremental, "base backup started");
            let sql = connect_sql(&source, this.connect_timeout).await;
            let r = snap.take(&req, &job_id, sql, &job.progress).await;
            let end = match &r {
                Ok(row) if row.state == BackupState::Skipped => {
                    warn!(source = %source.name, base = %job_id, reason = row.info.as_deref().unwrap_or(""), "base skipped");
                    (JobState::Skipped, row.info.clone())
                }
                Ok(row) => {
                    info!(source = %source.name, base = %job_id, bytes = row.bytes, gtid = row.gtid_pos.as_deref().unwrap_or(""), "base completed");
                    (JobState::Completed, None)
                }
                Err(e) => {
                    error!(source = %source.name, base = %job_id, error = %e, "base failed");
                    (JobState::Failed, Some(e.to_string()))
                }
            };
            if let Err(e) = this.retention(&source.name).await {
                warn!(source = %source.name, error = %e, "retention failed");
            }
            if let Ok(mut g) = job.end.lock() {
                *g = Some((end.0, catalog::unix_now(), end.1));
            }
            this.busy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&source.name);
        }.instrument(span));
        Ok(id)
    }

    /// A job: live from memory, else rebuilt from the base's catalog row.
    ///
    /// # Errors
    ///
    /// The catalog fails.
    pub async fn job(&self, id: &str) -> Result<Option<JobView>, catalog::CatalogError> {
        let live = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        let row = self.snap.catalog.get_backup(id).await?;
        if let Some(job) = live {
            let end = job.end.lock().ok().and_then(|g| g.clone());
            return Ok(Some(JobView {
                id: id.to_owned(),
                kind: "backup",
                source: job.source.clone(),
                state: end.as_ref().map_or(JobState::Running, |e| e.0),
                phase: job.progress.phase(),
                bytes_done: job.progress.bytes(),
                started_at: job.started_at,
                finished_at: end.as_ref().map(|e| e.1),
                error: end.and_then(|e| e.2),
                backup: row,
            }));
        }
        Ok(row.map(|r| JobView {
            id: r.id.clone(),
            kind: "backup",
            source: r.source.clone(),
            state: match r.state {
                BackupState::Doing | BackupState::Uploading => JobState::Running,
                BackupState::Skipped => JobState::Skipped,
                BackupState::Error => JobState::Failed,
                _ => JobState::Completed,
            },
            phase: r.state.to_string(),
            bytes_done: r.bytes,
            started_at: r.started_at,
            finished_at: r.finished_at,
            error: (r.state == BackupState::Error)
                .then(|| r.info.clone())
                .flatten(),
            backup: Some(r),
        }))
    }

    /// The snapshotter for a base of `name` whose catalog writes (the base's row from
    /// DOING to COMPLETED) are fenced by this node's tenure of the source's lease: a
    /// stale owner's base is refused at its next write. `None` on a fleet node that does
    /// not hold the lease; before the schedulers start (a command run by hand) and on a
    /// single node, epoch 0, which fences nothing.
    fn fenced_snapshotter(&self, name: &str) -> Option<Snapshotter> {
        let epoch = match self.owners.get() {
            Some(owners) => owners.epoch_here(name)?,
            None => 0,
        };
        Some(Snapshotter {
            catalog: Arc::new(self.snap.catalog.fenced(name, epoch)),
            ..self.snap.clone()
        })
    }

    /// Applies the source's retention now.
    ///
    /// # Errors
    ///
    /// [`RetentionFailed`]: an unknown source (a 404 for the API), or base retention,
    /// the catalog or archive retention failing (retried at the next base or request).
    pub async fn retention(&self, name: &str) -> Result<RetentionOutcome, RetentionFailed> {
        let source = self
            .sources
            .get(name)
            .ok_or_else(|| RetentionFailed::UnknownSource(name.to_string()))?;
        // Before the schedulers start (a command run by hand): every source, epoch 0.
        let owners = self
            .owners
            .get()
            .cloned()
            .unwrap_or_else(node::status::Ownership::everywhere);
        let Some(epoch) = owners.epoch_here(name) else {
            return Err(RetentionFailed::NotOwner(name.to_string()));
        };
        // Each base is marked EXPIRED, then DELETED, under this tenure: a stale owner is
        // refused before it deletes anything.
        let bases = retention::apply(
            &self.snap.catalog.fenced(name, epoch),
            &self.snap.store,
            name,
            source.backup.keep_days,
            source.backup.keep_min,
            catalog::unix_now(),
        )
        .await
        .map_err(RetentionFailed::Bases)?;
        let binlogs = match &self.binlog_retention {
            None => None,
            Some((store, days, data_dir)) => {
                let rows = self.snap.catalog.list_backups(name).await?;
                let oldest = retention::oldest_restorable(&rows);
                Some(
                    archive::retention::apply(
                        // Every delete is recorded first under this tenure: a stale
                        // owner is refused there and deletes nothing.
                        &self.snap.catalog.fenced(name, epoch),
                        store,
                        &data_dir.join(name),
                        name,
                        *days,
                        catalog::unix_now(),
                        oldest.as_ref(),
                    )
                    .await?,
                )
            }
        };
        Ok(RetentionOutcome { bases, binlogs })
    }

    /// Starts one scheduler task per source with a schedule; they end with `cancel`. A
    /// base falls due on every node of a fleet, and starts only where `owners` says
    /// the source runs (the node holding its lease then).
    pub fn spawn_schedulers(
        self: &Arc<Self>,
        owners: node::status::Ownership,
        cancel: CancellationToken,
    ) {
        let _ = self.owners.set(owners.clone());
        if self.snap.store.locking().is_some() {
            let this = self.clone();
            let (owners, cancel) = (owners.clone(), cancel.clone());
            tokio::spawn(async move { this.lock_loop(owners, cancel).await });
        }
        for source in self.sources.values() {
            if source.backup.full_schedule.is_none() && source.backup.incremental_schedule.is_none()
            {
                continue;
            }
            let this = self.clone();
            let name = source.name.clone();
            let cancel = cancel.clone();
            let span = tracing::info_span!("backup_schedule", source = %name);
            let owners = owners.clone();
            tokio::spawn(
                async move { this.schedule_loop(&name, owners, cancel).await }.instrument(span),
            );
        }
    }

    /// With Object Lock on the base store: at start and every hour, extends the locks
    /// of the kept bases of every source owned here (`snapshotter::retention::
    /// extend_locks`), under the tenure, so that a base kept longer than the bucket's
    /// rule stays undeletable.
    async fn lock_loop(
        self: Arc<Self>,
        owners: node::status::Ownership,
        cancel: CancellationToken,
    ) {
        loop {
            for name in self.sources.keys() {
                let Some(epoch) = owners.epoch_here(name) else {
                    continue;
                };
                let fenced = self.snap.catalog.fenced(name, epoch);
                let now = catalog::unix_now();
                if let Err(e) = retention::extend_locks(&fenced, &self.snap.store, name, now).await
                {
                    warn!(source = %name, error = %e, "extending the object lock of bases failed; retried in an hour");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
    }

    async fn schedule_loop(
        self: Arc<Self>,
        name: &str,
        owners: node::status::Ownership,
        cancel: CancellationToken,
    ) {
        let Some(source) = self.sources.get(name).cloned() else {
            return;
        };
        let mut after = Utc::now();
        loop {
            let full = source
                .backup
                .full_schedule
                .as_ref()
                .and_then(|s| s.next_after(after));
            let inc = source
                .backup
                .incremental_schedule
                .as_ref()
                .and_then(|s| s.next_after(after));
            // A full wins when both fall on the same moment.
            let (at, incremental) = match (full, inc) {
                (Some(f), Some(i)) if i < f => (i, true),
                (Some(f), _) => (f, false),
                (None, Some(i)) => (i, true),
                (None, None) => return,
            };
            info!(source = name, at = %at, incremental, "next scheduled base");
            // Sleep in steps of at most a minute so a changed wall clock is noticed.
            loop {
                let now = Utc::now();
                if now >= at {
                    break;
                }
                let wait = (at - now)
                    .to_std()
                    .unwrap_or_default()
                    .min(Duration::from_secs(60));
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            after = at;
            if !owners.runs_here(name) {
                info!(
                    source = name,
                    "scheduled base left to the node that holds the source's lease"
                );
                continue;
            }
            match self.start(name, None, incremental) {
                Ok(id) => info!(source = name, base = %id, "scheduled base started"),
                Err(e) => warn!(source = name, error = %e, "scheduled base not started"),
            }
        }
    }

    /// The bases of `source` and the oldest restorable point.
    ///
    /// # Errors
    ///
    /// The catalog fails.
    pub async fn list(
        &self,
        source: &str,
    ) -> Result<(Vec<BackupRow>, Option<retention::RestorablePoint>), catalog::CatalogError> {
        let rows = self.snap.catalog.list_backups(source).await?;
        let oldest = retention::oldest_restorable(&rows);
        Ok((rows, oldest))
    }
}
