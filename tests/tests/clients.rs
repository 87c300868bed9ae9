//! Stock binlog clients against the real sandbox primary and against the fake primary
//! serving the archive of that primary, with the results compared (not just "no
//! error"). First case: `mariadb-binlog --read-from-remote-server --raw --to-last-log`,
//! which sends BINLOG_DUMP_NON_BLOCK and announces `@master_binlog_checksum='NONE'`: the
//! command must end by itself against both, and write the same files, under the same
//! names, with the same bytes as the primary's binlogs.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test clients`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use binlog_tests::*;

fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

/// The table every case writes to.
const SCHEMA: &str =
    "CREATE DATABASE c; CREATE TABLE c.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(64))";

/// [`SCHEMA`] with a counter column for updates.
const SCHEMA_N: &str =
    "CREATE DATABASE c; CREATE TABLE c.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(64), n INT)";

/// A sandbox primary with `schema`, binlog-server capturing it, and the source's fake
/// primary on a free port: `(sandbox, fake primary's port)`.
fn sandbox(schema: &'static str) -> Result<(Sandbox, u16)> {
    let fake_port = free_port();
    let sb = Sandbox::builder(server_bin())
        .source_replication(fake_port)
        .setup(move |db| {
            db.sql(schema)?;
            Ok(())
        })
        .start()?;
    Ok((sb, fake_port))
}

/// How long a `--to-last-log` fetch of a few small binlogs may take before it counts as
/// "never ends" (it ends in well under a second against the real primary).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// `mariadb-binlog --raw --to-last-log` from `first` on 127.0.0.1:`port` into `out`.
fn fetch_raw(port: u16, first: &str, out: &Path) -> Result<()> {
    fetch_raw_with(port, first, out, &[])
}

/// [`fetch_raw`] with more options (`--start-position=N`).
fn fetch_raw_with(port: u16, first: &str, out: &Path, extra: &[String]) -> Result<()> {
    mariadb_binlog_raw(port, first, out, extra, FETCH_TIMEOUT)
}

/// `mariadb-binlog --read-from-remote-server --to-last-log` (text mode) from `first` on
/// 127.0.0.1:`port`: its output without the `#` comment lines (they carry the server id
/// and timestamps of made-up events, which legitimately differ); an error when it fails
/// or does not end within [`FETCH_TIMEOUT`].
fn fetch_text(port: u16, first: &str) -> Result<Vec<String>> {
    fetch_text_with(port, first, &[])
}

/// [`fetch_text`] with more options (`--start-datetime`, `--stop-datetime`), in UTC.
fn fetch_text_with(port: u16, first: &str, extra: &[String]) -> Result<Vec<String>> {
    let work = tempfile::tempdir()?;
    let out_path = work.path().join("out.sql");
    let mut cmd = Command::new(require_tool("mariadb-binlog"));
    cmd.args([
        "--read-from-remote-server",
        "--host=127.0.0.1",
        &format!("--port={port}"),
        &format!("--user={REPL_USER}"),
        &format!("--password={REPL_PASSWORD}"),
        "--to-last-log",
    ])
    .args(extra)
    .arg(first)
    .env("TZ", "UTC")
    .stdout(std::fs::File::create(&out_path)?);
    run_bounded(
        &mut cmd,
        FETCH_TIMEOUT,
        &format!("mariadb-binlog --to-last-log (text) against port {port}"),
    )?;
    Ok(std::fs::read_to_string(&out_path)?
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Waits until the primary's binlog end stays put for half a second (MariaDB writes its
/// BINLOG_CHECKPOINT event a moment after a commit), then until the archive caught up:
/// both servers then hold the same binlogs, and a comparison cannot race a late event.
fn settle(sb: &Sandbox) -> Result<()> {
    let db = sb.primary();
    wait_for(
        "the primary's binlog end to settle",
        Duration::from_secs(30),
        || {
            let before = db.master_status()?;
            std::thread::sleep(Duration::from_millis(500));
            Ok((db.master_status()? == before).then_some(()))
        },
    )?;
    sb.wait_caught_up()
}

/// The files in `dir`, by name, with their bytes.
fn files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        v.push((name, std::fs::read(e.path())?));
    }
    v.sort();
    Ok(v)
}

#[test]
fn mariadb_binlog_raw_to_last_log_ends_with_the_primarys_files() -> Result<()> {
    let (sb, fake_port) = sandbox(SCHEMA)?;
    let db = sb.primary();
    for i in 0..3 {
        db.sql(&format!("INSERT INTO c.t (v) VALUES ('a{i}'), ('b{i}')"))?;
        db.flush_binary_logs()?;
    }
    db.sql("INSERT INTO c.t (v) VALUES ('last')")?;
    settle(&sb)?;
    let primary_files = db.binlog_files()?;
    let first = primary_files
        .first()
        .context("the primary lists no binlog")?
        .0
        .clone();

    // Both fetches, again (at most 3 times) when the primary's active file grew between
    // them: MariaDB may write its BINLOG_CHECKPOINT more than settle()'s 500 ms after a
    // rotation (seen once under load); closed files never change.
    let work = tempfile::tempdir()?;
    let mut attempt = 0;
    let (real, fake) = loop {
        attempt += 1;
        let real_dir = work.path().join(format!("real{attempt}"));
        let fake_dir = work.path().join(format!("fake{attempt}"));
        fetch_raw(db.port(), &first, &real_dir).context("against the real primary")?;
        settle(&sb)?;
        fetch_raw(fake_port, &first, &fake_dir).context("against the fake primary")?;
        let (real, fake) = (files(&real_dir)?, files(&fake_dir)?);
        let grew = real.len() == fake.len()
            && real.last().map(|(_, b)| b.len()) < fake.last().map(|(_, b)| b.len())
            && real[..real.len() - 1] == fake[..fake.len() - 1];
        if !grew || attempt == 3 {
            break (real, fake);
        }
        settle(&sb)?;
    };
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let want: Vec<String> = primary_files.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        names(&real),
        want,
        "the real primary's stream names the files"
    );
    assert_eq!(
        names(&fake),
        want,
        "the fake primary's stream names the files exactly (no CRC taken as part of a name)"
    );
    for ((name, r), (_, f)) in real.iter().zip(&fake) {
        assert!(
            r == f,
            "{name}: {} bytes from the primary, {} from the fake primary, or different bytes",
            r.len(),
            f.len()
        );
    }
    // The closed files are the primary's files, byte for byte.
    for (name, bytes) in real.iter().take(real.len() - 1) {
        let on_disk = std::fs::read(db.binlog_path(name))?;
        assert!(&on_disk == bytes, "{name} differs from the primary's file");
    }

    // Text mode: the same statements, and the command ends against both.
    let real_text = fetch_text(db.port(), &first).context("text mode, real primary")?;
    let fake_text = fetch_text(fake_port, &first).context("text mode, fake primary")?;
    assert!(
        real_text.iter().any(|l| l.contains("CREATE TABLE c.t"))
            && real_text.iter().any(|l| l.starts_with("BINLOG '")),
        "the decoded output holds the DDL and the row events"
    );
    if real_text != fake_text {
        let diff: Vec<String> = real_text
            .iter()
            .zip(&fake_text)
            .filter(|(a, b)| a != b)
            .take(5)
            .map(|(a, b)| format!("primary: {a}\nfake:    {b}"))
            .collect();
        bail!(
            "text output differs ({} vs {} lines):\n{}",
            real_text.len(),
            fake_text.len(),
            diff.join("\n")
        );
    }
    Ok(())
}

/// A start position inside a file and `--stop-never`: the same bytes from both servers,
/// and the fake primary's stream follows new writes until the client is stopped.
#[test]
fn mariadb_binlog_from_a_position_and_following_new_writes() -> Result<()> {
    let (sb, fake_port) = sandbox(SCHEMA)?;
    for i in 0..5 {
        sb.primary()
            .sql(&format!("INSERT INTO c.t (v) VALUES ('r{i}')"))?;
    }
    let db = sb.primary();
    settle(&sb)?;
    let first = db.binlog_files()?.first().context("no binlog")?.0.clone();
    // The start of the 6th event of the first file: inside the file, on an event boundary.
    let events = db.sql_rows(&format!("SHOW BINLOG EVENTS IN '{first}'"))?;
    let pos = events
        .get(5)
        .and_then(|r| r.get(1))
        .context("the first binlog has fewer than 6 events")?
        .clone();
    let work = tempfile::tempdir()?;
    let start = [format!("--start-position={pos}")];
    let (real_dir, fake_dir) = (work.path().join("real"), work.path().join("fake"));
    fetch_raw_with(db.port(), &first, &real_dir, &start).context("real primary")?;
    fetch_raw_with(fake_port, &first, &fake_dir, &start).context("fake primary")?;
    let (real, fake) = (files(&real_dir)?, files(&fake_dir)?);
    assert!(!real.is_empty());
    assert_eq!(real.len(), fake.len(), "the same files from position {pos}");
    for ((rn, r), (fname, f)) in real.iter().zip(&fake) {
        assert_eq!(rn, fname);
        let at = r.iter().zip(f.iter()).position(|(a, b)| a != b);
        assert!(
            r == f,
            "{rn} from position {pos}: {} vs {} bytes, first difference at {at:?}: {:02x?} vs {:02x?}",
            r.len(),
            f.len(),
            at.map(|i| &r[i.saturating_sub(4)..(i + 8).min(r.len())]),
            at.map(|i| &f[i.saturating_sub(4)..(i + 8).min(f.len())])
        );
    }

    // --stop-never against the fake primary: new writes arrive, then the client is
    // stopped (it never ends by itself).
    let follow_dir = work.path().join("follow");
    std::fs::create_dir_all(&follow_dir)?;
    let mut child = spawn_mariadb_binlog_follow(fake_port, &first, &follow_dir)?;
    let followed = (|| -> Result<()> {
        for i in 0..5 {
            db.sql(&format!("INSERT INTO c.t (v) VALUES ('new{i}')"))?;
        }
        db.flush_binary_logs()?;
        db.sql("INSERT INTO c.t (v) VALUES ('after rotation')")?;
        settle(&sb)?;
        let primary_files = db.binlog_files()?;
        wait_for(
            "the followed files reach the primary's",
            Duration::from_secs(60),
            || {
                let got = files(&follow_dir)?;
                let ok = primary_files
                    .iter()
                    .all(|(n, size)| got.iter().any(|(g, b)| g == n && b.len() as u64 == *size));
                Ok(ok.then_some(()))
            },
        )?;
        let active = primary_files.last().map(|(n, _)| n.clone());
        for (name, bytes) in files(&follow_dir)? {
            let on_disk = std::fs::read(db.binlog_path(&name))?;
            // The primary's ACTIVE file has the in-use flag set in its FORMAT_DESCRIPTION;
            // every server sends it cleared.
            let same = on_disk.len() == bytes.len()
                && on_disk.iter().zip(&bytes).enumerate().all(|(i, (a, b))| {
                    a == b || (Some(&name) == active.as_ref() && i == IN_USE_FLAG_OFFSET)
                });
            assert!(same, "{name}: followed bytes differ from the primary's");
        }
        Ok(())
    })();
    let still_running = child.0.try_wait()?.is_none();
    drop(child);
    followed?;
    assert!(still_running, "--stop-never ended by itself");
    Ok(())
}

/// `--start-datetime` / `--stop-datetime` (text mode): the same window of events from
/// both servers, holding the writes inside it and none outside.
#[test]
fn mariadb_binlog_datetime_window_is_the_same_from_both() -> Result<()> {
    let (sb, fake_port) = sandbox(SCHEMA)?;
    let db = sb.primary();
    let now = || -> Result<i64> { Ok(db.sql_value("SELECT UNIX_TIMESTAMP()")?.trim().parse()?) };
    // Three batches in three distinct seconds: before, inside and after the window.
    let wait_next_second = |t: i64| -> Result<()> {
        wait_for("the next second", Duration::from_secs(5), || {
            Ok((now()? > t).then_some(()))
        })
    };
    db.sql("CREATE TABLE c.before_window (i INT)")?;
    let t1 = now()?;
    wait_next_second(t1)?;
    let start = now()?;
    db.sql("CREATE TABLE c.inside_window (i INT)")?;
    wait_next_second(now()?)?;
    let stop = now()?;
    db.sql("CREATE TABLE c.after_window (i INT)")?;
    db.sql("INSERT INTO c.t (v) VALUES ('x')")?;
    settle(&sb)?;
    let first = db.binlog_files()?.first().context("no binlog")?.0.clone();
    let fmt = |t: i64| -> Result<String> {
        Ok(db.sql_value(&format!("SELECT DATE_FORMAT(CONVERT_TZ(FROM_UNIXTIME({t}), @@session.time_zone, '+00:00'), '%Y-%m-%d %H:%i:%s')"))?.trim().to_string())
    };
    let window = [
        format!("--start-datetime={}", fmt(start)?),
        format!("--stop-datetime={}", fmt(stop)?),
    ];
    let real = fetch_text_with(db.port(), &first, &window).context("real primary")?;
    let fake = fetch_text_with(fake_port, &first, &window).context("fake primary")?;
    let has = |v: &[String], what: &str| v.iter().any(|l| l.contains(what));
    assert!(
        has(&real, "inside_window"),
        "the window holds its DDL: {real:?}"
    );
    assert!(!has(&real, "before_window") && !has(&real, "after_window"));
    assert_eq!(
        real, fake,
        "the same window from the primary and the fake primary"
    );
    Ok(())
}

/// MariaDB replicas of the fake primary, in the modes the PITR tests do not use:
/// `MASTER_USE_GTID=current_pos`, and `slave_parallel_mode=conservative` with four
/// applier threads. Each replays the archive to the primary's GTID position and ends with
/// the primary's data (CHECKSUM TABLE).
#[test]
fn mariadb_replicas_with_current_pos_and_conservative_parallel_mode() -> Result<()> {
    let (sb, fake_port) = sandbox(SCHEMA_N)?;
    let db = sb.primary();
    for i in 0..40 {
        db.sql(&format!(
            "INSERT INTO c.t (v, n) VALUES ('r{i}', {i}); UPDATE c.t SET n = n + 1 WHERE id % 3 = {};",
            i % 3
        ))?;
        if i % 15 == 14 {
            db.flush_binary_logs()?;
        }
    }
    settle(&sb)?;
    let target = db.gtid_binlog_pos()?;
    let want = db.table_checksums(&["c.t"])?;
    // A new replica's own binlog holds its set-up's GTIDs (0-<its server_id>-N): RESET
    // MASTER clears them, as a DBA does before pointing a fresh replica at a primary in
    // gtid_strict_mode.
    let cases = [
        ("current_pos", "RESET MASTER;"),
        (
            "slave_pos",
            "RESET MASTER; SET GLOBAL slave_parallel_threads = 4; \
             SET GLOBAL slave_parallel_mode = 'conservative';",
        ),
    ];
    for (i, (use_gtid, prepare)) in cases.iter().enumerate() {
        let replica = MariaDb::start(MariaDbOptions {
            server_id: 100 + i as u32,
            ..Default::default()
        })?;
        replica.sql(&format!(
            "{prepare} CHANGE MASTER TO master_host='127.0.0.1', master_port={fake_port}, \
             master_user='{REPL_USER}', master_password='{REPL_PASSWORD}', \
             master_use_gtid={use_gtid}; START SLAVE;"
        ))?;
        wait_for(
            &format!("the {use_gtid} replica reaches {target}"),
            Duration::from_secs(120),
            || {
                let pos = replica.sql_value("SELECT @@gtid_slave_pos")?;
                Ok((pos.trim() == target.trim()).then_some(()))
            },
        )
        .with_context(|| replica.sql("SHOW SLAVE STATUS\\G").unwrap_or_default())?;
        let got = replica.table_checksums(&["c.t"])?;
        assert_eq!(
            got, want,
            "replica ({prepare} master_use_gtid={use_gtid}) has the primary's data"
        );
        replica.sql("STOP SLAVE")?;
    }
    Ok(())
}

/// python-mysql-replication (`is_mariadb=True`, `blocking=False`) by file/position, by
/// MariaDB GTID `auto_position`, and with an `only_events` filter: the same events,
/// row values and positions from the primary and from the fake primary, and it ends.
#[test]
fn python_mysql_replication_reads_the_same_events_from_both() -> Result<()> {
    let (sb, fake_port) = sandbox(SCHEMA_N)?;
    let db = sb.primary();
    for i in 0..6 {
        db.sql(&format!(
            "INSERT INTO c.t (v, n) VALUES ('p{i}', {i}); UPDATE c.t SET n = n * 2 WHERE id = 1;"
        ))?;
        if i == 2 {
            db.flush_binary_logs()?;
        }
    }
    db.sql("DELETE FROM c.t WHERE id = 2")?;
    settle(&sb)?;
    let first = db.binlog_files()?.first().context("no binlog")?.0.clone();
    let cases: [Vec<&str>; 3] = [
        vec!["position", first.as_str()],
        vec!["gtid", "0-1-1"],
        vec!["rows"],
    ];
    for (i, args) in cases.iter().enumerate() {
        let id = 500 + i as u32;
        let real =
            pyrepl(db.port(), id, args).with_context(|| format!("{args:?}, real primary"))?;
        let fake =
            pyrepl(fake_port, id + 10, args).with_context(|| format!("{args:?}, fake primary"))?;
        assert!(
            real.iter().any(|e| e["type"] == "WriteRowsEvent"),
            "{args:?}: the primary's stream has row events: {real:?}"
        );
        // A MariaDB GTID start: the real primary sends the file from offset 4 (its
        // FORMAT_DESCRIPTION, GTID_LIST and BINLOG_CHECKPOINT) and then a GTID_LIST at the
        // start position; the fake primary starts at that position (artificial ROTATE,
        // the FORMAT_DESCRIPTION with log_pos 0). From the first transaction on, the
        // streams must be the same (README "Clients": what differs).
        let (real, fake) = if args[0] == "gtid" {
            let from_first_txn = |v: &[serde_json::Value]| -> Vec<serde_json::Value> {
                v.iter()
                    .skip_while(|e| e["type"] != "MariadbGtidEvent")
                    .cloned()
                    .collect()
            };
            (from_first_txn(&real), from_first_txn(&fake))
        } else {
            (real, fake)
        };
        assert!(!real.is_empty(), "{args:?}: events after the start");
        assert_eq!(
            real, fake,
            "{args:?}: the same events from the primary and the fake primary"
        );
    }
    Ok(())
}

/// python-mysql-replication with `blocking=True` against the fake primary follows new
/// writes: stopped once it has read as far as the primary's end, it has read exactly what
/// `blocking=False` reads from the primary.
#[test]
fn python_mysql_replication_blocking_follows_new_writes() -> Result<()> {
    let (sb, fake_port) = sandbox(SCHEMA)?;
    let db = sb.primary();
    settle(&sb)?;
    let first = db.binlog_files()?.first().context("no binlog")?.0.clone();
    let python = require_tool("python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/pyrepl_events.py");
    let work = tempfile::tempdir()?;
    let out_path = work.path().join("follow.jsonl");
    let mut child = Command::new(&python)
        .arg(&script)
        .args([&fake_port.to_string(), "601", "follow", &first])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(Stdio::null())
        .spawn()?;
    let followed = (|| -> Result<Vec<serde_json::Value>> {
        // Writes after the client connected, and a rotation.
        std::thread::sleep(Duration::from_millis(500));
        for i in 0..4 {
            db.sql(&format!("INSERT INTO c.t (v) VALUES ('f{i}')"))?;
        }
        db.flush_binary_logs()?;
        db.sql("INSERT INTO c.t (v) VALUES ('after rotation')")?;
        settle(&sb)?;
        let want = pyrepl(db.port(), 602, &["position", first.as_str()])?;
        // The complete lines so far (the last one may still be being written).
        let read = || -> Result<Vec<serde_json::Value>> {
            Ok(std::fs::read_to_string(&out_path)?
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect())
        };
        let got = wait_for(
            "the blocking reader reaches the primary's end",
            Duration::from_secs(60),
            || {
                let got = read()?;
                Ok((got.len() >= want.len()).then_some(got))
            },
        )?;
        assert_eq!(
            &got[..want.len()],
            &want[..],
            "blocking=True read what the primary holds"
        );
        Ok(got)
    })();
    let still_running = child.try_wait()?.is_none();
    let _ = child.kill();
    let _ = child.wait();
    let got = followed?;
    assert!(got.iter().any(|e| e["type"] == "WriteRowsEvent"));
    assert!(still_running, "blocking=True ended by itself");
    Ok(())
}

/// Each suite uses part of it.
#[allow(dead_code)]
#[path = "support/binlog_stream.rs"]
mod binlog_stream;
#[path = "support/pyrepl.rs"]
mod pyrepl;
use pyrepl::pyrepl;

/// mysql_async's binlog stream (COM_BINLOG_DUMP, non-blocking) from the first binlog and
/// from a position inside a later one: the same events, byte for byte, from the real
/// primary and from the fake primary, the events a server makes up included. mysql_async
/// sets no `@mariadb_slave_capability`, so both servers must send it MariaDB's GTID
/// events as BEGIN queries and its GTID_LIST, BINLOG_CHECKPOINT and ANNOTATE_ROWS events
/// as dummies of the same size; its `@master_binlog_checksum='ALL'` gets a CRC32 on the
/// artificial ROTATE.
#[test]
fn mysql_async_reads_the_same_events_from_both() -> Result<()> {
    let (sb, fake_port) = sandbox(SCHEMA_N)?;
    let db = sb.primary();
    for i in 0..4 {
        db.sql(&format!(
            "INSERT INTO c.t (v, n) VALUES ('m{i}', {i}); UPDATE c.t SET n = n + 1 WHERE id = 1;"
        ))?;
        if i == 1 {
            db.flush_binary_logs()?;
        }
    }
    db.sql("ALTER TABLE c.t ADD COLUMN w INT")?;
    settle(&sb)?;
    let files = db.binlog_files()?;
    let first = files.first().context("no binlog")?.0.clone();
    let second = files.get(1).context("a second binlog")?.0.clone();
    // A position inside the second file: the start of its second transaction.
    let second_events = binlog_stream::file_events(&db.binlog_path(&second))?;
    let inside = second_events
        .iter()
        .filter(|e| e.type_code == 162)
        .nth(1)
        .context("two transactions in the second binlog")?
        .offset;
    let creds = (REPL_USER, REPL_PASSWORD);
    for (what, file, pos) in [
        ("from the first binlog", &first, 4),
        ("inside the second", &second, inside),
    ] {
        let read = |port: u16, id: u32| {
            binlog_stream::read(
                port,
                creds,
                id,
                binlog_stream::Request::Position { file, pos },
                FETCH_TIMEOUT,
            )
        };
        let real = read(db.port(), 701).with_context(|| format!("{what}, real primary"))?;
        let fake = read(fake_port, 702).with_context(|| format!("{what}, fake primary"))?;
        assert!(
            real.iter()
                .any(|e| matches!(e.type_code, 23..=25 | 30..=32)),
            "{what}: the primary's stream has row events"
        );
        assert!(
            !real.iter().any(|e| matches!(e.type_code, 160..=163)),
            "{what}: the primary sent none of its own events to a capability-0 client"
        );
        assert_eq!(real.len(), fake.len(), "{what}: as many events from both");
        for (i, (r, f)) in real.iter().zip(&fake).enumerate() {
            assert!(
                r == f,
                "{what}: event {i} differs:\nprimary: {r:?}\nfake:    {f:?}"
            );
        }
    }
    Ok(())
}

/// One packet's payload read from `s` (3-byte length, sequence id, payload).
fn read_packet(s: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut h = [0u8; 4];
    s.read_exact(&mut h)?;
    let n = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    let mut p = vec![0u8; n];
    s.read_exact(&mut p)?;
    Ok(p)
}

/// The fake primary's limits: at most 64 sessions at once (the 65th connection gets
/// ERROR 1040 instead of the greeting), and 10 s from the greeting to a login (idle
/// handshakes are closed, which frees their slots). About 1,000 idle sockets used to
/// exhaust the process's file descriptors.
#[test]
fn the_fake_primary_caps_sessions_and_closes_idle_handshakes() -> Result<()> {
    use std::io::Read;
    let port = free_port();
    let _sb = Sandbox::builder(server_bin())
        .source_replication(port)
        .start()?;
    let mut idle = Vec::new();
    for i in 0..64 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let g = read_packet(&mut s).with_context(|| format!("greeting {i}"))?;
        assert_eq!(g.first(), Some(&10u8), "connection {i} is greeted");
        idle.push(s);
    }
    let mut extra = std::net::TcpStream::connect(("127.0.0.1", port))?;
    extra.set_read_timeout(Some(Duration::from_secs(10)))?;
    let e = read_packet(&mut extra)?;
    assert_eq!(
        e.first(),
        Some(&0xFFu8),
        "the 65th gets an error packet: {e:?}"
    );
    assert_eq!(e.get(1..3), Some(&1040u16.to_le_bytes()[..]), "ERROR 1040");
    // The idle handshakes are closed after 10 s.
    std::thread::sleep(Duration::from_secs(11));
    for (i, s) in idle.iter_mut().enumerate() {
        let mut b = [0u8; 1];
        let n = s.read(&mut b).unwrap_or(0);
        assert_eq!(n, 0, "idle handshake {i} was closed");
    }
    let mut again = std::net::TcpStream::connect(("127.0.0.1", port))?;
    again.set_read_timeout(Some(Duration::from_secs(10)))?;
    assert_eq!(
        read_packet(&mut again)?.first(),
        Some(&10u8),
        "a slot is free again"
    );
    Ok(())
}

/// OS threads of process `pid`, 0 when unreadable.
fn threads_of(pid: u32) -> u64 {
    proc_status_field(pid, "Threads:")
}

/// Replicas waiting at the end of the binlogs hold no thread each (a dump is a task,
/// woken by the capture's durable end): 30 `mariadb-binlog --stop-never` followers
/// leave the server's thread count where it was (one OS thread per dump before), and
/// every one of them still gets the writes made after it caught up.
#[test]
fn idle_replicas_hold_no_threads_and_all_follow_new_writes() -> Result<()> {
    let (sb, fake_port) = sandbox(SCHEMA)?;
    let db = sb.primary();
    settle(&sb)?;
    let first = db.binlog_files()?.first().context("no binlog")?.0.clone();
    let pid = sb.server().pid().context("the server's pid")?;
    // Past the runtime's keep-alive of idle blocking threads (5 s).
    std::thread::sleep(Duration::from_secs(7));
    let before = threads_of(pid);
    let work = tempfile::tempdir()?;
    let dirs: Vec<PathBuf> = (0..30).map(|i| work.path().join(format!("r{i}"))).collect();
    let mut followers = Vec::new();
    for d in &dirs {
        std::fs::create_dir_all(d)?;
        followers.push(spawn_mariadb_binlog_follow(fake_port, &first, d)?);
    }
    // Every follower holds the primary's files as they are now (by size: the active
    // file's copy differs from the primary's in the in-use flag the stream clears).
    let all_follow = |what: &str| -> Result<()> {
        let primary = db.binlog_files()?;
        wait_for(what, Duration::from_secs(60), || {
            let behind = dirs
                .iter()
                .filter(|d| {
                    !primary.iter().all(|(n, size)| {
                        std::fs::metadata(d.join(n)).is_ok_and(|m| m.len() == *size)
                    })
                })
                .count();
            anyhow::ensure!(behind == 0, "{behind} of 30 followers behind the primary");
            Ok(Some(()))
        })
    };
    all_follow("every follower has the primary's files")?;
    std::thread::sleep(Duration::from_secs(7));
    let idle = threads_of(pid);
    eprintln!("server threads: {before} before, {idle} with 30 idle replicas");
    assert!(
        idle <= before + 6,
        "{before} threads before, {idle} with 30 idle replicas"
    );
    for i in 0..5 {
        db.sql(&format!("INSERT INTO c.t (v) VALUES ('late {i}')"))?;
    }
    settle(&sb)?;
    all_follow("every follower gets the writes made after it caught up")?;
    drop(followers);
    Ok(())
}
