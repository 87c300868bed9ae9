//! Unit tests of the decoders and shared event builders (used by [`crate::check`]'s tests).

use crate::gtid::LOGICAL_TIMESTAMP_TYPECODE;
use crate::query::classify_query;
use crate::query::QueryKind;

use crate::*;

/// Builds an event with correct event_size, log_pos (= offset + size) and, for Crc32,
/// a correct checksum.
pub(crate) fn build_event(
    type_code: u8,
    server_id: u32,
    offset: u64,
    body: &[u8],
    alg: ChecksumAlg,
) -> Vec<u8> {
    let size = (HEADER_LEN + body.len() + alg.trailer_len()) as u32;
    let h = EventHeader {
        timestamp: 1_700_000_000,
        type_code,
        server_id,
        event_size: size,
        log_pos: (offset + u64::from(size)) as u32,
        flags: 0,
    };
    let mut ev = h.to_bytes().to_vec();
    ev.extend_from_slice(body);
    if alg == ChecksumAlg::Crc32 {
        let crc = crc32(&ev);
        ev.extend_from_slice(&crc.to_le_bytes());
    }
    ev
}

/// Rewrites the CRC32 of an event after editing it.
pub(crate) fn fix_crc(ev: &mut [u8]) {
    let n = ev.len() - 4;
    let crc = crc32(&ev[..n]);
    ev[n..].copy_from_slice(&crc.to_le_bytes());
}

pub(crate) fn fde_body(version: &str, alg: Option<u8>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&4u16.to_le_bytes());
    let mut v = [0u8; 50];
    v[..version.len()].copy_from_slice(version.as_bytes());
    b.extend_from_slice(&v);
    b.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    b.push(19);
    // MySQL 5.7-like post-header lengths for types 1..=38.
    let mut lens = vec![0u8; 38];
    lens[0] = 56;
    lens[1] = 13; // QUERY
    lens[3] = 8; // ROTATE
    lens[14] = 84; // FDE
    lens[32] = 42; // GTID
    lens[33] = 42;
    b.extend_from_slice(&lens);
    if let Some(a) = alg {
        b.push(a);
    }
    b
}

/// A whole FDE event at offset 4 for `version`; CRC32 appended when the version is
/// checksum-aware (alg byte `alg`).
pub(crate) fn fde_event(version: &str, alg: u8) -> Vec<u8> {
    if version_has_checksum_field(version) {
        build_event(
            event_type::FORMAT_DESCRIPTION,
            1,
            4,
            &fde_body(version, Some(alg)),
            ChecksumAlg::Crc32,
        )
    } else {
        build_event(
            event_type::FORMAT_DESCRIPTION,
            1,
            4,
            &fde_body(version, None),
            ChecksumAlg::Off,
        )
    }
}

pub(crate) fn query_body(db: &str, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&7u32.to_le_bytes()); // thread id
    b.extend_from_slice(&0u32.to_le_bytes()); // exec time
    b.push(db.len() as u8);
    b.extend_from_slice(&0u16.to_le_bytes()); // error code
    let status = [0u8, 0, 0, 0, 0]; // Q_FLAGS2_CODE + 4 bytes
    b.extend_from_slice(&(status.len() as u16).to_le_bytes());
    b.extend_from_slice(&status);
    b.extend_from_slice(db.as_bytes());
    b.push(0);
    b.extend_from_slice(text.as_bytes());
    b
}

pub(crate) fn mysql_gtid_body(uuid: [u8; 16], gno: u64, ts: Option<u64>) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend_from_slice(&uuid);
    b.extend_from_slice(&gno.to_le_bytes());
    b.push(LOGICAL_TIMESTAMP_TYPECODE);
    b.extend_from_slice(&5u64.to_le_bytes());
    b.extend_from_slice(&6u64.to_le_bytes());
    if let Some(ts) = ts {
        b.extend_from_slice(&ts.to_le_bytes()[..7]);
        b.push(0x0c); // transaction length (packed int)
        b.extend_from_slice(&80035u32.to_le_bytes());
    }
    b
}

pub(crate) fn mariadb_gtid_body(seq: u64, domain: u32, flags2: u8) -> Vec<u8> {
    let mut b = seq.to_le_bytes().to_vec();
    b.extend_from_slice(&domain.to_le_bytes());
    b.push(flags2);
    b.extend_from_slice(&[0u8; 6]);
    b
}

pub(crate) fn corpus_dir() -> std::path::PathBuf {
    match std::env::var_os("BINLOG_CORPUS_DIR") {
        Some(d) => d.into(),
        None => concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/binlogs"
        )
        .into(),
    }
}

pub(crate) fn corpus_file(rel: &str) -> Vec<u8> {
    let p = corpus_dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "binlog corpus file {} missing ({e}); set BINLOG_CORPUS_DIR",
            p.display()
        )
    })
}

#[test]
fn header_roundtrip_and_limits() {
    let h = EventHeader {
        timestamp: 1,
        type_code: 2,
        server_id: 3,
        event_size: 40,
        log_pos: 44,
        flags: 0x21,
    };
    assert_eq!(EventHeader::parse(&h.to_bytes()).unwrap(), h);
    assert!(h.is_artificial() && h.is_in_use());
    assert!(matches!(
        EventHeader::parse(&h.to_bytes()[..18]),
        Err(EventError::TooShort {
            needed: 19,
            available: 18,
            ..
        })
    ));
    for size in [0u32, 18, MAX_EVENT_SIZE + 1, u32::MAX] {
        let b = EventHeader {
            event_size: size,
            ..h
        }
        .to_bytes();
        assert!(matches!(
            EventHeader::parse(&b),
            Err(EventError::BadEventSize { .. })
        ));
    }
    let b = EventHeader {
        event_size: MAX_EVENT_SIZE,
        ..h
    }
    .to_bytes();
    assert!(EventHeader::parse(&b).is_ok());
    assert_eq!(h.expected_log_pos(u64::from(u32::MAX)), 39);
}

#[test]
fn names() {
    assert_eq!(event_type::name(event_type::QUERY), "QUERY");
    assert_eq!(event_type::name(event_type::GTID_TAGGED), "GTID_TAGGED");
    assert_eq!(event_type::name(165), "MARIADB_QUERY_COMPRESSED");
    assert_eq!(event_type::name(100), "UNKNOWN");
    assert_eq!(event_type::name(0), "UNKNOWN");
}

#[test]
fn crc_detects_every_single_bit_flip() {
    let ev = build_event(2, 1, 4, &query_body("db", "BEGIN"), ChecksumAlg::Crc32);
    verify_checksum(&ev, ChecksumAlg::Crc32).unwrap();
    for byte in 0..ev.len() {
        for bit in 0..8 {
            let mut bad = ev.clone();
            bad[byte] ^= 1 << bit;
            let r = verify_checksum(&bad, ChecksumAlg::Crc32);
            assert!(r.is_err(), "flip at {byte}:{bit} not detected");
        }
    }
    // With checksums off only the framing is checked.
    let mut bad = ev.clone();
    bad[30] ^= 1;
    verify_checksum(&bad, ChecksumAlg::Off).unwrap();
    let err = verify_checksum(&bad, ChecksumAlg::Crc32).unwrap_err();
    assert!(
        err.to_string().starts_with("CRC32 mismatch in QUERY event"),
        "{err}"
    );
    assert!(matches!(
        verify_checksum(&ev[..ev.len() - 1], ChecksumAlg::Crc32),
        Err(EventError::SizeMismatch { .. })
    ));
}

#[test]
fn fde_in_use_flag_is_excluded_from_crc() {
    let mut ev = fde_event("8.0.35", 1);
    verify_checksum(&ev, ChecksumAlg::Crc32).unwrap();
    ev[17] |= LOG_EVENT_BINLOG_IN_USE_F as u8;
    verify_checksum(&ev, ChecksumAlg::Crc32).unwrap();
    // Any other flag bit is covered.
    ev[17] |= 0x02;
    assert!(verify_checksum(&ev, ChecksumAlg::Crc32).is_err());
    // ... and the in-use bit is covered for other event types.
    let mut q = build_event(2, 1, 4, &query_body("", "BEGIN"), ChecksumAlg::Crc32);
    q[17] |= 1;
    assert!(verify_checksum(&q, ChecksumAlg::Crc32).is_err());
}

#[test]
fn fde_parse_versions() {
    let f = FormatDescription::parse(&fde_event("5.7.30-log", 1)).unwrap();
    assert_eq!(f.checksum_alg, ChecksumAlg::Crc32);
    assert_eq!(f.server_version, "5.7.30-log");
    assert_eq!(f.post_header_len(event_type::QUERY), Some(13));
    assert_eq!(f.post_header_len(event_type::GTID), Some(42));
    assert_eq!(f.post_header_len(0), None);
    assert_eq!(f.post_header_len(200), None);
    assert!(!f.is_mariadb && f.has_checksum_field());

    let f = FormatDescription::parse(&fde_event("8.0.35", 0)).unwrap();
    assert_eq!(f.checksum_alg, ChecksumAlg::Off);

    let f = FormatDescription::parse(&fde_event("5.5.27-log", 0)).unwrap();
    assert_eq!(f.checksum_alg, ChecksumAlg::Off);
    assert_eq!(f.post_header_lens.len(), 38);
    assert!(!f.has_checksum_field());

    let f = FormatDescription::parse(&fde_event("10.11.6-MariaDB-log", 1)).unwrap();
    assert!(f.is_mariadb);
    assert_eq!(f.checksum_alg, ChecksumAlg::Crc32);
    // MariaDB 5.3 already had checksums, MySQL 5.6.0 did not.
    assert!(version_has_checksum_field("5.3.12-MariaDB"));
    assert!(!version_has_checksum_field("5.6.0-m4"));
    assert!(version_has_checksum_field("5.6.1-m5"));
    assert!(!version_has_checksum_field("garbage"));
    assert_eq!(server_version_split("5.7.25-28-57-log"), [5, 7, 25]);
    assert_eq!(server_version_split("8.0"), [8, 0, 0]);
    assert_eq!(server_version_split("300.1.1"), [0, 0, 0]);
    assert_eq!(server_version_split("99999999999999999999.1.1"), [0, 0, 0]);

    let err = FormatDescription::parse(&fde_event("8.0.35", 2)).unwrap_err();
    assert!(matches!(
        err,
        EventError::Invalid {
            what: "checksum algorithm",
            ..
        }
    ));

    let mut b = fde_body("8.0.35", Some(1));
    b[0] = 3;
    let ev = build_event(15, 1, 4, &b, ChecksumAlg::Crc32);
    assert!(matches!(
        FormatDescription::parse(&ev),
        Err(EventError::Unsupported(_))
    ));
    let q = build_event(2, 1, 4, &query_body("", "x"), ChecksumAlg::Off);
    assert!(FormatDescription::parse(&q).is_err());
    // Cut bodies never panic.
    let full = fde_body("8.0.35", Some(1));
    for n in 0..full.len() {
        let ev = build_event(15, 1, 4, &full[..n], ChecksumAlg::Crc32);
        let _ = FormatDescription::parse(&ev);
    }
}

#[test]
fn rotate_parse_and_name_checks() {
    let mut b = 4u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"mysql-bin.000002");
    let ev = build_event(4, 1, 100, &b, ChecksumAlg::Crc32);
    let r = parse_rotate(&ev, ChecksumAlg::Crc32).unwrap();
    assert_eq!(r.position, 4);
    assert_eq!(r.next_file, "mysql-bin.000002");
    for bad in [
        &b""[..],
        b"..",
        b".",
        b"../etc/passwd",
        b"a/b",
        b"a\0b",
        b"a\\b",
        b"a\nb",
        b"\xff\xfe",
    ] {
        let mut b = 4u64.to_le_bytes().to_vec();
        b.extend_from_slice(bad);
        let ev = build_event(4, 1, 100, &b, ChecksumAlg::Off);
        assert!(parse_rotate(&ev, ChecksumAlg::Off).is_err(), "{bad:?}");
    }
    let long = vec![b'a'; 513];
    let mut b = 4u64.to_le_bytes().to_vec();
    b.extend_from_slice(&long);
    let ev = build_event(4, 1, 100, &b, ChecksumAlg::Off);
    assert!(parse_rotate(&ev, ChecksumAlg::Off).is_err());
    let ev = build_event(4, 1, 100, &[1, 2, 3], ChecksumAlg::Off);
    assert!(matches!(
        parse_rotate(&ev, ChecksumAlg::Off),
        Err(EventError::TooShort { .. })
    ));
}

#[test]
fn gtid_text_forms() {
    let g: Gtid = "0-1-42".parse().unwrap();
    assert_eq!(
        g,
        Gtid::MariaDb {
            domain: 0,
            server_id: 1,
            seq: 42
        }
    );
    assert_eq!(g.to_string(), "0-1-42");
    let s = "3e11fa47-71ca-11e1-9e33-c80aa9429562:23";
    let g: Gtid = s.parse().unwrap();
    assert_eq!(g.to_string(), s);
    let g2: Gtid = "3E11FA47-71CA-11E1-9E33-C80AA9429562:23".parse().unwrap();
    assert_eq!(g, g2);
    for bad in [
        "",
        "0-1",
        "0-1-2-3",
        "a-1-2",
        "+1-1-2",
        "0--2",
        "4294967296-1-1",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:0",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:tag:5",
        "3e11fa4771ca11e19e33c80aa9429562:5",
        "3e11fa47-71ca-11e1-9e33-c80aa942956z:5",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:9223372036854775808",
    ] {
        assert!(bad.parse::<Gtid>().is_err(), "{bad:?}");
    }
}

#[test]
fn gtid_events() {
    let uuid = parse_uuid("3e11fa47-71ca-11e1-9e33-c80aa9429562").unwrap();
    let ev = build_event(
        33,
        1,
        4,
        &mysql_gtid_body(uuid, 23, Some(1_700_000_000_123_456)),
        ChecksumAlg::Crc32,
    );
    let h = EventHeader::parse(&ev).unwrap();
    let info = parse_gtid(&h, &ev, ChecksumAlg::Crc32).unwrap().unwrap();
    assert_eq!(info.gtid, Gtid::MySql { uuid, gno: 23 });
    assert_eq!(info.immediate_commit_ts_us, Some(1_700_000_000_123_456));
    assert!(!info.standalone);
    // Original timestamp flag set: the immediate value loses bit 55.
    let mut b = mysql_gtid_body(uuid, 23, Some(1_700_000_000_123_456 | (1 << 55)));
    b.truncate(49);
    b.extend_from_slice(&1_600_000_000_000_000u64.to_le_bytes()[..7]);
    let ev = build_event(33, 1, 4, &b, ChecksumAlg::Off);
    let h = EventHeader::parse(&ev).unwrap();
    let info = parse_gtid(&h, &ev, ChecksumAlg::Off).unwrap().unwrap();
    assert_eq!(info.immediate_commit_ts_us, Some(1_700_000_000_123_456));
    // 5.6 layout: no logical clock, no timestamps.
    let ev = build_event(
        33,
        1,
        4,
        &mysql_gtid_body(uuid, 5, None)[..25],
        ChecksumAlg::Off,
    );
    let h = EventHeader::parse(&ev).unwrap();
    let info = parse_gtid(&h, &ev, ChecksumAlg::Off).unwrap().unwrap();
    assert_eq!(info.immediate_commit_ts_us, None);
    // Anonymous and tagged: None.
    let ev = build_event(
        34,
        1,
        4,
        &mysql_gtid_body([0; 16], 0, None),
        ChecksumAlg::Off,
    );
    let h = EventHeader::parse(&ev).unwrap();
    assert_eq!(parse_gtid(&h, &ev, ChecksumAlg::Off).unwrap(), None);
    let ev = build_event(42, 1, 4, &[0u8; 40], ChecksumAlg::Off);
    let h = EventHeader::parse(&ev).unwrap();
    assert_eq!(parse_gtid(&h, &ev, ChecksumAlg::Off).unwrap(), None);
    // gno 0 is invalid for a real GTID.
    let ev = build_event(33, 1, 4, &mysql_gtid_body(uuid, 0, None), ChecksumAlg::Off);
    let h = EventHeader::parse(&ev).unwrap();
    assert!(parse_gtid(&h, &ev, ChecksumAlg::Off).is_err());
    // MariaDB.
    let ev = build_event(162, 7, 4, &mariadb_gtid_body(42, 3, 1), ChecksumAlg::Crc32);
    let h = EventHeader::parse(&ev).unwrap();
    let info = parse_gtid(&h, &ev, ChecksumAlg::Crc32).unwrap().unwrap();
    assert_eq!(info.gtid.to_string(), "3-7-42");
    assert!(info.standalone);
    // Cut bodies: errors, no panic.
    for n in 0..25 {
        let ev = build_event(
            33,
            1,
            4,
            &mysql_gtid_body(uuid, 5, None)[..n],
            ChecksumAlg::Off,
        );
        let h = EventHeader::parse(&ev).unwrap();
        assert!(parse_gtid(&h, &ev, ChecksumAlg::Off).is_err());
    }
    for n in 0..13 {
        let ev = build_event(
            162,
            1,
            4,
            &mariadb_gtid_body(1, 0, 0)[..n],
            ChecksumAlg::Off,
        );
        let h = EventHeader::parse(&ev).unwrap();
        assert!(parse_gtid(&h, &ev, ChecksumAlg::Off).is_err());
    }
    let ev = build_event(2, 1, 4, &query_body("", "x"), ChecksumAlg::Off);
    let h = EventHeader::parse(&ev).unwrap();
    assert!(parse_gtid(&h, &ev, ChecksumAlg::Off).is_err());
}

#[test]
fn query_text_and_corrupt_lengths() {
    let fde = FormatDescription::parse(&fde_event("5.7.30-log", 1)).unwrap();
    let ev = build_event(2, 1, 4, &query_body("test", "BEGIN"), ChecksumAlg::Crc32);
    assert_eq!(query_text(&ev, ChecksumAlg::Crc32, &fde).unwrap(), b"BEGIN");
    // Huge status_vars_len.
    let mut b = query_body("test", "BEGIN");
    b[11] = 0xff;
    b[12] = 0xff;
    let ev = build_event(2, 1, 4, &b, ChecksumAlg::Off);
    assert!(query_text(&ev, ChecksumAlg::Off, &fde).is_err());
    // db_len past the end.
    let mut b = query_body("test", "BEGIN");
    b[8] = 200;
    let ev = build_event(2, 1, 4, &b, ChecksumAlg::Off);
    assert!(query_text(&ev, ChecksumAlg::Off, &fde).is_err());
    // Every cut of the body.
    let full = query_body("test", "COMMIT");
    for n in 0..full.len() {
        let ev = build_event(2, 1, 4, &full[..n], ChecksumAlg::Off);
        let r = query_text(&ev, ChecksumAlg::Off, &fde);
        if n < 13 + 5 + 5 {
            assert!(r.is_err(), "{n}");
        }
    }
}

#[test]
fn classify() {
    assert_eq!(classify_query(b" begin "), QueryKind::Begin);
    assert_eq!(classify_query(b"XA START X'01',X'',1"), QueryKind::Begin);
    assert_eq!(classify_query(b"COMMIT"), QueryKind::End);
    assert_eq!(classify_query(b"rollback"), QueryKind::End);
    assert_eq!(classify_query(b"XA COMMIT X'01' ONE PHASE"), QueryKind::End);
    assert_eq!(classify_query(b"xa  rollback 'x'"), QueryKind::End);
    assert_eq!(classify_query(b"ROLLBACK TO sp1"), QueryKind::Other);
    assert_eq!(classify_query(b"XA END X'01'"), QueryKind::Other);
    assert_eq!(classify_query(b"XASTART"), QueryKind::Other);
    assert_eq!(classify_query(b"BEGIN_X"), QueryKind::Other);
    assert_eq!(classify_query(b"CREATE TABLE t (a int)"), QueryKind::Other);
    assert_eq!(classify_query(b""), QueryKind::Other);
}

/// Feeds (type, body) pairs through a tracker with contiguous offsets from 4.
fn track(fde_version: &str, events: &[(u8, Vec<u8>)]) -> (Vec<TxnRecord>, Vec<u64>) {
    let fde_ev = fde_event(fde_version, 1);
    let fde = FormatDescription::parse(&fde_ev).unwrap();
    let mut t = TxnTracker::new();
    let mut offset = 4 + fde_ev.len() as u64;
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for (ty, b) in events {
        let ev = build_event(*ty, 9, offset, b, fde.checksum_alg);
        let h = EventHeader::parse(&ev).unwrap();
        offsets.push(offset);
        if let Some(r) = t.observe(offset, &h, &ev, &fde).unwrap() {
            out.push(r);
        }
        offset += ev.len() as u64;
    }
    offsets.push(offset);
    (out, offsets)
}

#[test]
fn txn_mysql_gtid() {
    use event_type as t;
    let uuid = [7u8; 16];
    let evs = vec![
        (t::PREVIOUS_GTIDS, vec![0u8; 8]),
        (t::GTID, mysql_gtid_body(uuid, 1, Some(5))),
        (t::QUERY, query_body("d", "CREATE TABLE t (a int)")),
        (t::GTID, mysql_gtid_body(uuid, 2, Some(6))),
        (t::QUERY, query_body("d", "BEGIN")),
        (t::TABLE_MAP, vec![0u8; 10]),
        (t::WRITE_ROWS, vec![0u8; 10]),
        (t::XID, 9u64.to_le_bytes().to_vec()),
        (t::ANONYMOUS_GTID, mysql_gtid_body([0; 16], 0, Some(7))),
        (t::TRANSACTION_PAYLOAD, vec![0u8; 30]),
        (t::GTID, mysql_gtid_body(uuid, 3, None)),
        (t::QUERY, query_body("d", "XA START X'01',X'',1")),
        (t::QUERY, query_body("d", "XA END X'01',X'',1")),
        (t::XA_PREPARE, vec![0u8; 20]),
        (t::GTID, mysql_gtid_body(uuid, 4, None)),
        (t::QUERY, query_body("d", "XA COMMIT X'01',X'',1")),
        (t::GTID, mysql_gtid_body(uuid, 5, None)),
        (t::USER_VAR, vec![0u8; 10]),
        (t::QUERY, query_body("d", "CREATE TABLE u SELECT @a")),
        (t::ROTATE, vec![0u8; 12]),
    ];
    let (recs, off) = track("8.0.35", &evs);
    let g = |gno| Some(Gtid::MySql { uuid, gno });
    let want = vec![
        (g(1), off[1], off[3]),
        (g(2), off[3], off[8]),
        (None, off[8], off[10]),
        (g(3), off[10], off[14]),
        (g(4), off[14], off[16]),
        (g(5), off[16], off[19]),
    ];
    let got: Vec<_> = recs
        .iter()
        .map(|r| (r.gtid.clone(), r.start, r.end))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn txn_mariadb_and_old_servers() {
    use event_type as t;
    let evs = vec![
        (t::MARIADB_GTID_LIST, vec![0u8; 4]),
        (t::MARIADB_BINLOG_CHECKPOINT, vec![0u8; 8]),
        (t::MARIADB_GTID, mariadb_gtid_body(10, 0, 0)),
        (t::MARIADB_ANNOTATE_ROWS, b"insert".to_vec()),
        (t::TABLE_MAP, vec![0u8; 10]),
        (t::WRITE_ROWS_V1, vec![0u8; 10]),
        (t::XID, vec![0u8; 8]),
        (t::MARIADB_GTID, mariadb_gtid_body(11, 0, 1 | 32)),
        (t::QUERY, query_body("d", "CREATE TABLE t (a int)")),
        (t::MARIADB_GTID, mariadb_gtid_body(12, 0, 0)),
        (t::QUERY, query_body("d", "INSERT INTO myisam VALUES (1)")),
        (t::QUERY, query_body("d", "COMMIT")),
    ];
    let (recs, off) = track("10.11.6-MariaDB-log", &evs);
    let g = |seq| {
        Some(Gtid::MariaDb {
            domain: 0,
            server_id: 9,
            seq,
        })
    };
    let got: Vec<_> = recs
        .iter()
        .map(|r| (r.gtid.clone(), r.start, r.end))
        .collect();
    assert_eq!(
        got,
        vec![
            (g(10), off[2], off[7]),
            (g(11), off[7], off[9]),
            (g(12), off[9], off[12])
        ]
    );

    let evs = vec![
        (t::QUERY, query_body("d", "BEGIN")),
        (t::QUERY, query_body("d", "INSERT INTO t VALUES (1)")),
        (t::QUERY, query_body("d", "SAVEPOINT a")),
        (t::QUERY, query_body("d", "ROLLBACK TO a")),
        (t::XID, vec![0u8; 8]),
        (t::INTVAR, vec![0u8; 9]),
        (t::QUERY, query_body("d", "INSERT INTO m VALUES (NULL)")),
        (t::QUERY, query_body("d", "DROP TABLE x")),
        (t::XID, vec![0u8; 8]),
        (t::QUERY, query_body("d", "COMMIT")),
        (t::QUERY, query_body("d", "BEGIN")),
        (t::QUERY, query_body("d", "INSERT INTO m VALUES (NULL)")),
    ];
    let fde_ev = fde_event("5.0.91-log", 0);
    let fde = FormatDescription::parse(&fde_ev).unwrap();
    assert_eq!(fde.checksum_alg, ChecksumAlg::Off);
    let (recs, off) = track("5.0.91-log", &evs);
    let got: Vec<_> = recs
        .iter()
        .map(|r| (r.gtid.clone(), r.start, r.end))
        .collect();
    assert_eq!(
        got,
        vec![
            (None, off[0], off[5]),
            (None, off[5], off[7]),
            (None, off[7], off[8]),
        ]
    );
}

#[test]
fn txn_open_start_and_errors() {
    let fde_ev = fde_event("8.0.35", 1);
    let fde = FormatDescription::parse(&fde_ev).unwrap();
    let mut t = TxnTracker::new();
    assert_eq!(t.open_txn_start(), None);
    let ev = build_event(
        33,
        1,
        200,
        &mysql_gtid_body([1; 16], 3, None),
        ChecksumAlg::Crc32,
    );
    let h = EventHeader::parse(&ev).unwrap();
    assert_eq!(t.observe(200, &h, &ev, &fde).unwrap(), None);
    assert_eq!(t.open_txn_start(), Some(200));
    // A corrupt QUERY is an error with the offset, and leaves the state alone.
    let mut b = query_body("d", "BEGIN");
    b[8] = 250;
    let ev = build_event(2, 1, 300, &b, ChecksumAlg::Crc32);
    let h = EventHeader::parse(&ev).unwrap();
    let err = t.observe(300, &h, &ev, &fde).unwrap_err();
    assert_eq!(err.offset(), Some(300));
    assert!(!err.is_truncated());
    assert_eq!(t.open_txn_start(), Some(200));
}

fn synthetic_file() -> Vec<u8> {
    let mut f = BINLOG_MAGIC.to_vec();
    f.extend_from_slice(&fde_event("8.0.35", 1));
    let off = f.len() as u64;
    f.extend_from_slice(&build_event(
        33,
        1,
        off,
        &mysql_gtid_body([3; 16], 1, Some(9)),
        ChecksumAlg::Crc32,
    ));
    let off = f.len() as u64;
    f.extend_from_slice(&build_event(
        2,
        1,
        off,
        &query_body("d", "CREATE TABLE t (a int)"),
        ChecksumAlg::Crc32,
    ));
    let off = f.len() as u64;
    let mut b = 4u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"binlog.000002");
    f.extend_from_slice(&build_event(4, 1, off, &b, ChecksumAlg::Crc32));
    f
}

fn read_all(data: &[u8]) -> (Vec<(u64, EventHeader)>, Option<EventError>) {
    let mut rd = match EventReader::new_at_start(data) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    while let Some(item) = rd.next_event() {
        match item {
            Ok((off, h, ev)) => {
                assert_eq!(ev.len(), h.event_size as usize);
                out.push((off, h));
            }
            Err(e) => {
                assert!(rd.next_event().is_none(), "reader must stop after an error");
                return (out, Some(e));
            }
        }
    }
    (out, None)
}

#[test]
fn reader_truncated_at_every_offset() {
    let mut files = vec![synthetic_file()];
    files.push(corpus_file(
        "mariadb-operator__mariadb-poc/domain_id_0/mariadb-repl-bin.000009",
    ));
    files.push(corpus_file("blackbeam__rust_mysql_common/bug16266.000001"));
    for data in files {
        let (full, err) = read_all(&data);
        assert!(err.is_none(), "{err:?}");
        let ends: Vec<u64> = full
            .iter()
            .map(|(o, h)| o + u64::from(h.event_size))
            .collect();
        for cut in 0..data.len() {
            let (evs, err) = read_all(&data[..cut]);
            let at_boundary = cut == 4 || ends.contains(&(cut as u64));
            match err {
                None => assert!(at_boundary, "cut {cut}: no error"),
                Some(e) => {
                    assert!(!at_boundary, "cut {cut}: {e}");
                    assert!(e.is_truncated(), "cut {cut}: {e}");
                    let EventError::Truncated {
                        offset,
                        needed,
                        available,
                    } = e
                    else {
                        unreachable!()
                    };
                    assert!(available < needed);
                    assert_eq!(offset + available, cut as u64);
                }
            }
            assert!(evs.len() <= full.len());
        }
        // Every single-byte corruption: no panic, bounded work.
        for i in 0..data.len() {
            for v in [0x00u8, 0xff, 0x13] {
                let mut bad = data.clone();
                bad[i] = v;
                let _ = read_all(&bad);
            }
        }
    }
}

#[test]
fn reader_bad_magic_and_sizes() {
    assert!(matches!(
        EventReader::new_at_start(&b"\xfebi"[..]),
        Err(EventError::Truncated {
            offset: 0,
            needed: 4,
            available: 3
        })
    ));
    assert!(matches!(
        EventReader::new_at_start(&b"GIF89a"[..]),
        Err(EventError::BadMagic { .. })
    ));
    // A header claiming 1 GiB with a few bytes behind it: truncation, no 1 GiB buffer.
    let mut f = BINLOG_MAGIC.to_vec();
    let h = EventHeader {
        timestamp: 0,
        type_code: 2,
        server_id: 1,
        event_size: MAX_EVENT_SIZE,
        log_pos: 0,
        flags: 0,
    };
    f.extend_from_slice(&h.to_bytes());
    f.extend_from_slice(&[0u8; 100]);
    let (_, err) = read_all(&f);
    assert!(matches!(
        err,
        Some(EventError::Truncated {
            offset: 4,
            available: 119,
            ..
        })
    ));
    // Size below the header.
    let mut f = BINLOG_MAGIC.to_vec();
    f.extend_from_slice(&EventHeader { event_size: 5, ..h }.to_bytes());
    let (_, err) = read_all(&f);
    let err = err.unwrap();
    assert!(!err.is_truncated());
    assert_eq!(err.offset(), Some(4));
    assert!(err.to_string().contains("bad event size 5"), "{err}");
}

#[test]
fn reader_at_offset() {
    let data = synthetic_file();
    let (all, _) = read_all(&data);
    let (second, _) = all[1];
    let mut rd = EventReader::new_at(&data[second as usize..], second);
    let mut n = 0;
    while let Some(item) = rd.next_event() {
        let (off, h, _) = item.unwrap();
        assert_eq!(h.log_pos as u64, off + u64::from(h.event_size));
        n += 1;
    }
    assert_eq!(n, all.len() - 1);
    assert_eq!(rd.offset(), data.len() as u64);
}

/// The events of a corpus file: (header, event bytes), and its checksum algorithm.
fn corpus_events(rel: &str) -> (Vec<(EventHeader, Vec<u8>)>, ChecksumAlg) {
    let data = corpus_file(rel);
    let mut rd = EventReader::new_at_start(&data[..]).expect("a binlog");
    let mut out = Vec::new();
    let mut alg = ChecksumAlg::Off;
    while let Some(item) = rd.next_event() {
        let (_, h, ev) = item.expect("a well-formed event");
        if h.type_code == event_type::FORMAT_DESCRIPTION {
            alg = FormatDescription::parse(ev).expect("FDE").checksum_alg;
        }
        out.push((h, ev.to_vec()));
    }
    (out, alg)
}

/// A real MariaDB 11.8 file's GTID_LIST holds the last GTID of the file before it, and
/// a count the body cannot hold is refused before anything is allocated.
#[test]
fn gtid_list_of_a_real_file_holds_the_previous_files_last_gtid() {
    let dir = "mariadb-operator__mariadb-poc/domain_id_0";
    let (prev, alg) = corpus_events(&format!("{dir}/mariadb-repl-bin.000004"));
    let last = prev
        .iter()
        .filter(|(h, _)| h.type_code == event_type::MARIADB_GTID)
        .filter_map(|(h, ev)| parse_gtid(h, ev, alg).ok().flatten())
        .map(|i| i.gtid)
        .next_back()
        .expect("GTIDs in .000004");
    let (next, alg) = corpus_events(&format!("{dir}/mariadb-repl-bin.000005"));
    let (h, ev) = next
        .iter()
        .find(|(h, _)| h.type_code == event_type::MARIADB_GTID_LIST)
        .expect("a GTID_LIST");
    let list = parse_gtid_list(h, ev, alg).unwrap();
    assert!(list.contains(&last), "{list:?} lacks {last}");

    let mut body = 1000u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[0u8; 16]);
    let ev = build_event(
        event_type::MARIADB_GTID_LIST,
        1,
        4,
        &body,
        ChecksumAlg::Crc32,
    );
    let h = EventHeader::parse(&ev).unwrap();
    assert!(matches!(
        parse_gtid_list(&h, &ev, ChecksumAlg::Crc32),
        Err(EventError::TooShort { .. })
    ));
}
