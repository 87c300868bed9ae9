//! `scripts/demo.sh --fleet`: three binlog-server nodes as processes on one PostgreSQL
//! catalog and one bucket of the S3-compatible server, over one sandbox primary under a
//! write load. The owner of the source is killed (SIGKILL) under load; the demo shows
//! which node takes it over and in how long, restores the source to a point in time on a
//! node that never owned it (from the store), and shows the archive identical to the
//! primary's: every closed file SUCC and whole in the store with the primary's SHA-256,
//! and read back byte for byte through that node's fake primary.
//!
//! Bounded: the load runs for `seconds`; every wait has its own limit. Every server is
//! stopped by PID when the demo ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use binlog_tests::*;

/// Lease length of the demo's nodes: the default, so the takeover time is the one a DBA
/// gets.
const LEASE_TTL: &str = "10s";

/// The source's name.
const SOURCE: &str = "sandbox";

/// Runs the fleet demo with the load running for `seconds`.
///
/// # Errors
///
/// A server does not start, a step fails or a check does not hold (named).
pub fn run(bin: &Path, seconds: u64) -> Result<()> {
    println!(
        "== starting PostgreSQL (the fleet's catalog) and the S3-compatible server (its bucket)"
    );
    let svc = Services::start(bin)?;
    println!(
        "   catalog {} (database fleet), bucket s3://fleet at {}",
        svc.pg.url_for("fleet"),
        svc.moto.endpoint()
    );
    let db = MariaDb::start(MariaDbOptions {
        server_id: 1,
        max_binlog_size: 256 * 1024,
        ..Default::default()
    })?;
    println!(
        "== sandbox MariaDB primary on 127.0.0.1:{} (max_binlog_size=256K)",
        db.port()
    );
    let specs = [SourceSpec {
        name: SOURCE.into(),
        url: db.repl_url(),
        server_id: 4242,
        start: "\"earliest\"".into(),
    }];
    let ids = ["node-a", "node-b", "node-c"];
    let backup = "method = \"logical\"\nlogical_tool = \"mysqldump\"\n";
    let nodes = fleet_with_bases(&svc, &db, &ids, LEASE_TTL, &specs, (backup, ""))?;
    // Every node's own fake primary for the source (stock clients read it like a
    // primary, on any node).
    let mut fake_ports = BTreeMap::new();
    for n in &nodes {
        let port = free_port();
        n.append_config(&format!(
            "\n[source.replication]\nlisten = \"127.0.0.1:{port}\"\nuser = {}\npassword = {}\n",
            toml_string(REPL_USER),
            toml_string(REPL_PASSWORD)
        ))?;
        fake_ports.insert(n.id.clone(), port);
    }
    println!(
        "== node-a's config {}:\n{}",
        nodes[0].cfg.display(),
        std::fs::read_to_string(&nodes[0].cfg)?
            .replace(REPL_PASSWORD, "***")
            .replace(ADMIN_PASSWORD, "***")
    );
    let mut procs: BTreeMap<String, ServerProcess> = BTreeMap::new();
    procs.insert("node-a".into(), nodes[0].start()?);
    wait_streaming_owner(&procs["node-a"], "node-a", SOURCE, Duration::from_secs(60))?;
    println!("== node-a started first and holds the lease of {SOURCE}; node-b and node-c join");
    for n in &nodes[1..] {
        procs.insert(n.id.clone(), n.start()?);
    }
    show_fleet(&procs["node-c"])?;

    let load = WriteLoad::start(
        &db,
        WriteLoadOptions {
            max_duration: Duration::from_secs(seconds),
            row_bytes: 400,
            ..Default::default()
        },
    )?;
    println!("== write load on the primary for {seconds} s; a logical base through node-a's API");
    let base = take_base(&procs["node-a"], SOURCE)?;
    println!("   base {base} in s3://fleet/bases");
    std::thread::sleep(Duration::from_secs((seconds / 3).max(2)));
    let killed = kill_owner_and_wait(&mut procs, &ids)?;
    let owner = killed.new_owner.clone();
    let n = load.stop()?;
    println!("== write load done: {n} transactions");

    let (t, sums) = checkpoint(&db)?;
    db.sql("CREATE TABLE test.after_target (id INT PRIMARY KEY); INSERT INTO test.after_target VALUES (1)")?;
    wait_caught_up(&procs[&owner], &db, SOURCE, Duration::from_secs(120))?;
    let never = ids
        .iter()
        .find(|id| **id != "node-a" && **id != owner)
        .context("a third node")?
        .to_string();
    println!("== PITR to @{t} on {never}, which never owned {SOURCE}: from the store (closed files whole, the active file's chunks) with its own index");
    let started = Instant::now();
    let (got, job) = restore_with_retry(&procs[&never], t)?;
    println!(
        "   phase={} base={} applied {} transactions in {:.1} s restore + {:.1} s replay ({:.1} s in all)",
        job["phase"],
        job["plan"]["base"]["id"],
        job["progress"]["transactions_applied"],
        job["restore_seconds"].as_f64().unwrap_or(0.0),
        job["replay_seconds"].as_f64().unwrap_or(0.0),
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        got == sums,
        "the restored tables differ from the primary's at @{t}: {got:?} vs {sums:?}"
    );
    println!(
        "   the restored instance's {} tables have the primary's checksums at @{t}",
        got.len()
    );

    db.flush_binary_logs()?;
    wait_caught_up(&procs[&owner], &db, SOURCE, Duration::from_secs(120))?;
    let closed = wait_catalog_and_store_identical(&svc.pg, &db, SOURCE, Duration::from_secs(120))?;
    println!("== {closed} closed binlogs are SUCC in the catalog and whole in the bucket, each with the primary's SHA-256");
    read_back_through(&db, &never, fake_ports[&never])?;
    println!("== done: stopping the nodes, the primary, PostgreSQL and the S3-compatible server");
    Ok(())
}

/// GET /v1/nodes and GET /v1/sources on `node`, summarised.
fn show_fleet(node: &ServerProcess) -> Result<()> {
    let nodes = wait_for("three live nodes", Duration::from_secs(30), || {
        let v = node.get_json("/v1/nodes")?;
        let live = v["nodes"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|n| n["alive"] == true).count());
        Ok((live == 3).then_some(v))
    })?;
    println!("== GET /v1/nodes (asked of node-c)");
    for n in nodes["nodes"].as_array().cloned().unwrap_or_default() {
        println!(
            "   {:<7} alive={} heartbeat {} ms ago, leases {}",
            n["id"].as_str().unwrap_or("?"),
            n["alive"],
            n["heartbeat_age_ms"],
            n["leases"]
        );
    }
    let sources = node.get_json("/v1/sources")?;
    println!("== GET /v1/sources (asked of node-c)");
    for s in sources.as_array().cloned().unwrap_or_default() {
        println!(
            "   {:<8} here: {:<9} owner {} epoch {}",
            s["name"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            s["lease"]["owner"],
            s["lease"]["epoch"]
        );
    }
    Ok(())
}

/// What the kill of the owner showed.
struct Killed {
    /// The node that streams the source now.
    new_owner: String,
}

/// Kills node-a (the owner) with SIGKILL and waits until another node streams the
/// source; prints the outage and the takeover the new owner reports.
fn kill_owner_and_wait(
    procs: &mut BTreeMap<String, ServerProcess>,
    ids: &[&str],
) -> Result<Killed> {
    let a = procs.get_mut("node-a").context("node-a")?;
    println!(
        "== kill -9 node-a (pid {:?}), the owner, under load",
        a.pid()
    );
    a.kill9()?;
    let killed = Instant::now();
    let new_owner = wait_for(
        "another node to stream the source",
        Duration::from_secs(60),
        || {
            for id in ids.iter().filter(|id| **id != "node-a") {
                let s = procs[*id].get_json(&format!("/v1/sources/{SOURCE}"))?;
                if s["state"] == "streaming" && s["lease"]["owner"] == *id {
                    return Ok(Some(id.to_string()));
                }
            }
            Ok(None)
        },
    )?;
    let outage = killed.elapsed();
    let p = &procs[&new_owner];
    let takeover = wait_for("the takeover's report", Duration::from_secs(10), || {
        let s = p.get_json(&format!("/v1/sources/{SOURCE}"))?;
        Ok(s["takeover"]["seconds"].as_f64().map(|_| s))
    })?;
    println!(
        "   {new_owner} streams {SOURCE} again {:.1} s after the kill (lease_ttl {LEASE_TTL}; target 30 s)",
        outage.as_secs_f64()
    );
    println!(
        "   its takeover: epoch {} from {}, {:.1} s from node-a's last renewal to streaming again; {}",
        takeover["takeover"]["epoch"],
        takeover["takeover"]["previous_owner"],
        takeover["takeover"]["seconds"].as_f64().unwrap_or(0.0),
        takeover["takeover"]["summary"].as_str().unwrap_or("")
    );
    let (_, metrics) = p.get_text("/metrics")?;
    for l in metrics
        .lines()
        .filter(|l| l.starts_with("binlog_server_takeover"))
    {
        println!("   {l}");
    }
    anyhow::ensure!(
        outage < Duration::from_secs(30),
        "streaming again only after {outage:?}"
    );
    Ok(Killed { new_owner })
}

/// The primary's `test` checksums now and a unix second after them (no later write is
/// in it).
fn checkpoint(db: &MariaDb) -> Result<(u64, BTreeMap<String, String>)> {
    let sums = db.table_checksums(&["test"])?;
    let now = || -> Result<u64> { Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs()) };
    let t = now()?;
    while now()? <= t {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((t, sums))
}

/// [`restore_at`] once the store holds the target (the new owner ships within its
/// `ship_interval`; until then the plan is refused as beyond the archive's end).
fn restore_with_retry(
    node: &ServerProcess,
    t: u64,
) -> Result<(BTreeMap<String, String>, serde_json::Value)> {
    wait_for(
        "the store to hold the target",
        Duration::from_secs(60),
        || {
            let (code, p) = node.post_json(
                &format!("/v1/sources/{SOURCE}/pitr/plan"),
                &serde_json::json!({ "target_time": format!("@{t}") }),
            )?;
            anyhow::ensure!(code == 200, "plan: {code} {p}");
            Ok(Some(()))
        },
    )?;
    restore_at(node, SOURCE, t)
}

/// `mariadb-binlog --raw` against `node`'s fake primary: every closed file byte for byte
/// the primary's, the active one a prefix of it.
fn read_back_through(db: &MariaDb, node: &str, port: u16) -> Result<()> {
    let files = db.binlog_files()?;
    let (first, _) = files.first().context("binlogs")?;
    let out = tempfile::tempdir()?;
    println!("== mariadb-binlog --read-from-remote-server --raw --to-last-log --port={port} {first} (the fake primary of {node})");
    mariadb_binlog_raw(port, first, out.path(), &[], Duration::from_secs(120))?;
    let (last, closed) = files.split_last().context("binlogs")?;
    for (name, _) in closed {
        let ours = sha256_file(&out.path().join(name)).with_context(|| name.clone())?;
        anyhow::ensure!(
            ours == sha256_file(&db.binlog_path(name))?,
            "{name} read through {node} differs from the primary's"
        );
    }
    let got = std::fs::metadata(out.path().join(&last.0))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "   {} closed files SHA-256-equal to the primary's; the active {} read up to {got} bytes of the store's view",
        closed.len(),
        last.0
    );
    Ok(())
}
