//! What one source's tasks share: the process-wide services ([`Shared`]), the latest view
//! of the primary's binlogs ([`PrimaryView`]), and the handles the API holds
//! ([`SourceRuntime`], [`SourceCommand`]).

use std::sync::Arc;

use catalog::Catalog;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use archive::index::Index;
use node::config::{CaptureConfig, Source};
use node::status::{Metrics, PrimaryView, StatusCell};

/// Commands to a running source (from the API).
#[derive(Debug)]
pub enum SourceCommand {
    /// Start again after a definite error. With `accept_gap`, capture continues from the
    /// primary's oldest binlog even though files between the archive's end and it are
    /// gone (the gap is recorded in the catalog).
    Restart {
        /// Continue past a gap.
        accept_gap: bool,
    },
}

/// Everything a source task shares with the rest of the process.
#[derive(Clone)]
pub struct Shared {
    /// Catalog.
    pub catalog: Arc<Catalog>,
    /// Transaction index.
    pub index: Arc<Index>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Capture tuning.
    pub capture: CaptureConfig,
    /// Archive root.
    pub data_dir: std::path::PathBuf,
    /// The thread pools every source's writer and syncer run on.
    pub pools: Arc<super::pool::IoPools>,
}

/// A source's running capture: handles for the API.
pub struct SourceRuntime {
    /// Source name.
    pub name: String,
    /// Live status.
    pub status: StatusCell,
    /// Commands (restart).
    pub commands: mpsc::Sender<SourceCommand>,
    /// Files to check now (even SUCC ones): re-verified, re-pulled if bad.
    pub checks: mpsc::Sender<String>,
    /// The primary's latest binlog list.
    pub primary: Arc<std::sync::Mutex<PrimaryView>>,
}

/// One source's context, handed to its tasks: the process-wide services, the source's
/// settings, its live status, and the token that stops it.
#[derive(Clone)]
pub struct SourceCtx {
    /// Process-wide services.
    pub shared: Shared,
    /// The source's validated settings (its name is `source.name`).
    pub source: Source,
    /// Its live status (API, metrics).
    pub status: StatusCell,
    /// Cancelled at shut-down, and at the end of the node's tenure of the source.
    pub cancel: CancellationToken,
    /// The node's tenure of the source's lease (`None`: a single node, no `[node]`).
    pub tenure: Option<crate::fleet::lease::Tenure>,
    /// The server capture talks to and the timeline it writes (failover follow).
    pub upstream: super::failover::UpstreamCell,
}

impl SourceCtx {
    /// Whether a write to the shared catalog may go out now: always on a single node;
    /// in a fleet, while the tenure lasts ([`crate::fleet::lease::Tenure::may_write`]).
    pub fn may_write(&self) -> bool {
        self.tenure.as_ref().is_none_or(|t| t.may_write())
    }
}
