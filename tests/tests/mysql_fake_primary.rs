//! The MySQL 8 dialect end to end, the only live check of it possible here (MySQL cannot
//! be installed on these machines): real MySQL 8 binlog files from the fixture corpus are
//! put in an archive-only source (`capture = false`) whose fake primary presents the
//! files' MySQL version in its handshake; a second source captures from that fake primary
//! in the MySQL dialect (`@source_binlog_checksum`, GTID_MODE / SERVER_UUID reads,
//! SHOW BINARY LOGS, COM_REGISTER_SLAVE, COM_BINLOG_DUMP; one of them as a semi-sync
//! replica: `@rpl_semi_sync_replica`, the event header, acks). The captured files must
//! be byte-identical to the fixtures.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test mysql_fake_primary`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use binlog_tests::*;

/// Each suite uses part of it.
#[allow(dead_code)]
#[path = "support/binlog_stream.rs"]
mod binlog_stream;
#[path = "support/pyrepl.rs"]
mod pyrepl;
use binlog_stream::{as_sent, FileEvent, Request, Streamed};
use pyrepl::pyrepl;

fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

struct Set {
    name: &'static str,
    dir: &'static str,
    files: &'static [&'static str],
}

const SETS: &[Set] = &[
    // MySQL 8.0.46, four files chained by ROTATE events.
    Set {
        name: "m846",
        dir: "avaitla__mysqlbinlog2parquet",
        files: &[
            "mysql-bin.000003",
            "mysql-bin.000004",
            "mysql-bin.000005",
            "mysql-bin.000006",
        ],
    },
    // Amazon RDS MySQL 8.0.35, 2 MB with GTIDs and ROWS_QUERY events.
    Set {
        name: "rds835",
        dir: "avaitla__mysqlbinlog2parquet",
        files: &["mysql-bin-changelog.547927"],
    },
    // MySQL 8.0.31, 2.2 MB ending with STOP.
    Set {
        name: "m831",
        dir: "rust-us__mysql-cdc-rs/8.0/folder",
        files: &["binlog.000693"],
    },
];

/// An archive-only source per set of [`SETS`] (the fixture files copied into its
/// directory, `capture = false`, its fake primary on a free port with user `repl` /
/// `s3cret`), and with `copies` a second source per set capturing from that fake
/// primary. Returns the work directory, the config file, the HTTP address and the fake
/// primaries' ports.
fn archive_only_sources(copies: bool) -> Result<(tempfile::TempDir, PathBuf, String, Vec<u16>)> {
    let corpus = corpus_dir();
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let mut text = format!(
        "data_dir = {}\n",
        toml_string(data.to_str().context("utf-8")?)
    );
    let http = format!("127.0.0.1:{}", free_port());
    text.push_str(&format!("[http]\nlisten = {}\n", toml_string(&http)));
    let mut ports = Vec::new();
    for (i, set) in SETS.iter().enumerate() {
        let src_dir = data.join(set.name);
        std::fs::create_dir_all(&src_dir)?;
        for f in set.files {
            std::fs::copy(corpus.join(set.dir).join(f), src_dir.join(f))?;
            let mut p = std::fs::metadata(src_dir.join(f))?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            p.set_readonly(false);
            std::fs::set_permissions(src_dir.join(f), p)?;
        }
        let port = free_port();
        ports.push(port);
        text.push_str(&format!(
            "[[source]]\nname = \"{n}\"\nurl = \"mysql://unused@127.0.0.1:1\"\nserver_id = {id}\ncapture = false\n\
             [source.replication]\nlisten = \"127.0.0.1:{port}\"\nuser = \"repl\"\npassword = \"{REPL_PASS}\"\n",
            n = set.name,
            id = 100 + i,
        ));
        if copies {
            // The first set's copy captures as a semi-sync replica (MySQL 8.0.26+
            // names: rpl_semi_sync_source_enabled, @rpl_semi_sync_replica).
            text.push_str(&format!(
                "[[source]]\nname = \"{n}-copy\"\nurl = \"mysql://repl:{REPL_PASS}@127.0.0.1:{port}\"\nserver_id = {id2}\nstart = \"earliest\"\nsemi_sync = {semi}\n",
                n = set.name,
                id2 = 200 + i,
                semi = i == 0,
            ));
        }
    }
    let cfg = work.path().join("binlog-server.toml");
    std::fs::write(&cfg, text)?;
    Ok((work, cfg, http, ports))
}

/// The archive-only sources' replication password.
const REPL_PASS: &str = "s3cret";

#[test]
fn mysql8_binlogs_stream_through_the_fake_primary_byte_identical() -> Result<()> {
    let corpus = corpus_dir();
    let (work, cfg, http, _) = archive_only_sources(true)?;
    let data = work.path().join("data");
    let server = ServerProcess::start(&server_bin(), &cfg, &http)?;

    for set in SETS {
        let copy = data.join(format!("{}-copy", set.name));
        wait_for(
            &format!("{} captured", set.name),
            Duration::from_secs(60),
            || {
                let all = set.files.iter().all(|f| {
                    let want = std::fs::metadata(corpus.join(set.dir).join(f))
                        .map(|m| m.len())
                        .ok();
                    std::fs::metadata(copy.join(f)).map(|m| m.len()).ok() == want
                });
                Ok(all.then_some(()))
            },
        )
        .with_context(|| {
            server
                .get_json(&format!("/v1/sources/{}-copy", set.name))
                .map(|v| v.to_string())
                .unwrap_or_default()
        })?;
        let st = server.get_json(&format!("/v1/sources/{}-copy", set.name))?;
        assert_eq!(st["dialect"], "mysql", "{st:#}");
        if set.name == SETS[0].name {
            // The semi-sync framing both ways in the MySQL dialect: every event came with
            // the header (the stream never broke) and the transactions' ends asked for
            // acks, sent after their fdatasync.
            let acked = wait_for("semi-sync acks", Duration::from_secs(30), || {
                let st = server.get_json(&format!("/v1/sources/{}-copy", set.name))?;
                let acks = st["semi_sync"]["acks"].as_u64().unwrap_or(0);
                Ok((acks > 0).then_some(st))
            })?;
            assert_eq!(acked["semi_sync"]["active"], true, "{acked:#}");
            assert_eq!(acked["reconnects"], 0, "{acked:#}");
        }
        for f in set.files {
            let want = std::fs::read(corpus.join(set.dir).join(f))?;
            let got = wait_for(&format!("{f} durable"), Duration::from_secs(30), || {
                let got = std::fs::read(copy.join(f))?;
                Ok(same_bytes(&want, &got, is_last(set, f)).then_some(got))
            })
            .with_context(|| format!("{}/{f} differs from the fixture", set.name))?;
            assert!(same_bytes(&want, &got, is_last(set, f)));
        }
    }
    // The files the capture closed were checked against the fake primary's SHOW BINARY
    // LOGS and the CRC walk: SUCC.
    wait_for("three closed copies SUCC", Duration::from_secs(60), || {
        let b = server.get_json("/v1/sources/m846-copy/binlogs")?;
        let succ = b["files"]
            .as_array()
            .map(|a| a.iter().filter(|f| f["state"] == "SUCC").count())
            .unwrap_or(0);
        Ok((succ >= 3).then_some(()))
    })?;
    drop(server);
    Ok(())
}

fn is_last(set: &Set, f: &str) -> bool {
    set.files.last() == Some(&f)
}

/// Equal bytes; for the last file (still ACTIVE in the copy) the in-use flag byte may
/// differ, as it does between a primary's active file and its replica's copy.
fn same_bytes(want: &[u8], got: &[u8], last: bool) -> bool {
    if want.len() != got.len() {
        return false;
    }
    want.iter()
        .zip(got)
        .enumerate()
        .all(|(i, (a, b))| a == b || (last && i == IN_USE_FLAG_OFFSET))
}

/// How long a non-blocking read of one set may take.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The fixture files of `set` in order: (file name, event).
fn fixture_events(set: &Set) -> Result<Vec<(&'static str, FileEvent)>> {
    let dir = corpus_dir().join(set.dir);
    let mut v = Vec::new();
    for f in set.files {
        for e in binlog_stream::file_events(&dir.join(f))? {
            v.push((*f, e));
        }
    }
    Ok(v)
}

/// The events a server sends for `evs` (its FORMAT_DESCRIPTIONs without the in-use flag).
fn sent(evs: &[(&str, FileEvent)]) -> Vec<Vec<u8>> {
    evs.iter().map(|(_, e)| as_sent(e, true)).collect()
}

/// The stream without the events a server makes up (log_pos 0: artificial ROTATE, a
/// FORMAT_DESCRIPTION re-sent for a start past offset 4).
fn stored(got: &[Streamed]) -> Vec<Vec<u8>> {
    got.iter()
        .filter(|e| e.log_pos != 0)
        .map(|e| e.bytes.clone())
        .collect()
}

/// Asserts two event lists are equal, naming the first difference.
fn assert_same_events(what: &str, got: &[Vec<u8>], want: &[Vec<u8>]) {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: event {i} differs\ngot:  {}\nwant: {}",
            hex::encode(&got[i]),
            hex::encode(&want[i])
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: number of events");
}

/// A MySQL GTID set covering the transactions up to the middle GTID event of `evs` whose
/// next GTID event is in the same file: ("uuid:first-k", index of that next GTID event).
fn middle_gtid_set(evs: &[(&str, FileEvent)]) -> Option<(String, usize)> {
    let gtids: Vec<usize> = (0..evs.len())
        .filter(|&i| evs[i].1.gtid.is_some())
        .collect();
    let first = evs[*gtids.first()?].1.gtid?.1;
    let pick = gtids
        .windows(2)
        .skip(gtids.len() / 2)
        .find(|w| evs[w[0]].0 == evs[w[1]].0)?;
    let (uuid, k) = evs[pick[0]].1.gtid?;
    let u = hex::encode(uuid);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &u[..8],
        &u[8..12],
        &u[12..16],
        &u[16..20],
        &u[20..]
    );
    Some((format!("{uuid}:{first}-{k}"), pick[1]))
}

/// What python-mysql-replication reports for the fixture events `evs`: the types it
/// knows (it leaves the others out), with log_pos, statement, xid and row count.
fn pyrepl_expected(evs: &[(&str, FileEvent)], rows_only: bool) -> Vec<serde_json::Value> {
    evs.iter()
        .filter(|(_, e)| e.log_pos != 0)
        .filter_map(|(_, e)| {
            let name = match e.type_code {
                2 => "QueryEvent",
                3 => "StopEvent",
                4 => "RotateEvent",
                5 => "IntvarEvent",
                13 => "RandEvent",
                14 => "UserVarEvent",
                15 => "FormatDescriptionEvent",
                16 => "XidEvent",
                19 => "TableMapEvent",
                23 | 30 => "WriteRowsEvent",
                24 | 31 => "UpdateRowsEvent",
                25 | 32 => "DeleteRowsEvent",
                29 => "RowsQueryLogEvent",
                33 => "GtidEvent",
                35 => "PreviousGtidsEvent",
                _ => return None,
            };
            if rows_only && e.rows.is_none() {
                return None;
            }
            let mut d = serde_json::json!({"type": name, "log_pos": e.log_pos});
            if let Some(q) = &e.query {
                d["query"] = q.clone().into();
            }
            if let Some(x) = e.xid {
                d["xid"] = x.into();
            }
            if let Some(n) = e.rows {
                d["rows"] = n.into();
            }
            Some(d)
        })
        .collect()
}

/// python-mysql-replication's lines reduced to what [`pyrepl_expected`] compares (row
/// values become their count).
fn pyrepl_reduced(got: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    got.into_iter()
        .map(|mut d| {
            if let Some(n) = d.get("rows").and_then(|r| r.as_array()).map(Vec::len) {
                d["rows"] = n.into();
            }
            d
        })
        .collect()
}

/// The MySQL dialect for stock clients, against archive-only sources holding real MySQL
/// 8 binlogs (no MySQL server can be installed here): mysql_async's binlog stream from
/// a file's start, from a position inside a file and by MySQL GTID set
/// (COM_BINLOG_DUMP_GTID), and python-mysql-replication with `is_mariadb=False` by
/// file/position, by GTID `auto_position` and with an `only_events` filter. Every event
/// must be the fixture's, byte for byte (mysql_async) or by type, log_pos, statement,
/// xid and row count (python-mysql-replication, rows decoded by mysql_common from the
/// fixture file), and every non-blocking read must end by itself.
#[test]
fn stock_mysql_clients_read_the_mysql8_fixtures_through_the_fake_primary() -> Result<()> {
    let (_work, cfg, http, ports) = archive_only_sources(false)?;
    let _server = ServerProcess::start(&server_bin(), &cfg, &http)?;
    let creds = ("repl", REPL_PASS);
    let mut gtid_sets = Vec::new();
    for (set, &port) in SETS.iter().zip(&ports) {
        let evs = fixture_events(set)?;
        let first = set.files[0];
        // mysql_async, COM_BINLOG_DUMP from the first file's start.
        let got = binlog_stream::read(
            port,
            creds,
            300,
            Request::Position {
                file: first,
                pos: 4,
            },
            READ_TIMEOUT,
        )
        .with_context(|| format!("{}: mysql_async from {first}:4", set.name))?;
        let head = got.first().context("an empty stream")?;
        assert_eq!(
            (head.type_code, head.log_pos),
            (4, 0),
            "{}: an artificial ROTATE first",
            set.name
        );
        assert_eq!(
            &head.bytes[19 + 8..head.bytes.len() - 4],
            first.as_bytes(),
            "{}: it names the file",
            set.name
        );
        assert_same_events(
            &format!("{}: mysql_async from {first}:4", set.name),
            &stored(&got),
            &sent(&evs),
        );

        // mysql_async from the middle event's offset in its file.
        let mid = evs.len() / 2;
        let (file, at) = (evs[mid].0, evs[mid].1.offset);
        let got = binlog_stream::read(
            port,
            creds,
            301,
            Request::Position { file, pos: at },
            READ_TIMEOUT,
        )
        .with_context(|| format!("{}: mysql_async from {file}:{at}", set.name))?;
        assert_same_events(
            &format!("{}: mysql_async from {file}:{at}", set.name),
            &stored(&got),
            &sent(&evs[mid..]),
        );

        // python-mysql-replication, is_mariadb=False, by file/position and row events only.
        let pw = format!("--password={REPL_PASS}");
        let got = pyrepl(port, 310, &["--mysql", &pw, "position", first])
            .with_context(|| format!("{}: python-mysql-replication from {first}", set.name))?;
        assert_eq!(
            pyrepl_reduced(got),
            pyrepl_expected(&evs, false),
            "{}: python-mysql-replication from {first}",
            set.name
        );
        // Without a file, the MySQL dialect asks SHOW BINARY LOG STATUS (falling back to
        // SHOW MASTER STATUS) and reads the newest binlog from offset 4.
        let last = *set.files.last().context("a set without files")?;
        let in_last: Vec<(&str, FileEvent)> =
            evs.iter().filter(|(f, _)| *f == last).cloned().collect();
        let got = pyrepl(port, 311, &["--mysql", &pw, "rows"])
            .with_context(|| format!("{}: python-mysql-replication rows", set.name))?;
        assert_eq!(
            pyrepl_reduced(got),
            pyrepl_expected(&in_last, true),
            "{}: python-mysql-replication only_events, newest binlog",
            set.name
        );

        // By MySQL GTID set: everything after the set's last transaction.
        let Some((gtid_set, next)) = middle_gtid_set(&evs) else {
            // 8.0.31's set has anonymous GTIDs only: nothing to ask by GTID.
            assert_eq!(
                set.name, "m831",
                "{}: no GTID events in the fixture",
                set.name
            );
            continue;
        };
        gtid_sets.push(gtid_set.clone());
        let got = binlog_stream::read(
            port,
            creds,
            302,
            Request::MysqlGtid(&gtid_set),
            READ_TIMEOUT,
        )
        .with_context(|| format!("{}: mysql_async after {gtid_set}", set.name))?;
        assert_same_events(
            &format!("{}: mysql_async after {gtid_set}", set.name),
            &stored(&got),
            &sent(&evs[next..]),
        );
        let got = pyrepl(port, 312, &["--mysql", &pw, "gtid", &gtid_set])
            .with_context(|| format!("{}: python-mysql-replication after {gtid_set}", set.name))?;
        assert_eq!(
            pyrepl_reduced(got),
            pyrepl_expected(&evs[next..], false),
            "{}: python-mysql-replication after {gtid_set}",
            set.name
        );
    }
    // MySQL 8.0.46's and RDS's sets have GTIDs (8.0.31's has anonymous ones only).
    assert!(gtid_sets.len() >= 2, "GTID requests made: {gtid_sets:?}");
    Ok(())
}
