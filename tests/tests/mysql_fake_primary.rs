//! The MySQL 8 dialect end to end, the only live check of it possible here (MySQL cannot
//! be installed on these machines): real MySQL 8 binlog files from the fixture corpus are
//! put in an archive-only source (`capture = false`) whose fake primary presents the
//! files' MySQL version in its handshake; a second source captures from that fake primary
//! in the MySQL dialect (`@source_binlog_checksum`, GTID_MODE / SERVER_UUID reads,
//! SHOW BINARY LOGS, COM_REGISTER_SLAVE, COM_BINLOG_DUMP). The captured files must be
//! byte-identical to the fixtures.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test mysql_fake_primary`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use binlog_tests::*;

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

#[test]
fn mysql8_binlogs_stream_through_the_fake_primary_byte_identical() -> Result<()> {
    let corpus = corpus_dir();
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let mut text = format!(
        "data_dir = {}\n",
        toml_string(data.to_str().context("utf-8")?)
    );
    let http = format!("127.0.0.1:{}", free_port());
    text.push_str(&format!("[http]\nlisten = {}\n", toml_string(&http)));
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
        text.push_str(&format!(
            "[[source]]\nname = \"{n}\"\nurl = \"mysql://unused@127.0.0.1:1\"\nserver_id = {id}\ncapture = false\n\
             [source.replication]\nlisten = \"127.0.0.1:{port}\"\nuser = \"repl\"\npassword = \"s3cret\"\n\
             [[source]]\nname = \"{n}-copy\"\nurl = \"mysql://repl:s3cret@127.0.0.1:{port}\"\nserver_id = {id2}\nstart = \"earliest\"\n",
            n = set.name,
            id = 100 + i,
            id2 = 200 + i,
        ));
    }
    let cfg = work.path().join("binlog-server.toml");
    std::fs::write(&cfg, text)?;
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
