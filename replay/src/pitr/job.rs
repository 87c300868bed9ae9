//! The PITR job registry and the API-facing calls: [`PitrService`] plans
//! ([`PitrService::plan`], which also checks the range's files on disk), starts jobs
//! ([`PitrService::start`]), reports them ([`PitrService::get`]), cancels and removes
//! them. The report types are [`super::report`]; running a job is [`super::runner`].

use node::util::lock;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catalog::Catalog;
use objstore::store::Store;
use snapshotter::take::Progress;
use snapshotter::Tools;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::allow::Destination;
use super::error::{internal, PlanError};
use super::planner::{plan, Plan, Target};
use super::report::{Job, JobReport, ReplayProgress};
use super::runner::{execute, RunDeps};
use crate::fake_primary::Archive;
use crate::instance;
use archive::index::Index;
use node::config::PitrConfig;
use node::status::StatusCell;

/// How a job runs, beyond its target and destination.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Scratch destinations only: when done, leave the instance running as it replayed
    /// (`--skip-grant-tables --skip-networking`, reachable through its socket only, in a
    /// 0700 directory) instead of restarting it on its port. The verifier uses this to
    /// go on replicating from the live primary as root without knowing any password.
    pub private: bool,
}

/// Runs PITR jobs.
pub struct PitrService {
    pub(super) catalog: Arc<Catalog>,
    pub(super) index: Arc<Index>,
    pub(super) archives: BTreeMap<String, Arc<Archive>>,
    pub(super) statuses: BTreeMap<String, StatusCell>,
    pub(super) store: Arc<Store>,
    pub(super) tools: Tools,
    pub(super) cfg: PitrConfig,
    pub(super) work_dir: PathBuf,
    pub(super) jobs: Mutex<HashMap<String, Arc<Job>>>,
    pub(super) seq: AtomicU32,
    pub(super) cancel: CancellationToken,
}

/// What [`PitrService::open`] builds the service from.
pub struct PitrDeps<'a> {
    /// Catalog (bases, files, gaps, saved job reports).
    pub catalog: Arc<Catalog>,
    /// Transaction index.
    pub index: Arc<Index>,
    /// The archive of each source, by source name (the fake primary of a job serves it).
    pub archives: BTreeMap<String, Arc<Archive>>,
    /// Live capture status of each source, by name (is the capture caught up?).
    pub statuses: BTreeMap<String, StatusCell>,
    /// Where the bases are stored.
    pub store: &'a snapshotter::StoreSettings,
    /// Restore tools (mariabackup, myloader, mariadbd, ...).
    pub tools: Tools,
    /// `[pitr]` settings.
    pub cfg: PitrConfig,
    /// Cancels every job when the service stops.
    pub cancel: CancellationToken,
}

impl PitrService {
    /// Creates the service; marks jobs interrupted by a previous stop as failed.
    ///
    /// # Errors
    ///
    /// Catalog or object store failures.
    pub async fn open(deps: PitrDeps<'_>) -> anyhow::Result<Arc<PitrService>> {
        let PitrDeps {
            catalog,
            index,
            archives,
            statuses,
            store,
            tools,
            cfg,
            cancel,
        } = deps;
        let store = Arc::new(store.open()?);
        for row in catalog.unfinished_pitr_jobs().await? {
            if let Ok(mut rep) = serde_json::from_str::<serde_json::Value>(&row.report) {
                rep["phase"] = "failed".into();
                rep["error"] = "interrupted: binlog-server stopped while the job ran".into();
                rep["error_kind"] = "interrupted".into();
                catalog
                    .save_pitr_job(&row.id, &row.source, "failed", &rep.to_string())
                    .await?;
            }
        }
        let work_dir = cfg
            .work_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("pitr"));
        Ok(Arc::new(PitrService {
            catalog,
            index,
            archives,
            statuses,
            store,
            tools,
            cfg,
            work_dir,
            jobs: Mutex::new(HashMap::new()),
            seq: AtomicU32::new(0),
            cancel,
        }))
    }

    /// Plans without doing anything.
    ///
    /// # Errors
    ///
    /// As [`plan`]; NotFound for an unknown source; [`PlanError::FileMissing`] for a file
    /// of the range the catalog lists but the disk lost.
    pub async fn plan(
        &self,
        source: &str,
        target: &Target,
        base_id: Option<&str>,
    ) -> Result<Plan, PlanError> {
        self.plan_on(source, target, base_id).await.map(|(p, _)| p)
    }

    /// [`PitrService::plan`], and the archive the job's fake primary serves: the
    /// source's own on the node that captures it, else a view of the store followed now
    /// ([`Archive::for_restore`]; planned without the live status, so a target past the
    /// newest archived transaction is refused).
    ///
    /// # Errors
    ///
    /// As [`PitrService::plan`]; [`PlanError::StoreUnreadable`] when the store cannot be
    /// followed.
    async fn plan_on(
        &self,
        source: &str,
        target: &Target,
        base_id: Option<&str>,
    ) -> Result<(Plan, Arc<Archive>), PlanError> {
        let Some(archive) = self.archives.get(source) else {
            return Err(PlanError::NotFound(format!("no source named {source:?}")));
        };
        // The view's index guard is held through planning (dropped at the end).
        let restore = archive
            .for_restore()
            .await
            .map_err(|e| PlanError::StoreUnreadable {
                source_name: source.to_string(),
                source: Box::new(e),
            })?;
        let served = restore.archive.clone();
        let status = match Arc::ptr_eq(&served, archive) {
            true => self.statuses.get(source),
            false => None,
        };
        let p = plan(&self.catalog, &self.index, status, source, target, base_id).await?;
        // A file the catalog lists but the disk lost (and the archive store does not hold).
        for f in &p.files {
            let path = served.dir.join(f);
            if !path.is_file() && !served.evicted.contains(f) {
                return Err(PlanError::FileMissing {
                    file: f.clone(),
                    path,
                });
            }
        }
        Ok((p, served))
    }

    /// Plans and starts a job; returns its report (phase "restoring base").
    ///
    /// # Errors
    ///
    /// As [`PitrService::plan`], and BadRequest for an unusable destination.
    pub async fn start(
        self: &Arc<Self>,
        source: &str,
        target: &Target,
        base_id: Option<&str>,
        dest: Destination,
    ) -> Result<JobReport, PlanError> {
        self.start_with(source, target, base_id, dest, JobOptions::default())
            .await
    }

    /// [`PitrService::start`] with options.
    ///
    /// # Errors
    ///
    /// As [`PitrService::start`]; BadRequest for `private` with a non-scratch destination.
    pub async fn start_with(
        self: &Arc<Self>,
        source: &str,
        target: &Target,
        base_id: Option<&str>,
        dest: Destination,
        opts: JobOptions,
    ) -> Result<JobReport, PlanError> {
        if opts.private && !matches!(dest, Destination::Scratch) {
            return Err(PlanError::BadRequest(
                "a private instance needs a scratch destination".into(),
            ));
        }
        let dest = super::allow::check(&self.cfg, dest)?;
        let (plan, served) = self.plan_on(source, target, base_id).await?;
        check_destination(&dest, &plan)?;
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "pitr-{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            node::random::hex(3).map_err(internal)?
        );
        let report = JobReport {
            id: id.clone(),
            source: source.to_string(),
            phase: "restoring base".into(),
            step: "starting".into(),
            progress: ReplayProgress {
                transactions_planned: plan.transactions,
                bytes_planned: plan.bytes,
                ..Default::default()
            },
            plan,
            destination: match &dest {
                Destination::Scratch => "scratch".into(),
                Destination::Existing { url, .. } => url.redacted(),
            },
            created_at: catalog::unix_now(),
            finished_at: None,
            restore_seconds: None,
            replay_seconds: None,
            restored: None,
            error: None,
            error_kind: None,
            error_position: None,
        };
        let job = Arc::new(Job {
            report: Mutex::new(report.clone()),
            progress: Arc::new(Progress::default()),
            instance_dir: Mutex::new(None),
            cancel: self.cancel.child_token(),
            private: opts.private,
        });
        lock(&self.jobs).insert(id.clone(), job.clone());
        self.save(&job).await;
        let span = tracing::info_span!("pitr_job", source = %source, job = %id);
        let mut deps = self.run_deps();
        deps.archives.insert(source.to_string(), served);
        tokio::spawn(execute(deps, job, dest, n).instrument(span));
        Ok(report)
    }

    /// Asks a running job to stop: it fails with "cancelled" at its next check (the
    /// replay loop checks every 250 ms; a base restore runs to its end first).
    ///
    /// # Errors
    ///
    /// NotFound when no such job runs in this process.
    pub fn cancel(&self, id: &str) -> Result<(), PlanError> {
        match lock(&self.jobs).get(id) {
            Some(job) => {
                job.cancel.cancel();
                Ok(())
            }
            None => Err(PlanError::NotFound(format!("no running PITR job {id:?}"))),
        }
    }

    /// Saves the job's report in the catalog (a failure is logged).
    async fn save(&self, job: &Job) {
        job.save(&self.catalog).await;
    }

    /// What a job's run needs of the service.
    fn run_deps(&self) -> RunDeps {
        RunDeps {
            catalog: self.catalog.clone(),
            index: self.index.clone(),
            archives: self.archives.clone(),
            store: self.store.clone(),
            tools: self.tools.clone(),
            cfg: self.cfg.clone(),
            work_dir: self.work_dir.clone(),
            cancel: self.cancel.clone(),
        }
    }

    /// A job's report (live, or from the catalog after a restart).
    ///
    /// # Errors
    ///
    /// NotFound; Internal for catalog failures.
    pub async fn get(&self, id: &str) -> Result<serde_json::Value, PlanError> {
        let job = lock(&self.jobs).get(id).cloned();
        if let Some(job) = job {
            let mut rep = lock(&job.report).clone();
            if rep.phase == "restoring base" {
                rep.progress.base_bytes_restored = job.progress.bytes();
                let p = job.progress.phase();
                if !p.is_empty() {
                    rep.step = p;
                }
            }
            return serde_json::to_value(rep).map_err(internal);
        }
        match self.catalog.get_pitr_job(id).await.map_err(internal)? {
            Some(row) => serde_json::from_str(&row.report).map_err(internal),
            None => Err(PlanError::NotFound(format!("no PITR job {id:?}"))),
        }
    }

    /// Stops a finished job's instance (when the service runs it) and removes its scratch
    /// directory. Returns the report.
    ///
    /// # Errors
    ///
    /// NotFound; BadRequest while the job runs.
    pub async fn remove(&self, id: &str) -> Result<serde_json::Value, PlanError> {
        let mut rep = self.get(id).await?;
        let phase = rep["phase"].as_str().unwrap_or_default().to_string();
        if phase != "done" && phase != "failed" && phase != "removed" {
            return Err(PlanError::BadRequest(format!(
                "job {id} is still {phase}; remove it when it ends"
            )));
        }
        let pid = rep["restored"]["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok());
        let datadir = rep["restored"]["datadir"].as_str().map(PathBuf::from);
        if let (Some(pid), Some(d)) = (pid, &datadir) {
            if instance::is_our_mariadbd(pid, d) {
                instance::stop_pid(pid).map_err(internal)?;
                for _ in 0..1200 {
                    if !instance::is_our_mariadbd(pid, d) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // The job's directory: a scratch instance's everything, or for an existing
        // destination only the service's own files (socket, logs, and the symlink to
        // the caller's datadir, which remove_dir_all does not follow).
        {
            let dir = self.work_dir.join(id);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|source| {
                    internal(super::error::RemoveError {
                        path: dir.clone(),
                        source,
                    })
                })?;
            }
        }
        rep["phase"] = "removed".into();
        let source = rep["source"].as_str().unwrap_or_default().to_string();
        self.catalog
            .save_pitr_job(id, &source, "removed", &rep.to_string())
            .await
            .map_err(internal)?;
        if let Some(job) = lock(&self.jobs).get(id) {
            lock(&job.report).phase = "removed".into();
        }
        Ok(rep)
    }
}

/// A destination the plan can restore into: an existing one needs a datadir for a
/// physical base, and a datadir given must be empty (or not exist yet).
fn check_destination(dest: &Destination, plan: &Plan) -> Result<(), PlanError> {
    if let Destination::Existing { datadir: None, .. } = dest {
        if plan.base.method == "physical" {
            return Err(PlanError::BadRequest(
                "the base is physical: give the destination's datadir (empty), which \
                 binlog-server restores into and starts"
                    .into(),
            ));
        }
    }
    if let Destination::Existing {
        datadir: Some(d), ..
    } = dest
    {
        if d.exists()
            && std::fs::read_dir(d)
                .map(|mut r| r.next().is_some())
                .unwrap_or(true)
        {
            return Err(PlanError::BadRequest(format!(
                "datadir {} is not empty: PITR restores into an empty directory only",
                d.display()
            )));
        }
    }
    Ok(())
}
