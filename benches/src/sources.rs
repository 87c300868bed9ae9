//! Cost per source: `bash scripts/bench.sh --sources 100,1000`.
//!
//! For each count N: four sandbox primaries (distinct server_ids, `max_connections`
//! raised to hold their share of the replicas) and one binlog-server on the embedded
//! defaults (SQLite catalog, the archive in the local store) with N sources, each a fake
//! replica of one primary (round robin, server_id 10000 + i), capturing from `earliest`.
//! Once every source is caught up, the bench prints, per N:
//!
//! - idle, over 30 s: RSS (MB, and MB per source), OS threads, open fds, CPU (% of one
//!   core) and catalog calls per second (the `catalog_calls` metric), each also per
//!   source;
//! - the OS threads once `--replicas` (default 20) `mariadb-binlog --stop-never` replicas
//!   follow the first source through its fake primary (they stay through the load);
//! - under write load (each primary commits `--rate` transactions of ~3 KB a second,
//!   for `--load-secs`): the same figures, and how far the sources trail their primary:
//!   every second the bench notes each primary's end, then times how long until every
//!   source is durable past it (p50 and max of those times, seconds);
//!
//! With `--archive-off` the sources capture with `[archive] enabled = false`: the
//! difference is the archive tier's share. The bench then checks, at the end, that the
//! first source of each primary holds files
//! SHA-256-equal to its primary's. A count whose RSS passes `--max-rss-gb` (default 16)
//! while it starts is stopped and reported as such, so the bench never drives the
//! machine out of memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use binlog_benches::*;
use binlog_tests::*;

/// Primaries the sources are spread over.
const PRIMARIES: usize = 4;
/// How long the idle process is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(30);

/// The bench's options.
struct Options {
    counts: Vec<usize>,
    /// Transactions per second per primary under load.
    rate: u32,
    load: Duration,
    max_rss_bytes: u64,
    /// Replicas of the first source.
    replicas: usize,
    /// `[archive] enabled = false`: the capture alone (where the memory goes).
    archive_off: bool,
}

/// Process figures over a window.
#[derive(Clone, Copy, Default)]
struct Figures {
    rss_bytes: u64,
    threads: u64,
    fds: u64,
    cpu_pct: f64,
    calls_per_sec: f64,
}

/// One count's result.
struct Run {
    sources: usize,
    /// Process start until every source is caught up, seconds.
    start_secs: f64,
    idle: Figures,
    /// Threads with the replicas attached, idle.
    replica_threads: u64,
    load: Figures,
    /// Seconds from a primary's end to every source durable past it: p50, max.
    trail_p50: f64,
    trail_max: f64,
    /// Binlog bytes the primaries wrote under load, per second, in all.
    load_bytes_per_sec: f64,
}

fn main() -> Result<()> {
    let o = parse_args()?;
    let bin = server_binary("scripts/bench.sh --sources")?;
    let mut runs = Vec::new();
    for n in &o.counts {
        match run_one(&bin, *n, &o) {
            Ok(r) => runs.push(r),
            Err(e) => println!("   {n} sources: stopped: {e:#}"),
        }
    }
    print_table(&runs);
    Ok(())
}

fn parse_args() -> Result<Options> {
    let mut o = Options {
        counts: vec![100, 1000],
        rate: 20,
        load: Duration::from_secs(30),
        max_rss_bytes: 16 << 30,
        replicas: 20,
        archive_off: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--sources" => {
                o.counts = value()?
                    .split(',')
                    .map(|v| v.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?;
            }
            "--rate" => o.rate = value()?.parse()?,
            "--load-secs" => o.load = Duration::from_secs(value()?.parse()?),
            "--max-rss-gb" => o.max_rss_bytes = value()?.parse::<u64>()? << 30,
            "--replicas" => o.replicas = value()?.parse()?,
            "--archive-off" => o.archive_off = true,
            "-h" | "--help" => {
                println!("sources [--sources N,N,...] [--rate TXNS_PER_S_PER_PRIMARY] [--load-secs S] [--max-rss-gb G] [--replicas R] [--archive-off]: RSS, threads, fds, CPU and catalog calls per source, idle and under load, over 4 primaries");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    anyhow::ensure!(
        o.counts.iter().all(|n| *n >= PRIMARIES),
        "--sources needs counts of at least {PRIMARIES}"
    );
    o.counts.sort_unstable();
    Ok(o)
}

fn print_table(runs: &[Run]) {
    println!("\n| sources | | RSS MB | MB per source | threads | fds | CPU % of a core | catalog calls/s | calls/s per source | sources trail their primary, p50 / max s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        for (what, f) in [("idle", r.idle), ("load", r.load)] {
            let n = r.sources as f64;
            let trail = match what {
                "idle" => format!(
                    "(caught up {:.0} s after start; {} threads with the replicas)",
                    r.start_secs, r.replica_threads
                ),
                _ => format!(
                    "{:.2} / {:.2} ({:.1} MB/s written in all)",
                    r.trail_p50,
                    r.trail_max,
                    r.load_bytes_per_sec / 1e6
                ),
            };
            println!(
                "| {} | {what} | {:.0} | {:.2} | {} | {} | {:.1} | {:.1} | {:.3} | {trail} |",
                r.sources,
                f.rss_bytes as f64 / 1e6,
                f.rss_bytes as f64 / 1e6 / n,
                f.threads,
                f.fds,
                f.cpu_pct,
                f.calls_per_sec,
                f.calls_per_sec / n,
            );
        }
    }
}

/// The primaries, with the table and procedure of the load.
fn start_primaries(n: usize) -> Result<Vec<MariaDb>> {
    let per = n.div_ceil(PRIMARIES);
    (0..PRIMARIES)
        .map(|i| {
            let db = MariaDb::start(MariaDbOptions {
                server_id: 1 + i as u32,
                // Each source holds two connections: its dump and its poller's.
                extra_args: vec![format!("--max-connections={}", 2 * per + 50)],
                ..Default::default()
            })?;
            create_sbtest(&db)?;
            Ok(db)
        })
        .collect()
}

/// One count: start, catch up, idle figures, load figures, archive check.
fn run_one(bin: &Path, n: usize, o: &Options) -> Result<Run> {
    println!("== {n} sources over {PRIMARIES} primaries");
    let dbs = start_primaries(n)?;
    let work = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let specs: Vec<SourceSpec> = (0..n)
        .map(|i| SourceSpec {
            name: source_name(i),
            url: dbs[i % PRIMARIES].repl_url(),
            server_id: 10_000 + i as u32,
            start: "\"earliest\"".into(),
        })
        .collect();
    let extra = match o.archive_off {
        true => "[archive]\nenabled = false\n",
        false => "",
    };
    let cfg = write_config_sources(work.path(), &http, &specs, extra)?;
    let fake_port = free_port();
    add_replication(&cfg, &source_name(0), fake_port)?;
    settle();
    let t = Instant::now();
    let server = ServerProcess::start(bin, &cfg, &http)?;
    wait_all_caught_up(&server, &dbs, n, o.max_rss_bytes)?;
    let start_secs = t.elapsed().as_secs_f64();
    println!("   every source caught up after {start_secs:.1} s");
    std::thread::sleep(Duration::from_secs(10));
    let idle = measure(&server, IDLE_WINDOW, || Ok(()))?;
    println!(
        "   idle: RSS {:.0} MB, {} threads, {} fds, {:.1}% of a core, {:.1} catalog calls/s",
        idle.rss_bytes as f64 / 1e6,
        idle.threads,
        idle.fds,
        idle.cpu_pct,
        idle.calls_per_sec
    );
    let replicas = attach_replicas(fake_port, o.replicas, &work.path().join("replicas"))?;
    // Past the runtime's keep-alive of idle blocking threads (5 s) that their logins used.
    std::thread::sleep(Duration::from_secs(10));
    let replica_threads = proc_status(server.pid(), "Threads:");
    println!(
        "   {} replicas of {}: {replica_threads} threads (idle without them: {})",
        o.replicas,
        source_name(0),
        idle.threads
    );
    let loaded = under_load(&server, &dbs, n, o);
    drop(replicas);
    let (load, trails, bytes_per_sec) = loaded?;
    let (p50, max) = p50_max(&trails);
    println!(
        "   load: RSS {:.0} MB, {} threads, {:.1}% of a core; sources trail by p50 {p50:.2} s, max {max:.2} s",
        load.rss_bytes as f64 / 1e6,
        load.threads,
        load.cpu_pct
    );
    wait_all_caught_up(&server, &dbs, n, u64::MAX)?;
    for (i, db) in dbs.iter().enumerate() {
        assert_archive_identical(db, &work.path().join("data").join(source_name(i)))?;
    }
    drop(server);
    Ok(Run {
        sources: n,
        start_secs,
        idle,
        replica_threads,
        load,
        trail_p50: p50,
        trail_max: max,
        load_bytes_per_sec: bytes_per_sec,
    })
}

/// Gives `source` of the config file at `cfg` a fake primary on 127.0.0.1:`port`
/// (user `repl`, password `bench`).
fn add_replication(cfg: &Path, source: &str, port: u16) -> Result<()> {
    let text = std::fs::read_to_string(cfg)?;
    let at = format!("name = \"{source}\"\n");
    let start = text.find(&at).context("the source's table")?;
    let end = text[start..]
        .find("\n[[source]]")
        .map_or(text.len(), |i| start + i);
    let table = format!(
        "\n[source.replication]\nlisten = \"127.0.0.1:{port}\"\nuser = \"repl\"\npassword = \"bench\"\nmax_sessions = 1000\n"
    );
    let text = format!("{}{table}{}", &text[..end], &text[end..]);
    std::fs::write(cfg, text)?;
    Ok(())
}

/// `mariadb-binlog --stop-never` children following the fake primary on `port` from
/// its first binlog; killed (by PID) on drop.
struct Replicas(Vec<std::process::Child>);

impl Drop for Replicas {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn attach_replicas(port: u16, n: usize, dir: &Path) -> Result<Replicas> {
    std::fs::create_dir_all(dir)?;
    let tool = require_tool("mariadb-binlog");
    let mut r = Replicas(Vec::new());
    for i in 0..n {
        let child = std::process::Command::new(&tool)
            .args([
                "--read-from-remote-server",
                "--host=127.0.0.1",
                "--user=repl",
            ])
            .arg("--password=bench")
            .arg(format!("--port={port}"))
            .arg("--stop-never")
            .arg(format!("--stop-never-slave-server-id={}", 50_000 + i))
            .arg("--to-last-log")
            .arg("mysql-bin.000001")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("replica-{i}.err")))?)
            .spawn()?;
        r.0.push(child);
    }
    std::thread::sleep(Duration::from_secs(2));
    for (i, c) in r.0.iter_mut().enumerate() {
        if let Some(status) = c.try_wait()? {
            let err = std::fs::read_to_string(dir.join(format!("replica-{i}.err")))?;
            anyhow::bail!("replica {i} ended ({status}): {err}");
        }
    }
    Ok(r)
}

fn source_name(i: usize) -> String {
    format!("s{i:04}")
}

/// Each source's durable (file, position), from `GET /v1/sources`.
fn durable_positions(server: &ServerProcess) -> Result<BTreeMap<String, (String, u64)>> {
    let v = server.get_json("/v1/sources")?;
    let list = v.as_array().context("GET /v1/sources is not an array")?;
    Ok(list
        .iter()
        .filter_map(|s| {
            Some((
                s["name"].as_str()?.to_owned(),
                (
                    s["durable_file"].as_str()?.to_owned(),
                    s["durable_pos"].as_u64()?,
                ),
            ))
        })
        .collect())
}

/// Whether every source is durable at or past its primary's `ends` (by primary index).
fn all_past(server: &ServerProcess, ends: &[(String, u64)], n: usize) -> Result<bool> {
    let at = durable_positions(server)?;
    Ok((0..n).all(|i| {
        at.get(&source_name(i)).is_some_and(|p| {
            (p.0.as_str(), p.1) >= (ends[i % PRIMARIES].0.as_str(), ends[i % PRIMARIES].1)
        })
    }))
}

fn primary_ends(dbs: &[MariaDb]) -> Result<Vec<(String, u64)>> {
    dbs.iter().map(|d| d.master_status()).collect()
}

/// Waits until every source is durable at its primary's end; stops when the process's
/// RSS passes `max_rss` first.
fn wait_all_caught_up(
    server: &ServerProcess,
    dbs: &[MariaDb],
    n: usize,
    max_rss: u64,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let ends = primary_ends(dbs)?;
        if all_past(server, &ends, n).unwrap_or(false) {
            return Ok(());
        }
        let rss = proc_status(server.pid(), "VmRSS:") * 1024;
        anyhow::ensure!(
            rss <= max_rss,
            "RSS {:.1} GB passed the bound of {:.1} GB before every source caught up",
            rss as f64 / 1e9,
            max_rss as f64 / 1e9
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "the sources did not catch up within 900 s; log tail:\n{}",
            server.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs the write load on every primary while measuring; returns the figures, the
/// trail times (seconds) and the binlog bytes written per second in all.
fn under_load(
    server: &ServerProcess,
    dbs: &[MariaDb],
    n: usize,
    o: &Options,
) -> Result<(Figures, Vec<f64>, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let before: u64 = dbs.iter().map(binlog_bytes).sum::<Result<u64>>()?;
    let t = Instant::now();
    let figures = std::thread::scope(|s| -> Result<(Figures, Vec<f64>)> {
        let writers: Vec<_> = dbs
            .iter()
            .map(|db| {
                let stop = stop.clone();
                s.spawn(move || write_at_rate(db, o.rate, o.load, &stop))
            })
            .collect();
        let mut trails = Vec::new();
        let f = measure(server, o.load, || {
            trails.push(trail_once(server, dbs, n)?);
            Ok(())
        });
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        }
        Ok((f?, trails))
    })?;
    let after: u64 = dbs.iter().map(binlog_bytes).sum::<Result<u64>>()?;
    let secs = t.elapsed().as_secs_f64();
    Ok((figures.0, figures.1, (after - before) as f64 / secs))
}

/// Notes every primary's end and times how long until every source is durable past
/// it, seconds (at most 60).
fn trail_once(server: &ServerProcess, dbs: &[MariaDb], n: usize) -> Result<f64> {
    let ends = primary_ends(dbs)?;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if all_past(server, &ends, n)? {
            return Ok(t.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// `rate` transactions a second on `db` (batches of a tenth of a second) for `limit`,
/// or until `stop`.
fn write_at_rate(db: &MariaDb, rate: u32, limit: Duration, stop: &AtomicBool) -> Result<()> {
    let t = Instant::now();
    let batch = (rate / 10).max(1);
    let mut tick = 0u32;
    while t.elapsed() < limit && !stop.load(Ordering::SeqCst) {
        db.sql(&format!("CALL test.gen({batch})"))?;
        tick += 1;
        let due = Duration::from_millis(100) * tick;
        if let Some(wait) = due.checked_sub(t.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}

/// Figures of the server over `window`, calling `during` (which may take a while) in a
/// loop meanwhile. RSS, threads and fds are the largest seen.
fn measure(
    server: &ServerProcess,
    window: Duration,
    mut during: impl FnMut() -> Result<()>,
) -> Result<Figures> {
    let pid = server.pid();
    let calls0 = catalog_calls(server)?;
    let cpu0 = cpu_secs(pid);
    let t = Instant::now();
    let mut f = Figures::default();
    while t.elapsed() < window {
        during()?;
        f.rss_bytes = f.rss_bytes.max(proc_status(pid, "VmRSS:") * 1024);
        f.threads = f.threads.max(proc_status(pid, "Threads:"));
        f.fds = f.fds.max(open_fds(pid));
        std::thread::sleep(Duration::from_millis(500));
    }
    let secs = t.elapsed().as_secs_f64();
    f.cpu_pct = (cpu_secs(pid) - cpu0) * 100.0 / secs;
    f.calls_per_sec = (catalog_calls(server)? - calls0) as f64 / secs;
    Ok(f)
}

/// The `binlog_server_catalog_calls` metric.
fn catalog_calls(server: &ServerProcess) -> Result<u64> {
    let (code, text) = server.get_text("/metrics")?;
    anyhow::ensure!(code == 200, "GET /metrics: {code}");
    text.lines()
        .find_map(|l| l.strip_prefix("binlog_server_catalog_calls "))
        .and_then(|v| v.trim().parse().ok())
        .context("no binlog_server_catalog_calls in /metrics")
}

/// A number field of /proc/PID/status (`VmRSS:` in KiB, `Threads:`), 0 when absent.
fn proc_status(pid: Option<u32>, field: &str) -> u64 {
    pid.map_or(0, |pid| proc_status_field(pid, field))
}

fn open_fds(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

fn p50_max(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (
        v.get(v.len() / 2).copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}
