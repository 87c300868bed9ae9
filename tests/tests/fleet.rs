//! binlog-server nodes on a shared PostgreSQL catalog (issue 21, the fleet). Every
//! server here is real: the harness's throw-away PostgreSQL ([`Postgres`]) and MariaDB
//! primaries, and binlog-server as a child process.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test fleet`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use binlog_tests::*;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

/// Fast settings so the test sees state changes quickly.
const FAST: &str = "[capture]\nfsync_interval = \"20ms\"\nheartbeat_period = \"1s\"\npoll_interval = \"500ms\"\nreconnect_min_backoff = \"100ms\"\nreconnect_max_backoff = \"1s\"\n";

fn load(db: &MariaDb, txns: u64) -> Result<u64> {
    WriteLoad::start(
        db,
        WriteLoadOptions {
            max_txns: txns,
            max_duration: Duration::from_secs(120),
            ..Default::default()
        },
    )?
    .wait()
}

/// One node whose catalog is a PostgreSQL database (its password from `password_env`)
/// captures as it does on SQLite: byte-identical files, every closed one SUCC with the
/// primary's SHA-256, across a SIGKILL; the rows are in PostgreSQL and no SQLite file
/// is made.
#[test]
fn a_node_on_a_postgres_catalog_captures_and_survives_sigkill() -> Result<()> {
    let pg = Postgres::start()?;
    pg.sql("CREATE DATABASE node_a")?;
    let db = MariaDb::start(MariaDbOptions {
        max_binlog_size: 32 * 1024,
        ..Default::default()
    })?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    // The harness's server trusts loopback, so any password is accepted: this checks
    // that password_env is read and passed, not PostgreSQL's authentication.
    std::env::set_var("BINLOG_TEST_CATALOG_PASSWORD", "catalog-pw");
    let extra = format!(
        "{FAST}[catalog]\nurl = {}\npassword_env = \"BINLOG_TEST_CATALOG_PASSWORD\"\n",
        toml_string(&pg.url_for("node_a"))
    );
    let spec = SourceSpec {
        name: "db".into(),
        url: db.repl_url(),
        server_id: 4242,
        start: "\"earliest\"".into(),
    };
    let cfg = write_config_sources(dir.path(), &http, &[spec], &extra)?;
    let mut server = ServerProcess::start(&bin(), &cfg, &http)?;
    load(&db, 600)?;
    server.kill9()?;
    load(&db, 300)?;
    server = ServerProcess::start(&bin(), &cfg, &http)?;
    load(&db, 300)?;
    db.flush_binary_logs()?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(90))?;
    let closed = assert_archive_identical(&db, &dir.path().join("data").join("db"))?;
    assert!(
        closed >= 3,
        "expected several rotations, got {closed} closed files"
    );
    let files = wait_all_succ(&server, "db", Duration::from_secs(60))?;

    // What the API shows is what PostgreSQL holds.
    let succ: Vec<String> = files["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["state"] == "SUCC")
        .map(|f| {
            format!(
                "{}|{}",
                f["name"].as_str().unwrap_or(""),
                f["sha256"].as_str().unwrap_or("")
            )
        })
        .collect();
    let in_pg = pg.sql_in(
        "node_a",
        "SELECT name, sha256 FROM binlog_files WHERE source = 'db' AND state = 'SUCC' \
         ORDER BY seq, name",
    )?;
    assert!(
        succ.len() >= closed,
        "{} SUCC files of {closed} closed",
        succ.len()
    );
    assert_eq!(in_pg.lines().collect::<Vec<_>>(), succ);
    for line in &succ {
        let (name, sha) = line.split_once('|').expect("name|sha");
        assert_eq!(sha, sha256_file(&db.binlog_path(name))?, "{name}");
    }
    assert!(
        !dir.path().join("data").join("catalog.db").exists(),
        "a postgres catalog must not leave an SQLite file"
    );
    server.stop()?;
    Ok(())
}
