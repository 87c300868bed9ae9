//! End-to-end base-backup tests against real MariaDB servers started by the harness, with
//! the `snapshotter` command (and, for the API and schedules, `binlog-server serve`) run
//! as real child processes.
//!
//! Covers issue "Snapshotter": physical full + incremental taken under continuous writes
//! and restored (prepare, incremental, move-back, mariadbd started on it); logical with
//! mydumper and with mysqldump restored with myloader / the client; the same physical flow
//! against a real S3-compatible server (moto's standalone server); retention; failing
//! bases (wrong password, tool missing, staging disk full); the database filter; the API
//! with jobs and a cron schedule.
//!
//! # How the data is checked (why it is sound)
//!
//! A base is taken while writes go on, so its consistency point is wherever the tool
//! happened to take it. To know what the data must be at that point, a second server
//! replicates from the primary by GTID but is held stopped while the base is taken;
//! afterwards it is advanced with `START SLAVE UNTIL master_gtid_pos = '<base GTID>'`,
//! which applies exactly the transactions up to and including that GTID. Its `CHECKSUM
//! TABLE` of every table is then the primary's data at the base's GTID, and the restored
//! base must equal it. Independently, the recorded binlog file:position must map to the
//! recorded GTID on the primary (`BINLOG_GTID_POS(file, pos)`).
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test backups`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use binlog_tests::*;
use serde_json::Value;

fn snapshotter() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_snapshotter-under-test"))
}

fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

/// Writes `<dir>/binlog-server.toml`: one source `db1` on `db` with `[source.backup]`
/// `backup` (TOML lines) and top-level tables `tables` (e.g. `[backup]`).
fn config(dir: &Path, http: &str, db: &MariaDb, backup: &str, tables: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join("data");
    let text = format!(
        "data_dir = {}\n[http]\nlisten = {}\n{tables}\n[[source]]\nname = \"db1\"\nurl = {}\nserver_id = 4242\nstart = \"current\"\n[source.backup]\nurl = {}\n{backup}\n",
        toml_string(data.to_str().context("utf-8 path")?),
        toml_string(http),
        toml_string(&db.repl_url()),
        toml_string(&db.admin_url()),
    );
    let p = dir.join("binlog-server.toml");
    std::fs::write(&p, text)?;
    Ok(p)
}

fn cfg_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// `snapshotter take`; the printed row, or the failure with stderr.
fn take(cfg: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Result<Value> {
    let mut args = vec!["take", "--config", cfg_str(cfg), "--source", "db1"];
    args.extend_from_slice(extra);
    let (code, out, err) = run_snapshotter(&snapshotter(), &args, envs)?;
    if code != 0 {
        bail!("snapshotter take {extra:?} exited {code}: {err}");
    }
    let v: Value = serde_json::from_str(&out).with_context(|| format!("parse: {out}"))?;
    assert_eq!(v["state"], "COMPLETED", "{v:#}");
    Ok(v)
}

fn list(cfg: &Path, envs: &[(&str, &str)]) -> Result<Value> {
    let (code, out, err) = run_snapshotter(
        &snapshotter(),
        &["list", "--config", cfg_str(cfg), "--source", "db1"],
        envs,
    )?;
    if code != 0 {
        bail!("snapshotter list exited {code}: {err}");
    }
    Ok(serde_json::from_str(&out)?)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Restores a physical base into a new mariadbd and sets its position as the JSON says.
fn restore_physical(cfg: &Path, id: &str, envs: &[(&str, &str)]) -> Result<MariaDb> {
    let mut steps = Vec::new();
    let db = MariaDb::start_on_datadir(
        MariaDbOptions {
            server_id: 9,
            ..Default::default()
        },
        |datadir| {
            let (code, out, err) = run_snapshotter(
                &snapshotter(),
                &[
                    "restore",
                    "--config",
                    cfg_str(cfg),
                    "--backup",
                    id,
                    "--datadir",
                    datadir.to_str().unwrap_or_default(),
                ],
                envs,
            )?;
            if code != 0 {
                bail!("snapshotter restore {id} exited {code}: {err}");
            }
            let v: Value = serde_json::from_str(&out)?;
            steps = v["next_steps"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            Ok(())
        },
    )?;
    for st in &steps {
        db.sql(st)?;
    }
    Ok(db)
}

/// The recorded file:pos maps to the recorded GTID on the primary.
fn assert_position_consistent(primary: &MariaDb, base: &Value) -> Result<()> {
    let g = primary.sql_value(&format!(
        "SELECT BINLOG_GTID_POS('{}', {})",
        s(&base["binlog_file"]),
        base["binlog_pos"].as_u64().context("binlog_pos")?
    ))?;
    assert_eq!(g, s(&base["gtid_pos"]), "file:pos and GTID of {base:#}");
    Ok(())
}

/// A server to become a replica: its own writes (the harness's users) go to GTID domain
/// 2, so the primary's domain 0 arrives in order under gtid_strict_mode.
fn start_replica() -> Result<MariaDb> {
    MariaDb::start(MariaDbOptions {
        server_id: 2,
        gtid_domain_id: 2,
        ..Default::default()
    })
}

/// Waits (30 s at most) until the load has committed more than `n` transactions.
fn wait_written(load: &WriteLoad, n: u64) -> Result<()> {
    wait_for(
        &format!("{n} transactions written"),
        Duration::from_secs(30),
        || Ok((load.written() > n).then_some(())),
    )
}

fn load(primary: &MariaDb) -> Result<WriteLoad> {
    WriteLoad::start(
        primary,
        WriteLoadOptions {
            tables: 3,
            max_txns: 200_000,
            max_duration: Duration::from_secs(120),
            row_bytes: 300,
            rows_per_txn: 3,
        },
    )
}

#[test]
fn physical_full_and_incremental_under_writes_restore_to_their_gtid() -> Result<()> {
    let primary = MariaDb::start(MariaDbOptions::default())?;
    let replica = start_replica()?;
    replica.replicate_from(&primary)?;
    let work = tempfile::tempdir()?;
    let cfg = config(
        work.path(),
        "127.0.0.1:1",
        &primary,
        "method = \"physical\"",
        "",
    )?;

    let load = load(&primary)?;
    wait_written(&load, 200)?;
    replica.sql("STOP SLAVE")?;
    let full = take(&cfg, &[], &[])?;
    wait_written(&load, 400)?;
    let inc = take(&cfg, &["--incremental"], &[])?;
    let written = load.stop()?;
    assert!(written > 400);
    assert_eq!(inc["incremental"], true);
    assert_eq!(inc["parent_id"], full["id"]);
    assert_eq!(inc["from_lsn"], full["to_lsn"]);
    assert!(full["bytes"].as_u64().unwrap_or(0) > 1_000_000, "{full:#}");
    for b in [&full, &inc] {
        assert_position_consistent(&primary, b)?;
        for o in b["objects"].as_array().context("objects")? {
            assert_eq!(s(&o["sha256"]).len(), 64);
        }
    }

    // The primary's data at each base's GTID, through the held replica.
    let dbs = ["test"];
    replica.replicate_until(&s(&full["gtid_pos"]), Duration::from_secs(60))?;
    let at_full = replica.table_checksums(&dbs)?;
    replica.replicate_until(&s(&inc["gtid_pos"]), Duration::from_secs(60))?;
    let at_inc = replica.table_checksums(&dbs)?;
    assert_eq!(at_full.len(), 3);
    assert_ne!(at_full, at_inc, "the load wrote between the two bases");

    let r_full = restore_physical(&cfg, &s(&full["id"]), &[])?;
    assert_eq!(
        r_full.sql_value("SELECT @@gtid_binlog_pos")?,
        s(&full["gtid_pos"])
    );
    assert_eq!(
        r_full.sql_value("SELECT @@gtid_slave_pos")?,
        s(&full["gtid_pos"])
    );
    assert_eq!(r_full.table_checksums(&dbs)?, at_full);
    assert_eq!(
        r_full.sql_value(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='test'"
        )?,
        "3"
    );
    drop(r_full);

    let r_inc = restore_physical(&cfg, &s(&inc["id"]), &[])?;
    assert_eq!(
        r_inc.sql_value("SELECT @@gtid_binlog_pos")?,
        s(&inc["gtid_pos"])
    );
    assert_eq!(r_inc.table_checksums(&dbs)?, at_inc);
    // The restored instance is usable: it takes writes.
    r_inc.sql("INSERT INTO test.load_t1 (k, payload) VALUES (999999, 'after restore')")?;
    Ok(())
}

/// Databases with fixed contents for the filter checks.
fn make_filter_dbs(primary: &MariaDb) -> Result<()> {
    for db in ["fan", "bo", "shi", "union_log_ad_1", "union_log_ad_2"] {
        primary.sql(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB; \
             INSERT INTO {db}.t VALUES (1, '{db}'), (2, 'x');"
        ))?;
    }
    Ok(())
}

fn user_databases(db: &MariaDb) -> Result<Vec<String>> {
    let mut v: Vec<String> = db
        .sql_rows("SHOW DATABASES")?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .filter(|d| {
            !["mysql", "information_schema", "performance_schema", "sys"].contains(&d.as_str())
        })
        .collect();
    v.sort();
    Ok(v)
}

fn logical_roundtrip(tool: &str, filter: &str, expect_dbs: &[&str]) -> Result<()> {
    let primary = MariaDb::start(MariaDbOptions::default())?;
    make_filter_dbs(&primary)?;
    let replica = start_replica()?;
    replica.replicate_from(&primary)?;
    let work = tempfile::tempdir()?;
    let cfg = config(
        work.path(),
        "127.0.0.1:1",
        &primary,
        &format!("method = \"logical\"\nlogical_tool = \"{tool}\"\ndatabases = \"{filter}\"\nthreads = 2"),
        "",
    )?;
    let load = load(&primary)?;
    wait_written(&load, 300)?;
    replica.sql("STOP SLAVE")?;
    let base = take(&cfg, &[], &[])?;
    load.stop()?;
    assert_eq!(s(&base["tool"]), tool);
    assert_position_consistent(&primary, &base)?;
    replica.replicate_until(&s(&base["gtid_pos"]), Duration::from_secs(60))?;
    let expected = replica.table_checksums(expect_dbs)?;
    assert!(expected.len() >= expect_dbs.len(), "{expected:?}");

    let target = MariaDb::start(MariaDbOptions {
        server_id: 9,
        ..Default::default()
    })?;
    let before = user_databases(&target)?;
    let (code, out, err) = run_snapshotter(
        &snapshotter(),
        &[
            "restore",
            "--config",
            cfg_str(&cfg),
            "--backup",
            &s(&base["id"]),
            "--target",
            &target.admin_url(),
        ],
        &[],
    )?;
    assert_eq!(code, 0, "restore: {err}");
    let v: Value = serde_json::from_str(&out)?;
    for st in v["next_steps"].as_array().context("next_steps")? {
        target.sql(&s(st))?;
    }
    assert_eq!(
        target.sql_value("SELECT @@gtid_slave_pos")?,
        s(&base["gtid_pos"])
    );
    // Exactly the filtered databases arrived ("test" exists on every harness server).
    let mut want: Vec<String> = expect_dbs.iter().map(|d| d.to_string()).collect();
    want.extend(before);
    want.sort();
    want.dedup();
    assert_eq!(user_databases(&target)?, want, "filter {filter:?}");
    assert_eq!(target.table_checksums(expect_dbs)?, expected);
    Ok(())
}

#[test]
fn logical_mydumper_with_exclusion_filter() -> Result<()> {
    logical_roundtrip(
        "mydumper",
        "!fan,!bo",
        &["shi", "test", "union_log_ad_1", "union_log_ad_2"],
    )
}

#[test]
fn logical_mysqldump_with_wildcard_filter() -> Result<()> {
    logical_roundtrip(
        "mysqldump",
        "test,union\\\\_log\\\\_%",
        &["test", "union_log_ad_1", "union_log_ad_2"],
    )
}

#[test]
fn physical_base_in_s3_compatible_store() -> Result<()> {
    let moto = Moto::start()?;
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    ureq::put(&format!("{endpoint}/bases"))
        .call()
        .context("create bucket")?;
    let envs = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let primary = MariaDb::start(MariaDbOptions::default())?;
    let load = load(&primary)?;
    wait_written(&load, 200)?;
    load.stop()?;
    let work = tempfile::tempdir()?;
    let tables = format!(
        "[backup]\nstore = \"s3://bases/prod/eu\"\ns3_endpoint = \"{endpoint}\"\ns3_allow_http = true\npart_size = 5242880\n"
    );
    let cfg = config(
        work.path(),
        "127.0.0.1:1",
        &primary,
        "method = \"physical\"",
        &tables,
    )?;
    let base = take(&cfg, &[], &envs)?;
    assert_eq!(s(&base["store_url"]), "s3://bases/prod/eu");
    // Nothing went to the local default store.
    assert!(!work.path().join("data/backups/db1").exists());
    // The objects are in the bucket under the prefix (moto's ListObjectsV2 XML).
    let listing = ureq::get(&format!("{endpoint}/bases?list-type=2&prefix=prod/eu/db1/"))
        .call()?
        .into_string()?;
    for o in base["objects"].as_array().context("objects")? {
        assert!(
            listing.contains(&format!("prod/eu/{}", s(&o["key"]))),
            "{listing}"
        );
    }
    let expected = primary.table_checksums(&["test"])?;
    let restored = restore_physical(&cfg, &s(&base["id"]), &envs)?;
    assert_eq!(restored.table_checksums(&["test"])?, expected);
    assert_eq!(
        restored.sql_value("SELECT @@gtid_binlog_pos")?,
        primary.gtid_binlog_pos()?
    );
    Ok(())
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else if let Ok(r) = p.strip_prefix(root) {
                    out.push(r.to_string_lossy().into_owned());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn retention_deletes_exactly_the_expired_bases() -> Result<()> {
    let primary = MariaDb::start(MariaDbOptions::default())?;
    primary.sql("CREATE TABLE test.r (id INT PRIMARY KEY); INSERT INTO test.r VALUES (1)")?;
    let work = tempfile::tempdir()?;
    // keep_days = 0: only keep_min protects; retention runs after each take as well.
    let cfg = config(
        work.path(),
        "127.0.0.1:1",
        &primary,
        "method = \"logical\"\nlogical_tool = \"mysqldump\"\nkeep_days = 0\nkeep_min = 2",
        "",
    )?;
    let store = work.path().join("data/backups");
    let mut ids = Vec::new();
    for i in 0..4 {
        primary.sql(&format!("INSERT INTO test.r VALUES ({})", i + 2))?;
        let b = take(&cfg, &[], &[])?;
        ids.push(s(&b["id"]));
        // Distinct consistency seconds keep the order unambiguous.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let v = list(&cfg, &[])?;
    let rows = v["backups"].as_array().context("backups")?.clone();
    let state_of = |id: &str| {
        rows.iter()
            .find(|r| r["id"] == id)
            .map(|r| s(&r["state"]))
            .unwrap_or_default()
    };
    assert_eq!(state_of(&ids[0]), "DELETED");
    assert_eq!(state_of(&ids[1]), "DELETED");
    assert_eq!(state_of(&ids[2]), "COMPLETED");
    assert_eq!(state_of(&ids[3]), "COMPLETED");
    // On disk: exactly the objects of the two kept bases.
    let mut want: Vec<String> = rows
        .iter()
        .filter(|r| r["state"] == "COMPLETED")
        .flat_map(|r| r["objects"].as_array().cloned().unwrap_or_default())
        .map(|o| s(&o["key"]))
        .collect();
    want.sort();
    assert_eq!(files_under(&store), want);
    assert_eq!(s(&v["oldest_restorable"]["backup_id"]), ids[2]);
    // A further pass changes nothing.
    let (code, out, err) = run_snapshotter(
        &snapshotter(),
        &["retention", "--config", cfg_str(&cfg), "--source", "db1"],
        &[],
    )?;
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out)?;
    assert_eq!(r["expired"].as_array().map(Vec::len), Some(0), "{r:#}");
    assert_eq!(files_under(&store), want);
    Ok(())
}

/// Takes a base expected to fail; returns (stderr, the ERROR row).
fn take_failing(cfg: &Path) -> Result<(String, Value)> {
    let (code, _, err) = run_snapshotter(
        &snapshotter(),
        &["take", "--config", cfg_str(cfg), "--source", "db1"],
        &[],
    )?;
    assert_eq!(code, 1, "{err}");
    let v = list(cfg, &[])?;
    let rows = v["backups"].as_array().context("backups")?;
    assert!(rows.iter().all(|r| r["state"] != "COMPLETED"), "{v:#}");
    let row = rows.last().context("an ERROR row")?.clone();
    assert_eq!(row["state"], "ERROR", "{row:#}");
    Ok((err, row))
}

#[test]
fn failing_bases_end_in_error_with_the_reason() -> Result<()> {
    let primary = MariaDb::start(MariaDbOptions::default())?;
    let work = tempfile::tempdir()?;

    // Wrong password.
    let dir = work.path().join("pw");
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {}\n[[source]]\nname = \"db1\"\nurl = {}\nserver_id = 4242\n[source.backup]\nurl = \"mysql://admin:wrong@127.0.0.1:{}\"\n",
            toml_string(dir.join("data").to_str().unwrap_or_default()),
            toml_string(&primary.repl_url()),
            primary.port()
        ),
    )?;
    let (err, row) = take_failing(&cfg)?;
    assert!(s(&row["info"]).contains("Access denied"), "{row:#}");
    assert!(err.contains("Access denied"), "{err}");
    assert!(!err.contains("wrong"), "the password leaked: {err}");

    // Tool missing.
    let cfg = config(
        &work.path().join("tool"),
        "127.0.0.1:1",
        &primary,
        "method = \"logical\"\nlogical_tool = \"mydumper\"",
        "[backup.tools]\nmydumper = \"/nonexistent/bin/mydumper\"\n",
    )?;
    let (_, row) = take_failing(&cfg)?;
    assert!(
        s(&row["info"]).contains("/nonexistent/bin/mydumper"),
        "{row:#}"
    );

    // Staging disk full: mydumper writes into a 1 MiB tmpfs.
    primary.sql(
        "CREATE TABLE test.big (id INT PRIMARY KEY, v LONGTEXT) ENGINE=InnoDB; \
         INSERT INTO test.big SELECT seq, REPEAT(MD5(seq), 200) FROM test.seq_1_to_2000;",
    )?;
    let small = work.path().join("small");
    std::fs::create_dir_all(&small)?;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .context("run mount")?;
    if !mounted.success() {
        bail!("mount -t tmpfs failed ({mounted}): this test needs root to make a small filesystem");
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let cfg = config(
        &work.path().join("full"),
        "127.0.0.1:1",
        &primary,
        "method = \"logical\"\nlogical_tool = \"mydumper\"",
        &format!(
            "[backup]\nstaging_dir = {}\n",
            toml_string(small.to_str().unwrap_or_default())
        ),
    )?;
    let (_, row) = take_failing(&cfg)?;
    let info = s(&row["info"]);
    assert!(info.contains("mydumper"), "{row:#}");
    assert!(
        info.to_lowercase().contains("space") || info.contains("28"),
        "no disk-full message: {info}"
    );
    // Nothing left in the store or the staging directory.
    assert!(files_under(&work.path().join("full/data/backups")).is_empty());
    assert!(files_under(&small).is_empty(), "{:?}", files_under(&small));
    Ok(())
}

#[test]
fn api_takes_bases_and_reports_jobs_and_schedules_run() -> Result<()> {
    let primary = MariaDb::start(MariaDbOptions::default())?;
    primary.sql("CREATE TABLE test.a (id INT PRIMARY KEY); INSERT INTO test.a VALUES (1)")?;
    let work = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = config(work.path(), &http, &primary, "method = \"physical\"", "")?;
    let server = ServerProcess::start(&server_bin(), &cfg, &http)?;

    let r = server.post_json("/v1/sources/db1/backups", &serde_json::json!({}))?;
    assert_eq!(r.0, 202, "{r:?}");
    let id = s(&r.1["job_id"]);
    // A second one while the first runs: 409.
    let again = server.post_json("/v1/sources/db1/backups", &serde_json::json!({}))?;
    assert_eq!(again.0, 409, "{again:?}");
    let bad = server.post_json(
        "/v1/sources/db1/backups",
        &serde_json::json!({"method": "logical", "incremental": true}),
    )?;
    assert_eq!(bad.0, 400, "{bad:?}");
    let unknown = server.post_json("/v1/sources/nope/backups", &serde_json::json!({}))?;
    assert_eq!(unknown.0, 404, "{unknown:?}");

    let job = wait_for("job completes", Duration::from_secs(120), || {
        let j = server.get_json(&format!("/v1/jobs/{id}"))?;
        Ok((j["state"] != "running").then_some(j))
    })?;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert!(
        job["bytes_done"].as_u64().unwrap_or(0) > 1_000_000,
        "{job:#}"
    );
    assert_eq!(job["backup"]["gtid_pos"], primary.gtid_binlog_pos()?);
    let listed = server.get_json("/v1/sources/db1/backups")?;
    let rows = listed["backups"].as_array().context("backups")?;
    assert!(
        rows.iter()
            .any(|b| b["id"] == id.as_str() && b["state"] == "COMPLETED"),
        "{listed:#}"
    );
    assert_eq!(listed["oldest_restorable"]["backup_id"], id.as_str());
    drop(server);

    // A schedule firing every 5 seconds (6-field cron): bases appear by themselves.
    let cfg = config(
        &work.path().join("sched"),
        &http,
        &primary,
        "method = \"logical\"\nlogical_tool = \"mysqldump\"\nfull_schedule = \"*/5 * * * * *\"\nkeep_min = 10",
        "",
    )?;
    let server = ServerProcess::start(&server_bin(), &cfg, &http)?;
    let started = Instant::now();
    let n = wait_for("two scheduled bases", Duration::from_secs(60), || {
        let l = server.get_json("/v1/sources/db1/backups")?;
        let done = l["backups"]
            .as_array()
            .map(|a| a.iter().filter(|b| b["state"] == "COMPLETED").count())
            .unwrap_or(0);
        Ok((done >= 2).then_some(done))
    })?;
    assert!(n >= 2 && started.elapsed() >= Duration::from_secs(4));
    Ok(())
}
