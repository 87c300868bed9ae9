//! What one source's tasks share: the process-wide services ([`Shared`]), the latest view
//! of the primary's binlogs ([`PrimaryView`]), the server capture talks to and its
//! timeline ([`Upstream`], moved by `super::failover`), and the handles the API holds
//! ([`SourceRuntime`], [`SourceCommand`]).

use std::sync::{Arc, Mutex};

use catalog::Catalog;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use archive::index::Index;
use binlog::Gtid;
use mysql_wire::SourceUrl;
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
    /// The archive store (`[archive]` enabled), where capture keeps the timeline
    /// records (`archive::timelines`).
    pub archive_store: Option<Arc<objstore::store::Store>>,
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
    pub upstream: UpstreamCell,
}

impl SourceCtx {
    /// Whether a write to the shared catalog may go out now: always on a single node;
    /// in a fleet, while the tenure lasts ([`crate::fleet::lease::Tenure::may_write`]).
    pub fn may_write(&self) -> bool {
        self.tenure.as_ref().is_none_or(|t| t.may_write())
    }
}

/// The server capture talks to and the timeline it writes.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The source's servers (`urls`, or the one `url`; never empty).
    pub(crate) servers: Vec<SourceUrl>,
    /// Index of the current server in `servers`.
    pub(crate) current: usize,
    /// The timeline being written (1, 2, ...).
    pub timeline: u32,
    /// server_id of the timeline's server, once capture reached it.
    pub server_id: Option<u32>,
    /// Stored name of the timeline's first file (timelines >= 2).
    pub first_file: Option<String>,
    /// A switch whose divergence is not decided yet.
    pub fork: Option<Fork>,
    /// When writing the timeline records to the archive store last failed
    /// (`super::failover::record_timelines_in_store`); the poller tries again a minute
    /// later.
    pub records_failed_at: Option<std::time::Instant>,
    /// Counts changes of server (a switch, or the timeline's server reached at another
    /// address): a task holding a connection reconnects when it moved.
    pub generation: u64,
    /// Told by the poller when the current server answers read-only (a switchover
    /// demoted it): the stream on it ends and capture looks for the primary.
    pub demoted: Arc<tokio::sync::Notify>,
}

/// What the first transactions of a new timeline are compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    /// The archive's last GTID when capture switched.
    pub switch_gtid: Gtid,
    /// The newest GTID of the new server's stream the archive already had.
    pub last_shared: Option<Gtid>,
    /// The timeline's first file's start state is not known yet (a restart before any
    /// of it was stored): the stream's GTID_LIST event gives it
    /// (`super::failover::observe_gtid_list`).
    pub start_pending: bool,
}

/// An [`Upstream`] shared by a source's tasks (stream, poller, checker, re-pull).
pub type UpstreamCell = Arc<Mutex<Upstream>>;

impl Upstream {
    /// Timeline 1 on the first server, not reached yet.
    pub fn cell(source: &Source) -> UpstreamCell {
        Arc::new(Mutex::new(Upstream {
            servers: source.servers.clone(),
            current: 0,
            timeline: 1,
            server_id: None,
            first_file: None,
            fork: None,
            records_failed_at: None,
            generation: 0,
            demoted: Arc::new(tokio::sync::Notify::new()),
        }))
    }

    /// The current server's URL (the first when `current` is out of range).
    pub fn url(&self) -> SourceUrl {
        match self.servers.get(self.current).or(self.servers.first()) {
            Some(u) => u.clone(),
            None => {
                SourceUrl::parse("mysql://unconfigured@127.0.0.1:1").expect("a constant URL parses")
            }
        }
    }

    /// True when the source lists more than one server (`urls`).
    pub fn follows(&self) -> bool {
        self.servers.len() > 1
    }

    /// The stored name of the current server's file `wire` (`binlog::timeline_name`).
    pub fn stored(&self, wire: &str) -> String {
        binlog::timeline_name(self.timeline, wire)
    }
}
