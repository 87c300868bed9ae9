//! The report of one verification run: stored as JSON in the catalog
//! (`verifications.report`), served at `GET /v1/verifications/{id}`, rendered as HTML by
//! [`crate::html`].

use serde::{Deserialize, Serialize};

/// Result of a run, a phase or a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Going on.
    Running,
    /// Passed.
    Passed,
    /// Failed: see `error`.
    Failed,
    /// Not run (an earlier phase failed, or it does not apply).
    Skipped,
    /// No COMPLETED base in the last week: nothing could be verified (a finding).
    NoBase,
    /// Stopped before the end (a newer run replaced it, or binlog-server stopped).
    Cancelled,
}

impl Outcome {
    /// The snake_case name used in JSON, the catalog and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::NoBase => "no_base",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The base a run verifies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BaseInfo {
    /// Base id.
    pub id: String,
    /// `physical` or `logical`.
    pub method: String,
    /// Consistency point, unix seconds.
    pub consistent_at: Option<i64>,
    /// Age of the base when the run started, seconds.
    pub age_seconds: Option<i64>,
    /// GTID position of the base.
    pub gtid_pos: Option<String>,
    /// Binlog position of the base, "file:pos".
    pub binlog_position: Option<String>,
    /// Stored size, bytes.
    pub bytes: u64,
}

/// The binlog range replayed from the archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RangeInfo {
    /// Files, in order.
    pub files: Vec<String>,
    /// Bytes to apply.
    pub bytes: u64,
    /// Transactions to apply.
    pub transactions: u64,
    /// The archive's last GTID when the run planned.
    pub end_gtid: Option<String>,
}

/// One timed phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// "restore", "binlog verification", "chain verification", "data checks", "clean-up".
    pub name: String,
    /// Result.
    pub outcome: Outcome,
    /// Start, unix seconds.
    pub started_at: Option<i64>,
    /// Duration, seconds.
    pub seconds: f64,
    /// Bytes handled (restored, replayed).
    pub bytes: u64,
    /// What happened, in a sentence.
    pub detail: String,
}

impl Phase {
    /// A phase not started yet.
    pub fn pending(name: &str) -> Phase {
        Phase {
            name: name.into(),
            outcome: Outcome::Skipped,
            started_at: None,
            seconds: 0.0,
            bytes: 0,
            detail: String::new(),
        }
    }
}

/// One data check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// "check table", "rows", "checksum".
    pub kind: String,
    /// `` `db`.`table` ``.
    pub table: String,
    /// Result.
    pub outcome: Outcome,
    /// The primary's value (rows, checksum), when compared.
    pub primary: Option<String>,
    /// The restored instance's value.
    pub restored: Option<String>,
    /// Message (CHECK TABLE's text, or why it was not compared).
    pub detail: String,
}

/// The report of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Run id.
    pub id: String,
    /// Source name.
    pub source: String,
    /// "schedule" or "manual".
    pub trigger: String,
    /// Result of the whole run.
    pub outcome: Outcome,
    /// Start, unix seconds.
    pub started_at: i64,
    /// End, unix seconds.
    pub finished_at: Option<i64>,
    /// The base, if one was found.
    pub base: Option<BaseInfo>,
    /// The archived range replayed.
    pub range: Option<RangeInfo>,
    /// The phases, in order.
    pub phases: Vec<Phase>,
    /// Data checks.
    pub checks: Vec<Check>,
    /// GTID position at which the data were compared.
    pub compared_at_gtid: Option<String>,
    /// Recovery time: start of the run to a usable instance caught up with the primary,
    /// seconds.
    pub rto_seconds: Option<f64>,
    /// What failed (or why nothing was verified).
    pub error: Option<String>,
    /// Where: "file:pos" in the source's binlogs, or a file name.
    pub error_position: Option<String>,
    /// The scratch instance, when kept: address, socket, datadir.
    pub instance: Option<serde_json::Value>,
    /// The PITR job that restored and replayed.
    pub pitr_job: Option<String>,
}

/// The phase names, in order.
pub const PHASES: [&str; 5] = [
    "restore",
    "binlog verification",
    "chain verification",
    "data checks",
    "clean-up",
];

impl Report {
    /// A new running report with all phases pending.
    pub fn new(id: &str, source: &str, trigger: &str, started_at: i64) -> Report {
        Report {
            id: id.into(),
            source: source.into(),
            trigger: trigger.into(),
            outcome: Outcome::Running,
            started_at,
            finished_at: None,
            base: None,
            range: None,
            phases: PHASES.iter().map(|n| Phase::pending(n)).collect(),
            checks: Vec::new(),
            compared_at_gtid: None,
            rto_seconds: None,
            error: None,
            error_position: None,
            instance: None,
            pitr_job: None,
        }
    }

    /// Phase `name` (one of [`PHASES`]), to update.
    pub fn phase_mut(&mut self, name: &str) -> Option<&mut Phase> {
        self.phases.iter_mut().find(|p| p.name == name)
    }

    /// Seconds from start to end (or to `now` while running).
    pub fn duration(&self, now: i64) -> i64 {
        self.finished_at.unwrap_or(now) - self.started_at
    }
}
