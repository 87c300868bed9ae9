//! QUERY (type 2): the SQL text of statement events, and the few statement kinds that
//! decide transaction boundaries (BEGIN, COMMIT, ROLLBACK, XA, DDL).

use crate::error::{field, le_u16, le_u8, EventError, Result};
use crate::fde::FormatDescription;
use crate::format::event_type;
use crate::header::{body, framed_header, ChecksumAlg};

/// QUERY post-header length of binlog v4 (thread_id 4, exec_time 4, db_len 1,
/// error_code 2, status_vars_len 2): mysql-server `statement_events.h` `Query_event`.
const QUERY_HEADER_LEN_V4: usize = 13;
/// QUERY post-header length without status variables (binlog v1/v3).
const QUERY_HEADER_MIN_LEN: usize = 11;

/// SQL text of a QUERY event (type 2 only; MARIADB_QUERY_COMPRESSED's text is compressed).
///
/// Layout (mysql-server `libbinlogevents/src/statement_events.cpp` `Query_event`, MariaDB
/// KB "Query Event"): post-header (length from the FDE, 13 for v4: thread_id u32,
/// exec_time u32, db_len u8 at offset 8, error_code u16, status_vars_len u16 at offset
/// 11), status variables, the default database name (db_len bytes) + NUL, then the text
/// to the end of the body. Every length is checked against the body.
pub fn query_text<'a>(
    event: &'a [u8],
    alg: ChecksumAlg,
    fde: &FormatDescription,
) -> Result<&'a [u8]> {
    let h = framed_header(event)?;
    if h.type_code != event_type::QUERY {
        return Err(EventError::Invalid {
            what: "QUERY",
            detail: format!("event type is {}", event_type::name(h.type_code)),
        });
    }
    let b = body(event, alg)?;
    let phl = fde
        .post_header_len(event_type::QUERY)
        .map(usize::from)
        .unwrap_or(QUERY_HEADER_LEN_V4);
    if phl < QUERY_HEADER_MIN_LEN {
        return Err(EventError::Invalid {
            what: "QUERY post-header length",
            detail: format!("{phl} in the FORMAT_DESCRIPTION (at least 11)"),
        });
    }
    field(b, 0, phl, "QUERY post-header")?;
    let db_len = usize::from(le_u8(b, 8, "QUERY post-header")?);
    let status_len = if phl >= QUERY_HEADER_LEN_V4 {
        usize::from(le_u16(b, 11, "QUERY post-header")?)
    } else {
        0
    };
    let db_start = phl + status_len;
    field(b, phl, status_len, "QUERY status variables")?;
    let nul = le_u8(b, db_start + db_len, "QUERY database name")?;
    if nul != 0 {
        return Err(EventError::Invalid {
            what: "QUERY database name",
            detail: format!("not NUL-terminated (byte {nul:#04x} after {db_len} bytes)"),
        });
    }
    Ok(b.get(db_start + db_len + 1..).unwrap_or(&[]))
}

/// How a statement affects transaction boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueryKind {
    /// BEGIN, XA START, XA BEGIN.
    Begin,
    /// COMMIT, ROLLBACK, XA COMMIT ..., XA ROLLBACK ...
    End,
    /// Anything else (DDL, statement DML, SAVEPOINT, ROLLBACK TO ...).
    Other,
}

fn starts_with_words(text: &[u8], words: &[&str]) -> bool {
    let mut rest = text;
    for w in words {
        let trimmed_len = rest.len() - rest.trim_ascii_start().len();
        rest = rest.get(trimmed_len..).unwrap_or(&[]);
        let Some(head) = rest.get(..w.len()) else {
            return false;
        };
        if !head.eq_ignore_ascii_case(w.as_bytes()) {
            return false;
        }
        rest = rest.get(w.len()..).unwrap_or(&[]);
        if rest
            .first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return false;
        }
    }
    true
}

pub(crate) fn classify_query(text: &[u8]) -> QueryKind {
    let t = text.trim_ascii();
    if t.eq_ignore_ascii_case(b"BEGIN")
        || starts_with_words(t, &["XA", "START"])
        || starts_with_words(t, &["XA", "BEGIN"])
    {
        QueryKind::Begin
    } else if t.eq_ignore_ascii_case(b"COMMIT")
        || t.eq_ignore_ascii_case(b"ROLLBACK")
        || starts_with_words(t, &["XA", "COMMIT"])
        || starts_with_words(t, &["XA", "ROLLBACK"])
    {
        QueryKind::End
    } else {
        QueryKind::Other
    }
}
