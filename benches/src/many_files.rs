//! Per-file and idle cost against the archive's file count: `bash scripts/bench.sh
//! --files 100,10000`.
//!
//! For each count N (one fresh sandbox primary each): the primary rotates every 4 KiB
//! (`max_binlog_size = 4096`) under 1 KB transactions until it has N closed binlogs. A
//! single binlog-server (SQLite catalog, the archive store on the local disk, `file://`,
//! so the figures are this program's work and not an object store's latency) captures
//! it from `earliest`. The bench prints, per N:
//!
//! - the catch-up (process start until durable at the primary's end), seconds;
//! - from process start until every closed file is SUCC and whole in the store
//!   (capture, check and shipping overlap), seconds, and milliseconds per file;
//! - the idle cost once all is shipped: CPU of the process over 30 s, % of one core;
//!
//! and the ratios of the largest N's figures per file and idle to the smallest's: a
//! cost that does not grow with the archive has ratios near 1. The archive is checked
//! against the primary by SHA-256 at the end of each run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use binlog_benches::*;
use binlog_tests::*;

/// One count's figures.
struct Run {
    /// Closed binlogs.
    files: usize,
    /// Catch-up, seconds.
    catchup: f64,
    /// From process start until every closed file is SUCC and whole in the store
    /// (capture, check and shipping overlap), seconds.
    ship: f64,
    /// CPU of the idle process over [`IDLE_WINDOW`], % of one core.
    idle_pct: f64,
}

/// How long the idle process is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    let mut counts = vec![100usize, 10_000];
    let mut archive = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--files" => {
                counts = args
                    .next()
                    .context("--files needs counts, e.g. 100,10000")?
                    .split(',')
                    .map(|v| v.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?;
            }
            // The capture alone (no shipper): which part grows with the file count.
            "--archive-off" => archive = false,
            "-h" | "--help" => {
                println!("many_files [--files N,N,...] [--archive-off]: per-file shipping and idle CPU against the file count");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    anyhow::ensure!(!counts.is_empty(), "--files needs at least one count");
    counts.sort_unstable();
    let bin = server_binary("scripts/bench.sh --files")?;
    let mut runs = Vec::new();
    for n in &counts {
        let r = run_one(&bin, *n, archive)?;
        println!(
            "   {:>6} files: catch-up {:.1} s, every closed file SUCC and whole in the store after {:.1} s ({:.2} ms per file), idle {:.2}% of a core",
            r.files,
            r.catchup,
            r.ship,
            per_file_ms(&r),
            r.idle_pct
        );
        runs.push(r);
    }
    print_table(&runs);
    Ok(())
}

fn per_file_ms(r: &Run) -> f64 {
    r.ship * 1000.0 / r.files.max(1) as f64
}

fn print_table(runs: &[Run]) {
    println!(
        "\n| closed files | catch-up s | all SUCC and whole in the store after, s | ms per file | idle % of a core |"
    );
    println!("|---|---|---|---|---|");
    for r in runs {
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {:.2} |",
            r.files,
            r.catchup,
            r.ship,
            per_file_ms(r),
            r.idle_pct
        );
    }
    if let (Some(a), Some(b)) = (runs.first(), runs.last()) {
        if runs.len() > 1 {
            println!(
                "\n{} files vs {}: {:.2}x the time per file, {:.2}x the idle CPU",
                b.files,
                a.files,
                per_file_ms(b) / per_file_ms(a).max(1e-9),
                b.idle_pct / a.idle_pct.max(1e-9)
            );
        }
    }
}

/// One count: a primary with `n` closed binlogs, captured and shipped, then idle.
fn run_one(bin: &Path, n: usize, archive: bool) -> Result<Run> {
    println!("== {n} closed binlogs of 4 KiB");
    let db = MariaDb::start(MariaDbOptions {
        max_binlog_size: 4096,
        ..Default::default()
    })?;
    make_files(&db, n)?;
    let files = db.binlog_files()?;
    let closed = files.len().saturating_sub(1);
    let work = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let store = work.path().join("store");
    std::fs::create_dir_all(&store)?;
    let extra = match archive {
        true => format!(
            "[archive]\nstore = {}\n",
            toml_string(&format!("file://{}", store.display()))
        ),
        false => "[archive]\nenabled = false\n".to_string(),
    };
    let cfg = write_config_sources(
        work.path(),
        &http,
        &[SourceSpec {
            name: "db".into(),
            url: db.repl_url(),
            server_id: 4242,
            start: "\"earliest\"".into(),
        }],
        &extra,
    )?;
    settle();
    let t = Instant::now();
    let server = ServerProcess::start(bin, &cfg, &http)?;
    // The primary's end read again at each poll: it writes a BINLOG_CHECKPOINT event
    // after a rotation, in the background.
    wait_caught_up(&server, &db, "db", Duration::from_secs(1200))?;
    let catchup = t.elapsed().as_secs_f64();
    wait_for(
        "every closed file SUCC and whole in the store",
        Duration::from_secs(1800),
        || {
            let b = server.get_json("/v1/sources/db/binlogs")?;
            let whole = b["files"].as_array().map_or(0, |a| {
                a.iter()
                    .filter(|f| f["state"] == "SUCC" && (!archive || f["location"] != "local"))
                    .count()
            });
            anyhow::ensure!(
                whole >= closed,
                "{whole} of {closed} closed files SUCC and in the store"
            );
            Ok(Some(()))
        },
    )?;
    let ship = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(5));
    let cpu0 = cpu_secs(server.pid());
    std::thread::sleep(IDLE_WINDOW);
    let idle_pct = (cpu_secs(server.pid()) - cpu0) * 100.0 / IDLE_WINDOW.as_secs_f64();
    assert_archive_identical(&db, &work.path().join("data").join("db"))?;
    drop(server);
    Ok(Run {
        files: closed,
        catchup,
        ship,
        idle_pct,
    })
}
