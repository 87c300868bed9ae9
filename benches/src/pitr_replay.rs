//! PITR replay benchmark: the same base and the same binlog range applied three ways, in
//! one run, on the same machine:
//!
//! 1. **pipe**: `binlog-server export` writes the range's binlogs (cut at the base's
//!    position and at the target), then `mariadb-binlog --skip-gtid-strict-mode FILES |
//!    mariadb` applies them: the classic way.
//! 2. **native replica**: a restored instance chained to the live primary with
//!    `CHANGE MASTER TO … MASTER_USE_GTID = slave_pos` and the same applier settings
//!    (`slave_parallel_threads`, `slave_parallel_mode`) as PITR uses, timed from
//!    START SLAVE until `MASTER_GTID_WAIT(end)` returns.
//! 3. **PITR**: `POST /v1/sources/db/pitr {"target_gtid": end, "scratch": true}`; the
//!    figure is the job's `replay_seconds` (CHANGE MASTER to the fake primary until the
//!    replica has applied the plan's last GTID and drained its relay log; the base
//!    restore is reported separately).
//!
//! 4. **PITR from the store**: binlog-server restarted with `[archive] local_retention =
//!    "0s"`, so every closed file of the range but the two newest has left the local
//!    disk (it is in the archive store, a local directory here), the cache emptied;
//!    the same PITR, its files read back from the store as the replica reaches them.
//!
//! All of them start from the same physical base, taken by binlog-server through its API
//! before the load: for the pipe and the native replica it is restored by a PITR to the
//! base's own GTID (no transaction replayed), which leaves an instance at exactly the
//! base. The three results are compared by `CHECKSUM TABLE` with the primary's.
//!
//! Load: the catch-up benchmark's sysbench-like procedure (3 INSERTs of ~1 KB rows and
//! an UPDATE per transaction, one session), `--mb` MB of binlogs (default 750).
//! Run: `bash scripts/bench.sh --pitr [--mb N] [--threads N]`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use binlog_benches::*;
use binlog_tests::*;
use serde_json::{json, Value};

fn wait_job(server: &ServerProcess, id: &str) -> Result<Value> {
    let j = wait_for(
        &format!("PITR job {id}"),
        Duration::from_secs(3 * 3600),
        || {
            let j = server.get_json(&format!("/v1/pitr/{id}"))?;
            let p = j["phase"].as_str().unwrap_or_default().to_string();
            Ok((p == "done" || p == "failed").then_some(j))
        },
    )?;
    if j["phase"] != "done" {
        bail!("PITR job {id} failed: {j:#}");
    }
    Ok(j)
}

fn start_job(server: &ServerProcess, body: Value) -> Result<String> {
    let (code, v) = server.post_json("/v1/sources/db/pitr", &body)?;
    if code != 202 {
        bail!("POST pitr {body}: {code} {v:#}");
    }
    Ok(v["id"].as_str().context("job id")?.to_string())
}

/// A PITR to the base's own GTID: an instance at exactly the base. Returns (job id,
/// socket).
fn instance_at_base(server: &ServerProcess, base_gtid: &str) -> Result<(String, String)> {
    let id = start_job(server, json!({"target_gtid": base_gtid, "scratch": true}))?;
    let j = wait_job(server, &id)?;
    if j["plan"]["transactions"] != 0 {
        bail!("a PITR to the base replayed transactions: {j:#}");
    }
    let socket = j["restored"]["socket"]
        .as_str()
        .context("socket of the restored instance")?
        .to_string();
    Ok((id, socket))
}

fn one_value(socket: &str, sql: &str) -> Result<String> {
    sql_socket(socket, sql)?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .with_context(|| format!("{sql}: no row"))
}

/// `CHECKSUM TABLE` results keyed `db.table`, as the primary and the instances give them.
type Checksums = std::collections::BTreeMap<String, String>;

/// The programs the three replays run.
struct Binaries {
    /// binlog-server.
    server: PathBuf,
    /// `mariadb-binlog`.
    mariadb_binlog: PathBuf,
    /// `mariadb`.
    mariadb: PathBuf,
}

/// The range replayed: from the base's GTID to the end of the load.
struct Range {
    /// The base's GTID position.
    base_gtid: String,
    /// The primary's GTID position after the load.
    end_gtid: String,
    /// Transactions in the plan.
    txns: u64,
    /// Binlog bytes in the plan.
    bytes: u64,
}

/// One replay's time and whether it reproduced the primary's data.
struct Replay {
    /// Seconds the replay took.
    secs: f64,
    /// The instance's checksums equal the primary's.
    ok: bool,
}

fn main() -> Result<()> {
    let (mb, threads) = parse_args()?;
    let bins = Binaries {
        server: server_binary("scripts/bench.sh")?,
        mariadb_binlog: require_tool("mariadb-binlog"),
        mariadb: require_tool("mariadb"),
    };
    let db = start_primary()?;
    let work = tempfile::tempdir()?;
    let (cfg, server) = start_server(&bins.server, &db, work.path(), threads)?;
    take_base(&server)?;
    let range = generate_range(&db, &server, mb)?;
    let want = db.table_checksums(&["test"])?;

    let pipe = replay_pipe(&server, &bins, &cfg, work.path(), &range, &want)?;
    let native = replay_native(&server, &db, &range, threads, &want)?;
    let pitr = replay_pitr(&server, &range, &want)?;
    let (server, evicted) = evict_all(server, &bins.server, &cfg, &db, work.path())?;
    println!("   {evicted} files evicted to the store");
    let stored = replay_pitr(&server, &range, &want)?;

    print_report(&range, threads, &pipe, &native, &pitr);
    println!(
        "   PITR, {evicted} files from the store: {:>7.1} s {:>8.0} trx/s  {:.2}x the pipe, {:.2}x the native replica, {:.2}x PITR from local files",
        stored.secs,
        range.txns as f64 / stored.secs,
        pipe.secs / stored.secs,
        native.secs / stored.secs,
        pitr.secs / stored.secs
    );
    if !(pipe.ok && native.ok && pitr.ok && stored.ok) {
        bail!(
            "a replay did not reproduce the primary's data (pipe {}, native {}, PITR {}, PITR from the store {})",
            pipe.ok,
            native.ok,
            pitr.ok,
            stored.ok
        );
    }
    drop(server);
    Ok(())
}

/// Restarts binlog-server with `[archive] local_retention = "0s"` and waits until every
/// closed file but the two newest is only in the store; empties the cache. Returns the
/// new server and how many files left the local disk.
fn evict_all(
    mut server: ServerProcess,
    bin: &Path,
    cfg: &Path,
    db: &MariaDb,
    work: &Path,
) -> Result<(ServerProcess, usize)> {
    server.stop()?;
    let http = server.base_url().trim_start_matches("http://").to_string();
    let mut text = std::fs::read_to_string(cfg)?;
    text.push_str("\n[archive]\nlocal_retention = \"0s\"\n");
    std::fs::write(cfg, text)?;
    let server = ServerProcess::start(bin, cfg, &http)?;
    wait_caught_up(&server, db, "db", Duration::from_secs(120))?;
    let want = db.binlog_files()?.len().saturating_sub(2);
    let n = wait_for("closed files evicted", Duration::from_secs(600), || {
        let b = server.get_json("/v1/sources/db/binlogs")?;
        let n = b["files"]
            .as_array()
            .map(|a| a.iter().filter(|f| f["location"] == "store").count())
            .unwrap_or(0);
        Ok((n >= want).then_some(n))
    })?;
    let _ = std::fs::remove_dir_all(work.join("data").join("cache").join("db"));
    Ok((server, n))
}

/// The command line: `(--mb, --threads)`.
fn parse_args() -> Result<(u64, u32)> {
    let mut mb: u64 = 750;
    let mut threads: u32 = 4;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mb" => mb = args.next().context("--mb needs a number")?.parse()?,
            "--threads" => threads = args.next().context("--threads needs a number")?.parse()?,
            "--bench" => {} // passed by `cargo bench`
            other => bail!("unknown argument {other:?}; usage: pitr_replay [--mb N] [--threads N]"),
        }
    }
    Ok((mb, threads))
}

/// Starts the primary with the sbtest table and some data already in it.
fn start_primary() -> Result<MariaDb> {
    let db = MariaDb::start(MariaDbOptions {
        max_binlog_size: 128 << 20,
        extra_args: vec!["--max-allowed-packet=64M".into()],
        ..Default::default()
    })?;
    create_sbtest(&db)?;
    // Some data in the base, so that the replay updates existing rows too.
    db.sql("CALL test.gen(2000)")?;
    Ok(db)
}

/// Writes the config (PITR applier settings, physical bases) and starts binlog-server,
/// caught up with the primary. Returns (config path, server).
fn start_server(
    bin: &Path,
    db: &MariaDb,
    work: &Path,
    threads: u32,
) -> Result<(PathBuf, ServerProcess)> {
    let http = format!("127.0.0.1:{}", free_port());
    let extra = format!(
        "[pitr]\nparallel_threads = {threads}\nparallel_mode = \"optimistic\"\nbuffer_pool = \"1G\"\n[backup]\nstore = \"file://{}\"\n",
        work.join("bases").display()
    );
    let cfg = write_config(work, &http, &[("db", &db.repl_url(), 4242)], &extra)?;
    let mut text = std::fs::read_to_string(&cfg)?;
    text.push_str(&format!(
        "[source.backup]\nurl = {}\nmethod = \"physical\"\n",
        toml_string(&db.admin_url())
    ));
    std::fs::write(&cfg, text)?;
    let server = ServerProcess::start(bin, &cfg, &http)?;
    wait_caught_up(&server, db, "db", Duration::from_secs(120))?;
    Ok((cfg, server))
}

/// Takes a physical base through the API and waits for it to complete.
fn take_base(server: &ServerProcess) -> Result<()> {
    println!("== base: a physical base through the API");
    let (code, r) = server.post_json("/v1/sources/db/backups", &json!({}))?;
    if code != 202 {
        bail!("POST backups: {code} {r:#}");
    }
    let bid = r["job_id"].as_str().context("job_id")?.to_string();
    let job = wait_for("base", Duration::from_secs(600), || {
        let j = server.get_json(&format!("/v1/jobs/{bid}"))?;
        Ok((j["state"] != "running").then_some(j))
    })?;
    if job["state"] != "completed" {
        bail!("base failed: {job:#}");
    }
    Ok(())
}

/// Generates about `mb` MB of binlogs after the base, waits for binlog-server to archive
/// them and reads the PITR plan of the range.
fn generate_range(db: &MariaDb, server: &ServerProcess, mb: u64) -> Result<Range> {
    println!("== primary: generating about {mb} MB of binlogs after the base");
    let t = Instant::now();
    generate(db, mb << 20, 10000)?;
    let end_gtid = db.gtid_binlog_pos()?;
    db.flush_binary_logs()?;
    println!(
        "   generated in {:.1} s; end GTID {end_gtid}",
        t.elapsed().as_secs_f64()
    );
    wait_caught_up(server, db, "db", Duration::from_secs(900))?;
    let (code, plan) = server.post_json(
        "/v1/sources/db/pitr/plan",
        &json!({"target_gtid": end_gtid}),
    )?;
    if code != 200 {
        bail!("plan: {code} {plan:#}");
    }
    let base_gtid = plan["base"]["gtid_pos"]
        .as_str()
        .context("base gtid")?
        .to_string();
    let txns = plan["transactions"].as_u64().unwrap_or(0);
    let bytes = plan["bytes"].as_u64().unwrap_or(0);
    println!(
        "   plan: base {} at {base_gtid}, {txns} transactions, {:.1} MB in {} files",
        plan["base"]["id"],
        bytes as f64 / 1e6,
        plan["files"].as_array().map(|a| a.len()).unwrap_or(0)
    );
    Ok(Range {
        base_gtid,
        end_gtid,
        txns,
        bytes,
    })
}

/// 1. The pipe: `binlog-server export`, then `mariadb-binlog FILES | mariadb` into an
///    instance at the base, timed.
fn replay_pipe(
    server: &ServerProcess,
    bins: &Binaries,
    cfg: &Path,
    work: &Path,
    range: &Range,
    want: &Checksums,
) -> Result<Replay> {
    let (pipe_job, socket) = instance_at_base(server, &range.base_gtid)?;
    let exp = work.join("export");
    let out = Command::new(&bins.server)
        .args(["export", "--config"])
        .arg(cfg)
        .args(["--source", "db", "--gtid", &range.end_gtid, "--out"])
        .arg(&exp)
        .output()?;
    if !out.status.success() {
        bail!("export: {}", String::from_utf8_lossy(&out.stderr));
    }
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    let files: Vec<String> = summary["files"]
        .as_array()
        .context("exported files")?
        .iter()
        .filter_map(|f| f.as_str().map(|n| exp.join(n).display().to_string()))
        .collect();
    let pipe = format!(
        "{} --no-defaults --skip-gtid-strict-mode {} | {} --no-defaults --socket={socket} --user=root",
        bins.mariadb_binlog.display(),
        files.join(" "),
        bins.mariadb.display()
    );
    settle();
    let t = Instant::now();
    let st = Command::new("bash")
        .args(["-o", "pipefail", "-c", &pipe])
        .output()?;
    let pipe_secs = t.elapsed().as_secs_f64();
    if !st.status.success() {
        bail!("{pipe}: {}", String::from_utf8_lossy(&st.stderr));
    }
    let pipe_ok = checksums_socket(&socket)? == *want;
    server.delete(&format!("/v1/pitr/{pipe_job}"))?;
    let _ = std::fs::remove_dir_all(&exp);
    println!("   pipe: {pipe_secs:.1} s, data equal to the primary's: {pipe_ok}");
    Ok(Replay {
        secs: pipe_secs,
        ok: pipe_ok,
    })
}

/// 2. A native replica chained to the primary, same applier settings, timed from
///    START SLAVE until it reaches the end GTID.
fn replay_native(
    server: &ServerProcess,
    db: &MariaDb,
    range: &Range,
    threads: u32,
    want: &Checksums,
) -> Result<Replay> {
    let (base_gtid, end_gtid) = (&range.base_gtid, &range.end_gtid);
    let (native_job, socket) = instance_at_base(server, base_gtid)?;
    let pos = one_value(&socket, "SELECT @@GLOBAL.gtid_slave_pos")?;
    if pos != *base_gtid {
        bail!("the instance at the base has gtid_slave_pos {pos}, want {base_gtid}");
    }
    sql_socket(
        &socket,
        &format!(
            "SET GLOBAL slave_parallel_threads = {threads}; SET GLOBAL slave_parallel_mode = 'optimistic'; \
             CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = '{REPL_USER}', \
             MASTER_PASSWORD = '{REPL_PASSWORD}', MASTER_USE_GTID = slave_pos",
            db.port()
        ),
    )?;
    settle();
    let t = Instant::now();
    let r = sql_socket(
        &socket,
        &format!("START SLAVE; SELECT MASTER_GTID_WAIT('{end_gtid}', 10800)"),
    )?;
    let native_secs = t.elapsed().as_secs_f64();
    if r.last().and_then(|r| r.first()).map(String::as_str) != Some("0") {
        bail!("the native replica did not reach {end_gtid}: {r:?}");
    }
    sql_socket(&socket, "STOP SLAVE")?;
    let native_ok = checksums_socket(&socket)? == *want;
    server.delete(&format!("/v1/pitr/{native_job}"))?;
    println!("   native replica: {native_secs:.1} s, data equal to the primary's: {native_ok}");
    Ok(Replay {
        secs: native_secs,
        ok: native_ok,
    })
}

/// 3. PITR through the fake primary; the figure is the job's `replay_seconds`.
fn replay_pitr(server: &ServerProcess, range: &Range, want: &Checksums) -> Result<Replay> {
    settle();
    let id = start_job(
        server,
        json!({"target_gtid": range.end_gtid, "scratch": true}),
    )?;
    let j = wait_job(server, &id)?;
    let pitr_secs = j["replay_seconds"].as_f64().context("replay_seconds")?;
    let restore_secs = j["restore_seconds"].as_f64().unwrap_or(0.0);
    let socket = j["restored"]["socket"].as_str().context("socket")?;
    let pitr_ok = checksums_socket(socket)? == *want;
    server.delete(&format!("/v1/pitr/{id}"))?;
    println!("   PITR: {pitr_secs:.1} s replay (+ {restore_secs:.1} s base restore), data equal to the primary's: {pitr_ok}");
    Ok(Replay {
        secs: pitr_secs,
        ok: pitr_ok,
    })
}

/// Prints the three replays' times, rates and ratios, and the targets.
fn print_report(range: &Range, threads: u32, pipe: &Replay, native: &Replay, pitr: &Replay) {
    let (txns, bytes) = (range.txns, range.bytes);
    let (pipe_secs, native_secs, pitr_secs) = (pipe.secs, native.secs, pitr.secs);
    let rate = |s: f64| txns as f64 / s;
    println!(
        "== replay of {txns} transactions, {:.1} MB, from the same base ({threads} applier threads, optimistic)",
        bytes as f64 / 1e6
    );
    println!(
        "   mariadb-binlog | mariadb        : {pipe_secs:>7.1} s {:>8.0} trx/s  1.00x",
        rate(pipe_secs)
    );
    println!(
        "   native replica of the primary   : {native_secs:>7.1} s {:>8.0} trx/s  {:.2}x the pipe",
        rate(native_secs),
        pipe_secs / native_secs
    );
    println!(
        "   PITR through the fake primary   : {pitr_secs:>7.1} s {:>8.0} trx/s  {:.2}x the pipe, {:.2}x the native replica",
        rate(pitr_secs),
        pipe_secs / pitr_secs,
        native_secs / pitr_secs
    );
    println!("   targets: PITR >= 5x the pipe, and not slower than the native replica");
}
