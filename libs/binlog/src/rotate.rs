//! ROTATE (type 4): where the stream or the file continues, and the binlog file-name
//! rules a name read from a primary must satisfy.

use crate::error::{le_u64, EventError, Result};
use crate::format::event_type;
use crate::header::{body, framed_header, ChecksumAlg};

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
