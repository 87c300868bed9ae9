//! Cold catch-up benchmark: binlog-server against `mariadb-binlog --raw`, same primary,
//! same run.
//!
//! 1. Starts a sandbox MariaDB primary (ROW, CRC32, max_binlog_size 128 MiB) and
//!    generates about `--mb` MB (default 1024) of binlogs with a server-side procedure:
//!    sysbench-like transactions of 3 INSERTs of ~1 KB rows plus an UPDATE.
//! 2. Times `mariadb-binlog --read-from-remote-server --raw --to-last-log` copying all of
//!    them into an empty directory.
//! 3. Times binlog-server (CRC32 check of every event, fdatasync every 50 ms, RocksDB
//!    index on) from process start until its durable position equals the primary's end.
//! 4. Checks both copies against the primary by SHA-256, prints MB/s of each and the
//!    ratio.
//!
//! The primary's files are in the page cache for every run (they were just written);
//! "cold" means an empty archive. Before each run all dirty pages are written back
//! (sync(2)), so no run pays for the previous one's write-back. mariadb-binlog's copy is
//! not synced by it (it never fsyncs); binlog-server's counts only once fdatasynced. Run: `bash scripts/bench.sh [--mb N]`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use binlog_benches::*;
use binlog_tests::*;

/// The timed `mariadb-binlog --raw` copy.
struct RawRun {
    /// Wall-clock seconds.
    secs: f64,
    /// CPU seconds of the primary during the copy.
    db_cpu: f64,
    /// CPU seconds of mariadb-binlog.
    cpu: f64,
    /// Bytes copied.
    bytes: u64,
}

/// One timed binlog-server catch-up.
struct ServerRun {
    /// Which configuration.
    label: &'static str,
    /// Wall-clock seconds from process start until durable at the primary's end.
    secs: f64,
    /// Bytes in the archive.
    bytes: u64,
    /// CPU seconds of binlog-server.
    cpu: f64,
    /// CPU seconds of the primary during the run.
    db_cpu: f64,
    /// `binlog_server_fsyncs_total` at the end ("?" if absent).
    fsyncs: String,
    /// `file:end` of the last transaction in the index.
    end: String,
}

fn main() -> Result<()> {
    let mb = parse_args()?;
    let bin = server_binary("scripts/bench.sh")?;
    let mariadb_binlog = require_tool("mariadb-binlog");

    println!("== primary: generating about {mb} MB of binlogs");
    let db = MariaDb::start(MariaDbOptions {
        max_binlog_size: 128 << 20,
        extra_args: vec!["--max-allowed-packet=64M".into()],
        ..Default::default()
    })?;
    let (files, total, txns) = generate_sbtest(&db, mb)?;
    let work = tempfile::tempdir()?;

    let raw = run_raw(&mariadb_binlog, &db, &files, work.path())?;

    // binlog-server: the measured run (defaults: fsync at most 500 ms after new data),
    // then diagnostic runs with fsync every 50 ms and only when idle, to show what the
    // disk's write-back costs.
    let (last_file, last_pos) = db.master_status()?;
    let mut runs = Vec::new();
    for (label, extra) in [
        ("default", ""),
        ("fsync every 50ms", "[capture]\nfsync_interval = \"50ms\"\n"),
        ("fsync when idle", "[capture]\nfsync_interval = \"1h\"\n"),
    ] {
        let cfg_dir = work.path().join(format!("bs-{}", runs.len()));
        runs.push(run_server(
            &bin, &db, &cfg_dir, label, extra, &last_file, last_pos,
        )?);
    }

    print_report(&files, total, txns, &raw, &runs);
    Ok(())
}

/// The command line: `--mb`.
fn parse_args() -> Result<u64> {
    let mut mb: u64 = 1024;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mb" => mb = args.next().context("--mb needs a number")?.parse()?,
            "--bench" => {} // passed by `cargo bench`
            other => bail!("unknown argument {other:?}; usage: catchup [--mb N]"),
        }
    }
    Ok(mb)
}

/// Times `mariadb-binlog --raw` copying every binlog into `<work>/raw`, checks the copy
/// against the primary's closed files and deletes it.
fn run_raw(
    mariadb_binlog: &Path,
    db: &MariaDb,
    files: &[(String, u64)],
    work: &Path,
) -> Result<RawRun> {
    let raw_dir = work.join("raw");
    std::fs::create_dir_all(&raw_dir)?;
    settle();
    let raw_db_cpu0 = cpu_secs(db.pid());
    let raw_cpu0 = children_cpu_secs();
    let t = Instant::now();
    let out = Command::new(mariadb_binlog)
        .args([
            "--read-from-remote-server",
            "--raw",
            "--to-last-log",
            "--host=127.0.0.1",
            &format!("--port={}", db.port()),
            &format!("--user={REPL_USER}"),
            &format!("--password={REPL_PASSWORD}"),
        ])
        .arg(format!("--result-file={}/", raw_dir.display()))
        .arg(&files[0].0)
        .output()?;
    let raw_secs = t.elapsed().as_secs_f64();
    let raw_db_cpu = cpu_secs(db.pid()) - raw_db_cpu0;
    let raw_cpu = children_cpu_secs() - raw_cpu0;
    if !out.status.success() {
        bail!(
            "mariadb-binlog failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let raw_bytes = dir_bytes(&raw_dir)?;
    // mariadb-binlog's copy must equal the primary's closed files; then it is deleted,
    // like each binlog-server archive after its run, so every run starts from the same
    // page-cache state.
    for (name, _) in &files[..files.len() - 1] {
        let a = sha256_file(&raw_dir.join(name))?;
        if a != sha256_file(&db.binlog_path(name))? {
            bail!("mariadb-binlog's copy of {name} differs from the primary's");
        }
    }

    std::fs::remove_dir_all(&raw_dir)?;
    Ok(RawRun {
        secs: raw_secs,
        db_cpu: raw_db_cpu,
        cpu: raw_cpu,
        bytes: raw_bytes,
    })
}

/// Times one binlog-server run (config `extra` in `cfg_dir`) from process start until its
/// durable position is the primary's end (`last_file`, `last_pos`), checks the archive
/// and deletes it.
fn run_server(
    bin: &Path,
    db: &MariaDb,
    cfg_dir: &Path,
    label: &'static str,
    extra: &str,
    last_file: &str,
    last_pos: u64,
) -> Result<ServerRun> {
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = write_config_sources(
        cfg_dir,
        &http,
        &[SourceSpec {
            name: "db".into(),
            url: db.repl_url(),
            server_id: 4242,
            start: "\"earliest\"".into(),
        }],
        extra,
    )?;
    settle();
    let db_cpu0 = cpu_secs(db.pid());
    let t = Instant::now();
    let server = ServerProcess::start(bin, &cfg, &http)?;
    wait_for(
        "binlog-server to catch up",
        Duration::from_secs(600),
        || {
            let s = server.get_json("/v1/sources/db")?;
            Ok((s["durable_file"].as_str() == Some(last_file)
                && s["durable_pos"].as_u64() == Some(last_pos))
            .then_some(()))
        },
    )?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs(server.pid());
    let db_cpu = cpu_secs(db.pid()) - db_cpu0;
    let archive = cfg_dir.join("data").join("db");
    let bytes = dir_bytes(&archive)?;
    let metrics = server.get_text("/metrics")?.1;
    let fsyncs = metrics
        .lines()
        .find(|l| l.starts_with("binlog_server_fsyncs_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("?")
        .to_string();
    let indexed = server.get_json(&format!(
        "/v1/sources/db/lookup?gtid={}",
        db.gtid_binlog_pos()?
    ))?;
    assert_archive_identical(db, &archive)?;
    let end = format!(
        "{}:{}",
        indexed["transaction"]["file"].as_str().unwrap_or("?"),
        indexed["transaction"]["end"]
    );
    drop(server);
    std::fs::remove_dir_all(cfg_dir)?;
    Ok(ServerRun {
        label,
        secs,
        bytes,
        cpu,
        db_cpu,
        fsyncs,
        end,
    })
}

/// Prints each run's time, MB/s and CPU, and binlog-server's ratio to mariadb-binlog.
fn print_report(files: &[(String, u64)], total: u64, txns: u64, raw: &RawRun, runs: &[ServerRun]) {
    let (raw_secs, raw_cpu, raw_db_cpu) = (raw.secs, raw.cpu, raw.db_cpu);
    let raw_mbs = raw.bytes as f64 / 1e6 / raw_secs;
    println!(
        "== cold catch-up of {:.1} MB ({} files, {} transactions)",
        total as f64 / 1e6,
        files.len(),
        txns
    );
    println!(
        "   mariadb-binlog --raw           : {raw_secs:>6.2} s {raw_mbs:>7.1} MB/s  cpu {raw_cpu:>5.2} s, primary cpu {raw_db_cpu:>5.2} s  (no CRC check, no fsync)"
    );
    for ServerRun {
        label,
        secs,
        bytes,
        cpu,
        db_cpu,
        fsyncs,
        end,
    } in runs
    {
        let mbs = *bytes as f64 / 1e6 / secs;
        println!(
            "   binlog-server ({label:<16}): {secs:>6.2} s {mbs:>7.1} MB/s  cpu {cpu:>5.2} s, primary cpu {db_cpu:>5.2} s  ({fsyncs} fdatasyncs, CRC32 every event, index to {end})  ratio {:.2}x",
            mbs / raw_mbs
        );
    }
    println!("   target: binlog-server (default) >= 3x mariadb-binlog");
}
