//! The README's first command (`bash scripts/demo.sh` runs this after the set-up): a
//! sandbox MariaDB primary with a write load, binlog-server capturing it, and what the
//! API shows while files go from ACTIVE to SUCC and into the archive store; at the end
//! the closed files leave the local disk and a PITR reads them back from the store; last,
//! a semi-sync primary killed under load and its promoted replica followed
//! ([`failover`]).
//!
//! Everything lives under a temporary directory (or `--dir DIR`, kept afterwards) and is
//! stopped by PID at the end. Bounded: the load runs for `--seconds` (default 30).
//!
//! `--fleet` runs the fleet demo instead ([`fleet`]): three nodes on PostgreSQL and a
//! bucket, the owner killed under load, a restore on a node that never owned the source.

mod failover;
mod fleet;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use binlog_tests::*;

fn main() -> Result<()> {
    let mut seconds = 30u64;
    let mut keep_dir: Option<PathBuf> = None;
    let mut fleet_mode = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().context("--seconds needs a number")?.parse()?,
            "--dir" => keep_dir = Some(args.next().context("--dir needs a path")?.into()),
            "--fleet" => fleet_mode = true,
            "-h" | "--help" => {
                println!(
                    "demo [--seconds N] [--dir DIR]: sandbox primary + binlog-server, bounded\n\
                     demo --fleet [--seconds N]: three nodes on PostgreSQL and a bucket, the owner killed under load"
                );
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let bin = server_binary("scripts/demo.sh")?;
    if fleet_mode {
        anyhow::ensure!(keep_dir.is_none(), "--dir is not supported with --fleet");
        return fleet::run(&bin, seconds);
    }
    println!("== starting a sandbox MariaDB primary (binlog_format=ROW, binlog_checksum=CRC32, max_binlog_size=256K)");
    // Base backups of the sandbox: an account with backup privileges, physical by
    // default, kept in the local store under <dir>/data/backups.
    // The source's own fake primary, for stock clients (mariadb-binlog at the end).
    let fake_port = free_port();
    let mut builder = Sandbox::builder(&bin)
        .source("sandbox", 4242)
        .source_replication(fake_port)
        .extra_toml("[capture]\npoll_interval = \"1s\"\n")
        .secure_api()
        .source_backup(
            SourceBackup::physical()
                .logical_tool("mydumper")
                .databases("%"),
        )
        .wait_caught_up_at_start(false);
    if let Some(d) = &keep_dir {
        builder = builder.dir(d);
    }
    let staged = builder.start_primary()?;
    let db = staged.primary();
    println!(
        "   primary on 127.0.0.1:{} (datadir {})",
        db.port(),
        db.datadir().display()
    );
    let load = WriteLoad::start(
        db,
        WriteLoadOptions {
            max_duration: Duration::from_secs(seconds),
            row_bytes: 400,
            ..Default::default()
        },
    )?;
    let cfg = staged.config_path().to_path_buf();
    println!(
        "== config {}:\n{}",
        cfg.display(),
        std::fs::read_to_string(&cfg)?
            .replace(REPL_PASSWORD, "***")
            .replace(ADMIN_PASSWORD, "***")
    );
    let mut sb = staged.start_server()?;
    let (db, server, http) = (sb.primary(), sb.server(), sb.http_addr());
    let access = sb.api_access().clone();
    let token = access.token.clone().unwrap_or_default();
    let ca = access.ca_cert.clone().unwrap_or_default();
    println!(
        "== binlog-server running (pid {:?}), API on {http} (TLS with a self-signed certificate, bearer tokens)",
        server.pid()
    );
    println!(
        "   made with: binlog-server tls self-signed --cert {} --key ...; binlog-server token add --file {} --name sandbox-admin --role admin",
        ca.display(),
        sb.dir().join("tokens").display()
    );
    println!(
        "   every call below is: curl --cacert {} -H \"Authorization: Bearer $BINLOG_SERVER_TOKEN\" -H 'Content-Type: application/json' {http}/v1/... (the token that token add printed; the CLI commands get it in BINLOG_SERVER_TOKEN)",
        ca.display()
    );
    let curl = std::process::Command::new(require_tool("curl"))
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .arg(format!("{http}/v1/sources"))
        .output()?;
    println!(
        "   the same without a token: HTTP {}",
        String::from_utf8_lossy(&curl.stdout)
    );
    let start = Instant::now();
    let mut base_job: Option<String> = None;
    let mut base_at: Option<i64> = None;
    while start.elapsed() < Duration::from_secs(seconds) {
        if base_job.is_none() && start.elapsed() >= Duration::from_secs(seconds / 3) {
            let (code, v) =
                server.post_json("/v1/sources/sandbox/backups", &serde_json::json!({}))?;
            println!(
                "== POST /v1/sources/sandbox/backups (physical base under load) -> {code} {v}"
            );
            base_job = v["job_id"].as_str().map(str::to_owned);
        }
        std::thread::sleep(Duration::from_secs(5));
        let s = server.get_json("/v1/sources/sandbox")?;
        println!(
            "   t={:>3}s state={} durable={}:{} primary={}:{} behind={} bytes last_gtid={}",
            start.elapsed().as_secs(),
            s["state"],
            s["durable_file"],
            s["durable_pos"],
            s["primary_file"],
            s["primary_pos"],
            s["bytes_behind"],
            s["last_gtid"]
        );
    }
    let n = load.stop()?;
    println!("== write load done: {n} transactions");
    if let Some(id) = &base_job {
        let job = wait_for("the base job", Duration::from_secs(300), || {
            let j = server.get_json(&format!("/v1/jobs/{id}"))?;
            Ok((j["state"] != "running").then_some(j))
        })?;
        println!(
            "== GET /v1/jobs/{id}: state={} bytes_done={} gtid={} error={}",
            job["state"], job["bytes_done"], job["backup"]["gtid_pos"], job["error"]
        );
        base_at = job["backup"]["consistent_at"].as_i64();
    }
    let snap = bin.with_file_name("snapshotter");
    println!("== snapshotter take --method logical (mydumper), from the command line");
    let (code, _out, err) = run_snapshotter(
        &snap,
        &[
            "take",
            "--config",
            cfg.to_str().unwrap_or_default(),
            "--source",
            "sandbox",
            "--method",
            "logical",
        ],
        &[],
    )?;
    println!(
        "   exit {code}{}",
        if code == 0 {
            String::new()
        } else {
            format!(": {err}")
        }
    );
    db.flush_binary_logs()?;
    wait_caught_up(server, db, "sandbox", Duration::from_secs(60))?;
    let files = wait_all_succ(server, "sandbox", Duration::from_secs(60))?;
    println!(
        "== GET /v1/sources\n{}",
        serde_json::to_string_pretty(&server.get_json("/v1/sources")?)?
    );
    println!("== GET /v1/sources/sandbox/binlogs");
    for f in files["files"].as_array().cloned().unwrap_or_default() {
        println!(
            "   {:<18} {:>8} bytes  {:<8} {:<5} sha256={}  {}",
            f["name"].as_str().unwrap_or("?"),
            f["size"],
            f["state"].as_str().unwrap_or("?"),
            f["location"].as_str().unwrap_or("?"),
            f["sha256"]
                .as_str()
                .map(|s| &s[..12.min(s.len())])
                .unwrap_or("-"),
            f["info"].as_str().unwrap_or("")
        );
    }
    let a = &server.get_json("/v1/sources/sandbox")?["archive"];
    println!(
        "== archive store {}: lag {} bytes / {:.1} s, {} objects, {} bytes uploaded as {} stored (zstd), amplification {}",
        a["store"].as_str().unwrap_or("?"),
        a["lag_bytes"],
        a["lag_seconds"].as_f64().unwrap_or(0.0),
        a["objects"],
        a["uploaded_bytes"],
        a["stored_bytes"],
        a["amplification"]
    );
    println!("== GET /v1/sources/sandbox/backups");
    let bases = server.get_json("/v1/sources/sandbox/backups")?;
    for b in bases["backups"].as_array().cloned().unwrap_or_default() {
        println!(
            "   {:<34} {:<9} {:<11} {:<9} {:>10} bytes  {}:{}  gtid={}",
            b["id"].as_str().unwrap_or("?"),
            b["method"].as_str().unwrap_or("?"),
            b["tool"].as_str().unwrap_or("?"),
            b["state"].as_str().unwrap_or("?"),
            b["bytes"],
            b["binlog_file"].as_str().unwrap_or("-"),
            b["binlog_pos"],
            b["gtid_pos"].as_str().unwrap_or("-"),
        );
    }
    println!("   oldest restorable point: {}", bases["oldest_restorable"]);
    if let Some(t0) = base_at {
        // Point in time: a few seconds after the physical base, while the load ran.
        let target = t0 + (seconds as i64 / 4).clamp(1, 5);
        println!("== binlog-server pitr --source sandbox --to @{target} --scratch (restore + replay through the fake primary)");
        let out = std::process::Command::new(&bin)
            .args(["pitr", "--config", cfg.to_str().unwrap_or_default()])
            .args([
                "--source",
                "sandbox",
                "--to",
                &format!("@{target}"),
                "--scratch",
            ])
            .env("BINLOG_SERVER_TOKEN", &token)
            .output()?;
        let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if !out.status.success() {
            anyhow::bail!("pitr failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        println!(
            "   phase={} target={} base={} applied {} transactions ({} bytes) in {:.1} s restore + {:.1} s replay",
            rep["phase"],
            rep["plan"]["target"],
            rep["plan"]["base"]["id"],
            rep["progress"]["transactions_applied"],
            rep["progress"]["bytes_applied"],
            rep["restore_seconds"].as_f64().unwrap_or(0.0),
            rep["replay_seconds"].as_f64().unwrap_or(0.0),
        );
        let socket = rep["restored"]["socket"].as_str().unwrap_or_default();
        println!(
            "   restored instance on {} (socket {socket}), gtid_slave_pos {}, last transaction {} committed at {}",
            rep["restored"]["address"], rep["restored"]["gtid_slave_pos"], rep["plan"]["end_gtid"], rep["plan"]["end_commit_time"]
        );
        let rows = std::process::Command::new(require_tool("mariadb"))
            .args(["--no-defaults", &format!("--socket={socket}"), "--user=root", "--batch"])
            .args(["-e", "SELECT (SELECT COUNT(*) FROM test.load_t1) AS t1_rows, (SELECT COUNT(*) FROM test.load_t2) AS t2_rows, (SELECT COUNT(*) FROM test.load_t3) AS t3_rows"])
            .output()?;
        println!(
            "   SELECT on the restored instance:\n{}",
            String::from_utf8_lossy(&rows.stdout)
        );
        let id = rep["id"].as_str().unwrap_or_default();
        let (code, _) = server.delete(&format!("/v1/pitr/{id}"))?;
        println!("== DELETE /v1/pitr/{id} -> {code} (restored instance stopped and removed)");
    }
    // The weekly restore verification, run once now, after a few more writes so that
    // it has archived transactions to replay on top of the newest base.
    let mut more = String::from("CREATE TABLE IF NOT EXISTS test.after_bases (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(32));");
    for i in 0..300 {
        more.push_str(&format!(
            "INSERT INTO test.after_bases (v) VALUES ('row {i}');"
        ));
    }
    db.sql(&more)?;
    wait_caught_up(server, db, "sandbox", Duration::from_secs(60))?;
    let verifier = bin.with_file_name("verifier");
    println!("== verifier run --source sandbox (newest base of the week -> scratch instance -> archive replay -> chain to the primary -> data checks)");
    let out = std::process::Command::new(&verifier)
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap_or_default(),
            "--source",
            "sandbox",
        ])
        .env("BINLOG_SERVER_TOKEN", &token)
        .output()?;
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    for p in rep["phases"].as_array().cloned().unwrap_or_default() {
        println!(
            "   {:<20} {:<8} {:>7.1} s  {}",
            p["name"].as_str().unwrap_or("?"),
            p["outcome"].as_str().unwrap_or("?"),
            p["seconds"].as_f64().unwrap_or(0.0),
            p["detail"].as_str().unwrap_or("")
        );
    }
    println!(
        "   result: {}, base {}, RTO {:.1} s{}",
        rep["outcome"].as_str().unwrap_or("?"),
        rep["base"]["id"].as_str().unwrap_or("-"),
        rep["rto_seconds"].as_f64().unwrap_or(0.0),
        rep["error"]
            .as_str()
            .map(|e| format!(", {e}"))
            .unwrap_or_default()
    );
    let id = rep["id"].as_str().unwrap_or_default();
    println!(
        "   report: {0}/v1/verifications/{id} (JSON), {0}/v1/verifications/{id}.html, weekly summary {0}/v1/verifications/summary.html",
        server.base_url()
    );
    if !out.status.success() {
        anyhow::bail!(
            "verification did not pass: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let closed = assert_archive_identical(db, &sb.archive_dir("sandbox"))?;
    println!("== {closed} closed binlogs are SHA-256-identical to the primary's; the active one is a prefix");
    fetch_from_fake_primary(db, fake_port, &sb)?;
    if let Some(t0) = base_at {
        evict_then_pitr(&mut sb, &bin, &cfg, t0 + (seconds as i64 / 4).clamp(1, 5))?;
    }
    if keep_dir.is_some() {
        println!("== archive kept in {}", sb.dir().display());
    }
    drop(sb);
    failover::run(&bin)
}

/// The local disk as a cache of the archive store: restarts binlog-server with
/// `[archive] local_retention = "0s"`, shows the closed files leaving the local disk
/// (location `store`), then a PITR to `target` that reads them back from the store.
fn evict_then_pitr(
    sb: &mut Sandbox,
    bin: &std::path::Path,
    cfg: &std::path::Path,
    target: i64,
) -> Result<()> {
    println!("== restart with [archive] local_retention = \"0s\": closed files confirmed in the store leave the local disk (the two newest stay)");
    sb.server_mut().stop()?;
    let mut text = std::fs::read_to_string(cfg)?;
    text.push_str("\n[archive]\nlocal_retention = \"0s\"\n");
    std::fs::write(cfg, text)?;
    let s = ServerProcess::start_with(bin, cfg, sb.http_addr(), sb.api_access().clone())?;
    *sb.server_mut() = s;
    let server = sb.server();
    let files = wait_for(
        "every closed binlog but the two newest evicted",
        Duration::from_secs(300),
        || {
            let b = server.get_json("/v1/sources/sandbox/binlogs")?;
            let a = b["files"].as_array().cloned().unwrap_or_default();
            let n = a.iter().filter(|f| f["location"] == "store").count();
            Ok((n + 2 >= a.len()).then_some(b))
        },
    )?;
    let all = files["files"].as_array().cloned().unwrap_or_default();
    println!(
        "   {} of {} files are only in the store now; the oldest and the newest:",
        all.iter().filter(|f| f["location"] == "store").count(),
        all.len()
    );
    let shown: Vec<serde_json::Value> = all
        .iter()
        .take(3)
        .chain(all.iter().skip(all.len().saturating_sub(3)))
        .cloned()
        .collect();
    for f in shown {
        println!(
            "   {:<18} {:>8} bytes  {:<5} {}",
            f["name"].as_str().unwrap_or("?"),
            f["size"],
            f["location"].as_str().unwrap_or("?"),
            f["archive"]["object_key"].as_str().unwrap_or("")
        );
    }
    println!("== binlog-server pitr --source sandbox --to @{target} --scratch (its binlogs now come from the archive store)");
    let out = std::process::Command::new(bin)
        .args(["pitr", "--config", cfg.to_str().unwrap_or_default()])
        .args([
            "--source",
            "sandbox",
            "--to",
            &format!("@{target}"),
            "--scratch",
        ])
        .env(
            "BINLOG_SERVER_TOKEN",
            sb.api_access().token.clone().unwrap_or_default(),
        )
        .output()?;
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if !out.status.success() {
        anyhow::bail!("pitr failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let cached = std::fs::read_dir(sb.data_dir().join("cache").join("sandbox"))
        .map(|d| d.count())
        .unwrap_or(0);
    println!(
        "   phase={} applied {} transactions ({} bytes) in {:.1} s replay; {cached} file(s) read back from the store into the cache",
        rep["phase"],
        rep["progress"]["transactions_applied"],
        rep["progress"]["bytes_applied"],
        rep["replay_seconds"].as_f64().unwrap_or(0.0),
    );
    let id = rep["id"].as_str().unwrap_or_default();
    let (code, _) = server.delete(&format!("/v1/pitr/{id}"))?;
    println!("== DELETE /v1/pitr/{id} -> {code}");
    Ok(())
}

/// `mariadb-binlog --read-from-remote-server --raw --to-last-log` from the source's fake
/// primary, as a DBA fetches binlogs from a log server: shows that the command ended by
/// itself and that the files it wrote are the primary's (the active one with its in-use
/// flag cleared, as every server sends it).
fn fetch_from_fake_primary(db: &MariaDb, port: u16, sb: &Sandbox) -> Result<()> {
    let primary_files = db.binlog_files()?;
    let first = primary_files
        .first()
        .context("the primary lists no binlog")?
        .0
        .clone();
    println!(
        "== mariadb-binlog --read-from-remote-server --host=127.0.0.1 --port={port} --raw --to-last-log {first}   (binlog-server's fake primary)"
    );
    sb.wait_caught_up()?;
    let out = tempfile::tempdir()?;
    let t0 = Instant::now();
    mariadb_binlog_raw(port, &first, out.path(), &[], Duration::from_secs(120))?;
    let active = primary_files.last().map(|(n, _)| n.clone());
    let mut same = 0;
    for (name, _) in &primary_files {
        let got = std::fs::read(out.path().join(name))
            .with_context(|| format!("mariadb-binlog wrote no {name}"))?;
        let want = std::fs::read(db.binlog_path(name))?;
        let identical = want.len() == got.len()
            && want.iter().zip(&got).enumerate().all(|(i, (a, b))| {
                a == b || (Some(name) == active.as_ref() && i == IN_USE_FLAG_OFFSET)
            });
        if !identical {
            anyhow::bail!("{name} fetched from the fake primary differs from the primary's");
        }
        same += 1;
    }
    println!(
        "   the command ended by itself after {:.1} s; {same} files written, each identical to the primary's",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
