//! One source's capture: the fake replica that streams a primary's binlogs into the
//! archive.
//!
//! ```text
//!  primary --COM_BINLOG_DUMP--> stream (frame, CRC32, classify) --batches--> writer lane
//!     ^                                                                     (append, close)
//!     | SHOW BINARY LOGS                                                         |
//!   poll --PrimaryView--> check (REPORTED -> SUCC|FAIL, recheck) --FAIL--> repull   v
//!                                                          syncer lane (fdatasync, control, index)
//! ```
//!
//! | module | its one job |
//! |---|---|
//! | [`context`] | what a source's tasks share ([`context::Shared`], [`node::status::PrimaryView`], [`context::Upstream`]) and the API's handles |
//! | [`supervise`] | starts a source's tasks, recovers its store, runs the reconnect loop |
//! | [`session`] | the replica session with the primary: connect, dialect, dump start, SHOW BINARY LOGS |
//! | [`semisync`] | the acks a semi-sync stream owes, each sent after its fdatasync |
//! | [`stream`] | one connection's worth of streaming into the writer |
//! | [`classify`] | which arriving events are stored, skipped, or switch files; contiguity |
//! | [`error`] | why a streaming attempt ended (`StreamEnd`) |
//! | [`failover`] | failover follow: the current server, timelines, switching by GTID |
//! | [`writer`] | the writer and syncer: append, fdatasync, control file, index |
//! | [`pool`] | the fixed thread pools every source's writer and syncer run on, as lanes |
//! | [`poll`] | the primary's binlog list and the lag |
//! | [`check`] | the file checker: REPORTED -> SUCC/FAIL, recheck of SUCC files |
//! | [`repull`] | fetching a FAIL file again |
//! | [`gaps`] | after ERROR 1236: purge on the primary (gap) or refused position |
//! | [`lowprio`] | CPU-heavy file work on a nice-10 thread |

//! Names: a source's validated settings are `source` ([`node::config::Source`]), its
//! name `source.name` (or `name` where only the name travels), its live state `status`
//! ([`node::status::StatusCell`]), and all three with the process-wide services travel
//! together as `ctx` ([`context::SourceCtx`]).

pub mod check;
pub mod classify;
pub mod context;
pub mod error;
pub mod failover;
pub mod gaps;
pub mod lowprio;
pub mod poll;
pub mod pool;
pub mod repull;
pub mod semisync;
pub mod session;
pub mod stream;
pub mod supervise;
pub mod writer;
