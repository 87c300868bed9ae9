//! End-to-end PITR tests against a real MariaDB primary, `binlog-server serve` as a
//! child process, and real mariadbd replicas replaying from binlog-server's fake primary.
//!
//! # How the data is checked (why it is sound)
//!
//! Writes run in the foreground in batches. After a batch the test records a
//! checkpoint: a marker row, then `CHECKSUM TABLE` of every table and the GTID position,
//! with no write running. The target time of a checkpoint is the current second T; the
//! test then waits until the clock is past T before writing again, so every transaction
//! committed at or before T is in the checkpoint and none after it. A PITR to T (or to
//! the checkpoint's GTID) must give exactly the checkpoint's checksums.
//!
//! # One archive, many scenarios
//!
//! The physical-base scenarios share one [`Fixture`] (a [`Sandbox`] with the writes, the
//! base and the checkpoints above), set up once per test binary by the first scenario
//! that runs and stopped at exit ([`SharedFixture`]); they hold it one at a time, so
//! `cargo test --test pitr SCENARIO` runs any one of them alone. None depends on what
//! another did: each deletes the PITR jobs it started, also when it fails
//! ([`PitrJobs`]); the one that damages the archive
//! (`a_fail_file_in_the_range_refuses_the_plan`) damages a file after every checkpoint,
//! which no other scenario's range reaches; the one observation made before the base
//! existed is recorded by the set-up and asserted by its own scenario.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test pitr`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use binlog_tests::*;
use serde_json::{json, Value};

fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sleeps until the wall clock's second is past `t`.
fn wait_past(t: u64) {
    while now() <= t {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `t` as "YYYY-MM-DDTHH:MM:SSZ" (the service's own formatter).
fn iso(t: u64) -> String {
    replay::pitr::fmt_time(i64::try_from(t).unwrap_or(i64::MAX))
}

struct Checkpoint {
    name: &'static str,
    time: u64,
    gtid: String,
    sums: BTreeMap<String, String>,
}

fn checkpoint(db: &MariaDb, name: &'static str) -> Result<Checkpoint> {
    db.sql(&format!("INSERT INTO test.marker (name) VALUES ('{name}')"))?;
    let time = now();
    let cp = Checkpoint {
        name,
        time,
        gtid: db.gtid_binlog_pos()?,
        sums: db.table_checksums(&["test"])?,
    };
    wait_past(time);
    Ok(cp)
}

/// `n` small transactions as one client batch.
fn burst(db: &MariaDb, n: usize, tag: &str) -> Result<()> {
    let mut sql = String::new();
    for i in 0..n {
        sql.push_str(&format!(
            "BEGIN; INSERT INTO test.t1 (v) VALUES ('{tag}-{i}'); UPDATE test.t2 SET n = n + 1 WHERE id = {}; COMMIT;\n",
            i % 10
        ));
    }
    db.sql(&sql).map(|_| ())
}

fn wait_job(server: &ServerProcess, id: &str) -> Result<Value> {
    wait_for(&format!("PITR job {id}"), Duration::from_secs(600), || {
        let j = server.get_json(&format!("/v1/pitr/{id}"))?;
        let p = j["phase"].as_str().unwrap_or_default().to_string();
        Ok((p == "done" || p == "failed").then_some(j))
    })
}

/// Starts a PITR job of db1 (202 expected); `jobs` deletes it at the latest when it drops.
fn start_job(jobs: &mut PitrJobs, body: Value) -> Result<String> {
    let (code, v) = jobs.server().post_json("/v1/sources/db1/pitr", &body)?;
    if code != 202 {
        bail!("POST pitr {body}: {code} {v:#}");
    }
    let id = v["id"].as_str().context("job id")?.to_string();
    jobs.add(&id);
    Ok(id)
}

/// Checks a finished job against its checkpoint, then removes the instance.
fn verify_job(jobs: &mut PitrJobs, id: &str, cp: &Checkpoint) -> Result<()> {
    let server = jobs.server();
    let j = wait_job(server, id)?;
    assert_eq!(j["phase"], "done", "checkpoint {}: {j:#}", cp.name);
    let socket = j["restored"]["socket"]
        .as_str()
        .context("socket")?
        .to_string();
    let got = checksums_socket(&socket)?;
    assert_eq!(
        got, cp.sums,
        "checkpoint {} restored by job {id}: {j:#}",
        cp.name
    );
    let planned = j["plan"]["transactions"].as_u64().unwrap_or(0);
    eprintln!(
        "checkpoint {}: job {id} applied {planned} transactions ({} bytes) from base {} in {:.1} s restore + {:.1} s replay; gtid_slave_pos {}",
        cp.name,
        j["plan"]["bytes"],
        j["plan"]["base"]["id"],
        j["restore_seconds"].as_f64().unwrap_or(0.0),
        j["replay_seconds"].as_f64().unwrap_or(0.0),
        j["restored"]["gtid_slave_pos"]
    );
    assert_eq!(
        j["progress"]["transactions_applied"].as_u64(),
        Some(planned),
        "{j:#}"
    );
    assert!(j["restored"]["address"]
        .as_str()
        .unwrap_or_default()
        .starts_with("127.0.0.1:"));
    // The restored instance takes normal logins on its port now (not the socket only).
    let pid = j["restored"]["pid"].as_u64().context("pid")?;
    let (code, v) = jobs.delete(id)?;
    assert_eq!(code, 200, "{v:#}");
    wait_for(
        &format!("the restored mariadbd (pid {pid}) to be gone"),
        Duration::from_secs(60),
        || Ok((!Path::new(&format!("/proc/{pid}")).exists()).then_some(())),
    )?;
    Ok(())
}

/// Names of the entries of `dir` (none when it does not exist).
fn dir_entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The archive the physical-base scenarios share: a primary with tables t1, t2 and
/// marker, a binlog-server capturing it as db1 with a physical base, and the checkpoints
/// written after the base.
struct Fixture {
    sb: Sandbox,
    /// The physical base's id.
    base_id: String,
    /// `POST /v1/sources/db1/pitr/plan` to a time before any base existed: status, body.
    plan_before_base: (u16, Value),
    /// right-after-base, busy-second, after-rotation, after-ddl.
    cps: Vec<Checkpoint>,
    /// The checkpoint restored by GTID.
    gtid_cp: Checkpoint,
    /// A closed binlog holding only transactions after every checkpoint (the FAIL
    /// scenario damages it) and the primary's newest binlog after it.
    fail_victim: String,
    newest: String,
}

static FIXTURE: SharedFixture<Fixture> = SharedFixture::new();

/// The shared fixture, set up by the first scenario that asks, held until the guard drops.
fn fixture() -> Result<FixtureGuard<Fixture>> {
    FIXTURE.lock(Fixture::start)
}

impl Fixture {
    fn start() -> Result<Fixture> {
        let sb = Sandbox::builder(server_bin())
            .pitr_parallel_threads(4)
            .local_base_store()
            .source_backup(SourceBackup::physical())
            .setup(|primary| {
                primary.sql(
                    "CREATE TABLE test.t1 (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)); \
                     CREATE TABLE test.t2 (id INT PRIMARY KEY, n INT); \
                     CREATE TABLE test.marker (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(32));",
                )?;
                let mut seed = String::new();
                for i in 0..10 {
                    seed.push_str(&format!("INSERT INTO test.t2 VALUES ({i}, 0);"));
                }
                primary.sql(&seed)?;
                burst(primary, 200, "pre")
            })
            .start()?;
        let primary = sb.primary();
        let server = sb.server();

        // Before any base: a plan to a time already archived, asked for now and asserted
        // by plan_before_any_base_is_refused.
        let t_before = now();
        wait_past(t_before);
        burst(primary, 1, "after-t-before")?;
        sb.wait_caught_up()?;
        let plan_before_base = server.post_json(
            "/v1/sources/db1/pitr/plan",
            &json!({"target_time": iso(t_before)}),
        )?;

        // The base.
        let base = sb.take_base("db1")?;
        wait_past(now());

        // Checkpoints.
        let mut cps = Vec::new();
        burst(primary, 5, "after-base")?;
        cps.push(checkpoint(primary, "right-after-base")?);
        burst(primary, 400, "busy")?; // hundreds of transactions within a second or two
        cps.push(checkpoint(primary, "busy-second")?);
        primary.flush_binary_logs()?;
        burst(primary, 50, "rotated")?;
        cps.push(checkpoint(primary, "after-rotation")?);
        primary.sql("ALTER TABLE test.t1 ADD COLUMN extra INT DEFAULT 7; CREATE TABLE test.t3 (id INT PRIMARY KEY)")?;
        primary.sql("INSERT INTO test.t3 VALUES (1),(2),(3)")?;
        cps.push(checkpoint(primary, "after-ddl")?);
        burst(primary, 100, "gtid")?;
        let gtid_cp = checkpoint(primary, "gtid")?;
        burst(primary, 100, "later")?;
        primary.flush_binary_logs()?;
        burst(primary, 20, "latest")?;
        // One more file, so that the one holding "latest" is closed: the FAIL scenario
        // damages that one, past every checkpoint's range.
        primary.flush_binary_logs()?;
        burst(primary, 5, "tail")?;
        sb.wait_caught_up()?;
        let files = primary.binlog_files()?;
        let fail_victim = files
            .iter()
            .rev()
            .nth(1)
            .map(|(n, _)| n.clone())
            .context("two binlogs")?;
        let newest = files.last().map(|(n, _)| n.clone()).context("binlogs")?;
        Ok(Fixture {
            base_id: base.id,
            plan_before_base,
            cps,
            gtid_cp,
            fail_victim,
            newest,
            sb,
        })
    }
}

#[test]
fn plan_before_any_base_is_refused() -> Result<()> {
    let fx = fixture()?;
    let (code, v) = &fx.plan_before_base;
    assert_eq!(*code, 422, "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no COMPLETED base"),
        "{v:#}"
    );
    Ok(())
}

/// A target in the future: no plan, and nothing started.
#[test]
fn target_in_the_future_is_refused_and_starts_nothing() -> Result<()> {
    let fx = fixture()?;
    let server = fx.sb.server();
    let pitr_dir = fx.sb.pitr_dir();
    let before = dir_entries(&pitr_dir);
    let (code, v) = server.post_json(
        "/v1/sources/db1/pitr",
        &json!({"target_time": iso(now() + 3600), "scratch": true}),
    )?;
    assert_eq!(code, 422, "{v:#}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("future"),
        "{v:#}"
    );
    let leftovers: Vec<String> = dir_entries(&pitr_dir)
        .difference(&before)
        .cloned()
        .collect();
    assert!(
        leftovers.is_empty(),
        "a refused PITR left files in {}: {leftovers:?}",
        pitr_dir.display()
    );
    Ok(())
}

/// A bad request: 400.
#[test]
fn unparsable_target_time_is_a_bad_request() -> Result<()> {
    let fx = fixture()?;
    let (code, _) = fx.sb.server().post_json(
        "/v1/sources/db1/pitr",
        &json!({"target_time": "yesterday", "scratch": true}),
    )?;
    assert_eq!(code, 400);
    Ok(())
}

/// The plan of the GTID checkpoint names the base and counts the transactions.
#[test]
fn plan_names_the_base_and_counts_the_transactions() -> Result<()> {
    let fx = fixture()?;
    let (code, plan) = fx.sb.server().post_json(
        "/v1/sources/db1/pitr/plan",
        &json!({"target_gtid": fx.gtid_cp.gtid}),
    )?;
    assert_eq!(code, 200, "{plan:#}");
    assert_eq!(plan["base"]["id"], fx.base_id.as_str(), "{plan:#}");
    assert_eq!(plan["end_gtid"], fx.gtid_cp.gtid.as_str(), "{plan:#}");
    assert!(plan["transactions"].as_u64().unwrap_or(0) > 500, "{plan:#}");
    Ok(())
}

/// Three replicas served at once.
#[test]
fn three_scratch_restores_to_times_at_once() -> Result<()> {
    let fx = fixture()?;
    let mut jobs = PitrJobs::new(fx.sb.server());
    let started: Vec<(String, usize)> = [1usize, 2, 3]
        .iter()
        .map(|&i| {
            Ok((
                start_job(
                    &mut jobs,
                    json!({"target_time": iso(fx.cps[i].time), "scratch": true}),
                )?,
                i,
            ))
        })
        .collect::<Result<_>>()?;
    for (id, i) in &started {
        verify_job(&mut jobs, id, &fx.cps[*i])?;
    }
    Ok(())
}

#[test]
fn scratch_restore_to_the_second_right_after_the_base() -> Result<()> {
    let fx = fixture()?;
    let mut jobs = PitrJobs::new(fx.sb.server());
    let id = start_job(
        &mut jobs,
        json!({"target_time": iso(fx.cps[0].time), "scratch": true}),
    )?;
    verify_job(&mut jobs, &id, &fx.cps[0])
}

#[test]
fn scratch_restore_to_a_gtid() -> Result<()> {
    let fx = fixture()?;
    let mut jobs = PitrJobs::new(fx.sb.server());
    let id = start_job(
        &mut jobs,
        json!({"target_gtid": fx.gtid_cp.gtid, "scratch": true}),
    )?;
    verify_job(&mut jobs, &id, &fx.gtid_cp)
}

/// An existing destination: an empty datadir the service restores the physical base
/// into and starts on the URL's port. A datadir that is not empty is refused (400).
#[test]
fn restore_into_an_empty_datadir_and_refuse_a_non_empty_one() -> Result<()> {
    let fx = fixture()?;
    let gtid_cp = &fx.gtid_cp;
    let mut jobs = PitrJobs::new(fx.sb.server());
    let port = free_port();
    let dest = fx.sb.dir().join("dest-datadir");
    let id = start_job(
        &mut jobs,
        json!({"target_gtid": gtid_cp.gtid, "url": format!("mysql://root@127.0.0.1:{port}"), "datadir": dest}),
    )?;
    let j = wait_job(jobs.server(), &id)?;
    assert_eq!(j["phase"], "done", "{j:#}");
    assert_eq!(
        j["restored"]["address"],
        format!("127.0.0.1:{port}"),
        "{j:#}"
    );
    assert!(dest.join("ibdata1").exists(), "{j:#}");
    verify_job(&mut jobs, &id, gtid_cp)?;
    assert!(
        dest.join("ibdata1").exists(),
        "DELETE removed the caller's datadir"
    );
    let (code, v) = jobs.server().post_json(
        "/v1/sources/db1/pitr",
        &json!({"target_gtid": gtid_cp.gtid, "url": format!("mysql://root@127.0.0.1:{port}"), "datadir": dest}),
    )?;
    if let Some(id) = v["id"].as_str() {
        jobs.add(id);
    }
    assert_eq!(code, 400, "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not empty"),
        "{v:#}"
    );
    Ok(())
}

/// The CLI twin, with its progress bar (hidden: stderr is not a terminal).
#[test]
fn pitr_cli_restores_to_a_time() -> Result<()> {
    let fx = fixture()?;
    let cp = &fx.cps[2];
    let mut jobs = PitrJobs::new(fx.sb.server());
    let out = Command::new(server_bin())
        .args([
            "pitr",
            "--config",
            fx.sb.config_path().to_str().unwrap_or_default(),
            "--source",
            "db1",
        ])
        .args([
            "--to",
            &iso(cp.time).replace('T', " ").replace('Z', ""),
            "--scratch",
        ])
        .output()?;
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if let Some(id) = rep["id"].as_str() {
        jobs.add(id);
    }
    assert!(
        out.status.success(),
        "pitr CLI: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: Value = serde_json::from_slice(&out.stdout)?;
    verify_job(&mut jobs, rep["id"].as_str().context("id")?, cp)
}

/// The classic path: a PITR to the base itself (nothing replayed), then the exported
/// binlogs through mariadb-binlog | mariadb give the same data as the replay.
#[test]
fn base_plus_exported_binlogs_through_mariadb_binlog_give_the_checkpoint() -> Result<()> {
    let fx = fixture()?;
    let cp = &fx.cps[3];
    let server = fx.sb.server();
    let cfg = fx.sb.config_path();
    let mut jobs = PitrJobs::new(server);
    let (code, plan) = server.post_json(
        "/v1/sources/db1/pitr/plan",
        &json!({"target_gtid": fx.gtid_cp.gtid}),
    )?;
    assert_eq!(code, 200, "{plan:#}");
    let base_gtid = plan["base"]["gtid_pos"]
        .as_str()
        .context("base gtid")?
        .to_string();
    let id = start_job(
        &mut jobs,
        json!({"target_gtid": base_gtid, "scratch": true}),
    )?;
    let j = wait_job(server, &id)?;
    assert_eq!(j["phase"], "done", "{j:#}");
    assert_eq!(j["plan"]["transactions"], 0, "{j:#}");
    let socket = j["restored"]["socket"]
        .as_str()
        .context("socket")?
        .to_string();
    let exp = fx.sb.dir().join("export");
    let out = Command::new(server_bin())
        .args([
            "export",
            "--config",
            cfg.to_str().unwrap_or_default(),
            "--source",
            "db1",
        ])
        .args([
            "--to",
            &iso(cp.time),
            "--out",
            exp.to_str().unwrap_or_default(),
        ])
        .output()?;
    assert!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    let files: Vec<String> = summary["files"]
        .as_array()
        .context("files")?
        .iter()
        .filter_map(|f| f.as_str().map(|n| exp.join(n).display().to_string()))
        .collect();
    assert!(files.len() >= 2, "{summary:#}");
    let pipe = format!(
        "{} --no-defaults --skip-gtid-strict-mode {} | {} --no-defaults --socket={socket} --user=root",
        require_tool("mariadb-binlog").display(),
        files.join(" "),
        require_tool("mariadb").display()
    );
    let st = Command::new("bash")
        .args(["-o", "pipefail", "-c", &pipe])
        .output()?;
    assert!(
        st.status.success(),
        "{pipe}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(checksums_socket(&socket)?, cp.sums, "export to {}", cp.name);
    jobs.delete(&id)?;
    Ok(())
}

/// A FAIL file in the range: a purged binlog whose archived copy is damaged cannot be
/// re-pulled and stays FAIL; plans across it are refused. The file holds only
/// transactions after every checkpoint, so the other scenarios' ranges do not cross it.
#[test]
fn a_fail_file_in_the_range_refuses_the_plan() -> Result<()> {
    let fx = fixture()?;
    let primary = fx.sb.primary();
    let server = fx.sb.server();
    let mut jobs = PitrJobs::new(server);
    let victim = &fx.fail_victim;
    primary.sql(&format!("PURGE BINARY LOGS TO '{}'", fx.newest))?;
    let path = fx.sb.archive_dir("db1").join(victim);
    let mut bytes = std::fs::read(&path)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&path, &bytes)?;
    let (code, _) = server.post_json(
        &format!("/v1/sources/db1/binlogs/{victim}/check"),
        &json!({}),
    )?;
    assert_eq!(code, 202);
    wait_for("file FAIL", Duration::from_secs(60), || {
        let b = server.get_json("/v1/sources/db1/binlogs")?;
        let st = b["files"].as_array().and_then(|a| {
            a.iter()
                .find(|f| f["name"] == victim.as_str())
                .map(|f| f["state"].clone())
        });
        Ok((st == Some(json!("FAIL"))).then_some(()))
    })?;
    let (code, v) = server.post_json(
        "/v1/sources/db1/pitr",
        &json!({"target_gtid": primary.gtid_binlog_pos()?, "scratch": true}),
    )?;
    if let Some(id) = v["id"].as_str() {
        jobs.add(id); // started against expectations: deleted when `jobs` drops
    }
    assert_eq!(code, 422, "{v:#}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("FAIL"),
        "{v:#}"
    );
    Ok(())
}

/// A logical base restored into an existing, running, empty instance given by URL (no
/// datadir), then replayed to a GTID; the instance keeps running where it was.
#[test]
fn pitr_into_an_existing_instance_from_a_logical_base() -> Result<()> {
    let sb = Sandbox::builder(server_bin())
        .local_base_store()
        .source_backup(SourceBackup::logical().databases("app"))
        .setup(|primary| {
            primary
                .sql(
                    "CREATE DATABASE app; \
                     CREATE TABLE app.t1 (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)); \
                     CREATE TABLE app.t2 (id INT PRIMARY KEY, n INT); \
                     INSERT INTO app.t2 VALUES (1, 0), (2, 0), (3, 0);",
                )
                .map(|_| ())
        })
        .start()?;
    let primary = sb.primary();
    let server = sb.server();
    sb.take_base("db1")?;
    let mut sql = String::new();
    for i in 0..200 {
        sql.push_str(&format!(
            "BEGIN; INSERT INTO app.t1 (v) VALUES ('r{i}'); UPDATE app.t2 SET n = n + 1 WHERE id = {}; COMMIT;",
            i % 3 + 1
        ));
    }
    primary.sql(&sql)?;
    let gtid = primary.gtid_binlog_pos()?;
    let want = primary.table_checksums(&["app"])?;
    primary.sql("INSERT INTO app.t1 (v) VALUES ('after the target')")?;
    sb.wait_caught_up()?;

    let dest = MariaDb::start(MariaDbOptions {
        server_id: 2,
        ..Default::default()
    })?;
    let (code, v) = server.post_json(
        "/v1/sources/db1/pitr",
        &json!({"target_gtid": gtid, "url": dest.admin_url()}),
    )?;
    assert_eq!(code, 202, "{v:#}");
    let id = v["id"].as_str().context("id")?.to_string();
    let j = wait_job(server, &id)?;
    assert_eq!(j["phase"], "done", "{j:#}");
    assert_eq!(j["plan"]["base"]["method"], "logical", "{j:#}");
    assert_eq!(dest.table_checksums(&["app"])?, want, "{j:#}");
    assert_eq!(dest.sql_value("SELECT @@GLOBAL.gtid_slave_pos")?, gtid);
    // The job does not stop an instance it did not start.
    let (code, _) = server.delete(&format!("/v1/pitr/{id}"))?;
    assert_eq!(code, 200);
    assert!(dest.is_running());
    assert_eq!(dest.sql_value("SELECT COUNT(*) FROM app.t1")?, "200");
    Ok(())
}
