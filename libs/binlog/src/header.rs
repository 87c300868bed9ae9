//! The 19-byte common event header, the file magic, event type codes and flags, and the
//! per-event CRC32 trailer (framing and checksum verification).

use crate::error::field;

use crate::error::{le_u16, le_u32, le_u8, Result};
use crate::EventError;

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
pub(crate) fn framed_header(event: &[u8]) -> Result<EventHeader> {
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
