//! The constants of the format: the file magic, the common header and checksum
//! lengths, the event size bound, the header flags (`LOG_EVENT_*_F`) and the event type
//! codes ([`event_type`]).

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
