//! Property tests (proptest) of the event reader and the file check: whatever the bytes,
//! the reader never panics and reports events that tile the input; a file built from
//! random valid events checks SUCC and the same file with any one byte changed does not.

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
        let opts = CheckOptions { require_terminal: true, expected_size: None };
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
