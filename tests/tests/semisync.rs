//! Semi-synchronous replication against a real MariaDB primary, at the wire
//! (`mysql_wire::semisync`): the replica asks for it, every event arrives with the
//! semi-sync header, a commit waits for the ack of its last event and is counted as
//! acknowledged, and without an ack the primary falls back to asynchronous replication
//! after its timeout and says so in its status variables.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use binlog_tests::*;
use mysql_wire::semisync;

/// The primary's semi-sync timeout, ms.
const TIMEOUT_MS: u64 = 3000;

/// The binlog-server binary under test.
fn server_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

/// A primary with semi-sync on (AFTER_SYNC) and a timeout of `timeout_ms`.
fn semi_sync_primary(timeout_ms: u64) -> MariaDbOptions {
    MariaDbOptions {
        extra_args: vec![
            "--rpl-semi-sync-master-enabled=ON".into(),
            format!("--rpl-semi-sync-master-timeout={timeout_ms}"),
            "--rpl-semi-sync-master-wait-point=AFTER_SYNC".into(),
        ],
        ..Default::default()
    }
}

/// Reads the stream until an event the primary wants acknowledged; returns the position
/// after it (the stream stays in one file here). Every event must carry the semi-sync
/// header.
async fn next_ack_request(conn: &mut mysql_wire::Conn) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let pkt = tokio::time::timeout(Duration::from_secs(30), conn.read_binlog_packet())
            .await
            .context("an event within 30 s")??
            .context("the stream goes on")?;
        let (want_ack, ev) = semisync::split_event(pkt)?;
        let h = binlog::EventHeader::parse(&ev)?;
        if want_ack {
            return Ok(u64::from(h.log_pos));
        }
    }
    bail!("no event asked for an ack within 30 s")
}

/// Reads what the dump sends of the past (acknowledging what asks for it) until the
/// stream is quiet for a second: the replica is caught up.
async fn catch_up(conn: &mut mysql_wire::Conn, file: &str) -> Result<()> {
    loop {
        match tokio::time::timeout(Duration::from_secs(1), conn.read_binlog_packet()).await {
            Err(_) => return Ok(()),
            Ok(pkt) => {
                let (want_ack, ev) = semisync::split_event(pkt?.context("the stream goes on")?)?;
                if want_ack {
                    let h = binlog::EventHeader::parse(&ev)?;
                    conn.send_command(&semisync::ack(file, u64::from(h.log_pos)))
                        .await?;
                }
            }
        }
    }
}

#[test]
fn a_commit_waits_for_the_ack_and_falls_back_to_async_without_one() -> Result<()> {
    let db = MariaDb::start(semi_sync_primary(TIMEOUT_MS))?;
    db.sql("CREATE TABLE test.t (id INT PRIMARY KEY)")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = mysql_wire::SourceUrl::parse(&db.repl_url()).map_err(anyhow::Error::msg)?;
    let mut conn = rt.block_on(mysql_wire::Conn::connect(&mysql_wire::ConnectOptions {
        url,
        connect_timeout: Duration::from_secs(10),
        query_timeout: Duration::from_secs(10),
    }))?;
    for q in [
        "SET @master_binlog_checksum = @@global.binlog_checksum",
        "SET @mariadb_slave_capability = 4",
        semisync::enable_statement(semisync::Variant::Slave),
    ] {
        rt.block_on(conn.query(q))?;
    }
    let (first, _) = db.binlog_files()?.into_iter().last().context("a binlog")?;
    rt.block_on(conn.send_command(&mysql_wire::packet::com_binlog_dump(4, 0, 7001, &first)))?;
    // The primary counts this replica as a semi-sync client once the dump runs.
    wait_for("one semi-sync client", Duration::from_secs(10), || {
        Ok((db.status_var("Rpl_semi_sync_master_clients")? == "1").then_some(()))
    })?;

    rt.block_on(catch_up(&mut conn, &first))?;
    // A commit waits; the ack of its last event releases it and counts as acknowledged.
    // (What the harness committed before any replica counts as released without one.)
    let count = |name: &str| -> Result<u64> { Ok(db.status_var(name)?.parse()?) };
    let (yes, no) = (
        count("Rpl_semi_sync_master_yes_tx")?,
        count("Rpl_semi_sync_master_no_tx")?,
    );
    let took = std::thread::scope(|scope| -> Result<Duration> {
        let committer = scope.spawn(|| {
            let t = Instant::now();
            db.sql("INSERT INTO test.t VALUES (1)").map(|_| t.elapsed())
        });
        let pos = rt.block_on(next_ack_request(&mut conn))?;
        rt.block_on(conn.send_command(&semisync::ack(&first, pos)))?;
        committer
            .join()
            .map_err(|_| anyhow::anyhow!("committer panicked"))?
    })?;
    assert!(
        took < Duration::from_millis(TIMEOUT_MS),
        "released by the ack, not the timeout: {took:?}"
    );
    assert_eq!(count("Rpl_semi_sync_master_yes_tx")?, yes + 1);
    assert_eq!(count("Rpl_semi_sync_master_no_tx")?, no);
    assert_eq!(db.status_var("Rpl_semi_sync_master_status")?, "ON");

    // Without an ack the commit waits the whole timeout, then the primary falls back.
    let t = Instant::now();
    db.sql("INSERT INTO test.t VALUES (2)")?;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(TIMEOUT_MS - 200),
        "the commit waited for the ack until the timeout: {waited:?}"
    );
    assert_eq!(count("Rpl_semi_sync_master_no_tx")?, no + 1);
    assert_eq!(db.status_var("Rpl_semi_sync_master_status")?, "OFF");
    Ok(())
}

/// binlog-server as the semi-sync replica (`semi_sync = true`), with a long
/// `fsync_interval` so that only an owed ack can make it sync early: every commit is
/// acknowledged (the primary counts it as such, never as released by its timeout), the
/// API and the metrics count the acks, and the archive is the primary's, byte for byte.
/// With binlog-server stopped the primary falls back to async after its timeout; with it
/// back, commits are acknowledged again.
#[test]
fn binlog_server_acknowledges_every_commit_after_its_fsync() -> Result<()> {
    let db = MariaDb::start(semi_sync_primary(TIMEOUT_MS))?;
    db.sql("CREATE TABLE test.t (id INT PRIMARY KEY)")?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let spec = SourceSpec {
        name: "db".into(),
        url: db.repl_url(),
        server_id: 4242,
        start: "\"earliest\"\nsemi_sync = true".into(),
    };
    let capture = "[capture]\nfsync_interval = \"10s\"\nheartbeat_period = \"1s\"\n\
                   poll_interval = \"500ms\"\nreconnect_min_backoff = \"100ms\"\n\
                   reconnect_max_backoff = \"1s\"\n";
    let cfg = write_config_sources(dir.path(), &http, &[spec], capture)?;
    let bin = server_bin();
    let mut server = ServerProcess::start(&bin, &cfg, &http)?;
    wait_for(
        "binlog-server is the semi-sync client",
        Duration::from_secs(30),
        || Ok((db.status_var("Rpl_semi_sync_master_clients")? == "1").then_some(())),
    )?;
    // CREATE TABLE ran with no replica: the primary went async after its timeout, and is
    // back once binlog-server has caught up and acknowledged (an async commit nudges it).
    wait_for(
        "the primary back in semi-sync",
        Duration::from_secs(30),
        || {
            if db.status_var("Rpl_semi_sync_master_status")? == "ON" {
                return Ok(Some(()));
            }
            db.sql("INSERT INTO test.t VALUES (-1)")?;
            db.sql("DELETE FROM test.t")?;
            Ok(None)
        },
    )?;
    let count = |name: &str| -> Result<u64> { Ok(db.status_var(name)?.parse()?) };
    let (yes, no) = (
        count("Rpl_semi_sync_master_yes_tx")?,
        count("Rpl_semi_sync_master_no_tx")?,
    );
    const N: u64 = 20;
    for i in 0..N {
        db.sql(&format!("INSERT INTO test.t VALUES ({i})"))?;
    }
    assert_eq!(
        count("Rpl_semi_sync_master_no_tx")?,
        no,
        "no commit fell back"
    );
    assert_eq!(count("Rpl_semi_sync_master_yes_tx")?, yes + N);
    assert_eq!(db.status_var("Rpl_semi_sync_master_status")?, "ON");
    let src = server.get_json("/v1/sources/db")?;
    // Heartbeats too arrive with the header: the stream never broke.
    assert_eq!(src["reconnects"], 0, "{src}");
    let view = &src["semi_sync"];
    assert_eq!(view["active"], true, "{src}");
    assert_eq!(view["primary_enabled"], true, "{src}");
    assert!(view["acks"].as_u64().unwrap_or(0) >= N, "{src}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        server.get_json("/v1/sources/db")?["reconnects"],
        0,
        "quiet for three heartbeat periods"
    );
    let (_, metrics) = server.get_text("/metrics")?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("binlog_server_semi_sync_acks_total{source=\"db\"}")),
        "{metrics}"
    );
    db.flush_binary_logs()?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(60))?;
    assert!(assert_archive_identical(&db, &dir.path().join("data").join("db"))? >= 1);

    // binlog-server gone: the next commit waits the timeout, then the primary falls back.
    server.stop()?;
    db.sql("INSERT INTO test.t VALUES (1000)")?;
    assert_eq!(count("Rpl_semi_sync_master_no_tx")?, no + 1);
    assert_eq!(db.status_var("Rpl_semi_sync_master_status")?, "OFF");
    // Back: it catches up, the primary returns to semi-sync, commits are acknowledged.
    let server_back = ServerProcess::start(&bin, &cfg, &http)?;
    wait_for("semi-sync again", Duration::from_secs(30), || {
        db.sql("INSERT INTO test.t SELECT MAX(id) + 1 FROM test.t")?;
        Ok((db.status_var("Rpl_semi_sync_master_status")? == "ON").then_some(()))
    })?;
    let yes_back = count("Rpl_semi_sync_master_yes_tx")?;
    db.sql("INSERT INTO test.t VALUES (5000)")?;
    assert_eq!(count("Rpl_semi_sync_master_yes_tx")?, yes_back + 1);
    // The API shows the primary's own view: semi-sync on, and the commits released
    // without an ack while binlog-server was away (and until it was back) counted.
    let no_back = count("Rpl_semi_sync_master_no_tx")?;
    assert!(
        no_back > no,
        "{no_back} commits without an ack, {no} before"
    );
    wait_for(
        "the poller's view of the primary",
        Duration::from_secs(10),
        || {
            let v = server_back.get_json("/v1/sources/db")?["semi_sync"].clone();
            Ok((v["primary_semi_sync"] == true && v["primary_no_tx"] == no_back).then_some(()))
        },
    )?;
    // A primary that leaves semi-sync while binlog-server runs is seen and counted.
    db.sql("SET GLOBAL rpl_semi_sync_master_enabled = OFF")?;
    wait_for("the fallback in the API", Duration::from_secs(10), || {
        let v = server_back.get_json("/v1/sources/db")?["semi_sync"].clone();
        Ok((v["primary_semi_sync"] == false && v["fallbacks"] == 1).then_some(()))
    })?;
    let (_, metrics) = server_back.get_text("/metrics")?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("binlog_server_semi_sync_primary_on{source=\"db\"} 0")),
        "{metrics}"
    );
    Ok(())
}

/// Inserts ids 1, 2, ... one commit at a time on `url` until the primary is gone,
/// recording each id whose commit the primary acknowledged (returned OK).
fn load_until_gone(url: String, acked: Arc<Mutex<Vec<u64>>>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return 0;
        };
        rt.block_on(async {
            use mysql_async::prelude::Queryable;
            let pool = mysql_async::Pool::new(url.as_str());
            let Ok(mut conn) = pool.get_conn().await else {
                return 0;
            };
            let mut attempted = 0;
            for id in 1..=200_000u64 {
                attempted = id;
                let sql = format!("INSERT INTO test.rpo VALUES ({id})");
                if conn.query_drop(sql).await.is_err() {
                    break;
                }
                if let Ok(mut a) = acked.lock() {
                    a.push(id);
                }
            }
            attempted
        })
    })
}

/// RPO 0 (issue 22): semi-sync on (AFTER_SYNC, a timeout far longer than the trial),
/// a client commits sequential ids and records each acknowledged one; the primary and
/// binlog-server are killed with SIGKILL together at a random moment and the primary is
/// never started again; binlog-server restarted, a PITR to the end of the archive on a
/// base taken before holds every acknowledged id (and only ids that were sent, as a
/// prefix). Ten trials, the kill moment and order varying.
#[test]
fn no_acknowledged_commit_is_lost_when_primary_and_archive_die_together() -> Result<()> {
    const TRIALS: u64 = 10;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos() as u64;
    let mut lines = Vec::new();
    for trial in 0..TRIALS {
        let r = rpo_trial(
            trial,
            seed.wrapping_mul(6364136223846793005).wrapping_add(trial),
        )
        .with_context(|| format!("trial {trial} (seed {seed})"))?;
        lines.push(r);
    }
    for l in &lines {
        eprintln!("{l}");
    }
    Ok(())
}

fn rpo_trial(trial: u64, rnd: u64) -> Result<String> {
    let mut sb = Sandbox::builder(server_bin())
        // A short timeout while the harness sets up (no replica yet: its first commit waits
        // that long, then the primary runs async), a long one below.
        .primary_options(semi_sync_primary(1000))
        .source_toml("semi_sync = true\n")
        .local_base_store()
        .source_backup(SourceBackup::logical())
        .setup(|db| {
            db.sql("CREATE TABLE test.rpo (id BIGINT PRIMARY KEY)")?;
            Ok(())
        })
        .start()?;
    sb.take_base("db1")?;
    // binlog-server is the semi-sync replica now: no commit is released without its ack
    // for the rest of the trial (600 s), and the primary is back to semi-sync.
    sb.primary()
        .sql("SET GLOBAL rpl_semi_sync_master_timeout = 600000")?;
    wait_for("the primary in semi-sync", Duration::from_secs(30), || {
        sb.primary().sql("INSERT INTO test.rpo VALUES (0)")?;
        sb.primary().sql("DELETE FROM test.rpo")?;
        Ok((sb.primary().status_var("Rpl_semi_sync_master_status")? == "ON").then_some(()))
    })?;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let loader = load_until_gone(sb.primary().admin_url(), acked.clone());
    // The kill falls 0.3 to 2.3 s into the load, primary or archive first.
    std::thread::sleep(Duration::from_millis(300 + (rnd >> 7) % 2000));
    if rnd.is_multiple_of(2) {
        sb.primary_mut().kill9()?;
        sb.server_mut().kill9()?;
    } else {
        sb.server_mut().kill9()?;
        sb.primary_mut().kill9()?;
    }
    let attempted = loader
        .join()
        .map_err(|_| anyhow::anyhow!("loader panicked"))?;
    let acked: Vec<u64> = acked
        .lock()
        .map_err(|_| anyhow::anyhow!("acked poisoned"))?
        .clone();
    let last_acked = acked.last().copied().unwrap_or(0);
    assert!(
        last_acked > 0,
        "some commits were acknowledged before the kill"
    );

    let bin = server_bin();
    let (cfg, http) = (sb.config_path().to_owned(), sb.http_addr().to_owned());
    *sb.server_mut() = ServerProcess::start(&bin, &cfg, &http)?;
    let gtid = wait_for("the archive's last GTID", Duration::from_secs(30), || {
        let s = sb.server().get_json("/v1/sources/db1")?;
        Ok(s["last_gtid"].as_str().map(str::to_owned))
    })?;
    let server = sb.server();
    let (code, job) = server.post_json(
        "/v1/sources/db1/pitr",
        &serde_json::json!({"target_gtid": gtid, "scratch": true}),
    )?;
    if code != 202 {
        bail!("POST pitr: {code} {job:#}");
    }
    let id = job["id"].as_str().context("job id")?.to_string();
    let mut jobs = PitrJobs::new(server);
    jobs.add(&id);
    let j = wait_for("the PITR", Duration::from_secs(600), || {
        let j = server.get_json(&format!("/v1/pitr/{id}"))?;
        let p = j["phase"].as_str().unwrap_or_default().to_owned();
        Ok((p == "done" || p == "failed").then_some(j))
    })?;
    if j["phase"] != "done" {
        bail!("PITR failed: {j:#}");
    }
    let socket = j["restored"]["socket"].as_str().context("socket")?;
    let restored: Vec<u64> = sql_socket(socket, "SELECT id FROM test.rpo ORDER BY id")?
        .into_iter()
        .filter_map(|r| r.first().and_then(|v| v.parse().ok()))
        .collect();
    let n = restored.len() as u64;
    assert_eq!(
        restored,
        (1..=n).collect::<Vec<_>>(),
        "the restore holds a prefix of what was sent"
    );
    assert!(
        n >= last_acked,
        "acknowledged id {last_acked} lost: the restore ends at {n} (attempted {attempted})"
    );
    assert!(n <= attempted, "{n} restored, only {attempted} sent");
    jobs.delete(&id)?;
    Ok(format!(
        "trial {trial}: acknowledged {last_acked}, sent {attempted}, restored {n} ({})",
        if rnd.is_multiple_of(2) {
            "primary killed first"
        } else {
            "archive killed first"
        }
    ))
}
