//! Phases 1, 2 and 5 of a run: the scratch instance's PITR job. The job restores the
//! base and replays the archive to its end through a job-private fake primary (restore,
//! binlog verification); clean-up removes the replication configuration and the
//! instance, or keeps it (`keep_instance`).

use node::util::lock;
use std::time::{Duration, Instant};

use catalog::backups::BackupRow;
use serde_json::Value;

use crate::phase::{Fail, RunCtx, BINLOG, CLEANUP, RESTORE, STOPPED};
use crate::report::{Outcome, RangeInfo};
use crate::runner::position_reached;
use crate::sql::connect_socket;
use replay::pitr::{Destination, JobOptions, Plan, Target};

/// A restored and replayed scratch instance: its PITR job, and the socket it listens
/// on.
pub(super) struct ScratchJob {
    /// The PITR job's id (`/v1/pitr/{id}`).
    pub(super) id: String,
    /// The instance's Unix socket path.
    pub(super) socket: String,
}

impl RunCtx<'_> {
    /// Phases 1 and 2. Returns the job when both passed; otherwise the report says why
    /// (failed or cancelled), and a job that failed or was cancelled is removed.
    pub(super) async fn restore_and_replay(&self, base: &BackupRow) -> Option<ScratchJob> {
        self.begin(RESTORE);
        let target = match self.replay_target(base) {
            Ok(t) => t,
            Err(f) => {
                self.fail(RESTORE, self.t0, f);
                return None;
            }
        };
        let (id, plan) = self.start_job(base, &target).await?;
        let (j, cancelled) = self.watch_job(&id, &plan, base).await;
        let restore_secs = self.record_restore(&j, base);
        if cancelled {
            self.cancelled(STOPPED.into());
            let _ = self.pitr.remove(&id).await;
            return None;
        }
        match (restore_secs, j["error"].as_str().map(str::to_string)) {
            (None, Some(e)) => {
                self.fail(RESTORE, self.t0, e.into());
                let _ = self.pitr.remove(&id).await;
                None
            }
            (Some(restore), Some(e)) => {
                self.replay_failed(&j, restore, e);
                let _ = self.pitr.remove(&id).await;
                None
            }
            _ => self.replay_passed(id, &plan, &j),
        }
    }

    /// The archive's end: its last indexed transaction, or the base itself when nothing
    /// was written after it.
    fn replay_target(&self, base: &BackupRow) -> Result<Target, Fail> {
        let name = &self.source.name;
        let last = self.index.last(name).ok().flatten().and_then(|t| t.gtid);
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
        target_text.parse().map(Target::Gtid).map_err(|_| {
            format!("the archive of {name} has no GTID to replay to (base at {base_gtid:?})").into()
        })
    }

    /// Starts the private PITR job to `target` from `base` and records it and its range
    /// in the report. Returns its id and plan; `None` (the report says why) when the
    /// archive has no replay plan.
    async fn start_job(&self, base: &BackupRow, target: &Target) -> Option<(String, Plan)> {
        let started = self
            .pitr
            .start_with(
                &self.source.name,
                target,
                Some(&base.id),
                Destination::Scratch,
                JobOptions { private: true },
            )
            .await;
        let job = match started {
            Ok(j) => j,
            Err(e) => {
                self.phase(RESTORE, |p| {
                    p.outcome = Outcome::Skipped;
                    p.detail = "not started: no replay plan".into();
                });
                let f = Fail {
                    position: e.file().map(str::to_string),
                    error: e.to_string(),
                };
                self.fail(BINLOG, self.t0, f);
                return None;
            }
        };
        let plan = job.plan;
        self.set(|r| {
            r.pitr_job = Some(job.id.clone());
            r.range = Some(RangeInfo {
                files: plan.files.clone(),
                bytes: plan.bytes,
                transactions: plan.transactions,
                end_gtid: plan.end_gtid.clone(),
            });
        });
        Some((job.id, plan))
    }

    /// Follows job `id` until it is done or failed, showing its progress; cancels it
    /// when the run is cancelled. Returns its last report and whether it was cancelled.
    async fn watch_job(&self, id: &str, plan: &Plan, base: &BackupRow) -> (Value, bool) {
        let mut cancelled = false;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if self.cancel.is_cancelled() && !cancelled {
                let _ = self.pitr.cancel(id);
                cancelled = true;
            }
            let Ok(j) = self.pitr.get(id).await else {
                continue;
            };
            let phase = j["phase"].as_str().unwrap_or_default().to_string();
            if phase == "replaying" {
                self.record_progress(&j, plan, base);
            }
            if phase == "done" || phase == "failed" {
                return (j, cancelled);
            }
        }
    }

    /// The job `j` replays: the restore passed, the replay is under way.
    fn record_progress(&self, j: &Value, plan: &Plan, base: &BackupRow) {
        self.phase(RESTORE, |p| {
            if p.outcome == Outcome::Running {
                p.outcome = Outcome::Passed;
                p.seconds = j["restore_seconds"].as_f64().unwrap_or(0.0);
                p.bytes = base.bytes;
                p.detail = format!("base {} restored ({})", base.id, base.method);
            }
        });
        self.phase(BINLOG, |p| {
            p.outcome = Outcome::Running;
            p.detail = format!(
                "{} of {} transactions applied",
                j["progress"]["transactions_applied"], plan.transactions
            );
        });
    }

    /// The restore phase of the ended job `j`; returns its restore time in seconds
    /// (`None`: the restore did not finish).
    fn record_restore(&self, j: &Value, base: &BackupRow) -> Option<f64> {
        let restore_secs = j["restore_seconds"].as_f64();
        self.phase(RESTORE, |p| {
            p.started_at.get_or_insert(catalog::unix_now());
            if let Some(s) = restore_secs {
                p.outcome = Outcome::Passed;
                p.seconds = s;
                p.bytes = base.bytes;
                p.detail = format!("base {} restored ({})", base.id, base.method);
            }
        });
        restore_secs
    }

    /// The ended job `j` restored (in `restore` seconds), then its replay failed with
    /// `error`.
    fn replay_failed(&self, j: &Value, restore: f64, error: String) {
        let position = j["error_position"].as_str().map(str::to_string);
        // A failed job has no replay_seconds: its run time less the restore.
        let ran = j["finished_at"].as_i64().unwrap_or(0) - j["created_at"].as_i64().unwrap_or(0);
        let replay = j["replay_seconds"]
            .as_f64()
            .unwrap_or((ran as f64 - restore).max(0.0));
        self.fail(BINLOG, Instant::now(), Fail { error, position });
        self.phase(BINLOG, |p| p.seconds = replay);
    }

    /// The ended job `id` (report `j`) replayed everything: phase 2 passed; returns the
    /// instance to chain.
    fn replay_passed(&self, id: String, plan: &Plan, j: &Value) -> Option<ScratchJob> {
        let replay = j["replay_seconds"].as_f64().unwrap_or(0.0);
        self.phase(BINLOG, |p| {
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
        match j["restored"]["socket"].as_str() {
            Some(s) => Some(ScratchJob {
                id,
                socket: s.to_string(),
            }),
            None => {
                let f = "the PITR job reported no socket".to_string().into();
                self.fail(BINLOG, Instant::now(), f);
                None
            }
        }
    }

    /// Phase 5: removes the replication configuration and the scratch instance of
    /// `job` (`None`: phases 1-2 did not pass, and the PITR runner or phase 1-2 removed
    /// it), or keeps it (`keep_instance`).
    pub(super) async fn cleanup(&self, job: Option<&ScratchJob>) {
        let t = Instant::now();
        self.phase(CLEANUP, |p| p.started_at = Some(catalog::unix_now()));
        let Some(job) = job else {
            // The PITR runner removes a failed job's scratch directory itself.
            let pitr_job = lock(self.report).pitr_job.clone();
            let detail = match pitr_job {
                Some(j) => format!("the scratch instance of PITR job {j} was stopped and removed"),
                None => "nothing to clean up".into(),
            };
            self.pass(CLEANUP, t, detail);
            return;
        };
        if let Ok(mut c) = connect_socket(&job.socket).await {
            let _ = c.query("STOP SLAVE").await;
            let _ = c.query("RESET SLAVE ALL").await;
        }
        if self.keep {
            self.keep_instance(&job.id, t).await;
            return;
        }
        match self.pitr.remove(&job.id).await {
            Ok(_) => self.pass(
                CLEANUP,
                t,
                "replication configuration removed, scratch instance stopped and its files deleted"
                    .into(),
            ),
            Err(e) => self.phase(CLEANUP, |p| {
                p.outcome = Outcome::Failed;
                p.seconds = t.elapsed().as_secs_f64();
                p.detail = format!("could not remove the scratch instance: {e:?}");
            }),
        }
    }

    /// `keep_instance`: the report says where the kept instance of job `job_id` is.
    async fn keep_instance(&self, job_id: &str, t: Instant) {
        let j = self.pitr.get(job_id).await.unwrap_or_default();
        self.set(|r| {
            r.instance = Some(serde_json::json!({
                "pitr_job": job_id,
                "socket": j["restored"]["socket"],
                "datadir": j["restored"]["datadir"],
                "pid": j["restored"]["pid"],
                "note": "kept: runs with --skip-grant-tables --skip-networking, reachable through its socket only; DELETE /v1/pitr/{pitr_job} removes it"
            }))
        });
        self.phase(CLEANUP, |p| {
            p.outcome = Outcome::Skipped;
            p.seconds = t.elapsed().as_secs_f64();
            p.detail = "keep_instance: the scratch instance is kept".into();
        });
    }
}
