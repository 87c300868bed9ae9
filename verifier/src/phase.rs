//! What the phases of one run share: the run's context ([`RunCtx`]: the report being
//! written, the source, the clocks, the cancel token, the PITR service), the helpers that
//! write a phase's outcome into the report, and a phase's failure ([`Fail`]).

use node::util::lock;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::report::{Outcome, Phase, Report};
use archive::index::Index;
use node::config::Source;
use replay::pitr::PitrService;

/// Phase 1's name in the report.
pub(super) const RESTORE: &str = "restore";
/// Phase 2's name in the report.
pub(super) const BINLOG: &str = "binlog verification";
/// Phase 3's name in the report.
pub(super) const CHAIN: &str = "chain verification";
/// Phase 4's name in the report.
pub(super) const DATA: &str = "data checks";
/// Phase 5's name in the report.
pub(super) const CLEANUP: &str = "clean-up";

/// The report's error when a newer run (or the service's stop) cancels this one.
pub(super) const STOPPED: &str = "stopped: a newer run replaced it";

/// One run's state, handed to every phase.
pub(super) struct RunCtx<'a> {
    /// The source's configuration.
    pub(super) source: &'a Source,
    /// The run's report, updated as it goes (readers clone it under the lock).
    pub(super) report: &'a Arc<Mutex<Report>>,
    /// Cancelled when a newer run replaces this one or the service stops.
    pub(super) cancel: &'a CancellationToken,
    /// When the run started: the origin of the RTO and of phases 1 and 2's timers.
    pub(super) t0: Instant,
    /// Scheduled runs: the chain gives up at this time (`stop_at`) rather than after
    /// `chain_timeout`.
    pub(super) deadline: Option<chrono::DateTime<chrono::Utc>>,
    /// Keep the scratch instance at the end (`keep_instance`, or the request's override).
    pub(super) keep: bool,
    /// The PITR service that restores and replays (phases 1 and 2) and removes the
    /// instance (phase 5).
    pub(super) pitr: &'a Arc<PitrService>,
    /// The transaction index: the archive's last GTID.
    pub(super) index: &'a Index,
}

/// A failed phase: what (the report's message for a person) and where ("file:pos" in
/// the source's binlogs, or a file name).
pub(super) struct Fail {
    /// The report's `error` (after the phase's name) and the phase's detail.
    pub(super) error: String,
    /// The report's `error_position`.
    pub(super) position: Option<String>,
}

impl From<String> for Fail {
    fn from(error: String) -> Fail {
        Fail {
            error,
            position: None,
        }
    }
}

impl RunCtx<'_> {
    /// Updates the report.
    pub(super) fn set(&self, f: impl FnOnce(&mut Report)) {
        f(&mut lock(self.report));
    }

    /// Updates phase `name` of the report.
    pub(super) fn phase(&self, name: &str, f: impl FnOnce(&mut Phase)) {
        if let Some(p) = lock(self.report).phase_mut(name) {
            f(p);
        }
    }

    /// Marks phase `name` running from now.
    pub(super) fn begin(&self, name: &str) {
        self.phase(name, |p| {
            p.outcome = Outcome::Running;
            p.started_at = Some(catalog::unix_now());
        });
    }

    /// Marks phase `name`, timed from `t`, passed with `detail`.
    pub(super) fn pass(&self, name: &str, t: Instant, detail: String) {
        self.phase(name, |p| {
            p.outcome = Outcome::Passed;
            p.seconds = t.elapsed().as_secs_f64();
            p.detail = detail;
        });
    }

    /// Ends the run as failed in `phase` (timed from `t`).
    pub(super) fn fail(&self, phase: &str, t: Instant, f: Fail) {
        self.phase(phase, |p| {
            p.outcome = Outcome::Failed;
            p.seconds = t.elapsed().as_secs_f64();
            p.detail = f.error.clone();
        });
        // The outcome stays "running" until clean-up is over; the run's end turns an
        // error into "failed".
        self.set(|r| {
            r.error = Some(format!("{phase}: {}", f.error));
            r.error_position = f.position;
        });
    }

    /// Ends the run as cancelled with `error`.
    pub(super) fn cancelled(&self, error: String) {
        self.set(|r| {
            r.outcome = Outcome::Cancelled;
            r.error = Some(error);
        });
    }
}
