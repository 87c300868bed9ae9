//! `binlog`: the MySQL/MariaDB binary log format, as the log server reads it: event
//! framing and CRC32, the few event bodies it must understand, transaction grouping, the
//! file reader and the SUCC/FAIL file check. No I/O beyond `std::io::Read` and files.
//!
//! # Format
//!
//! A binlog file (MySQL >= 5.0 and MariaDB, binlog format version 4) is the 4-byte magic
//! `fe 62 69 6e` ("\xfebin") followed by events, back to back. Every event starts with
//! the 19-byte common header (all integers little-endian), as described in mysql-server
//! `libbinlogevents/include/binlog_event.h` (`Log_event_header`) and the MariaDB KB page
//! "Log Event Header":
//!
//! | offset | size | field                                                          |
//! |-------:|-----:|----------------------------------------------------------------|
//! | 0      | 4    | timestamp, unix seconds                                        |
//! | 4      | 1    | type code (see [`event_type`])                                 |
//! | 5      | 4    | server_id of the server that originated the event              |
//! | 9      | 4    | event_size, bytes, header and checksum included               |
//! | 13     | 4    | log_pos: end offset of the event in its file (0 = not set)     |
//! | 17     | 2    | flags (`LOG_EVENT_*_F`)                                        |
//!
//! After the header comes a type-specific post-header (its length per type is announced
//! by the FORMAT_DESCRIPTION event that opens each file), then the body. When the
//! FORMAT_DESCRIPTION announces CRC32 checksums (MySQL >= 5.6.1, MariaDB >= 5.3), the last
//! 4 bytes of every event are the CRC32 (ISO-HDLC, as zlib) of all its preceding bytes.
//!
//! Everything here reads untrusted bytes (from the network and from disk): every length
//! is checked before use, no function panics on any input, allocation is bounded by
//! [`MAX_EVENT_SIZE`], and errors are [`EventError`] values carrying offsets where known.
//!
//! Besides framing ([`EventHeader`], [`EventReader`], [`verify_checksum`], [`body`]) this
//! crate decodes FORMAT_DESCRIPTION ([`FormatDescription`]), ROTATE ([`parse_rotate`]),
//! the GTID events of both dialects ([`parse_gtid`]) and the SQL text of QUERY events
//! ([`query_text`]), and groups events into transactions ([`TxnTracker`]).

//!
//! # Module map
//!
//! | module | its one job |
//! |---|---|
//! | `format` | the constants: file magic, header and checksum lengths, flags, type codes ([`event_type`]) |
//! | `header` | the 19-byte common header ([`EventHeader`]), [`ChecksumAlg`], the CRC32 trailer |
//! | `error` | [`EventError`] and the bounds-checked field readers |
//! | `fde` | FORMAT_DESCRIPTION ([`FormatDescription`]) and server-version helpers |
//! | `rotate` | ROTATE ([`parse_rotate`]) and binlog file-name rules |
//! | `names` | binlog file-name order: [`binlog_seq`], [`binlog_order`] |
//! | `gtid` | [`Gtid`] of both dialects and the GTID events ([`parse_gtid`]) |
//! | `query` | the SQL text of QUERY events ([`query_text`]) |
//! | `txn` | transaction grouping ([`TxnTracker`], [`TxnRecord`]) |
//! | `reader` | [`EventReader`]: events of a byte stream with their offsets |
//! | [`check`] | the SUCC/FAIL check of a whole stored file ([`check::check_file`]) |

mod error;
mod fde;
mod format;
mod gtid;
mod header;
mod names;
mod query;
mod reader;
mod rotate;
mod txn;

pub mod check;

pub use error::EventError;
pub use fde::*;
pub use format::*;
pub use gtid::*;
pub use header::*;
pub use names::*;
pub use query::*;
pub use reader::*;
pub use rotate::*;
pub use txn::*;

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod tests;
