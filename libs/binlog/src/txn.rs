//! Transaction grouping: [`TxnTracker`] turns a file's events into [`TxnRecord`]s (GTID,
//! offsets, commit time), the unit the index and PITR count in.

use crate::gtid::parse_gtid;
use crate::query::classify_query;
use crate::query::query_text;
use crate::query::QueryKind;

use crate::error::Result;
use crate::{event_type, EventHeader, FormatDescription, Gtid};

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
        let end = offset.saturating_add(u64::from(header.event_size));
        let done = |start: u64, gtid: Option<Gtid>| {
            Some(TxnRecord {
                gtid,
                start,
                end,
                commit_timestamp: header.timestamp,
            })
        };
        let state = std::mem::take(&mut self.state);
        let (next, record) = match header.type_code {
            t::GTID | t::ANONYMOUS_GTID | t::GTID_TAGGED | t::MARIADB_GTID => {
                let info = match parse_gtid(header, event, alg) {
                    Ok(info) => info,
                    Err(e) => {
                        self.state = state;
                        return Err(e.at(offset));
                    }
                };
                let standalone = info.as_ref().is_some_and(|i| i.standalone);
                let gtid = info.map(|i| i.gtid);
                let next = if header.type_code == t::MARIADB_GTID && !standalone {
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
            t::QUERY => {
                let kind = match query_text(event, alg, fde) {
                    Ok(text) => classify_query(text),
                    Err(e) => {
                        self.state = state;
                        return Err(e.at(offset));
                    }
                };
                match (state, kind) {
                    (TxnState::Idle, QueryKind::Begin) => (
                        TxnState::Block {
                            start: offset,
                            gtid: None,
                        },
                        None,
                    ),
                    (TxnState::Idle, QueryKind::End) => (TxnState::Idle, None),
                    (TxnState::Idle, QueryKind::Other) => (TxnState::Idle, done(offset, None)),
                    (TxnState::Pending { start }, QueryKind::Begin) => {
                        (TxnState::Block { start, gtid: None }, None)
                    }
                    (TxnState::Pending { start }, _) => (TxnState::Idle, done(start, None)),
                    (TxnState::AfterGtid { start, gtid }, QueryKind::Begin) => {
                        (TxnState::Block { start, gtid }, None)
                    }
                    (TxnState::AfterGtid { start, gtid }, _) => (TxnState::Idle, done(start, gtid)),
                    (TxnState::Block { start, gtid }, QueryKind::End) => {
                        (TxnState::Idle, done(start, gtid))
                    }
                    (s @ TxnState::Block { .. }, _) => (s, None),
                }
            }
            t::XID | t::XA_PREPARE => match state {
                TxnState::Idle => (TxnState::Idle, None),
                TxnState::Pending { start } => (TxnState::Idle, done(start, None)),
                TxnState::AfterGtid { start, gtid } | TxnState::Block { start, gtid } => {
                    (TxnState::Idle, done(start, gtid))
                }
            },
            // Statements whose text we do not read: they end a transaction that waits for
            // its statement, and are one on their own outside any.
            t::TRANSACTION_PAYLOAD
            | t::MARIADB_QUERY_COMPRESSED
            | t::EXECUTE_LOAD_QUERY
            | t::LOAD
            | t::NEW_LOAD
            | t::EXEC_LOAD => match state {
                TxnState::Idle => (TxnState::Idle, done(offset, None)),
                TxnState::Pending { start } => (TxnState::Idle, done(start, None)),
                TxnState::AfterGtid { start, gtid } => (TxnState::Idle, done(start, gtid)),
                s @ TxnState::Block { .. } => (s, None),
            },
            // Events that belong to the statement or rows after them.
            t::INTVAR
            | t::RAND
            | t::USER_VAR
            | t::BEGIN_LOAD_QUERY
            | t::APPEND_BLOCK
            | t::CREATE_FILE
            | t::DELETE_FILE
            | t::TABLE_MAP
            | t::ROWS_QUERY
            | t::MARIADB_ANNOTATE_ROWS
            | t::PRE_GA_WRITE_ROWS..=t::DELETE_ROWS_V1
            | t::WRITE_ROWS..=t::DELETE_ROWS
            | t::PARTIAL_UPDATE_ROWS
            | t::MARIADB_WRITE_ROWS_COMPRESSED_V1..=t::MARIADB_DELETE_ROWS_COMPRESSED => {
                match state {
                    TxnState::Idle => (TxnState::Pending { start: offset }, None),
                    s => (s, None),
                }
            }
            _ => (state, None),
        };
        self.state = next;
        Ok(record)
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
