//! The 19-byte common event header ([`EventHeader`]), the checksum algorithm
//! ([`ChecksumAlg`]) and the per-event CRC32 trailer (framing and checksum verification).

use crate::error::{field, le_u16, le_u32, le_u8, EventError, Result};
use crate::format::{
    event_type, CHECKSUM_LEN, HEADER_LEN, LOG_EVENT_ARTIFICIAL_F, LOG_EVENT_BINLOG_IN_USE_F,
    MAX_EVENT_SIZE,
};

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
