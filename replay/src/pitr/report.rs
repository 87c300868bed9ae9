//! A PITR job's report and its live state: [`JobReport`] (GET /v1/pitr/{id}, saved in
//! the catalog's `pitr_jobs` on every phase change), [`ReplayProgress`], [`Restored`],
//! and the running job ([`Job`]) that the registry (`job.rs`) and the runner share.

use node::util::lock;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use catalog::Catalog;
use serde::Serialize;
use snapshotter::take::Progress;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::planner::Plan;

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
    /// The failure's stable snake_case kind ([`super::RunError::kind`], e.g.
    /// `replica_sql_stopped`, `restore`, `cancelled`), for alerting without reading the
    /// text.
    pub error_kind: Option<String>,
    /// Where in the source's binlogs the replica failed ("file:pos").
    pub error_position: Option<String>,
}

/// One job of this process.
pub(super) struct Job {
    /// The live report (saved in the catalog on phase changes).
    pub(super) report: Mutex<JobReport>,
    /// The base restore's progress (bytes, tool step).
    pub(super) progress: Arc<Progress>,
    /// The job's directory under `work_dir`, once created.
    pub(super) instance_dir: Mutex<Option<PathBuf>>,
    /// Cancelled by `PitrService::cancel` or when the service stops.
    pub(super) cancel: CancellationToken,
    /// Leave a scratch instance running privately at the end (`JobOptions::private`).
    pub(super) private: bool,
}

impl Job {
    /// Changes the job's live report.
    pub(super) fn set(&self, f: impl FnOnce(&mut JobReport)) {
        f(&mut lock(&self.report));
    }

    /// Saves the report in the catalog (a failure is logged: the live report stays
    /// right, and the next phase change saves it again).
    pub(super) async fn save(&self, catalog: &Catalog) {
        let rep = lock(&self.report).clone();
        let text = serde_json::to_string(&rep).unwrap_or_default();
        if let Err(e) = catalog
            .save_pitr_job(&rep.id, &rep.source, &rep.phase, &text)
            .await
        {
            warn!(job = %rep.id, error = %e, "could not save the PITR job in the catalog");
        }
    }
}
