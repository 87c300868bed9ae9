//! Failover follow against real MariaDB servers: P1 is the primary and P2 its GTID
//! replica; binlog-server lists both (`urls`). When P1 dies and P2 is promoted, capture
//! switches to P2 on a new timeline (`tl2/`), stores P2's files byte-identical from the
//! file holding the first transaction the archive lacked, indexes each GTID once, and
//! reports the transactions P2 never got as divergent.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use binlog_tests::*;

/// The binlog-server binary under test.
fn server_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

/// `failover_timeout` of the tests, seconds.
const FAILOVER_SECS: u64 = 3;

/// P1 (server_id 1) and P2 (server_id 2), P2 a read-only replica of P1 by GTID with
/// log_slave_updates, its own set-up transactions cleared (RESET MASTER) so its binlog
/// holds P1's history only.
fn pair() -> Result<(MariaDb, MariaDb)> {
    let opts = |server_id| MariaDbOptions {
        server_id,
        extra_args: vec!["--log-slave-updates".into(), "--gtid-strict-mode=ON".into()],
        ..Default::default()
    };
    let p1 = MariaDb::start(opts(1))?;
    let p2 = MariaDb::start(opts(2))?;
    // A replica is read-only until promoted, as a DBA runs it.
    p2.sql("RESET MASTER; SET GLOBAL gtid_slave_pos = ''; SET GLOBAL read_only = 1;")?;
    p2.replicate_from(&p1)?;
    Ok((p1, p2))
}

/// A config with one source `db` on both servers (the admin account: it may also take
/// bases) and a short failover_timeout; physical base backups, of the server capture
/// follows, into `<dir>/bases`.
fn config(dir: &Path, http: &str, p1: &MariaDb, p2: &MariaDb) -> Result<std::path::PathBuf> {
    config_with(dir, http, p1, p2, "")
}

/// [`config`] with `extra` appended to the source's tables.
fn config_with(
    dir: &Path,
    http: &str,
    p1: &MariaDb,
    p2: &MariaDb,
    extra: &str,
) -> Result<std::path::PathBuf> {
    let data = dir.join("data");
    let bases = format!("file://{}", dir.join("bases").display());
    let text = format!(
        "data_dir = {data:?}\n\n[capture]\nheartbeat_period = \"1s\"\npoll_interval = \"500ms\"\n\
         reconnect_min_backoff = \"100ms\"\nreconnect_max_backoff = \"1s\"\n\n\
         [backup]\nstore = {bases:?}\n\n\
         [http]\nlisten = {http:?}\n\n[[source]]\nname = \"db\"\nurls = [{:?}, {:?}]\n\
         failover_timeout = \"{FAILOVER_SECS}s\"\nserver_id = 4242\nstart = \"earliest\"\n\
         [source.backup]\nmethod = \"physical\"\n{extra}",
        p1.admin_url(),
        p2.admin_url(),
    );
    let path = dir.join("binlog-server.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// [`config`] with the source's fake primary on a free port (user `repl`): the config
/// file and the port.
fn config_with_fake_primary(
    dir: &Path,
    http: &str,
    p1: &MariaDb,
    p2: &MariaDb,
) -> Result<(std::path::PathBuf, u16)> {
    let fake = free_port();
    let replication = format!(
        "[source.replication]\nlisten = \"127.0.0.1:{fake}\"\nuser = {REPL_USER:?}\npassword = {REPL_PASSWORD:?}\n"
    );
    Ok((config_with(dir, http, p1, p2, &replication)?, fake))
}

/// Waits until P2 has applied everything it received from the dead P1 (its GTID
/// position quiet for 2 s), then promotes it: replication off, writable.
fn promote(p2: &MariaDb) -> Result<()> {
    p2.wait_gtid_settled(Duration::from_secs(2), Duration::from_secs(60))?;
    p2.sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0;")?;
    Ok(())
}

/// P1 under write load until it rotated a few times, then killed (SIGKILL), and P2
/// promoted ([`promote`]).
fn fail_over(p1: &mut MariaDb, p2: &MariaDb) -> Result<()> {
    let load = WriteLoad::start(
        p1,
        WriteLoadOptions {
            max_txns: 100_000,
            max_duration: Duration::from_secs(20),
            ..Default::default()
        },
    )?;
    wait_for("rotations on P1", Duration::from_secs(30), || {
        Ok((p1.binlog_files()?.len() >= 3).then_some(()))
    })?;
    p1.kill9()?;
    let _ = load.stop(); // its connection died with P1
    promote(p2)
}

/// Waits (at most `failover_timeout` + 10 s) until `server` streams the source from P2
/// on timeline 2.
fn wait_streaming_on_tl2(server: &ServerProcess) -> Result<()> {
    wait_for(
        "capture streaming from P2 on timeline 2",
        Duration::from_secs(FAILOVER_SECS + 10),
        || {
            let s = server.get_json("/v1/sources/db")?;
            let on_tl2 = s["durable_file"]
                .as_str()
                .is_some_and(|f| f.starts_with("tl2/"));
            Ok((on_tl2 && s["state"] == "streaming").then_some(()))
        },
    )
    .with_context(|| server.log_tail(40))
}

/// The archive finds `gtid` on timeline 1 (indexed once, where it came first).
fn assert_on_timeline_1(server: &ServerProcess, gtid: &str) -> Result<()> {
    let at = server.get_json(&format!("/v1/sources/db/lookup?gtid={gtid}"))?;
    assert!(
        at["transaction"]["file"]
            .as_str()
            .is_some_and(|f| !f.starts_with("tl2/")),
        "{gtid}: {at}"
    );
    Ok(())
}

/// Waits until the archive's durable end is P2's current position on timeline 2.
fn wait_caught_up_on_tl2(server: &ServerProcess, p2: &MariaDb, timeout: Duration) -> Result<()> {
    wait_for("the archive at P2's end on timeline 2", timeout, || {
        let (file, pos) = p2.master_status()?;
        let s = server.get_json("/v1/sources/db")?;
        let want = format!("tl2/{file}");
        let ok = s["durable_file"].as_str() == Some(want.as_str())
            && s["durable_pos"].as_u64() == Some(pos);
        Ok(ok.then_some(()))
    })
}

/// P2's files from the new timeline's first file on equal the stored `tl2/` copies:
/// closed ones whole (SHA-256), the active one as a prefix. Returns how many compared.
fn assert_tl2_identical(p2: &MariaDb, archive: &Path, first: &str) -> Result<usize> {
    let files = p2.binlog_files()?;
    let from = files
        .iter()
        .position(|(n, _)| n == first)
        .with_context(|| format!("P2 lists {first}"))?;
    let mut n = 0;
    for (i, (name, _)) in files.iter().enumerate().skip(from) {
        let ours = std::fs::read(archive.join("tl2").join(name))
            .with_context(|| format!("archived tl2/{name}"))?;
        let theirs = std::fs::read(p2.binlog_path(name))?;
        let last = i + 1 == files.len();
        let same = if last {
            // The active file: a prefix, its in-use flag byte aside.
            ours.len() <= theirs.len()
                && ours
                    .iter()
                    .zip(&theirs)
                    .enumerate()
                    .all(|(k, (a, b))| a == b || k == IN_USE_FLAG_OFFSET)
        } else {
            ours == theirs
        };
        if !same {
            bail!(
                "tl2/{name} differs from P2's ({} vs {} bytes)",
                ours.len(),
                theirs.len()
            );
        }
        n += 1;
    }
    Ok(n)
}

#[test]
fn capture_follows_a_promoted_replica_onto_a_new_timeline() -> Result<()> {
    let (mut p1, p2) = pair()?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &http, &p1, &p2)?;
    let server = ServerProcess::start(&server_bin(), &cfg, &http)?;
    fail_over(&mut p1, &p2)?;
    let promoted = Instant::now();
    WriteLoad::run(&p2, 200)?;
    wait_streaming_on_tl2(&server)?;
    eprintln!("resumed on P2 {:?} after its promotion", promoted.elapsed());
    wait_caught_up_on_tl2(&server, &p2, Duration::from_secs(60))?;

    let tl = server.get_json("/v1/sources/db/timelines")?;
    eprintln!("timelines: {tl}");
    let rows = tl["timelines"].as_array().context("timelines")?;
    assert_eq!(rows.len(), 2, "{tl}");
    assert_eq!(rows[0]["server_id"], 1, "{tl}");
    assert_eq!(rows[1]["server_id"], 2, "{tl}");
    let first = rows[1]["first_file"].as_str().context("first_file")?;
    let first_wire = first.strip_prefix("tl2/").context("a tl2/ name")?;
    assert!(rows[1]["switch_gtid"].is_string(), "{tl}");
    assert!(
        rows[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unreachable")),
        "{tl}"
    );

    // Every transaction P2 has is in the archive, each GTID indexed once: P2's last one
    // on timeline 2, the last one both servers shared on timeline 1.
    let p2_last = p2.gtid_binlog_pos()?;
    let found = server.get_json(&format!("/v1/sources/db/lookup?gtid={p2_last}"))?;
    assert!(
        found["transaction"]["file"]
            .as_str()
            .is_some_and(|f| f.starts_with("tl2/")),
        "{found}"
    );
    let shared = rows[1]["switch_gtid"].as_str().unwrap_or_default();
    let divergent = rows[1]["divergent"].is_string();
    if !divergent {
        // A GTID of both timelines is found on the first.
        assert_on_timeline_1(&server, shared)?;
    }
    let archive = dir.path().join("data").join("db");
    let compared = assert_tl2_identical(&p2, &archive, first_wire)?;
    assert!(compared >= 1);
    // The old timeline's last file, cut by the failover, checks SUCC like the rest.
    wait_all_succ(&server, "db", Duration::from_secs(60))?;
    Ok(())
}

#[test]
fn transactions_the_promoted_replica_missed_are_reported_divergent() -> Result<()> {
    let (mut p1, p2) = pair()?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let (cfg, fake) = config_with_fake_primary(dir.path(), &http, &p1, &p2)?;
    let server = ServerProcess::start(&server_bin(), &cfg, &http)?;
    WriteLoad::run(&p1, 50)?;
    wait_caught_up(&server, &p1, "db", Duration::from_secs(60))?;
    take_base(&server)?;
    wait_replica_at(&p2, &p1.gtid_binlog_pos()?)?;
    // P2 stops receiving: the next 5 commits reach only P1 and the archive.
    p2.sql("STOP SLAVE")?;
    let before = p1.gtid_binlog_pos()?;
    WriteLoad::run(&p1, 5)?;
    let p1_last = p1.gtid_binlog_pos()?;
    wait_caught_up(&server, &p1, "db", Duration::from_secs(60))?;
    p1.kill9()?;
    p2.sql("RESET SLAVE ALL; SET GLOBAL read_only = 0;")?;
    WriteLoad::run(&p2, 20)?;
    wait_caught_up_on_tl2(&server, &p2, Duration::from_secs(FAILOVER_SECS + 60))
        .with_context(|| server.log_tail(40))?;
    let tl = server.get_json("/v1/sources/db/timelines")?;
    eprintln!("timelines: {tl}");
    let row = &tl["timelines"][1];
    assert_eq!(row["switch_gtid"].as_str(), Some(p1_last.as_str()), "{tl}");
    let divergent = row["divergent"].as_str().context("divergent reported")?;
    assert!(
        divergent.ends_with(&format!("..{p1_last} (5 transactions)")),
        "{divergent} (P2 stopped at {before})"
    );
    let src = server.get_json("/v1/sources/db")?;
    assert!(
        src["notes"].as_array().is_some_and(|n| n
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.contains("divergent")))),
        "{src}"
    );
    // A client of the fake primary that has timeline 1's divergent transactions is
    // stopped at the switch with the reason; a PITR across it is refused the same way.
    let out = tempfile::tempdir()?;
    std::fs::create_dir_all(out.path().join("tl2"))?;
    let refused = mariadb_binlog_raw(
        fake,
        "mysql-bin.000001",
        out.path(),
        &[],
        Duration::from_secs(60),
    )
    .expect_err("the client is stopped at the switch");
    assert!(
        format!("{refused:#}").contains("lacks transactions"),
        "{refused:#}"
    );
    let p2_last = p2.gtid_binlog_pos()?;
    let (code, plan) = server.post_json(
        "/v1/sources/db/pitr/plan",
        &serde_json::json!({"target_gtid": p2_last}),
    )?;
    assert_eq!(code, 422, "{plan:#}");
    assert!(
        plan["error"]
            .as_str()
            .is_some_and(|e| e.contains(divergent)),
        "{plan:#}"
    );
    // The divergent transactions stay findable on timeline 1.
    assert_on_timeline_1(&server, &p1_last)?;
    Ok(())
}

/// Waits until the replica has applied up to the GTID position `pos`.
fn wait_replica_at(replica: &MariaDb, pos: &str) -> Result<()> {
    wait_for(
        "the replica applies P1's transactions",
        Duration::from_secs(60),
        || Ok((replica.sql_value("SELECT @@gtid_slave_pos")? == pos).then_some(())),
    )
}

/// Takes a base of `db` through the API and waits until it completed; its id.
fn take_base(server: &ServerProcess) -> Result<String> {
    let (code, r) = server.post_json("/v1/sources/db/backups", &serde_json::json!({}))?;
    if code != 202 {
        bail!("POST backups: {code} {r:#}");
    }
    let id = r["job_id"].as_str().context("job_id")?.to_string();
    let job = wait_for("the base", Duration::from_secs(300), || {
        let j = server.get_json(&format!("/v1/jobs/{id}"))?;
        Ok((j["state"] != "running").then_some(j))
    })?;
    if job["state"] != "completed" {
        bail!("base job ended {job:#}");
    }
    Ok(job["backup"]["id"].as_str().context("base id")?.to_string())
}

#[test]
fn a_planned_switchover_loses_nothing_and_a_pitr_replays_across_it() -> Result<()> {
    let (p1, p2) = pair()?;
    p1.sql("CREATE TABLE test.t (id INT PRIMARY KEY, who VARCHAR(8))")?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let (cfg, fake) = config_with_fake_primary(dir.path(), &http, &p1, &p2)?;
    let server = ServerProcess::start(&server_bin(), &cfg, &http)?;
    wait_caught_up(&server, &p1, "db", Duration::from_secs(60))?;
    let p1_base = take_base(&server)?;
    let mut batch = String::new();
    for i in 0..300 {
        batch.push_str(&format!("INSERT INTO test.t VALUES ({i}, 'p1');"));
        if i % 100 == 99 {
            p1.sql(&batch)?;
            batch.clear();
            p1.flush_binary_logs()?;
        }
    }
    let p1_last = p1.gtid_binlog_pos()?;
    // MariaDB writes the BINLOG_CHECKPOINT of a flush a moment later, in the background.
    std::thread::sleep(Duration::from_millis(500));
    // The switchover: P1 stops taking writes, P2 applies everything, then takes over.
    p1.sql("SET GLOBAL read_only = 1")?;
    wait_replica_at(&p2, &p1_last)?;
    p2.sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0;")?;
    for i in 300..350 {
        p2.sql(&format!("INSERT INTO test.t VALUES ({i}, 'p2')"))?;
    }
    // A point in time on timeline 2: the table then, and the second after it.
    let (t_350, at_350) = p2.checkpoint()?;
    wait_caught_up_on_tl2(&server, &p2, Duration::from_secs(60))
        .with_context(|| server.log_tail(40))?;
    // Bases follow the primary too: this one is P2's, at its own file and position.
    let p2_base = take_base(&server)?;
    for i in 350..400 {
        p2.sql(&format!("INSERT INTO test.t VALUES ({i}, 'p2')"))?;
    }
    wait_caught_up_on_tl2(&server, &p2, Duration::from_secs(60))
        .with_context(|| server.log_tail(40))?;
    let tl = server.get_json("/v1/sources/db/timelines")?;
    eprintln!("timelines: {tl}");
    let row = &tl["timelines"][1];
    assert_eq!(row["switch_gtid"].as_str(), Some(p1_last.as_str()), "{tl}");
    assert!(row["divergent"].is_null(), "{tl}");
    assert!(
        row["reason"]
            .as_str()
            .is_some_and(|r| r.contains("read-only")),
        "{tl}"
    );
    // Nothing lost: P1's last transaction on timeline 1, P2's files whole on timeline 2.
    assert_on_timeline_1(&server, &p1_last)?;
    let first = row["first_file"].as_str().context("first_file")?;
    let archive = dir.path().join("data").join("db");
    assert_tl2_identical(&p2, &archive, first.trim_start_matches("tl2/"))?;
    wait_all_succ(&server, "db", Duration::from_secs(60))?;
    // The archive store (the [backup] store by default) holds both timelines: timeline
    // 1's files whole, timeline 2's active file as chunks under its stored name.
    wait_for(
        "both timelines in the store",
        Duration::from_secs(60),
        || {
            let b = server.get_json("/v1/sources/db/binlogs")?;
            let files = b["files"].as_array().cloned().unwrap_or_default();
            let Some((active, closed)) = files.split_last() else {
                return Ok(None);
            };
            let whole = closed.iter().all(|f| f["location"] == "both");
            let chunked = active["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("tl2/"))
                && active["archive"]["chunks"].as_u64().unwrap_or(0) >= 1;
            Ok((whole && chunked).then_some(()))
        },
    )?;

    // PITRs to a time on timeline 2 and to P2's last transaction replay P1's history
    // from the base, then P2's, each transaction once.
    let p2_last = p2.gtid_binlog_pos()?;
    let time = replay::pitr::fmt_time(i64::try_from(t_350)?);
    let body = serde_json::json!({"target_time": time, "base_id": p1_base});
    let to_time = pitr_checksums(&server, body, true)?;
    assert_eq!(
        to_time, at_350,
        "restored to {t_350}, the second after row 349"
    );
    let body = serde_json::json!({"target_gtid": p2_last, "base_id": p1_base});
    let to_end = pitr_checksums(&server, body, true)?;
    assert_eq!(to_end, p2.table_checksums(&["test"])?);
    // From P2's base (the newest): only timeline 2's last 50 transactions to replay.
    let body = serde_json::json!({"target_gtid": p2_last});
    let from_p2 = pitr_checksums(&server, body, false)?;
    assert_eq!(
        from_p2,
        p2.table_checksums(&["test"])?,
        "from base {p2_base}"
    );

    // `binlog-server export` across the switch: the new timeline's first file is cut at
    // its first new transaction, so mariadb-binlog reads each transaction once.
    let exported = export_gtids(&cfg, &p1_base, &p2_last, dir.path())?;
    assert_eq!(exported.0, 400, "{:?}", exported.1);

    // The fake primary serves both timelines to a stock client: from timeline 1's
    // first file it crosses the switch (each transaction once); from timeline 2's first
    // file it sends that file as stored, P2's bytes.
    let out = tempfile::tempdir()?;
    std::fs::create_dir_all(out.path().join("tl2"))?;
    mariadb_binlog_raw(
        fake,
        "mysql-bin.000001",
        out.path(),
        &[],
        Duration::from_secs(60),
    )?;
    let p1_files = p1.binlog_files()?;
    for (i, (name, _)) in p1_files.iter().enumerate() {
        // P1's last file is still open there (read-only): its in-use flag is set, and
        // what P1 writes to it after the switch (MariaDB's background BINLOG_CHECKPOINT)
        // is not timeline 1's: the archive holds it as it was at the switch, a prefix.
        let (got, mut want) = (
            std::fs::read(out.path().join(name))?,
            std::fs::read(p1.binlog_path(name))?,
        );
        if i + 1 == p1_files.len() {
            want.truncate(got.len());
        }
        assert!(
            same_but_in_use(&got, &want),
            "{name} through the fake primary: {} bytes, P1's {} bytes",
            got.len(),
            want.len()
        );
    }
    assert!(
        out.path().join(first).is_file(),
        "the client crossed into {first}"
    );
    let direct = tempfile::tempdir()?;
    std::fs::create_dir_all(direct.path().join("tl2"))?;
    mariadb_binlog_raw(fake, first, direct.path(), &[], Duration::from_secs(60))?;
    let got = std::fs::read(direct.path().join(first))?;
    let want = std::fs::read(p2.binlog_path(first.trim_start_matches("tl2/")))?;
    assert!(
        same_but_in_use(&got, &want),
        "{first} from the fake primary is P2's file ({} vs {} bytes)",
        got.len(),
        want.len()
    );
    assert_eq!(p2.sql_value("SELECT COUNT(*) FROM test.t")?, "400");

    // Node loss after the switch: the data_dir (binlogs, catalog, index) is deleted, and
    // a fresh start rebuilds from the store alone, the timelines from their records
    // there: the same rows, capture on P2's timeline 2, and a PITR from P1's base
    // crosses the switch as before.
    let timelines = server.get_json("/v1/sources/db/timelines")?;
    let mut server = server;
    server.kill9()?;
    std::fs::remove_dir_all(dir.path().join("data"))?;
    let server = ServerProcess::start(&server_bin(), &cfg, &http)?;
    wait_for("the rebuild note", Duration::from_secs(120), || {
        let st = server.get_json("/v1/sources/db")?;
        let noted = st["notes"].as_array().is_some_and(|a| {
            a.iter().any(|n| {
                n.as_str()
                    .is_some_and(|n| n.contains("rebuilt from the archive store"))
            })
        });
        Ok(noted.then_some(()))
    })
    .with_context(|| server.log_tail(40))?;
    assert_eq!(
        server.get_json("/v1/sources/db/timelines")?["timelines"],
        timelines["timelines"],
        "the timelines rebuilt from the store"
    );
    p2.sql("INSERT INTO test.t VALUES (400, 'p2')")?;
    wait_caught_up_on_tl2(&server, &p2, Duration::from_secs(60))
        .with_context(|| server.log_tail(40))?;
    let p2_last = p2.gtid_binlog_pos()?;
    let body = serde_json::json!({"target_gtid": p2_last, "base_id": p1_base});
    assert_eq!(
        pitr_checksums(&server, body, true)?,
        p2.table_checksums(&["test"])?,
        "a PITR across the switch after the rebuild"
    );
    Ok(())
}

/// Runs `binlog-server export` of `db` from `base` to `gtid` into `<dir>/export`, then
/// mariadb-binlog over the files: how many transactions the plan counts and the GTIDs
/// the files hold, each at most once (a GTID twice fails).
fn export_gtids(cfg: &Path, base: &str, gtid: &str, dir: &Path) -> Result<(u64, Vec<String>)> {
    let exp = dir.join("export");
    let out = std::process::Command::new(server_bin())
        .args(["export", "--config", cfg.to_str().unwrap_or_default()])
        .args(["--source", "db", "--gtid", gtid, "--from-base", base])
        .args(["--out", exp.to_str().unwrap_or_default()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let files: Vec<String> = summary["files"]
        .as_array()
        .context("files")?
        .iter()
        .filter_map(|f| f.as_str().map(|n| exp.join(n).display().to_string()))
        .collect();
    anyhow::ensure!(
        files.iter().any(|f| f.contains("/tl2/")),
        "the export crosses the switch: {summary:#}"
    );
    let text = std::process::Command::new(require_tool("mariadb-binlog"))
        .args(["--no-defaults", "--skip-gtid-strict-mode"])
        .args(&files)
        .output()?;
    anyhow::ensure!(
        text.status.success(),
        "mariadb-binlog over {files:?}: {}",
        String::from_utf8_lossy(&text.stderr)
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut gtids = Vec::new();
    for line in String::from_utf8_lossy(&text.stdout).lines() {
        let Some(g) = line
            .split_once("\tGTID ")
            .or_else(|| line.split_once(" GTID "))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .filter(|g| g.split('-').count() == 3 && line.starts_with('#'))
        else {
            continue;
        };
        anyhow::ensure!(seen.insert(g.to_string()), "{g} twice in the export");
        gtids.push(g.to_string());
    }
    let n = summary["transactions"].as_u64().context("transactions")?;
    anyhow::ensure!(
        gtids.len() as u64 == n,
        "{} GTIDs in the export, the plan counts {n}",
        gtids.len()
    );
    Ok((n, gtids))
}

/// A scratch PITR of `db` with `target` (a JSON object): the restored tables' checksums
/// (the instance is removed afterwards). With `crosses`, the plan must cross the switch;
/// without, it must lie on timeline 2 only.
fn pitr_checksums(
    server: &ServerProcess,
    target: serde_json::Value,
    crosses: bool,
) -> Result<std::collections::BTreeMap<String, String>> {
    let (code, plan) = server.post_json("/v1/sources/db/pitr/plan", &target)?;
    assert_eq!(code, 200, "{plan:#}");
    let files: Vec<&str> = plan["files"]
        .as_array()
        .context("files")?
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    let on_tl1 = files.iter().any(|f| !f.starts_with("tl2/"));
    assert!(
        on_tl1 == crosses && files.iter().any(|f| f.starts_with("tl2/")),
        "the plan crosses the switch: {crosses}: {plan:#}"
    );
    let mut body = target.clone();
    body["scratch"] = true.into();
    let (code, job) = server.post_json("/v1/sources/db/pitr", &body)?;
    assert_eq!(code, 202, "{job:#}");
    let id = job["id"].as_str().context("id")?.to_string();
    let done = wait_for("the PITR", Duration::from_secs(600), || {
        let j = server.get_json(&format!("/v1/pitr/{id}"))?;
        let p = j["phase"].as_str().unwrap_or_default().to_string();
        Ok((p == "done" || p == "failed").then_some(j))
    })?;
    eprintln!(
        "PITR to {target} across the switch: files {}, {} transactions",
        done["plan"]["files"], done["plan"]["transactions"]
    );
    let socket = done["restored"]["socket"].as_str().map(str::to_owned);
    let sums = match (&done["phase"], socket) {
        (p, Some(socket)) if p == "done" => checksums_socket(&socket),
        _ => Err(anyhow::anyhow!("the PITR did not finish: {done:#}")),
    };
    let (code, v) = server.delete(&format!("/v1/pitr/{id}"))?;
    assert_eq!(code, 200, "{v:#}");
    sums
}

/// Equal bytes but for the in-use flag of the FORMAT_DESCRIPTION (set in a file its
/// server has open, cleared in what any server streams).
fn same_but_in_use(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .enumerate()
            .all(|(k, (x, y))| x == y || k == IN_USE_FLAG_OFFSET)
}

/// Failover follow on a fleet: two nodes on one PostgreSQL catalog and one bucket, the
/// source on P1 and P2 (`urls`). P1 dies and P2 is promoted: the owner switches to
/// timeline 2 under its epoch. The owner is then killed under P2's write load, and the
/// other node takes the source over from the store, on timeline 2 (its `tl2/` files
/// decoded from the chunks), and streams from P2 again: every closed file of P2 from
/// the switch on is SUCC with P2's SHA-256 and whole in the store, the active one a
/// prefix of P2's, P2's last transaction indexed on timeline 2, every file of both
/// timelines checked.
#[test]
fn a_fleet_owner_follows_a_failover_and_a_takeover_continues_the_new_timeline() -> Result<()> {
    let (mut p1, p2) = pair()?;
    let svc = Services::start(&server_bin())?;
    let specs = [SourceSpec {
        name: "db".into(),
        url: p1.repl_url(),
        server_id: 4545,
        start: "\"earliest\"".into(),
    }];
    let a = svc.node("node-a", &specs, "3s")?;
    let b = svc.node("node-b", &specs, "3s")?;
    for n in [&a, &b] {
        n.edit_config(|text| {
            let one = format!("url = {}", toml_string(&p1.repl_url()));
            anyhow::ensure!(text.contains(&one), "no {one} in the config");
            Ok(text.replace(
                &one,
                &format!(
                    "urls = [{}, {}]\nfailover_timeout = \"{FAILOVER_SECS}s\"",
                    toml_string(&p1.repl_url()),
                    toml_string(&p2.repl_url())
                ),
            ))
        })?;
    }
    let mut pa = a.start()?;
    wait_streaming_owner(&pa, &a.id, "db", Duration::from_secs(30))?;
    let pb = b.start()?;
    fail_over(&mut p1, &p2)?;
    wait_streaming_on_tl2(&pa)?;

    let writes = WriteLoad::start(
        &p2,
        WriteLoadOptions {
            max_txns: 3000,
            max_duration: Duration::from_secs(40),
            ..Default::default()
        },
    )?;
    std::thread::sleep(Duration::from_secs(2));
    pa.kill9()?;
    let killed = Instant::now();
    let s = wait_streaming_owner(&pb, &b.id, "db", Duration::from_secs(30))
        .with_context(|| pb.log_tail(60))?;
    assert_eq!(s["lease"]["epoch"], 2, "{s}");
    eprintln!(
        "node-b streaming after {:?}; takeover {}",
        killed.elapsed(),
        s["takeover"]
    );
    assert!(
        s["takeover"]["summary"]
            .as_str()
            .is_some_and(|t| t.contains("resumes in tl2/")),
        "{s}"
    );
    assert!(writes.stop()? > 0);
    p2.flush_binary_logs()?;
    wait_caught_up_on_tl2(&pb, &p2, Duration::from_secs(90)).with_context(|| pb.log_tail(60))?;

    let tl = pb.get_json("/v1/sources/db/timelines")?;
    let rows = tl["timelines"].as_array().context("timelines")?;
    assert_eq!(rows.len(), 2, "{tl}");
    assert_eq!(rows[1]["server_id"], 2, "{tl}");
    let first = rows[1]["first_file"].as_str().context("first_file")?;
    let first_wire = first.strip_prefix("tl2/").context("a tl2/ name")?;
    let closed = wait_for(
        "P2's closed files SUCC and whole in the store",
        Duration::from_secs(90),
        || assert_timeline_identical(&svc.pg, &p2, "db", 2, Some(first_wire)).map(Some),
    )
    .with_context(|| pb.log_tail(60))?;
    assert!(closed >= 1, "P2 closed {closed} files since the switch");
    let p2_last = p2.gtid_binlog_pos()?;
    let found = pb.get_json(&format!("/v1/sources/db/lookup?gtid={p2_last}"))?;
    assert!(
        found["transaction"]["file"]
            .as_str()
            .is_some_and(|f| f.starts_with("tl2/")),
        "{found}"
    );
    let (active, _) = p2.binlog_files()?.pop().context("P2's binlogs")?;
    let ours = std::fs::read(b.source_dir("db").join("tl2").join(&active))
        .with_context(|| format!("node-b's tl2/{active}"))?;
    let theirs = std::fs::read(p2.binlog_path(&active))?;
    assert!(
        ours.len() <= theirs.len()
            && ours
                .iter()
                .zip(&theirs)
                .enumerate()
                .all(|(k, (x, y))| x == y || k == IN_USE_FLAG_OFFSET),
        "node-b's tl2/{active} is not a prefix of P2's"
    );
    wait_all_succ(&pb, "db", Duration::from_secs(60))?;
    Ok(())
}
