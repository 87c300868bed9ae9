//! [`EventReader`]: events of a binlog byte stream with their offsets, in bounded
//! memory, stopping once at the first framing problem.

use std::io::{self, Read};

use crate::error::{EventError, Result};
use crate::format::{BINLOG_MAGIC, HEADER_LEN};
use crate::header::EventHeader;

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
/// reusable buffer (memory: the largest event, at most [`crate::format::MAX_EVENT_SIZE`], grown only as
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
