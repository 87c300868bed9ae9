//! FORMAT_DESCRIPTION (type 15): the event that opens every binlog file and announces
//! the server version, post-header lengths and the checksum algorithm.

use crate::error::{field, le_u16, le_u32, le_u8, EventError, Result};
use crate::format::{event_type, CHECKSUM_LEN, HEADER_LEN};
use crate::header::{framed_header, stored_and_computed_crc, ChecksumAlg, EventHeader};

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
    /// True when the event ends with the algorithm byte and its own CRC32 (see
    /// [`FormatDescription::parse`] for how that is decided).
    pub checksum_field: bool,
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
/// `do_server_version_split` decides: it contains "MariaDB" or "-maria-"). The one
/// MariaDB detection of the project: for FDEs, greetings and `SELECT VERSION()` alike.
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
    /// included when present). Algorithm byte 0 = off, 1 = CRC32, anything else is an
    /// error.
    ///
    /// Whether the event carries the algorithm byte and its own CRC32 is decided from
    /// bytes that are verified first, never from an unverified string alone:
    ///
    /// 1. when the last 4 bytes are the CRC32 of the rest (in-use flag cleared) and the
    ///    byte before them is 0 or 1, the event has them, whatever its version says;
    /// 2. otherwise the server version decides (MySQL >= 5.6.1, MariaDB >= 5.3:
    ///    `checksum_version_split` in mysql-server / MariaDB `sql/log_event.cc`); the
    ///    caller's CRC check then fails on a damaged checksum-aware event;
    /// 3. a version that does not parse as `N.N.N` ([`server_version_split`] gives
    ///    [0, 0, 0]) with no verifying CRC is damage: [`EventError::Invalid`].
    ///
    /// So one flipped bit in the version can no longer turn a CRC32 file's checks off
    /// here; a version flipped to an older server's still parses as "no checksums", and
    /// [`crate::check`] then finds the CRC32 on the events that follow.
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
        let checksum_field = checksum_field(&h, event, rest, &server_version)?;
        let (post_header_lens, checksum_alg) = if checksum_field {
            split_trailer(rest, body.len())?
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
            checksum_field,
        })
    }

    /// Post-header length in bytes of events of `type_code`, when this FDE describes it.
    pub fn post_header_len(&self, type_code: u8) -> Option<u8> {
        let index = usize::from(type_code).checked_sub(1)?;
        self.post_header_lens.get(index).copied()
    }

    /// True when the FDE event itself carries the algorithm byte and a 4-byte checksum
    /// (its own CRC32 verifies, or MySQL >= 5.6.1, MariaDB >= 5.3), even when
    /// `checksum_alg` is Off: such servers
    /// always write the FDE's CRC32 ("FD of checksum-aware server is always
    /// checksum-equipped", mysql-server `sql/log_event.cc`), except tools that leave it 0.
    pub fn has_checksum_field(&self) -> bool {
        self.checksum_field
    }
}

/// Step 1-3 of [`FormatDescription::parse`]: whether the event ends with the algorithm
/// byte and its own CRC32. `rest` is the body after the fixed part.
fn checksum_field(h: &EventHeader, event: &[u8], rest: &[u8], version: &str) -> Result<bool> {
    let alg_byte = rest
        .len()
        .checked_sub(1 + CHECKSUM_LEN)
        .and_then(|i| rest.get(i).copied());
    let own_crc_verifies = matches!(alg_byte, Some(0 | 1))
        && matches!(stored_and_computed_crc(h, event), Ok((s, c)) if s == c);
    if own_crc_verifies {
        return Ok(true);
    }
    if server_version_split(version) == [0, 0, 0] {
        return Err(EventError::Invalid {
            what: "FORMAT_DESCRIPTION server version",
            detail: format!(
                "{version:?} is not a server version and the event's own CRC32 does not \
                 verify: the event is damaged"
            ),
        });
    }
    Ok(version_has_checksum_field(version))
}

/// Splits the body after the fixed part into the post-header lengths and the algorithm
/// byte (the 4-byte CRC32 after it is dropped). `body_len` is for the error.
fn split_trailer(rest: &[u8], body_len: usize) -> Result<(Vec<u8>, ChecksumAlg)> {
    let trailer = 1 + CHECKSUM_LEN;
    let split = rest
        .len()
        .checked_sub(trailer)
        .ok_or(EventError::TooShort {
            what: "FORMAT_DESCRIPTION checksum algorithm",
            needed: FDE_FIXED_LEN + trailer,
            available: body_len,
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
    Ok((lens.to_vec(), alg))
}
