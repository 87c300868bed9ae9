//! Binary log event framing and the few event bodies the log server must understand.
//!
//! # Format
//!
//! A binlog file (MySQL >= 5.0 and MariaDB, binlog format version 4) is the 4-byte magic
//! `fe 62 69 6e` ("\xfebin") followed by events, back to back. Every event starts with
//! the 19-byte common header (all integers little-endian), as described in mysql-server
//! `libbinlogevents/include/binlog_event.h` (`Log_event_header`) and the MariaDB KB page
//! "Log Event Header":
//!
//! | offset | size | field                                                          |
//! |-------:|-----:|----------------------------------------------------------------|
//! | 0      | 4    | timestamp, unix seconds                                        |
//! | 4      | 1    | type code (see [`event_type`])                                 |
//! | 5      | 4    | server_id of the server that originated the event              |
//! | 9      | 4    | event_size, bytes, header and checksum included               |
//! | 13     | 4    | log_pos: end offset of the event in its file (0 = not set)     |
//! | 17     | 2    | flags (`LOG_EVENT_*_F`)                                        |
//!
//! After the header comes a type-specific post-header (its length per type is announced
//! by the FORMAT_DESCRIPTION event that opens each file), then the body. When the
//! FORMAT_DESCRIPTION announces CRC32 checksums (MySQL >= 5.6.1, MariaDB >= 5.3), the last
//! 4 bytes of every event are the CRC32 (ISO-HDLC, as zlib) of all its preceding bytes.
//!
//! Everything here reads untrusted bytes (from the network and from disk): every length
//! is checked before use, no function panics on any input, allocation is bounded by
//! [`MAX_EVENT_SIZE`], and errors are [`EventError`] values carrying offsets where known.
//!
//! Besides framing ([`EventHeader`], [`EventReader`], [`verify_checksum`], [`body`]) this
//! module decodes FORMAT_DESCRIPTION ([`FormatDescription`]), ROTATE ([`parse_rotate`]),
//! the GTID events of both dialects ([`parse_gtid`]) and the SQL text of QUERY events
//! ([`query_text`]), and groups events into transactions ([`TxnTracker`]).

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

/// The 4 bytes every binlog file (and relay log) starts with: `fe 'b' 'i' 'n'`.
/// Source: mysql-server `libbinlogevents/include/binlog_event.h` (`BINLOG_MAGIC`).
pub const BINLOG_MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// Length in bytes of the common event header of binlog format v4
/// (`LOG_EVENT_MINIMAL_HEADER_LEN` in mysql-server `binlog_event.h`).
pub const HEADER_LEN: usize = 19;

/// Length in bytes of the CRC32 checksum that ends each event when checksums are on
/// (`BINLOG_CHECKSUM_LEN` in mysql-server `binlog_event.h`).
pub const CHECKSUM_LEN: usize = 4;

/// Largest event_size (bytes, header and checksum included) this crate accepts: 1 GiB.
///
/// A server cannot write an event larger than its `max_allowed_packet`, whose maximum is
/// 1 GiB in both MySQL and MariaDB, and a replica refuses events larger than
/// `slave_max_allowed_packet` (also at most 1 GiB). Anything larger is corruption, and
/// the bound keeps a corrupt size field from making us buffer gigabytes.
pub const MAX_EVENT_SIZE: u32 = 1 << 30;

/// Header flag: set in the FORMAT_DESCRIPTION of a binlog file while the server has it
/// open; cleared when the file is closed properly. The event's CRC32 is computed with the
/// flag cleared. Source: mysql-server `binlog_event.h` (`LOG_EVENT_BINLOG_IN_USE_F`).
pub const LOG_EVENT_BINLOG_IN_USE_F: u16 = 0x1;

/// Header flag: statement depends on thread-specific state (temporary tables).
pub const LOG_EVENT_THREAD_SPECIFIC_F: u16 = 0x4;

/// Header flag: the QUERY event must not emit `USE db` when printed.
pub const LOG_EVENT_SUPPRESS_USE_F: u16 = 0x8;

/// Header flag: the event was made up for the replication stream and is not in the file
/// (the ROTATE a primary sends first, with log_pos 0). Servers older than MySQL 5.1 / 5.0
/// relay logs do not set it on their fake ROTATE; such a ROTATE has timestamp 0 and
/// log_pos 0. Source: mysql-server `binlog_event.h` (`LOG_EVENT_ARTIFICIAL_F`).
pub const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;

/// Header flag: the event was written by a replica into its relay log
/// (`LOG_EVENT_RELAY_LOG_F`, MySQL >= 5.6; older relay logs do not set it).
pub const LOG_EVENT_RELAY_LOG_F: u16 = 0x40;

/// Header flag: a server that does not know the event type may skip it
/// (`LOG_EVENT_IGNORABLE_F`).
pub const LOG_EVENT_IGNORABLE_F: u16 = 0x80;

/// Header flag (MariaDB): `@@skip_replication` was set for the event
/// (`LOG_EVENT_SKIP_REPLICATION_F`, MariaDB KB "Log Event Header").
pub const LOG_EVENT_SKIP_REPLICATION_F: u16 = 0x8000;

/// Event type codes (the header byte at offset 4).
///
/// Sources: mysql-server `libbinlogevents/include/binlog_event.h` (`enum Log_event_type`)
/// for 0..=42, MariaDB `sql/log_event.h` and the MariaDB KB "Replication Protocol" pages
/// for 160..=171.
pub mod event_type {
    /// Never written; type 0.
    pub const UNKNOWN: u8 = 0;
    /// Binlog v1/v3 start event (MySQL 3.23 / 4.x).
    pub const START_V3: u8 = 1;
    /// A statement (DDL, statement-format DML, BEGIN/COMMIT/ROLLBACK).
    pub const QUERY: u8 = 2;
    /// The server shut down; last event of its file.
    pub const STOP: u8 = 3;
    /// Names the next binlog file; last event of a file closed by rotation.
    pub const ROTATE: u8 = 4;
    /// LAST_INSERT_ID / INSERT_ID value for the next statement.
    pub const INTVAR: u8 = 5;
    /// LOAD DATA (MySQL 3.23 format).
    pub const LOAD: u8 = 6;
    /// Unused.
    pub const SLAVE: u8 = 7;
    /// LOAD DATA file start (MySQL 4.x).
    pub const CREATE_FILE: u8 = 8;
    /// LOAD DATA file data block.
    pub const APPEND_BLOCK: u8 = 9;
    /// LOAD DATA execution (MySQL 4.x).
    pub const EXEC_LOAD: u8 = 10;
    /// LOAD DATA file removal.
    pub const DELETE_FILE: u8 = 11;
    /// LOAD DATA (MySQL 4.x format).
    pub const NEW_LOAD: u8 = 12;
    /// RAND() seeds for the next statement.
    pub const RAND: u8 = 13;
    /// A user variable used by the next statement.
    pub const USER_VAR: u8 = 14;
    /// Describes the file: server version, header and post-header lengths, checksum alg.
    pub const FORMAT_DESCRIPTION: u8 = 15;
    /// Commit of an XA-capable (InnoDB) transaction; carries the XID.
    pub const XID: u8 = 16;
    /// LOAD DATA file start (MySQL >= 5.0).
    pub const BEGIN_LOAD_QUERY: u8 = 17;
    /// LOAD DATA statement (MySQL >= 5.0).
    pub const EXECUTE_LOAD_QUERY: u8 = 18;
    /// Table id to table definition, before row events.
    pub const TABLE_MAP: u8 = 19;
    /// Pre-GA row events of the MySQL 5.1 development tree.
    pub const PRE_GA_WRITE_ROWS: u8 = 20;
    /// Pre-GA row event.
    pub const PRE_GA_UPDATE_ROWS: u8 = 21;
    /// Pre-GA row event.
    pub const PRE_GA_DELETE_ROWS: u8 = 22;
    /// Row event, version 1 (MySQL 5.1 - 5.5, MariaDB).
    pub const WRITE_ROWS_V1: u8 = 23;
    /// Row event, version 1.
    pub const UPDATE_ROWS_V1: u8 = 24;
    /// Row event, version 1.
    pub const DELETE_ROWS_V1: u8 = 25;
    /// Something happened on the primary that replicas must know (e.g. lost events).
    pub const INCIDENT: u8 = 26;
    /// Replication stream keep-alive; never in a file.
    pub const HEARTBEAT: u8 = 27;
    /// An event a replica may skip.
    pub const IGNORABLE: u8 = 28;
    /// The statement text of the following row events (MySQL).
    pub const ROWS_QUERY: u8 = 29;
    /// Row event, version 2 (MySQL >= 5.6).
    pub const WRITE_ROWS: u8 = 30;
    /// Row event, version 2.
    pub const UPDATE_ROWS: u8 = 31;
    /// Row event, version 2.
    pub const DELETE_ROWS: u8 = 32;
    /// MySQL GTID of the following transaction.
    pub const GTID: u8 = 33;
    /// MySQL transaction without GTID (gtid_mode=OFF), same layout as GTID.
    pub const ANONYMOUS_GTID: u8 = 34;
    /// MySQL set of GTIDs in all earlier files.
    pub const PREVIOUS_GTIDS: u8 = 35;
    /// Group replication transaction context.
    pub const TRANSACTION_CONTEXT: u8 = 36;
    /// Group replication view change.
    pub const VIEW_CHANGE: u8 = 37;
    /// XA PREPARE of an XA transaction.
    pub const XA_PREPARE: u8 = 38;
    /// Partial JSON update row event (MySQL >= 8.0.3).
    pub const PARTIAL_UPDATE_ROWS: u8 = 39;
    /// Compressed transaction (MySQL >= 8.0.20, binlog_transaction_compression).
    pub const TRANSACTION_PAYLOAD: u8 = 40;
    /// Replication stream keep-alive, version 2; never in a file.
    pub const HEARTBEAT_V2: u8 = 41;
    /// MySQL >= 8.3 GTID with a tag.
    pub const GTID_TAGGED: u8 = 42;
    /// MariaDB: statement text of the following row events.
    pub const MARIADB_ANNOTATE_ROWS: u8 = 160;
    /// MariaDB: binlog checkpoint (oldest file still needed for crash recovery).
    pub const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
    /// MariaDB GTID of the following transaction (replaces BEGIN).
    pub const MARIADB_GTID: u8 = 162;
    /// MariaDB GTID state at the start of the file.
    pub const MARIADB_GTID_LIST: u8 = 163;
    /// MariaDB binlog encryption start.
    pub const MARIADB_START_ENCRYPTION: u8 = 164;
    /// MariaDB compressed QUERY (log_bin_compress).
    pub const MARIADB_QUERY_COMPRESSED: u8 = 165;
    /// MariaDB compressed row event, version 1.
    pub const MARIADB_WRITE_ROWS_COMPRESSED_V1: u8 = 166;
    /// MariaDB compressed row event, version 1.
    pub const MARIADB_UPDATE_ROWS_COMPRESSED_V1: u8 = 167;
    /// MariaDB compressed row event, version 1.
    pub const MARIADB_DELETE_ROWS_COMPRESSED_V1: u8 = 168;
    /// MariaDB compressed row event.
    pub const MARIADB_WRITE_ROWS_COMPRESSED: u8 = 169;
    /// MariaDB compressed row event.
    pub const MARIADB_UPDATE_ROWS_COMPRESSED: u8 = 170;
    /// MariaDB compressed row event.
    pub const MARIADB_DELETE_ROWS_COMPRESSED: u8 = 171;

    /// Short upper-case name of an event type ("QUERY", "MARIADB_GTID"), "UNKNOWN" for
    /// codes neither dialect defines.
    pub fn name(t: u8) -> &'static str {
        match t {
            START_V3 => "START_V3",
            QUERY => "QUERY",
            STOP => "STOP",
            ROTATE => "ROTATE",
            INTVAR => "INTVAR",
            LOAD => "LOAD",
            SLAVE => "SLAVE",
            CREATE_FILE => "CREATE_FILE",
            APPEND_BLOCK => "APPEND_BLOCK",
            EXEC_LOAD => "EXEC_LOAD",
            DELETE_FILE => "DELETE_FILE",
            NEW_LOAD => "NEW_LOAD",
            RAND => "RAND",
            USER_VAR => "USER_VAR",
            FORMAT_DESCRIPTION => "FORMAT_DESCRIPTION",
            XID => "XID",
            BEGIN_LOAD_QUERY => "BEGIN_LOAD_QUERY",
            EXECUTE_LOAD_QUERY => "EXECUTE_LOAD_QUERY",
            TABLE_MAP => "TABLE_MAP",
            PRE_GA_WRITE_ROWS => "PRE_GA_WRITE_ROWS",
            PRE_GA_UPDATE_ROWS => "PRE_GA_UPDATE_ROWS",
            PRE_GA_DELETE_ROWS => "PRE_GA_DELETE_ROWS",
            WRITE_ROWS_V1 => "WRITE_ROWS_V1",
            UPDATE_ROWS_V1 => "UPDATE_ROWS_V1",
            DELETE_ROWS_V1 => "DELETE_ROWS_V1",
            INCIDENT => "INCIDENT",
            HEARTBEAT => "HEARTBEAT",
            IGNORABLE => "IGNORABLE",
            ROWS_QUERY => "ROWS_QUERY",
            WRITE_ROWS => "WRITE_ROWS",
            UPDATE_ROWS => "UPDATE_ROWS",
            DELETE_ROWS => "DELETE_ROWS",
            GTID => "GTID",
            ANONYMOUS_GTID => "ANONYMOUS_GTID",
            PREVIOUS_GTIDS => "PREVIOUS_GTIDS",
            TRANSACTION_CONTEXT => "TRANSACTION_CONTEXT",
            VIEW_CHANGE => "VIEW_CHANGE",
            XA_PREPARE => "XA_PREPARE",
            PARTIAL_UPDATE_ROWS => "PARTIAL_UPDATE_ROWS",
            TRANSACTION_PAYLOAD => "TRANSACTION_PAYLOAD",
            HEARTBEAT_V2 => "HEARTBEAT_V2",
            GTID_TAGGED => "GTID_TAGGED",
            MARIADB_ANNOTATE_ROWS => "MARIADB_ANNOTATE_ROWS",
            MARIADB_BINLOG_CHECKPOINT => "MARIADB_BINLOG_CHECKPOINT",
            MARIADB_GTID => "MARIADB_GTID",
            MARIADB_GTID_LIST => "MARIADB_GTID_LIST",
            MARIADB_START_ENCRYPTION => "MARIADB_START_ENCRYPTION",
            MARIADB_QUERY_COMPRESSED => "MARIADB_QUERY_COMPRESSED",
            MARIADB_WRITE_ROWS_COMPRESSED_V1 => "MARIADB_WRITE_ROWS_COMPRESSED_V1",
            MARIADB_UPDATE_ROWS_COMPRESSED_V1 => "MARIADB_UPDATE_ROWS_COMPRESSED_V1",
            MARIADB_DELETE_ROWS_COMPRESSED_V1 => "MARIADB_DELETE_ROWS_COMPRESSED_V1",
            MARIADB_WRITE_ROWS_COMPRESSED => "MARIADB_WRITE_ROWS_COMPRESSED",
            MARIADB_UPDATE_ROWS_COMPRESSED => "MARIADB_UPDATE_ROWS_COMPRESSED",
            MARIADB_DELETE_ROWS_COMPRESSED => "MARIADB_DELETE_ROWS_COMPRESSED",
            _ => "UNKNOWN",
        }
    }

    /// True for the GTID-carrying events that open a transaction: GTID, ANONYMOUS_GTID,
    /// GTID_TAGGED (MySQL) and MARIADB_GTID.
    pub fn is_gtid(t: u8) -> bool {
        matches!(t, GTID | ANONYMOUS_GTID | GTID_TAGGED | MARIADB_GTID)
    }
}

/// Everything that can be wrong with binlog bytes.
///
/// [`EventError::Truncated`] is a clean short read: the bytes seen so far are fine but the
/// stream or file ends inside an event (the normal state of a file being written, or of a
/// cut-off copy). Every other variant except [`EventError::Io`] means the bytes present
/// are not a valid binlog (corruption, or a format this crate does not support).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The data ends inside an event (or inside the magic): `needed` bytes from `offset`
    /// were required, only `available` were there.
    #[error("truncated at offset {offset} (needs {needed} bytes, has {available})")]
    Truncated {
        /// File offset where the incomplete item (event or magic) starts.
        offset: u64,
        /// Bytes the item needs (19 for a header, event_size for an event, 4 for the magic).
        needed: u64,
        /// Bytes that were present.
        available: u64,
    },
    /// The first 4 bytes are not [`BINLOG_MAGIC`].
    #[error("not a binlog: starts with {} instead of fe62696e", hex::encode(found))]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// The header's event_size is below 19 or above [`MAX_EVENT_SIZE`].
    #[error("bad event size {size} (must be {HEADER_LEN}..={MAX_EVENT_SIZE})")]
    BadEventSize {
        /// The event_size field.
        size: u32,
    },
    /// The slice handed in is not as long as the event's own event_size field says.
    #[error("event_size field says {declared} bytes but the event has {actual}")]
    SizeMismatch {
        /// The event_size field.
        declared: u32,
        /// Length of the slice.
        actual: usize,
    },
    /// A field of the event extends past its end: the event is malformed.
    #[error("{what}: needs {needed} bytes, event has {available}")]
    TooShort {
        /// Which field or structure.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// A field has a value that no server writes.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The stored CRC32 does not match the bytes.
    #[error(
        "CRC32 mismatch in {} event (stored {stored:#010x}, computed {computed:#010x})",
        event_type::name(*type_code)
    )]
    ChecksumMismatch {
        /// Type of the event.
        type_code: u8,
        /// The CRC32 stored in the last 4 bytes.
        stored: u32,
        /// The CRC32 of the preceding bytes.
        computed: u32,
    },
    /// Valid, but a format this crate does not handle (binlog v1/v3, other header lengths,
    /// unknown checksum algorithms).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Text that is no GTID ("0-1-42" or "uuid:gno").
    #[error("invalid GTID {0:?}")]
    InvalidGtid(String),
    /// Another error, located at a file offset.
    #[error("{source} at offset {offset}")]
    At {
        /// File offset of the event concerned.
        offset: u64,
        /// The error.
        #[source]
        source: Box<EventError>,
    },
    /// Reading failed.
    #[error("I/O error at offset {offset}: {source}")]
    Io {
        /// File offset where the read started.
        offset: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl EventError {
    /// Attaches a file offset, unless the error already carries one.
    pub fn at(self, offset: u64) -> EventError {
        match self {
            e @ (EventError::At { .. } | EventError::Truncated { .. } | EventError::Io { .. }) => e,
            e => EventError::At {
                offset,
                source: Box::new(e),
            },
        }
    }

    /// The file offset the error refers to, when known.
    pub fn offset(&self) -> Option<u64> {
        match self {
            EventError::At { offset, .. }
            | EventError::Truncated { offset, .. }
            | EventError::Io { offset, .. } => Some(*offset),
            EventError::BadMagic { .. } => Some(0),
            _ => None,
        }
    }

    /// The error without its location wrapper.
    pub fn root(&self) -> &EventError {
        match self {
            EventError::At { source, .. } => source.root(),
            e => e,
        }
    }

    /// True when the data simply ends inside an event (a clean short read), as opposed to
    /// corrupt bytes or an I/O error.
    pub fn is_truncated(&self) -> bool {
        matches!(self.root(), EventError::Truncated { .. })
    }

    /// True for an I/O error of the underlying reader.
    pub fn is_io(&self) -> bool {
        matches!(self.root(), EventError::Io { .. })
    }
}

type Result<T> = std::result::Result<T, EventError>;

/// `len` bytes of `buf` from `at`, or [`EventError::TooShort`].
fn field<'a>(buf: &'a [u8], at: usize, len: usize, what: &'static str) -> Result<&'a [u8]> {
    let end = at.checked_add(len).ok_or(EventError::TooShort {
        what,
        needed: usize::MAX,
        available: buf.len(),
    })?;
    buf.get(at..end).ok_or(EventError::TooShort {
        what,
        needed: end,
        available: buf.len(),
    })
}

fn le_u8(buf: &[u8], at: usize, what: &'static str) -> Result<u8> {
    buf.get(at).copied().ok_or(EventError::TooShort {
        what,
        needed: at.saturating_add(1),
        available: buf.len(),
    })
}

fn le_u16(buf: &[u8], at: usize, what: &'static str) -> Result<u16> {
    let b = field(buf, at, 2, what)?;
    Ok(u16::from_le_bytes([
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(0),
    ]))
}

fn le_uint(buf: &[u8], at: usize, len: usize, what: &'static str) -> Result<u64> {
    let b = field(buf, at, len, what)?;
    Ok(b.iter()
        .rev()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)))
}

fn le_u32(buf: &[u8], at: usize, what: &'static str) -> Result<u32> {
    // le_uint over 4 bytes never exceeds u32::MAX.
    Ok(le_uint(buf, at, 4, what)? as u32)
}

fn le_u64(buf: &[u8], at: usize, what: &'static str) -> Result<u64> {
    le_uint(buf, at, 8, what)
}

/// The 19-byte common header of a v4 binlog event.
///
/// Source: mysql-server `libbinlogevents/include/binlog_event.h` (`Log_event_header`),
/// MariaDB KB "Log Event Header". All fields are little-endian on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// When the statement started on the originating server, unix seconds (0 on some
    /// artificial events).
    pub timestamp: u32,
    /// Event type, see [`event_type`].
    pub type_code: u8,
    /// server_id of the originating server.
    pub server_id: u32,
    /// Size of the whole event in bytes (header, body and checksum), 19..=[`MAX_EVENT_SIZE`].
    pub event_size: u32,
    /// End offset of the event in its binlog file, bytes; 0 for artificial events, relay
    /// log bookkeeping, and (MariaDB >= 11.4) events inside a transaction. Wraps at 4 GiB.
    pub log_pos: u32,
    /// `LOG_EVENT_*_F` flags.
    pub flags: u16,
}

impl EventHeader {
    /// Parses the header from the first 19 bytes of `buf` (more may follow). Errors when
    /// `buf` is shorter than 19 bytes ([`EventError::TooShort`]) or event_size is outside
    /// 19..=[`MAX_EVENT_SIZE`] ([`EventError::BadEventSize`]).
    pub fn parse(buf: &[u8]) -> Result<EventHeader> {
        const WHAT: &str = "event header";
        let h = field(buf, 0, HEADER_LEN, WHAT)?;
        let header = EventHeader {
            timestamp: le_u32(h, 0, WHAT)?,
            type_code: le_u8(h, 4, WHAT)?,
            server_id: le_u32(h, 5, WHAT)?,
            event_size: le_u32(h, 9, WHAT)?,
            log_pos: le_u32(h, 13, WHAT)?,
            flags: le_u16(h, 17, WHAT)?,
        };
        if header.event_size < HEADER_LEN as u32 || header.event_size > MAX_EVENT_SIZE {
            return Err(EventError::BadEventSize {
                size: header.event_size,
            });
        }
        Ok(header)
    }

    /// Serialises the header into its 19 wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let parts: [(usize, &[u8]); 6] = [
            (0, &self.timestamp.to_le_bytes()),
            (4, &[self.type_code]),
            (5, &self.server_id.to_le_bytes()),
            (9, &self.event_size.to_le_bytes()),
            (13, &self.log_pos.to_le_bytes()),
            (17, &self.flags.to_le_bytes()),
        ];
        for (at, bytes) in parts {
            for (dst, src) in out.iter_mut().skip(at).zip(bytes) {
                *dst = *src;
            }
        }
        out
    }

    /// True when `LOG_EVENT_ARTIFICIAL_F` is set: the event exists only in the replication
    /// stream. (MySQL 5.0 marks its fake ROTATE only by timestamp 0 and log_pos 0.)
    pub fn is_artificial(&self) -> bool {
        self.flags & LOG_EVENT_ARTIFICIAL_F != 0
    }

    /// True when the FORMAT_DESCRIPTION flag "file in use" is set.
    pub fn is_in_use(&self) -> bool {
        self.flags & LOG_EVENT_BINLOG_IN_USE_F != 0
    }

    /// End offset of an event of this header starting at file offset `offset`, as the
    /// log_pos field would hold it (modulo 2^32: log_pos is 32 bits).
    pub fn expected_log_pos(&self, offset: u64) -> u32 {
        offset.wrapping_add(u64::from(self.event_size)) as u32
    }
}

/// Checks that `event` is exactly as long as its header says and returns the header.
fn framed_header(event: &[u8]) -> Result<EventHeader> {
    let h = EventHeader::parse(event)?;
    if h.event_size as usize != event.len() {
        return Err(EventError::SizeMismatch {
            declared: h.event_size,
            actual: event.len(),
        });
    }
    Ok(h)
}

/// Per-event checksum algorithm announced by a FORMAT_DESCRIPTION event
/// (`enum_binlog_checksum_alg` in mysql-server `binlog_event.h`: 0 = OFF, 1 = CRC32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumAlg {
    /// No checksum (binlog_checksum=NONE, or a server older than MySQL 5.6.1 / MariaDB 5.3).
    Off,
    /// The last 4 bytes of each event are the CRC32 of the rest.
    Crc32,
}

impl ChecksumAlg {
    /// Number of trailing checksum bytes per event: 0 or 4.
    pub fn trailer_len(self) -> usize {
        match self {
            ChecksumAlg::Off => 0,
            ChecksumAlg::Crc32 => CHECKSUM_LEN,
        }
    }

    /// Name as in `@@binlog_checksum`: "NONE" or "CRC32".
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlg::Off => "NONE",
            ChecksumAlg::Crc32 => "CRC32",
        }
    }
}

/// First server versions whose FORMAT_DESCRIPTION carries the checksum-algorithm byte
/// (`checksum_version_split` in mysql-server `sql/log_event.cc`, and
/// `checksum_version_split_mariadb` in MariaDB `sql/log_event.cc`).
const CHECKSUM_VERSION_MYSQL: [u8; 3] = [5, 6, 1];
const CHECKSUM_VERSION_MARIADB: [u8; 3] = [5, 3, 0];

/// Length of the server version field of a FORMAT_DESCRIPTION (`ST_SERVER_VER_LEN`).
const SERVER_VERSION_LEN: usize = 50;

/// Offset of the post-header lengths inside a FORMAT_DESCRIPTION body:
/// binlog_version (2) + server_version (50) + create_timestamp (4) + header_len (1).
const FDE_FIXED_LEN: usize = 2 + SERVER_VERSION_LEN + 4 + 1;

/// The decoded FORMAT_DESCRIPTION event (type 15) that opens every v4 binlog file.
///
/// Body layout (mysql-server `libbinlogevents/src/control_events.cpp`
/// `Format_description_event`, MariaDB KB "Format Description Event"): binlog_version u16,
/// server_version char\[50\] (NUL-padded), create_timestamp u32, header_len u8, one
/// post-header length u8 per event type (index = type - 1), and, for checksum-aware
/// servers, the checksum algorithm u8 followed by the event's own 4-byte CRC32.
#[derive(Clone, Debug)]
pub struct FormatDescription {
    /// Binlog format version; always 4 here.
    pub binlog_version: u16,
    /// Server version string, e.g. "8.0.35" or "10.11.6-MariaDB-log".
    pub server_version: String,
    /// Creation time written by the server, unix seconds (0 in files after the first since
    /// server start).
    pub create_timestamp: u32,
    /// Common header length, bytes; always 19 here.
    pub header_len: u8,
    /// Post-header length in bytes of each event type; entry `t - 1` is type `t`'s.
    pub post_header_lens: Vec<u8>,
    /// Checksum algorithm of the events after this one (and of this one when Crc32).
    pub checksum_alg: ChecksumAlg,
    /// True when the server version names MariaDB ("MariaDB" or "-maria-" in it).
    pub is_mariadb: bool,
}

/// Splits "5.7.25-28-log" into [5, 7, 25] the way `do_server_version_split` in
/// mysql-server/MariaDB `sql/log_event.cc` does: up to three dot-separated numbers each
/// below 256; an unparsable version gives [0, 0, 0].
pub fn server_version_split(version: &str) -> [u8; 3] {
    let mut out = [0u8; 3];
    let mut rest = version.as_bytes();
    for (i, slot) in out.iter_mut().enumerate() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (num, after) = rest.split_at(digits);
        let value = num.iter().try_fold(0u32, |acc, b| {
            acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
        });
        let next_is_dot = after.first() == Some(&b'.');
        match value {
            Some(v) if v < 256 && (next_is_dot || i != 0) => *slot = v as u8,
            _ => return [0, 0, 0],
        }
        rest = if next_is_dot {
            after.get(1..).unwrap_or(&[])
        } else {
            after
        };
    }
    out
}

/// True when the server version string is MariaDB's (as MariaDB's own
/// `do_server_version_split` decides: it contains "MariaDB" or "-maria-").
pub fn is_mariadb_version(version: &str) -> bool {
    version.contains("MariaDB") || version.contains("-maria-")
}

/// True when a server of this version writes the checksum-algorithm byte (and a CRC32)
/// into its FORMAT_DESCRIPTION: MySQL >= 5.6.1, MariaDB >= 5.3.0.
pub fn version_has_checksum_field(version: &str) -> bool {
    let split = server_version_split(version);
    let first = if is_mariadb_version(version) {
        CHECKSUM_VERSION_MARIADB
    } else {
        CHECKSUM_VERSION_MYSQL
    };
    split >= first
}

impl FormatDescription {
    /// Parses a whole FORMAT_DESCRIPTION event (header included, trailing checksum
    /// included when present). Whether the algorithm byte exists depends on the server
    /// version (MySQL >= 5.6.1, MariaDB >= 5.3: `checksum_version_split` in mysql-server /
    /// MariaDB `sql/log_event.cc`); older servers give [`ChecksumAlg::Off`]. Algorithm
    /// byte 0 = off, 1 = CRC32, anything else is an error. The CRC itself is not checked
    /// here (see [`verify_checksum`]).
    pub fn parse(event: &[u8]) -> Result<FormatDescription> {
        let h = framed_header(event)?;
        if h.type_code != event_type::FORMAT_DESCRIPTION {
            return Err(EventError::Invalid {
                what: "FORMAT_DESCRIPTION",
                detail: format!("event type is {}", event_type::name(h.type_code)),
            });
        }
        let body = event.get(HEADER_LEN..).unwrap_or(&[]);
        const WHAT: &str = "FORMAT_DESCRIPTION body";
        let binlog_version = le_u16(body, 0, WHAT)?;
        if binlog_version != 4 {
            return Err(EventError::Unsupported(format!(
                "binlog format version {binlog_version} (only v4 is supported)"
            )));
        }
        let raw_version = field(body, 2, SERVER_VERSION_LEN, WHAT)?;
        let version_bytes = raw_version.split(|&b| b == 0).next().unwrap_or(&[]);
        let server_version = String::from_utf8_lossy(version_bytes).into_owned();
        let create_timestamp = le_u32(body, 2 + SERVER_VERSION_LEN, WHAT)?;
        let header_len = le_u8(body, 2 + SERVER_VERSION_LEN + 4, WHAT)?;
        if usize::from(header_len) != HEADER_LEN {
            return Err(EventError::Unsupported(format!(
                "common header length {header_len} (only {HEADER_LEN} is supported)"
            )));
        }
        let rest = body.get(FDE_FIXED_LEN..).unwrap_or(&[]);
        let (post_header_lens, checksum_alg) = if version_has_checksum_field(&server_version) {
            let trailer = 1 + CHECKSUM_LEN;
            let split = rest
                .len()
                .checked_sub(trailer)
                .ok_or(EventError::TooShort {
                    what: "FORMAT_DESCRIPTION checksum algorithm",
                    needed: FDE_FIXED_LEN + trailer,
                    available: body.len(),
                })?;
            let (lens, tail) = rest.split_at(split);
            let alg = match tail.first().copied() {
                Some(0) => ChecksumAlg::Off,
                Some(1) => ChecksumAlg::Crc32,
                other => {
                    return Err(EventError::Invalid {
                        what: "checksum algorithm",
                        detail: format!("{other:?} (0 = off, 1 = CRC32)"),
                    })
                }
            };
            (lens.to_vec(), alg)
        } else {
            (rest.to_vec(), ChecksumAlg::Off)
        };
        // Every v4 server describes at least the types up to ROTATE; fewer entries means
        // the event is cut or the version guess above was wrong.
        if post_header_lens.len() < usize::from(event_type::ROTATE) {
            return Err(EventError::TooShort {
                what: "FORMAT_DESCRIPTION post-header lengths",
                needed: usize::from(event_type::ROTATE),
                available: post_header_lens.len(),
            });
        }
        Ok(FormatDescription {
            binlog_version,
            is_mariadb: is_mariadb_version(&server_version),
            server_version,
            create_timestamp,
            header_len,
            post_header_lens,
            checksum_alg,
        })
    }

    /// Post-header length in bytes of events of `type_code`, when this FDE describes it.
    pub fn post_header_len(&self, type_code: u8) -> Option<u8> {
        let index = usize::from(type_code).checked_sub(1)?;
        self.post_header_lens.get(index).copied()
    }

    /// True when the FDE event itself carries the algorithm byte and a 4-byte checksum
    /// (MySQL >= 5.6.1, MariaDB >= 5.3), even when `checksum_alg` is Off: such servers
    /// always write the FDE's CRC32 ("FD of checksum-aware server is always
    /// checksum-equipped", mysql-server `sql/log_event.cc`), except tools that leave it 0.
    pub fn has_checksum_field(&self) -> bool {
        version_has_checksum_field(&self.server_version)
    }
}

/// Verifies the trailing CRC32 (little-endian u32 over all preceding bytes of the event)
/// when `alg` is Crc32; with Off it only checks the framing. For a FORMAT_DESCRIPTION
/// event the CRC is computed with `LOG_EVENT_BINLOG_IN_USE_F` cleared (servers set that
/// flag in the active file after computing the CRC; mysql-server
/// `Log_event_footer::event_checksum_test`), using a copy of the 19-byte header only.
pub fn verify_checksum(event: &[u8], alg: ChecksumAlg) -> Result<()> {
    let h = framed_header(event)?;
    if alg == ChecksumAlg::Off {
        return Ok(());
    }
    let (stored, computed) = stored_and_computed_crc(&h, event)?;
    if stored != computed {
        return Err(EventError::ChecksumMismatch {
            type_code: h.type_code,
            stored,
            computed,
        });
    }
    Ok(())
}

/// The CRC32 stored in the last 4 bytes of `event` and the one computed over the rest
/// (FORMAT_DESCRIPTION: with the in-use flag cleared). `event` must be framed already.
pub fn stored_and_computed_crc(h: &EventHeader, event: &[u8]) -> Result<(u32, u32)> {
    let split = event
        .len()
        .checked_sub(CHECKSUM_LEN)
        .filter(|&s| s >= HEADER_LEN)
        .ok_or(EventError::TooShort {
            what: "event checksum",
            needed: HEADER_LEN + CHECKSUM_LEN,
            available: event.len(),
        })?;
    let (data, crc) = event.split_at(split);
    let stored = le_u32(crc, 0, "event checksum")?;
    let mut hasher = crc32fast::Hasher::new();
    if h.type_code == event_type::FORMAT_DESCRIPTION && h.is_in_use() {
        let mut copy = *h;
        copy.flags &= !LOG_EVENT_BINLOG_IN_USE_F;
        hasher.update(&copy.to_bytes());
        hasher.update(data.get(HEADER_LEN..).unwrap_or(&[]));
    } else {
        hasher.update(data);
    }
    Ok((stored, hasher.finalize()))
}

/// CRC32 to append to an event whose bytes (without checksum) are `data` (for building
/// events, e.g. in tests and the fake primary).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// Body of an event: the bytes after the 19-byte header and before the 4-byte checksum
/// when `alg` is Crc32. Errors when the slice length differs from event_size or the event
/// is too short for its checksum.
pub fn body(event: &[u8], alg: ChecksumAlg) -> Result<&[u8]> {
    framed_header(event)?;
    let end = event
        .len()
        .checked_sub(alg.trailer_len())
        .filter(|&e| e >= HEADER_LEN)
        .ok_or(EventError::TooShort {
            what: "event checksum",
            needed: HEADER_LEN + alg.trailer_len(),
            available: event.len(),
        })?;
    event.get(HEADER_LEN..end).ok_or(EventError::TooShort {
        what: "event body",
        needed: end,
        available: event.len(),
    })
}

/// A decoded ROTATE event (type 4): where the stream or the file continues.
/// Source: mysql-server `control_events.h` `Rotate_event`; MariaDB KB "Rotate Event".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotate {
    /// Offset in the next file where reading continues, bytes (4 for a new file).
    pub position: u64,
    /// Name of the next binlog file (base name, no directory).
    pub next_file: String,
}

/// Longest binlog file name accepted in a ROTATE, bytes (`FN_REFLEN` is 512).
pub const MAX_FILE_NAME_LEN: usize = 512;

/// Checks that `name` is usable as a file name in our data directory: non-empty, at most
/// [`MAX_FILE_NAME_LEN`] bytes, not "." or "..", no '/', '\\', NUL or control characters.
pub fn validate_file_name(name: &str) -> Result<()> {
    let bad = |detail: &str| EventError::Invalid {
        what: "binlog file name",
        detail: format!("{name:?}: {detail}"),
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(bad("longer than 512 bytes"));
    }
    if name == "." || name == ".." {
        return Err(bad("not a file name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(bad("contains '/', '\\' or a control character"));
    }
    Ok(())
}

/// Parses a ROTATE event: body = position u64 LE, then the next file name to the end of
/// the body (not NUL-terminated). The name must be valid UTF-8 and pass
/// [`validate_file_name`].
pub fn parse_rotate(event: &[u8], alg: ChecksumAlg) -> Result<Rotate> {
    let h = framed_header(event)?;
    if h.type_code != event_type::ROTATE {
        return Err(EventError::Invalid {
            what: "ROTATE",
            detail: format!("event type is {}", event_type::name(h.type_code)),
        });
    }
    let b = body(event, alg)?;
    let position = le_u64(b, 0, "ROTATE position")?;
    let name = b.get(8..).unwrap_or(&[]);
    let next_file = std::str::from_utf8(name)
        .map_err(|e| EventError::Invalid {
            what: "binlog file name",
            detail: format!("not UTF-8: {e}"),
        })?
        .to_owned();
    validate_file_name(&next_file)?;
    Ok(Rotate {
        position,
        next_file,
    })
}

/// A global transaction identifier of either dialect.
///
/// Display / FromStr forms: MariaDB "domain-server_id-seq" ("0-1-42"); MySQL
/// "uuid:gno" ("3e11fa47-71ca-11e1-9e33-c80aa9429562:23").
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Gtid {
    /// MariaDB GTID (MariaDB KB "GTID"): replication domain, originating server, sequence.
    MariaDb {
        /// gtid_domain_id.
        domain: u32,
        /// server_id of the server that committed it first.
        server_id: u32,
        /// Sequence number within the domain.
        seq: u64,
    },
    /// MySQL GTID (mysql-server `rpl_gtid.h`): source server UUID and transaction number.
    MySql {
        /// server_uuid of the originating server, 16 bytes as in the GTID event.
        uuid: [u8; 16],
        /// Transaction number, 1..2^63-1.
        gno: u64,
    },
}

fn write_uuid(f: &mut fmt::Formatter<'_>, uuid: &[u8; 16]) -> fmt::Result {
    for (i, b) in uuid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            f.write_str("-")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MariaDb {
                domain,
                server_id,
                seq,
            } => write!(f, "{domain}-{server_id}-{seq}"),
            Gtid::MySql { uuid, gno } => {
                write_uuid(f, uuid)?;
                write!(f, ":{gno}")
            }
        }
    }
}

fn parse_decimal<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses "3e11fa47-71ca-11e1-9e33-c80aa9429562" (hex digits either case) into 16 bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let bytes = s.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut hex_digits = Vec::with_capacity(32);
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b != b'-' {
                return None;
            }
        } else {
            hex_digits.push(b);
        }
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(&hex_digits, &mut out).ok()?;
    Some(out)
}

impl FromStr for Gtid {
    type Err = EventError;

    fn from_str(s: &str) -> Result<Gtid> {
        let bad = || EventError::InvalidGtid(s.chars().take(100).collect());
        let s_trim = s.trim();
        if let Some((uuid, gno)) = s_trim.split_once(':') {
            let uuid = parse_uuid(uuid).ok_or_else(bad)?;
            let gno: u64 = parse_decimal(gno).ok_or_else(bad)?;
            if gno == 0 || gno > i64::MAX as u64 {
                return Err(bad());
            }
            return Ok(Gtid::MySql { uuid, gno });
        }
        let mut parts = s_trim.split('-');
        let (Some(d), Some(sid), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Gtid::MariaDb {
            domain: parse_decimal(d).ok_or_else(bad)?,
            server_id: parse_decimal(sid).ok_or_else(bad)?,
            seq: parse_decimal(seq).ok_or_else(bad)?,
        })
    }
}

/// What a GTID event says about the transaction it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GtidInfo {
    /// The transaction's GTID.
    pub gtid: Gtid,
    /// MariaDB `FL_STANDALONE` (flags2 & 1): the transaction is one statement (DDL) with no
    /// BEGIN ... COMMIT/XID around it. Always false for MySQL.
    pub standalone: bool,
    /// MySQL >= 8.0.1 immediate_commit_timestamp: microseconds since the unix epoch when
    /// the transaction committed on the server that wrote this binlog, when present.
    pub immediate_commit_ts_us: Option<u64>,
}

/// MariaDB GTID flags2 bits (MariaDB `sql/log_event.h` `Gtid_log_event`).
pub mod mariadb_gtid_flags {
    /// The transaction is a single statement without BEGIN/COMMIT (DDL).
    pub const FL_STANDALONE: u8 = 1;
    /// A commit_id u64 follows flags2 (group commit).
    pub const FL_GROUP_COMMIT_ID: u8 = 2;
    /// The transaction is transactional (may be rolled back).
    pub const FL_TRANSACTIONAL: u8 = 4;
    /// The transaction may be applied in parallel.
    pub const FL_ALLOW_PARALLEL: u8 = 8;
    /// The transaction waited for a row lock on the primary.
    pub const FL_WAITED: u8 = 16;
    /// The transaction is DDL.
    pub const FL_DDL: u8 = 32;
    /// XA transaction, prepared part (ends with XA_PREPARE).
    pub const FL_PREPARED_XA: u8 = 64;
    /// XA COMMIT / XA ROLLBACK of a prepared XA transaction.
    pub const FL_COMPLETED_XA: u8 = 128;
}

/// Bit 55 of MySQL's 7-byte immediate_commit_timestamp: an original_commit_timestamp
/// follows (mysql-server `control_events.h`, `ENCODED_COMMIT_TIMESTAMP_LENGTH`).
const COMMIT_TS_HAS_ORIGINAL: u64 = 1 << 55;
/// `LOGICAL_TIMESTAMP_TYPECODE` in mysql-server `control_events.h`.
const LOGICAL_TIMESTAMP_TYPECODE: u8 = 2;

/// Decodes a GTID event.
///
/// - MARIADB_GTID (162), MariaDB KB "GTID_EVENT": body = seq_no u64 LE, domain_id u32 LE,
///   flags2 u8, then (ignored here) commit_id u64 when `FL_GROUP_COMMIT_ID`, XA data, and
///   extra flags; the server_id is the header's.
/// - GTID / ANONYMOUS_GTID (33/34), mysql-server `libbinlogevents/src/control_events.cpp`
///   `Gtid_event`: flags u8, sid \[16\], gno i64 LE, then optionally lt_type u8 (= 2),
///   last_committed i64, sequence_number i64 (5.7+), immediate_commit_timestamp 7 bytes
///   (8.0.1+; bit 55 set = a 7-byte original_commit_timestamp follows), transaction length
///   and server versions (not decoded). ANONYMOUS_GTID gives `Ok(None)`.
/// - GTID_TAGGED (42, MySQL >= 8.3) gives `Ok(None)`: tagged GTIDs are not decoded yet.
///
/// Other event types are an error.
pub fn parse_gtid(
    header: &EventHeader,
    event: &[u8],
    alg: ChecksumAlg,
) -> Result<Option<GtidInfo>> {
    let b = body(event, alg)?;
    match header.type_code {
        event_type::MARIADB_GTID => {
            const WHAT: &str = "MARIADB_GTID body";
            let seq = le_u64(b, 0, WHAT)?;
            let domain = le_u32(b, 8, WHAT)?;
            let flags2 = le_u8(b, 12, WHAT)?;
            if flags2 & mariadb_gtid_flags::FL_GROUP_COMMIT_ID != 0 {
                field(b, 13, 8, "MARIADB_GTID commit_id")?;
            }
            Ok(Some(GtidInfo {
                gtid: Gtid::MariaDb {
                    domain,
                    server_id: header.server_id,
                    seq,
                },
                standalone: flags2 & mariadb_gtid_flags::FL_STANDALONE != 0,
                immediate_commit_ts_us: None,
            }))
        }
        event_type::GTID | event_type::ANONYMOUS_GTID => {
            const WHAT: &str = "GTID body";
            let _flags = le_u8(b, 0, WHAT)?;
            let sid = field(b, 1, 16, WHAT)?;
            let gno = le_u64(b, 17, WHAT)?;
            let mut ts = None;
            // Logical clock (5.7+), then commit timestamps (8.0.1+); each part is optional
            // and present only when enough bytes remain (as the server reads it).
            // Body offsets: 25 lt_type, 26 last_committed, 34 sequence_number, 42
            // immediate_commit_timestamp, 49 original_commit_timestamp.
            let has_clock = b.len() >= 42 && le_u8(b, 25, WHAT)? == LOGICAL_TIMESTAMP_TYPECODE;
            if has_clock && b.len() >= 42 + 7 {
                let immediate = le_uint(b, 42, 7, WHAT)?;
                if immediate & COMMIT_TS_HAS_ORIGINAL != 0 {
                    field(b, 49, 7, "GTID original_commit_timestamp")?;
                }
                ts = Some(immediate & !COMMIT_TS_HAS_ORIGINAL);
            }
            if header.type_code == event_type::ANONYMOUS_GTID {
                return Ok(None);
            }
            if gno == 0 || gno > i64::MAX as u64 {
                return Err(EventError::Invalid {
                    what: "GTID gno",
                    detail: format!("{gno} (must be 1..2^63-1)"),
                });
            }
            let uuid: [u8; 16] = sid.try_into().map_err(|_| EventError::TooShort {
                what: WHAT,
                needed: 17,
                available: b.len(),
            })?;
            Ok(Some(GtidInfo {
                gtid: Gtid::MySql { uuid, gno },
                standalone: false,
                immediate_commit_ts_us: ts,
            }))
        }
        event_type::GTID_TAGGED => Ok(None),
        t => Err(EventError::Invalid {
            what: "GTID event",
            detail: format!("event type is {}", event_type::name(t)),
        }),
    }
}

/// QUERY post-header length of binlog v4 (thread_id 4, exec_time 4, db_len 1,
/// error_code 2, status_vars_len 2): mysql-server `statement_events.h` `Query_event`.
const QUERY_HEADER_LEN_V4: usize = 13;
/// QUERY post-header length without status variables (binlog v1/v3).
const QUERY_HEADER_MIN_LEN: usize = 11;

/// SQL text of a QUERY event (type 2 only; MARIADB_QUERY_COMPRESSED's text is compressed).
///
/// Layout (mysql-server `libbinlogevents/src/statement_events.cpp` `Query_event`, MariaDB
/// KB "Query Event"): post-header (length from the FDE, 13 for v4: thread_id u32,
/// exec_time u32, db_len u8 at offset 8, error_code u16, status_vars_len u16 at offset
/// 11), status variables, the default database name (db_len bytes) + NUL, then the text
/// to the end of the body. Every length is checked against the body.
pub fn query_text<'a>(
    event: &'a [u8],
    alg: ChecksumAlg,
    fde: &FormatDescription,
) -> Result<&'a [u8]> {
    let h = framed_header(event)?;
    if h.type_code != event_type::QUERY {
        return Err(EventError::Invalid {
            what: "QUERY",
            detail: format!("event type is {}", event_type::name(h.type_code)),
        });
    }
    let b = body(event, alg)?;
    let phl = fde
        .post_header_len(event_type::QUERY)
        .map(usize::from)
        .unwrap_or(QUERY_HEADER_LEN_V4);
    if phl < QUERY_HEADER_MIN_LEN {
        return Err(EventError::Invalid {
            what: "QUERY post-header length",
            detail: format!("{phl} in the FORMAT_DESCRIPTION (at least 11)"),
        });
    }
    field(b, 0, phl, "QUERY post-header")?;
    let db_len = usize::from(le_u8(b, 8, "QUERY post-header")?);
    let status_len = if phl >= QUERY_HEADER_LEN_V4 {
        usize::from(le_u16(b, 11, "QUERY post-header")?)
    } else {
        0
    };
    let db_start = phl + status_len;
    field(b, phl, status_len, "QUERY status variables")?;
    let nul = le_u8(b, db_start + db_len, "QUERY database name")?;
    if nul != 0 {
        return Err(EventError::Invalid {
            what: "QUERY database name",
            detail: format!("not NUL-terminated (byte {nul:#04x} after {db_len} bytes)"),
        });
    }
    Ok(b.get(db_start + db_len + 1..).unwrap_or(&[]))
}

/// How a statement affects transaction boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QueryKind {
    /// BEGIN, XA START, XA BEGIN.
    Begin,
    /// COMMIT, ROLLBACK, XA COMMIT ..., XA ROLLBACK ...
    End,
    /// Anything else (DDL, statement DML, SAVEPOINT, ROLLBACK TO ...).
    Other,
}

fn starts_with_words(text: &[u8], words: &[&str]) -> bool {
    let mut rest = text;
    for w in words {
        let trimmed_len = rest.len() - rest.trim_ascii_start().len();
        rest = rest.get(trimmed_len..).unwrap_or(&[]);
        let Some(head) = rest.get(..w.len()) else {
            return false;
        };
        if !head.eq_ignore_ascii_case(w.as_bytes()) {
            return false;
        }
        rest = rest.get(w.len()..).unwrap_or(&[]);
        if rest
            .first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return false;
        }
    }
    true
}

fn classify_query(text: &[u8]) -> QueryKind {
    let t = text.trim_ascii();
    if t.eq_ignore_ascii_case(b"BEGIN")
        || starts_with_words(t, &["XA", "START"])
        || starts_with_words(t, &["XA", "BEGIN"])
    {
        QueryKind::Begin
    } else if t.eq_ignore_ascii_case(b"COMMIT")
        || t.eq_ignore_ascii_case(b"ROLLBACK")
        || starts_with_words(t, &["XA", "COMMIT"])
        || starts_with_words(t, &["XA", "ROLLBACK"])
    {
        QueryKind::End
    } else {
        QueryKind::Other
    }
}

/// A transaction found by [`TxnTracker`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    /// Its GTID (None: anonymous, tagged, or a server without GTIDs).
    pub gtid: Option<Gtid>,
    /// File offset of its first event (the GTID event, BEGIN, or first context event).
    pub start: u64,
    /// File offset just past its last event.
    pub end: u64,
    /// Header timestamp (unix seconds) of the event that ended it.
    pub commit_timestamp: u32,
}

#[derive(Clone, Debug, Default)]
enum TxnState {
    /// Between transactions.
    #[default]
    Idle,
    /// After a GTID event, before its first statement: a BEGIN makes it a block, a
    /// statement ends it (DDL, MySQL XA COMMIT), TRANSACTION_PAYLOAD or XID ends it.
    AfterGtid { start: u64, gtid: Option<Gtid> },
    /// Inside BEGIN ... COMMIT/XID (MariaDB: after a non-standalone GTID).
    Block { start: u64, gtid: Option<Gtid> },
    /// Context events (INTVAR, USER_VAR, ...) without a GTID or BEGIN before them: the
    /// next statement ends this implicit (autocommit) transaction.
    Pending { start: u64 },
}

/// Turns the events of one binlog file into transactions (for the index and the checker).
///
/// A transaction starts at a GTID / ANONYMOUS_GTID / GTID_TAGGED / MARIADB_GTID event, or,
/// without one, at a QUERY "BEGIN" (old servers). It ends at: XID; a QUERY whose trimmed
/// text is COMMIT or ROLLBACK (case-insensitive; "ROLLBACK TO sp" does not end it), or an
/// "XA COMMIT ..." / "XA ROLLBACK ..."; XA_PREPARE; and, after a MariaDB standalone GTID or
/// a MySQL GTID not followed by BEGIN / XA START, the first statement (a DDL QUERY,
/// EXECUTE_LOAD_QUERY) or TRANSACTION_PAYLOAD. Context events (INTVAR, RAND, USER_VAR,
/// LOAD DATA blocks) in between do not end it.
///
/// Outside any transaction, a statement without GTID or BEGIN (DDL or non-transactional
/// autocommit DML on servers without GTIDs) is a transaction of its own, starting at its
/// first context event: a point-in-time restore must be able to stop before or after it.
/// A GTID arriving while a transaction is open abandons the open one (it never
/// committed in this file); stray terminators outside a transaction are ignored.
#[derive(Clone, Debug, Default)]
pub struct TxnTracker {
    state: TxnState,
}

impl TxnTracker {
    /// A tracker in the "between transactions" state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one event. `offset`: file offset of this event; `event`: the whole event;
    /// `fde`: the file's current FORMAT_DESCRIPTION (for the QUERY post-header and the
    /// checksum alg). Returns Some when this event completes a transaction. Errors when a
    /// GTID or QUERY event is malformed (the state is left unchanged then).
    pub fn observe(
        &mut self,
        offset: u64,
        header: &EventHeader,
        event: &[u8],
        fde: &FormatDescription,
    ) -> Result<Option<TxnRecord>> {
        use event_type as t;
        let alg = fde.checksum_alg;
        let end = offset.saturating_add(u64::from(header.event_size));
        let done = |start: u64, gtid: Option<Gtid>| {
            Some(TxnRecord {
                gtid,
                start,
                end,
                commit_timestamp: header.timestamp,
            })
        };
        let state = std::mem::take(&mut self.state);
        let (next, record) = match header.type_code {
            t::GTID | t::ANONYMOUS_GTID | t::GTID_TAGGED | t::MARIADB_GTID => {
                let info = match parse_gtid(header, event, alg) {
                    Ok(info) => info,
                    Err(e) => {
                        self.state = state;
                        return Err(e.at(offset));
                    }
                };
                let standalone = info.as_ref().is_some_and(|i| i.standalone);
                let gtid = info.map(|i| i.gtid);
                let next = if header.type_code == t::MARIADB_GTID && !standalone {
                    TxnState::Block {
                        start: offset,
                        gtid,
                    }
                } else {
                    TxnState::AfterGtid {
                        start: offset,
                        gtid,
                    }
                };
                (next, None)
            }
            t::QUERY => {
                let kind = match query_text(event, alg, fde) {
                    Ok(text) => classify_query(text),
                    Err(e) => {
                        self.state = state;
                        return Err(e.at(offset));
                    }
                };
                match (state, kind) {
                    (TxnState::Idle, QueryKind::Begin) => (
                        TxnState::Block {
                            start: offset,
                            gtid: None,
                        },
                        None,
                    ),
                    (TxnState::Idle, QueryKind::End) => (TxnState::Idle, None),
                    (TxnState::Idle, QueryKind::Other) => (TxnState::Idle, done(offset, None)),
                    (TxnState::Pending { start }, QueryKind::Begin) => {
                        (TxnState::Block { start, gtid: None }, None)
                    }
                    (TxnState::Pending { start }, _) => (TxnState::Idle, done(start, None)),
                    (TxnState::AfterGtid { start, gtid }, QueryKind::Begin) => {
                        (TxnState::Block { start, gtid }, None)
                    }
                    (TxnState::AfterGtid { start, gtid }, _) => (TxnState::Idle, done(start, gtid)),
                    (TxnState::Block { start, gtid }, QueryKind::End) => {
                        (TxnState::Idle, done(start, gtid))
                    }
                    (s @ TxnState::Block { .. }, _) => (s, None),
                }
            }
            t::XID | t::XA_PREPARE => match state {
                TxnState::Idle => (TxnState::Idle, None),
                TxnState::Pending { start } => (TxnState::Idle, done(start, None)),
                TxnState::AfterGtid { start, gtid } | TxnState::Block { start, gtid } => {
                    (TxnState::Idle, done(start, gtid))
                }
            },
            // Statements whose text we do not read: they end a transaction that waits for
            // its statement, and are one on their own outside any.
            t::TRANSACTION_PAYLOAD
            | t::MARIADB_QUERY_COMPRESSED
            | t::EXECUTE_LOAD_QUERY
            | t::LOAD
            | t::NEW_LOAD
            | t::EXEC_LOAD => match state {
                TxnState::Idle => (TxnState::Idle, done(offset, None)),
                TxnState::Pending { start } => (TxnState::Idle, done(start, None)),
                TxnState::AfterGtid { start, gtid } => (TxnState::Idle, done(start, gtid)),
                s @ TxnState::Block { .. } => (s, None),
            },
            // Events that belong to the statement or rows after them.
            t::INTVAR
            | t::RAND
            | t::USER_VAR
            | t::BEGIN_LOAD_QUERY
            | t::APPEND_BLOCK
            | t::CREATE_FILE
            | t::DELETE_FILE
            | t::TABLE_MAP
            | t::ROWS_QUERY
            | t::MARIADB_ANNOTATE_ROWS
            | t::PRE_GA_WRITE_ROWS..=t::DELETE_ROWS_V1
            | t::WRITE_ROWS..=t::DELETE_ROWS
            | t::PARTIAL_UPDATE_ROWS
            | t::MARIADB_WRITE_ROWS_COMPRESSED_V1..=t::MARIADB_DELETE_ROWS_COMPRESSED => {
                match state {
                    TxnState::Idle => (TxnState::Pending { start: offset }, None),
                    s => (s, None),
                }
            }
            _ => (state, None),
        };
        self.state = next;
        Ok(record)
    }

    /// Offset where the transaction in progress began, if one is open (used to resume
    /// indexing at a transaction boundary).
    pub fn open_txn_start(&self) -> Option<u64> {
        match self.state {
            TxnState::Idle => None,
            TxnState::AfterGtid { start, .. }
            | TxnState::Block { start, .. }
            | TxnState::Pending { start } => Some(start),
        }
    }
}

/// Reads into `buf` until it is full or the reader is at end of data; returns the number
/// of bytes read. Retries on `Interrupted`.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Iterates the events of a binlog byte stream read from any [`std::io::Read`] (a file,
/// best wrapped in a `BufReader`), with their file offsets, reading each event into one
/// reusable buffer (memory: the largest event, at most [`MAX_EVENT_SIZE`], grown only as
/// bytes actually arrive).
///
/// Yields `Err` once on a framing problem (short read = [`EventError::Truncated`], bad
/// event_size, I/O error), with the offset, and then stops. A clean end of data at an
/// event boundary ends the iteration.
pub struct EventReader<R> {
    r: R,
    offset: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> EventReader<R> {
    /// Reads and checks the 4-byte magic, then iterates from offset 4.
    pub fn new_at_start(mut r: R) -> Result<Self> {
        let mut magic = [0u8; 4];
        let n =
            read_full(&mut r, &mut magic).map_err(|source| EventError::Io { offset: 0, source })?;
        if n < magic.len() {
            return Err(EventError::Truncated {
                offset: 0,
                needed: 4,
                available: n as u64,
            });
        }
        if magic != BINLOG_MAGIC {
            return Err(EventError::BadMagic { found: magic });
        }
        Ok(Self::new_at(r, 4))
    }

    /// Iterates from a reader already positioned at file offset `offset`, which must be an
    /// event boundary (offsets in results count from it).
    pub fn new_at(r: R, offset: u64) -> Self {
        EventReader {
            r,
            offset,
            buf: Vec::new(),
            done: false,
        }
    }

    /// File offset of the next event (after the last one returned).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The underlying reader, positioned after the last byte consumed.
    pub fn into_inner(self) -> R {
        self.r
    }

    /// The next event: its file offset, header and whole bytes (header, body, checksum).
    /// The slice is valid until the next call.
    pub fn next_event(&mut self) -> Option<Result<(u64, EventHeader, &[u8])>> {
        if self.done {
            return None;
        }
        match self.read_one() {
            Ok(Some(h)) => {
                let offset = self.offset;
                self.offset = offset.saturating_add(u64::from(h.event_size));
                Some(Ok((offset, h, self.buf.as_slice())))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn read_one(&mut self) -> Result<Option<EventHeader>> {
        let offset = self.offset;
        let io_err = |source| EventError::Io { offset, source };
        let mut hdr = [0u8; HEADER_LEN];
        let n = read_full(&mut self.r, &mut hdr).map_err(io_err)?;
        if n == 0 {
            return Ok(None);
        }
        if n < HEADER_LEN {
            return Err(EventError::Truncated {
                offset,
                needed: HEADER_LEN as u64,
                available: n as u64,
            });
        }
        let h = EventHeader::parse(&hdr).map_err(|e| e.at(offset))?;
        self.buf.clear();
        self.buf.extend_from_slice(&hdr);
        let rest = u64::from(h.event_size) - HEADER_LEN as u64;
        // read_to_end grows the buffer as data arrives, so a corrupt or truncated size
        // never allocates more than the bytes actually present (plus amortised slack).
        // (read_to_end retries on Interrupted itself.)
        (&mut self.r)
            .take(rest)
            .read_to_end(&mut self.buf)
            .map_err(io_err)?;
        let got = self.buf.len() - HEADER_LEN;
        if (got as u64) < rest {
            return Err(EventError::Truncated {
                offset,
                needed: u64::from(h.event_size),
                available: (HEADER_LEN + got) as u64,
            });
        }
        Ok(Some(h))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an event with correct event_size, log_pos (= offset + size) and, for Crc32,
    /// a correct checksum.
    pub(crate) fn build_event(
        type_code: u8,
        server_id: u32,
        offset: u64,
        body: &[u8],
        alg: ChecksumAlg,
    ) -> Vec<u8> {
        let size = (HEADER_LEN + body.len() + alg.trailer_len()) as u32;
        let h = EventHeader {
            timestamp: 1_700_000_000,
            type_code,
            server_id,
            event_size: size,
            log_pos: (offset + u64::from(size)) as u32,
            flags: 0,
        };
        let mut ev = h.to_bytes().to_vec();
        ev.extend_from_slice(body);
        if alg == ChecksumAlg::Crc32 {
            let crc = crc32(&ev);
            ev.extend_from_slice(&crc.to_le_bytes());
        }
        ev
    }

    /// Rewrites the CRC32 of an event after editing it.
    pub(crate) fn fix_crc(ev: &mut [u8]) {
        let n = ev.len() - 4;
        let crc = crc32(&ev[..n]);
        ev[n..].copy_from_slice(&crc.to_le_bytes());
    }

    pub(crate) fn fde_body(version: &str, alg: Option<u8>) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&4u16.to_le_bytes());
        let mut v = [0u8; 50];
        v[..version.len()].copy_from_slice(version.as_bytes());
        b.extend_from_slice(&v);
        b.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        b.push(19);
        // MySQL 5.7-like post-header lengths for types 1..=38.
        let mut lens = vec![0u8; 38];
        lens[0] = 56;
        lens[1] = 13; // QUERY
        lens[3] = 8; // ROTATE
        lens[14] = 84; // FDE
        lens[32] = 42; // GTID
        lens[33] = 42;
        b.extend_from_slice(&lens);
        if let Some(a) = alg {
            b.push(a);
        }
        b
    }

    /// A whole FDE event at offset 4 for `version`; CRC32 appended when the version is
    /// checksum-aware (alg byte `alg`).
    pub(crate) fn fde_event(version: &str, alg: u8) -> Vec<u8> {
        if version_has_checksum_field(version) {
            build_event(
                event_type::FORMAT_DESCRIPTION,
                1,
                4,
                &fde_body(version, Some(alg)),
                ChecksumAlg::Crc32,
            )
        } else {
            build_event(
                event_type::FORMAT_DESCRIPTION,
                1,
                4,
                &fde_body(version, None),
                ChecksumAlg::Off,
            )
        }
    }

    pub(crate) fn query_body(db: &str, text: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&7u32.to_le_bytes()); // thread id
        b.extend_from_slice(&0u32.to_le_bytes()); // exec time
        b.push(db.len() as u8);
        b.extend_from_slice(&0u16.to_le_bytes()); // error code
        let status = [0u8, 0, 0, 0, 0]; // Q_FLAGS2_CODE + 4 bytes
        b.extend_from_slice(&(status.len() as u16).to_le_bytes());
        b.extend_from_slice(&status);
        b.extend_from_slice(db.as_bytes());
        b.push(0);
        b.extend_from_slice(text.as_bytes());
        b
    }

    pub(crate) fn mysql_gtid_body(uuid: [u8; 16], gno: u64, ts: Option<u64>) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend_from_slice(&uuid);
        b.extend_from_slice(&gno.to_le_bytes());
        b.push(LOGICAL_TIMESTAMP_TYPECODE);
        b.extend_from_slice(&5u64.to_le_bytes());
        b.extend_from_slice(&6u64.to_le_bytes());
        if let Some(ts) = ts {
            b.extend_from_slice(&ts.to_le_bytes()[..7]);
            b.push(0x0c); // transaction length (packed int)
            b.extend_from_slice(&80035u32.to_le_bytes());
        }
        b
    }

    pub(crate) fn mariadb_gtid_body(seq: u64, domain: u32, flags2: u8) -> Vec<u8> {
        let mut b = seq.to_le_bytes().to_vec();
        b.extend_from_slice(&domain.to_le_bytes());
        b.push(flags2);
        b.extend_from_slice(&[0u8; 6]);
        b
    }

    pub(crate) fn corpus_dir() -> std::path::PathBuf {
        match std::env::var_os("BINLOG_CORPUS_DIR") {
            Some(d) => d.into(),
            None => concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/binlogs").into(),
        }
    }

    pub(crate) fn corpus_file(rel: &str) -> Vec<u8> {
        let p = corpus_dir().join(rel);
        std::fs::read(&p).unwrap_or_else(|e| {
            panic!(
                "binlog corpus file {} missing ({e}); set BINLOG_CORPUS_DIR",
                p.display()
            )
        })
    }

    #[test]
    fn header_roundtrip_and_limits() {
        let h = EventHeader {
            timestamp: 1,
            type_code: 2,
            server_id: 3,
            event_size: 40,
            log_pos: 44,
            flags: 0x21,
        };
        assert_eq!(EventHeader::parse(&h.to_bytes()).unwrap(), h);
        assert!(h.is_artificial() && h.is_in_use());
        assert!(matches!(
            EventHeader::parse(&h.to_bytes()[..18]),
            Err(EventError::TooShort {
                needed: 19,
                available: 18,
                ..
            })
        ));
        for size in [0u32, 18, MAX_EVENT_SIZE + 1, u32::MAX] {
            let b = EventHeader {
                event_size: size,
                ..h
            }
            .to_bytes();
            assert!(matches!(
                EventHeader::parse(&b),
                Err(EventError::BadEventSize { .. })
            ));
        }
        let b = EventHeader {
            event_size: MAX_EVENT_SIZE,
            ..h
        }
        .to_bytes();
        assert!(EventHeader::parse(&b).is_ok());
        assert_eq!(h.expected_log_pos(u64::from(u32::MAX)), 39);
    }

    #[test]
    fn names() {
        assert_eq!(event_type::name(event_type::QUERY), "QUERY");
        assert_eq!(event_type::name(event_type::GTID_TAGGED), "GTID_TAGGED");
        assert_eq!(event_type::name(165), "MARIADB_QUERY_COMPRESSED");
        assert_eq!(event_type::name(100), "UNKNOWN");
        assert_eq!(event_type::name(0), "UNKNOWN");
    }

    #[test]
    fn crc_detects_every_single_bit_flip() {
        let ev = build_event(2, 1, 4, &query_body("db", "BEGIN"), ChecksumAlg::Crc32);
        verify_checksum(&ev, ChecksumAlg::Crc32).unwrap();
        for byte in 0..ev.len() {
            for bit in 0..8 {
                let mut bad = ev.clone();
                bad[byte] ^= 1 << bit;
                let r = verify_checksum(&bad, ChecksumAlg::Crc32);
                assert!(r.is_err(), "flip at {byte}:{bit} not detected");
            }
        }
        // With checksums off only the framing is checked.
        let mut bad = ev.clone();
        bad[30] ^= 1;
        verify_checksum(&bad, ChecksumAlg::Off).unwrap();
        let err = verify_checksum(&bad, ChecksumAlg::Crc32).unwrap_err();
        assert!(
            err.to_string().starts_with("CRC32 mismatch in QUERY event"),
            "{err}"
        );
        assert!(matches!(
            verify_checksum(&ev[..ev.len() - 1], ChecksumAlg::Crc32),
            Err(EventError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn fde_in_use_flag_is_excluded_from_crc() {
        let mut ev = fde_event("8.0.35", 1);
        verify_checksum(&ev, ChecksumAlg::Crc32).unwrap();
        ev[17] |= LOG_EVENT_BINLOG_IN_USE_F as u8;
        verify_checksum(&ev, ChecksumAlg::Crc32).unwrap();
        // Any other flag bit is covered.
        ev[17] |= 0x02;
        assert!(verify_checksum(&ev, ChecksumAlg::Crc32).is_err());
        // ... and the in-use bit is covered for other event types.
        let mut q = build_event(2, 1, 4, &query_body("", "BEGIN"), ChecksumAlg::Crc32);
        q[17] |= 1;
        assert!(verify_checksum(&q, ChecksumAlg::Crc32).is_err());
    }

    #[test]
    fn fde_parse_versions() {
        let f = FormatDescription::parse(&fde_event("5.7.30-log", 1)).unwrap();
        assert_eq!(f.checksum_alg, ChecksumAlg::Crc32);
        assert_eq!(f.server_version, "5.7.30-log");
        assert_eq!(f.post_header_len(event_type::QUERY), Some(13));
        assert_eq!(f.post_header_len(event_type::GTID), Some(42));
        assert_eq!(f.post_header_len(0), None);
        assert_eq!(f.post_header_len(200), None);
        assert!(!f.is_mariadb && f.has_checksum_field());

        let f = FormatDescription::parse(&fde_event("8.0.35", 0)).unwrap();
        assert_eq!(f.checksum_alg, ChecksumAlg::Off);

        let f = FormatDescription::parse(&fde_event("5.5.27-log", 0)).unwrap();
        assert_eq!(f.checksum_alg, ChecksumAlg::Off);
        assert_eq!(f.post_header_lens.len(), 38);
        assert!(!f.has_checksum_field());

        let f = FormatDescription::parse(&fde_event("10.11.6-MariaDB-log", 1)).unwrap();
        assert!(f.is_mariadb);
        assert_eq!(f.checksum_alg, ChecksumAlg::Crc32);
        // MariaDB 5.3 already had checksums, MySQL 5.6.0 did not.
        assert!(version_has_checksum_field("5.3.12-MariaDB"));
        assert!(!version_has_checksum_field("5.6.0-m4"));
        assert!(version_has_checksum_field("5.6.1-m5"));
        assert!(!version_has_checksum_field("garbage"));
        assert_eq!(server_version_split("5.7.25-28-57-log"), [5, 7, 25]);
        assert_eq!(server_version_split("8.0"), [8, 0, 0]);
        assert_eq!(server_version_split("300.1.1"), [0, 0, 0]);
        assert_eq!(server_version_split("99999999999999999999.1.1"), [0, 0, 0]);

        let err = FormatDescription::parse(&fde_event("8.0.35", 2)).unwrap_err();
        assert!(matches!(
            err,
            EventError::Invalid {
                what: "checksum algorithm",
                ..
            }
        ));

        let mut b = fde_body("8.0.35", Some(1));
        b[0] = 3;
        let ev = build_event(15, 1, 4, &b, ChecksumAlg::Crc32);
        assert!(matches!(
            FormatDescription::parse(&ev),
            Err(EventError::Unsupported(_))
        ));
        let q = build_event(2, 1, 4, &query_body("", "x"), ChecksumAlg::Off);
        assert!(FormatDescription::parse(&q).is_err());
        // Cut bodies never panic.
        let full = fde_body("8.0.35", Some(1));
        for n in 0..full.len() {
            let ev = build_event(15, 1, 4, &full[..n], ChecksumAlg::Crc32);
            let _ = FormatDescription::parse(&ev);
        }
    }

    #[test]
    fn rotate_parse_and_name_checks() {
        let mut b = 4u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"mysql-bin.000002");
        let ev = build_event(4, 1, 100, &b, ChecksumAlg::Crc32);
        let r = parse_rotate(&ev, ChecksumAlg::Crc32).unwrap();
        assert_eq!(r.position, 4);
        assert_eq!(r.next_file, "mysql-bin.000002");
        for bad in [
            &b""[..],
            b"..",
            b".",
            b"../etc/passwd",
            b"a/b",
            b"a\0b",
            b"a\\b",
            b"a\nb",
            b"\xff\xfe",
        ] {
            let mut b = 4u64.to_le_bytes().to_vec();
            b.extend_from_slice(bad);
            let ev = build_event(4, 1, 100, &b, ChecksumAlg::Off);
            assert!(parse_rotate(&ev, ChecksumAlg::Off).is_err(), "{bad:?}");
        }
        let long = vec![b'a'; 513];
        let mut b = 4u64.to_le_bytes().to_vec();
        b.extend_from_slice(&long);
        let ev = build_event(4, 1, 100, &b, ChecksumAlg::Off);
        assert!(parse_rotate(&ev, ChecksumAlg::Off).is_err());
        let ev = build_event(4, 1, 100, &[1, 2, 3], ChecksumAlg::Off);
        assert!(matches!(
            parse_rotate(&ev, ChecksumAlg::Off),
            Err(EventError::TooShort { .. })
        ));
    }

    #[test]
    fn gtid_text_forms() {
        let g: Gtid = "0-1-42".parse().unwrap();
        assert_eq!(
            g,
            Gtid::MariaDb {
                domain: 0,
                server_id: 1,
                seq: 42
            }
        );
        assert_eq!(g.to_string(), "0-1-42");
        let s = "3e11fa47-71ca-11e1-9e33-c80aa9429562:23";
        let g: Gtid = s.parse().unwrap();
        assert_eq!(g.to_string(), s);
        let g2: Gtid = "3E11FA47-71CA-11E1-9E33-C80AA9429562:23".parse().unwrap();
        assert_eq!(g, g2);
        for bad in [
            "",
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "+1-1-2",
            "0--2",
            "4294967296-1-1",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:0",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:tag:5",
            "3e11fa4771ca11e19e33c80aa9429562:5",
            "3e11fa47-71ca-11e1-9e33-c80aa942956z:5",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:9223372036854775808",
        ] {
            assert!(bad.parse::<Gtid>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gtid_events() {
        let uuid = parse_uuid("3e11fa47-71ca-11e1-9e33-c80aa9429562").unwrap();
        let ev = build_event(
            33,
            1,
            4,
            &mysql_gtid_body(uuid, 23, Some(1_700_000_000_123_456)),
            ChecksumAlg::Crc32,
        );
        let h = EventHeader::parse(&ev).unwrap();
        let info = parse_gtid(&h, &ev, ChecksumAlg::Crc32).unwrap().unwrap();
        assert_eq!(info.gtid, Gtid::MySql { uuid, gno: 23 });
        assert_eq!(info.immediate_commit_ts_us, Some(1_700_000_000_123_456));
        assert!(!info.standalone);
        // Original timestamp flag set: the immediate value loses bit 55.
        let mut b = mysql_gtid_body(uuid, 23, Some(1_700_000_000_123_456 | (1 << 55)));
        b.truncate(49);
        b.extend_from_slice(&1_600_000_000_000_000u64.to_le_bytes()[..7]);
        let ev = build_event(33, 1, 4, &b, ChecksumAlg::Off);
        let h = EventHeader::parse(&ev).unwrap();
        let info = parse_gtid(&h, &ev, ChecksumAlg::Off).unwrap().unwrap();
        assert_eq!(info.immediate_commit_ts_us, Some(1_700_000_000_123_456));
        // 5.6 layout: no logical clock, no timestamps.
        let ev = build_event(
            33,
            1,
            4,
            &mysql_gtid_body(uuid, 5, None)[..25],
            ChecksumAlg::Off,
        );
        let h = EventHeader::parse(&ev).unwrap();
        let info = parse_gtid(&h, &ev, ChecksumAlg::Off).unwrap().unwrap();
        assert_eq!(info.immediate_commit_ts_us, None);
        // Anonymous and tagged: None.
        let ev = build_event(
            34,
            1,
            4,
            &mysql_gtid_body([0; 16], 0, None),
            ChecksumAlg::Off,
        );
        let h = EventHeader::parse(&ev).unwrap();
        assert_eq!(parse_gtid(&h, &ev, ChecksumAlg::Off).unwrap(), None);
        let ev = build_event(42, 1, 4, &[0u8; 40], ChecksumAlg::Off);
        let h = EventHeader::parse(&ev).unwrap();
        assert_eq!(parse_gtid(&h, &ev, ChecksumAlg::Off).unwrap(), None);
        // gno 0 is invalid for a real GTID.
        let ev = build_event(33, 1, 4, &mysql_gtid_body(uuid, 0, None), ChecksumAlg::Off);
        let h = EventHeader::parse(&ev).unwrap();
        assert!(parse_gtid(&h, &ev, ChecksumAlg::Off).is_err());
        // MariaDB.
        let ev = build_event(162, 7, 4, &mariadb_gtid_body(42, 3, 1), ChecksumAlg::Crc32);
        let h = EventHeader::parse(&ev).unwrap();
        let info = parse_gtid(&h, &ev, ChecksumAlg::Crc32).unwrap().unwrap();
        assert_eq!(info.gtid.to_string(), "3-7-42");
        assert!(info.standalone);
        // Cut bodies: errors, no panic.
        for n in 0..25 {
            let ev = build_event(
                33,
                1,
                4,
                &mysql_gtid_body(uuid, 5, None)[..n],
                ChecksumAlg::Off,
            );
            let h = EventHeader::parse(&ev).unwrap();
            assert!(parse_gtid(&h, &ev, ChecksumAlg::Off).is_err());
        }
        for n in 0..13 {
            let ev = build_event(
                162,
                1,
                4,
                &mariadb_gtid_body(1, 0, 0)[..n],
                ChecksumAlg::Off,
            );
            let h = EventHeader::parse(&ev).unwrap();
            assert!(parse_gtid(&h, &ev, ChecksumAlg::Off).is_err());
        }
        let ev = build_event(2, 1, 4, &query_body("", "x"), ChecksumAlg::Off);
        let h = EventHeader::parse(&ev).unwrap();
        assert!(parse_gtid(&h, &ev, ChecksumAlg::Off).is_err());
    }

    #[test]
    fn query_text_and_corrupt_lengths() {
        let fde = FormatDescription::parse(&fde_event("5.7.30-log", 1)).unwrap();
        let ev = build_event(2, 1, 4, &query_body("test", "BEGIN"), ChecksumAlg::Crc32);
        assert_eq!(query_text(&ev, ChecksumAlg::Crc32, &fde).unwrap(), b"BEGIN");
        // Huge status_vars_len.
        let mut b = query_body("test", "BEGIN");
        b[11] = 0xff;
        b[12] = 0xff;
        let ev = build_event(2, 1, 4, &b, ChecksumAlg::Off);
        assert!(query_text(&ev, ChecksumAlg::Off, &fde).is_err());
        // db_len past the end.
        let mut b = query_body("test", "BEGIN");
        b[8] = 200;
        let ev = build_event(2, 1, 4, &b, ChecksumAlg::Off);
        assert!(query_text(&ev, ChecksumAlg::Off, &fde).is_err());
        // Every cut of the body.
        let full = query_body("test", "COMMIT");
        for n in 0..full.len() {
            let ev = build_event(2, 1, 4, &full[..n], ChecksumAlg::Off);
            let r = query_text(&ev, ChecksumAlg::Off, &fde);
            if n < 13 + 5 + 5 {
                assert!(r.is_err(), "{n}");
            }
        }
    }

    #[test]
    fn classify() {
        assert_eq!(classify_query(b" begin "), QueryKind::Begin);
        assert_eq!(classify_query(b"XA START X'01',X'',1"), QueryKind::Begin);
        assert_eq!(classify_query(b"COMMIT"), QueryKind::End);
        assert_eq!(classify_query(b"rollback"), QueryKind::End);
        assert_eq!(classify_query(b"XA COMMIT X'01' ONE PHASE"), QueryKind::End);
        assert_eq!(classify_query(b"xa  rollback 'x'"), QueryKind::End);
        assert_eq!(classify_query(b"ROLLBACK TO sp1"), QueryKind::Other);
        assert_eq!(classify_query(b"XA END X'01'"), QueryKind::Other);
        assert_eq!(classify_query(b"XASTART"), QueryKind::Other);
        assert_eq!(classify_query(b"BEGIN_X"), QueryKind::Other);
        assert_eq!(classify_query(b"CREATE TABLE t (a int)"), QueryKind::Other);
        assert_eq!(classify_query(b""), QueryKind::Other);
    }

    /// Feeds (type, body) pairs through a tracker with contiguous offsets from 4.
    fn track(fde_version: &str, events: &[(u8, Vec<u8>)]) -> (Vec<TxnRecord>, Vec<u64>) {
        let fde_ev = fde_event(fde_version, 1);
        let fde = FormatDescription::parse(&fde_ev).unwrap();
        let mut t = TxnTracker::new();
        let mut offset = 4 + fde_ev.len() as u64;
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for (ty, b) in events {
            let ev = build_event(*ty, 9, offset, b, fde.checksum_alg);
            let h = EventHeader::parse(&ev).unwrap();
            offsets.push(offset);
            if let Some(r) = t.observe(offset, &h, &ev, &fde).unwrap() {
                out.push(r);
            }
            offset += ev.len() as u64;
        }
        offsets.push(offset);
        (out, offsets)
    }

    #[test]
    fn txn_mysql_gtid() {
        use event_type as t;
        let uuid = [7u8; 16];
        let evs = vec![
            (t::PREVIOUS_GTIDS, vec![0u8; 8]),
            (t::GTID, mysql_gtid_body(uuid, 1, Some(5))),
            (t::QUERY, query_body("d", "CREATE TABLE t (a int)")),
            (t::GTID, mysql_gtid_body(uuid, 2, Some(6))),
            (t::QUERY, query_body("d", "BEGIN")),
            (t::TABLE_MAP, vec![0u8; 10]),
            (t::WRITE_ROWS, vec![0u8; 10]),
            (t::XID, 9u64.to_le_bytes().to_vec()),
            (t::ANONYMOUS_GTID, mysql_gtid_body([0; 16], 0, Some(7))),
            (t::TRANSACTION_PAYLOAD, vec![0u8; 30]),
            (t::GTID, mysql_gtid_body(uuid, 3, None)),
            (t::QUERY, query_body("d", "XA START X'01',X'',1")),
            (t::QUERY, query_body("d", "XA END X'01',X'',1")),
            (t::XA_PREPARE, vec![0u8; 20]),
            (t::GTID, mysql_gtid_body(uuid, 4, None)),
            (t::QUERY, query_body("d", "XA COMMIT X'01',X'',1")),
            (t::GTID, mysql_gtid_body(uuid, 5, None)),
            (t::USER_VAR, vec![0u8; 10]),
            (t::QUERY, query_body("d", "CREATE TABLE u SELECT @a")),
            (t::ROTATE, vec![0u8; 12]),
        ];
        let (recs, off) = track("8.0.35", &evs);
        let g = |gno| Some(Gtid::MySql { uuid, gno });
        let want = vec![
            (g(1), off[1], off[3]),
            (g(2), off[3], off[8]),
            (None, off[8], off[10]),
            (g(3), off[10], off[14]),
            (g(4), off[14], off[16]),
            (g(5), off[16], off[19]),
        ];
        let got: Vec<_> = recs
            .iter()
            .map(|r| (r.gtid.clone(), r.start, r.end))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn txn_mariadb_and_old_servers() {
        use event_type as t;
        let evs = vec![
            (t::MARIADB_GTID_LIST, vec![0u8; 4]),
            (t::MARIADB_BINLOG_CHECKPOINT, vec![0u8; 8]),
            (t::MARIADB_GTID, mariadb_gtid_body(10, 0, 0)),
            (t::MARIADB_ANNOTATE_ROWS, b"insert".to_vec()),
            (t::TABLE_MAP, vec![0u8; 10]),
            (t::WRITE_ROWS_V1, vec![0u8; 10]),
            (t::XID, vec![0u8; 8]),
            (t::MARIADB_GTID, mariadb_gtid_body(11, 0, 1 | 32)),
            (t::QUERY, query_body("d", "CREATE TABLE t (a int)")),
            (t::MARIADB_GTID, mariadb_gtid_body(12, 0, 0)),
            (t::QUERY, query_body("d", "INSERT INTO myisam VALUES (1)")),
            (t::QUERY, query_body("d", "COMMIT")),
        ];
        let (recs, off) = track("10.11.6-MariaDB-log", &evs);
        let g = |seq| {
            Some(Gtid::MariaDb {
                domain: 0,
                server_id: 9,
                seq,
            })
        };
        let got: Vec<_> = recs
            .iter()
            .map(|r| (r.gtid.clone(), r.start, r.end))
            .collect();
        assert_eq!(
            got,
            vec![
                (g(10), off[2], off[7]),
                (g(11), off[7], off[9]),
                (g(12), off[9], off[12])
            ]
        );

        let evs = vec![
            (t::QUERY, query_body("d", "BEGIN")),
            (t::QUERY, query_body("d", "INSERT INTO t VALUES (1)")),
            (t::QUERY, query_body("d", "SAVEPOINT a")),
            (t::QUERY, query_body("d", "ROLLBACK TO a")),
            (t::XID, vec![0u8; 8]),
            (t::INTVAR, vec![0u8; 9]),
            (t::QUERY, query_body("d", "INSERT INTO m VALUES (NULL)")),
            (t::QUERY, query_body("d", "DROP TABLE x")),
            (t::XID, vec![0u8; 8]),
            (t::QUERY, query_body("d", "COMMIT")),
            (t::QUERY, query_body("d", "BEGIN")),
            (t::QUERY, query_body("d", "INSERT INTO m VALUES (NULL)")),
        ];
        let fde_ev = fde_event("5.0.91-log", 0);
        let fde = FormatDescription::parse(&fde_ev).unwrap();
        assert_eq!(fde.checksum_alg, ChecksumAlg::Off);
        let (recs, off) = track("5.0.91-log", &evs);
        let got: Vec<_> = recs
            .iter()
            .map(|r| (r.gtid.clone(), r.start, r.end))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, off[0], off[5]),
                (None, off[5], off[7]),
                (None, off[7], off[8]),
            ]
        );
    }

    #[test]
    fn txn_open_start_and_errors() {
        let fde_ev = fde_event("8.0.35", 1);
        let fde = FormatDescription::parse(&fde_ev).unwrap();
        let mut t = TxnTracker::new();
        assert_eq!(t.open_txn_start(), None);
        let ev = build_event(
            33,
            1,
            200,
            &mysql_gtid_body([1; 16], 3, None),
            ChecksumAlg::Crc32,
        );
        let h = EventHeader::parse(&ev).unwrap();
        assert_eq!(t.observe(200, &h, &ev, &fde).unwrap(), None);
        assert_eq!(t.open_txn_start(), Some(200));
        // A corrupt QUERY is an error with the offset, and leaves the state alone.
        let mut b = query_body("d", "BEGIN");
        b[8] = 250;
        let ev = build_event(2, 1, 300, &b, ChecksumAlg::Crc32);
        let h = EventHeader::parse(&ev).unwrap();
        let err = t.observe(300, &h, &ev, &fde).unwrap_err();
        assert_eq!(err.offset(), Some(300));
        assert!(!err.is_truncated());
        assert_eq!(t.open_txn_start(), Some(200));
    }

    fn synthetic_file() -> Vec<u8> {
        let mut f = BINLOG_MAGIC.to_vec();
        f.extend_from_slice(&fde_event("8.0.35", 1));
        let off = f.len() as u64;
        f.extend_from_slice(&build_event(
            33,
            1,
            off,
            &mysql_gtid_body([3; 16], 1, Some(9)),
            ChecksumAlg::Crc32,
        ));
        let off = f.len() as u64;
        f.extend_from_slice(&build_event(
            2,
            1,
            off,
            &query_body("d", "CREATE TABLE t (a int)"),
            ChecksumAlg::Crc32,
        ));
        let off = f.len() as u64;
        let mut b = 4u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"binlog.000002");
        f.extend_from_slice(&build_event(4, 1, off, &b, ChecksumAlg::Crc32));
        f
    }

    fn read_all(data: &[u8]) -> (Vec<(u64, EventHeader)>, Option<EventError>) {
        let mut rd = match EventReader::new_at_start(data) {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut out = Vec::new();
        while let Some(item) = rd.next_event() {
            match item {
                Ok((off, h, ev)) => {
                    assert_eq!(ev.len(), h.event_size as usize);
                    out.push((off, h));
                }
                Err(e) => {
                    assert!(rd.next_event().is_none(), "reader must stop after an error");
                    return (out, Some(e));
                }
            }
        }
        (out, None)
    }

    #[test]
    fn reader_truncated_at_every_offset() {
        let mut files = vec![synthetic_file()];
        files.push(corpus_file(
            "mariadb-operator__mariadb-poc/domain_id_0/mariadb-repl-bin.000009",
        ));
        files.push(corpus_file("blackbeam__rust_mysql_common/bug16266.000001"));
        for data in files {
            let (full, err) = read_all(&data);
            assert!(err.is_none(), "{err:?}");
            let ends: Vec<u64> = full
                .iter()
                .map(|(o, h)| o + u64::from(h.event_size))
                .collect();
            for cut in 0..data.len() {
                let (evs, err) = read_all(&data[..cut]);
                let at_boundary = cut == 4 || ends.contains(&(cut as u64));
                match err {
                    None => assert!(at_boundary, "cut {cut}: no error"),
                    Some(e) => {
                        assert!(!at_boundary, "cut {cut}: {e}");
                        assert!(e.is_truncated(), "cut {cut}: {e}");
                        let EventError::Truncated {
                            offset,
                            needed,
                            available,
                        } = e
                        else {
                            unreachable!()
                        };
                        assert!(available < needed);
                        assert_eq!(offset + available, cut as u64);
                    }
                }
                assert!(evs.len() <= full.len());
            }
            // Every single-byte corruption: no panic, bounded work.
            for i in 0..data.len() {
                for v in [0x00u8, 0xff, 0x13] {
                    let mut bad = data.clone();
                    bad[i] = v;
                    let _ = read_all(&bad);
                }
            }
        }
    }

    #[test]
    fn reader_bad_magic_and_sizes() {
        assert!(matches!(
            EventReader::new_at_start(&b"\xfebi"[..]),
            Err(EventError::Truncated {
                offset: 0,
                needed: 4,
                available: 3
            })
        ));
        assert!(matches!(
            EventReader::new_at_start(&b"GIF89a"[..]),
            Err(EventError::BadMagic { .. })
        ));
        // A header claiming 1 GiB with a few bytes behind it: truncation, no 1 GiB buffer.
        let mut f = BINLOG_MAGIC.to_vec();
        let h = EventHeader {
            timestamp: 0,
            type_code: 2,
            server_id: 1,
            event_size: MAX_EVENT_SIZE,
            log_pos: 0,
            flags: 0,
        };
        f.extend_from_slice(&h.to_bytes());
        f.extend_from_slice(&[0u8; 100]);
        let (_, err) = read_all(&f);
        assert!(matches!(
            err,
            Some(EventError::Truncated {
                offset: 4,
                available: 119,
                ..
            })
        ));
        // Size below the header.
        let mut f = BINLOG_MAGIC.to_vec();
        f.extend_from_slice(&EventHeader { event_size: 5, ..h }.to_bytes());
        let (_, err) = read_all(&f);
        let err = err.unwrap();
        assert!(!err.is_truncated());
        assert_eq!(err.offset(), Some(4));
        assert!(err.to_string().contains("bad event size 5"), "{err}");
    }

    #[test]
    fn reader_at_offset() {
        let data = synthetic_file();
        let (all, _) = read_all(&data);
        let (second, _) = all[1];
        let mut rd = EventReader::new_at(&data[second as usize..], second);
        let mut n = 0;
        while let Some(item) = rd.next_event() {
            let (off, h, _) = item.unwrap();
            assert_eq!(h.log_pos as u64, off + u64::from(h.event_size));
            n += 1;
        }
        assert_eq!(n, all.len() - 1);
        assert_eq!(rd.offset(), data.len() as u64);
    }
}
