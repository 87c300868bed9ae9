//! Point-in-time recovery: the planner and the runner.
//!
//! # Semantics
//!
//! - **Target time T** (unix seconds, UTC; text with an explicit zone is converted): the
//!   restore holds exactly the transactions whose commit event's timestamp is ≤ T, as the
//!   primary's clock wrote it into the binlog (event timestamps are UTC seconds, whatever
//!   the server's `time_zone`). Several transactions in the same second are all in or all
//!   out: the binlog has one-second resolution. The cut is made before the first
//!   transaction (by commit time, then binlog order) whose timestamp is > T, so it always
//!   falls between transactions. If the primary's clock stepped back, transactions after
//!   that cut with timestamps ≤ T are not restored (the binlog order is kept).
//! - **Target GTID G**: everything up to and including G's transaction.
//!
//! # Plan
//!
//! The newest COMPLETED base (physical or logical) whose binlog position is at or before
//! the cut; the binlog range from the base's position to the cut; transactions and bytes
//! to apply (from the index's ordinals and the files' sizes). No plan (HTTP 422) when no
//! base precedes the target, the target is in the future or past the archive's end, the
//! archive does not reach back to the base, or a file in the range is FAIL, missing or
//! behind a recorded gap.
//!
//! # Run
//!
//! Restore the base (physical: mariabackup prepare + incrementals + copy-back; logical:
//! myloader / mysql into a fresh instance), start it privately (see [`crate::replay::instance`]),
//! set `gtid_slave_pos` to the base's GTID, point it with CHANGE MASTER at a fake primary
//! listener of this job (one-time account, stop point = the cut), start the parallel
//! applier, and wait until `gtid_slave_pos` holds the plan's last GTID and the relay log
//! is drained. Then STOP SLAVE, RESET SLAVE ALL, restart the instance on 127.0.0.1:PORT
//! and report. A failed run stops and removes its scratch instance; the report keeps the
//! replica's error and the event's file:pos. Job reports are saved in the catalog
//! (`pitr_jobs`) on every phase change.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catalog::{BackupRow, BackupState, Catalog, FileState};
use serde::Serialize;
use snapshotter::objstore::BaseStore;
use snapshotter::take::Progress;
use snapshotter::{Endpoint, Tools};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::archive::index::Index;
use crate::archive::store::binlog_order;
use crate::config::{PitrConfig, SourceUrl};
use crate::replay::fake_primary::{self, Archive, Credentials, StopAt};
use crate::replay::instance::{self, Instance, InstanceSpec};
use crate::status::{CaptureState, StatusCell};
use binlog::Gtid;

/// A restore target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Unix seconds (UTC).
    Time(i64),
    /// A GTID.
    Gtid(Gtid),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Time(t) => write!(f, "time {}", fmt_time(*t)),
            Target::Gtid(g) => write!(f, "GTID {g}"),
        }
    }
}

/// "2026-11-21T14:03:27Z".
pub fn fmt_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Parses a target time: RFC 3339 ("2026-11-21T14:03:27Z", "...+02:00"), or
/// "2026-11-21 14:03:27" / "2026-11-21T14:03:27" taken as UTC, optionally followed by an
/// offset ("2026-11-21 14:03:27 +02:00"), or unix seconds ("@1790000000").
///
/// # Errors
///
/// A message with the accepted forms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Some(n) = s.strip_prefix('@') {
        return n.parse().map_err(|_| format!("{s:?}: not unix seconds"));
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(d.timestamp());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S %:z",
        "%Y-%m-%dT%H:%M:%S %:z",
        "%Y-%m-%d %H:%M:%S%:z",
    ] {
        if let Ok(d) = chrono::DateTime::parse_from_str(s, f) {
            return Ok(d.timestamp());
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(d.and_utc().timestamp());
        }
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-11-21T14:03:27Z, 2026-11-21T16:03:27+02:00), \
         \"2026-11-21 14:03:27\" (UTC) or \"@<unix seconds>\""
    ))
}

/// Why there is no plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Bad input (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// Unknown source or job (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The archive cannot restore this target (HTTP 422), with the reason.
    #[error("{0}")]
    NoPlan(String),
    /// Catalog or index failure (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> PlanError {
    PlanError::Internal(e.to_string())
}

/// The base a plan starts from.
#[derive(Debug, Clone, Serialize)]
pub struct PlanBase {
    /// Base id (the newest of its chain).
    pub id: String,
    /// physical | logical.
    pub method: String,
    /// Tool.
    pub tool: String,
    /// Ids to apply in order (full first).
    pub chain: Vec<String>,
    /// Consistency time, unix seconds.
    pub consistent_at: Option<i64>,
    /// Binlog file at the consistency point.
    pub binlog_file: String,
    /// Position, bytes.
    pub binlog_pos: u64,
    /// GTID position.
    pub gtid_pos: Option<String>,
}

/// A PITR plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Source name.
    pub source: String,
    /// Target as text.
    pub target: String,
    /// Target time, unix seconds.
    pub target_time: Option<i64>,
    /// Target GTID.
    pub target_gtid: Option<String>,
    /// The base.
    pub base: PlanBase,
    /// Where replay stops (a transaction boundary; nothing at or after it is applied).
    pub stop: StopAt,
    /// GTID of the last transaction applied (`None` when nothing is applied or the
    /// binlogs have no GTIDs).
    pub end_gtid: Option<String>,
    /// Commit time of that transaction, unix seconds.
    pub end_commit_time: Option<u32>,
    /// Transactions to apply.
    pub transactions: u64,
    /// Binlog bytes to apply (from the base's position to the stop).
    pub bytes: u64,
    /// Binlog files in the range.
    pub files: Vec<String>,
    /// Index ordinal of the first transaction to apply (for progress).
    #[serde(skip)]
    pub first_ordinal: u64,
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Plans the restore of `source` to `target`.
///
/// # Errors
///
/// [`PlanError::NoPlan`] with the reason when the archive cannot do it.
pub async fn plan(
    catalog: &Catalog,
    index: &Arc<Index>,
    status: Option<&StatusCell>,
    source: &str,
    target: &Target,
    base_id: Option<&str>,
) -> Result<Plan, PlanError> {
    let idx = index.clone();
    let src = source.to_string();
    let t2 = target.clone();
    let st = status.map(|s| s.snapshot());
    // 1. The cut: (file, pos) and the last transaction applied.
    let (stop, last) = tokio::task::spawn_blocking(move || -> Result<_, PlanError> {
        match &t2 {
            Target::Time(t) => {
                let now = unix_now();
                if *t > now {
                    return Err(PlanError::NoPlan(format!(
                        "target {} is in the future (now {})",
                        fmt_time(*t),
                        fmt_time(now)
                    )));
                }
                let t32 = u32::try_from(*t).map_err(|_| {
                    PlanError::BadRequest(format!("target time {t} is out of range"))
                })?;
                match idx.first_after_time(&src, t32).map_err(internal)? {
                    Some(e) => {
                        let last = match e.ordinal.checked_sub(1) {
                            Some(o) => idx.by_ordinal(&src, o).map_err(internal)?,
                            None => None,
                        };
                        Ok((
                            StopAt {
                                file: e.file,
                                pos: e.start,
                            },
                            last,
                        ))
                    }
                    None => {
                        let last = idx.last(&src).map_err(internal)?.ok_or_else(|| {
                            PlanError::NoPlan(format!("nothing of {src} is archived yet"))
                        })?;
                        let live = st.as_ref().is_some_and(|s| {
                            s.state == CaptureState::Streaming && s.seconds_behind == Some(0)
                        });
                        if !live {
                            return Err(PlanError::NoPlan(format!(
                                "target {} is beyond the archive's end: the newest archived \
                                 transaction of {src} committed at {} and the capture is not \
                                 streaming and caught up, so later transactions may be missing",
                                fmt_time(*t),
                                fmt_time(i64::from(last.commit_timestamp))
                            )));
                        }
                        Ok((
                            StopAt {
                                file: last.file.clone(),
                                pos: last.end,
                            },
                            Some(last),
                        ))
                    }
                }
            }
            Target::Gtid(g) => {
                let e = idx.find_gtid(&src, g).map_err(internal)?.ok_or_else(|| {
                    PlanError::NoPlan(format!(
                        "GTID {g} is not in the archive of {src} (not written yet, older than \
                         the archive, or from another primary)"
                    ))
                })?;
                Ok((
                    StopAt {
                        file: e.file.clone(),
                        pos: e.end,
                    },
                    Some(e),
                ))
            }
        }
    })
    .await
    .map_err(internal)??;

    // 2. The newest usable base at or before the cut.
    let key = |f: &str, p: u64| (binlog_order(f), p);
    let stop_key = key(&stop.file, stop.pos);
    let bases = catalog.list_backups(source).await.map_err(internal)?;
    let mut candidates: Vec<&BackupRow> = bases
        .iter()
        .filter(|b| b.state == BackupState::Completed)
        .filter(|b| b.method == "physical" || b.method == "logical")
        .filter(|b| base_id.is_none_or(|id| b.id == id))
        .filter(|b| matches!((&b.binlog_file, b.binlog_pos), (Some(f), Some(p)) if key(f, p) <= stop_key))
        .collect();
    candidates.sort_by_key(|b| {
        (
            b.binlog_file.as_deref().map(binlog_order),
            b.binlog_pos,
            b.started_at,
        )
    });
    if let (Some(id), None) = (base_id, candidates.last()) {
        return Err(PlanError::NoPlan(format!(
            "base {id} is not a COMPLETED physical or logical base of {source} at or before the target"
        )));
    }
    let Some(base) = candidates.last().copied() else {
        let oldest = bases
            .iter()
            .filter(|b| b.state == BackupState::Completed)
            .filter_map(|b| b.consistent_at)
            .min();
        return Err(PlanError::NoPlan(format!(
            "no COMPLETED base of {source} lies before the target{}: take one with POST \
             /v1/sources/{source}/backups (or `snapshotter take`)",
            oldest
                .map(|t| format!(" (the oldest is from {})", fmt_time(t)))
                .unwrap_or_default()
        )));
    };
    let chain = snapshotter::restore::chain(catalog, &base.id)
        .await
        .map_err(PlanError::NoPlan)?;
    let (bfile, bpos) = (
        base.binlog_file.clone().unwrap_or_default(),
        base.binlog_pos.unwrap_or(4),
    );

    // 3. The files in the range: present, not FAIL, no hole.
    let files = catalog.list_files(source).await.map_err(internal)?;
    let mut range = Vec::new();
    for f in &files {
        let o = binlog_order(&f.name);
        if o >= binlog_order(&bfile) && o <= binlog_order(&stop.file) {
            range.push(f.clone());
        }
    }
    range.sort_by_key(|f| binlog_order(&f.name));
    if range.first().map(|f| f.name.as_str()) != Some(bfile.as_str()) {
        return Err(PlanError::NoPlan(format!(
            "the archive of {source} does not hold {bfile}, where base {} starts: the archive \
             begins later than the base",
            base.id
        )));
    }
    if range.last().map(|f| f.name.as_str()) != Some(stop.file.as_str()) {
        return Err(PlanError::NoPlan(format!(
            "the archive of {source} does not list {} in its catalog",
            stop.file
        )));
    }
    let gaps = catalog.list_gaps(source).await.map_err(internal)?;
    for w in range.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.seq != a.seq + 1 && a.seq >= 0 {
            return Err(PlanError::NoPlan(format!(
                "the binlog range crosses a gap: {} is followed by {} in the archive",
                a.name, b.name
            )));
        }
        if let Some(g) = gaps
            .iter()
            .find(|g| g.after_file.as_deref() == Some(a.name.as_str()))
        {
            return Err(PlanError::NoPlan(format!(
                "the binlog range crosses a gap after {}: {}",
                a.name, g.reason
            )));
        }
    }
    for f in &range {
        if f.state == FileState::Fail {
            return Err(PlanError::NoPlan(format!(
                "binlog {} in the range is FAIL ({}): it is re-pulled while the primary has \
                 it; until then this target cannot be restored",
                f.name, f.info
            )));
        }
    }

    // 4. Counts: transactions by ordinal, bytes by position.
    let idx = index.clone();
    let (src, bgtid) = (
        source.to_string(),
        base.gtid_pos.clone().unwrap_or_default(),
    );
    let (bf2, stop2) = (bfile.clone(), stop.clone());
    let first_ordinal = tokio::task::spawn_blocking(move || -> Result<u64, PlanError> {
        let mut best: Option<u64> = None;
        for part in bgtid.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g: Gtid = part
                .parse()
                .map_err(|_| PlanError::Internal(format!("base GTID {part:?} does not parse")))?;
            if let Some(e) = idx.find_gtid(&src, &g).map_err(internal)? {
                if key(&e.file, e.end) <= key(&bf2, bpos) {
                    best = Some(best.map_or(e.ordinal, |b| b.max(e.ordinal)));
                }
            }
        }
        match best {
            Some(o) => Ok(o + 1),
            None => {
                // No GTID of the base is archived: fine only when the base sits before
                // the archive's first transaction.
                match idx.by_ordinal(&src, 0).map_err(internal)? {
                    Some(e) if key(&e.file, e.start) >= key(&bf2, bpos) => Ok(0),
                    None if key(&stop2.file, stop2.pos) <= key(&bf2, bpos) => Ok(0),
                    _ => Err(PlanError::NoPlan(format!(
                        "the archive of {src} does not reach back to the base's position \
                         ({bf2}:{bpos}, GTID {bgtid:?})"
                    ))),
                }
            }
        }
    })
    .await
    .map_err(internal)??;
    let transactions = match &last {
        Some(l) => (l.ordinal + 1).saturating_sub(first_ordinal),
        None => 0,
    };
    let mut bytes = 0u64;
    for f in &range {
        let from = if f.name == bfile { bpos } else { 0 };
        let to = if f.name == stop.file {
            stop.pos
        } else {
            f.size
        };
        bytes += to.saturating_sub(from);
    }
    let (end_gtid, end_commit_time) = match (&last, transactions) {
        (Some(l), n) if n > 0 => (l.gtid.clone(), Some(l.commit_timestamp)),
        _ => (None, None),
    };
    Ok(Plan {
        source: source.to_string(),
        target: target.to_string(),
        target_time: match target {
            Target::Time(t) => Some(*t),
            _ => None,
        },
        target_gtid: match target {
            Target::Gtid(g) => Some(g.to_string()),
            _ => None,
        },
        base: PlanBase {
            id: base.id.clone(),
            method: base.method.clone(),
            tool: base.tool.clone(),
            chain: chain.iter().map(|b| b.id.clone()).collect(),
            consistent_at: base.consistent_at,
            binlog_file: bfile,
            binlog_pos: bpos,
            gtid_pos: base.gtid_pos.clone().filter(|g| !g.is_empty()),
        },
        stop,
        end_gtid,
        end_commit_time,
        transactions,
        bytes,
        files: range.iter().map(|f| f.name.clone()).collect(),
        first_ordinal,
    })
}

// ---------------------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------------------

/// Where to restore.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A mariadbd the service starts on a free port under `[pitr] work_dir`.
    Scratch,
    /// An existing instance: a running, empty server at `url` (logical bases), or an
    /// empty `datadir` the service restores into and starts on `url`'s port (physical).
    Existing {
        /// Administrator URL (used for logical loads and replication set-up).
        url: SourceUrl,
        /// Datadir (required for physical bases).
        datadir: Option<PathBuf>,
    },
}

/// Replay progress.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayProgress {
    /// Transactions applied so far.
    pub transactions_applied: u64,
    /// Planned.
    pub transactions_planned: u64,
    /// Binlog bytes applied so far.
    pub bytes_applied: u64,
    /// Planned.
    pub bytes_planned: u64,
    /// Bytes per second since replay started.
    pub bytes_per_second: f64,
    /// Transactions per second since replay started.
    pub transactions_per_second: f64,
    /// Estimated seconds left.
    pub eta_seconds: Option<f64>,
    /// Base bytes downloaded while restoring.
    pub base_bytes_restored: u64,
    /// The replica's position in the source's binlogs ("file:pos").
    pub replica_position: Option<String>,
}

/// The restored instance.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// "127.0.0.1:PORT" (or the destination URL's host:port).
    pub address: String,
    /// Unix socket, when the service runs the instance.
    pub socket: Option<String>,
    /// Datadir.
    pub datadir: Option<String>,
    /// mariadbd PID, when the service runs the instance.
    pub pid: Option<u32>,
    /// The instance's `gtid_slave_pos` at the end.
    pub gtid_slave_pos: Option<String>,
}

/// A PITR job's report (GET /v1/pitr/{id}).
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// Job id.
    pub id: String,
    /// Source.
    pub source: String,
    /// "restoring base" | "replaying" | "done" | "failed" | "removed".
    pub phase: String,
    /// Detail of the phase (e.g. the tool step).
    pub step: String,
    /// The plan.
    pub plan: Plan,
    /// "scratch" or the destination URL (redacted).
    pub destination: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, when done or failed.
    pub finished_at: Option<i64>,
    /// Seconds spent restoring the base.
    pub restore_seconds: Option<f64>,
    /// Seconds spent replaying.
    pub replay_seconds: Option<f64>,
    /// Progress.
    pub progress: ReplayProgress,
    /// The result, when done.
    pub restored: Option<Restored>,
    /// What failed.
    pub error: Option<String>,
    /// Where in the source's binlogs the replica failed ("file:pos").
    pub error_position: Option<String>,
}

struct Job {
    report: Mutex<JobReport>,
    progress: Arc<Progress>,
    instance_dir: Mutex<Option<PathBuf>>,
    /// Cancelled by [`PitrService::cancel`] or when the service stops.
    cancel: CancellationToken,
    /// Leave a scratch instance running privately at the end (see [`JobOptions`]).
    private: bool,
}

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
    catalog: Arc<Catalog>,
    index: Arc<Index>,
    archives: BTreeMap<String, Arc<Archive>>,
    statuses: BTreeMap<String, StatusCell>,
    store: Arc<BaseStore>,
    tools: Tools,
    cfg: PitrConfig,
    work_dir: PathBuf,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    seq: AtomicU32,
    cancel: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut b = vec![0u8; n];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> (i % 16 * 8)) as u8;
        }
    }
    hex::encode(b)
}

impl PitrService {
    /// Creates the service; marks jobs interrupted by a previous stop as failed.
    ///
    /// # Errors
    ///
    /// Catalog or object store failures.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        catalog: Arc<Catalog>,
        index: Arc<Index>,
        archives: BTreeMap<String, Arc<Archive>>,
        statuses: BTreeMap<String, StatusCell>,
        store: &snapshotter::StoreSettings,
        tools: Tools,
        cfg: PitrConfig,
        cancel: CancellationToken,
    ) -> anyhow::Result<Arc<PitrService>> {
        let store = Arc::new(BaseStore::open(store)?);
        for row in catalog.unfinished_pitr_jobs().await? {
            if let Ok(mut rep) = serde_json::from_str::<serde_json::Value>(&row.report) {
                rep["phase"] = "failed".into();
                rep["error"] = "interrupted: binlog-server stopped while the job ran".into();
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
    /// As [`plan`]; NotFound for an unknown source.
    pub async fn plan(
        &self,
        source: &str,
        target: &Target,
        base_id: Option<&str>,
    ) -> Result<Plan, PlanError> {
        let Some(archive) = self.archives.get(source) else {
            return Err(PlanError::NotFound(format!("no source named {source:?}")));
        };
        let p = plan(
            &self.catalog,
            &self.index,
            self.statuses.get(source),
            source,
            target,
            base_id,
        )
        .await?;
        // A file the catalog lists but the disk lost.
        for f in &p.files {
            let path = archive.dir.join(f);
            if !path.is_file() {
                return Err(PlanError::NoPlan(format!(
                    "binlog {f} in the range is missing from the archive ({} does not exist); \
                     this target cannot be restored until it is back",
                    path.display()
                )));
            }
        }
        Ok(p)
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
        let plan = self.plan(source, target, base_id).await?;
        if let Destination::Existing { datadir: None, .. } = &dest {
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
        } = &dest
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
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "pitr-{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            &random_hex(3)
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
            created_at: unix_now(),
            finished_at: None,
            restore_seconds: None,
            replay_seconds: None,
            restored: None,
            error: None,
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
        let me = self.clone();
        tokio::spawn(async move {
            let r = me.run(&job, dest, n).await;
            {
                let mut rep = lock(&job.report);
                rep.finished_at = Some(unix_now());
                match r {
                    Ok(()) => {
                        rep.phase = "done".into();
                        rep.step = String::new();
                    }
                    Err(e) => {
                        rep.phase = "failed".into();
                        rep.error = Some(e);
                    }
                }
            }
            me.save(&job).await;
        });
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

    async fn save(&self, job: &Job) {
        let rep = lock(&job.report).clone();
        let text = serde_json::to_string(&rep).unwrap_or_default();
        if let Err(e) = self
            .catalog
            .save_pitr_job(&rep.id, &rep.source, &rep.phase, &text)
            .await
        {
            warn!(job = %rep.id, error = %e, "could not save the PITR job in the catalog");
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
                instance::stop_pid(pid).map_err(PlanError::Internal)?;
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
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| PlanError::Internal(format!("remove {}: {e}", dir.display())))?;
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

    fn set(&self, job: &Job, f: impl FnOnce(&mut JobReport)) {
        f(&mut lock(&job.report));
    }

    async fn run(&self, job: &Arc<Job>, dest: Destination, n: u32) -> Result<(), String> {
        let plan = lock(&job.report).plan.clone();
        let id = lock(&job.report).id.clone();
        let t0 = Instant::now();
        let chain = snapshotter::restore::chain(&self.catalog, &plan.base.id).await?;
        let base = chain.last().cloned().ok_or("empty base chain")?;
        // Tools::find looks in PATH, /usr/sbin and /usr/bin and names the package.
        let mariadbd = self.tools.find("mariadbd")?;
        let dir = self.work_dir.join(&id);
        let (port, datadir_override, url) = match &dest {
            Destination::Scratch => (instance::free_port()?, None, None),
            Destination::Existing { url, datadir } => {
                (url.port, datadir.clone(), Some(url.clone()))
            }
        };
        let spec = InstanceSpec {
            dir: dir.clone(),
            port,
            server_id: self.cfg.server_id_base.wrapping_add(n),
            pitr: self.cfg.clone(),
            mariadbd,
        };
        instance::prepare_dir(&dir)?;
        *lock(&job.instance_dir) = Some(dir.clone());
        if let Some(d) = &datadir_override {
            // The caller's datadir: <dir>/data is a symlink to it.
            std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
            std::os::unix::fs::symlink(d, spec.datadir()).map_err(|e| {
                format!("link {} to {}: {e}", spec.datadir().display(), d.display())
            })?;
        }
        let run_instance = plan.base.method == "physical" || url.is_none();
        let r = self
            .restore_and_replay(
                job,
                &plan,
                &chain,
                &base,
                &spec,
                url.as_ref(),
                run_instance,
                t0,
            )
            .await;
        match r {
            Ok(inst) => {
                if let Some(inst) = inst {
                    let pid = inst.detach();
                    self.set(job, |r| {
                        if let Some(x) = r.restored.as_mut() {
                            x.pid = Some(pid);
                        }
                    });
                }
                info!(job = %id, "PITR done");
                Ok(())
            }
            Err((e, inst)) => {
                if let Some(inst) = inst {
                    let _ = inst.stop().await;
                }
                if datadir_override.is_none() && url.is_none() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                warn!(job = %id, error = %e, "PITR failed");
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn restore_and_replay(
        &self,
        job: &Arc<Job>,
        plan: &Plan,
        chain: &[BackupRow],
        base: &BackupRow,
        spec: &InstanceSpec,
        url: Option<&SourceUrl>,
        run_instance: bool,
        t0: Instant,
    ) -> Result<Option<Instance>, (String, Option<Instance>)> {
        let workdir = spec.dir.join("restore-work");
        let progress = job.progress.clone();
        let socket_ep = Endpoint {
            host: spec.socket().display().to_string(),
            port: 0,
            user: "root".into(),
            password: None,
            tls: None,
        };
        // 1. The base.
        let mut inst = None;
        if plan.base.method == "physical" {
            snapshotter::restore::restore_physical(
                &self.store,
                &self.tools,
                chain,
                &spec.datadir(),
                &workdir,
                &progress,
            )
            .await
            .map_err(|e| (format!("restore base {}: {e}", base.id), None))?;
            let _ = std::fs::remove_dir_all(&workdir);
            self.set(job, |r| r.step = "starting the restored instance".into());
            inst = Some(
                Instance::start(spec, true, Duration::from_secs(300))
                    .await
                    .map_err(|e| (e, None))?,
            );
        } else if run_instance {
            self.set(job, |r| r.step = "creating an empty instance".into());
            let install = self
                .tools
                .find("mariadb-install-db")
                .map_err(|e| (e, None))?;
            instance::install_db(&install, spec)
                .await
                .map_err(|e| (e, None))?;
            inst = Some(
                Instance::start(spec, true, Duration::from_secs(300))
                    .await
                    .map_err(|e| (e, None))?,
            );
            snapshotter::restore::restore_logical(
                &self.store,
                &self.tools,
                base,
                &socket_ep,
                &workdir,
                4,
                &progress,
            )
            .await
            .map_err(|e| (format!("restore base {}: {e}", base.id), inst.take()))?;
        } else if let Some(u) = url {
            snapshotter::restore::restore_logical(
                &self.store,
                &self.tools,
                base,
                &crate::backups::endpoint(u),
                &workdir,
                4,
                &progress,
            )
            .await
            .map_err(|e| (format!("restore base {}: {e}", base.id), None))?;
        }
        let _ = std::fs::remove_dir_all(&workdir);
        if job.cancel.is_cancelled() {
            return Err(("cancelled after the base was restored".into(), inst));
        }
        let restore_secs = t0.elapsed().as_secs_f64();
        self.set(job, |r| {
            r.restore_seconds = Some(restore_secs);
            r.progress.base_bytes_restored = progress.bytes();
        });

        // 2. Connect and position.
        let admin_url = match (run_instance, url) {
            (true, _) | (false, None) => instance::socket_url(&spec.socket()),
            (false, Some(u)) => u.clone(),
        };
        let mut conn = match instance::connect_admin(&admin_url).await {
            Ok(c) => c,
            Err(e) => return Err((format!("connect to the restored instance: {e}"), inst)),
        };
        macro_rules! q {
            ($sql:expr) => {
                match conn.query(AsRef::<str>::as_ref(&$sql)).await {
                    Ok(rs) => rs,
                    Err(e) => {
                        return Err((
                            format!(
                                "on the restored instance, {}: {e}",
                                redact_sql(AsRef::<str>::as_ref(&$sql))
                            ),
                            inst,
                        ))
                    }
                }
            };
        }
        if run_instance {
            q!("FLUSH PRIVILEGES");
        }
        q!("STOP SLAVE");
        q!("RESET SLAVE ALL");
        let use_gtid = plan.base.gtid_pos.is_some();
        if let Some(g) = &plan.base.gtid_pos {
            q!(format!(
                "SET GLOBAL gtid_slave_pos = '{}'",
                g.replace('\'', "")
            ));
        }

        // 3. Replay.
        let t1 = Instant::now();
        if plan.transactions > 0 {
            self.set(job, |r| {
                r.phase = "replaying".into();
                r.step = "replica starting".into();
            });
            self.save(job).await;
            let Some(archive) = self.archives.get(&plan.source).cloned() else {
                return Err((format!("source {} has no archive", plan.source), inst));
            };
            let creds = Credentials {
                user: format!("pitr_{}", random_hex(4)),
                password: random_hex(16),
            };
            let listener = match fake_primary::spawn(
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                archive,
                creds.clone(),
                Some(plan.stop.clone()),
                &self.cancel,
            )
            .await
            {
                Ok(l) => l,
                Err(e) => return Err((e.to_string(), inst)),
            };
            let start = if use_gtid {
                "MASTER_USE_GTID = slave_pos".to_string()
            } else {
                format!(
                    "MASTER_LOG_FILE = '{}', MASTER_LOG_POS = {}, MASTER_USE_GTID = no",
                    plan.base.binlog_file.replace('\'', ""),
                    plan.base.binlog_pos
                )
            };
            q!(format!(
                "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = '{}', \
                 MASTER_PASSWORD = '{}', MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = 1, {start}",
                listener.addr.port(),
                creds.user,
                creds.password
            ));
            q!("START SLAVE");
            self.set(job, |r| r.step = "applying".into());
            let mut last_save = Instant::now();
            loop {
                if job.cancel.is_cancelled() {
                    let why = if self.cancel.is_cancelled() {
                        "binlog-server is stopping"
                    } else {
                        "cancelled"
                    };
                    return Err((why.into(), inst));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                let st = q!("SHOW SLAVE STATUS");
                let gpos = q!("SELECT @@GLOBAL.gtid_slave_pos AS p")
                    .get(0, "p")
                    .unwrap_or_default()
                    .to_string();
                let field = |c: &str| st.get(0, c).unwrap_or_default().to_string();
                let exec_file = field("Relay_Master_Log_File");
                let exec_pos: u64 = field("Exec_Master_Log_Pos").parse().unwrap_or(0);
                let sql_errno = field("Last_SQL_Errno");
                if !sql_errno.is_empty() && sql_errno != "0" {
                    let pos = format!("{exec_file}:{exec_pos}");
                    let msg = format!(
                        "the replica's SQL thread stopped: error {sql_errno}: {}",
                        field("Last_SQL_Error")
                    );
                    self.set(job, |r| r.error_position = Some(pos));
                    return Err((msg, inst));
                }
                let io_errno = field("Last_IO_Errno");
                // 1236 is the fake primary refusing to serve; any other error with the IO
                // thread stopped (not "Connecting", which retries) is definite too, e.g.
                // equal server ids or a refused account.
                let io_stopped =
                    field("Slave_IO_Running") == "No" && !io_errno.is_empty() && io_errno != "0";
                if io_errno == "1236" || io_stopped {
                    let served = lock(&listener.stats.last_error)
                        .clone()
                        .filter(|_| io_errno == "1236");
                    let msg = format!(
                        "the replica's IO thread stopped: {}",
                        served.unwrap_or_else(|| format!(
                            "error {io_errno}: {}",
                            field("Last_IO_Error")
                        ))
                    );
                    self.set(job, |r| {
                        r.error_position = Some(format!(
                            "{}:{}",
                            field("Master_Log_File"),
                            field("Read_Master_Log_Pos")
                        ))
                    });
                    return Err((msg, inst));
                }
                // Progress.
                let applied_bytes = bytes_between(plan, &exec_file, exec_pos, self).await;
                let applied_txns = match (&plan.end_gtid, use_gtid) {
                    (Some(end), true) => self.applied_by_gtid(plan, end, &gpos).await,
                    _ => 0,
                };
                let secs = t1.elapsed().as_secs_f64().max(0.001);
                let idle = field("Slave_SQL_Running_State").contains("has read all relay log")
                    || (field("Master_Log_File") == exec_file
                        && field("Read_Master_Log_Pos") == field("Exec_Master_Log_Pos"));
                let reached = match (&plan.end_gtid, use_gtid) {
                    (Some(end), true) => gtid_reached(&gpos, end),
                    _ => exec_file == plan.stop.file && exec_pos >= plan.stop.pos,
                };
                self.set(job, |r| {
                    let p = &mut r.progress;
                    p.bytes_applied = applied_bytes.min(plan.bytes);
                    p.transactions_applied = applied_txns.min(plan.transactions);
                    p.bytes_per_second = p.bytes_applied as f64 / secs;
                    p.transactions_per_second = p.transactions_applied as f64 / secs;
                    p.eta_seconds = (p.bytes_per_second > 0.0).then(|| {
                        plan.bytes.saturating_sub(p.bytes_applied) as f64 / p.bytes_per_second
                    });
                    p.replica_position = Some(format!("{exec_file}:{exec_pos}"));
                });
                if reached && idle && listener.stats.reached_stop.load(Ordering::Relaxed) {
                    break;
                }
                if last_save.elapsed() > Duration::from_secs(10) {
                    self.save(job).await;
                    last_save = Instant::now();
                }
            }
            q!("STOP SLAVE");
            q!("RESET SLAVE ALL");
            listener.stop();
            self.set(job, |r| {
                r.progress.transactions_applied = plan.transactions;
                r.progress.bytes_applied = plan.bytes;
                r.progress.eta_seconds = Some(0.0);
            });
        }
        let replay_secs = t1.elapsed().as_secs_f64();
        let gpos = q!("SELECT @@GLOBAL.gtid_slave_pos AS p")
            .get(0, "p")
            .map(str::to_string);

        // 4. Serve it.
        let restored = if run_instance && job.private {
            self.set(job, |r| r.step = String::new());
            Restored {
                address: String::new(),
                socket: Some(spec.socket().display().to_string()),
                datadir: Some(spec.datadir().display().to_string()),
                pid: inst.as_ref().map(|i| i.pid),
                gtid_slave_pos: gpos,
            }
        } else if run_instance {
            self.set(job, |r| {
                r.step = "restarting the instance on its port".into()
            });
            let _ = conn.query("SHUTDOWN").await;
            drop(conn);
            if let Some(i) = inst.take() {
                i.stop().await.map_err(|e| (e, None))?;
            }
            let i = Instance::start(spec, false, Duration::from_secs(300))
                .await
                .map_err(|e| (e, None))?;
            let r = Restored {
                address: format!("127.0.0.1:{}", spec.port),
                socket: Some(spec.socket().display().to_string()),
                datadir: Some(spec.datadir().display().to_string()),
                pid: Some(i.pid),
                gtid_slave_pos: gpos,
            };
            inst = Some(i);
            r
        } else {
            let u = url.cloned();
            Restored {
                address: u
                    .map(|u| format!("{}:{}", u.host, u.port))
                    .unwrap_or_default(),
                socket: None,
                datadir: None,
                pid: None,
                gtid_slave_pos: gpos,
            }
        };
        self.set(job, |r| {
            r.replay_seconds = Some(replay_secs);
            r.restored = Some(restored);
        });
        Ok(inst)
    }

    async fn applied_by_gtid(&self, plan: &Plan, end: &str, gpos: &str) -> u64 {
        let Ok(Gtid::MariaDb { domain, .. }) = end.parse::<Gtid>() else {
            return 0;
        };
        let cur = gpos
            .split(',')
            .filter_map(|p| p.trim().parse::<Gtid>().ok())
            .find(|g| matches!(g, Gtid::MariaDb { domain: d, .. } if *d == domain));
        let Some(cur) = cur else { return 0 };
        let (idx, src) = (self.index.clone(), plan.source.clone());
        let e = tokio::task::spawn_blocking(move || idx.find_gtid(&src, &cur)).await;
        match e {
            Ok(Ok(Some(e))) => (e.ordinal + 1).saturating_sub(plan.first_ordinal),
            _ => 0,
        }
    }
}

/// True when the GTID position `gpos` ("0-1-100,1-2-5") includes `end` (same domain,
/// sequence at least `end`'s).
pub fn gtid_reached(gpos: &str, end: &str) -> bool {
    let Ok(Gtid::MariaDb { domain, seq, .. }) = end.parse::<Gtid>() else {
        return false;
    };
    gpos.split(',')
        .filter_map(|p| p.trim().parse::<Gtid>().ok())
        .any(|g| matches!(g, Gtid::MariaDb { domain: d, seq: s, .. } if d == domain && s >= seq))
}

async fn bytes_between(plan: &Plan, file: &str, pos: u64, svc: &PitrService) -> u64 {
    let mut total = 0u64;
    let files = svc
        .catalog
        .list_files(&plan.source)
        .await
        .unwrap_or_default();
    for name in &plan.files {
        let size = files
            .iter()
            .find(|f| &f.name == name)
            .map(|f| f.size)
            .unwrap_or(0);
        let from = if *name == plan.base.binlog_file {
            plan.base.binlog_pos
        } else {
            0
        };
        if name == file {
            total += pos.saturating_sub(from);
            return total;
        }
        if binlog_order(name) > binlog_order(file) {
            return total;
        }
        total += size.saturating_sub(from);
    }
    total
}

fn redact_sql(sql: &str) -> String {
    match sql.to_ascii_uppercase().find("MASTER_PASSWORD") {
        Some(i) => format!("{} MASTER_PASSWORD = '***' ...", &sql[..i]),
        None => sql.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_times_parse_in_utc_or_with_a_zone() {
        let t = parse_time("2026-11-21T14:03:27Z").unwrap();
        assert_eq!(parse_time("2026-11-21 14:03:27").unwrap(), t);
        assert_eq!(parse_time("2026-11-21T16:03:27+02:00").unwrap(), t);
        assert_eq!(parse_time("2026-11-21 16:03:27 +02:00").unwrap(), t);
        assert_eq!(parse_time(&format!("@{t}")).unwrap(), t);
        assert_eq!(fmt_time(t), "2026-11-21T14:03:27Z");
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-40 00:00:00").is_err());
    }

    #[test]
    fn gtid_positions_reach_their_end() {
        assert!(gtid_reached("0-1-100", "0-1-100"));
        assert!(gtid_reached("1-2-3,0-1-101", "0-1-100"));
        assert!(!gtid_reached("0-1-99", "0-1-100"));
        assert!(!gtid_reached("1-1-500", "0-1-100"));
        assert!(!gtid_reached("", "0-1-1"));
    }
}
