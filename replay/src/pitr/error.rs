//! The two errors of PITR, one variant per cause with its data:
//!
//! - [`PlanError`]: why a target has no plan (or a job request is refused). The messages
//!   (`Display`) are the API's error texts; the HTTP status of each variant is chosen in
//!   `binlog_server::api`.
//! - [`RunError`]: why a running job failed. Its text is the job report's `error`, its
//!   [`RunError::kind`] the report's `error_kind`, its [`RunError::position`] the
//!   report's `error_position`.

use std::path::PathBuf;

use binlog::Gtid;
use mysql_wire::conn::ConnError;

use crate::instance::InstanceError;

use super::timefmt::fmt_time;

/// Why there is no plan.
///
/// `BadRequest` and `NotFound` are the caller's mistakes, `Internal` the service's; every
/// other variant is a reason the archive cannot restore the target (HTTP 422), with the
/// data that says why.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Bad input (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// Unknown source or job (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// A destination outside `[pitr] allowed_destinations` / `allowed_datadir_roots`
    /// (HTTP 403; the message names the lists).
    #[error("{0}")]
    Forbidden(String),
    /// The target time is later than now.
    #[error("target {} is in the future (now {})", fmt_time(*.target), fmt_time(*.now))]
    TargetInFuture {
        /// Target, unix seconds.
        target: i64,
        /// The service's clock when planning, unix seconds.
        now: i64,
    },
    /// The index holds no transaction of the source.
    #[error("nothing of {source_name} is archived yet")]
    NothingArchived {
        /// Source name.
        source_name: String,
    },
    /// The target time is after the newest archived transaction and the capture is not
    /// streaming and caught up, so later transactions may be missing.
    #[error(
        "target {} is beyond the archive's end: the newest archived \
         transaction of {source_name} committed at {} and the capture is not \
         streaming and caught up, so later transactions may be missing",
        fmt_time(*.target),
        fmt_time(*.newest_commit)
    )]
    BeyondArchiveEnd {
        /// Source name.
        source_name: String,
        /// Target, unix seconds.
        target: i64,
        /// Commit time of the newest archived transaction, unix seconds.
        newest_commit: i64,
    },
    /// The target GTID is not in the index.
    #[error(
        "GTID {gtid} is not in the archive of {source_name} (not written yet, older than \
         the archive, or from another primary)"
    )]
    GtidNotArchived {
        /// Source name.
        source_name: String,
        /// The target.
        gtid: Gtid,
    },
    /// The base the caller named is not usable for this target.
    #[error(
        "base {base_id} is not a COMPLETED physical or logical base of {source_name} at or before the target"
    )]
    BaseNotUsable {
        /// Source name.
        source_name: String,
        /// The base asked for.
        base_id: String,
    },
    /// No COMPLETED base lies before the target.
    #[error(
        "no COMPLETED base of {source_name} lies before the target{}: take one with POST \
         /v1/sources/{source_name}/backups (or `snapshotter take`)",
        oldest_suffix(*.oldest)
    )]
    NoBase {
        /// Source name.
        source_name: String,
        /// Consistency time of the oldest COMPLETED base, unix seconds, if there is one.
        oldest: Option<i64>,
    },
    /// The base's chain (an incremental's parents up to its full base) cannot be
    /// restored.
    #[error("{source}")]
    BaseChain {
        /// The base whose chain was read.
        base_id: String,
        /// Why the chain is unusable (a parent missing, a base not COMPLETED, ...);
        /// boxed, as it is large.
        #[source]
        source: Box<snapshotter::BaseError>,
    },
    /// The archive does not reach back to the base: the file the base starts in is not
    /// in the catalog.
    #[error(
        "the archive of {source_name} does not hold {file}, where base {base_id} starts: the archive \
         begins later than the base"
    )]
    BaseFileNotArchived {
        /// Source name.
        source_name: String,
        /// The binlog file of the base's position.
        file: String,
        /// The base.
        base_id: String,
    },
    /// The archive does not reach back to the base: none of the base's GTIDs is in the
    /// index and the index starts after the base's position.
    #[error(
        "the archive of {source_name} does not reach back to the base's position \
         ({file}:{pos}, GTID {gtid:?})"
    )]
    BasePositionNotArchived {
        /// Source name.
        source_name: String,
        /// The base's binlog file.
        file: String,
        /// The base's position in it, bytes.
        pos: u64,
        /// The base's GTID position ("" when it has none).
        gtid: String,
    },
    /// The file the cut falls in is not in the catalog.
    #[error("the archive of {source_name} does not list {file} in its catalog")]
    FileNotListed {
        /// Source name.
        source_name: String,
        /// The binlog file of the stop point.
        file: String,
    },
    /// Two consecutive files of the range do not have consecutive sequence numbers.
    #[error("the binlog range crosses a gap: {before} is followed by {after} in the archive")]
    SequenceHole {
        /// The file before the hole.
        before: String,
        /// The file after it.
        after: String,
    },
    /// The catalog records a gap after a file of the range.
    #[error("the binlog range crosses a gap after {before}: {reason}")]
    RecordedGap {
        /// The file the gap follows.
        before: String,
        /// The next file of the range.
        after: String,
        /// The gap's recorded reason.
        reason: String,
    },
    /// The range crosses a failover switch to a timeline whose server lacks some of the
    /// earlier timeline's transactions (divergent): replaying both would mix two
    /// histories.
    #[error(
        "the binlog range crosses the switch to timeline {timeline} ({first_file}), whose \
         server lacks the earlier timeline's transactions {divergent}: restore to a target \
         on timeline {} (its last GTID keeps them) or on timeline {timeline} from a base \
         taken on it",
        .timeline - 1
    )]
    DivergentSwitch {
        /// The later timeline.
        timeline: u32,
        /// Its first file.
        first_file: String,
        /// The divergent transactions (GTIDs, for people).
        divergent: String,
    },
    /// The range crosses a failover switch whose GTID (the archive's last transaction
    /// when capture switched) the index does not hold: where the new timeline's first
    /// file stops repeating the earlier history cannot be placed, so the plan is refused.
    #[error(
        "the binlog range crosses the switch to timeline {timeline} ({first_file}), but its \
         switch GTID {gtid} is not in this node's transaction index: restore to a target \
         on one timeline, or re-index the source (a takeover, or a rebuild)"
    )]
    SwitchNotIndexed {
        /// The later timeline.
        timeline: u32,
        /// Its first file.
        first_file: String,
        /// The switch GTID.
        gtid: String,
    },
    /// A file of the range failed its check.
    #[error(
        "binlog {file} in the range is FAIL ({info}): it is re-pulled while the primary has \
         it; until then this target cannot be restored"
    )]
    FileFailed {
        /// The binlog file.
        file: String,
        /// The check's finding.
        info: String,
    },
    /// A file of the range is not in this node's transaction index (pulled again from
    /// the primary after a takeover, once later files were indexed): a cut could be
    /// placed at the wrong transaction, so the plan is refused.
    #[error(
        "binlog {file} in the range is not in this node's transaction index (it was pulled \
         again from the primary after this node took the source over); this node \
         re-indexes it at its next takeover of the source (a restart, or a drain and back)"
    )]
    FileNotIndexed {
        /// The binlog file.
        file: String,
    },
    /// A file of the range is in the catalog but not on disk.
    #[error(
        "binlog {file} in the range is missing from the archive ({} does not exist); \
         this target cannot be restored until it is back",
        .path.display()
    )]
    FileMissing {
        /// The binlog file.
        file: String,
        /// Where it should be.
        path: PathBuf,
    },
    /// This node does not capture the source and could not follow its archive from the
    /// store (HTTP 503: the store or the catalog is unreachable, or an object is
    /// damaged, as the cause says; retry, or ask the source's owner).
    #[error(
        "this node does not capture {source_name} and could not read its archive from \
         the store: {source}"
    )]
    StoreUnreadable {
        /// Source name.
        source_name: String,
        /// Cause.
        #[source]
        source: Box<archive::rebuild::RebuildError>,
    },
    /// Catalog, index or task failure (HTTP 500), the cause kept.
    #[error(transparent)]
    Internal(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl PlanError {
    /// The binlog file the error is about, when there is one: the FAIL, missing or
    /// unlisted file, the file before a gap, or the base's file the archive lacks.
    pub fn file(&self) -> Option<&str> {
        match self {
            PlanError::BaseFileNotArchived { file, .. }
            | PlanError::BasePositionNotArchived { file, .. }
            | PlanError::FileNotListed { file, .. }
            | PlanError::FileFailed { file, .. }
            | PlanError::FileNotIndexed { file }
            | PlanError::FileMissing { file, .. } => Some(file),
            PlanError::SequenceHole { before, .. } | PlanError::RecordedGap { before, .. } => {
                Some(before)
            }
            PlanError::DivergentSwitch { first_file, .. }
            | PlanError::SwitchNotIndexed { first_file, .. } => Some(first_file),
            PlanError::BadRequest(_)
            | PlanError::NotFound(_)
            | PlanError::Forbidden(_)
            | PlanError::TargetInFuture { .. }
            | PlanError::NothingArchived { .. }
            | PlanError::BeyondArchiveEnd { .. }
            | PlanError::GtidNotArchived { .. }
            | PlanError::BaseNotUsable { .. }
            | PlanError::NoBase { .. }
            | PlanError::BaseChain { .. }
            | PlanError::StoreUnreadable { .. }
            | PlanError::Internal(_) => None,
        }
    }
}

/// " (the oldest is from <time>)", or "" without a base.
fn oldest_suffix(oldest: Option<i64>) -> String {
    oldest
        .map(|t| format!(" (the oldest is from {})", fmt_time(t)))
        .unwrap_or_default()
}

/// A finished job's directory could not be removed (HTTP 500 through
/// [`PlanError::Internal`]).
#[derive(Debug, thiserror::Error)]
#[error("remove {}: {source}", .path.display())]
pub(super) struct RemoveError {
    /// The job's directory.
    pub(super) path: PathBuf,
    /// The OS error.
    #[source]
    pub(super) source: std::io::Error,
}

/// Any failure of the catalog, the index or a blocking task, as [`PlanError::Internal`]
/// with the failure as its cause.
pub(super) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> PlanError {
    PlanError::Internal(Box::new(e))
}

/// Why a running PITR job failed. Every variant is a definite stop of the job: the
/// caller (the job's task) records it in the report and removes the scratch instance; a
/// retry is a new job.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The base's chain (an incremental's parents) could not be read from the catalog.
    #[error(transparent)]
    BaseChain(Box<snapshotter::BaseError>),
    /// The catalog returned an empty chain for the plan's base.
    #[error("empty base chain")]
    EmptyChain,
    /// A tool (mariadbd, mariadb-install-db) is not installed; the message names the
    /// package.
    #[error(transparent)]
    Tool(snapshotter::ToolError),
    /// The scratch instance could not be prepared, started or stopped.
    #[error(transparent)]
    Instance(#[from] InstanceError),
    /// Logging in to the restored instance failed.
    #[error("connect to the restored instance: {0}")]
    Connect(#[source] ConnError),
    /// A statement on the restored instance failed.
    #[error("on the restored instance, {sql}: {source}")]
    Query {
        /// The statement, its password redacted.
        sql: String,
        /// The server's or the connection's error.
        #[source]
        source: ConnError,
    },
    /// Restoring the base (physical copy-back or logical load) failed.
    #[error("restore base {base}: {source}")]
    Restore {
        /// The base's id.
        base: String,
        /// The snapshotter's error (a tool's output tail, a missing object, ...).
        #[source]
        source: Box<snapshotter::BaseError>,
    },
    /// The job was cancelled while its base was restored.
    #[error("cancelled after the base was restored")]
    CancelledAfterBase,
    /// The job was cancelled while it replayed.
    #[error("cancelled")]
    Cancelled,
    /// binlog-server is shutting down.
    #[error("binlog-server is stopping")]
    Stopping,
    /// The plan's source has no archive on this node.
    #[error("source {source_name} has no archive")]
    NoArchive {
        /// Source name.
        source_name: String,
    },
    /// No random bytes for the job's one-time replication account.
    #[error(transparent)]
    Random(#[from] node::random::RandomError),
    /// The job's fake primary could not listen.
    #[error(transparent)]
    Listen(#[from] crate::fake_primary::ListenError),
    /// The replica's SQL thread stopped with an error while applying.
    #[error("the replica's SQL thread stopped: error {code}: {message}")]
    ReplicaSqlStopped {
        /// `Last_SQL_Errno`.
        code: u16,
        /// `Last_SQL_Error`.
        message: String,
        /// "file:pos" of the event it stopped at, in the source's binlogs.
        position: String,
    },
    /// The replica's IO thread stopped with an error.
    #[error("the replica's IO thread stopped: error {code}: {message}")]
    ReplicaIoStopped {
        /// `Last_IO_Errno`.
        code: u16,
        /// `Last_IO_Error`.
        message: String,
        /// "file:pos" the replica had read to.
        position: String,
    },
    /// The job's fake primary refused to serve (ERROR 1236); its own message.
    #[error("the replica's IO thread stopped: {message}")]
    Refused {
        /// The fake primary's error text.
        message: String,
        /// "file:pos" the replica had read to.
        position: String,
    },
    /// The caller's datadir could not be created.
    #[error("create {}: {source}", .path.display())]
    CreateDatadir {
        /// The datadir.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The instance's datadir link to the caller's datadir could not be made.
    #[error("link {} to {}: {source}", .link.display(), .target.display())]
    LinkDatadir {
        /// `<job dir>/data`.
        link: PathBuf,
        /// The caller's datadir.
        target: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// A stable snake_case name of the cause, for the report's `error_kind` and for
    /// alerting (a job the service's restart interrupted has `interrupted`): `base_chain`, `tool_missing`, `instance`, `connect`, `query`,
    /// `restore`, `cancelled`, `stopping`, `no_archive`, `random`, `listen`,
    /// `replica_sql_stopped`, `replica_io_stopped`, `refused`, `datadir`.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::BaseChain(_) | RunError::EmptyChain => "base_chain",
            RunError::Tool(_) => "tool_missing",
            RunError::Instance(_) => "instance",
            RunError::Connect(_) => "connect",
            RunError::Query { .. } => "query",
            RunError::Restore { .. } => "restore",
            RunError::CancelledAfterBase | RunError::Cancelled => "cancelled",
            RunError::Stopping => "stopping",
            RunError::NoArchive { .. } => "no_archive",
            RunError::Random(_) => "random",
            RunError::Listen(_) => "listen",
            RunError::ReplicaSqlStopped { .. } => "replica_sql_stopped",
            RunError::ReplicaIoStopped { .. } => "replica_io_stopped",
            RunError::Refused { .. } => "refused",
            RunError::CreateDatadir { .. } | RunError::LinkDatadir { .. } => "datadir",
        }
    }

    /// The "file:pos" in the source's binlogs where the replica stopped, for the
    /// replica's own failures.
    pub fn position(&self) -> Option<&str> {
        match self {
            RunError::ReplicaSqlStopped { position, .. }
            | RunError::ReplicaIoStopped { position, .. }
            | RunError::Refused { position, .. } => Some(position),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_errors_name_their_file_and_keep_their_messages() {
        let fail = PlanError::FileFailed {
            file: "mysql-bin.000004".into(),
            info: "CRC32 mismatch at 1234".into(),
        };
        assert_eq!(fail.file(), Some("mysql-bin.000004"));
        assert_eq!(
            fail.to_string(),
            "binlog mysql-bin.000004 in the range is FAIL (CRC32 mismatch at 1234): it is \
             re-pulled while the primary has it; until then this target cannot be restored"
        );
        let missing = PlanError::FileMissing {
            file: "mysql-bin.000007".into(),
            path: PathBuf::from("/data/db1/mysql-bin.000007"),
        };
        assert_eq!(missing.file(), Some("mysql-bin.000007"));
        assert_eq!(
            missing.to_string(),
            "binlog mysql-bin.000007 in the range is missing from the archive \
             (/data/db1/mysql-bin.000007 does not exist); this target cannot be restored \
             until it is back"
        );
        let gap = PlanError::RecordedGap {
            before: "mysql-bin.000002".into(),
            after: "mysql-bin.000003".into(),
            reason: "primary purged".into(),
        };
        assert_eq!(gap.file(), Some("mysql-bin.000002"));
        assert_eq!(
            gap.to_string(),
            "the binlog range crosses a gap after mysql-bin.000002: primary purged"
        );
        let hole = PlanError::SequenceHole {
            before: "mysql-bin.000002".into(),
            after: "mysql-bin.000005".into(),
        };
        assert_eq!(hole.file(), Some("mysql-bin.000002"));
        let reach = PlanError::BasePositionNotArchived {
            source_name: "db1".into(),
            file: "mysql-bin.000001".into(),
            pos: 4,
            gtid: "0-1-5".into(),
        };
        assert_eq!(reach.file(), Some("mysql-bin.000001"));
        assert_eq!(
            reach.to_string(),
            "the archive of db1 does not reach back to the base's position \
             (mysql-bin.000001:4, GTID \"0-1-5\")"
        );

        let no_base = PlanError::NoBase {
            source_name: "db1".into(),
            oldest: Some(1_790_000_000),
        };
        assert_eq!(no_base.file(), None);
        assert_eq!(
            no_base.to_string(),
            "no COMPLETED base of db1 lies before the target (the oldest is from \
             2026-09-21T14:13:20Z): take one with POST /v1/sources/db1/backups (or \
             `snapshotter take`)"
        );
        let none_at_all = PlanError::NoBase {
            source_name: "db1".into(),
            oldest: None,
        };
        assert!(none_at_all
            .to_string()
            .starts_with("no COMPLETED base of db1 lies before the target: take one"));
        let future = PlanError::TargetInFuture {
            target: 1_790_000_060,
            now: 1_790_000_000,
        };
        assert_eq!(future.file(), None);
        assert_eq!(
            future.to_string(),
            "target 2026-09-21T14:14:20Z is in the future (now 2026-09-21T14:13:20Z)"
        );
        assert_eq!(PlanError::NotFound("no source".into()).file(), None);
        assert_eq!(PlanError::Internal("mysql-bin.000001".into()).file(), None);
        let io = internal(std::io::Error::other("disk gone"));
        assert_eq!(io.to_string(), "disk gone");
    }

    #[test]
    fn run_errors_keep_their_texts_and_name_their_kind_and_position() {
        let sql = RunError::ReplicaSqlStopped {
            code: 1062,
            message: "Duplicate entry '1' for key 'PRIMARY'".into(),
            position: "mysql-bin.000002:1234".into(),
        };
        assert_eq!(
            sql.to_string(),
            "the replica's SQL thread stopped: error 1062: Duplicate entry '1' for key 'PRIMARY'"
        );
        assert_eq!(sql.kind(), "replica_sql_stopped");
        assert_eq!(sql.position(), Some("mysql-bin.000002:1234"));
        let refused = RunError::Refused {
            message: "binlog mysql-bin.000003 is FAIL".into(),
            position: "mysql-bin.000003:4".into(),
        };
        assert_eq!(
            refused.to_string(),
            "the replica's IO thread stopped: binlog mysql-bin.000003 is FAIL"
        );
        assert_eq!(refused.kind(), "refused");
        let restore = RunError::Restore {
            base: "b-1".into(),
            source: Box::new(snapshotter::BaseError::MissingObject {
                base: "b-1".into(),
                object: "dump.sql",
            }),
        };
        assert_eq!(
            restore.to_string(),
            "restore base b-1: base b-1 has no dump.sql object"
        );
        assert_eq!(restore.position(), None);
        assert_eq!(
            RunError::Cancelled.kind(),
            RunError::CancelledAfterBase.kind()
        );
        assert_eq!(RunError::Stopping.to_string(), "binlog-server is stopping");
    }
}
