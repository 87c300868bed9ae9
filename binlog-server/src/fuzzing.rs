//! Fuzzing entries: one function per fuzz target of `fuzz/` (cargo-fuzz, libFuzzer),
//! each feeding arbitrary bytes to the parsers of one kind of untrusted input. None may
//! panic, whatever the bytes; a few also assert a property (a parsed GTID prints back
//! to itself). The corpora and the crashes found (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) are replayed by this module's test in every `cargo
//! test`; the record of runs is in docs/security.md.
//!
//! | target | input |
//! |---|---|
//! | [`binlog_file`] | a binlog file: framing, CRC32, the file check, FDE, ROTATE, GTID, QUERY, transactions |
//! | [`wire_packets`] | a server's packets to our client: greeting, ERR, EOF, length-encoded fields; a client's HandshakeResponse41 |
//! | [`replica_input`] | what a replica sends the fake primary: handshake, queries, dump commands |
//! | [`gtid_text`] | GTID and GTID-position text (API, `@slave_connect_state`) |
//! | [`pitr_request`] | a PITR request body: targets, destination URL, allow-list check |
//! | [`config_text`] | the TOML config, `mysql://` URLs, allow-list rules, the tokens file, schedule fields |

use std::io::Cursor;

use binlog::check::{check_reader, CheckOptions};
use binlog::{ChecksumAlg, EventReader, FormatDescription, Gtid, TxnTracker};

/// A fuzz target's entry.
pub type Entry = fn(&[u8]);

/// The targets by name, for the corpus replay.
pub const TARGETS: &[(&str, Entry)] = &[
    ("binlog_file", binlog_file),
    ("wire_packets", wire_packets),
    ("replica_input", replica_input),
    ("gtid_text", gtid_text),
    ("pitr_request", pitr_request),
    ("config_text", config_text),
];

/// A binlog file's bytes: the file check, then every
/// event through the parsers the capture, the index and the fake primary use.
pub fn binlog_file(data: &[u8]) {
    // One check (each allocates the checker's 1 MiB read buffer, slow under ASan);
    // `require_terminal` only changes the verdict on the last event.
    let _ = check_reader(
        Cursor::new(data),
        &CheckOptions {
            require_terminal: data.len().is_multiple_of(2),
            expected_size: Some(data.len() as u64),
            expected_format: None,
        },
    );
    let Ok(mut r) = EventReader::new_at_start(Cursor::new(data)) else {
        return;
    };
    let mut fde: Option<FormatDescription> = None;
    let mut txn = TxnTracker::new();
    let mut n = 0u32;
    while let Some(Ok((offset, h, ev))) = r.next_event() {
        n += 1;
        if n > 10_000 {
            break;
        }
        let _ = binlog::stored_and_computed_crc(&h, ev);
        if let Ok(f) = FormatDescription::parse(ev) {
            fde = Some(f);
        }
        for alg in [ChecksumAlg::Off, ChecksumAlg::Crc32] {
            let _ = binlog::parse_rotate(ev, alg);
            let _ = binlog::parse_gtid(&h, ev, alg);
            let _ = binlog::body(ev, alg);
        }
        if let Some(f) = &fde {
            let _ = binlog::query_text(ev, f.checksum_alg, f);
            let _ = txn.observe(offset, &h, ev, f);
        }
    }
}

/// Packets a server (a primary, a restore destination, or a spoofed one) sends our
/// client, and a client's HandshakeResponse41 to the fake primary.
pub fn wire_packets(data: &[u8]) {
    use mysql_wire::packet::{is_eof, Handshake, Reader, ServerError};
    let _ = Handshake::parse(data);
    let _ = ServerError::parse(data);
    let _ = is_eof(data);
    let _ = mysql_wire::server::HandshakeResponse::parse(data);
    let mut r = Reader::new(data, "fuzz");
    for _ in 0..64 {
        match r.u8() {
            Ok(0) => {
                if r.nul_str().is_err() {
                    break;
                }
            }
            Ok(1) => {
                if r.lenenc_int().is_err() {
                    break;
                }
            }
            Ok(_) => {
                if r.lenenc_bytes().is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}

/// What a replica sends the fake primary (see
/// [`replay::fake_primary::parse_replica_input`]).
pub fn replica_input(data: &[u8]) {
    let _ = replay::fake_primary::parse_replica_input(data);
}

/// GTID text: a GTID that parses prints back to the same GTID; GTID lists, UUIDs.
pub fn gtid_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(g) = text.trim().parse::<Gtid>() {
        let again: Gtid = g
            .to_string()
            .parse()
            .expect("a parsed GTID prints as a parsable GTID");
        assert_eq!(again, g, "a GTID prints back to itself");
    }
    let _ = binlog::parse_uuid(&text);
    let _ = replay::fake_primary::parse_connect_state(&text);
}

/// A PITR request body as the API receives it: JSON, the target's time or GTID, the
/// destination URL and its allow-list check (a loopback rule and a datadir root).
pub fn pitr_request(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = replay::pitr::parse_time(&text);
    let Ok(body) = serde_json::from_slice::<crate::api::PitrBody>(data) else {
        return;
    };
    if let Some(t) = &body.target_time {
        let _ = replay::pitr::parse_time(t);
    }
    if let Some(g) = &body.target_gtid {
        let _ = g.trim().parse::<Gtid>();
    }
    if let Some(u) = &body.url {
        if let Ok(url) = node::config::SourceUrl::parse(u) {
            let cfg = node::config::PitrConfig {
                allowed_destinations: vec!["127.0.0.1:*".into(), "10.0.0.0/8:3306".into()],
                allowed_datadir_roots: vec![std::env::temp_dir()],
                ..Default::default()
            };
            let _ = replay::pitr::allow::check(
                &cfg,
                replay::pitr::Destination::Existing {
                    url,
                    datadir: body.datadir.as_ref().map(std::path::PathBuf::from),
                },
            );
        }
    }
}

/// Configuration text: the TOML file (parsed, not validated: validation creates
/// directories), and each line as a URL, an allow-list rule, a schedule day and time,
/// and the whole text as a tokens file.
pub fn config_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = node::config::Config::parse(&text);
    let _ = node::tokens::Tokens::parse(&text);
    for line in text.lines().take(64) {
        let _ = node::config::SourceUrl::parse(line);
        let _ = line.parse::<node::config::DestinationRule>();
        let _ = node::config::schedule::parse_day(line);
        let _ = node::config::schedule::parse_time_of_day(line);
        let _ = archive::objects::parse_chunk_name(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of each target's corpus and regressions runs through its entry
    /// without a panic; each target has a corpus (an empty one would test nothing).
    #[test]
    fn the_fuzz_corpora_replay_without_a_panic() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        for (name, entry) in TARGETS {
            let mut n = 0;
            for sub in ["corpus", "regressions"] {
                let dir = root.join(sub).join(name);
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for f in rd.flatten() {
                    let data = std::fs::read(f.path()).unwrap();
                    entry(&data);
                    n += 1;
                }
            }
            assert!(n > 0, "fuzz/corpus/{name} holds no input");
        }
    }
}
