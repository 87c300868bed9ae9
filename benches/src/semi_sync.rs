//! Semi-sync and commit-to-durable latency (issue 22), on one primary in one run.
//!
//! One sandbox MariaDB primary (semi-sync built in, `AFTER_SYNC`, timeout 10 s), a
//! native MariaDB replica of it (GTID, always attached) and binlog-server (always
//! attached), under an `oltp_write_only`-like load: `--threads` clients (default 2),
//! each transaction an UPDATE of an indexed column, an UPDATE of a non-indexed one, a
//! DELETE and an INSERT of the same id, sent statement by statement as sysbench does.
//! Four modes, interleaved in `--rounds` rounds (default 3) of `--secs` seconds each
//! (default 20; the runs use 60), the order rotating every round:
//!
//! - `async`: semi-sync off on the primary, binlog-server with the default
//!   `fsync_interval`;
//! - `async, fsync 1ms`: the same with `fsync_interval = "1ms"` (a sync starts as soon as
//!   the previous one ends: group commit);
//! - `semi-sync -> binlog-server`: the primary waits for binlog-server's ack (sent after
//!   fdatasync), the native replica attached as an asynchronous one;
//! - `semi-sync -> native replica`: the primary waits for the native replica's ack
//!   (MariaDB acknowledges once the event is in its relay log, before any fsync:
//!   `sync_relay_log` is 10000), binlog-server attached without semi-sync;
//! - `semi-sync -> native, sync_relay_log=1`: the same with the replica fsyncing its
//!   relay log after each event, as binlog-server does before it acknowledges.
//!
//! Per mode: transactions per second, COMMIT latency p50/p99 (client side), and
//! commit-to-durable: a probe client commits a one-row transaction every 20 ms, reads
//! the primary's end (SHOW MASTER STATUS) and polls binlog-server's API until its durable
//! position covers it; the figure is from sending the COMMIT to seeing it durable, so it
//! includes the probe's own round trips (an HTTP GET on this loaded machine is about a
//! millisecond). binlog-server's own figure is its `durable_wait_seconds` histogram
//! (per fdatasync, the oldest byte's wait from arrival), read from /metrics before and
//! after each round: the bucket bound under which 50% / 99% of the syncs fell. The
//! primary's `Rpl_semi_sync_master_no_tx` must not move during a semi-sync round (no
//! commit released by the timeout). Medians over the rounds are printed with the ratios
//! against the other modes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use binlog_tests::*;
use mysql_async::prelude::Queryable;

/// Rows in `test.sbtest` (ids 1..=ROWS).
const ROWS: u64 = 10_000;
/// Time between probe commits.
const PROBE_EVERY: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Async,
    AsyncFast,
    SemiArchive,
    SemiNative,
    SemiNativeSynced,
}

const MODES: [Mode; 5] = [
    Mode::Async,
    Mode::AsyncFast,
    Mode::SemiArchive,
    Mode::SemiNative,
    Mode::SemiNativeSynced,
];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Async => "async (default, fsync_interval 500ms)",
            Mode::AsyncFast => "async (fsync_interval 1ms)",
            Mode::SemiArchive => "semi-sync -> binlog-server",
            Mode::SemiNative => "semi-sync -> native replica",
            Mode::SemiNativeSynced => "semi-sync -> native, sync_relay_log=1",
        }
    }

    fn semi(self) -> bool {
        matches!(
            self,
            Mode::SemiArchive | Mode::SemiNative | Mode::SemiNativeSynced
        )
    }

    fn native_semi(self) -> bool {
        matches!(self, Mode::SemiNative | Mode::SemiNativeSynced)
    }
}

/// What one round of one mode measured.
#[derive(Debug, Clone, Default)]
struct Round {
    trx_per_sec: f64,
    commit_p50_ms: f64,
    commit_p99_ms: f64,
    durable_p50_ms: f64,
    durable_p99_ms: f64,
    durable_max_ms: f64,
    /// Upper bucket bounds of binlog-server's receive-to-durable histogram, ms.
    server_p50_ms: f64,
    server_p99_ms: f64,
    probes: usize,
    /// Commits the primary released without an ack during the round.
    no_tx: u64,
}

struct Args {
    secs: u64,
    rounds: usize,
    threads: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        secs: 20,
        rounds: 3,
        threads: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut num = |what: &str| -> Result<u64> {
            Ok(args
                .next()
                .with_context(|| format!("{what} needs a number"))?
                .parse()?)
        };
        match arg.as_str() {
            "--semi-sync" | "--bench" => {}
            "--secs" => a.secs = num("--secs")?.max(1),
            "--rounds" => a.rounds = num("--rounds")?.max(1) as usize,
            "--threads" => a.threads = num("--threads")?.clamp(1, 64) as usize,
            other => bail!(
                "unknown argument {other:?}; usage: semi_sync [--secs N] [--rounds N] [--threads N]"
            ),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let bin = server_binary("scripts/bench.sh --semi-sync")?;
    println!(
        "== semi-sync bench: {} client threads, {} rounds of {} s per mode",
        args.threads, args.rounds, args.secs
    );
    let primary = MariaDb::start(MariaDbOptions {
        extra_args: vec![
            "--rpl-semi-sync-master-enabled=OFF".into(),
            "--rpl-semi-sync-master-timeout=10000".into(),
            "--rpl-semi-sync-master-wait-point=AFTER_SYNC".into(),
        ],
        ..Default::default()
    })?;
    create_table(&primary)?;
    let replica = MariaDb::start(MariaDbOptions {
        server_id: 2,
        ..Default::default()
    })?;
    // The replica's own set-up (users, `test`) is in its binlog under its server_id:
    // gone, so that the primary's GTIDs apply in strict order.
    replica.sql("RESET MASTER")?;
    replica.replicate_from(&primary)?;
    let work = tempfile::tempdir()?;
    let configs = write_configs(work.path(), &primary)?;
    let mut results: Vec<(Mode, Round)> = Vec::new();
    let mut server: Option<ServerProcess> = None;
    println!("   round {}", header());
    for round in 0..args.rounds {
        for i in 0..MODES.len() {
            let mode = MODES[(i + round) % MODES.len()];
            if let Some(mut s) = server.take() {
                s.stop()?;
            }
            let s = ServerProcess::start(&bin, configs.for_mode(mode), &configs.http)?;
            prepare(mode, &primary, &replica, &s)?;
            let r = run_load(mode, &primary, &s, &args)?;
            println!(
                "   round {} {} ({} probes)",
                round + 1,
                row(mode, &r),
                r.probes
            );
            if mode.semi() && r.no_tx > 0 {
                bail!(
                    "{}: the primary released {} commits without an ack (timeout): not a semi-sync run",
                    mode.label(),
                    r.no_tx
                );
            }
            results.push((mode, r));
            server = Some(s);
        }
    }
    if let Some(mut s) = server.take() {
        s.stop()?;
    }
    report(&results_by_mode(&results));
    Ok(())
}

/// `test.sbtest` with ROWS rows and `test.probe`.
fn create_table(db: &MariaDb) -> Result<()> {
    db.sql(
        "CREATE TABLE test.sbtest (id BIGINT PRIMARY KEY, k INT NOT NULL, c CHAR(120), pad CHAR(60), KEY(k)) ENGINE=InnoDB;
         CREATE TABLE test.probe (id BIGINT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB;",
    )?;
    db.sql(&format!(
        "INSERT INTO test.sbtest SELECT seq, seq % 1000, MD5(seq), MD5(-seq) FROM test.seq_1_to_{ROWS}"
    ))?;
    Ok(())
}

/// binlog-server's three configurations over one data directory.
struct Configs {
    http: String,
    default: PathBuf,
    fast: PathBuf,
    semi: PathBuf,
}

impl Configs {
    fn for_mode(&self, mode: Mode) -> &Path {
        match mode {
            Mode::Async | Mode::SemiNative | Mode::SemiNativeSynced => &self.default,
            Mode::AsyncFast => &self.fast,
            Mode::SemiArchive => &self.semi,
        }
    }
}

fn write_configs(dir: &Path, primary: &MariaDb) -> Result<Configs> {
    let http = format!("127.0.0.1:{}", free_port());
    let one = |semi: bool, fsync: &str, name: &str| -> Result<PathBuf> {
        let spec = SourceSpec {
            name: "db".into(),
            url: primary.repl_url(),
            server_id: 4242,
            start: format!("\"earliest\"\nsemi_sync = {semi}"),
        };
        let capture = format!("[capture]\nfsync_interval = \"{fsync}\"\npoll_interval = \"1s\"\n");
        let cfg = write_config_sources(dir, &http, &[spec], &capture)?;
        let path = dir.join(name);
        std::fs::rename(&cfg, &path)?;
        Ok(path)
    };
    Ok(Configs {
        default: one(false, "500ms", "async.toml")?,
        fast: one(false, "1ms", "fast.toml")?,
        semi: one(true, "500ms", "semi.toml")?,
        http,
    })
}

/// Sets the primary and the replica for `mode` and waits until binlog-server is caught
/// up and, in a semi-sync mode, until the primary is in semi-sync.
fn prepare(mode: Mode, primary: &MariaDb, replica: &MariaDb, server: &ServerProcess) -> Result<()> {
    let on = |b: bool| if b { "ON" } else { "OFF" };
    primary.sql(&format!(
        "SET GLOBAL rpl_semi_sync_master_enabled = {}",
        on(mode.semi())
    ))?;
    replica.sql(&format!(
        "STOP SLAVE IO_THREAD; SET GLOBAL rpl_semi_sync_slave_enabled = {}; \
         SET GLOBAL sync_relay_log = {}; START SLAVE IO_THREAD;",
        on(mode.native_semi()),
        if mode == Mode::SemiNativeSynced {
            1
        } else {
            10000
        }
    ))?;
    wait_caught_up(server, primary, "db", Duration::from_secs(120))?;
    if mode.semi() {
        wait_for("the primary in semi-sync", Duration::from_secs(60), || {
            primary.sql("INSERT INTO test.probe () VALUES ()")?;
            Ok((primary.status_var("Rpl_semi_sync_master_status")? == "ON"
                && primary.status_var("Rpl_semi_sync_master_clients")? == "1")
                .then_some(()))
        })
        .with_context(|| {
            format!(
                "primary: {:?}; replica: {:?} {:?}",
                primary.sql_rows("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'"),
                replica.sql_rows("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_slave%'"),
                replica.sql("SHOW SLAVE STATUS\\G")
            )
        })?;
    }
    Ok(())
}

/// Runs the load and the probe for `args.secs` seconds.
fn run_load(mode: Mode, primary: &MariaDb, server: &ServerProcess, args: &Args) -> Result<Round> {
    let no_tx_before: u64 = primary.status_var("Rpl_semi_sync_master_no_tx")?.parse()?;
    let buckets_before = durable_buckets(server)?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let loaders: Vec<_> = (0..args.threads)
        .map(|t| {
            let (url, stop) = (primary.admin_url(), stop.clone());
            let threads = args.threads as u64;
            std::thread::spawn(move || load_thread(url, t as u64, threads, stop))
        })
        .collect();
    let probe = probe_loop(primary, server, Duration::from_secs(args.secs));
    stop.store(true, Ordering::SeqCst);
    let mut commits = Vec::new();
    let mut trx = 0u64;
    for l in loaders {
        let (n, lat) = l
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        trx += n;
        commits.extend(lat);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut durable = probe?;
    let no_tx: u64 = primary.status_var("Rpl_semi_sync_master_no_tx")?.parse()?;
    let buckets: Vec<(f64, u64)> = durable_buckets(server)?
        .into_iter()
        .map(|(le, n)| {
            let before = buckets_before
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0, |(_, b)| *b);
            (le, n.saturating_sub(before))
        })
        .collect();
    Ok(Round {
        server_p50_ms: bucket_quantile(&buckets, 0.50) * 1e3,
        server_p99_ms: bucket_quantile(&buckets, 0.99) * 1e3,
        trx_per_sec: trx as f64 / elapsed,
        commit_p50_ms: percentile(&mut commits, 0.50),
        commit_p99_ms: percentile(&mut commits, 0.99),
        durable_p50_ms: percentile(&mut durable, 0.50),
        durable_p99_ms: percentile(&mut durable, 0.99),
        durable_max_ms: percentile(&mut durable, 1.0),
        probes: durable.len(),
        no_tx: no_tx.saturating_sub(no_tx_before) * u64::from(mode.semi()),
    })
}

/// One client: transactions on the ids `id % threads == t` until `stop`; returns the
/// count and each COMMIT's latency (ms).
fn load_thread(
    url: String,
    t: u64,
    threads: u64,
    stop: Arc<AtomicBool>,
) -> Result<(u64, Vec<f64>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let pool = mysql_async::Pool::new(url.as_str());
        let mut conn = pool.get_conn().await?;
        let mut rnd = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
        let mut lat = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut pick = || {
                rnd ^= rnd << 13;
                rnd ^= rnd >> 7;
                rnd ^= rnd << 17;
                let id = rnd % (ROWS / threads) * threads + t;
                id.max(1)
            };
            let (a, b, c) = (pick(), pick(), pick());
            for q in [
                "START TRANSACTION".to_string(),
                format!("UPDATE test.sbtest SET k = k + 1 WHERE id = {a}"),
                format!("UPDATE test.sbtest SET c = MD5(RAND()) WHERE id = {b}"),
                format!("DELETE FROM test.sbtest WHERE id = {c}"),
                format!("INSERT INTO test.sbtest VALUES ({c}, {c} % 1000, MD5(RAND()), MD5({c}))"),
            ] {
                conn.query_drop(q).await?;
            }
            let at = Instant::now();
            conn.query_drop("COMMIT").await?;
            lat.push(at.elapsed().as_secs_f64() * 1e3);
            n += 1;
        }
        drop(conn);
        pool.disconnect().await?;
        Ok((n, lat))
    })
}

/// Every PROBE_EVERY for `secs`: a one-row commit, the primary's end after it, and the
/// time until binlog-server's durable position covers that end (ms).
fn probe_loop(primary: &MariaDb, server: &ServerProcess, secs: Duration) -> Result<Vec<f64>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pool = mysql_async::Pool::new(primary.admin_url().as_str());
    let mut conn = rt.block_on(pool.get_conn())?;
    let mut out = Vec::new();
    let end = Instant::now() + secs;
    while Instant::now() < end {
        let next = Instant::now() + PROBE_EVERY;
        let sent = Instant::now();
        rt.block_on(conn.query_drop("INSERT INTO test.probe () VALUES ()"))?;
        let (file, pos): (String, u64) = rt
            .block_on(conn.query_first::<mysql_async::Row, _>("SHOW MASTER STATUS"))?
            .and_then(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
            .context("SHOW MASTER STATUS")?;
        wait_durable(server, &file, pos, Duration::from_secs(30))?;
        out.push(sent.elapsed().as_secs_f64() * 1e3);
        if let Some(rest) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
    drop(conn);
    rt.block_on(pool.disconnect())?;
    Ok(out)
}

/// Polls the source's status until its durable position is at or past (`file`, `pos`).
fn wait_durable(server: &ServerProcess, file: &str, pos: u64, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let want = (binlog::binlog_order(file), pos);
    loop {
        let s = server.get_json("/v1/sources/db")?;
        let have = (
            binlog::binlog_order(s["durable_file"].as_str().unwrap_or_default()),
            s["durable_pos"].as_u64().unwrap_or(0),
        );
        if s["durable_file"].is_string() && have >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{file}:{pos} not durable within {timeout:?}: {s}");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// binlog-server's `durable_wait_seconds` buckets of source `db`: (upper bound in
/// seconds, cumulative count), `+Inf` as infinity.
fn durable_buckets(server: &ServerProcess) -> Result<Vec<(f64, u64)>> {
    let (_, text) = server.get_text("/metrics")?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("binlog_server_durable_wait_seconds_bucket{") else {
            continue;
        };
        if !rest.contains("source=\"db\"") {
            continue;
        }
        let le = rest
            .split("le=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .context("a bucket bound")?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        let n = line.rsplit(' ').next().context("a bucket count")?.parse()?;
        out.push((le, n));
    }
    Ok(out)
}

/// The smallest bucket bound under which a `q` share of the observations fell (0 when
/// there are none).
fn bucket_quantile(buckets: &[(f64, u64)], q: f64) -> f64 {
    let total = buckets.iter().map(|(_, n)| *n).max().unwrap_or(0);
    if total == 0 {
        return 0.0;
    }
    let want = (total as f64 * q).ceil() as u64;
    buckets
        .iter()
        .find(|(_, n)| *n >= want)
        .map_or(f64::INFINITY, |(le, _)| *le)
}

/// The `q` quantile of `v` (sorted in place; 1.0 = the maximum); 0 when empty.
fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    percentile(&mut v, 0.5)
}

/// The median of every figure over a mode's rounds, in MODES order.
fn results_by_mode(results: &[(Mode, Round)]) -> Vec<(Mode, Round)> {
    MODES
        .iter()
        .map(|&m| {
            let rs: Vec<&Round> = results
                .iter()
                .filter(|(x, _)| *x == m)
                .map(|(_, r)| r)
                .collect();
            let f = |g: fn(&Round) -> f64| median(rs.iter().map(|r| g(r)).collect());
            (
                m,
                Round {
                    trx_per_sec: f(|r| r.trx_per_sec),
                    commit_p50_ms: f(|r| r.commit_p50_ms),
                    commit_p99_ms: f(|r| r.commit_p99_ms),
                    durable_p50_ms: f(|r| r.durable_p50_ms),
                    durable_p99_ms: f(|r| r.durable_p99_ms),
                    durable_max_ms: f(|r| r.durable_max_ms),
                    server_p50_ms: f(|r| r.server_p50_ms),
                    server_p99_ms: f(|r| r.server_p99_ms),
                    probes: rs.iter().map(|r| r.probes).sum(),
                    no_tx: rs.iter().map(|r| r.no_tx).sum(),
                },
            )
        })
        .collect()
}

/// The column heads of [`row`].
fn header() -> String {
    format!(
        "{:<38} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "mode",
        "trx/s",
        "commit p50",
        "commit p99",
        "probe p50",
        "probe p99",
        "probe max",
        "server p50",
        "server p99"
    )
}

/// One line of figures, in the columns of [`header`].
fn row(m: Mode, r: &Round) -> String {
    format!(
        "{:<38} {:>6.0} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>11} {:>11}",
        m.label(),
        r.trx_per_sec,
        r.commit_p50_ms,
        r.commit_p99_ms,
        r.durable_p50_ms,
        r.durable_p99_ms,
        r.durable_max_ms,
        format!("<= {}ms", r.server_p50_ms),
        format!("<= {}ms", r.server_p99_ms)
    )
}

fn report(by_mode: &[(Mode, Round)]) {
    println!("== medians over the rounds");
    println!("   {}", header());
    for (m, r) in by_mode {
        println!("   {}", row(*m, r));
    }
    let tps = |m: Mode| {
        by_mode
            .iter()
            .find(|(x, _)| *x == m)
            .map(|(_, r)| r.trx_per_sec)
            .unwrap_or(0.0)
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "   semi-sync -> binlog-server: {:.2}x the native replica's trx/s, {:.2}x the native replica's with sync_relay_log=1, {:.2}x async's",
        ratio(tps(Mode::SemiArchive), tps(Mode::SemiNative)),
        ratio(tps(Mode::SemiArchive), tps(Mode::SemiNativeSynced)),
        ratio(tps(Mode::SemiArchive), tps(Mode::Async))
    );
    println!(
        "   targets: async durable p99 <= 5 ms; semi-sync trx/s >= the native replica's and >= 0.90x async"
    );
}
