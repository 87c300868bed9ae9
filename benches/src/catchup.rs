//! Cold catch-up benchmark: binlog-server against `mariadb-binlog --raw`, same primary,
//! same run.
//!
//! 1. Starts a sandbox MariaDB primary (ROW, CRC32, max_binlog_size 128 MiB) and
//!    generates about `--mb` MB (default 1024) of binlogs with a server-side procedure:
//!    sysbench-like transactions of 3 INSERTs of ~1 KB rows plus an UPDATE.
//! 2. Times `mariadb-binlog --read-from-remote-server --raw --to-last-log` copying all of
//!    them into an empty directory.
//! 3. Times binlog-server (CRC32 check of every event, fdatasync, RocksDB index on) from
//!    process start until its durable position equals the primary's end, twice: with the
//!    archive tier off, and with every binlog shipped to an S3-compatible store on
//!    loopback (moto_server) compressed (zstd) and encrypted (AES-256-GCM). For the
//!    second it also times how long after the end of the catch-up the archive lag is 0
//!    with every closed file whole in the store, and reads the upload amplification and
//!    the compression ratio from the API.
//! 4. Checks every copy against the primary by SHA-256, and prints medians over
//!    `--rounds` (default 3) interleaved rounds of the three, MB/s and the ratios.
//!
//! The primary's files are in the page cache for every run (they were just written);
//! "cold" means an empty archive. Before each run all dirty pages are written back
//! (sync(2)), so no run pays for the previous one's write-back. mariadb-binlog's copy is
//! not synced by it (it never fsyncs); binlog-server's counts only once fdatasynced. Run:
//! `bash scripts/bench.sh [--mb N] [--rounds N]`. The generated rows repeat an MD5 string,
//! so they compress far better than most production data: read the compression ratio as
//! this load's, not a promise.

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
    label: String,
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
    /// With the archive on, what shipping did.
    archive: Option<Shipped>,
}

/// Shipping figures of a run with the archive on.
#[derive(Clone, Copy)]
struct Shipped {
    /// Seconds from the end of the catch-up until the archive lag (durable here, not in
    /// the store) is 0.
    lag_secs: f64,
    /// ... until every closed file is whole in the store (after its check).
    whole_secs: f64,
    /// Plaintext bytes uploaded / binlog bytes.
    amplification: f64,
    /// Plaintext bytes uploaded / bytes stored.
    compression: f64,
}

fn main() -> Result<()> {
    let (mb, rounds) = parse_args()?;
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

    // The S3-compatible store on loopback, and a key file.
    let moto = Moto::start()?;
    moto.create_bucket("bench")?;
    for (k, v) in S3_TEST_ENV {
        std::env::set_var(k, v);
    }
    let key_file = work.path().join("archive.key");
    std::fs::write(&key_file, format!("bench {}\n", "6b".repeat(32)))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
    }

    let (last_file, last_pos) = db.master_status()?;
    let mut raws = Vec::new();
    let mut off = Vec::new();
    let mut on = Vec::new();
    for round in 0..rounds {
        println!("== round {} of {rounds}", round + 1);
        raws.push(run_raw(&mariadb_binlog, &db, &files, work.path())?);
        let cfg_dir = work.path().join(format!("off-{round}"));
        off.push(run_server(
            &bin,
            &db,
            &cfg_dir,
            "archive off",
            "[archive]\nenabled = false\n",
            false,
            (&last_file, last_pos),
        )?);
        let extra = format!(
            "[archive]\nstore = \"s3://bench/r{round}\"\ns3_endpoint = {}\ns3_allow_http = true\n\
             encryption_key_file = {}\n",
            toml_string(&moto.endpoint()),
            toml_string(key_file.to_str().context("utf-8")?)
        );
        let cfg_dir = work.path().join(format!("on-{round}"));
        on.push(run_server(
            &bin,
            &db,
            &cfg_dir,
            "archive on: S3 zstd+AES",
            &extra,
            true,
            (&last_file, last_pos),
        )?);
    }
    print_report(&files, total, txns, &raws, &off, &on);
    Ok(())
}

/// The command line: `--mb`, `--rounds`.
fn parse_args() -> Result<(u64, usize)> {
    let mut mb: u64 = 1024;
    let mut rounds = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mb" => mb = args.next().context("--mb needs a number")?.parse()?,
            "--rounds" => rounds = args.next().context("--rounds needs a number")?.parse()?,
            "--bench" => {} // passed by `cargo bench`
            other => bail!("unknown argument {other:?}; usage: catchup [--mb N] [--rounds N]"),
        }
    }
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    Ok((mb, rounds))
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

/// Times one binlog-server run (config `extra` in `cfg_dir`; `shipping`: the archive is
/// on, so its lag and figures are read too) from process start until its
/// durable position is the primary's end (`last_file`, `last_pos`), checks the archive
/// and deletes it.
fn run_server(
    bin: &Path,
    db: &MariaDb,
    cfg_dir: &Path,
    label: &str,
    extra: &str,
    shipping: bool,
    (last_file, last_pos): (&str, u64),
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
    let shipped = if !shipping {
        None
    } else {
        let t_end = Instant::now();
        let closed: Vec<String> = db
            .binlog_files()?
            .iter()
            .rev()
            .skip(1)
            .map(|(n, _)| n.clone())
            .collect();
        wait_for(
            "the archive lag back to 0",
            Duration::from_secs(900),
            || {
                let st = server.get_json("/v1/sources/db")?;
                Ok((st["archive"]["lag_bytes"].as_u64() == Some(0)).then_some(()))
            },
        )?;
        let lag_secs = t_end.elapsed().as_secs_f64();
        let st = wait_for(
            "every closed file whole in the store",
            Duration::from_secs(900),
            || {
                let st = server.get_json("/v1/sources/db")?;
                let b = server.get_json("/v1/sources/db/binlogs")?;
                let whole = closed.iter().all(|n| {
                    b["files"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|f| f["name"] == n.as_str() && f["location"] == "both")
                    })
                });
                Ok(whole.then_some(st))
            },
        )?;
        let a = &st["archive"];
        let whole_secs = t_end.elapsed().as_secs_f64();
        let up = a["uploaded_bytes"].as_f64().unwrap_or(0.0);
        let stored = a["stored_bytes"].as_f64().unwrap_or(0.0).max(1.0);
        Some(Shipped {
            lag_secs,
            whole_secs,
            amplification: a["amplification"].as_f64().unwrap_or(0.0),
            compression: up / stored,
        })
    };
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
        label: label.to_string(),
        archive: shipped,
        secs,
        bytes,
        cpu,
        db_cpu,
        fsyncs,
        end,
    })
}

/// The median of `v` (by `f`).
fn median<T>(v: &[T], f: impl Fn(&T) -> f64) -> f64 {
    let mut x: Vec<f64> = v.iter().map(f).collect();
    x.sort_by(|a, b| a.total_cmp(b));
    match x.len() {
        0 => 0.0,
        n if n % 2 == 1 => x[n / 2],
        n => (x[n / 2 - 1] + x[n / 2]) / 2.0,
    }
}

/// Prints every run, then the medians, MB/s, CPU per GB and the ratios.
fn print_report(
    files: &[(String, u64)],
    total: u64,
    txns: u64,
    raws: &[RawRun],
    off: &[ServerRun],
    on: &[ServerRun],
) {
    println!(
        "== cold catch-up of {:.1} MB ({} files, {} transactions), {} interleaved rounds",
        total as f64 / 1e6,
        files.len(),
        txns,
        raws.len()
    );
    for (i, r) in raws.iter().enumerate() {
        println!(
            "   round {}: mariadb-binlog --raw {:>6.2} s cpu {:>5.2} s (primary {:>5.2} s)",
            i + 1,
            r.secs,
            r.cpu,
            r.db_cpu
        );
    }
    for r in off.iter().chain(on) {
        let lag = r
            .archive
            .map(|a| {
                format!(
                    ", lag 0 after {:.1} s, all files whole after {:.1} s, amplification {:.2}, compression {:.1}x",
                    a.lag_secs, a.whole_secs, a.amplification, a.compression
                )
            })
            .unwrap_or_default();
        println!(
            "   {:<24}: {:>6.2} s cpu {:>5.2} s (primary {:>5.2} s), {} fdatasyncs, index to {}{lag}",
            r.label, r.secs, r.cpu, r.db_cpu, r.fsyncs, r.end
        );
    }
    let gb = total as f64 / 1e9;
    let raw_s = median(raws, |r| r.secs);
    let raw_mbs = median(raws, |r| r.bytes as f64) / 1e6 / raw_s;
    let raw_cpu = median(raws, |r| r.cpu);
    println!("== medians");
    println!(
        "   mariadb-binlog --raw     : {raw_s:>6.2} s {raw_mbs:>7.1} MB/s  cpu {:>5.2} s/GB  (no CRC check, no fsync)",
        raw_cpu / gb
    );
    let line = |runs: &[ServerRun]| -> f64 {
        let s = median(runs, |r| r.secs);
        let mbs = median(runs, |r| r.bytes as f64) / 1e6 / s;
        println!(
            "   {:<24} : {s:>6.2} s {mbs:>7.1} MB/s  cpu {:>5.2} s/GB  ratio to mariadb-binlog {:.2}x",
            runs.first().map(|r| r.label.as_str()).unwrap_or("?"),
            median(runs, |r| r.cpu) / gb,
            mbs / raw_mbs
        );
        mbs
    };
    let off_mbs = line(off);
    let on_mbs = line(on);
    println!(
        "   shipping on / off: {:.2}x (target >= 0.90)",
        on_mbs / off_mbs
    );
    let m = |f: fn(&Shipped) -> f64| median(on, |r| r.archive.as_ref().map_or(0.0, f));
    println!(
        "   archive lag back to 0 after the catch-up: {:.1} s (target <= 5 s); every closed file whole in the store after {:.1} s (checked first); upload amplification {:.2} (<= 2); compression {:.1}x (plaintext / stored)",
        m(|a| a.lag_secs),
        m(|a| a.whole_secs),
        m(|a| a.amplification),
        m(|a| a.compression),
    );
}
