//! Tests of the test harness itself (`binlog-tests`): a real MariaDB started by
//! [`MariaDb`], a [`WriteLoad`] that makes it rotate its binlogs, restarts (clean and
//! after `kill -9`) that keep the data, and the small helpers.
//!
//! Needs MariaDB 10.11 from `bash scripts/setup.sh`. Run with
//! `cargo test -p binlog-tests --test harness`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use binlog_tests::{
    file_tail, free_port, require_tool, sha256_file, toml_string, wait_for, write_config, MariaDb,
    MariaDbOptions, ServerProcess, WriteLoad, WriteLoadOptions,
};

/// Per-table fingerprint of the write-load tables: rows, sum of k, sum of CRC32(payload).
fn fingerprint(db: &MariaDb, tables: usize) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for t in 1..=tables {
        out.extend(db.sql_rows(&format!(
            "SELECT COUNT(*), COALESCE(SUM(k), 0), COALESCE(SUM(CRC32(payload)), 0) \
             FROM test.load_t{t}"
        ))?);
    }
    Ok(out)
}

/// Checks SHOW BINARY LOGS against the files on disk; returns the listing.
fn check_binlogs(db: &MariaDb, what: &str) -> Result<Vec<(String, u64)>> {
    let files = db.binlog_files()?;
    assert!(!files.is_empty(), "{what}: SHOW BINARY LOGS is empty");
    for (i, (name, size)) in files.iter().enumerate() {
        // mysql-bin.000001, mysql-bin.000002, ...: consecutive six-digit numbers.
        assert_eq!(
            name,
            &format!("mysql-bin.{:06}", i + 1),
            "{what}: unexpected binlog name in {files:?}"
        );
        let path = db.binlog_path(name);
        let on_disk = std::fs::metadata(&path)
            .with_context(|| format!("stat {}", path.display()))?
            .len();
        let magic = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        assert_eq!(
            &magic[..4],
            b"\xfebin",
            "{what}: {name} lacks the binlog magic"
        );
        if i + 1 < files.len() {
            assert_eq!(
                *size, on_disk,
                "{what}: closed file {name}: SHOW BINARY LOGS says {size}, disk has {on_disk}"
            );
        } else {
            eprintln!("{what}: active file {name}: SHOW BINARY LOGS {size}, on disk {on_disk}");
        }
    }
    Ok(files)
}

#[test]
fn mariadb_rotates_binlogs_and_keeps_data_across_restarts() -> Result<()> {
    let mut db = MariaDb::start(MariaDbOptions {
        max_binlog_size: 4096,
        ..Default::default()
    })?;
    assert!(db.is_running());
    assert!(db
        .repl_url()
        .ends_with(&format!("@127.0.0.1:{}", db.port())));
    db.sql(
        "CREATE TABLE test.t1 (id INT PRIMARY KEY, v VARCHAR(64));\n\
         INSERT INTO test.t1 VALUES (1, 'before restart');",
    )?;

    // The replication user can do what a fake replica needs, over TCP, and the admin
    // user can administer.
    for (user, password, sql) in [
        (
            "repl",
            "replpass",
            "SHOW BINARY LOGS; SELECT @@global.binlog_checksum",
        ),
        (
            "admin",
            "adminpass",
            "SHOW SLAVE STATUS; SELECT COUNT(*) FROM test.t1",
        ),
    ] {
        let out = std::process::Command::new(require_tool("mariadb"))
            .args(["--no-defaults", "--host=127.0.0.1", "--batch"])
            .arg(format!("--port={}", db.port()))
            .arg(format!("--user={user}"))
            .arg(format!("--password={password}"))
            .arg(format!("--execute={sql}"))
            .output()
            .with_context(|| format!("run mariadb as {user}"))?;
        assert!(
            out.status.success(),
            "{user} cannot run {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(db
        .admin_url()
        .starts_with("mysql://admin:adminpass@127.0.0.1:"));

    let opts = WriteLoadOptions {
        max_txns: 200,
        max_duration: Duration::from_secs(120),
        ..Default::default()
    };
    let tables = opts.tables;
    let load = WriteLoad::start(&db, opts)?;
    let committed = load.wait()?;
    assert_eq!(committed, 200, "the write load stopped early");

    let before = fingerprint(&db, tables)?;
    let rows: u64 = before
        .iter()
        .map(|r| r[0].parse::<u64>().unwrap_or(0))
        .sum();
    // 600 INSERTs and 40 DELETEs (some may hit an already deleted id).
    assert!(
        (560..=600).contains(&rows),
        "unexpected row count {rows}: {before:?}"
    );
    let gtid_before = db.gtid_binlog_pos()?;
    // One GTID per transaction: the user/grant set-up, t1, the load tables and 200 loads.
    assert!(
        gtid_before.starts_with("0-1-"),
        "gtid_binlog_pos {gtid_before}"
    );

    let files = check_binlogs(&db, "after the load")?;
    assert!(
        files.len() > 1,
        "max_binlog_size 4096 should rotate: {files:?}"
    );

    // A clean restart: the active file gets its final events, a new file is opened.
    let pid_before = db.pid();
    db.restart()?;
    assert!(db.is_running());
    assert_ne!(db.pid(), pid_before);
    assert_eq!(
        fingerprint(&db, tables)?,
        before,
        "data changed across a restart"
    );
    assert_eq!(
        db.sql_value("SELECT v FROM test.t1 WHERE id = 1")?,
        "before restart"
    );
    assert_eq!(db.gtid_binlog_pos()?, gtid_before);
    let after = check_binlogs(&db, "after a clean restart")?;
    assert_eq!(
        after.len(),
        files.len() + 1,
        "a restart opens one new binlog"
    );
    // Files closed before the restart are untouched.
    assert_eq!(&after[..files.len() - 1], &files[..files.len() - 1]);

    // A crash: kill -9, then start on the same datadir and port.
    db.sql("INSERT INTO test.t1 VALUES (2, 'before kill -9')")?;
    let port = db.port();
    db.kill9()?;
    assert!(!db.is_running());
    db.restart()?;
    assert_eq!(db.port(), port);
    assert_eq!(
        db.sql_value("SELECT v FROM test.t1 WHERE id = 2")?,
        "before kill -9"
    );
    assert_eq!(fingerprint(&db, tables)?, before);
    let crashed = check_binlogs(&db, "after kill -9 and restart")?;
    assert_eq!(crashed.len(), after.len() + 1);

    db.flush_binary_logs()?;
    assert_eq!(db.binlog_files()?.len(), crashed.len() + 1);

    db.stop()?;
    assert!(!db.is_running());
    assert!(db.pid().is_none());
    // stop() twice is harmless; Drop stops nothing more.
    db.stop()?;
    Ok(())
}

#[test]
fn helpers_behave() -> Result<()> {
    assert!(require_tool("mariadbd").is_file());
    for tool in [
        "mariadb",
        "mariadb-install-db",
        "mariadb-binlog",
        "mariadb-backup",
        "mydumper",
    ] {
        require_tool(tool);
    }
    let err = std::panic::catch_unwind(|| require_tool("no-such-tool-xyz"))
        .expect_err("a missing tool panics");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("bash scripts/setup.sh"),
        "panic message: {msg}"
    );

    assert_ne!(free_port(), 0);

    let dir = tempfile::tempdir()?;
    let f = dir.path().join("abc");
    std::fs::write(&f, b"abc")?;
    assert_eq!(
        sha256_file(&f)?,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    std::fs::write(&f, "one\ntwo\nthree\n")?;
    assert_eq!(file_tail(&f, 2), "two\nthree");

    let mut calls = 0;
    let v = wait_for("the third call", Duration::from_secs(5), || {
        calls += 1;
        Ok((calls == 3).then_some(calls))
    })?;
    assert_eq!(v, 3);
    let err = wait_for::<()>(
        "something that never happens",
        Duration::from_millis(300),
        || anyhow::bail!("still broken"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("something that never happens") && err.contains("still broken"),
        "{err}"
    );

    let cfg = write_config(
        dir.path(),
        "127.0.0.1:1234",
        &[("m1", "mysql://repl:replpass@127.0.0.1:3306", 9001)],
        "[catalog]\nurl = \"sqlite://x\"",
    )?;
    let text = std::fs::read_to_string(&cfg)?;
    let data_dir = dir.path().join("data");
    assert!(text.starts_with(&format!(
        "data_dir = {}\n",
        toml_string(data_dir.to_str().unwrap_or_default())
    )));
    for needle in [
        "[http]\nlisten = \"127.0.0.1:1234\"",
        "[[source]]\nname = \"m1\"\nurl = \"mysql://repl:replpass@127.0.0.1:3306\"\nserver_id = 9001\nstart = \"earliest\"",
        "[catalog]\nurl = \"sqlite://x\"\n\n[http]",
    ] {
        assert!(text.contains(needle), "config lacks {needle:?}:\n{text}");
    }
    assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    Ok(())
}

#[test]
fn server_process_reports_an_early_exit_with_its_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = write_config(dir.path(), &addr, &[], "")?;
    // `false serve --config ...` exits 1 at once: start must fail fast, not in 30 s.
    let started = std::time::Instant::now();
    let err = ServerProcess::start(&require_tool("false"), &cfg, &addr)
        .expect_err("a binary that exits cannot become healthy");
    let msg = format!("{err:#}");
    assert!(msg.contains("exited during start-up"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(Path::new(&dir.path().join("server.log")).exists());
    let err = ServerProcess::start(&dir.path().join("missing"), &cfg, &addr)
        .expect_err("a missing binary");
    assert!(format!("{err:#}").contains("missing"));
    Ok(())
}

/// The PostgreSQL of the fleet tests: a fresh server answers over TCP, keeps what is
/// written, is refused nothing as its superuser, and is gone (port closed, PID reaped)
/// once stopped by its PID; two run side by side on their own ports.
#[test]
fn postgres_starts_answers_and_stops_by_pid() -> Result<()> {
    let mut a = binlog_tests::Postgres::start()?;
    let b = binlog_tests::Postgres::start()?;
    assert_ne!(a.port, b.port);
    a.sql(
        "CREATE TABLE leases (source text PRIMARY KEY, owner text NOT NULL, epoch bigint NOT NULL)",
    )?;
    a.sql("INSERT INTO leases VALUES ('db1', 'node-a', 1)")?;
    // One compare-and-set: only the row whose epoch matches changes.
    a.sql(
        "UPDATE leases SET owner = 'node-b', epoch = epoch + 1 WHERE source = 'db1' AND epoch = 1",
    )?;
    a.sql(
        "UPDATE leases SET owner = 'node-c', epoch = epoch + 1 WHERE source = 'db1' AND epoch = 1",
    )?;
    assert_eq!(
        a.sql("SELECT owner || '|' || epoch FROM leases")?,
        "node-b|2"
    );
    assert!(
        b.sql("SELECT count(*) FROM leases").is_err(),
        "b has its own data directory"
    );
    assert_eq!(a.sql("SELECT current_user")?, binlog_tests::PG_USER);
    let pid = a.pid().context("a runs")?;
    let port = a.port;
    a.stop()?;
    assert!(a.pid().is_none());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open after postgres (pid {pid}) stopped"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "postgres pid {pid} still exists"
    );
    Ok(())
}
