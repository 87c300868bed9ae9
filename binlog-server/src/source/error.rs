//! Why one streaming attempt ended (`StreamEnd`): the reconnect loop reacts to the
//! variant (retry with backoff, count CRC strikes, record a gap, or stop with the
//! reason), never to the text.

use super::session::SessionError;
use super::writer::WriterError;

/// Why one streaming attempt ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamEnd {
    /// The session with the primary failed; its own classification decides
    /// ([`SessionError::is_definite`]), and its server error code is kept (ERROR 1236
    /// makes the loop look for a purge on the primary).
    #[error(transparent)]
    Session(SessionError),
    /// Retry: the stream broke in a way a reconnect may mend (no event within the read
    /// timeout, EOF from the primary, a malformed header).
    #[error("{0}")]
    Transient(String),
    /// Retry, counted: an event failed its CRC32 check at `file`:`pos` and was not
    /// stored. The same position failing 5 times in a row stops the source.
    #[error("{message}")]
    Crc {
        /// File of the bad event.
        file: String,
        /// Offset of the bad event in `file`, bytes.
        pos: u64,
        /// What was wrong, for people.
        message: String,
    },
    /// Stop: the event at `file`:`pos` does not follow the previous one (the primary
    /// skipped bytes), so the archived file would differ from the primary's.
    #[error("{message}")]
    NotContiguous {
        /// File being written.
        file: String,
        /// Offset in `file` where the next event was expected, bytes.
        pos: u64,
        /// What was wrong, for people.
        message: String,
    },
    /// Stop: the writer failed with this error (None: it is gone without saying why).
    #[error("the writer failed{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    WriterFailed(Option<WriterError>),
    /// Stop, for another reason found in the stream or the archive (the primary went
    /// back in its history, a file name that cannot be stored, a start file the primary
    /// does not have).
    #[error("{0}")]
    Definite(String),
    /// Retry elsewhere: this server is not the source's primary (read-only while the
    /// source lists several servers, or another server than the timeline's): the
    /// reconnect loop looks for the primary (`super::failover::follow`).
    #[error("{0}")]
    NotPrimary(String),
    /// The source is shutting down.
    #[error("cancelled")]
    Cancelled,
}

impl StreamEnd {
    /// True when no retry can help: the source stops with the reason until an operator
    /// restarts it.
    pub(crate) fn is_definite(&self) -> bool {
        match self {
            StreamEnd::Session(e) => e.is_definite(),
            StreamEnd::Transient(_)
            | StreamEnd::Crc { .. }
            | StreamEnd::NotPrimary(_)
            | StreamEnd::Cancelled => false,
            StreamEnd::NotContiguous { .. }
            | StreamEnd::WriterFailed(_)
            | StreamEnd::Definite(_) => true,
        }
    }

    /// The primary's error code, when the primary answered with an ERR packet.
    pub(crate) fn server_code(&self) -> Option<u16> {
        match self {
            StreamEnd::Session(e) => e.server_code(),
            _ => None,
        }
    }
}

impl From<SessionError> for StreamEnd {
    fn from(e: SessionError) -> Self {
        StreamEnd::Session(e)
    }
}
