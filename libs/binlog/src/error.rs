//! [`EventError`], the one error type of binlog parsing, and the bounds-checked
//! little-endian field readers every decoder uses.

use std::io;

use crate::format::{event_type, HEADER_LEN, MAX_EVENT_SIZE};

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
    /// The first 4 bytes are not [`crate::format::BINLOG_MAGIC`].
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

pub(crate) type Result<T> = std::result::Result<T, EventError>;

/// `len` bytes of `buf` from `at`, or [`EventError::TooShort`].
pub(crate) fn field<'a>(
    buf: &'a [u8],
    at: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8]> {
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

pub(crate) fn le_u8(buf: &[u8], at: usize, what: &'static str) -> Result<u8> {
    buf.get(at).copied().ok_or(EventError::TooShort {
        what,
        needed: at.saturating_add(1),
        available: buf.len(),
    })
}

pub(crate) fn le_u16(buf: &[u8], at: usize, what: &'static str) -> Result<u16> {
    let b = field(buf, at, 2, what)?;
    Ok(u16::from_le_bytes([
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(0),
    ]))
}

pub(crate) fn le_uint(buf: &[u8], at: usize, len: usize, what: &'static str) -> Result<u64> {
    let b = field(buf, at, len, what)?;
    Ok(b.iter()
        .rev()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)))
}

pub(crate) fn le_u32(buf: &[u8], at: usize, what: &'static str) -> Result<u32> {
    // le_uint over 4 bytes never exceeds u32::MAX.
    Ok(le_uint(buf, at, 4, what)? as u32)
}

pub(crate) fn le_u64(buf: &[u8], at: usize, what: &'static str) -> Result<u64> {
    le_uint(buf, at, 8, what)
}
