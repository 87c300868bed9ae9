//! Planning a PITR on a fleet node that never captured the source, against the
//! archive's file count: `bash scripts/bench.sh --standby-plan 1000,10000`.
//!
//! For each count N (fresh servers each): PostgreSQL (the catalog), the S3-compatible
//! server (the store) and a sandbox primary that rotates every 4 KiB. Node `node-a`
//! captures the source and takes a base first; the primary then writes 1 KB
//! transactions until it has N closed binlogs, and node-a ships them all. Node `node-b`
//! starts afterwards (it never owned the source) and is asked `POST
//! /v1/sources/db/pitr/plan` to a second of the last writes, [`PLANS`] times in a row:
//! the first plan follows the store (it reads every file's index segment), the next
//! ones only look for what changed. The owner is asked the same for comparison. The
//! bench prints each time in seconds and the ratio of the later plans to the owner's.
//! The target: at most 2 s after the first time, at 10,000 files.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use binlog_benches::*;
use binlog_tests::*;

/// Plans asked of the standby in a row.
const PLANS: usize = 3;

/// One count's figures, seconds.
struct Run {
    files: usize,
    /// The standby's plans in order.
    standby: Vec<f64>,
    /// The owner's plan.
    owner: f64,
}

fn main() -> Result<()> {
    let mut counts = vec![1_000usize, 10_000];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--standby-plan" => {
                if let Some(v) = args.next() {
                    counts = v
                        .split(',')
                        .map(|v| v.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .context("--standby-plan takes counts, e.g. 1000,10000")?;
                }
            }
            "-h" | "--help" => {
                println!("standby_plan [--standby-plan N,N,...]: PITR planning on a node that never captured the source, against the file count");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    anyhow::ensure!(
        !counts.is_empty(),
        "--standby-plan needs at least one count"
    );
    let bin = server_binary("scripts/bench.sh --standby-plan")?;
    let mut runs = Vec::new();
    for n in counts {
        let r = run_one(&bin, n)?;
        println!(
            "   {:>6} files: standby plans {} s, owner {:.2} s",
            r.files,
            r.standby
                .iter()
                .map(|t| format!("{t:.2}"))
                .collect::<Vec<_>>()
                .join(" / "),
            r.owner
        );
        runs.push(r);
    }
    println!("\n| closed files | standby: first plan, s | standby: later plans, s | owner, s | later / owner |");
    println!("|---|---|---|---|---|");
    for r in &runs {
        let later = median(&r.standby[1..]);
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2}x |",
            r.files,
            r.standby[0],
            later,
            r.owner,
            later / r.owner.max(1e-9)
        );
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One count: the fleet, the files, the plans.
fn run_one(bin: &Path, n: usize) -> Result<Run> {
    println!("== {n} closed binlogs of 4 KiB");
    let svc = Services::start(bin)?;
    let db = MariaDb::start(MariaDbOptions {
        server_id: 1,
        max_binlog_size: 4096,
        ..Default::default()
    })?;
    db.sql("CREATE TABLE test.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))")?;
    let specs = [SourceSpec {
        name: "db".into(),
        url: db.repl_url(),
        server_id: 4901,
        start: "\"earliest\"".into(),
    }];
    let backup = "method = \"logical\"\nlogical_tool = \"mysqldump\"\n";
    let nodes = fleet_with_bases(
        &svc,
        &db,
        &["node-a", "node-b"],
        "10s",
        &specs,
        (backup, ""),
    )?;
    let pa = nodes[0].start()?;
    wait_streaming_owner(&pa, "node-a", "db", Duration::from_secs(60))?;
    take_base(&pa, "db")?;
    make_files(&db, n)?;
    // A second in which the primary was still writing: the standby plans only to a
    // point the archive holds (it does not know whether the primary wrote later).
    let target = serde_json::json!({ "target_time": format!("@{}", unix_now() - 1) });
    let t = Instant::now();
    let closed = wait_catalog_and_store_identical(&svc.pg, &db, "db", Duration::from_secs(3600))?;
    println!(
        "   {closed} closed files SUCC and whole in the store after {:.1} s (each check reads every object back)",
        t.elapsed().as_secs_f64()
    );
    let pb = nodes[1].start()?;
    let b = pb.get_json("/v1/sources/db")?;
    anyhow::ensure!(b["state"] == "standby", "node-b is not a standby: {b}");
    let plan = |p: &ServerProcess, node: &str| -> Result<f64> {
        let t = Instant::now();
        let (code, v) = p.post_json("/v1/sources/db/pitr/plan", &target)?;
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(code == 200, "plan: {code} {v:#}");
        let files = v["files"].as_array().map_or(0, Vec::len);
        // The target is a second of the last writes, which filled many files.
        anyhow::ensure!(
            files >= closed / 2,
            "the plan covers {files} files of {closed}: {v:#}"
        );
        println!("   plan on {node}: {files} files, {secs:.2} s");
        Ok(secs)
    };
    let mut standby = Vec::new();
    for _ in 0..PLANS {
        standby.push(plan(&pb, "node-b (standby)")?);
    }
    let owner = plan(&pa, "node-a (owner)")?;
    Ok(Run {
        files: closed,
        standby,
        owner,
    })
}

/// Now, unix seconds (the primary's clock is this machine's).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
