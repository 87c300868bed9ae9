//! Runs the binlog checker, the event reader and the transaction tracker over the corpus
//! of real binlog files in `shared/fixtures/binlogs` (written by real MySQL, MariaDB,
//! Percona, Aurora and RDS servers; see its README.md) and compares every result with the
//! README's table: event counts, per-type counts, CRC-verified counts, server versions,
//! checksum algorithms, the IN_USE flag, relay-log style files, and the expected failure of
//! every known-bad file.
//!
//! The corpus directory comes from `BINLOG_CORPUS_DIR`, else `../../shared/fixtures/binlogs`
//! next to the workspace. A missing corpus is a failure, never a skip.
//!
//! The corpus is read, checked leniently and walked once per test binary ([`corpus`]);
//! each kind of comparison is its own test over every file, collecting every
//! disagreement of its kind before it fails, so that one kind failing hides no other.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use binlog::check::{self, CheckOptions, CheckReport, ProblemKind};
use binlog::{
    self, event_type, ChecksumAlg, EventHeader, EventReader, FormatDescription, TxnRecord,
    TxnTracker,
};
use sha2::{Digest, Sha256};

/// Good files (walk OK in the README, no IN_USE flag) that simply end without ROTATE or
/// STOP: copies taken while the server was still writing them, or cut by the test
/// authors, with every event intact. Checked with `require_terminal = false`; the test
/// also asserts that `require_terminal = true` flags exactly the missing terminal event.
const ENDS_WITHOUT_TERMINAL: &[(&str, &str)] = &[
    (
        "apecloud__mysql-binlog-connector-rust/mysql-bin.000057",
        "ends with a TRANSACTION_PAYLOAD",
    ),
    (
        "apecloud__mysql-binlog-connector-rust/mysql-bin.000080",
        "ends with an XID",
    ),
    (
        "osheroff__mysql-binlog-connector-java/mysql-bin.aurora-padding",
        "Aurora file ends with a QUERY",
    ),
    (
        "rust-us__mysql-cdc-rs/8.0/02_query/binlog.000001",
        "ends with a DDL QUERY",
    ),
    (
        "blackbeam__rust_mysql_common/binlog_savepoint.000001",
        "relay log ending with an XID",
    ),
];

/// Where this test disagrees with the README's "walk OK": the MySQL 5.2 development-tree
/// file has two QUERY events (inside a statement cache) whose log_pos counts from the start
/// of the cache, not in the file. The file is framed and checksummed fine, but a replica
/// would record wrong positions from it, so the checker flags it (FAIL is right for an
/// archive), and nothing else.
const POSITION_QUIRKS: &[(&str, &[u64])] = &[(
    "blackbeam__rust_mysql_common/ver_5_1-wl2325_s.001",
    &[170, 278],
)];

fn corpus_dir() -> PathBuf {
    let dir: PathBuf = match std::env::var_os("BINLOG_CORPUS_DIR") {
        Some(d) => d.into(),
        None => concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/binlogs").into(),
    };
    assert!(
        dir.join("README.md").is_file(),
        "binlog corpus not found at {} (README.md missing): set BINLOG_CORPUS_DIR to the \
         shared/fixtures/binlogs directory; this test never skips",
        dir.display()
    );
    dir
}

/// One row of the README's "Files" table.
#[derive(Debug, Clone)]
struct Row {
    file: String,
    bytes: u64,
    server_version: String,
    checksum: String,
    crc_ok: u64,
    crc_bad: u64,
    walk: String,
    events: u64,
    types: BTreeMap<u8, u64>,
    notes: String,
}

/// README event type names ("FDE", "MDB_GTID", "UNKNOWN_TYPE_100") to type codes.
fn type_code_of(name: &str) -> u8 {
    if name == "FDE" {
        return event_type::FORMAT_DESCRIPTION;
    }
    if let Some(n) = name.strip_prefix("UNKNOWN_TYPE_") {
        return n.parse().unwrap_or_else(|_| panic!("bad type {name}"));
    }
    let ours = match name.strip_prefix("MDB_") {
        Some(rest) => format!("MARIADB_{rest}"),
        None => name.to_owned(),
    };
    (0..=255u8)
        .find(|&t| event_type::name(t) == ours)
        .unwrap_or_else(|| panic!("README names an event type we do not know: {name}"))
}

fn parse_readme(dir: &Path) -> Vec<Row> {
    let text = fs::read_to_string(dir.join("README.md")).expect("read README.md");
    let mut rows = Vec::new();
    let mut in_files = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            in_files = line.trim() == "## Files";
            continue;
        }
        if !in_files || !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 13, "unexpected README row: {line}");
        let file = cells[1].trim_matches('`').to_owned();
        let crc = cells[7];
        let (crc_ok, crc_bad) = if crc == "-" {
            (0, 0)
        } else {
            let mut ok = 0;
            let mut bad = 0;
            for part in crc.split(',') {
                let mut it = part.split_whitespace();
                let n: u64 = it.next().and_then(|n| n.parse().ok()).expect("crc count");
                match it.next() {
                    Some("ok") => ok = n,
                    Some("bad") => bad = n,
                    other => panic!("bad CRC column {crc:?} ({other:?})"),
                }
            }
            (ok, bad)
        };
        let events: u64 = cells[9]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("events column of {file}"));
        let mut types = BTreeMap::new();
        for tok in cells[10].split_whitespace() {
            if tok.starts_with('[') || tok.starts_with('(') {
                break;
            }
            let (name, n) = tok.split_once(':').unwrap_or_else(|| panic!("type {tok}"));
            types.insert(type_code_of(name), n.parse().expect("type count"));
        }
        rows.push(Row {
            file,
            bytes: cells[3].parse().expect("bytes"),
            server_version: cells[5].trim_matches('`').to_owned(),
            checksum: cells[6].to_owned(),
            crc_ok,
            crc_bad,
            walk: cells[8].to_owned(),
            events,
            types,
            notes: cells[11].to_owned(),
        });
    }
    assert!(rows.len() > 100, "README table not found or too short");
    rows
}

fn list_files(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("read corpus dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            list_files(&path, base, out);
        } else {
            let rel = path.strip_prefix(base).expect("prefix");
            let rel = rel.to_string_lossy().into_owned();
            if rel != "README.md" {
                out.push(rel);
            }
        }
    }
}

/// The file's bytes as a binlog reader sees them (gzip files decompressed).
fn load(path: &Path) -> Vec<u8> {
    let raw = fs::read(path).expect("read corpus file");
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    } else {
        raw
    }
}

/// Expected outcome of a file.
#[derive(Debug)]
enum Expect {
    /// Accepted with these options.
    Good { require_terminal: bool },
    /// Problems of this kind (at these offsets, when given), and no other kinds except
    /// the consequences listed in `also`.
    Bad {
        kind: ProblemKind,
        offsets: Vec<u64>,
        also: Vec<ProblemKind>,
    },
}

fn expectation(row: &Row, in_use: bool) -> Expect {
    let notes = row.notes.to_lowercase();
    if let Some((_, offsets)) = POSITION_QUIRKS.iter().find(|(f, _)| *f == row.file) {
        assert_eq!(row.walk, "OK", "{}: README changed", row.file);
        return Expect::Bad {
            kind: ProblemKind::PositionMismatch,
            offsets: offsets.to_vec(),
            also: vec![],
        };
    }
    match row.walk.as_str() {
        "OK" => {
            let no_terminal = ENDS_WITHOUT_TERMINAL.iter().any(|(f, _)| *f == row.file);
            Expect::Good {
                require_terminal: !in_use && !no_terminal,
            }
        }
        "NOT_BINLOG" => Expect::Bad {
            kind: ProblemKind::BadMagic,
            offsets: vec![0],
            also: vec![],
        },
        "FAIL" if notes.contains("truncated") => Expect::Bad {
            kind: ProblemKind::Truncated,
            offsets: vec![],
            also: vec![ProblemKind::NoTerminalEvent],
        },
        "WARN" if notes.contains("stale crc32") => Expect::Bad {
            kind: ProblemKind::ChecksumMismatch,
            offsets: vec![],
            also: vec![ProblemKind::NoTerminalEvent],
        },
        "WARN" if notes.contains("corrupt") && notes.contains("query") => {
            let offset = notes
                .split("at offset ")
                .nth(1)
                .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{}: corrupt QUERY note without offset", row.file));
            Expect::Bad {
                kind: ProblemKind::CorruptEvent,
                offsets: vec![offset],
                also: vec![],
            }
        }
        other => panic!(
            "{}: walk {other:?} with notes {:?}: no expectation defined",
            row.file, row.notes
        ),
    }
}

/// Events of the file with offsets and headers, via EventReader; also runs TxnTracker.
struct Walked {
    types: BTreeMap<u8, u64>,
    /// (offset, header)
    events: Vec<(u64, EventHeader)>,
    txns: Vec<TxnRecord>,
    framing_error: Option<binlog::EventError>,
}

fn walk(data: &[u8]) -> Walked {
    let mut w = Walked {
        types: BTreeMap::new(),
        events: Vec::new(),
        txns: Vec::new(),
        framing_error: None,
    };
    let mut rd = match EventReader::new_at_start(data) {
        Ok(r) => r,
        Err(e) => {
            w.framing_error = Some(e);
            return w;
        }
    };
    let mut fde: Option<FormatDescription> = None;
    let mut tracker = TxnTracker::new();
    while let Some(item) = rd.next_event() {
        match item {
            Ok((off, h, ev)) => {
                *w.types.entry(h.type_code).or_default() += 1;
                w.events.push((off, h));
                if h.type_code == event_type::FORMAT_DESCRIPTION {
                    if let Ok(f) = FormatDescription::parse(ev) {
                        fde = Some(f);
                    }
                }
                if let Some(f) = &fde {
                    if let Ok(Some(rec)) = tracker.observe(off, &h, ev, f) {
                        w.txns.push(rec);
                    }
                }
            }
            Err(e) => w.framing_error = Some(e),
        }
    }
    w
}

fn count_kind(r: &CheckReport, kind: ProblemKind) -> usize {
    r.problems.iter().filter(|p| p.kind == kind).count()
}

/// One corpus file with what every scenario starts from: its README row, its bytes as a
/// reader sees them, the lenient check of them and the EventReader / TxnTracker walk.
struct CorpusFile {
    row: Row,
    path: PathBuf,
    data: Vec<u8>,
    /// `check_reader` with `require_terminal = false`, no expected size.
    report: CheckReport,
    walked: Walked,
}

/// The corpus as the scenarios share it (read, checked and walked once per test
/// binary; read-only afterwards, so the scenarios run in parallel).
struct Corpus {
    dir: PathBuf,
    files: Vec<CorpusFile>,
}

static CORPUS: OnceLock<Corpus> = OnceLock::new();

fn lenient() -> CheckOptions {
    CheckOptions {
        require_terminal: false,
        expected_size: None,
        expected_format: None,
    }
}

fn corpus() -> &'static Corpus {
    CORPUS.get_or_init(|| {
        let dir = corpus_dir();
        let files = parse_readme(&dir)
            .into_iter()
            .map(|row| {
                let path = dir.join(&row.file);
                let data = load(&path);
                let report = check::check_reader(&data[..], &lenient()).expect("check_reader");
                let walked = walk(&data);
                CorpusFile {
                    row,
                    path,
                    data,
                    report,
                    walked,
                }
            })
            .collect();
        Corpus { dir, files }
    })
}

/// Runs `each` on every corpus file, collecting the disagreements it reports (prefixed
/// with the file's name), and fails with all of them at the end.
fn for_each_file(what: &str, mut each: impl FnMut(&CorpusFile, &mut dyn FnMut(String))) {
    let mut failures: Vec<String> = Vec::new();
    for f in &corpus().files {
        let mut fail = |msg: String| failures.push(format!("{}: {msg}", f.row.file));
        each(f, &mut fail);
    }
    assert!(
        failures.is_empty(),
        "{} corpus disagreements ({what}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_files_are_the_readme_table() {
    let c = corpus();
    let mut on_disk = Vec::new();
    list_files(&c.dir, &c.dir, &mut on_disk);
    on_disk.sort();
    let mut listed: Vec<String> = c.files.iter().map(|f| f.row.file.clone()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "corpus files and README table differ");
}

#[test]
fn file_sizes_match_the_readme() {
    for f in &corpus().files {
        assert_eq!(
            fs::metadata(&f.path).expect("stat").len(),
            f.row.bytes,
            "{}: size differs from the README",
            f.row.file
        );
    }
}

/// Facts that hold for every file, good or bad.
#[test]
fn checker_and_reader_facts_match_the_readme() {
    for_each_file("facts", |f, fail| {
        let (row, data, report, walked) = (&f.row, &f.data, &f.report, &f.walked);
        if report.size != data.len() as u64 {
            fail(format!("size {} != {}", report.size, data.len()));
        }
        let sha = hex::encode(Sha256::digest(data));
        if report.sha256_hex != sha {
            fail("sha256 differs".into());
        }
        if report.events != row.events {
            fail(format!(
                "{} events, README says {}",
                report.events, row.events
            ));
        }
        if walked.events.len() as u64 != row.events {
            fail(format!(
                "EventReader: {} events, README says {}",
                walked.events.len(),
                row.events
            ));
        }
        if walked.types != row.types {
            fail(format!(
                "event types {:?}, README says {:?}",
                walked.types, row.types
            ));
        }
        if report.crc_verified != row.crc_ok {
            fail(format!(
                "{} CRCs verified, README says {}",
                report.crc_verified, row.crc_ok
            ));
        }
        let crc_bad = count_kind(report, ProblemKind::ChecksumMismatch) as u64;
        if crc_bad != row.crc_bad {
            fail(format!(
                "{crc_bad} CRC mismatches, README says {}",
                row.crc_bad
            ));
        }
        let want_alg = match row.checksum.as_str() {
            "CRC32" => Some(ChecksumAlg::Crc32),
            "off" => Some(ChecksumAlg::Off),
            _ => None,
        };
        if report.checksum_alg != want_alg {
            fail(format!(
                "checksum {:?}, README says {}",
                report.checksum_alg, row.checksum
            ));
        }
        let want_version = row.server_version.split(" + ").next().unwrap_or("");
        let got_version = report.server_version.as_deref().unwrap_or("-");
        if got_version != want_version {
            fail(format!(
                "server version {got_version:?}, README says {want_version:?}"
            ));
        }
        let in_use_note = row.notes.contains("IN_USE flag");
        if report.in_use_flag != in_use_note {
            fail(format!(
                "in_use_flag {}, README notes say {in_use_note}",
                report.in_use_flag
            ));
        }
        let relay_note = row.notes.contains("FDEs (relay log style)");
        if report.relay_log != relay_note {
            fail(format!(
                "relay_log {}, README notes say {relay_note}",
                report.relay_log
            ));
        }
    });
}

/// Transactions: the checker counts what TxnTracker finds.
#[test]
fn transactions_match_the_events() {
    for_each_file("transactions", |f, fail| {
        let (row, data, report, walked) = (&f.row, &f.data, &f.report, &f.walked);
        let n = |t: u8| row.types.get(&t).copied().unwrap_or(0);
        let xids = n(event_type::XID) + n(event_type::XA_PREPARE);
        let gtids = n(event_type::GTID)
            + n(event_type::ANONYMOUS_GTID)
            + n(event_type::GTID_TAGGED)
            + n(event_type::MARIADB_GTID);
        let txns = walked.txns.len() as u64;
        if report.is_ok() && report.transactions != txns {
            fail(format!(
                "checker counted {} transactions, TxnTracker {txns}",
                report.transactions
            ));
        }
        if row.walk != "NOT_BINLOG" && walked.framing_error.is_none() {
            if txns < xids {
                fail(format!(
                    "{txns} transactions < {xids} XID/XA_PREPARE events"
                ));
            }
            // Every GTID opens one; only the last may still be open at the end.
            if gtids > 0 && !(txns == gtids || txns + 1 == gtids) {
                fail(format!("{txns} transactions for {gtids} GTID events"));
            }
            let open = tracker_open(data);
            if gtids > 0 && (txns + 1 == gtids) != open.is_some() {
                fail(format!(
                    "{txns} transactions for {gtids} GTIDs but open txn {open:?}"
                ));
            }
        }
        check_txn_records(walked, fail);
    });
}

/// Expected verdict: good files are accepted, every known-bad one is flagged with its
/// problem.
#[test]
fn good_files_are_accepted_and_bad_files_flagged() {
    let mut good = 0;
    let mut bad = 0;
    let mut summary: HashMap<&str, usize> = HashMap::new();
    for_each_file("verdicts", |f, fail| {
        let (row, data, report) = (&f.row, &f.data, &f.report);
        let exp = expectation(row, report.in_use_flag);
        match &exp {
            Expect::Good { require_terminal } => {
                good += 1;
                let opts = CheckOptions {
                    require_terminal: *require_terminal,
                    expected_size: Some(data.len() as u64),
                    expected_format: None,
                };
                let r = check::check_reader(&data[..], &opts).expect("check");
                if !r.is_ok() {
                    fail(format!("rejected: {}", r.info()));
                }
                if !r.info().starts_with("ok: ") {
                    fail(format!("info {:?}", r.info()));
                }
                let ends_terminal = matches!(
                    r.last_event_type,
                    Some(event_type::ROTATE | event_type::STOP)
                );
                if !report.in_use_flag && !ends_terminal && *require_terminal {
                    fail("ends without ROTATE/STOP: add it to ENDS_WITHOUT_TERMINAL".into());
                }
                if !*require_terminal && !report.in_use_flag {
                    // The listed files really lack only the terminal event.
                    let strict = CheckOptions {
                        require_terminal: true,
                        expected_size: None,
                        expected_format: None,
                    };
                    let r = check::check_reader(&data[..], &strict).expect("check");
                    let kinds: Vec<_> = r.problems.iter().map(|p| p.kind).collect();
                    if kinds != [ProblemKind::NoTerminalEvent] {
                        fail(format!(
                            "strict check should only miss the terminal: {}",
                            r.info()
                        ));
                    }
                }
                // Timestamps are not monotonic: several MySQL 8.0.31 files have a STOP
                // event hours older than their FDE (the host clock moved back).
                if r.first_event_time.is_none() || r.last_event_time.is_none() {
                    fail("event times missing".into());
                }
                if r.first_event_time > r.last_event_time {
                    *summary.entry("timestamps going backwards").or_default() += 1;
                }
                *summary
                    .entry(if report.relay_log {
                        "good relay logs"
                    } else if report.in_use_flag {
                        "good, in use"
                    } else if *require_terminal {
                        "good, closed"
                    } else {
                        "good, ends without ROTATE/STOP"
                    })
                    .or_default() += 1;
            }
            Expect::Bad {
                kind,
                offsets,
                also,
            } => {
                bad += 1;
                *summary.entry("bad").or_default() += 1;
                let opts = CheckOptions {
                    require_terminal: !report.in_use_flag,
                    expected_size: None,
                    expected_format: None,
                };
                let r = check::check_reader(&data[..], &opts).expect("check");
                if r.is_ok() || !r.has_problem(*kind) {
                    fail(format!("expected a {kind:?} problem, got: {}", r.info()));
                }
                let at: Vec<u64> = r
                    .problems
                    .iter()
                    .filter(|p| p.kind == *kind)
                    .map(|p| p.offset)
                    .collect();
                if !offsets.is_empty() && at != *offsets {
                    fail(format!("{kind:?} at {at:?}, expected at {offsets:?}"));
                }
                for p in &r.problems {
                    if p.kind != *kind && !also.contains(&p.kind) {
                        fail(format!("unexpected extra problem: {}", p.what));
                    }
                    if !p.what.contains(&p.offset.to_string()) {
                        fail(format!("problem text without its offset: {}", p.what));
                    }
                }
            }
        }
    });
    let mut summary: Vec<_> = summary.into_iter().collect();
    summary.sort();
    eprintln!(
        "corpus: {} files, {good} accepted, {bad} flagged as expected; {summary:?}",
        corpus().files.len()
    );
}

/// check_file agrees with check_reader on plain files; valid_prefix finds the good
/// prefix.
#[test]
fn check_file_agrees_and_valid_prefix_finds_the_good_prefix() {
    for_each_file("check_file / valid_prefix", |f, fail| {
        let (row, path, data, report, walked) = (&f.row, &f.path, &f.data, &f.report, &f.walked);
        if path.extension().is_none_or(|e| e != "gz") {
            let r = check::check_file(path, &lenient()).expect("check_file");
            if r.sha256_hex != report.sha256_hex || r.problems != report.problems {
                fail("check_file and check_reader differ".into());
            }
            if data.len() >= 4 && row.walk != "NOT_BINLOG" {
                let exp = expectation(row, report.in_use_flag);
                check_valid_prefix(path, data, walked, report, &exp, fail);
            }
        }
    });
}

/// Every single-bit flip in the FORMAT_DESCRIPTION of every clean CRC32 file of the
/// corpus is found by the check (one flipped bit in the version string used to turn the
/// CRC checks off). Each file is cut after its first few events, so that the flips are
/// tried over real FDEs and the real events that follow them; the in-use flag (the one
/// FDE bit outside its CRC, by the servers' design) counts as found when the report's
/// `in_use_flag` changes with it.
///
/// Two ways, as the archive meets them: from the file's own bytes alone, whenever an
/// event follows the FDE (a file that is only an FDE has nothing that could contradict
/// a version flipped to an older server's); and with what capture saw of the primary
/// ([`CheckOptions::expected_format`]), for every file.
#[test]
fn every_bit_flip_in_a_crc32_format_description_is_found() {
    let mut tried = 0usize;
    for_each_file("FORMAT_DESCRIPTION bit flips", |f, fail| {
        let clean_crc32 = f.report.is_ok()
            && f.report.checksum_alg == Some(ChecksumAlg::Crc32)
            && !f.report.relay_log;
        let Some((prefix, fde_len, events)) =
            clean_crc32.then(|| first_events(&f.data, 5)).flatten()
        else {
            return;
        };
        let known = CheckOptions {
            expected_format: Some(check::ExpectedFormat {
                checksum_alg: ChecksumAlg::Crc32,
                server_version: f.report.server_version.clone().unwrap_or_default(),
            }),
            ..lenient()
        };
        let mut modes = vec![("with the primary's format", known)];
        if events > 1 {
            modes.push(("from the file alone", lenient()));
        }
        tried += 1;
        for (mode, opts) in modes {
            let missed = unnoticed_fde_flips(&prefix, fde_len, &opts, fail);
            if !missed.is_empty() {
                fail(format!(
                    "{mode}: FDE flips (byte, bit) unnoticed: {missed:?}"
                ));
            }
        }
    });
    assert!(tried >= 20, "only {tried} clean CRC32 files in the corpus");
}

/// The (byte, bit) of every single-bit flip in the FDE (at offset 4, `fde_len` bytes)
/// of `file` that leaves the check clean with the in-use flag unchanged.
fn unnoticed_fde_flips(
    file: &[u8],
    fde_len: usize,
    opts: &CheckOptions,
    fail: &mut dyn FnMut(String),
) -> Vec<(usize, u8)> {
    let clean = check::check_reader(file, opts).expect("check_reader");
    if !clean.is_ok() {
        fail(format!(
            "the first events alone do not check clean: {}",
            clean.info()
        ));
        return Vec::new();
    }
    let mut missed = Vec::new();
    for i in 4..4 + fde_len {
        for bit in 0..8u8 {
            let mut bad = file.to_vec();
            bad[i] ^= 1 << bit;
            let r = check::check_reader(&bad[..], opts).expect("check_reader");
            if r.is_ok() && r.in_use_flag == clean.in_use_flag {
                missed.push((i, bit));
            }
        }
    }
    missed
}

/// The file cut after its first `n` events, its first event's (the FDE's) length, and
/// how many events the cut keeps.
fn first_events(data: &[u8], n: usize) -> Option<(Vec<u8>, usize, usize)> {
    let mut rd = EventReader::new_at_start(data).ok()?;
    let mut end = 4u64;
    let mut fde_len = None;
    let mut events = 0;
    for _ in 0..n {
        match rd.next_event() {
            Some(Ok((off, h, ev))) => {
                fde_len.get_or_insert(ev.len());
                end = off + u64::from(h.event_size);
                events += 1;
            }
            _ => break,
        }
    }
    let end = usize::try_from(end).ok()?;
    Some((data.get(..end)?.to_vec(), fde_len?, events))
}

fn tracker_open(data: &[u8]) -> Option<u64> {
    let mut rd = EventReader::new_at_start(data).ok()?;
    let mut fde: Option<FormatDescription> = None;
    let mut t = TxnTracker::new();
    while let Some(Ok((off, h, ev))) = rd.next_event() {
        if h.type_code == event_type::FORMAT_DESCRIPTION {
            fde = FormatDescription::parse(ev).ok();
        }
        if let Some(f) = &fde {
            let _ = t.observe(off, &h, ev, f);
        }
    }
    t.open_txn_start()
}

/// Transactions are ordered, disjoint, start and end on event boundaries, and a record
/// with a GTID starts at a GTID event.
fn check_txn_records(w: &Walked, fail: &mut dyn FnMut(String)) {
    let starts: HashMap<u64, u8> = w.events.iter().map(|(o, h)| (*o, h.type_code)).collect();
    let ends: std::collections::HashSet<u64> = w
        .events
        .iter()
        .map(|(o, h)| o + u64::from(h.event_size))
        .collect();
    let mut prev_end = 0;
    for t in &w.txns {
        if t.start < prev_end || t.end <= t.start {
            fail(format!("transaction {t:?} overlaps or is empty"));
        }
        prev_end = t.end;
        if !ends.contains(&t.end) {
            fail(format!(
                "transaction {t:?} does not end at an event boundary"
            ));
        }
        match starts.get(&t.start) {
            None => fail(format!("transaction {t:?} does not start at an event")),
            Some(&ty) if t.gtid.is_some() && !event_type::is_gtid(ty) => fail(format!(
                "transaction {t:?} has a GTID but starts at a {}",
                event_type::name(ty)
            )),
            _ => {}
        }
    }
}

fn check_valid_prefix(
    path: &Path,
    data: &[u8],
    w: &Walked,
    report: &CheckReport,
    exp: &Expect,
    fail: &mut dyn FnMut(String),
) {
    let v = match check::valid_prefix(path, 4) {
        Ok(v) => v,
        Err(e) => return fail(format!("valid_prefix: {e}")),
    };
    let complete_end = w
        .events
        .last()
        .map_or(4, |(o, h)| o + u64::from(h.event_size));
    if report.relay_log {
        // Relay logs: the primary's events carry the primary's positions, so the prefix
        // (meant for our copies of a primary's files) ends before the first of them.
        if v.len >= data.len() as u64 || v.len <= 4 {
            fail(format!("relay log valid_prefix {}", v.len));
        }
        return;
    }
    match exp {
        Expect::Good { .. } => {
            if v.len != data.len() as u64 {
                fail(format!(
                    "valid_prefix {} of a good file of {}",
                    v.len,
                    data.len()
                ));
            }
            if v.fde.is_none() {
                fail("valid_prefix found no FDE".into());
            }
            let last_is_rotate = report.last_event_type == Some(event_type::ROTATE);
            if v.last_rotate.is_some() != last_is_rotate {
                fail(format!("valid_prefix last_rotate {:?}", v.last_rotate));
            }
            // From other event boundaries as well (a dozen per file).
            let step = (w.events.len() / 12).max(1);
            for (off, _) in w.events.iter().step_by(step) {
                match check::valid_prefix(path, *off) {
                    Ok(v2) if v2.len == v.len => {}
                    other => fail(format!("valid_prefix from {off}: {other:?}")),
                }
            }
        }
        Expect::Bad { kind, offsets, .. } => {
            let first_bad = report.problems.first().map_or(complete_end, |p| p.offset);
            let want = match kind {
                ProblemKind::Truncated => complete_end,
                _ => offsets.first().copied().unwrap_or(first_bad),
            };
            // A bad FDE means nothing can be vouched for beyond the start.
            let want = if v.fde.is_none() { 4 } else { want };
            if v.len != want {
                fail(format!(
                    "valid_prefix {} of a bad file, expected {want}",
                    v.len
                ));
            }
        }
    }
}
