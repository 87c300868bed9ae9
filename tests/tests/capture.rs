//! End-to-end capture tests against real MariaDB primaries started by the harness, with
//! binlog-server running as a real child process (`binlog-server-under-test`).
//!
//! Covers issue "Capture": byte-identity (several tables, a row over 1 MB, DDL, rotations
//! by size and by FLUSH BINARY LOGS, two sources side by side and a third one refused
//! with a definite error), SIGKILL of the daemon during continuous writes, primary
//! restart, a corrupted stored file found and re-pulled, purged binlogs before start and
//! while the daemon was down, the index lookups, and config refusal.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test capture`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use binlog_tests::*;
use serde_json::{json, Value};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

fn spec(name: &str, url: &str, server_id: u32) -> SourceSpec {
    SourceSpec {
        name: name.into(),
        url: url.into(),
        server_id,
        start: "\"earliest\"".into(),
    }
}

/// Fast settings so tests see state changes quickly.
const FAST: &str = "[capture]\nfsync_interval = \"20ms\"\nheartbeat_period = \"1s\"\npoll_interval = \"500ms\"\nreconnect_min_backoff = \"100ms\"\nreconnect_max_backoff = \"1s\"\n";

fn archive(dir: &Path, source: &str) -> PathBuf {
    dir.join("data").join(source)
}

/// A config with one source "db" on `db` and the FAST settings: (its directory, the
/// HTTP address, the config path).
fn one_source_config(db: &MariaDb) -> Result<(tempfile::TempDir, String, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = write_config_sources(dir.path(), &http, &[spec("db", &db.repl_url(), 4242)], FAST)?;
    Ok((dir, http, cfg))
}

fn load(db: &MariaDb, txns: u64) -> Result<u64> {
    WriteLoad::run(db, txns)
}

#[test]
fn byte_identical_archive_of_two_primaries() -> Result<()> {
    let db1 = MariaDb::start(MariaDbOptions {
        max_binlog_size: 64 * 1024,
        ..Default::default()
    })?;
    let db2 = MariaDb::start(MariaDbOptions {
        server_id: 2,
        gtid_domain_id: 7,
        ..Default::default()
    })?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let bad_url = db1.repl_url().replace(REPL_PASSWORD, "wrong-password");
    let cfg = write_config_sources(
        dir.path(),
        &http,
        &[
            spec("a", &db1.repl_url(), 4242),
            spec("b", &db2.repl_url(), 4243),
            spec("bad", &bad_url, 4244),
        ],
        FAST,
    )?;
    let server = ServerProcess::start(&bin(), &cfg, &http)?;

    db1.sql(
        "CREATE TABLE test.wide (id INT PRIMARY KEY, note VARCHAR(64), big LONGBLOB) ENGINE=InnoDB",
    )?;
    load(&db1, 1500)?;
    // A row over 1 MB: one ROWS event larger than max_binlog_size.
    db1.sql("INSERT INTO test.wide VALUES (1, 'big', REPEAT('x', 1500000))")?;
    db1.sql("ALTER TABLE test.wide ADD COLUMN extra INT NULL")?;
    db1.flush_binary_logs()?;
    db1.sql("UPDATE test.wide SET extra = 5, big = REPEAT('y', 1200000) WHERE id = 1")?;
    db1.flush_binary_logs()?;
    load(&db1, 500)?;
    load(&db2, 200)?;
    db2.flush_binary_logs()?;
    load(&db2, 50)?;

    wait_caught_up(&server, &db1, "a", Duration::from_secs(90))?;
    wait_caught_up(&server, &db2, "b", Duration::from_secs(90))?;
    let n1 = assert_archive_identical(&db1, &archive(dir.path(), "a"))?;
    let n2 = assert_archive_identical(&db2, &archive(dir.path(), "b"))?;
    assert!(
        n1 >= 5,
        "expected several rotations on db1, got {n1} closed files"
    );
    assert!(n2 >= 1);
    let files = wait_all_succ(&server, "a", Duration::from_secs(60))?;
    wait_all_succ(&server, "b", Duration::from_secs(60))?;
    // Every SUCC file records the SHA-256 of the primary's bytes.
    for f in files["files"].as_array().unwrap() {
        if f["state"] == "SUCC" {
            let name = f["name"].as_str().unwrap();
            assert_eq!(
                f["sha256"].as_str().unwrap(),
                sha256_file(&db1.binlog_path(name))?,
                "{name}"
            );
        }
    }

    // Stock mariadb-binlog reads the archived files.
    let first = db1.binlog_files()?[0].0.clone();
    let out = Command::new(require_tool("mariadb-binlog"))
        .arg(archive(dir.path(), "a").join(&first))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The third source was refused with a definite error while the others streamed.
    let bad = wait_for("source bad to fail", Duration::from_secs(30), || {
        let s = server.get_json("/v1/sources/bad")?;
        Ok((s["state"] == "failed").then_some(s))
    })?;
    let err = bad["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("1045") || err.contains("denied"), "{err}");
    assert!(!err.contains("wrong-password"), "password leaked: {err}");
    let all = server.get_json("/v1/sources")?;
    assert_eq!(all.as_array().map(|a| a.len()), Some(3));
    assert_eq!(server.get_json("/v1/sources/a")?["state"], "streaming");

    // Index: the newest GTID maps to a stored transaction that starts with a GTID event.
    let gtid_pos = db1.gtid_binlog_pos()?;
    let g = gtid_pos
        .split(',')
        .find(|g| g.starts_with("0-1-"))
        .unwrap()
        .to_string();
    let v = server.get_json(&format!("/v1/sources/a/lookup?gtid={g}"))?;
    let t = &v["transaction"];
    let file = archive(dir.path(), "a").join(t["file"].as_str().unwrap());
    let bytes = std::fs::read(file)?;
    let start = t["start"].as_u64().unwrap() as usize;
    assert_eq!(
        bytes[start + 4],
        162,
        "a MariaDB GTID event starts the transaction"
    );
    assert!(t["end"].as_u64().unwrap() as usize <= bytes.len());
    let v = server.get_json("/v1/sources/a/lookup?time=1970-01-01T00:00:00Z")?;
    assert_eq!(v["first_after"]["ordinal"], 0);
    let (code, _) = server.get_text("/v1/sources/a/lookup?gtid=9-9-9")?;
    assert_eq!(code, 404);
    let (code, _) = server.get_text("/v1/sources/a/lookup?time=yesterday")?;
    assert_eq!(code, 400);
    let (code, body) = server.get_text("/v1/sources/nope/binlogs")?;
    assert_eq!(code, 404, "{body}");

    // Metrics.
    let (code, m) = server.get_text("/metrics")?;
    assert_eq!(code, 200);
    assert!(
        m.contains("binlog_server_received_bytes_total{source=\"a\"}"),
        "{m}"
    );
    assert!(!m.contains("binlog_server_crc_failures_total{source=\"a\"} 1"));
    Ok(())
}

#[test]
fn sigkill_during_writes_loses_and_duplicates_nothing() -> Result<()> {
    let db = MariaDb::start(MariaDbOptions {
        max_binlog_size: 32 * 1024,
        ..Default::default()
    })?;
    let (dir, http, cfg) = one_source_config(&db)?;
    let mut server = ServerProcess::start(&bin(), &cfg, &http)?;
    let writes = WriteLoad::start(
        &db,
        WriteLoadOptions {
            max_duration: Duration::from_secs(60),
            ..Default::default()
        },
    )?;
    for round in 0..6u64 {
        std::thread::sleep(Duration::from_millis(700 + 300 * (round % 3)));
        server.kill9()?;
        std::thread::sleep(Duration::from_millis(200));
        server = ServerProcess::start(&bin(), &cfg, &http)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let n = writes.stop()?;
    assert!(n > 100, "the load wrote only {n} transactions");
    db.flush_binary_logs()?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(90))?;
    let closed = assert_archive_identical(&db, &archive(dir.path(), "db"))?;
    assert!(closed >= 3, "{closed}");
    wait_all_succ(&server, "db", Duration::from_secs(60))?;
    // The index survived the kills too: GTID 0-1-k is the k-th transaction, exactly once.
    let pos = db.gtid_binlog_pos()?;
    let last: u64 = pos.strip_prefix("0-1-").unwrap().parse()?;
    let check_index = |server: &ServerProcess| -> Result<()> {
        for k in [1, last / 3, last / 2, last - 1, last] {
            let v = server.get_json(&format!("/v1/sources/db/lookup?gtid=0-1-{k}"))?;
            assert_eq!(
                v["transaction"]["ordinal"].as_u64(),
                Some(k - 1),
                "GTID 0-1-{k}: {v}"
            );
        }
        Ok(())
    };
    check_index(&server)?;
    // A lost index is rebuilt from the archived files on start.
    server.stop()?;
    std::fs::remove_dir_all(dir.path().join("data").join("index.rocksdb"))?;
    let server = ServerProcess::start(&bin(), &cfg, &http)?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(60))?;
    check_index(&server)?;
    Ok(())
}

#[test]
fn primary_restart_and_crash_are_followed_without_gap() -> Result<()> {
    let mut db = MariaDb::start(MariaDbOptions {
        max_binlog_size: 64 * 1024,
        ..Default::default()
    })?;
    let (dir, http, cfg) = one_source_config(&db)?;
    let mut server = ServerProcess::start(&bin(), &cfg, &http)?;
    load(&db, 300)?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(60))?;
    db.restart()?;
    load(&db, 300)?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(60))?;
    // A crash of the primary: its open file keeps LOG_EVENT_BINLOG_IN_USE_F and has no
    // ROTATE/STOP; the archived copy must still be identical and SUCC.
    db.kill9()?;
    db.restart()?;
    load(&db, 100)?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(60))?;
    let s = server.get_json("/v1/sources/db")?;
    assert!(s["reconnects"].as_u64().unwrap() >= 2, "{s}");
    // binlog-server down while the primary restarts: the file it was on ends with STOP,
    // and after its own restart it must close that file (REPORTED, then SUCC).
    server.stop()?;
    db.restart()?;
    load(&db, 50)?;
    let server = ServerProcess::start(&bin(), &cfg, &http)?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(90))?;
    assert_archive_identical(&db, &archive(dir.path(), "db"))?;
    let v = wait_all_succ(&server, "db", Duration::from_secs(60))?;
    // A clean shutdown ends a file with STOP, and the files on both sides line up.
    let names: Vec<String> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let primary: Vec<String> = db.binlog_files()?.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, primary, "archive and primary list different files");
    let crashed = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["info"].as_str().unwrap_or_default().contains("crash"))
        .count();
    assert_eq!(
        crashed, 1,
        "one file was closed by the primary's crash: {v}"
    );
    Ok(())
}

#[test]
fn corrupted_stored_file_is_found_and_pulled_again() -> Result<()> {
    let db = MariaDb::start(MariaDbOptions {
        max_binlog_size: 32 * 1024,
        ..Default::default()
    })?;
    let (dir, http, cfg) = one_source_config(&db)?;
    let server = ServerProcess::start(&bin(), &cfg, &http)?;
    load(&db, 400)?;
    db.flush_binary_logs()?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(60))?;
    wait_all_succ(&server, "db", Duration::from_secs(60))?;

    let victim = db.binlog_files()?[1].0.clone();
    let path = archive(dir.path(), "db").join(&victim);
    let mut bytes = std::fs::read(&path)?;
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5A;
    std::fs::write(&path, &bytes)?;
    assert_ne!(sha256_file(&path)?, sha256_file(&db.binlog_path(&victim))?);

    let (code, body) = server.post_json(
        &format!("/v1/sources/db/binlogs/{victim}/check"),
        &json!({}),
    )?;
    assert_eq!(code, 202, "{body}");
    let f = wait_for(
        "the corrupted file to be repaired",
        Duration::from_secs(60),
        || {
            let v = server.get_json("/v1/sources/db/binlogs")?;
            let f = v["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == victim.as_str())
                .cloned()
                .unwrap_or(Value::Null);
            let info = f["info"].as_str().unwrap_or_default();
            if f["state"] == "SUCC" && info.contains("re-pulled") {
                Ok(Some(f))
            } else {
                Err(anyhow::anyhow!("{} {}: {}", f["name"], f["state"], info))
            }
        },
    )?;
    let info = f["info"].as_str().unwrap();
    assert!(
        info.contains("offset"),
        "the FAIL reason should name the offset: {info}"
    );
    assert_eq!(sha256_file(&path)?, sha256_file(&db.binlog_path(&victim))?);
    assert_eq!(f["sha256"].as_str().unwrap(), sha256_file(&path)?);
    Ok(())
}

/// PURGE BINARY LOGS TO `file`, repeated until the primary really dropped the older
/// files (MariaDB keeps binlogs its last binlog checkpoint still needs).
fn purge_to(db: &MariaDb, file: &str) -> Result<()> {
    wait_for(
        &format!("the primary to purge up to {file}"),
        Duration::from_secs(30),
        || {
            db.sql("FLUSH LOGS")?;
            db.sql(&format!("PURGE BINARY LOGS TO '{file}'"))?;
            let first = db.binlog_files()?[0].0.clone();
            Ok((first == file).then_some(()))
        },
    )
}

#[test]
fn purged_binlogs_are_reported_never_silent() -> Result<()> {
    let db = MariaDb::start(MariaDbOptions::default())?;
    load(&db, 50)?;
    for _ in 0..3 {
        db.flush_binary_logs()?;
        load(&db, 20)?;
    }
    let oldest_kept = db.binlog_files()?[2].0.clone();
    purge_to(&db, &oldest_kept)?;

    // (a) capture starts at the oldest binlog the primary still has, and says so.
    let (_dir, http, cfg) = one_source_config(&db)?;
    let mut server = ServerProcess::start(&bin(), &cfg, &http)?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(60))?;
    let s = server.get_json("/v1/sources/db")?;
    let notes = s["notes"].to_string();
    assert!(
        notes.contains(&oldest_kept) && notes.contains("purged"),
        "{notes}"
    );
    let v = server.get_json("/v1/sources/db/binlogs")?;
    assert_eq!(v["files"][0]["name"], oldest_kept.as_str());

    // (b) binlogs purged while binlog-server was down: a definite error and a gap.
    server.stop()?;
    load(&db, 20)?;
    for _ in 0..3 {
        db.flush_binary_logs()?;
        load(&db, 10)?;
    }
    let (now_current, _) = db.master_status()?;
    purge_to(&db, &now_current)?;
    let server = ServerProcess::start(&bin(), &cfg, &http)?;
    let s = wait_for(
        "the source to fail with 1236",
        Duration::from_secs(30),
        || {
            let s = server.get_json("/v1/sources/db")?;
            Ok((s["state"] == "failed").then_some(s))
        },
    )?;
    let err = s["last_error"].as_str().unwrap();
    assert!(err.contains("1236"), "{err}");
    let v = server.get_json("/v1/sources/db/binlogs")?;
    let gaps = v["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{v}");
    assert_eq!(gaps[0]["before_file"], now_current.as_str());
    // It stays failed (no hot retry loop) until the operator accepts the gap: polled
    // every 100 ms for 2 s, failing at the first answer that is not failed.
    let watch = std::time::Instant::now();
    loop {
        let s = server.get_json("/v1/sources/db")?;
        assert_eq!(s["state"], "failed", "after {:?}: {s}", watch.elapsed());
        assert_eq!(s["reconnects"], 0, "after {:?}: {s}", watch.elapsed());
        if watch.elapsed() >= Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = server.post_json("/v1/sources/db/restart", &json!({"accept_gap": true}))?;
    assert_eq!(code, 202, "{body}");
    load(&db, 10)?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(60))?;
    Ok(())
}

#[test]
fn bad_config_is_refused_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |text: &str| -> Result<(i32, String)> {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text)?;
        let out = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&p)
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let data = toml_string(dir.path().join("d").to_str().unwrap());
    let src = "[[source]]\nname = \"db1\"\nurl = \"mysql://repl:pw@127.0.0.1:1\"\nserver_id = 5\n";
    let (code, err) = run(&format!("data_dir = {data}\nbogus_key = 1\n{src}"))?;
    assert_eq!(code, 2);
    assert!(err.contains("bogus_key"), "{err}");
    let (code, err) = run(&format!("data_dir = {data}\n{src}{src}"))?;
    assert_eq!(code, 2);
    assert!(
        err.contains("source[1].name") && err.contains("duplicate"),
        "{err}"
    );
    let (code, err) = run(&format!("data_dir = \"/proc/no/such/dir\"\n{src}"))?;
    assert_eq!(code, 2);
    assert!(err.contains("data_dir"), "{err}");
    let (code, err) = run(&format!("data_dir = {data}\n[[source]]\nname = \"x\"\nurl = \"mysql://repl:pw@127.0.0.1:1\"\nserver_id = 5\nstart = \"yesterday\"\n"))?;
    assert_eq!(code, 2);
    assert!(err.contains("start"), "{err}");
    assert!(!err.contains("pw@"), "password leaked: {err}");
    Ok(())
}

/// Makes a CA and a server certificate for 127.0.0.1 with the openssl CLI.
fn make_certs(dir: &Path) -> Result<()> {
    let openssl = require_tool("openssl");
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new(&openssl)
            .current_dir(dir)
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=binlog-server test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ])?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ])?;
    Ok(())
}

#[test]
fn tls_primary_with_verified_certificate() -> Result<()> {
    let certs = tempfile::tempdir()?;
    make_certs(certs.path())?;
    let p = |f: &str| certs.path().join(f).display().to_string();
    let db = MariaDb::start(MariaDbOptions {
        extra_args: vec![
            format!("--ssl-ca={}", p("ca.pem")),
            format!("--ssl-cert={}", p("server.pem")),
            format!("--ssl-key={}", p("server.key")),
            "--require-secure-transport=ON".into(),
        ],
        ..Default::default()
    })?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let url = format!(
        "{}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
        db.repl_url(),
        p("ca.pem")
    );
    let cfg = write_config_sources(dir.path(), &http, &[spec("tls", &url, 4242)], FAST)?;
    let server = ServerProcess::start(&bin(), &cfg, &http)?;
    load(&db, 200)?;
    db.flush_binary_logs()?;
    wait_caught_up(&server, &db, "tls", Duration::from_secs(60))?;
    assert_archive_identical(&db, &archive(dir.path(), "tls"))?;
    wait_all_succ(&server, "tls", Duration::from_secs(60))?;
    // The primary refuses plain connections, so everything above went over TLS.
    let ssl_conns: u64 = db
        .sql_value("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'SSL_ACCEPTS'")?
        .parse()?;
    assert!(ssl_conns >= 2, "{ssl_conns}");
    Ok(())
}

#[test]
fn start_current_and_named_file() -> Result<()> {
    let db = MariaDb::start(MariaDbOptions::default())?;
    load(&db, 20)?;
    for _ in 0..3 {
        db.flush_binary_logs()?;
        load(&db, 10)?;
    }
    let files = db.binlog_files()?;
    let (current, _) = db.master_status()?;
    let second = files[1].0.clone();
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let mut cur = spec("cur", &db.repl_url(), 4242);
    cur.start = "\"current\"".into();
    let mut named = spec("named", &db.repl_url(), 4243);
    named.start = format!("{{ file = \"{second}\", pos = 4 }}");
    let cfg = write_config_sources(dir.path(), &http, &[cur, named], FAST)?;
    let server = ServerProcess::start(&bin(), &cfg, &http)?;
    load(&db, 10)?;
    wait_caught_up(&server, &db, "cur", Duration::from_secs(60))?;
    wait_caught_up(&server, &db, "named", Duration::from_secs(60))?;
    let first = |src: &str| -> Result<String> {
        let v = server.get_json(&format!("/v1/sources/{src}/binlogs"))?;
        Ok(v["files"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    assert_eq!(first("cur")?, current);
    assert_eq!(first("named")?, second);
    // Files are archived whole from position 4 whatever the start: every closed file
    // the archive holds equals the primary's.
    for src in ["cur", "named"] {
        let v = server.get_json(&format!("/v1/sources/{src}/binlogs"))?;
        for f in v["files"].as_array().unwrap() {
            let name = f["name"].as_str().unwrap();
            if name != db.master_status()?.0 {
                assert_eq!(
                    sha256_file(&archive(dir.path(), src).join(name))?,
                    sha256_file(&db.binlog_path(name))?,
                    "{src}/{name}"
                );
            }
        }
    }
    Ok(())
}
