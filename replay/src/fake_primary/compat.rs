//! What a MariaDB primary sends to a client that does not know MariaDB's own events:
//! the `@mariadb_slave_capability` rewrites of MariaDB `sql/sql_repl.cc`
//! `send_event_to_slave` (MariaDB 10.11), applied to a MariaDB archive's events on their
//! way out of the fake primary.
//!
//! A client that never sets `@mariadb_slave_capability` (mysql_async, MySQL replicas,
//! most CDC libraries written for MySQL) has capability 0. For it a MariaDB primary
//! replaces, in place and with the same size (so that every log_pos stays right):
//!
//! | event | capability 0 | 1 | 2, 3 | 4 (GTID-aware) |
//! |---|---|---|---|---|
//! | ANNOTATE_ROWS, not asked for (dump flag 0x02 unset) | dummy | as is | left out | left out |
//! | GTID of a transaction | QUERY "BEGIN" | "BEGIN" | "BEGIN" | as is |
//! | GTID of a standalone statement (DDL) | dummy | dummy | left out | as is |
//! | BINLOG_CHECKPOINT | dummy | dummy | left out (2), as is (3) | as is |
//! | GTID_LIST | dummy | dummy | left out | as is |
//!
//! A dummy is a QUERY event holding the comment "# Dummy event replacing event type N
//! that slave cannot handle." cut or space-padded to the event's size, or, for events
//! shorter than 34 bytes (without CRC), a USER_VAR event setting a NULL `@`!dummyvar``
//! (its name cut to fit). Both clear LOG_EVENT_THREAD_SPECIFIC_F, set
//! LOG_EVENT_SUPPRESS_USE_F and get a new CRC32 when the binlog has them. Source: MariaDB
//! `sql/log_event_server.cc` `Query_log_event::dummy_event`, `Query_log_event::begin_event`,
//! `Gtid_log_event::make_compatible_event`; capability values from `sql/log_event.h`.
//!
//! Nothing here is stored: the archive keeps the primary's bytes.

use std::borrow::Cow;

use binlog::{crc32, event_type, ChecksumAlg, CHECKSUM_LEN, HEADER_LEN};

/// `MARIA_SLAVE_CAPABILITY_ANNOTATE`: understands ANNOTATE_ROWS.
const CAP_ANNOTATE: u8 = 1;
/// `MARIA_SLAVE_CAPABILITY_TOLERATE_HOLES`: events may be left out of the stream.
const CAP_TOLERATE_HOLES: u8 = 2;
/// `MARIA_SLAVE_CAPABILITY_BINLOG_CHECKPOINT`: understands BINLOG_CHECKPOINT.
const CAP_BINLOG_CHECKPOINT: u8 = 3;
/// `MARIA_SLAVE_CAPABILITY_GTID`: understands GTID and GTID_LIST (MariaDB 10.0+).
pub(super) const CAP_GTID: u8 = 4;

/// `LOG_EVENT_THREAD_SPECIFIC_F` (header flags).
const THREAD_SPECIFIC_F: u16 = 0x04;
/// `LOG_EVENT_SUPPRESS_USE_F` (header flags).
const SUPPRESS_USE_F: u16 = 0x08;
/// QUERY_EVENT post-header: thread_id u32, exec_time u32, db_len u8, error_code u16,
/// status_vars_len u16 (`QUERY_HEADER_LEN`).
const QUERY_HEADER_LEN: usize = 13;
/// MariaDB GTID post-header (`GTID_HEADER_LEN`): seq_no u64, domain_id u32, flags2 u8,
/// 6 bytes unused or, with FL_GROUP_COMMIT_ID, a commit_id u64 (2 bytes longer).
const GTID_HEADER_LEN: usize = 19;
/// `Q_TIME_ZONE_CODE`: the status variable that pads a BEGIN made from a 40-byte GTID.
const Q_TIME_ZONE_CODE: u8 = 5;
/// Smallest event (without CRC) a dummy fits in: a USER_VAR with a 1-byte name.
const MIN_USER_VAR_EVENT_LEN: usize = HEADER_LEN + 4 + 1 + 1;
/// Smallest event (without CRC) a dummy QUERY fits in.
const MIN_QUERY_EVENT_LEN: usize = HEADER_LEN + QUERY_HEADER_LEN + 1 + 1;

/// How MariaDB-only events go to one client.
#[derive(Debug, Clone, Copy)]
pub(super) struct Compat {
    /// The client's `@mariadb_slave_capability` (0 when it did not set it); `None` for a
    /// MySQL archive, whose events go out as they are (a MySQL primary has no such
    /// variable).
    pub capability: Option<u8>,
    /// The dump asked for ANNOTATE_ROWS (COM_BINLOG_DUMP flag
    /// `BINLOG_SEND_ANNOTATE_ROWS_EVENT`).
    pub annotate_rows: bool,
}

impl Compat {
    /// The client's capability from its session variables: `@mariadb_slave_capability`
    /// read as an integer (MariaDB `get_user_var_int`: unset or not a number is 0,
    /// values above 4 are 4's behaviour); `None` when the archive is not MariaDB's.
    pub fn capability_of(value: Option<&str>, mariadb_archive: bool) -> Option<u8> {
        if !mariadb_archive {
            return None;
        }
        let n: i64 = value.and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        Some(n.clamp(0, i64::from(CAP_GTID)) as u8)
    }

    /// What goes out for the stored event `ev` (whole, with its CRC when `alg` is CRC32):
    /// `Ok(None)` when it is left out, the event itself, or its rewrite.
    ///
    /// # Errors
    ///
    /// [`CompatError`], the message for ERROR 1236, when the event cannot be rewritten (too short for a
    /// dummy, or a GTID event of a size `begin_event` does not know), as MariaDB ends the
    /// dump then.
    pub fn apply<'a>(
        &self,
        ev: &'a [u8],
        alg: ChecksumAlg,
    ) -> Result<Option<Cow<'a, [u8]>>, CompatError> {
        let t = ev.get(4).copied().unwrap_or(0);
        let Some(cap) = self.capability else {
            return Ok(Some(Cow::Borrowed(ev)));
        };
        match t {
            event_type::MARIADB_ANNOTATE_ROWS if !self.annotate_rows => {
                if cap >= CAP_TOLERATE_HOLES {
                    Ok(None)
                } else if cap >= CAP_ANNOTATE {
                    Ok(Some(Cow::Borrowed(ev)))
                } else {
                    dummy_event(ev, alg)
                        .map(|e| Some(Cow::Owned(e)))
                        .ok_or(CompatError::AnnotateTooSmall)
                }
            }
            event_type::MARIADB_GTID if cap < CAP_GTID => {
                let bad = CompatError::GtidCorrupt;
                let flags2 = *ev.get(HEADER_LEN + 12).ok_or(bad)?;
                if flags2 & binlog::mariadb_gtid_flags::FL_STANDALONE != 0 {
                    if cap >= CAP_TOLERATE_HOLES {
                        return Ok(None);
                    }
                    return dummy_event(ev, alg).map(|e| Some(Cow::Owned(e))).ok_or(bad);
                }
                begin_event(ev, alg).map(|e| Some(Cow::Owned(e))).ok_or(bad)
            }
            event_type::MARIADB_BINLOG_CHECKPOINT if cap < CAP_BINLOG_CHECKPOINT => {
                self.hole_or_dummy(ev, alg, cap)
            }
            event_type::MARIADB_GTID_LIST if cap < CAP_GTID => self.hole_or_dummy(ev, alg, cap),
            _ => Ok(Some(Cow::Borrowed(ev))),
        }
    }

    /// An event the client does not understand: left out when it tolerates holes, a
    /// dummy otherwise.
    fn hole_or_dummy<'a>(
        &self,
        ev: &'a [u8],
        alg: ChecksumAlg,
        cap: u8,
    ) -> Result<Option<Cow<'a, [u8]>>, CompatError> {
        if cap >= CAP_TOLERATE_HOLES {
            return Ok(None);
        }
        dummy_event(ev, alg)
            .map(|e| Some(Cow::Owned(e)))
            .ok_or(CompatError::CheckpointTooSmall)
    }
}

/// An event that cannot be rewritten for the replica's capability, as MariaDB ends the
/// dump then; the texts are MariaDB's own (`sql/sql_repl.cc`, typo included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompatError {
    /// An ANNOTATE_ROWS event too short to become a dummy.
    #[error("Failed to replace row annotate event with dummy: too small event.")]
    AnnotateTooSmall,
    /// A GTID event of a size `begin_event` does not know, or too short.
    #[error("Failed to replace GTID event with backwards-compatible event: currupt event.")]
    GtidCorrupt,
    /// A BINLOG_CHECKPOINT or GTID_LIST event too short to become a dummy.
    #[error("Failed to replace binlog checkpoint or gtid list event with dummy: too small event.")]
    CheckpointTooSmall,
}

/// The event's length without its CRC, and whether it has one.
fn data_len(ev: &[u8], alg: ChecksumAlg) -> Option<usize> {
    match alg {
        ChecksumAlg::Crc32 => ev.len().checked_sub(CHECKSUM_LEN),
        ChecksumAlg::Off => Some(ev.len()),
    }
}

/// The header with THREAD_SPECIFIC cleared and SUPPRESS_USE set, type `t`; the body is
/// written by the caller; `None` when `ev` is shorter than `min` (without CRC).
fn rewritten(ev: &[u8], alg: ChecksumAlg, t: u8, min: usize) -> Option<(Vec<u8>, usize)> {
    let len = data_len(ev, alg)?;
    if len < min || len < HEADER_LEN {
        return None;
    }
    let mut out = ev.to_vec();
    out[4] = t;
    let flags = u16::from_le_bytes([out[17], out[18]]);
    let flags = (flags & !THREAD_SPECIFIC_F) | SUPPRESS_USE_F;
    out[17..19].copy_from_slice(&flags.to_le_bytes());
    Some((out, len))
}

/// Writes the CRC32 of `out[..len]` after it when the binlog has CRCs.
fn seal(mut out: Vec<u8>, len: usize, alg: ChecksumAlg) -> Vec<u8> {
    if alg == ChecksumAlg::Crc32 {
        let crc = crc32(&out[..len]);
        out[len..len + CHECKSUM_LEN].copy_from_slice(&crc.to_le_bytes());
    }
    out
}

/// MariaDB's dummy of `ev`, the same size: a comment-only QUERY, or a NULL USER_VAR when
/// the event is too short for one; `None` when it is too short for either (under 25
/// bytes without CRC).
fn dummy_event(ev: &[u8], alg: ChecksumAlg) -> Option<Vec<u8>> {
    let len = data_len(ev, alg)?;
    if len < MIN_QUERY_EVENT_LEN {
        let (mut out, len) = rewritten(ev, alg, event_type::USER_VAR, MIN_USER_VAR_EVENT_LEN)?;
        const NAME: &[u8] = b"!dummyvar";
        let name_len = len - (MIN_USER_VAR_EVENT_LEN - 1);
        let b = &mut out[HEADER_LEN..len];
        b[..4].copy_from_slice(&(name_len as u32).to_le_bytes());
        b[4..4 + name_len].copy_from_slice(&NAME[..name_len]);
        b[4 + name_len] = 1; // the value is NULL
        return Some(seal(out, len, alg));
    }
    let old_type = ev[4];
    let (mut out, len) = rewritten(ev, alg, event_type::QUERY, MIN_QUERY_EVENT_LEN)?;
    let b = &mut out[HEADER_LEN..len];
    b[..QUERY_HEADER_LEN + 1].fill(0); // ids, lengths, codes 0; empty db's terminator
    let msg = format!("# Dummy event replacing event type {old_type} that slave cannot handle.");
    let comment = &mut b[QUERY_HEADER_LEN + 1..];
    let n = msg.len().min(comment.len());
    comment[..n].copy_from_slice(&msg.as_bytes()[..n]);
    comment[n..].fill(b' ');
    Some(seal(out, len, alg))
}

/// MariaDB's BEGIN made from a transaction's GTID event (38 or 40 bytes without CRC);
/// `None` for any other size.
fn begin_event(ev: &[u8], alg: ChecksumAlg) -> Option<Vec<u8>> {
    let len = data_len(ev, alg)?;
    if len != HEADER_LEN + GTID_HEADER_LEN && len != HEADER_LEN + GTID_HEADER_LEN + 2 {
        return None;
    }
    let (mut out, len) = rewritten(ev, alg, event_type::QUERY, 0)?;
    let b = &mut out[HEADER_LEN..len];
    b.fill(0);
    let q = if len == HEADER_LEN + GTID_HEADER_LEN {
        QUERY_HEADER_LEN + 1
    } else {
        // An empty time_zone status variable takes up the 2 extra bytes.
        b[11] = 2;
        b[QUERY_HEADER_LEN] = Q_TIME_ZONE_CODE;
        QUERY_HEADER_LEN + 3
    };
    b[q..q + 5].copy_from_slice(b"BEGIN");
    Some(seal(out, len, alg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    // Events of a MariaDB 10.11.6 binlog and what that server sent for them to a client
    // with @master_binlog_checksum='ALL' (mysql_async's) and the capability named, read
    // off the wire with COM_BINLOG_DUMP.
    const GTID_LIST: &str = "b8ae0e6ba3010000001d0000001d010000000000000000000014e54779";
    const GTID_LIST_CAP0: &str = "b8ae0e6b0e010000001d0000001d0100000800010000002101593ecc97";
    const CHECKPOINT: &str =
        "b8ae0e6ba1010000002b000000480100000000100000006d7973716c2d62696e2e303030303031c161d092";
    const CHECKPOINT_CAP0: &str =
        "b8ae0e6b02010000002b0000004801000008000000000000000000000000000000232044756d6d40127d79";
    const GTID_DDL: &str =
        "bcae0e6ba2010000002a00000072010000080001000000000000000000000029000000000000dd27c2c2";
    const GTID_DDL_CAP0: &str =
        "bcae0e6b02010000002a0000007201000008000000000000000000000000000000232044756d756c23c2";
    const GTID_TXN: &str =
        "bcae0e6ba2010000002a000000bd03000008000500000000000000000000000c0000000000005e35489b";
    const GTID_TXN_BEGIN: &str =
        "bcae0e6b02010000002a000000bd03000008000000000000000000000000000000424547494e378a3c94";
    const ANNOTATE: &str = "bcae0e6ba0010000003d000000fa0300000000494e5345525420494e544f20632e742056414c5545532028312c276127292c28322c27622729c1700f96";
    const ANNOTATE_CAP0: &str = "bcae0e6b02010000003d000000fa03000008000000000000000000000000000000232044756d6d79206576656e74207265706c6163696e67204588408d";

    fn sent(cap: u8, ev: &str) -> Option<Vec<u8>> {
        let c = Compat {
            capability: Some(cap),
            annotate_rows: false,
        };
        c.apply(&h(ev), ChecksumAlg::Crc32)
            .unwrap()
            .map(Cow::into_owned)
    }

    #[test]
    fn capability_0_gets_the_servers_dummies_and_begins_byte_for_byte() {
        assert_eq!(
            sent(0, GTID_LIST),
            Some(h(GTID_LIST_CAP0)),
            "USER_VAR dummy"
        );
        assert_eq!(sent(0, CHECKPOINT), Some(h(CHECKPOINT_CAP0)), "QUERY dummy");
        assert_eq!(sent(0, GTID_DDL), Some(h(GTID_DDL_CAP0)), "standalone GTID");
        assert_eq!(sent(0, GTID_TXN), Some(h(GTID_TXN_BEGIN)), "BEGIN");
        assert_eq!(sent(0, ANNOTATE), Some(h(ANNOTATE_CAP0)), "ANNOTATE_ROWS");
    }

    #[test]
    fn higher_capabilities_get_holes_or_the_events_as_the_server_sent_them() {
        // 1: ANNOTATE_ROWS as is, the rest as for 0.
        assert_eq!(sent(1, ANNOTATE), Some(h(ANNOTATE)));
        assert_eq!(sent(1, GTID_LIST), Some(h(GTID_LIST_CAP0)));
        assert_eq!(sent(1, GTID_DDL), Some(h(GTID_DDL_CAP0)));
        // 2: holes; a transaction's GTID still becomes BEGIN.
        for ev in [GTID_LIST, CHECKPOINT, GTID_DDL, ANNOTATE] {
            assert_eq!(sent(2, ev), None, "{ev}");
        }
        assert_eq!(sent(2, GTID_TXN), Some(h(GTID_TXN_BEGIN)));
        // 3: BINLOG_CHECKPOINT understood.
        assert_eq!(sent(3, CHECKPOINT), Some(h(CHECKPOINT)));
        assert_eq!(sent(3, GTID_LIST), None);
        // 4: everything as stored but the ANNOTATE_ROWS nobody asked for.
        for ev in [GTID_LIST, CHECKPOINT, GTID_DDL, GTID_TXN] {
            assert_eq!(sent(4, ev), Some(h(ev)), "{ev}");
        }
        assert_eq!(sent(4, ANNOTATE), None);
        // Asked for with the dump flag: sent as is.
        let c = Compat {
            capability: Some(4),
            annotate_rows: true,
        };
        assert_eq!(
            c.apply(&h(ANNOTATE), ChecksumAlg::Crc32)
                .unwrap()
                .as_deref(),
            Some(&h(ANNOTATE)[..])
        );
    }

    #[test]
    fn a_mysql_archive_is_sent_as_stored_and_capability_reads_like_mariadbs() {
        let c = Compat {
            capability: None,
            annotate_rows: false,
        };
        assert_eq!(
            c.apply(&h(GTID_LIST), ChecksumAlg::Crc32)
                .unwrap()
                .as_deref(),
            Some(&h(GTID_LIST)[..])
        );
        assert_eq!(Compat::capability_of(None, true), Some(0));
        assert_eq!(Compat::capability_of(Some("4"), true), Some(4));
        assert_eq!(Compat::capability_of(Some("9"), true), Some(4));
        assert_eq!(Compat::capability_of(Some("x"), true), Some(0));
        assert_eq!(Compat::capability_of(Some("4"), false), None);
    }

    #[test]
    fn events_too_short_or_of_unknown_size_are_errors_not_panics() {
        let c = Compat {
            capability: Some(0),
            annotate_rows: false,
        };
        // A 24-byte GTID_LIST (without CRC): no dummy fits.
        let mut short = h(GTID_LIST);
        short.truncate(24);
        assert!(c.apply(&short, ChecksumAlg::Off).is_err());
        // A GTID event with XA data (longer than 40 bytes): MariaDB refuses it too.
        let mut long = h(GTID_TXN);
        long.splice(38..38, [0u8; 8]);
        assert!(c.apply(&long, ChecksumAlg::Crc32).is_err());
        // Garbage of every length up to 60 bytes never panics.
        for n in 0..60 {
            let ev = vec![0xa2; n];
            let _ = c.apply(&ev, ChecksumAlg::Crc32);
            let _ = c.apply(&ev, ChecksumAlg::Off);
        }
    }
}
