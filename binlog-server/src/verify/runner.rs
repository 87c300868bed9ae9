//! Restore verification runs (issue 5; seed 001's weekly check, seed 004's recovery
//! records): restore a base, replay the archive, chain to the primary, compare the data,
//! measure the RTO, report.
//!
//! # A run
//!
//! 1. **restore**: the base is restored into a scratch instance by a PITR job to the
//!    archive's last transaction ([`crate::pitr`]; private instance: socket only,
//!    `--skip-grant-tables`, in a 0700 directory);
//! 2. **binlog verification**: that same job replays every archived transaction after
//!    the base through a job-private fake primary, which re-checks each event's CRC32;
//!    an SQL-thread error or a damaged, missing or FAIL file fails the run with the
//!    reason and "file:pos". A file found damaged while serving is handed to the
//!    source's checker, so the archive's own state for it becomes FAIL;
//! 3. **chain verification**: `CHANGE MASTER TO` the live primary with `MASTER_USE_GTID
//!    = slave_pos`; passes when `gtid_slave_pos` reaches the primary's
//!    `gtid_binlog_pos` read when the chain started and `Seconds_Behind_Master` is 0: the
//!    archive joins the primary with no gap. Fails at `stop_at` (scheduled runs) or
//!    after `chain_timeout`. The RTO is the time from the start of the run to here;
//! 4. **data checks** (why this is sound): the replica is stopped (position R). On the
//!    primary, `START TRANSACTION WITH CONSISTENT SNAPSHOT` opens an InnoDB read view
//!    and MariaDB reports the binlog offset that matches it exactly
//!    (`Binlog_snapshot_file` / `Binlog_snapshot_position`, taken under the same lock as
//!    the read view); `BINLOG_GTID_POS(file, pos)` turns it into the GTID position X.
//!    Inside that snapshot the service reads each InnoDB table's row count and an
//!    order-independent checksum (`BIT_XOR(CRC32(CONCAT_WS('#', columns…, null
//!    flags)))`, the pt-table-checksum construction). X ≥ R because the primary only
//!    moves forward, so `START SLAVE UNTIL master_gtid_pos = X` brings the replica to
//!    exactly the transactions the snapshot saw; the same two values are then read on
//!    the replica and compared. Every table gets `CHECK TABLE` on the replica too.
//!    Non-transactional tables (MyISAM, Aria...) have no read view: they get CHECK TABLE
//!    and are reported "not compared";
//! 5. **clean-up**: the replication configuration is removed and the scratch instance
//!    stopped and deleted, unless `keep_instance`.
//!
//! Runs are rows of the catalog's `verifications` table with the JSON report; a run left
//! "running" by a stopped process is marked cancelled at start. MariaDB primaries only:
//! the scratch instance is a mariadbd, which cannot chain to a MySQL 8 primary; for a
//! MySQL source, and for an archive-only source (`capture = false`, no live primary), the
//! chain and data phases are reported skipped with that reason.

use crate::util::lock;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::verify::report::{BaseInfo, Check, Outcome, RangeInfo, Report};
use crate::verify::schedule::{self, Candidate, Decision, Running};
use catalog::backups::BackupState;
use catalog::verify::VerificationRow;
use catalog::Catalog;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::archive::index::Index;
use crate::config::{Source, TlsMode};
use crate::replay::instance;
use crate::replay::pitr::{self, Destination, JobOptions, PitrService, Target};
use crate::status::Metrics;
use mysql_wire::conn::Conn;

/// Why a verification request was refused.
#[derive(Debug)]
pub enum VerifyError {
    /// Unknown source or run (404).
    NotFound(String),
    /// A run of that source is going on (409).
    Busy(String),
    /// Catalog failure (500).
    Internal(String),
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::NotFound(m) | VerifyError::Busy(m) | VerifyError::Internal(m) => {
                f.write_str(m)
            }
        }
    }
}

/// Which base a run verifies.
#[derive(Debug, Clone)]
enum Pick {
    /// The newest COMPLETED full base of the last week, found when the run starts.
    Newest,
    /// The one the schedule chose.
    Base(String),
    /// The schedule found none: the run records "no base to verify".
    NoBase,
}

struct RunHandle {
    id: String,
    base_id: Option<String>,
    started_at: i64,
    cancel: CancellationToken,
    report: Arc<Mutex<Report>>,
    done: Arc<tokio::sync::Notify>,
}

/// Runs verifications, on request and on each source's weekly schedule.
pub struct VerifyService {
    catalog: Arc<Catalog>,
    index: Arc<Index>,
    pitr: Arc<PitrService>,
    metrics: Arc<Metrics>,
    sources: BTreeMap<String, Source>,
    running: Mutex<HashMap<String, RunHandle>>,
    cancel: CancellationToken,
}

/// A failed phase: what, where.
struct Fail {
    error: String,
    position: Option<String>,
}

impl From<String> for Fail {
    fn from(error: String) -> Fail {
        Fail {
            error,
            position: None,
        }
    }
}

/// Single-quoted SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Backquoted identifier.
fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// True when MariaDB GTID position `have` ("0-1-5,1-2-9") has reached every domain's
/// sequence number in `want`.
pub fn position_reached(have: &str, want: &str) -> bool {
    want.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .all(|g| pitr::gtid_reached(have, g))
}

impl VerifyService {
    /// Creates the service; runs left "running" by a previous process become cancelled.
    ///
    /// # Errors
    ///
    /// Catalog failures.
    pub async fn open(
        catalog: Arc<Catalog>,
        index: Arc<Index>,
        pitr: Arc<PitrService>,
        metrics: Arc<Metrics>,
        sources: &[Source],
        cancel: CancellationToken,
    ) -> anyhow::Result<Arc<VerifyService>> {
        let stale = catalog
            .cancel_running_verifications("interrupted: binlog-server stopped during the run")
            .await?;
        for id in stale {
            warn!(run = %id, "verification interrupted by a restart; marked cancelled");
        }
        Ok(Arc::new(VerifyService {
            catalog,
            index,
            pitr,
            metrics,
            sources: sources
                .iter()
                .map(|s| (s.name.clone(), s.clone()))
                .collect(),
            running: Mutex::new(HashMap::new()),
            cancel,
        }))
    }

    /// Source names, in order.
    pub fn source_names(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    /// Starts a run of `source` now ("manual"); `keep` overrides `keep_instance`.
    /// Returns the initial report.
    ///
    /// # Errors
    ///
    /// NotFound for an unknown source; Busy while a run of it goes on.
    pub async fn start(
        self: &Arc<Self>,
        source: &str,
        keep: Option<bool>,
    ) -> Result<Report, VerifyError> {
        let src = self
            .sources
            .get(source)
            .ok_or_else(|| VerifyError::NotFound(format!("no source named {source:?}")))?;
        let keep = keep.unwrap_or(src.verify.keep_instance);
        self.launch(source, "manual", Pick::Newest, keep, None)
    }

    fn launch(
        self: &Arc<Self>,
        source: &str,
        trigger: &str,
        pick: Pick,
        keep: bool,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Report, VerifyError> {
        let base_id = match &pick {
            Pick::Base(id) => Some(id.clone()),
            Pick::Newest | Pick::NoBase => None,
        };
        let started_at = catalog::unix_now();
        let id = format!(
            "verify-{source}-{}-{:04x}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            rand_u16()
        );
        let report = Arc::new(Mutex::new(Report::new(&id, source, trigger, started_at)));
        let cancel = self.cancel.child_token();
        let done = Arc::new(tokio::sync::Notify::new());
        {
            // Checked and taken under one lock, so that two requests cannot both start.
            let mut running = lock(&self.running);
            if let Some(r) = running.get(source) {
                return Err(VerifyError::Busy(format!(
                    "verification {} of {source} is still running",
                    r.id
                )));
            }
            running.insert(
                source.to_string(),
                RunHandle {
                    id: id.clone(),
                    base_id: base_id.clone(),
                    started_at,
                    cancel: cancel.clone(),
                    report: report.clone(),
                    done: done.clone(),
                },
            );
        }
        let me = self.clone();
        let source = source.to_string();
        let initial = lock(&report).clone();
        tokio::spawn(async move {
            me.save(&report).await;
            me.run(&source, &report, &cancel, pick, keep, deadline)
                .await;
            {
                let mut r = lock(&report);
                r.finished_at = Some(catalog::unix_now());
                if r.outcome == Outcome::Running {
                    r.outcome = if r.error.is_some() {
                        Outcome::Failed
                    } else {
                        Outcome::Passed
                    };
                }
            }
            me.save(&report).await;
            me.record_metrics(&lock(&report).clone());
            let mut running = lock(&me.running);
            if running
                .get(&source)
                .is_some_and(|h| h.id == lock(&report).id)
            {
                running.remove(&source);
            }
            done.notify_waiters();
            let r = lock(&report).clone();
            info!(run = %r.id, source = %r.source, outcome = r.outcome.as_str(), rto = ?r.rto_seconds, "verification ended");
        });
        Ok(initial)
    }

    fn record_metrics(&self, r: &Report) {
        let l = Metrics::label(&r.source);
        let code = match r.outcome {
            Outcome::Passed => 1,
            Outcome::Failed => 0,
            Outcome::NoBase => -1,
            Outcome::Cancelled | Outcome::Running | Outcome::Skipped => -2,
        };
        self.metrics.verify_last_result.get_or_create(&l).set(code);
        if r.outcome == Outcome::Passed {
            self.metrics
                .verify_last_success
                .get_or_create(&l)
                .set(r.finished_at.unwrap_or_else(catalog::unix_now));
        }
        if let Some(rto) = r.rto_seconds {
            self.metrics.verify_last_rto.get_or_create(&l).set(rto);
        }
    }

    async fn save(&self, report: &Arc<Mutex<Report>>) {
        let r = lock(report).clone();
        let row = VerificationRow {
            id: r.id.clone(),
            source: r.source.clone(),
            base_id: r.base.as_ref().map(|b| b.id.clone()),
            trigger_kind: r.trigger.clone(),
            state: r.outcome.as_str().into(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            rto_seconds: r.rto_seconds,
            error: r.error.clone(),
            report: serde_json::to_string(&r).unwrap_or_default(),
        };
        if let Err(e) = self.catalog.save_verification(&row).await {
            warn!(run = %r.id, error = %e, "could not save the verification in the catalog");
        }
    }

    /// Run `id`'s report (live, or from the catalog).
    ///
    /// # Errors
    ///
    /// NotFound; Internal for catalog failures.
    pub async fn get(&self, id: &str) -> Result<Report, VerifyError> {
        if let Some(h) = lock(&self.running).values().find(|h| h.id == id) {
            return Ok(lock(&h.report).clone());
        }
        let row = self
            .catalog
            .get_verification(id)
            .await
            .map_err(|e| VerifyError::Internal(e.to_string()))?
            .ok_or_else(|| VerifyError::NotFound(format!("no verification {id:?}")))?;
        serde_json::from_str(&row.report).map_err(|e| VerifyError::Internal(e.to_string()))
    }

    /// Reports of runs started at or after `since`, newest first (at most `limit`),
    /// running ones live.
    ///
    /// # Errors
    ///
    /// Internal for catalog failures.
    pub async fn list(
        &self,
        source: Option<&str>,
        since: i64,
        limit: u32,
    ) -> Result<Vec<Report>, VerifyError> {
        let rows = self
            .catalog
            .list_verifications(source, since, limit)
            .await
            .map_err(|e| VerifyError::Internal(e.to_string()))?;
        let live: HashMap<String, Report> = lock(&self.running)
            .values()
            .map(|h| (h.id.clone(), lock(&h.report).clone()))
            .collect();
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                live.get(&row.id)
                    .cloned()
                    .or_else(|| serde_json::from_str(&row.report).ok())
            })
            .collect())
    }

    /// Starts one scheduler task per source whose `[source.verify]` is enabled.
    pub fn spawn_schedulers(self: &Arc<Self>) {
        for (name, src) in &self.sources {
            let Some(sched) = src.verify.schedule.clone().filter(|s| s.enabled) else {
                continue;
            };
            let me = self.clone();
            let name = name.clone();
            tokio::spawn(async move {
                loop {
                    let now = chrono::Utc::now();
                    let next = sched.next_start(now);
                    info!(source = %name, next = %next, "next scheduled verification");
                    let wait = (next - now).to_std().unwrap_or(Duration::from_secs(1));
                    tokio::select! {
                        _ = me.cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    me.scheduled(&name, &sched, catalog::unix_now()).await;
                }
            });
        }
    }

    /// What the schedule does at `now` for `source`: applies seed 001's rules
    /// ([`schedule::decide`]) and acts on them. Returns the decision.
    pub async fn scheduled(
        self: &Arc<Self>,
        source: &str,
        sched: &schedule::Schedule,
        now: i64,
    ) -> Decision {
        let bases = candidates(&self.catalog.list_backups(source).await.unwrap_or_default());
        let running = lock(&self.running).get(source).map(|h| Running {
            id: h.id.clone(),
            base_id: h.base_id.clone(),
            started_at: h.started_at,
        });
        let d = schedule::decide(now, &bases, running.as_ref());
        let stop = match &d {
            Decision::NoBase { stop } | Decision::Run { stop, .. } => stop.clone(),
            Decision::Skip { reason, .. } => {
                info!(source, reason = %reason, "scheduled verification skipped");
                None
            }
        };
        if let Some(id) = stop {
            self.stop_run(source, &id).await;
        }
        let deadline = chrono::DateTime::from_timestamp(now, 0).and_then(|t| sched.deadline(t));
        match &d {
            // The stale run (if any) was stopped above and has left the table; a run
            // that did not stop within 10 minutes, or one started by hand meanwhile,
            // makes this one Busy: it is logged and skipped.
            Decision::Run { .. } | Decision::NoBase { .. } => {
                let base = match &d {
                    Decision::Run { base_id, .. } => Pick::Base(base_id.clone()),
                    _ => Pick::NoBase,
                };
                if let Err(e) = self.launch(source, "schedule", base, sched.keep_instance, deadline)
                {
                    warn!(source, error = %e, "scheduled verification not started");
                }
            }
            Decision::Skip { .. } => {}
        }
        d
    }

    /// Cancels run `id` of `source` and waits (up to 10 minutes) for it to end.
    async fn stop_run(&self, source: &str, id: &str) {
        let handle = lock(&self.running)
            .get(source)
            .filter(|h| h.id == id)
            .map(|h| (h.cancel.clone(), h.done.clone()));
        if let Some((cancel, done)) = handle {
            warn!(source, run = id, "stopping a stale verification run");
            let wait = done.notified();
            cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(600), wait).await;
        }
    }

    fn set(report: &Arc<Mutex<Report>>, f: impl FnOnce(&mut Report)) {
        f(&mut lock(report));
    }

    fn phase(
        report: &Arc<Mutex<Report>>,
        name: &str,
        f: impl FnOnce(&mut crate::verify::report::Phase),
    ) {
        if let Some(p) = lock(report).phase_mut(name) {
            f(p);
        }
    }

    /// Ends the run as failed in `phase`.
    fn fail(report: &Arc<Mutex<Report>>, phase: &str, t: Instant, f: Fail) {
        Self::phase(report, phase, |p| {
            p.outcome = Outcome::Failed;
            p.seconds = t.elapsed().as_secs_f64();
            p.detail = f.error.clone();
        });
        // The outcome stays "running" until clean-up is over; the run's end turns an
        // error into "failed".
        Self::set(report, |r| {
            r.error = Some(format!("{phase}: {}", f.error));
            r.error_position = f.position;
        });
    }

    async fn run(
        &self,
        source: &str,
        report: &Arc<Mutex<Report>>,
        cancel: &CancellationToken,
        pick: Pick,
        keep: bool,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let t0 = Instant::now();
        let Some(src) = self.sources.get(source).cloned() else {
            Self::set(report, |r| {
                r.error = Some(format!("no source named {source:?} in the configuration"))
            });
            return;
        };
        // The base: the one the schedule chose, or the newest COMPLETED base of the week.
        let backups = match self.catalog.list_backups(source).await {
            Ok(b) => b,
            Err(e) => {
                Self::fail(report, "restore", t0, format!("catalog: {e}").into());
                return;
            }
        };
        let now = catalog::unix_now();
        let base_id = match pick {
            Pick::Base(id) => Some(id),
            Pick::NoBase => None,
            Pick::Newest => match schedule::decide(now, &candidates(&backups), None) {
                Decision::Run { base_id, .. } => Some(base_id),
                _ => None,
            },
        };
        let Some(base) = base_id.and_then(|id| backups.iter().find(|b| b.id == id).cloned()) else {
            let newest = backups
                .iter()
                .filter(|b| b.state == BackupState::Completed)
                .map(|b| b.finished_at.unwrap_or(b.started_at))
                .max();
            let why = match newest {
                Some(t) => format!(
                    "no base to verify: the newest COMPLETED base of {source} is {:.1} days old (more than 7)",
                    (now - t) as f64 / 86400.0
                ),
                None => format!("no base to verify: {source} has no COMPLETED base"),
            };
            Self::set(report, |r| {
                r.outcome = Outcome::NoBase;
                r.error = Some(why);
            });
            return;
        };
        Self::set(report, |r| {
            r.base = Some(BaseInfo {
                id: base.id.clone(),
                method: base.method.clone(),
                consistent_at: base.consistent_at,
                age_seconds: base.consistent_at.map(|t| now - t),
                gtid_pos: base.gtid_pos.clone(),
                binlog_position: base
                    .binlog_file
                    .as_ref()
                    .map(|f| format!("{f}:{}", base.binlog_pos.unwrap_or(0))),
                bytes: base.bytes,
            })
        });

        // 1 + 2: restore and replay the archive to its end, as a private PITR job.
        let job = match self
            .restore_and_replay(source, &base, report, cancel, t0)
            .await
        {
            Some(j) => j,
            None => {
                self.cleanup(report, None, keep).await;
                return;
            }
        };
        let socket = job.1.clone();
        let job_id = job.0.clone();
        // 3. Chain verification.
        let t = Instant::now();
        let mut replica = match connect_socket(&socket).await {
            Ok(c) => c,
            Err(e) => {
                Self::fail(report, "chain verification", t, e.into());
                self.cleanup(report, Some((&job_id, &socket)), keep).await;
                return;
            }
        };
        let chained = self
            .chain(&src, &mut replica, report, cancel, deadline, t)
            .await;
        match chained {
            Ok(Some((detail, mut primary))) => {
                let rto = t0.elapsed().as_secs_f64();
                Self::phase(report, "chain verification", |p| {
                    p.outcome = Outcome::Passed;
                    p.seconds = t.elapsed().as_secs_f64();
                    p.detail = detail;
                });
                Self::set(report, |r| r.rto_seconds = Some(rto));
                // 4. Data checks.
                let t = Instant::now();
                Self::phase(report, "data checks", |p| {
                    p.outcome = Outcome::Running;
                    p.started_at = Some(catalog::unix_now());
                });
                match self.data_checks(&mut primary, &mut replica, report).await {
                    Ok(detail) => Self::phase(report, "data checks", |p| {
                        p.outcome = Outcome::Passed;
                        p.seconds = t.elapsed().as_secs_f64();
                        p.detail = detail;
                    }),
                    Err(f) => Self::fail(report, "data checks", t, f),
                }
            }
            Ok(None) => {
                // Skipped (MySQL primary): the RTO is the replayed instance.
                let rto = t0.elapsed().as_secs_f64();
                Self::set(report, |r| r.rto_seconds = Some(rto));
            }
            Err(f) => {
                if cancel.is_cancelled() {
                    Self::set(report, |r| {
                        r.outcome = Outcome::Cancelled;
                        r.error = Some(f.error.clone());
                    });
                } else {
                    Self::fail(report, "chain verification", t, f);
                }
            }
        }
        drop(replica);
        self.cleanup(report, Some((&job_id, &socket)), keep).await;
    }

    /// Phases 1 and 2. Returns (PITR job id, socket) when both passed.
    async fn restore_and_replay(
        &self,
        source: &str,
        base: &catalog::backups::BackupRow,
        report: &Arc<Mutex<Report>>,
        cancel: &CancellationToken,
        t0: Instant,
    ) -> Option<(String, String)> {
        Self::phase(report, "restore", |p| {
            p.outcome = Outcome::Running;
            p.started_at = Some(catalog::unix_now());
        });
        // The archive's end: its last indexed transaction, or the base itself when
        // nothing was written after it.
        let last = self.index.last(source).ok().flatten().and_then(|t| t.gtid);
        let base_gtid = base.gtid_pos.clone().unwrap_or_default();
        let target_text = match last {
            Some(g) if !position_reached(&base_gtid, &g) => g,
            _ => base_gtid
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let target = match target_text.parse() {
            Ok(g) => Target::Gtid(g),
            Err(_) => {
                Self::fail(
                    report,
                    "restore",
                    t0,
                    format!(
                        "the archive of {source} has no GTID to replay to (base at {base_gtid:?})"
                    )
                    .into(),
                );
                return None;
            }
        };
        let started = self
            .pitr
            .start_with(
                source,
                &target,
                Some(&base.id),
                Destination::Scratch,
                JobOptions { private: true },
            )
            .await;
        let job = match started {
            Ok(j) => j,
            Err(e) => {
                Self::phase(report, "restore", |p| {
                    p.outcome = Outcome::Skipped;
                    p.detail = "not started: no replay plan".into();
                });
                Self::fail(
                    report,
                    "binlog verification",
                    t0,
                    Fail {
                        position: e.file().map(str::to_string),
                        error: e.to_string(),
                    },
                );
                return None;
            }
        };
        let plan = job.plan.clone();
        Self::set(report, |r| {
            r.pitr_job = Some(job.id.clone());
            r.range = Some(RangeInfo {
                files: plan.files.clone(),
                bytes: plan.bytes,
                transactions: plan.transactions,
                end_gtid: plan.end_gtid.clone(),
            });
        });
        let mut cancelled = false;
        let j = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if cancel.is_cancelled() && !cancelled {
                let _ = self.pitr.cancel(&job.id);
                cancelled = true;
            }
            let Ok(j) = self.pitr.get(&job.id).await else {
                continue;
            };
            let phase = j["phase"].as_str().unwrap_or_default().to_string();
            if phase == "replaying" {
                Self::phase(report, "restore", |p| {
                    if p.outcome == Outcome::Running {
                        p.outcome = Outcome::Passed;
                        p.seconds = j["restore_seconds"].as_f64().unwrap_or(0.0);
                        p.bytes = base.bytes;
                        p.detail = format!("base {} restored ({})", base.id, base.method);
                    }
                });
                Self::phase(report, "binlog verification", |p| {
                    p.outcome = Outcome::Running;
                    p.detail = format!(
                        "{} of {} transactions applied",
                        j["progress"]["transactions_applied"], plan.transactions
                    );
                });
            }
            if phase == "done" || phase == "failed" {
                break j;
            }
        };
        let restore_secs = j["restore_seconds"].as_f64();
        Self::phase(report, "restore", |p| {
            p.started_at.get_or_insert(catalog::unix_now());
            if let Some(s) = restore_secs {
                p.outcome = Outcome::Passed;
                p.seconds = s;
                p.bytes = base.bytes;
                p.detail = format!("base {} restored ({})", base.id, base.method);
            }
        });
        let error = j["error"].as_str().map(str::to_string);
        if cancelled {
            Self::set(report, |r| {
                r.outcome = Outcome::Cancelled;
                r.error = Some("stopped: a newer run replaced it".into());
            });
            let _ = self.pitr.remove(&job.id).await;
            return None;
        }
        match (restore_secs, error) {
            (None, Some(e)) => {
                Self::fail(report, "restore", t0, e.into());
                let _ = self.pitr.remove(&job.id).await;
                None
            }
            (Some(restore), Some(e)) => {
                let position = j["error_position"].as_str().map(str::to_string);
                // A failed job has no replay_seconds: its run time less the restore.
                let ran =
                    j["finished_at"].as_i64().unwrap_or(0) - j["created_at"].as_i64().unwrap_or(0);
                let replay = j["replay_seconds"]
                    .as_f64()
                    .unwrap_or((ran as f64 - restore).max(0.0));
                Self::fail(
                    report,
                    "binlog verification",
                    Instant::now(),
                    Fail { error: e, position },
                );
                Self::phase(report, "binlog verification", |p| p.seconds = replay);
                let _ = self.pitr.remove(&job.id).await;
                None
            }
            _ => {
                let replay = j["replay_seconds"].as_f64().unwrap_or(0.0);
                Self::phase(report, "binlog verification", |p| {
                    p.outcome = Outcome::Passed;
                    p.started_at = Some(catalog::unix_now() - replay as i64);
                    p.seconds = replay;
                    p.bytes = plan.bytes;
                    p.detail = format!(
                        "{} transactions ({} files) replayed from the archive through the fake primary, every event's CRC32 re-checked; gtid_slave_pos {}",
                        plan.transactions,
                        plan.files.len(),
                        j["restored"]["gtid_slave_pos"].as_str().unwrap_or("?")
                    );
                });
                let socket = j["restored"]["socket"].as_str().map(str::to_string);
                match socket {
                    Some(s) => Some((job.id.clone(), s)),
                    None => {
                        Self::fail(
                            report,
                            "binlog verification",
                            Instant::now(),
                            "the PITR job reported no socket".to_string().into(),
                        );
                        None
                    }
                }
            }
        }
    }

    /// Phase 3. `Ok(Some((detail, session on the primary)))` caught up, the session
    /// kept for the data checks; `Ok(None)` skipped (MySQL primary, archive-only source).
    async fn chain(
        &self,
        src: &Source,
        replica: &mut Conn,
        report: &Arc<Mutex<Report>>,
        cancel: &CancellationToken,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
        t: Instant,
    ) -> Result<Option<(String, Conn)>, Fail> {
        let skip = |why: String| {
            for name in ["chain verification", "data checks"] {
                Self::phase(report, name, |p| {
                    p.outcome = Outcome::Skipped;
                    p.detail = why.clone();
                });
            }
        };
        if !src.capture {
            skip(
                "skipped: an archive-only source (capture = false) has no live primary to chain to"
                    .into(),
            );
            return Ok(None);
        }
        Self::phase(report, "chain verification", |p| {
            p.outcome = Outcome::Running;
            p.started_at = Some(catalog::unix_now());
        });
        let mut primary = instance::connect_admin(&src.verify.check_url)
            .await
            .map_err(|e| {
                format!(
                    "connect to the primary {}: {e}",
                    src.verify.check_url.redacted()
                )
            })?;
        if !binlog::is_mariadb_version(primary.server_version()) {
            skip(format!(
                "skipped: the primary runs {} (MySQL); a MariaDB scratch instance cannot chain to it",
                primary.server_version()
            ));
            return Ok(None);
        }
        let u = &src.url;
        let ssl = if u.tls == TlsMode::Disabled {
            String::new()
        } else {
            ", MASTER_SSL = 1".into()
        };
        let sql = format!(
            "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, MASTER_PASSWORD = {}, \
             MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = 1{ssl}",
            lit(&u.host),
            u.port,
            lit(&u.user),
            lit(u.password.as_deref().unwrap_or(""))
        );
        q(replica, &sql, "CHANGE MASTER TO the primary").await?;
        q(replica, "START SLAVE", "START SLAVE").await?;
        let target = value(&mut primary, "SELECT @@GLOBAL.gtid_binlog_pos").await?;
        let limit = match deadline {
            Some(d) => (d - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => src.verify.chain_timeout,
        };
        loop {
            if cancel.is_cancelled() {
                return Err("stopped: a newer run replaced it".to_string().into());
            }
            let st = replica
                .query("SHOW SLAVE STATUS")
                .await
                .map_err(|e| format!("SHOW SLAVE STATUS: {e}"))?;
            let f = |c: &str| st.get(0, c).unwrap_or_default().to_string();
            let pos = format!(
                "{}:{}",
                f("Relay_Master_Log_File"),
                f("Exec_Master_Log_Pos")
            );
            // An IO thread still "Connecting" retries by itself (the primary may be
            // restarting); stopped with an error, it is definite.
            for (errno, err, what, running) in [
                (
                    "Last_SQL_Errno",
                    "Last_SQL_Error",
                    "SQL",
                    "Slave_SQL_Running",
                ),
                ("Last_IO_Errno", "Last_IO_Error", "IO", "Slave_IO_Running"),
            ] {
                let n = f(errno);
                if !n.is_empty() && n != "0" && f(running) == "No" {
                    return Err(Fail {
                        error: format!(
                            "the replica's {what} thread stopped on the primary's stream: error {n}: {}",
                            f(err)
                        ),
                        position: Some(pos),
                    });
                }
            }
            let gpos = value(replica, "SELECT @@GLOBAL.gtid_slave_pos").await?;
            if position_reached(&gpos, &target) && f("Seconds_Behind_Master") == "0" {
                let detail = format!(
                    "chained to the primary by GTID and caught up: gtid_slave_pos {gpos} reached the primary's {target} (read when the chain started)"
                );
                return Ok(Some((detail, primary)));
            }
            if t.elapsed() >= limit {
                return Err(Fail {
                    error: format!(
                        "not caught up with the primary by {}: gtid_slave_pos {gpos}, primary at {target}, Seconds_Behind_Master {}",
                        deadline
                            .map(|d| format!("stop_at {d}"))
                            .unwrap_or_else(|| format!("chain_timeout ({} s)", limit.as_secs())),
                        f("Seconds_Behind_Master")
                    ),
                    position: Some(pos),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Phase 4; see the module docs for why the comparison is sound.
    async fn data_checks(
        &self,
        primary: &mut Conn,
        replica: &mut Conn,
        report: &Arc<Mutex<Report>>,
    ) -> Result<String, Fail> {
        q(replica, "STOP SLAVE", "STOP SLAVE").await?;
        let tables = primary
            .query(
                "SELECT table_schema, table_name, engine FROM information_schema.tables \
                 WHERE table_type = 'BASE TABLE' AND table_schema NOT IN \
                 ('mysql', 'information_schema', 'performance_schema', 'sys') \
                 ORDER BY table_schema, table_name",
            )
            .await
            .map_err(|e| format!("list the primary's tables: {e}"))?;
        let mut list = Vec::new();
        for row in &tables.rows {
            if let [Some(db), Some(t), engine] = row.as_slice() {
                let engine = engine.clone().unwrap_or_default();
                let cols = primary
                    .query(&format!(
                        "SELECT column_name FROM information_schema.columns WHERE table_schema = {} \
                         AND table_name = {} ORDER BY ordinal_position",
                        lit(db),
                        lit(t)
                    ))
                    .await
                    .map_err(|e| format!("columns of {db}.{t}: {e}"))?;
                let cols: Vec<String> = cols
                    .rows
                    .iter()
                    .filter_map(|r| r.first().cloned().flatten())
                    .collect();
                list.push((db.clone(), t.clone(), engine, cols));
            }
        }
        let sum_sql = |db: &str, t: &str, cols: &[String]| {
            let vals = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
            let nulls = cols
                .iter()
                .map(|c| format!("ISNULL({})", ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let expr = if cols.is_empty() {
                "0".to_string()
            } else {
                format!("COALESCE(BIT_XOR(CRC32(CONCAT_WS('#', {vals}, CONCAT({nulls})))), 0)")
            };
            format!(
                "SELECT COUNT(*) AS n, {expr} AS c FROM {}.{}",
                ident(db),
                ident(t)
            )
        };
        // The primary, inside one consistent snapshot.
        q(
            primary,
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
            "the snapshot",
        )
        .await?;
        let st = primary
            .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
            .await
            .map_err(|e| format!("SHOW STATUS LIKE 'binlog_snapshot_%': {e}"))?;
        let mut snap_file = String::new();
        let mut snap_pos = String::new();
        for r in &st.rows {
            if let [Some(k), Some(v)] = r.as_slice() {
                match k.to_ascii_lowercase().as_str() {
                    "binlog_snapshot_file" => snap_file = v.clone(),
                    "binlog_snapshot_position" => snap_pos = v.clone(),
                    _ => {}
                }
            }
        }
        let mut on_primary = BTreeMap::new();
        for (db, t, engine, cols) in &list {
            if engine.eq_ignore_ascii_case("InnoDB") {
                let rs = primary
                    .query(&sum_sql(db, t, cols))
                    .await
                    .map_err(|e| format!("checksum {db}.{t} on the primary: {e}"))?;
                on_primary.insert(
                    format!("`{db}`.`{t}`"),
                    (
                        rs.get(0, "n").unwrap_or("").to_string(),
                        rs.get(0, "c").unwrap_or("").to_string(),
                    ),
                );
            }
        }
        q(primary, "COMMIT", "end the snapshot").await?;
        let snap_pos: u64 = match (snap_file.is_empty(), snap_pos.parse()) {
            (false, Ok(p)) => p,
            _ => {
                return Err(format!(
                    "the primary reports no usable Binlog_snapshot_file/position ({snap_file:?}, \
                     {snap_pos:?}): is its binlog on?"
                )
                .into())
            }
        };
        let x = value(
            primary,
            &format!("SELECT BINLOG_GTID_POS({}, {snap_pos})", lit(&snap_file)),
        )
        .await?;
        Self::set(report, |r| r.compared_at_gtid = Some(x.clone()));
        // The replica, brought to exactly X.
        let have = value(replica, "SELECT @@GLOBAL.gtid_slave_pos").await?;
        if !position_reached(&have, &x) {
            q(
                replica,
                &format!("START SLAVE UNTIL master_gtid_pos = {}", lit(&x)),
                "START SLAVE UNTIL",
            )
            .await?;
            let t = Instant::now();
            loop {
                let st = replica
                    .query("SHOW SLAVE STATUS")
                    .await
                    .map_err(|e| format!("SHOW SLAVE STATUS: {e}"))?;
                let f = |c: &str| st.get(0, c).unwrap_or_default().to_string();
                let n = f("Last_SQL_Errno");
                if !n.is_empty() && n != "0" {
                    return Err(Fail {
                        error: format!(
                            "the replica's SQL thread stopped: error {n}: {}",
                            f("Last_SQL_Error")
                        ),
                        position: Some(format!(
                            "{}:{}",
                            f("Relay_Master_Log_File"),
                            f("Exec_Master_Log_Pos")
                        )),
                    });
                }
                if f("Slave_SQL_Running") != "Yes" {
                    break;
                }
                if t.elapsed() > Duration::from_secs(600) {
                    return Err(format!("the replica did not reach {x} within 10 minutes").into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            q(replica, "STOP SLAVE", "STOP SLAVE").await?;
        }
        let have = value(replica, "SELECT @@GLOBAL.gtid_slave_pos").await?;
        if !position_reached(&have, &x) {
            return Err(format!("the replica stopped at {have}, short of {x}").into());
        }
        let mut checks = Vec::new();
        for (db, t, engine, cols) in &list {
            let name = format!("`{db}`.`{t}`");
            let ct = replica
                .query(&format!("CHECK TABLE {}.{}", ident(db), ident(t)))
                .await;
            let (ok, text) = match ct {
                Ok(rs) => {
                    let last = rs.rows.len().saturating_sub(1);
                    let ty = rs.get(last, "Msg_type").unwrap_or("").to_string();
                    let txt = rs.get(last, "Msg_text").unwrap_or("").to_string();
                    (
                        ty.eq_ignore_ascii_case("status") && txt == "OK",
                        format!("{ty}: {txt}"),
                    )
                }
                Err(e) => (false, e.to_string()),
            };
            checks.push(Check {
                kind: "check table".into(),
                table: name.clone(),
                outcome: if ok { Outcome::Passed } else { Outcome::Failed },
                primary: None,
                restored: None,
                detail: text,
            });
            let Some((pn, pc)) = on_primary.get(&name) else {
                checks.push(Check {
                    kind: "checksum".into(),
                    table: name.clone(),
                    outcome: Outcome::Skipped,
                    primary: None,
                    restored: None,
                    detail: format!("not compared: {engine} is not transactional, the primary's snapshot cannot fix its contents"),
                });
                continue;
            };
            let (rn, rc) = match replica.query(&sum_sql(db, t, cols)).await {
                Ok(rs) => (
                    rs.get(0, "n").unwrap_or("").to_string(),
                    rs.get(0, "c").unwrap_or("").to_string(),
                ),
                Err(e) => (String::new(), format!("error: {e}")),
            };
            for (kind, p, r) in [("rows", pn, rn), ("checksum", pc, rc)] {
                checks.push(Check {
                    kind: kind.into(),
                    table: name.clone(),
                    outcome: if *p == r {
                        Outcome::Passed
                    } else {
                        Outcome::Failed
                    },
                    primary: Some(p.clone()),
                    restored: Some(r.clone()),
                    detail: String::new(),
                });
            }
        }
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| c.outcome == Outcome::Failed)
            .map(|c| format!("{} {}", c.table, c.kind))
            .collect();
        let n_tables = list.len();
        let n_compared = on_primary.len();
        Self::set(report, |r| r.checks = checks);
        if failed.is_empty() {
            Ok(format!(
                "{n_tables} tables pass CHECK TABLE; rows and checksums of {n_compared} InnoDB tables equal the primary's at GTID {x}"
            ))
        } else {
            Err(Fail {
                error: format!(
                    "the restored data differ from the primary's at GTID {x}: {}",
                    failed.join(", ")
                ),
                position: None,
            })
        }
    }

    /// Phase 5.
    async fn cleanup(&self, report: &Arc<Mutex<Report>>, job: Option<(&str, &str)>, keep: bool) {
        let t = Instant::now();
        Self::phase(report, "clean-up", |p| {
            p.started_at = Some(catalog::unix_now())
        });
        let Some((job_id, socket)) = job else {
            // The PITR runner removes a failed job's scratch directory itself.
            let pitr_job = lock(report).pitr_job.clone();
            Self::phase(report, "clean-up", |p| {
                p.outcome = Outcome::Passed;
                p.seconds = t.elapsed().as_secs_f64();
                p.detail = match pitr_job {
                    Some(j) => {
                        format!("the scratch instance of PITR job {j} was stopped and removed")
                    }
                    None => "nothing to clean up".into(),
                };
            });
            return;
        };
        if let Ok(mut c) = connect_socket(socket).await {
            let _ = c.query("STOP SLAVE").await;
            let _ = c.query("RESET SLAVE ALL").await;
        }
        if keep {
            let j = self.pitr.get(job_id).await.unwrap_or_default();
            Self::set(report, |r| {
                r.instance = Some(serde_json::json!({
                    "pitr_job": job_id,
                    "socket": j["restored"]["socket"],
                    "datadir": j["restored"]["datadir"],
                    "pid": j["restored"]["pid"],
                    "note": "kept: runs with --skip-grant-tables --skip-networking, reachable through its socket only; DELETE /v1/pitr/{pitr_job} removes it"
                }))
            });
            Self::phase(report, "clean-up", |p| {
                p.outcome = Outcome::Skipped;
                p.seconds = t.elapsed().as_secs_f64();
                p.detail = "keep_instance: the scratch instance is kept".into();
            });
            return;
        }
        match self.pitr.remove(job_id).await {
            Ok(_) => Self::phase(report, "clean-up", |p| {
                p.outcome = Outcome::Passed;
                p.seconds = t.elapsed().as_secs_f64();
                p.detail = "replication configuration removed, scratch instance stopped and its files deleted".into();
            }),
            Err(e) => Self::phase(report, "clean-up", |p| {
                p.outcome = Outcome::Failed;
                p.seconds = t.elapsed().as_secs_f64();
                p.detail = format!("could not remove the scratch instance: {e:?}");
            }),
        }
    }
}

/// The bases a run may verify: COMPLETED full bases, with their completion time.
fn candidates(backups: &[catalog::backups::BackupRow]) -> Vec<Candidate> {
    backups
        .iter()
        .filter(|b| b.state == BackupState::Completed && b.parent_id.is_none())
        .map(|b| Candidate {
            id: b.id.clone(),
            completed_at: b.finished_at.unwrap_or(b.started_at),
        })
        .collect()
}

fn rand_u16() -> u16 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (n ^ std::process::id()) as u16
}

/// Root over the private instance's socket (it runs with --skip-grant-tables).
async fn connect_socket(socket: &str) -> Result<Conn, String> {
    instance::connect_admin(&instance::socket_url(std::path::Path::new(socket)))
        .await
        .map_err(|e| format!("connect to the scratch instance at {socket}: {e}"))
}

async fn q(c: &mut Conn, sql: &str, what: &str) -> Result<(), Fail> {
    c.query(sql)
        .await
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}").into())
}

async fn value(c: &mut Conn, sql: &str) -> Result<String, Fail> {
    c.query_value(sql)
        .await
        .map(|v| v.unwrap_or_default())
        .map_err(|e| format!("{sql}: {e}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_reach_every_domain() {
        assert!(position_reached("0-1-10,1-2-5", "0-1-9,1-2-5"));
        assert!(!position_reached("0-1-10", "0-1-9,1-2-5"));
        assert!(!position_reached("0-1-8,1-2-5", "0-1-9"));
        assert!(position_reached("0-1-8", ""));
    }

    /// The service's scheduler on a given clock: no base → a recorded "no base to
    /// verify"; a base → a run; a young run on that base → skipped; a week-old one →
    /// stopped and replaced; the base a week later → "no base" and the run stopped.
    #[tokio::test]
    async fn the_scheduler_acts_on_the_rules_with_a_given_clock() {
        use catalog::backups::{BackupResult, NewBackup};
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "data_dir = {:?}\n[backup]\nstore = \"file://{}\"\n[[source]]\nname = \"db1\"\n\
             url = \"mysql://repl:pw@127.0.0.1:9\"\nserver_id = 4242\n\
             [source.verify]\nday = \"mon\"\nstart = \"01:00\"\n",
            dir.path().display().to_string(),
            dir.path().join("bases").display()
        );
        let settings = crate::config::Config::parse(&text)
            .expect("config")
            .validate()
            .expect("valid config");
        let catalog = Arc::new(Catalog::open("sqlite::memory:").await.expect("catalog"));
        let index = Arc::new(Index::open(&dir.path().join("index")).expect("index"));
        let cancel = CancellationToken::new();
        let pitr = PitrService::open(crate::replay::pitr::PitrDeps {
            catalog: catalog.clone(),
            index: index.clone(),
            archives: BTreeMap::new(),
            statuses: BTreeMap::new(),
            store: &settings.store,
            tools: settings.tools.clone(),
            cfg: settings.pitr.clone(),
            cancel: cancel.clone(),
        })
        .await
        .expect("pitr");
        let svc = VerifyService::open(
            catalog.clone(),
            index,
            pitr,
            Arc::new(Metrics::new()),
            &settings.sources,
            cancel.clone(),
        )
        .await
        .expect("verify service");
        let sched = settings.sources[0]
            .verify
            .schedule
            .clone()
            .expect("schedule");
        let ended = |n: usize| {
            let svc = svc.clone();
            async move {
                for _ in 0..200 {
                    let runs = svc.list(Some("db1"), 0, 100).await.expect("list");
                    if runs.len() == n && runs.iter().all(|r| r.outcome != Outcome::Running) {
                        return runs;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("runs did not end");
            }
        };
        let now = catalog::unix_now();

        // No base: a run that records the finding.
        let d = svc.scheduled("db1", &sched, now).await;
        assert_eq!(d, Decision::NoBase { stop: None });
        let runs = ended(1).await;
        assert_eq!(runs[0].outcome, Outcome::NoBase);
        assert_eq!(runs[0].trigger, "schedule");

        // A COMPLETED base: a run on it.
        catalog
            .begin_backup(&NewBackup {
                id: "b1".into(),
                source: "db1".into(),
                method: "physical".into(),
                tool: "mariabackup".into(),
                incremental: false,
                parent_id: None,
                server_version: None,
                tool_version: None,
                command: None,
                db_list: None,
                store_url: None,
                from_lsn: None,
            })
            .await
            .expect("begin");
        catalog
            .complete_backup(
                "b1",
                &BackupResult {
                    gtid_pos: Some("0-1-5".into()),
                    binlog_file: Some("mysql-bin.000001".into()),
                    binlog_pos: Some(4),
                    ..Default::default()
                },
            )
            .await
            .expect("complete");
        let d = svc.scheduled("db1", &sched, now).await;
        assert_eq!(
            d,
            Decision::Run {
                base_id: "b1".into(),
                stop: None
            }
        );
        // (Runs started in the same second may list in either order.)
        let runs = ended(2).await;
        assert!(
            runs.iter()
                .any(|r| r.base.as_ref().map(|b| b.id.as_str()) == Some("b1")),
            "{runs:?}"
        );

        // A run still going on that base.
        // A stand-in for a run: when cancelled it leaves the table and says it is done,
        // as a real run does.
        let fake = |started_at: i64| {
            let cancel = CancellationToken::new();
            let done = Arc::new(tokio::sync::Notify::new());
            let (c, d, me) = (cancel.clone(), done.clone(), svc.clone());
            let id = format!("fake-{started_at}");
            let my_id = id.clone();
            tokio::spawn(async move {
                c.cancelled().await;
                let mut running = lock(&me.running);
                if running.get("db1").is_some_and(|h| h.id == my_id) {
                    running.remove("db1");
                }
                drop(running);
                d.notify_waiters();
            });
            RunHandle {
                id,
                base_id: Some("b1".into()),
                started_at,
                cancel,
                report: Arc::new(Mutex::new(Report::new(
                    "fake", "db1", "schedule", started_at,
                ))),
                done,
            }
        };
        let young = fake(now - 86_400);
        let young_cancel = young.cancel.clone();
        lock(&svc.running).insert("db1".into(), young);
        let d = svc.scheduled("db1", &sched, now).await;
        assert!(matches!(d, Decision::Skip { .. }), "{d:?}");
        assert!(!young_cancel.is_cancelled());
        assert_eq!(svc.list(Some("db1"), 0, 100).await.expect("list").len(), 2);

        // The same run, a week old: stopped, and a new run starts.
        let stale = fake(now - 8 * 86_400);
        let stale_cancel = stale.cancel.clone();
        let stale_id = stale.id.clone();
        lock(&svc.running).insert("db1".into(), stale);
        let d = svc.scheduled("db1", &sched, now).await;
        assert_eq!(
            d,
            Decision::Run {
                base_id: "b1".into(),
                stop: Some(stale_id)
            }
        );
        assert!(stale_cancel.is_cancelled());
        ended(3).await;

        // A week later the base is too old: "no base", and a run still going is stopped.
        let later = fake(now);
        let later_cancel = later.cancel.clone();
        lock(&svc.running).insert("db1".into(), later);
        let d = svc.scheduled("db1", &sched, now + 8 * 86_400).await;
        assert!(matches!(d, Decision::NoBase { stop: Some(_) }), "{d:?}");
        assert!(later_cancel.is_cancelled());
        let runs = ended(4).await;
        let no_base = runs.iter().filter(|r| r.outcome == Outcome::NoBase).count();
        assert_eq!(no_base, 2, "{runs:?}");

        // A run started by hand is not replaced by a manual request: 409.
        let manual = fake(now);
        lock(&svc.running).insert("db1".into(), manual);
        assert!(matches!(
            svc.start("db1", None).await,
            Err(VerifyError::Busy(_))
        ));
        cancel.cancel();
    }

    #[test]
    fn sql_quoting() {
        assert_eq!(lit("a'b\\c"), "'a''b\\\\c'");
        assert_eq!(ident("we`ird"), "`we``ird`");
    }
}
