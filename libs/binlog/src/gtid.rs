//! GTIDs of both dialects: the [`Gtid`] type and the GTID events (MySQL GTID /
//! ANONYMOUS_GTID / GTID_TAGGED, MariaDB GTID) decoded into [`GtidInfo`].

use std::fmt;
use std::str::FromStr;

use crate::error::{field, le_u32, le_u64, le_u8, le_uint, EventError, Result};
use crate::format::event_type;
use crate::header::{body, ChecksumAlg, EventHeader};

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
pub(crate) const LOGICAL_TIMESTAMP_TYPECODE: u8 = 2;

/// The GTIDs of a MariaDB GTID_LIST event (type 163): the binlog state when its file
/// began, one GTID per (domain, server_id) (MariaDB sql/log_event.cc
/// `Gtid_list_log_event`: count u32 LE, its low 28 bits the number of entries and the
/// high 4 flags, then per entry domain_id u32, server_id u32, seq_no u64, all LE).
///
/// # Errors
///
/// A body shorter than its count says ([`EventError::TooShort`]), or another event type.
pub fn parse_gtid_list(header: &EventHeader, event: &[u8], alg: ChecksumAlg) -> Result<Vec<Gtid>> {
    const WHAT: &str = "GTID_LIST body";
    if header.type_code != event_type::MARIADB_GTID_LIST {
        return Err(EventError::Invalid {
            what: "GTID_LIST event",
            detail: format!("event type is {}", event_type::name(header.type_code)),
        });
    }
    let b = body(event, alg)?;
    let count = (le_u32(b, 0, WHAT)? & 0x0fff_ffff) as usize;
    // Each entry is 16 bytes: the body bounds the count before anything is allocated.
    field(b, 4, count.saturating_mul(16), WHAT)?;
    (0..count)
        .map(|i| {
            let at = 4 + i * 16;
            Ok(Gtid::MariaDb {
                domain: le_u32(b, at, WHAT)?,
                server_id: le_u32(b, at + 4, WHAT)?,
                seq: le_u64(b, at + 8, WHAT)?,
            })
        })
        .collect()
}

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
