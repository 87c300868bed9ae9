//! Property tests (proptest) of the event reader and the file check: whatever the bytes,
//! the reader never panics and reports events that tile the input; a file built from
//! random valid events checks SUCC and the same file with any one byte changed does not;
//! every single-bit flip in a CRC32 file's FORMAT_DESCRIPTION is found (exhaustively).

use proptest::prelude::*;

use crate::check::{check_reader, CheckOptions};
use crate::tests::{build_event, fde_event};
use crate::*;

/// Row events with random bodies (the check frames and CRC-checks them without
/// decoding): TABLE_MAP, WRITE/UPDATE/DELETE_ROWS v2.
fn event_spec() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (
        prop_oneof![Just(19u8), Just(30u8), Just(31u8), Just(32u8)],
        proptest::collection::vec(any::<u8>(), 0..300),
    )
}

/// A CRC32 MariaDB file: magic, FDE, `events`, ROTATE to the next file.
fn file_of(events: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut f = BINLOG_MAGIC.to_vec();
    f.extend_from_slice(&fde_event("10.11.6-MariaDB-log", 1));
    for (t, body) in events {
        let ev = build_event(*t, 1, f.len() as u64, body, ChecksumAlg::Crc32);
        f.extend_from_slice(&ev);
    }
    let mut rot = 4u64.to_le_bytes().to_vec();
    rot.extend_from_slice(b"mysql-bin.000002");
    let ev = build_event(
        event_type::ROTATE,
        1,
        f.len() as u64,
        &rot,
        ChecksumAlg::Crc32,
    );
    f.extend_from_slice(&ev);
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes after the magic: no panic; events start where the previous one
    /// ended, are at least a header long, and never reach past the input.
    #[test]
    fn the_reader_tiles_any_input(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut data = BINLOG_MAGIC.to_vec();
        data.extend_from_slice(&tail);
        let mut r = EventReader::new_at_start(std::io::Cursor::new(&data)).unwrap();
        let mut expect = 4u64;
        while let Some(item) = r.next_event() {
            let Ok((off, h, ev)) = item else { break };
            prop_assert_eq!(off, expect);
            prop_assert!(ev.len() >= HEADER_LEN);
            prop_assert_eq!(ev.len() as u64, u64::from(h.event_size));
            expect = off + ev.len() as u64;
            prop_assert!(expect <= data.len() as u64);
        }
    }

    /// A file of random valid events checks clean; changing any one byte after the
    /// magic makes the check fail (a CRC, size or framing problem).
    #[test]
    fn one_changed_byte_is_always_found(
        events in proptest::collection::vec(event_spec(), 0..12),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let file = file_of(&events);
        let opts = CheckOptions { require_terminal: true, expected_size: None, expected_format: None };
        let clean = check_reader(std::io::Cursor::new(&file), &opts).unwrap();
        prop_assert!(clean.is_ok(), "{}", clean.info());
        prop_assert_eq!(clean.events, events.len() as u64 + 2);
        let mut bad = file.clone();
        let i = 4 + at.index(bad.len() - 4);
        bad[i] ^= xor;
        let r = check_reader(std::io::Cursor::new(&bad), &opts).unwrap();
        prop_assert!(!r.is_ok(), "byte {} ^ {:#x} went unnoticed", i, xor);
    }
}

/// The (byte offset, bit) of every single-bit flip inside the FDE of `file` (which starts
/// at offset 4 and is `fde_len` bytes long) that the check does not notice: the report
/// stays clean and its in-use flag unchanged (that flag is the one FDE bit outside the
/// CRC, by the servers' design: mysql-server `sql/log_event.cc`).
pub(crate) fn unnoticed_fde_flips(
    file: &[u8],
    fde_len: usize,
    opts: &CheckOptions,
) -> Vec<(usize, u8)> {
    let clean = check_reader(std::io::Cursor::new(file), opts).unwrap();
    assert!(clean.is_ok(), "{}", clean.info());
    let mut missed = Vec::new();
    for i in 4..4 + fde_len {
        for bit in 0..8u8 {
            let mut bad = file.to_vec();
            bad[i] ^= 1 << bit;
            let r = check_reader(std::io::Cursor::new(&bad), opts).unwrap();
            if r.is_ok() && r.in_use_flag == clean.in_use_flag {
                missed.push((i, bit));
            }
        }
    }
    missed
}

/// Every single-bit flip in the FORMAT_DESCRIPTION of CRC32 files of four server
/// versions (two of them near the versions where the checksum field began, so that a
/// flipped version digit reads as an older server's) is found, and the other checks
/// (size, framing, body decoding) do not mask it: a small file of CRC32 events whose
/// bodies the check does not decode, ended by STOP.
#[test]
fn every_bit_flip_in_a_crc32_format_description_is_found() {
    let opts = CheckOptions {
        require_terminal: true,
        expected_size: None,
        expected_format: None,
    };
    let events = vec![(19u8, vec![1u8; 40]), (30u8, vec![2u8; 60])];
    for version in [
        "10.11.6-MariaDB-log",
        "5.5.68-MariaDB",
        "8.0.35",
        "5.6.51-log",
    ] {
        let mut f = BINLOG_MAGIC.to_vec();
        let fde = fde_event(version, 1);
        f.extend_from_slice(&fde);
        for (t, body) in &events {
            let ev = build_event(*t, 1, f.len() as u64, body, ChecksumAlg::Crc32);
            f.extend_from_slice(&ev);
        }
        // STOP ends the file: its body is empty, so nothing after the FDE decodes a body
        // that a wrong "no checksums" would lengthen by 4 bytes.
        let ev = build_event(event_type::STOP, 1, f.len() as u64, &[], ChecksumAlg::Crc32);
        f.extend_from_slice(&ev);
        let missed = unnoticed_fde_flips(&f, fde.len(), &opts);
        assert!(
            missed.is_empty(),
            "{version}: flips (byte, bit) unnoticed: {missed:?}"
        );
    }
}
