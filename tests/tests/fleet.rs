//! binlog-server nodes on a shared PostgreSQL catalog (issue 21, the fleet). Every
//! server here is real: the harness's throw-away PostgreSQL ([`Postgres`]) and MariaDB
//! primaries, and binlog-server as a child process.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test fleet`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use binlog_tests::*;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

fn load(db: &MariaDb, txns: u64) -> Result<u64> {
    WriteLoad::run(db, txns)
}

/// One node whose catalog is a PostgreSQL database (its password from `password_env`)
/// captures as it does on SQLite: byte-identical files, every closed one SUCC with the
/// primary's SHA-256, across a SIGKILL; the rows are in PostgreSQL and no SQLite file
/// is made.
#[test]
fn a_node_on_a_postgres_catalog_captures_and_survives_sigkill() -> Result<()> {
    let pg = Postgres::start()?;
    pg.sql("CREATE DATABASE node_a")?;
    let db = MariaDb::start(MariaDbOptions {
        max_binlog_size: 32 * 1024,
        ..Default::default()
    })?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    // The harness's server trusts loopback, so any password is accepted: this checks
    // that password_env is read and passed, not PostgreSQL's authentication.
    std::env::set_var("BINLOG_TEST_CATALOG_PASSWORD", "catalog-pw");
    let extra = format!(
        "{FLEET_CAPTURE}[catalog]\nurl = {}\npassword_env = \"BINLOG_TEST_CATALOG_PASSWORD\"\n",
        toml_string(&pg.url_for("node_a"))
    );
    let spec = SourceSpec {
        name: "db".into(),
        url: db.repl_url(),
        server_id: 4242,
        start: "\"earliest\"".into(),
    };
    let cfg = write_config_sources(dir.path(), &http, &[spec], &extra)?;
    let mut server = ServerProcess::start(&bin(), &cfg, &http)?;
    load(&db, 600)?;
    server.kill9()?;
    load(&db, 300)?;
    server = ServerProcess::start(&bin(), &cfg, &http)?;
    load(&db, 300)?;
    db.flush_binary_logs()?;
    wait_caught_up(&server, &db, "db", Duration::from_secs(90))?;
    let closed = assert_archive_identical(&db, &dir.path().join("data").join("db"))?;
    assert!(
        closed >= 3,
        "expected several rotations, got {closed} closed files"
    );
    let files = wait_all_succ(&server, "db", Duration::from_secs(60))?;

    // What the API shows is what PostgreSQL holds.
    let succ: Vec<String> = files["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["state"] == "SUCC")
        .map(|f| {
            format!(
                "{}|{}",
                f["name"].as_str().unwrap_or(""),
                f["sha256"].as_str().unwrap_or("")
            )
        })
        .collect();
    let in_pg = pg.sql_in(
        "node_a",
        "SELECT name, sha256 FROM binlog_files WHERE source = 'db' AND state = 'SUCC' \
         ORDER BY seq, name",
    )?;
    assert!(
        succ.len() >= closed,
        "{} SUCC files of {closed} closed",
        succ.len()
    );
    assert_eq!(in_pg.lines().collect::<Vec<_>>(), succ);
    for line in &succ {
        let (name, sha) = line.split_once('|').expect("name|sha");
        assert_eq!(sha, sha256_file(&db.binlog_path(name))?, "{name}");
    }
    assert!(
        !dir.path().join("data").join("catalog.db").exists(),
        "a postgres catalog must not leave an SQLite file"
    );

    // GET /v1/nodes shows the fleet as PostgreSQL holds it: another node's heartbeat
    // and its live lease, written here as that node would.
    pg.sql_in(
        "node_a",
        "INSERT INTO nodes (id, advertise, started_ms, heartbeat_ms, draining) VALUES \
         ('node-b', 'https://10.0.0.8:7480', 1, \
          CAST(floor(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT), 0); \
         INSERT INTO source_leases (source, owner, epoch, expires_ms, acquired_ms, renewed_ms, \
          previous_owner, previous_renewed_ms) VALUES ('db', 'node-b', 4, \
          CAST(floor(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT) + 60000, 1, 1, \
          'node-a', 1)",
    )?;
    let fleet = server.get_json("/v1/nodes")?;
    let nodes = fleet["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{fleet}");
    assert_eq!(nodes[0]["id"], "node-b");
    assert_eq!(nodes[0]["alive"], true, "{fleet}");
    assert_eq!(nodes[0]["leases"], serde_json::json!(["db"]), "{fleet}");
    let lease = &fleet["leases"][0];
    assert_eq!(
        (lease["owner"].as_str(), lease["epoch"].as_i64()),
        (Some("node-b"), Some(4))
    );
    assert!(
        lease["expires_in_ms"].as_i64().unwrap_or(0) > 50_000,
        "{fleet}"
    );
    server.stop()?;
    Ok(())
}

/// A source `name` of `db`, fetched from its earliest binlog, as replica `server_id`.
fn spec(name: &str, db: &MariaDb, server_id: u32) -> SourceSpec {
    SourceSpec {
        name: name.into(),
        url: db.repl_url(),
        server_id,
        start: "\"earliest\"".into(),
    }
}

/// A primary that rotates every `max_binlog_size` bytes.
fn primary(server_id: u32, max_binlog_size: u64) -> Result<MariaDb> {
    MariaDb::start(MariaDbOptions {
        server_id,
        max_binlog_size,
        ..Default::default()
    })
}

/// The active file `file` on the node is a prefix of the primary's (the IN_USE flag of
/// the first FORMAT_DESCRIPTION aside).
fn assert_active_prefix(db: &MariaDb, dir: &std::path::Path, file: &str) -> Result<()> {
    let mut ours = std::fs::read(dir.join(file)).with_context(|| format!("our {file}"))?;
    let mut theirs = std::fs::read(db.binlog_path(file))?;
    anyhow::ensure!(
        ours.len() <= theirs.len(),
        "our {file} is longer than the primary's"
    );
    theirs.truncate(ours.len());
    for v in [&mut ours, &mut theirs] {
        if let Some(b) = v.get_mut(IN_USE_FLAG_OFFSET) {
            *b &= !1;
        }
    }
    anyhow::ensure!(
        ours == theirs,
        "our {file} is not a prefix of the primary's"
    );
    Ok(())
}

/// Two nodes as processes on one PostgreSQL catalog and one S3 bucket. The owner of the
/// source is killed with SIGKILL under write load; the other node acquires the lease
/// under epoch 2 after its expiry, takes the source over from the store (it never
/// captured it: its disk is empty), streams again within 30 s and reports the
/// takeover's time in the API and the metrics. After catch-up every closed binlog is
/// SUCC with the primary's SHA-256 and whole in the store with it, and its active file
/// is a prefix of the primary's: nothing lost or duplicated across the takeover.
#[test]
fn a_killed_owner_is_taken_over_from_the_store_within_30_s_and_nothing_is_lost() -> Result<()> {
    let svc = Services::start(&bin())?;
    let pg = &svc.pg;
    let db = primary(1, 32 * 1024)?;
    let specs = [spec("db", &db, 4343)];
    let a = svc.node("node-a", &specs, "3s")?;
    let b = svc.node("node-b", &specs, "3s")?;
    let mut pa = a.start()?;
    wait_streaming_owner(&pa, &a.id, "db", Duration::from_secs(30))?;
    load(&db, 400)?;
    let pb = b.start()?;
    let standby = pb.get_json("/v1/sources/db")?;
    assert_eq!(standby["state"], "standby", "{standby}");

    let writes = WriteLoad::start(
        &db,
        WriteLoadOptions {
            max_txns: 4000,
            max_duration: Duration::from_secs(60),
            ..Default::default()
        },
    )?;
    std::thread::sleep(Duration::from_secs(2));
    pa.kill9()?;
    let killed = std::time::Instant::now();
    let s = wait_streaming_owner(&pb, &b.id, "db", Duration::from_secs(30))?;
    let outage = killed.elapsed();
    assert!(
        outage < Duration::from_secs(30),
        "streaming again after {outage:?}"
    );
    assert_eq!(s["lease"]["epoch"], 2, "{s}");
    let takeover = wait_for("the takeover time", Duration::from_secs(10), || {
        let s = pb.get_json("/v1/sources/db")?;
        match s["takeover"]["seconds"].as_f64() {
            Some(t) => Ok(Some((t, s["takeover"].clone()))),
            None => Err(anyhow::anyhow!("takeover {}", s["takeover"])),
        }
    })?;
    assert!(
        takeover.0 > 0.0 && takeover.0 < 30.0,
        "takeover {}",
        takeover.1
    );
    assert_eq!(takeover.1["previous_owner"], "node-a", "{}", takeover.1);
    eprintln!("takeover after {outage:?}: {}", takeover.1);
    let (_, metrics) = pb.get_text("/metrics")?;
    assert!(
        metrics.contains("binlog_server_takeover_seconds{source=\"db\"}")
            && metrics.contains("binlog_server_takeovers_total{source=\"db\"} 1"),
        "{metrics}"
    );

    let written = writes.stop()?;
    assert!(written > 0);
    db.flush_binary_logs()?;
    wait_caught_up(&pb, &db, "db", Duration::from_secs(90))?;
    let closed = wait_catalog_and_store_identical(pg, &db, "db", Duration::from_secs(90))
        .with_context(|| {
            format!(
                "node-a's log:\n{}\nnode-b's log:\n{}",
                pa.log_tail(40),
                pb.log_tail(80)
            )
        })?;
    assert!(closed >= 10, "expected many rotations, got {closed}");
    let (active, _) = db.binlog_files()?.pop().context("binlogs")?;
    assert_active_prefix(&db, &b.source_dir("db"), &active)?;
    drop(pb);
    Ok(())
}

/// The owner of the source is paused (SIGSTOP) under write load for longer than its
/// lease; the other node takes the source over. When the paused node goes on (SIGCONT)
/// it stops the source at once (standby, the tenure's end counted), and nothing it
/// tried to write after its pause began is recorded: no archive object of its epoch is
/// newer than the pause. The archive stays identical to the primary's.
#[test]
fn a_paused_owner_stops_when_it_wakes_and_records_nothing_after_its_lease_is_gone() -> Result<()> {
    let svc = Services::start(&bin())?;
    let pg = &svc.pg;
    let db = primary(1, 64 * 1024)?;
    let specs = [spec("db", &db, 4344)];
    let a = svc.node("node-a", &specs, "3s")?;
    let b = svc.node("node-b", &specs, "3s")?;
    let pa = a.start()?;
    wait_streaming_owner(&pa, &a.id, "db", Duration::from_secs(30))?;
    load(&db, 300)?;
    let pb = b.start()?;
    let writes = WriteLoad::start(
        &db,
        WriteLoadOptions {
            max_txns: 3000,
            max_duration: Duration::from_secs(60),
            ..Default::default()
        },
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let paused_at = catalog::unix_now();
    pa.pause()?;
    wait_streaming_owner(&pb, &b.id, "db", Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(2));
    pa.resume()?;
    let woke = wait_for(
        "the woken node to stand by",
        Duration::from_secs(15),
        || {
            let s = pa.get_json("/v1/sources/db")?;
            if s["state"] == "standby" {
                Ok(Some(s))
            } else {
                Err(anyhow::anyhow!("state {}", s["state"]))
            }
        },
    )?;
    assert_eq!(woke["lease"]["owner"], "node-b", "{woke}");
    let (_, metrics) = pa.get_text("/metrics")?;
    assert!(
        metrics.contains("binlog_server_tenures_ended_total{source=\"db\",reason=\"expired\"} 1")
            || metrics
                .contains("binlog_server_tenures_ended_total{source=\"db\",reason=\"lost\"} 1"),
        "{metrics}"
    );

    writes.stop()?;
    db.flush_binary_logs()?;
    wait_caught_up(&pb, &db, "db", Duration::from_secs(90))?;
    wait_catalog_and_store_identical(pg, &db, "db", Duration::from_secs(90))
        .with_context(|| format!("node-b's log:\n{}", pb.log_tail(60)))?;
    let late = pg.sql_in(
        "fleet",
        &format!(
            "SELECT file, kind, start_offset, end_offset, created_at FROM archive_objects \
             WHERE source = 'db' AND epoch = 1 AND created_at > {paused_at}"
        ),
    )?;
    assert!(
        late.is_empty(),
        "the paused owner recorded objects after its pause began:\n{late}\nits log:\n{}",
        pa.log_tail(40)
    );
    let epochs = pg.sql_in(
        "fleet",
        "SELECT DISTINCT epoch FROM archive_objects WHERE source = 'db' ORDER BY epoch",
    )?;
    assert_eq!(epochs.lines().collect::<Vec<_>>(), ["1", "2"], "{epochs}");
    Ok(())
}

/// Which node holds each source by its own view (`lease.held_here` in `GET
/// /v1/sources`), sampled over `nodes` (index, server); fails when two nodes hold one
/// source at once, or when a holder's epoch is not the catalog's live one.
fn holders(nodes: &[(usize, &ServerProcess)]) -> Result<BTreeMap<String, (usize, i64)>> {
    let mut out: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for (i, server) in nodes {
        let list = server.get_json("/v1/sources")?;
        for s in list.as_array().context("sources")? {
            let Some(epoch) = s["lease"]["held_here"].as_i64() else {
                continue;
            };
            let name = s["name"].as_str().context("name")?.to_string();
            // While the catalog is down the node answers alone, without the catalog's view.
            anyhow::ensure!(
                s["lease"]["catalog_error"].is_string()
                    || s["lease"]["epoch"].as_i64() == Some(epoch),
                "node {i} holds {name} under epoch {epoch}, the catalog says {}",
                s["lease"]
            );
            if let Some((j, e)) = out.insert(name.clone(), (*i, epoch)) {
                anyhow::bail!(
                    "{name} is held by node {j} (epoch {e}) and node {i} (epoch {epoch}) at once"
                );
            }
        }
    }
    Ok(out)
}

/// Three nodes as processes over two primaries under write load, the catalog read
/// through every node every 200 ms: each source has at most one holder at every
/// sample and each node at most one source (its share, ceil(2/3)); the holder of one
/// source is killed with SIGKILL and another node streams it within 30 s under the
/// next epoch; afterwards both archives are identical to their primaries.
#[test]
fn three_nodes_two_primaries_one_holder_per_source_at_every_sample() -> Result<()> {
    let svc = Services::start(&bin())?;
    let pg = &svc.pg;
    let (db1, db2) = (primary(1, 64 * 1024)?, primary(2, 64 * 1024)?);
    let specs = [spec("db1", &db1, 4401), spec("db2", &db2, 4402)];
    let nodes: Vec<FleetNode> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| svc.node(id, &specs, "3s"))
        .collect::<Result<_>>()?;
    let mut servers: Vec<Option<ServerProcess>> = Vec::new();
    for n in &nodes {
        servers.push(Some(n.start()?));
    }
    let sample = |servers: &[Option<ServerProcess>]| -> Result<BTreeMap<String, (usize, i64)>> {
        let v: Vec<(usize, &ServerProcess)> = servers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .collect();
        let h = holders(&v)?;
        let mut per_node = BTreeMap::new();
        for (i, _) in h.values() {
            *per_node.entry(*i).or_insert(0) += 1;
        }
        anyhow::ensure!(
            per_node.values().all(|n| *n <= 1) || v.len() < 2,
            "a node holds more than its share: {h:?}"
        );
        Ok(h)
    };
    let mut samples = 0;
    let both = wait_for("both sources held", Duration::from_secs(30), || {
        samples += 1;
        let h = sample(&servers)?;
        Ok((h.len() == 2).then_some(h))
    })?;
    let loads = [&db1, &db2].map(|db| {
        WriteLoad::start(
            db,
            WriteLoadOptions {
                max_txns: 2000,
                max_duration: Duration::from_secs(60),
                ..Default::default()
            },
        )
    });
    let [l1, l2] = loads;
    let (l1, l2) = (l1?, l2?);
    for _ in 0..15 {
        samples += 1;
        sample(&servers)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let (victim, epoch) = both["db1"];
    servers[victim].as_mut().context("victim")?.kill9()?;
    servers[victim] = None;
    let killed = std::time::Instant::now();
    let after = wait_for("db1 held again", Duration::from_secs(30), || {
        samples += 1;
        let h = sample(&servers)?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(h.get("db1").filter(|(_, e)| *e > epoch).copied())
    })?;
    let (heir, _) = after;
    let heir_server = servers[heir].as_ref().context("heir")?;
    wait_streaming_owner(heir_server, &nodes[heir].id, "db1", Duration::from_secs(30))?;
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "{:?}",
        killed.elapsed()
    );
    for _ in 0..10 {
        samples += 1;
        sample(&servers)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    l1.stop()?;
    l2.stop()?;
    let owners = wait_for("both sources held", Duration::from_secs(30), || {
        let h = sample(&servers)?;
        Ok((h.len() == 2).then_some(h))
    })?;
    for (db, name) in [(&db1, "db1"), (&db2, "db2")] {
        db.flush_binary_logs()?;
        let (i, _) = owners[name];
        let server = servers[i].as_ref().context("owner")?;
        wait_caught_up(server, db, name, Duration::from_secs(90))?;
        wait_catalog_and_store_identical(pg, db, name, Duration::from_secs(90))
            .with_context(|| format!("{name} on node {i}:\n{}", server.log_tail(40)))?;
    }
    assert!(samples >= 30, "only {samples} samples");
    Ok(())
}

/// Two nodes over two sources of one primary under write load, 6 s leases. PostgreSQL
/// killed and back within about 2 s: both nodes keep their leases (same epochs) and
/// capture on. PostgreSQL stopped for longer than a lease: every node stops writing
/// before its leases can expire (`held_here` gone within the ttl, state `standby`),
/// answering the API alone meanwhile; once PostgreSQL is back both sources are held
/// again under new epochs. No source is held twice at any sample, and both archives end
/// identical to the primary's.
#[test]
fn catalog_outages_short_change_nothing_and_long_ones_stop_every_node_until_it_is_back(
) -> Result<()> {
    let mut svc = Services::start(&bin())?;
    let db = primary(1, 64 * 1024)?;
    let specs = [spec("db1", &db, 4501), spec("db2", &db, 4502)];
    let ttl = Duration::from_secs(6);
    let nodes: Vec<FleetNode> = ["node-a", "node-b"]
        .iter()
        .map(|id| svc.node(id, &specs, "6s"))
        .collect::<Result<_>>()?;
    let servers: Vec<ServerProcess> = nodes.iter().map(|n| n.start()).collect::<Result<_>>()?;
    let all: Vec<(usize, &ServerProcess)> = servers.iter().enumerate().collect();
    // Spread: once both nodes heartbeat, each holds its share, one source.
    let held = wait_for(
        "one source held by each node",
        Duration::from_secs(40),
        || {
            let h = holders(&all)?;
            let spread = h.len() == 2 && h["db1"].0 != h["db2"].0;
            Ok(spread.then_some(h))
        },
    )?;
    let writes = WriteLoad::start(
        &db,
        WriteLoadOptions {
            max_txns: 4000,
            max_duration: Duration::from_secs(90),
            ..Default::default()
        },
    )?;
    std::thread::sleep(Duration::from_secs(1));

    // A short outage: nothing changes hands.
    svc.pg.kill9()?;
    std::thread::sleep(Duration::from_millis(500));
    svc.pg.restart()?;
    for _ in 0..15 {
        assert_eq!(holders(&all)?, held, "a short catalog outage moved a lease");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A long one: every node stops before its leases can expire.
    svc.pg.stop()?;
    let stopped = std::time::Instant::now();
    // Each node stops by `ttl - ttl/5` after it sent its last renewal, which was before
    // the stop: within 4.8 s. A sample takes up to the API's catalog read timeout
    // (0.5 s) per node while the catalog is down, hence the second of slack; the exact
    // bound is asserted by leases::a_node_cut_off_from_postgres_stops_before_its_lease_expires.
    let slack = Duration::from_secs(1);
    wait_for("every node to stop writing", ttl + slack, || {
        let h = holders(&all)?;
        Ok(h.is_empty().then_some(()))
    })?;
    assert!(
        stopped.elapsed() < ttl + slack,
        "stopped after {:?}",
        stopped.elapsed()
    );
    wait_for("every source on standby", Duration::from_secs(10), || {
        for (_, s) in &all {
            for src in s.get_json("/v1/sources")?.as_array().context("sources")? {
                anyhow::ensure!(src["state"] == "standby", "{src}");
            }
        }
        Ok(Some(()))
    })?;
    std::thread::sleep(ttl);
    svc.pg.restart()?;
    // Back: the first node to heartbeat counts the other, heard from before the outage,
    // as alive for a lease time, so it takes only its share: no node ever holds both.
    let back = std::time::Instant::now();
    let again = loop {
        let h = holders(&all)?;
        if h.len() == 2 {
            assert_ne!(
                h["db1"].0, h["db2"].0,
                "one node took both sources after the outage"
            );
            break h;
        }
        anyhow::ensure!(
            back.elapsed() < Duration::from_secs(40),
            "not held again: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for (name, (_, epoch)) in &again {
        assert!(
            *epoch > held[name].1,
            "{name}: a new tenure after the outage"
        );
    }
    for _ in 0..10 {
        holders(&all)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    writes.stop()?;
    db.flush_binary_logs()?;
    let owners = wait_for("both sources held", Duration::from_secs(30), || {
        let h = holders(&all)?;
        Ok((h.len() == 2).then_some(h))
    })?;
    for name in ["db1", "db2"] {
        let server = &servers[owners[name].0];
        wait_caught_up(server, &db, name, Duration::from_secs(90))?;
        wait_catalog_and_store_identical(&svc.pg, &db, name, Duration::from_secs(90))
            .with_context(|| format!("{name}:\n{}", server.log_tail(40)))?;
    }
    Ok(())
}

/// Three nodes with the same schedule for one source (a logical base every 5 s): each
/// firing starts a base on the node holding the source's lease only. Every base in the
/// catalog was run by that node, and no two started in the same 5-second slot.
#[test]
fn a_scheduled_base_runs_once_across_three_nodes() -> Result<()> {
    let svc = Services::start(&bin())?;
    let db = primary(1, 1024 * 1024)?;
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (1)")?;
    let specs = [spec("db", &db, 4601)];
    let backup = format!(
        "\n[source.backup]\nurl = {}\nmethod = \"logical\"\nlogical_tool = \"mysqldump\"\n\
         full_schedule = \"*/5 * * * * *\"\nkeep_min = 100\n",
        toml_string(&db.admin_url())
    );
    let nodes: Vec<FleetNode> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| {
            let n = svc.node(id, &specs, "3s")?;
            n.append_config(&backup)?;
            Ok(n)
        })
        .collect::<Result<_>>()?;
    let servers: Vec<ServerProcess> = nodes.iter().map(|n| n.start()).collect::<Result<_>>()?;
    let all: Vec<(usize, &ServerProcess)> = servers.iter().enumerate().collect();
    let (owner, _) = wait_for("db held", Duration::from_secs(30), || {
        Ok(holders(&all)?.get("db").copied())
    })?;
    let bases = wait_for("three scheduled bases", Duration::from_secs(60), || {
        let rows = svc.pg.sql_in(
            "fleet",
            "SELECT id, node, started_at, state FROM base_backups WHERE source = 'db' \
             ORDER BY started_at",
        )?;
        let done = rows.lines().filter(|l| l.ends_with("|COMPLETED")).count();
        Ok((done >= 3).then_some(rows))
    })?;
    assert_eq!(holders(&all)?["db"].0, owner, "the lease stayed put");
    let mut slots = std::collections::BTreeSet::new();
    for line in bases.lines() {
        let v: Vec<&str> = line.split('|').collect();
        assert_eq!(v.get(1).copied(), Some(nodes[owner].id.as_str()), "{bases}");
        let started: i64 = v.get(2).context("started_at")?.parse()?;
        assert!(slots.insert(started / 5), "two bases in one slot:\n{bases}");
    }
    Ok(())
}

/// The fleet's node credential in the tests (the nodes inherit the environment).
const CREDENTIAL_ENV: &str = "BINLOG_TEST_NODE_CREDENTIAL";

/// A manual base asked of the node that does not hold the source's lease is forwarded
/// to the owner over TLS with the fleet's node credential and runs there; both nodes
/// log the caller. A forwarded call with a wrong credential, one to a node without the
/// lease, and one to a route no node forwards are refused.
#[test]
fn a_manual_base_asked_of_another_node_is_forwarded_to_the_owner() -> Result<()> {
    let svc = Services::start(&bin())?;
    let db = primary(1, 256 * 1024)?;
    db.sql("CREATE TABLE test.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))")?;
    let specs = [spec("db", &db, 4811)];
    let backup = "method = \"logical\"\nlogical_tool = \"mysqldump\"\n";
    let mut nodes = nodes_with_bases(&svc, &db, &specs, backup, "")?;
    let certs = tempfile::tempdir()?;
    let (cert, key) = tls_self_signed(&bin(), certs.path())?;
    std::env::set_var(CREDENTIAL_ENV, "fleet-test-credential-0123456789abcdef");
    for n in &mut nodes {
        n.secure(&cert, &key, CREDENTIAL_ENV)?;
    }
    let pa = nodes[0].start()?;
    wait_streaming_owner(&pa, "node-a", "db", Duration::from_secs(30))?;
    let pb = nodes[1].start()?;
    let b = pb.get_json("/v1/sources/db")?;
    assert_eq!(b["state"], "standby", "{b}");
    writes(&db, 20, "before-base")?;

    let (code, r) = pb.post_json("/v1/sources/db/backups", &serde_json::json!({}))?;
    assert_eq!(code, 202, "the base asked of node-b: {r:#}");
    let id = r["job_id"].as_str().context("job_id")?.to_string();
    // The job is node-a's: its API follows it.
    let job = wait_for("the forwarded base", Duration::from_secs(300), || {
        let j = pa.get_json(&format!("/v1/jobs/{id}"))?;
        Ok((j["state"] != "running").then_some(j))
    })?;
    assert_eq!(job["state"], "completed", "{job:#}");
    let ran = svc.pg.sql_in("fleet", "SELECT node FROM base_backups")?;
    assert_eq!(ran.trim(), "node-a", "the base ran on the owner only");
    let on_a = grep_file(pa.log_path(), "call forwarded by another node")?;
    assert!(
        on_a.iter()
            .any(|l| l.contains("node-b") && l.contains("local")),
        "node-a logs the forwarding node and the caller: {on_a:?}"
    );
    let on_b = grep_file(
        pb.log_path(),
        "forwarding the call to the source's lease owner",
    )?;
    assert!(
        on_b.iter().any(|l| l.contains("node-a")),
        "node-b logs where it forwarded the call: {on_b:?}"
    );
    forwarded_calls_are_checked(&nodes, &cert)
}

/// The refusals of [`a_manual_base_asked_of_another_node_is_forwarded_to_the_owner`]:
/// `nodes[0]` owns `db`, `nodes[1]` does not.
fn forwarded_calls_are_checked(nodes: &[FleetNode], cert: &std::path::Path) -> Result<()> {
    let agent = agent_trusting(cert, Duration::from_secs(30))?;
    let good = std::env::var(CREDENTIAL_ENV)?;
    let call = |node: &FleetNode, path: &str, credential: &str| -> Result<u16> {
        let r = agent
            .post(&format!("https://{}{path}", node.http))
            .set("Content-Type", "application/json")
            .set("Authorization", &format!("Node {credential}"))
            .set("x-binlog-node", "node-x")
            .set("x-binlog-caller", "mallory")
            .set("x-binlog-caller-role", "admin")
            .send_string("{}");
        match r {
            Ok(resp) => Ok(resp.status()),
            Err(ureq::Error::Status(code, _)) => Ok(code),
            Err(e) => Err(e.into()),
        }
    };
    let backups = "/v1/sources/db/backups/retention";
    assert_eq!(
        call(&nodes[0], backups, "wrong")?,
        401,
        "a wrong credential"
    );
    assert_eq!(
        call(&nodes[1], backups, &good)?,
        409,
        "a forwarded call to a node without the lease is not forwarded again"
    );
    assert_eq!(
        call(&nodes[0], "/v1/sources/db/pitr", &good)?,
        403,
        "a node credential reaches only the owner-job routes"
    );
    assert_eq!(
        call(&nodes[0], backups, &good)?,
        200,
        "the owner runs a forwarded retention"
    );
    Ok(())
}

/// `n` small transactions into `test.t`, tagged.
fn writes(db: &MariaDb, n: usize, tag: &str) -> Result<()> {
    let sql: String = (0..n)
        .map(|i| format!("INSERT INTO test.t (v) VALUES ('{tag}-{i}');"))
        .collect();
    db.sql(&sql).map(|_| ())
}

/// One node is restarted (SIGKILL, then started again) while the other runs a base, a
/// PITR and a restore verification of the source it owns: all three finish, and the
/// restarted node's start-up marks none of them interrupted.
#[test]
fn a_node_restarted_while_another_runs_a_base_a_pitr_and_a_verification_stops_none() -> Result<()> {
    let svc = Services::start(&bin())?;
    let db = primary(1, 64 * 1024)?;
    db.sql("CREATE TABLE test.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))")?;
    let specs = [spec("db", &db, 4901)];
    let verify =
        "\n[source.verify]\nday = \"sun\"\nstart = \"03:00\"\nstop_at = \"07:30\"\nchain_timeout = \"5m\"\n";
    let nodes = nodes_with_bases(&svc, &db, &specs, "method = \"physical\"\n", verify)?;
    let pa = nodes[0].start()?;
    wait_streaming_owner(&pa, "node-a", "db", Duration::from_secs(30))?;
    writes(&db, 50, "before-base")?;
    take_base(&pa, "db")?;
    writes(&db, 200, "after-base")?;
    let (t, sums) = db.checkpoint()?;
    writes(&db, 5, "later")?;
    let mut pb = nodes[1].start()?;
    wait_for("node-b on standby", Duration::from_secs(30), || {
        let s = pb.get_json("/v1/sources/db")?;
        Ok((s["state"] == "standby").then_some(()))
    })?;

    // The three jobs start on node-a; node-b is killed and started again meanwhile.
    let (code, base) = pa.post_json("/v1/sources/db/backups", &serde_json::json!({}))?;
    anyhow::ensure!(code == 202, "POST backups: {code} {base:#}");
    let base_job = base["job_id"].as_str().context("job_id")?.to_string();
    let mut jobs = PitrJobs::new(&pa);
    let body = serde_json::json!({ "target_time": format!("@{t}"), "scratch": true });
    let (code, v) = pa.post_json("/v1/sources/db/pitr", &body)?;
    anyhow::ensure!(code == 202, "POST pitr: {code} {v:#}");
    let pitr = v["id"].as_str().context("pitr id")?.to_string();
    jobs.add(&pitr);
    let (code, v) = pa.post_json("/v1/sources/db/verifications", &serde_json::json!({}))?;
    anyhow::ensure!(code == 202, "POST verifications: {code} {v:#}");
    let run = v["id"].as_str().context("verification id")?.to_string();
    pb.kill9()?;
    let pb2 = nodes[1].start()?;
    wait_for("node-b up again", Duration::from_secs(30), || {
        let s = pb2.get_json("/v1/sources/db")?;
        Ok((s["state"] == "standby").then_some(()))
    })?;

    // node-b was back while node-a's work still ran (else this proves nothing).
    let running = [
        pa.get_json(&format!("/v1/jobs/{base_job}"))?["state"] == "running",
        !matches!(
            pa.get_json(&format!("/v1/pitr/{pitr}"))?["phase"].as_str(),
            Some("done" | "failed")
        ),
        pa.get_json(&format!("/v1/verifications/{run}"))?["outcome"] == "running",
    ];
    eprintln!("still running after node-b's restart (base, PITR, verification): {running:?}");
    assert!(
        running.iter().any(|r| *r),
        "everything had finished already"
    );
    let j = wait_for("the base", Duration::from_secs(300), || {
        let j = pa.get_json(&format!("/v1/jobs/{base_job}"))?;
        Ok((j["state"] != "running").then_some(j))
    })?;
    assert_eq!(j["state"], "completed", "{j:#}");
    let j = wait_for("the PITR", Duration::from_secs(300), || {
        let j = pa.get_json(&format!("/v1/pitr/{pitr}"))?;
        let p = j["phase"].as_str().unwrap_or_default().to_string();
        Ok((p == "done" || p == "failed").then_some(j))
    })?;
    assert_eq!(j["phase"], "done", "{j:#}");
    let socket = j["restored"]["socket"].as_str().context("socket")?;
    assert_eq!(checksums_socket(socket)?, sums, "{j:#}");
    let (code, v) = jobs.delete(&pitr)?;
    assert_eq!(code, 200, "{v:#}");
    let r = wait_for("the verification", Duration::from_secs(600), || {
        let r = pa.get_json(&format!("/v1/verifications/{run}"))?;
        Ok((r["outcome"] != "running").then_some(r))
    })?;
    assert_eq!(r["outcome"], "passed", "{r:#}");
    // The catalog agrees: nothing of node-a's was swept by node-b's start.
    let rows = svc.pg.sql_in(
        "fleet",
        "SELECT state FROM base_backups WHERE source = 'db' ORDER BY started_at",
    )?;
    assert!(
        rows.lines().all(|l| l.trim() == "COMPLETED"),
        "bases: {rows}"
    );
    drop(pb);
    Ok(())
}

/// `line` without its terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A PITR asked of a node that never captured the source runs on that node from the
/// store: the closed files read back whole, the active file from its shipped chunks,
/// planned with an index the node built from them. A target in a closed file and one
/// inside the active file each give the checkpoint's table checksums, and the node
/// still holds no lease and no binlog of its own.
#[test]
fn a_node_that_never_captured_a_source_restores_it_from_the_store() -> Result<()> {
    let svc = Services::start(&bin())?;
    let db = primary(1, 32 * 1024)?;
    db.sql("CREATE TABLE test.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))")?;
    let specs = [spec("db", &db, 4801)];
    let backup = "method = \"logical\"\nlogical_tool = \"mysqldump\"\n";
    let nodes = nodes_with_bases(&svc, &db, &specs, backup, "")?;
    // node-b serves the source to real replicas too (its fake primary).
    let fake_port = free_port();
    nodes[1].append_config(&format!(
        "\n[source.replication]\nlisten = \"127.0.0.1:{fake_port}\"\nuser = {}\npassword = {}\n",
        toml_string(REPL_USER),
        toml_string(REPL_PASSWORD)
    ))?;
    let pa = nodes[0].start()?;
    wait_streaming_owner(&pa, "node-a", "db", Duration::from_secs(30))?;
    writes(&db, 50, "before-base")?;
    let base = take_base(&pa, "db")?;
    writes(&db, 300, "closed")?;
    let (t_closed, sums_closed) = db.checkpoint()?;
    writes(&db, 300, "later")?;
    // The second target lies in the file the primary writes now, never closed here.
    db.flush_binary_logs()?;
    writes(&db, 20, "active")?;
    let (t_active, sums_active) = db.checkpoint()?;
    writes(&db, 3, "after")?;
    let (active, _) = db.binlog_files()?.pop().context("binlogs")?;

    let pb = nodes[1].start()?;
    let b = pb.get_json("/v1/sources/db")?;
    assert_eq!(b["state"], "standby", "{b}");
    // Once node-a has shipped the active file's tail, node-b plans inside it.
    let plan = wait_for(
        "node-b to plan inside the active file",
        Duration::from_secs(60),
        || {
            let (code, p) = pb.post_json(
                "/v1/sources/db/pitr/plan",
                &serde_json::json!({ "target_time": format!("@{t_active}") }),
            )?;
            anyhow::ensure!(code == 200, "plan: {code} {p:#}");
            Ok(Some(p))
        },
    )?;
    assert_eq!(plan["stop"]["file"], active, "{plan:#}");
    assert_eq!(plan["base"]["id"], base, "{plan:#}");
    let files = plan["files"].as_array().context("files")?;
    assert!(
        files.len() >= 3,
        "a range over closed files and the active one: {plan:#}"
    );
    let state = svc.pg.sql_in(
        "fleet",
        &format!("SELECT state FROM binlog_files WHERE source = 'db' AND name = '{active}'"),
    )?;
    assert_eq!(state.trim(), "ACTIVE", "the stop file is not closed yet");

    let (got, j) = restore_at(&pb, "db", t_active)?;
    assert_eq!(got, sums_active, "inside the active file: {j:#}");
    let (got, j) = restore_at(&pb, "db", t_closed)?;
    assert_eq!(got, sums_closed, "in a closed file: {j:#}");

    blocking_dump_stops_at_the_view_end(&svc, &db, &pb, fake_port, &active, t_active)?;

    // A client of node-b's fake primary reads the same from the store: the closed files
    // byte for byte, the active file up to what node-a has shipped.
    let primary_files = db.binlog_files()?;
    let out = tempfile::tempdir()?;
    let first = &primary_files.first().context("binlogs")?.0;
    mariadb_binlog_raw(fake_port, first, out.path(), &[], Duration::from_secs(60))?;
    let (last, closed) = primary_files.split_last().context("binlogs")?;
    for (name, _) in closed {
        let got =
            std::fs::read(out.path().join(name)).with_context(|| format!("{name} from node-b"))?;
        assert!(
            got == std::fs::read(db.binlog_path(name))?,
            "{name} differs"
        );
    }
    assert_active_prefix(&db, out.path(), &last.0)?;

    let a = pa.get_json("/v1/sources/db")?;
    assert_eq!(a["lease"]["owner"], "node-a", "{a}");
    assert_eq!(a["state"], "streaming", "{a}");
    assert_eq!(pb.get_json("/v1/sources/db")?["state"], "standby");
    let own: Vec<String> = std::fs::read_dir(nodes[1].source_dir("db"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("-bin."))
                .collect()
        })
        .unwrap_or_default();
    assert!(own.is_empty(), "node-b captured nothing itself: {own:?}");
    // One tail copy: of the file after the store's whole ones (`active` was closed and
    // shipped whole meanwhile).
    let copies: Vec<String> = std::fs::read_dir(nodes[1].dir.path().join("data/.store-view/db"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        copies.len() == 1 && binlog::binlog_order(&copies[0]) > binlog::binlog_order(&active),
        "tail copies {copies:?} (the primary's active file was {active} before it rotated)"
    );
    let followed = grep_file(pb.log_path(), "followed the archive from the store")?;
    assert!(!followed.is_empty(), "{}", pb.log_tail(40));
    // The closed files were indexed from the segments node-a shipped beside them, not
    // read back whole.
    let plain: Vec<String> = followed.iter().map(|l| strip_ansi(l)).collect();
    let from_segments = plain
        .iter()
        .filter_map(|l| l.split("from_segments=").nth(1))
        .filter_map(|v| {
            v.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(from_segments >= 2, "{plain:#?}");
    Ok(())
}

/// A blocking dump (`mariadb-binlog --raw --stop-never`) of node-b's fake primary, which
/// logged in while `active` was the primary's newest file, serves the store's view as of
/// its login and waits at its end, even after the primary rotates, node-a ships `active`
/// whole and a refresh on node-b replaces its tail copy: it never takes the tail copy
/// for a closed file, so it never skips the bytes past it.
fn blocking_dump_stops_at_the_view_end(
    svc: &Services,
    db: &MariaDb,
    pb: &ServerProcess,
    fake_port: u16,
    active: &str,
    t_active: u64,
) -> Result<()> {
    let out = tempfile::tempdir()?;
    let first = db.binlog_files()?.first().context("binlogs")?.0.clone();
    let mut child = spawn_mariadb_binlog_follow(fake_port, &first, out.path())?;
    let tail = out.path().join(active);
    wait_for(
        "the blocking dump to reach the active file",
        Duration::from_secs(30),
        || Ok((std::fs::metadata(&tail).map(|m| m.len()).unwrap_or(0) > 4).then_some(())),
    )?;
    db.flush_binary_logs()?;
    writes(db, 20, "past-the-view")?;
    wait_for(
        &format!("node-a to ship {active} whole"),
        Duration::from_secs(60),
        || {
            let n = svc.pg.sql_in(
                "fleet",
                &format!(
                "SELECT count(*) FROM archive_objects WHERE source = 'db' AND file = '{active}' \
                 AND kind = 'file' AND deleted_at IS NULL"
            ),
            )?;
            Ok((n.trim() != "0").then_some(()))
        },
    )?;
    // A plan on node-b refreshes its view: the tail copy of `active` goes, the next
    // file's comes.
    let (code, p) = pb.post_json(
        "/v1/sources/db/pitr/plan",
        &serde_json::json!({ "target_time": format!("@{t_active}") }),
    )?;
    anyhow::ensure!(code == 200, "plan: {code} {p:#}");
    std::thread::sleep(Duration::from_secs(2));
    child.0.kill()?;
    child.0.wait()?;
    let mut got: Vec<String> = std::fs::read_dir(out.path())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    got.sort_by_key(|n| binlog::binlog_order(n));
    let (newest, closed) = got.split_last().context("the dump wrote nothing")?;
    assert_eq!(newest, active, "the dump went past its view's end: {got:?}");
    for name in closed {
        assert!(
            std::fs::read(out.path().join(name))? == std::fs::read(db.binlog_path(name))?,
            "{name} differs"
        );
    }
    assert_active_prefix(db, out.path(), active)
}

mod leases {
    //! The lease keeper of `binlog_server::fleet::lease`, several nodes on one real
    //! PostgreSQL catalog, with short leases so that the scenarios take seconds.

    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use anyhow::{bail, Context, Result};
    use binlog_server::fleet::lease::{
        EndReason, LeaseEvent, LeaseHandle, LeaseKeeper, LeaseOptions,
    };
    use binlog_tests::Postgres;
    use catalog::Catalog;
    use tokio::sync::mpsc::UnboundedReceiver;
    use tokio_util::sync::CancellationToken;

    const TTL: Duration = Duration::from_millis(1500);

    fn sources(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    struct Node {
        handle: LeaseHandle,
        events: UnboundedReceiver<LeaseEvent>,
        task: tokio::task::JoinHandle<()>,
        cancel: CancellationToken,
    }

    async fn node(url: &str, id: &str, srcs: &[String], ttl: Duration) -> Result<Node> {
        // A pool of its own, as a separate process would have.
        let cat = Arc::new(Catalog::open(url).await?);
        let cancel = CancellationToken::new();
        let opts = LeaseOptions::new(id, format!("https://{id}.test:7480"), ttl);
        let (handle, events, task) = LeaseKeeper::spawn(cat, srcs.to_vec(), opts, cancel.clone());
        Ok(Node {
            handle,
            events,
            task,
            cancel,
        })
    }

    fn database(pg: &Postgres, name: &str) -> Result<String> {
        pg.sql(&format!("CREATE DATABASE {name}"))?;
        Ok(pg.url_for(name))
    }

    /// Who may write for each source, from every node's own view; fails if two nodes
    /// think they own one source at the same moment.
    fn owners(nodes: &[&Node]) -> Result<BTreeMap<String, (usize, i64)>> {
        let mut owners = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for (source, epoch) in n.handle.held() {
                if let Some((j, e)) = owners.insert(source.clone(), (i, epoch)) {
                    bail!("{source} is owned by node {j} (epoch {e}) and node {i} (epoch {epoch}) at once");
                }
            }
        }
        Ok(owners)
    }

    /// Samples `owners` every 50 ms until `done` holds for the owners (or `timeout`).
    async fn until(
        nodes: &[&Node],
        timeout: Duration,
        what: &str,
        done: impl Fn(&BTreeMap<String, (usize, i64)>) -> bool,
    ) -> Result<BTreeMap<String, (usize, i64)>> {
        let t0 = Instant::now();
        loop {
            let o = owners(nodes)?;
            if done(&o) {
                return Ok(o);
            }
            if t0.elapsed() > timeout {
                bail!("{what}: not within {timeout:?}; owners {o:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Three nodes share seven sources, at most ceil(7/3) = 3 each, never two owners of
    /// one source; a node that dies (its task aborted, nothing released) has its sources
    /// taken over by the two others under new epochs within a lease time and two rounds;
    /// a drained node hands over all it holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_share_the_sources_and_take_over_a_dead_one() -> Result<()> {
        let pg = Postgres::start()?;
        let url = database(&pg, "keepers")?;
        let srcs = sources(7);
        let a = node(&url, "node-a", &srcs, TTL).await?;
        let b = node(&url, "node-b", &srcs, TTL).await?;
        let c = node(&url, "node-c", &srcs, TTL).await?;
        let all = [&a, &b, &c];
        let spread = until(&all, Duration::from_secs(10), "spread", |o| {
            o.len() == 7 && (0..3).all(|i| o.values().filter(|(n, _)| *n == i).count() <= 3)
        })
        .await?;
        // Steady state: sampled for three lease times, nothing moves.
        let t0 = Instant::now();
        while t0.elapsed() < TTL * 3 {
            assert_eq!(owners(&all)?, spread);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // node-c dies: no release. Its tenures stop by their own deadline, and the
        // others take them once the leases expire.
        let c_sources: Vec<String> = c.handle.held().into_keys().collect();
        assert!(!c_sources.is_empty(), "{spread:?}");
        c.task.abort();
        let died = Instant::now();
        let after = until(&all, TTL * 4, "takeover", |o| {
            o.len() == 7 && o.values().all(|(n, _)| *n != 2)
        })
        .await?;
        let took = died.elapsed();
        eprintln!(
            "takeover of {c_sources:?} by the two other nodes took {took:?} (lease ttl {TTL:?})"
        );
        // The leases expire within a ttl of the death, the others count one node less
        // within a ttl, and their next round (a third of it) takes them: about a ttl
        // and a round, with a second of slack for a loaded machine.
        assert!(
            took < TTL + TTL / 3 + Duration::from_secs(1),
            "takeover took {took:?}"
        );
        for s in &c_sources {
            let (_, epoch) = after[s];
            assert_eq!(epoch, spread[s].1 + 1, "{s}: a new epoch for the new owner");
        }
        assert!((0..2).all(|i| after.values().filter(|(n, _)| *n == i).count() <= 4));

        // What `binlog-server fleet status` shows of it.
        let out = fleet_cli(&url, &["status"])?;
        for id in ["node-a", "node-b", "node-c"] {
            assert!(
                out.contains(&format!("{id}\thttps://{id}.test:7480\t")),
                "{out}"
            );
        }
        for s in &c_sources {
            let (owner, epoch) = after[s];
            let line = format!("{s}\tnode-{}\t{epoch}\t", ["a", "b"][owner]);
            assert!(out.contains(&line), "{line:?} in {out}");
        }

        // node-a drained (`binlog-server fleet drain`): node-b ends up with all seven
        // (the only live, undrained node).
        let out = fleet_cli(&url, &["drain", "--node", "node-a"])?;
        assert!(out.contains("draining"), "{out}");
        let refused = fleet_cli(&url, &["drain", "--node", "node-z"]);
        assert!(refused.is_err(), "an unknown node is refused");
        let admin = Catalog::open(&url).await?;
        until(&all, TTL * 4, "drain", |o| {
            o.len() == 7 && o.values().all(|(n, _)| *n == 1)
        })
        .await?;
        for n in [&a, &b] {
            n.cancel.cancel();
        }
        // A clean stop releases: no live lease is left.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (now, leases) = admin.list_leases().await?;
        assert!(leases.iter().all(|l| !l.is_live(now)), "{leases:?}");
        Ok(())
    }

    /// Runs `binlog-server fleet <args> --config F` on a config whose catalog is `url`;
    /// its stdout, or an error with its stderr when it exits non-zero.
    fn fleet_cli(url: &str, args: &[&str]) -> Result<String> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = {}\n[catalog]\nurl = {}\n[[source]]\nname = \"s0\"\n\
                 url = \"mysql://repl:x@127.0.0.1:1\"\nserver_id = 77\narchive_only = true\n",
                binlog_tests::toml_string(&dir.path().join("data").display().to_string()),
                binlog_tests::toml_string(url),
            ),
        )?;
        let out = std::process::Command::new(super::bin())
            .arg("fleet")
            .args(&args[..1])
            .arg("--config")
            .arg(&cfg)
            .args(&args[1..])
            .output()
            .context("run binlog-server fleet")?;
        if !out.status.success() {
            bail!(
                "binlog-server fleet {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wall_ms() -> i64 {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }

    /// Waits for the next event of `n`, at most `timeout`.
    async fn next_event(n: &mut Node, timeout: Duration) -> Result<LeaseEvent> {
        tokio::time::timeout(timeout, n.events.recv())
            .await
            .context("no lease event in time")?
            .context("the keeper ended")
    }

    /// PostgreSQL down for less than the lease time: the node keeps its tenure (same
    /// epoch, token never cancelled). Down for longer: the node stops writing before
    /// the lease expires by PostgreSQL's own record, and takes the source again, under
    /// a new epoch, when PostgreSQL is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_cut_off_from_postgres_stops_before_its_lease_expires() -> Result<()> {
        let ttl = Duration::from_secs(3);
        let mut pg = Postgres::start()?;
        let url = database(&pg, "outage")?;
        let srcs = sources(1);
        let mut n = node(&url, "node-a", &srcs, ttl).await?;
        let LeaseEvent::Acquired(first) = next_event(&mut n, ttl * 2).await? else {
            bail!("expected an acquisition first");
        };
        assert_eq!(first.epoch, 1);

        // A short outage (well under the ttl minus its margin).
        tokio::time::sleep(ttl / 3).await;
        pg.stop()?;
        tokio::time::sleep(Duration::from_millis(700)).await;
        pg.restart()?;
        tokio::time::sleep(ttl * 2).await;
        assert!(
            !first.token.is_cancelled(),
            "a short outage must not stop the source"
        );
        assert_eq!(n.handle.held().get("s0"), Some(&1));
        assert!(first.may_write());

        // A long outage: stopped by the node's own clock.
        pg.stop()?;
        first.token.cancelled().await;
        let stopped_at = wall_ms();
        assert!(!first.may_write());
        tokio::time::sleep(ttl).await;
        pg.restart()?;
        let admin = Catalog::open(&url).await?;
        let (_, leases) = admin.list_leases().await?;
        let row = leases
            .iter()
            .find(|l| l.source == "s0")
            .context("lease row")?;
        // PostgreSQL's expiry of epoch 1 is its last renewal plus the ttl (the node may
        // have released it, or taken it again, since PostgreSQL came back).
        let last_renewal = if row.epoch == 1 {
            row.renewed_ms
        } else {
            row.previous_renewed_ms
                .context("the previous tenure's last renewal")?
        };
        let expired_at = last_renewal + i64::try_from(ttl.as_millis())?;
        assert!(
            stopped_at < expired_at,
            "stopped at {stopped_at} ms, but the lease expired at {expired_at} ms"
        );
        match next_event(&mut n, ttl * 2).await? {
            LeaseEvent::Ended { epoch: 1, why, .. } => assert_eq!(why, EndReason::Expired),
            other => bail!("expected the end of epoch 1, got {other:?}"),
        }
        match next_event(&mut n, ttl * 3).await? {
            LeaseEvent::Acquired(t) => assert_eq!((t.source.as_str(), t.epoch), ("s0", 2)),
            other => bail!("expected a new tenure, got {other:?}"),
        }
        n.cancel.cancel();
        Ok(())
    }

    /// A node that gives a tenure up (it cannot capture the source) releases the lease
    /// at once; the other node takes it under the next epoch, and the first one does not
    /// take it back during its cool-down, even when the other node dies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_given_up_lease_goes_to_another_node_and_cools_down() -> Result<()> {
        let pg = Postgres::start()?;
        let url = database(&pg, "give_up")?;
        let srcs = sources(1);
        let mut a = node(&url, "node-a", &srcs, TTL).await?;
        let first = match next_event(&mut a, TTL * 4).await? {
            LeaseEvent::Acquired(t) => t,
            other => bail!("expected an acquisition, got {other:?}"),
        };
        let b = node(&url, "node-b", &srcs, TTL).await?;
        let t0 = Instant::now();
        a.handle.give_up("s0", first.epoch);
        let o = until(&[&a, &b], TTL * 3, "node-b takes s0", |o| {
            o.get("s0").is_some_and(|(n, _)| *n == 1)
        })
        .await?;
        // Released at once: no waiting for the expiry.
        assert!(t0.elapsed() < TTL, "took {:?}", t0.elapsed());
        assert_eq!(o["s0"].1, first.epoch + 1);
        assert!(first.token.is_cancelled());
        // node-b dies without releasing; within the cool-down node-a does not take s0.
        b.task.abort();
        let cooled = TTL * binlog_server::fleet::lease::GIVE_UP_COOLDOWN_TTLS;
        while t0.elapsed() < cooled - TTL / 4 {
            assert!(
                a.handle.held().is_empty(),
                "node-a took s0 back within its cool-down"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // After it, node-a takes s0 again.
        until(&[&a], TTL * 4, "node-a takes s0 back", |o| {
            o.contains_key("s0")
        })
        .await?;
        a.cancel.cancel();
        Ok(())
    }
}
