//! Why one streaming attempt ended ([`StreamEnd`]): the reconnect loop reacts to the
//! variant (retry with backoff, count CRC strikes, or stop with the reason).

use super::session::SessionError;

/// Why one streaming attempt ended.
pub(crate) enum StreamEnd {
    Transient(String),
    Definite(String),
    /// CRC failure at a position (counted to turn repeated ones definite).
    Crc(String, (String, u64)),
    Cancelled,
}

impl StreamEnd {
    /// The reason, for errors reported elsewhere (re-pull).
    pub(crate) fn message(self) -> String {
        match self {
            StreamEnd::Transient(m) | StreamEnd::Definite(m) | StreamEnd::Crc(m, _) => m,
            StreamEnd::Cancelled => "cancelled".into(),
        }
    }
}

impl From<SessionError> for StreamEnd {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Transient(m) => StreamEnd::Transient(m),
            SessionError::Definite(m) => StreamEnd::Definite(m),
        }
    }
}
