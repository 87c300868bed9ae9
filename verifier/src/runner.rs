//! Restore verification runs (issue 5; seed 001's weekly check, seed 004's recovery
//! records): restore a base, replay the archive, chain to the primary, compare the data,
//! measure the RTO, report.
//!
//! # A run
//!
//! 1. **restore**: the base is restored into a scratch instance by a PITR job to the
//!    archive's last transaction ([`replay::pitr`]; private instance: socket only,
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
//! MySQL source, and for an archive-only source (`archive_only = true`, no live primary), the
//! chain and data phases are reported skipped with that reason.
//!
//! This module is the service: requests, schedules, and the order of the phases
//! ([`VerifyService`]). The phases are the sibling modules `restore` (1, 2 and 5),
//! `chain` (3) and `data` (4), on a shared run context (`phase`) and SQL helpers
//! (`sql`).

use node::util::lock;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::phase::{RunCtx, CHAIN, RESTORE};
use crate::report::{BaseInfo, Outcome, Report};
use crate::schedule::{self, Candidate, Decision, Running};
use crate::sql::connect_socket;
use catalog::backups::{BackupRow, BackupState};
use catalog::verify::VerificationRow;
use catalog::Catalog;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use archive::index::Index;
use node::config::Source;
use node::status::Metrics;
use replay::pitr::{self, PitrService};

/// Why a verification request was refused or could not be answered. `api` chooses the
/// HTTP status of each variant (`verify_error_status`); the body's `error` is the
/// [`Display`](std::fmt::Display) text.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Unknown source or run; the message, for people, names it (404).
    #[error("{0}")]
    NotFound(String),
    /// A run of that source is going on; the message, for people, names it (409).
    #[error("{0}")]
    Busy(String),
    /// The catalog failed to list or read runs (500). Displays as the catalog's error.
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    /// A run's stored report is not a [`Report`] in JSON (500). Displays as serde's
    /// error.
    #[error(transparent)]
    Report(#[from] serde_json::Error),
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

    /// Starts a run of `name` now ("manual"); `keep` overrides `keep_instance`.
    /// Returns the initial report.
    ///
    /// # Errors
    ///
    /// NotFound for an unknown source; Busy while a run of it goes on.
    pub async fn start(
        self: &Arc<Self>,
        name: &str,
        keep: Option<bool>,
    ) -> Result<Report, VerifyError> {
        let settings = self
            .sources
            .get(name)
            .ok_or_else(|| VerifyError::NotFound(format!("no source named {name:?}")))?;
        let keep = keep.unwrap_or(settings.verify.keep_instance);
        self.launch(name, "manual", Pick::Newest, keep, None)
    }

    /// Registers a run of `name` (Busy while one goes on) and starts it in a task.
    /// Returns the initial report.
    fn launch(
        self: &Arc<Self>,
        name: &str,
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
            "verify-{name}-{}-{:04x}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            rand_u16()
        );
        let report = Arc::new(Mutex::new(Report::new(&id, name, trigger, started_at)));
        let cancel = self.cancel.child_token();
        let done = Arc::new(tokio::sync::Notify::new());
        {
            // Checked and taken under one lock, so that two requests cannot both start.
            let mut running = lock(&self.running);
            if let Some(r) = running.get(name) {
                return Err(VerifyError::Busy(format!(
                    "verification {} of {name} is still running",
                    r.id
                )));
            }
            running.insert(
                name.to_string(),
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
        let name = name.to_string();
        let initial = lock(&report).clone();
        let span = tracing::info_span!("verification", source = %name, run = %id);
        tokio::spawn(
            async move {
                me.save(&report).await;
                me.run(&name, &report, &cancel, pick, keep, deadline).await;
                me.finish(&name, &report, &done).await;
            }
            .instrument(span),
        );
        Ok(initial)
    }

    /// The end of a run of `name`: its outcome (failed when it recorded an error) and
    /// end time, saved; its metrics; `name` free for the next run, and `done`
    /// notified.
    async fn finish(&self, name: &str, report: &Arc<Mutex<Report>>, done: &tokio::sync::Notify) {
        {
            let mut r = lock(report);
            r.finished_at = Some(catalog::unix_now());
            if r.outcome == Outcome::Running {
                r.outcome = if r.error.is_some() {
                    Outcome::Failed
                } else {
                    Outcome::Passed
                };
            }
        }
        self.save(report).await;
        self.record_metrics(&lock(report).clone());
        let mut running = lock(&self.running);
        if running.get(name).is_some_and(|h| h.id == lock(report).id) {
            running.remove(name);
        }
        done.notify_waiters();
        let r = lock(report).clone();
        info!(run = %r.id, source = %r.source, outcome = r.outcome.as_str(), rto = ?r.rto_seconds, "verification ended");
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
    /// [`VerifyError::NotFound`] for an unknown run; [`VerifyError::Catalog`] when the
    /// catalog fails; [`VerifyError::Report`] when the stored report does not parse.
    pub async fn get(&self, id: &str) -> Result<Report, VerifyError> {
        if let Some(h) = lock(&self.running).values().find(|h| h.id == id) {
            return Ok(lock(&h.report).clone());
        }
        let row = self
            .catalog
            .get_verification(id)
            .await?
            .ok_or_else(|| VerifyError::NotFound(format!("no verification {id:?}")))?;
        Ok(serde_json::from_str(&row.report)?)
    }

    /// Reports of runs started at or after `since`, newest first (at most `limit`),
    /// running ones live.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Catalog`] when the catalog fails. A stored report that does not
    /// parse is left out.
    pub async fn list(
        &self,
        name: Option<&str>,
        since: i64,
        limit: u32,
    ) -> Result<Vec<Report>, VerifyError> {
        let rows = self.catalog.list_verifications(name, since, limit).await?;
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

    /// Starts one scheduler task per source whose `[source.verify]` is enabled. A run
    /// falls due on every node of a fleet and starts only where `owners` says the
    /// source runs (the node holding its lease then).
    pub fn spawn_schedulers(self: &Arc<Self>, owners: node::status::Ownership) {
        for (name, settings) in &self.sources {
            let Some(sched) = settings.verify.schedule.clone().filter(|s| s.enabled) else {
                continue;
            };
            let me = self.clone();
            let name = name.clone();
            let owners = owners.clone();
            let span = tracing::info_span!("verify_schedule", source = %name);
            tokio::spawn(
                async move {
                    loop {
                        let now = chrono::Utc::now();
                        let next = sched.next_start(now);
                        info!(source = %name, next = %next, "next scheduled verification");
                        let wait = (next - now).to_std().unwrap_or(Duration::from_secs(1));
                        tokio::select! {
                            _ = me.cancel.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                        if !owners.runs_here(&name) {
                            info!(source = %name, "scheduled verification left to the node that holds the source's lease");
                            // Past the moment, so the next one is computed afresh.
                            tokio::select! {
                                _ = me.cancel.cancelled() => return,
                                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                            }
                            continue;
                        }
                        me.scheduled(&name, &sched, catalog::unix_now()).await;
                    }
                }
                .instrument(span),
            );
        }
    }

    /// What the schedule does at `now` for `name`: applies seed 001's rules
    /// ([`schedule::decide`]) and acts on them. Returns the decision.
    pub async fn scheduled(
        self: &Arc<Self>,
        name: &str,
        sched: &schedule::Schedule,
        now: i64,
    ) -> Decision {
        let bases = candidates(&self.catalog.list_backups(name).await.unwrap_or_default());
        let running = lock(&self.running).get(name).map(|h| Running {
            id: h.id.clone(),
            base_id: h.base_id.clone(),
            started_at: h.started_at,
        });
        let d = schedule::decide(now, &bases, running.as_ref());
        let stop = match &d {
            Decision::NoBase { stop } | Decision::Run { stop, .. } => stop.clone(),
            Decision::Skip { reason, .. } => {
                info!(source = %name, reason = %reason, "scheduled verification skipped");
                None
            }
        };
        if let Some(id) = stop {
            self.stop_run(name, &id).await;
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
                if let Err(e) = self.launch(name, "schedule", base, sched.keep_instance, deadline) {
                    warn!(source = %name, error = %e, "scheduled verification not started");
                }
            }
            Decision::Skip { .. } => {}
        }
        d
    }

    /// Cancels run `id` of `name` and waits (up to 10 minutes) for it to end.
    async fn stop_run(&self, name: &str, id: &str) {
        let handle = lock(&self.running)
            .get(name)
            .filter(|h| h.id == id)
            .map(|h| (h.cancel.clone(), h.done.clone()));
        if let Some((cancel, done)) = handle {
            warn!(source = %name, run = id, "stopping a stale verification run");
            let wait = done.notified();
            cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(600), wait).await;
        }
    }

    /// One run of `name` on the base `pick` says, its outcome written into `report`
    /// as it goes (see the module docs for the phases).
    async fn run(
        &self,
        name: &str,
        report: &Arc<Mutex<Report>>,
        cancel: &CancellationToken,
        pick: Pick,
        keep: bool,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let t0 = Instant::now();
        let Some(settings) = self.sources.get(name) else {
            lock(report).error = Some(format!("no source named {name:?} in the configuration"));
            return;
        };
        let ctx = RunCtx {
            source: settings,
            report,
            cancel,
            t0,
            deadline,
            keep,
            pitr: &self.pitr,
            index: &self.index,
        };
        let Some(base) = self.choose_base(&ctx, pick).await else {
            return;
        };
        // 1 + 2: restore and replay the archive to its end, as a private PITR job.
        let Some(job) = ctx.restore_and_replay(&base).await else {
            ctx.cleanup(None).await;
            return;
        };
        // 3. Chain verification, then 4. data checks on the sessions it leaves.
        let t = Instant::now();
        match connect_socket(&job.socket).await {
            Ok(mut replica) => {
                if let Some(mut primary) = ctx.chain_phase(&mut replica, t).await {
                    ctx.data_phase(&mut primary, &mut replica).await;
                }
            }
            Err(e) => ctx.fail(CHAIN, t, e.to_string().into()),
        }
        // 5. Clean-up.
        ctx.cleanup(Some(&job)).await;
    }

    /// The base the run verifies: the one the schedule chose, or the newest COMPLETED
    /// base of the week; written into the report. `None` when there is none (the
    /// report's outcome is "no base" with the reason) or the catalog failed (the run
    /// failed in "restore").
    async fn choose_base(&self, ctx: &RunCtx<'_>, pick: Pick) -> Option<BackupRow> {
        let name = &ctx.source.name;
        let backups = match self.catalog.list_backups(name).await {
            Ok(b) => b,
            Err(e) => {
                ctx.fail(RESTORE, ctx.t0, format!("catalog: {e}").into());
                return None;
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
                    "no base to verify: the newest COMPLETED base of {name} is {:.1} days old (more than 7)",
                    (now - t) as f64 / 86400.0
                ),
                None => format!("no base to verify: {name} has no COMPLETED base"),
            };
            ctx.set(|r| {
                r.outcome = Outcome::NoBase;
                r.error = Some(why);
            });
            return None;
        };
        ctx.set(|r| r.base = Some(base_info(&base, now)));
        Some(base)
    }
}

/// What the report says of `base`, at `now` (unix seconds).
fn base_info(base: &BackupRow, now: i64) -> BaseInfo {
    BaseInfo {
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
    }
}

/// The bases a run may verify: COMPLETED full bases, with their completion time.
fn candidates(backups: &[BackupRow]) -> Vec<Candidate> {
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
        let settings = node::config::Config::parse(&text)
            .expect("config")
            .validate()
            .expect("valid config");
        let catalog = Arc::new(Catalog::open("sqlite::memory:").await.expect("catalog"));
        let index = Arc::new(Index::open(&dir.path().join("index")).expect("index"));
        let cancel = CancellationToken::new();
        let pitr = PitrService::open(replay::pitr::PitrDeps {
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
        // The clock from here on: b1 completed at or before it (the first run may have
        // taken the clock past the second read above).
        let now = catalog::unix_now();
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
}
