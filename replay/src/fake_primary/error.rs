//! [`DumpError`]: why the fake primary cannot start or go on serving a replica's dump.
//!
//! Every variant ends the dump with ERROR 1236 (`ER_MASTER_FATAL_ERROR_READING_BINLOG`):
//! its `Display` text is the ERR packet's message, which the replica shows in
//! `Last_IO_Error` (and the listener keeps in `ServeStats::last_error`). Where a real
//! primary has a text for the same case, the text starts with it (mysql-server
//! `sql/rpl_binlog_sender.cc`, MariaDB `sql/sql_repl.cc`), so that tools that read it
//! see what they know. The replica retries on its own; the dump succeeds once the cause
//! is gone (a re-pull fixed the FAIL file, the store answers again), or never (a GTID
//! older than the archive, a gap): the text says which.

use std::path::PathBuf;

use binlog::{EventError, Gtid};
use mysql_wire::packet::PacketError;

use super::compat::CompatError;

/// Why a dump cannot be served (ERROR 1236 with this text).
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// COM_BINLOG_DUMP is cut or malformed.
    #[error(transparent)]
    Malformed(#[from] PacketError),
    /// COM_BINLOG_DUMP_GTID is cut or malformed.
    #[error("malformed COM_BINLOG_DUMP_GTID: {0}")]
    MalformedDumpGtid(#[source] PacketError),
    /// COM_BINLOG_DUMP_GTID's GTID set claims more entries than any real set has.
    #[error("GTID set with {count} {what} is not plausible")]
    ImplausibleGtidSet {
        /// The claimed count.
        count: u64,
        /// "UUIDs" or "intervals".
        what: &'static str,
    },
    /// `@slave_connect_state` holds something that is not a GTID.
    #[error("bad GTID {gtid:?} in @slave_connect_state")]
    BadConnectState {
        /// The part that does not parse.
        gtid: String,
    },
    /// The archive holds no file yet.
    #[error("binlog-server holds no binlog of {source_name} yet")]
    NothingArchived {
        /// Source name.
        source_name: String,
    },
    /// The index failed while looking up the replica's GTIDs.
    #[error(transparent)]
    Index(#[from] archive::index::IndexError),
    /// The index lookup task failed.
    #[error(transparent)]
    IndexTask(#[from] tokio::task::JoinError),
    /// A MariaDB GTID of the replica's position is not in the archive.
    #[error(
        "binlog-server's archive of {source_name} does not hold GTID {gtid} (the replica's \
         position): it is older than the archive or was never written by this primary"
    )]
    GtidNotArchived {
        /// Source name.
        source_name: String,
        /// The GTID.
        gtid: Gtid,
    },
    /// The replica asked for a file the archive does not hold.
    #[error(
        "Could not find first log file name in binary log index file: binlog-server does not hold {file:?}"
    )]
    UnknownFile {
        /// The file asked for.
        file: String,
    },
    /// The replica asked for a position outside the file.
    #[error(
        "Client requested master to start replication from impossible position {pos} in {file} (size {size})"
    )]
    ImpossiblePosition {
        /// The position asked for, bytes.
        pos: u64,
        /// The file.
        file: String,
        /// Its size, bytes.
        size: u64,
    },
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] catalog::CatalogError),
    /// The catalog records a gap after the file just sent.
    #[error(
        "binlog-server's archive of {source_name} has a gap after {after} ({reason}): \
         serving {next} would skip transactions"
    )]
    Gap {
        /// Source name.
        source_name: String,
        /// The file the gap follows.
        after: String,
        /// The next file.
        next: String,
        /// The gap's recorded reason.
        reason: String,
    },
    /// The dump reached the end of a timeline whose next one lacks some of its
    /// transactions (`binlog_server::source::failover`, "Divergence"): continuing would
    /// mix two servers' histories.
    #[error(
        "timeline {timeline} of {source_name} ends at {last_file}; capture switched to \
         timeline {next_timeline} ({next_file}), whose server lacks transactions {divergent} \
         that this replica may have applied: rebuild it from a base on timeline \
         {next_timeline}, or stop it here"
    )]
    DivergentSwitch {
        /// Source name.
        source_name: String,
        /// The timeline that ends.
        timeline: u32,
        /// Its last file.
        last_file: String,
        /// The next timeline.
        next_timeline: u32,
        /// Its first file.
        next_file: String,
        /// The divergent transactions (GTIDs, for people).
        divergent: String,
    },
    /// The next file is on a later timeline but is not that timeline's first file:
    /// the archive lacks the switch's start.
    #[error(
        "binlog-server's archive of {source_name} continues at {next} after {after}, but \
         that timeline starts at {first}: serving it would skip transactions"
    )]
    TimelineHole {
        /// Source name.
        source_name: String,
        /// The last file of the earlier timeline.
        after: String,
        /// The next file the archive has.
        next: String,
        /// The timeline's first file (the catalog's, or "unknown").
        first: String,
    },
    /// The file to send failed its check.
    #[error(
        "binlog {file} of {source_name} failed its check ({info}); binlog-server does not \
         serve it until a re-pull makes it good"
    )]
    FileFailed {
        /// The file.
        file: String,
        /// Source name.
        source_name: String,
        /// The check's finding.
        info: String,
    },
    /// The file is not on this node's disk and the archive store could not give it.
    #[error(
        "binlog {file} of {source_name} is not on this node's disk and cannot be read from the archive store: {source}"
    )]
    NotInStore {
        /// The file.
        file: String,
        /// Source name.
        source_name: String,
        /// The store tier's error (boxed: it is large).
        #[source]
        source: Box<archive::fetch::FetchError>,
    },
    /// The file has no readable FORMAT_DESCRIPTION.
    #[error("binlog {file} of {source_name} has no readable FORMAT_DESCRIPTION")]
    NoFormatDescription {
        /// The file.
        file: String,
        /// Source name.
        source_name: String,
    },
    /// The file's FORMAT_DESCRIPTION fails its CRC32, or announces no checksums while
    /// the next event carries one; reported to the source's checker.
    #[error(
        "binlog {file} of {source_name} has a damaged FORMAT_DESCRIPTION (its CRC32, or \
         \"no checksums\" while the events carry them); not served"
    )]
    UntrustedFormatDescription {
        /// The file.
        file: String,
        /// Source name.
        source_name: String,
    },
    /// Opening, reading or listing a local file failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// "open", "read", "list".
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file's size could not be read.
    #[error("{}: {source}", .path.display())]
    Stat {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file ended before the bytes it must hold.
    #[error("{}: short read at {offset}", .path.display())]
    ShortRead {
        /// The file.
        path: PathBuf,
        /// Where, bytes.
        offset: u64,
    },
    /// The reader stopped inside the range it could read (a bug or a file changed).
    #[error("binlog {file}: stopped inside the readable range at {pos}")]
    StoppedInside {
        /// The file.
        file: String,
        /// Where, bytes.
        pos: u64,
    },
    /// An event of the file is damaged (framing); reported to the source's checker.
    #[error("binlog {file} of {source_name} is damaged at offset {offset}: {source}; not served")]
    Damaged {
        /// The file.
        file: String,
        /// Source name.
        source_name: String,
        /// Where, bytes.
        offset: u64,
        /// The reader's error.
        #[source]
        source: EventError,
    },
    /// An event of the file fails its CRC32; reported to the source's checker.
    #[error(
        "binlog {file} of {source_name} fails its CRC32 check at offset {offset} ({source}); not served"
    )]
    CrcFailed {
        /// The file.
        file: String,
        /// Source name.
        source_name: String,
        /// Where, bytes.
        offset: u64,
        /// The check's error.
        #[source]
        source: EventError,
    },
    /// An event cannot be rewritten for an old MariaDB replica.
    #[error(transparent)]
    Compat(#[from] CompatError),
}

impl DumpError {
    /// A [`DumpError::Io`] for `what` on `path`, for `map_err`.
    pub(super) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> DumpError {
        let path = path.into();
        move |source| DumpError::Io { what, path, source }
    }
}
