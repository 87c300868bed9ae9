//! Transaction grouping: [`TxnTracker`] turns a file's events into [`TxnRecord`]s (GTID,
//! offsets, commit time), the unit the index and PITR count in.

use crate::error::Result;
use crate::fde::FormatDescription;
use crate::format::event_type;
use crate::gtid::{parse_gtid, Gtid, GtidInfo};
use crate::header::EventHeader;
use crate::query::{classify_query, query_text, QueryKind};

/// A transaction found by [`TxnTracker`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    /// Its GTID (None: anonymous, tagged, or a server without GTIDs).
    pub gtid: Option<Gtid>,
    /// File offset of its first event (the GTID event, BEGIN, or first context event).
    pub start: u64,
    /// File offset just past its last event.
    pub end: u64,
    /// Header timestamp (unix seconds) of the event that ended it.
    pub commit_timestamp: u32,
}

#[derive(Clone, Debug, Default)]
enum TxnState {
    /// Between transactions.
    #[default]
    Idle,
    /// After a GTID event, before its first statement: a BEGIN makes it a block, a
    /// statement ends it (DDL, MySQL XA COMMIT), TRANSACTION_PAYLOAD or XID ends it.
    AfterGtid { start: u64, gtid: Option<Gtid> },
    /// Inside BEGIN ... COMMIT/XID (MariaDB: after a non-standalone GTID).
    Block { start: u64, gtid: Option<Gtid> },
    /// Context events (INTVAR, USER_VAR, ...) without a GTID or BEGIN before them: the
    /// next statement ends this implicit (autocommit) transaction.
    Pending { start: u64 },
}

/// Turns the events of one binlog file into transactions (for the index and the checker).
///
/// A transaction starts at a GTID / ANONYMOUS_GTID / GTID_TAGGED / MARIADB_GTID event, or,
/// without one, at a QUERY "BEGIN" (old servers). It ends at: XID; a QUERY whose trimmed
/// text is COMMIT or ROLLBACK (case-insensitive; "ROLLBACK TO sp" does not end it), or an
/// "XA COMMIT ..." / "XA ROLLBACK ..."; XA_PREPARE; and, after a MariaDB standalone GTID or
/// a MySQL GTID not followed by BEGIN / XA START, the first statement (a DDL QUERY,
/// EXECUTE_LOAD_QUERY) or TRANSACTION_PAYLOAD. Context events (INTVAR, RAND, USER_VAR,
/// LOAD DATA blocks) in between do not end it.
///
/// Outside any transaction, a statement without GTID or BEGIN (DDL or non-transactional
/// autocommit DML on servers without GTIDs) is a transaction of its own, starting at its
/// first context event: a point-in-time restore must be able to stop before or after it.
/// A GTID arriving while a transaction is open abandons the open one (it never
/// committed in this file); stray terminators outside a transaction are ignored.
#[derive(Clone, Debug, Default)]
pub struct TxnTracker {
    state: TxnState,
}

impl TxnTracker {
    /// A tracker in the "between transactions" state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one event. `offset`: file offset of this event; `event`: the whole event;
    /// `fde`: the file's current FORMAT_DESCRIPTION (for the QUERY post-header and the
    /// checksum alg). Returns Some when this event completes a transaction. Errors when a
    /// GTID or QUERY event is malformed (the state is left unchanged then).
    pub fn observe(
        &mut self,
        offset: u64,
        header: &EventHeader,
        event: &[u8],
        fde: &FormatDescription,
    ) -> Result<Option<TxnRecord>> {
        use event_type as t;
        let alg = fde.checksum_alg;
        let state = std::mem::take(&mut self.state);
        let step = match header.type_code {
            t::GTID | t::ANONYMOUS_GTID | t::GTID_TAGGED | t::MARIADB_GTID => {
                match parse_gtid(header, event, alg) {
                    Ok(info) => after_gtid(header.type_code, offset, info),
                    Err(e) => {
                        self.state = state;
                        return Err(e.at(offset));
                    }
                }
            }
            t::QUERY => match query_text(event, alg, fde) {
                Ok(text) => after_query(state, classify_query(text), offset),
                Err(e) => {
                    self.state = state;
                    return Err(e.at(offset));
                }
            },
            t::XID | t::XA_PREPARE => after_commit(state),
            t if ends_unread_statement(t) => after_unread_statement(state, offset),
            t if belongs_to_next_statement(t) => match state {
                TxnState::Idle => (TxnState::Pending { start: offset }, None),
                s => (s, None),
            },
            _ => (state, None),
        };
        let (next, done) = step;
        self.state = next;
        Ok(done.map(|(start, gtid)| TxnRecord {
            gtid,
            start,
            end: offset.saturating_add(u64::from(header.event_size)),
            commit_timestamp: header.timestamp,
        }))
    }

    /// Offset where the transaction in progress began, if one is open (used to resume
    /// indexing at a transaction boundary).
    pub fn open_txn_start(&self) -> Option<u64> {
        match self.state {
            TxnState::Idle => None,
            TxnState::AfterGtid { start, .. }
            | TxnState::Block { start, .. }
            | TxnState::Pending { start } => Some(start),
        }
    }
}

/// A transition: the next state, and the (start, GTID) of a transaction the event ended.
type Step = (TxnState, Option<(u64, Option<Gtid>)>);

/// After a GTID event: a MariaDB GTID that is not standalone opens a BEGIN...COMMIT
/// block; any other GTID waits for its one statement or block.
fn after_gtid(type_code: u8, offset: u64, info: Option<GtidInfo>) -> Step {
    let standalone = info.as_ref().is_some_and(|i| i.standalone);
    let gtid = info.map(|i| i.gtid);
    let next = if type_code == event_type::MARIADB_GTID && !standalone {
        TxnState::Block {
            start: offset,
            gtid,
        }
    } else {
        TxnState::AfterGtid {
            start: offset,
            gtid,
        }
    };
    (next, None)
}

/// After a QUERY event of `kind` (BEGIN, COMMIT/ROLLBACK, or another statement).
fn after_query(state: TxnState, kind: QueryKind, offset: u64) -> Step {
    match (state, kind) {
        (TxnState::Idle, QueryKind::Begin) => (
            TxnState::Block {
                start: offset,
                gtid: None,
            },
            None,
        ),
        (TxnState::Idle, QueryKind::End) => (TxnState::Idle, None),
        (TxnState::Idle, QueryKind::Other) => (TxnState::Idle, Some((offset, None))),
        (TxnState::Pending { start }, QueryKind::Begin) => {
            (TxnState::Block { start, gtid: None }, None)
        }
        (TxnState::Pending { start }, _) => (TxnState::Idle, Some((start, None))),
        (TxnState::AfterGtid { start, gtid }, QueryKind::Begin) => {
            (TxnState::Block { start, gtid }, None)
        }
        (TxnState::AfterGtid { start, gtid }, _) => (TxnState::Idle, Some((start, gtid))),
        (TxnState::Block { start, gtid }, QueryKind::End) => (TxnState::Idle, Some((start, gtid))),
        (s @ TxnState::Block { .. }, _) => (s, None),
    }
}

/// After XID or XA_PREPARE: whatever is open ends.
fn after_commit(state: TxnState) -> Step {
    match state {
        TxnState::Idle => (TxnState::Idle, None),
        TxnState::Pending { start } => (TxnState::Idle, Some((start, None))),
        TxnState::AfterGtid { start, gtid } | TxnState::Block { start, gtid } => {
            (TxnState::Idle, Some((start, gtid)))
        }
    }
}

/// Statements whose text is not read (compressed, payload, LOAD): they end a
/// transaction that waits for its statement, and are one on their own outside any.
fn ends_unread_statement(t: u8) -> bool {
    use event_type as e;
    matches!(
        t,
        e::TRANSACTION_PAYLOAD
            | e::MARIADB_QUERY_COMPRESSED
            | e::EXECUTE_LOAD_QUERY
            | e::LOAD
            | e::NEW_LOAD
            | e::EXEC_LOAD
    )
}

/// After a statement of [`ends_unread_statement`].
fn after_unread_statement(state: TxnState, offset: u64) -> Step {
    match state {
        TxnState::Idle => (TxnState::Idle, Some((offset, None))),
        TxnState::Pending { start } => (TxnState::Idle, Some((start, None))),
        TxnState::AfterGtid { start, gtid } => (TxnState::Idle, Some((start, gtid))),
        s @ TxnState::Block { .. } => (s, None),
    }
}

/// Events that belong to the statement or rows after them (context, table maps, rows):
/// outside a transaction they open a pending one.
fn belongs_to_next_statement(t: u8) -> bool {
    use event_type as e;
    matches!(
        t,
        e::INTVAR
            | e::RAND
            | e::USER_VAR
            | e::BEGIN_LOAD_QUERY
            | e::APPEND_BLOCK
            | e::CREATE_FILE
            | e::DELETE_FILE
            | e::TABLE_MAP
            | e::ROWS_QUERY
            | e::MARIADB_ANNOTATE_ROWS
            | e::PRE_GA_WRITE_ROWS..=e::DELETE_ROWS_V1
            | e::WRITE_ROWS..=e::DELETE_ROWS
            | e::PARTIAL_UPDATE_ROWS
            | e::MARIADB_WRITE_ROWS_COMPRESSED_V1..=e::MARIADB_DELETE_ROWS_COMPRESSED
    )
}
