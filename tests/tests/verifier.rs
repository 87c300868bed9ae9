//! Restore verification against a real MariaDB primary, `binlog-server serve` as a
//! child process and the `verifier` command: a good archive passes every phase; when the
//! primary's data no longer match base + binlogs (a write that bypassed the binlog) the
//! data checks fail; a base altered after it was taken fails the restore (SHA-256); a damaged archived
//! binlog fails binlog verification with its position and ends FAIL in the archive; a
//! missing one fails it with the file's name; no base → "no base to verify". Scratch
//! instances are gone after each run. The schedule's rules are unit-tested in
//! `verifier/src/schedule.rs` with given clocks.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test verifier`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use binlog_tests::*;
use serde_json::{json, Value};

fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

fn verifier_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_verifier-under-test"))
}

/// `verifier run`: (exit code, report, stderr).
fn verifier_run(cfg: &Path) -> Result<(i32, Value, String)> {
    let out = Command::new(verifier_bin())
        .args(["run", "--config"])
        .arg(cfg)
        .args(["--source", "db1"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("verifier run printed no JSON; stderr: {stderr}"))?;
    Ok((out.status.code().unwrap_or(-1), report, stderr))
}

/// A run through the API, waited for.
fn api_run(server: &ServerProcess) -> Result<Value> {
    let (code, r) = server.post_json("/v1/sources/db1/verifications", &json!({}))?;
    assert_eq!(code, 202, "{r:#}");
    let id = r["id"].as_str().context("id")?.to_string();
    wait_for("verification", Duration::from_secs(600), || {
        let r = server.get_json(&format!("/v1/verifications/{id}"))?;
        Ok((r["outcome"] != "running").then_some(r))
    })
}

fn phase<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["phases"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or(&Value::Null)
}

fn scratch_entries(work: &Path) -> Vec<String> {
    std::fs::read_dir(work.join("data/pitr"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

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

#[test]
fn verification_passes_on_a_good_archive_and_fails_on_each_kind_of_damage() -> Result<()> {
    let primary = MariaDb::start(MariaDbOptions::default())?;
    primary.sql(
        "CREATE TABLE test.t1 (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64), note TEXT NULL); \
         CREATE TABLE test.t2 (id INT PRIMARY KEY, n INT); \
         CREATE TABLE test.flat (id INT PRIMARY KEY) ENGINE=MyISAM;",
    )?;
    let mut seed = String::from("INSERT INTO test.flat VALUES (1),(2);");
    for i in 0..10 {
        seed.push_str(&format!("INSERT INTO test.t2 VALUES ({i}, 0);"));
    }
    primary.sql(&seed)?;
    burst(&primary, 100, "pre")?;

    let work = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let extra = format!(
        "[backup]\nstore = \"file://{}\"\n",
        work.path().join("bases").display()
    );
    let cfg = write_config(
        work.path(),
        &http,
        &[("db1", &primary.repl_url(), 4242)],
        &extra,
    )?;
    let mut text = std::fs::read_to_string(&cfg)?;
    text.push_str(&format!(
        "[source.backup]\nurl = {}\nmethod = \"physical\"\n\
         [source.verify]\nday = \"sun\"\nstart = \"03:00\"\nstop_at = \"07:30\"\nchain_timeout = \"5m\"\n",
        toml_string(&primary.admin_url())
    ));
    std::fs::write(&cfg, text)?;
    let server = ServerProcess::start(&server_bin(), &cfg, &http)?;
    wait_caught_up(&server, &primary, "db1", Duration::from_secs(60))?;

    // No base yet: "no base to verify" is recorded, exit status 3.
    let (code, r, stderr) = verifier_run(&cfg)?;
    assert_eq!(code, 3, "{stderr}\n{r:#}");
    assert_eq!(r["outcome"], "no_base", "{r:#}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no base to verify"),
        "{r:#}"
    );
    let listed = server.get_json("/v1/verifications?source=db1")?;
    assert_eq!(listed["verifications"][0]["id"], r["id"], "{listed:#}");

    // A physical base, then more writes over three binlogs.
    let (code, b) = server.post_json("/v1/sources/db1/backups", &json!({}))?;
    assert_eq!(code, 202, "{b:#}");
    let bid = b["job_id"].as_str().context("job_id")?.to_string();
    let job = wait_for("base", Duration::from_secs(180), || {
        let j = server.get_json(&format!("/v1/jobs/{bid}"))?;
        Ok((j["state"] != "running").then_some(j))
    })?;
    assert_eq!(job["state"], "completed", "{job:#}");
    burst(&primary, 200, "after-base")?;
    primary.flush_binary_logs()?;
    burst(&primary, 200, "second")?;
    primary.flush_binary_logs()?;
    burst(&primary, 200, "third")?;
    primary.sql("ALTER TABLE test.t1 ADD COLUMN extra INT DEFAULT 7")?;
    primary.flush_binary_logs()?;
    burst(&primary, 50, "latest")?;
    wait_caught_up(&server, &primary, "db1", Duration::from_secs(60))?;
    wait_all_succ(&server, "db1", Duration::from_secs(60))?;

    // A good archive passes every phase.
    let (code, r, stderr) = verifier_run(&cfg)?;
    assert_eq!(code, 0, "{stderr}\n{r:#}");
    assert_eq!(r["outcome"], "passed", "{r:#}");
    assert_eq!(r["base"]["id"], bid.as_str(), "{r:#}");
    assert!(r["rto_seconds"].as_f64().unwrap_or(0.0) > 0.0, "{r:#}");
    for name in [
        "restore",
        "binlog verification",
        "chain verification",
        "data checks",
        "clean-up",
    ] {
        let p = phase(&r, name);
        assert_eq!(p["outcome"], "passed", "phase {name}: {r:#}");
    }
    for name in ["restore", "binlog verification", "chain verification"] {
        assert!(
            phase(&r, name)["seconds"].as_f64().unwrap_or(0.0) > 0.0,
            "phase {name} has no time: {r:#}"
        );
    }
    assert!(
        r["range"]["transactions"].as_u64().unwrap_or(0) >= 650,
        "{r:#}"
    );
    let checks = r["checks"].as_array().context("checks")?;
    let compared: Vec<&Value> = checks
        .iter()
        .filter(|c| c["kind"] == "checksum" && c["outcome"] == "passed")
        .collect();
    assert!(compared.len() >= 2, "{r:#}");
    assert!(
        checks.iter().any(|c| c["table"] == "`test`.`flat`"
            && c["kind"] == "checksum"
            && c["outcome"] == "skipped"),
        "the MyISAM table is not compared: {r:#}"
    );
    assert!(
        checks
            .iter()
            .filter(|c| c["kind"] == "check table")
            .all(|c| c["outcome"] == "passed"),
        "{r:#}"
    );
    assert!(
        scratch_entries(work.path()).is_empty(),
        "the scratch instance is left: {:?}",
        scratch_entries(work.path())
    );
    let id = r["id"].as_str().context("id")?;
    let (code, page) = server.get_text(&format!("/v1/verifications/{id}.html"))?;
    assert_eq!(code, 200);
    assert!(page.contains("PASSED") && page.contains(&bid), "{page}");
    let (code, summary) = server.get_text("/v1/verifications/summary.html")?;
    assert_eq!(code, 200);
    assert!(
        summary.contains("db1") && summary.contains("1 passed"),
        "{summary}"
    );
    let metrics = server.get_text("/metrics")?.1;
    assert!(
        metrics.contains("binlog_server_verification_last_result{source=\"db1\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("binlog_server_verification_last_rto_seconds{source=\"db1\"}"));

    // keep_instance: the scratch instance stays up (reachable on its socket) until its
    // PITR job is deleted. A second run of the same source meanwhile is refused (409).
    let (code, r) = server.post_json(
        "/v1/sources/db1/verifications",
        &json!({"keep_instance": true}),
    )?;
    assert_eq!(code, 202, "{r:#}");
    let kid = r["id"].as_str().context("id")?.to_string();
    let (code, busy) = server.post_json("/v1/sources/db1/verifications", &json!({}))?;
    assert_eq!(code, 409, "{busy:#}");
    let r = wait_for("kept verification", Duration::from_secs(600), || {
        let r = server.get_json(&format!("/v1/verifications/{kid}"))?;
        Ok((r["outcome"] != "running").then_some(r))
    })?;
    assert_eq!(r["outcome"], "passed", "{r:#}");
    assert_eq!(phase(&r, "clean-up")["outcome"], "skipped", "{r:#}");
    let socket = r["instance"]["socket"].as_str().context("kept socket")?;
    assert_eq!(
        sql_socket(socket, "SELECT COUNT(*) FROM test.t2")?,
        vec![vec!["10".to_string()]]
    );
    assert_eq!(scratch_entries(work.path()).len(), 1);
    let job = r["instance"]["pitr_job"].as_str().context("pitr_job")?;
    let (code, _) = server.delete(&format!("/v1/pitr/{job}"))?;
    assert_eq!(code, 200);
    assert!(scratch_entries(work.path()).is_empty());

    // The primary's data drift from what the base plus the binlogs give (a write that
    // bypassed the binlog): the data checks fail and name the table.
    primary.sql(
        "SET sql_log_bin = 0; UPDATE test.t2 SET n = n + 1000 WHERE id = 3; SET sql_log_bin = 1;",
    )?;
    let r = api_run(&server)?;
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(phase(&r, "data checks")["outcome"], "failed", "{r:#}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`test`.`t2` checksum"),
        "{r:#}"
    );
    assert!(
        scratch_entries(work.path()).is_empty(),
        "{:?} {r:#}",
        scratch_entries(work.path())
    );
    primary.sql(
        "SET sql_log_bin = 0; UPDATE test.t2 SET n = n - 1000 WHERE id = 3; SET sql_log_bin = 1;",
    )?;

    // A base altered after it was taken (a stored object changed): the restore refuses
    // it, since every object's size and SHA-256 are checked on download.
    let mut objects = Vec::new();
    let mut dirs = vec![work.path().join("bases")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            } else {
                objects.push((e.metadata()?.len(), e.path()));
            }
        }
    }
    objects.sort();
    let (_, object) = objects.last().cloned().context("no stored base object")?;
    let original = std::fs::read(&object)?;
    let mut altered = original.clone();
    let at = altered.len() / 2;
    altered[at] ^= 0x01;
    std::fs::write(&object, &altered)?;
    let r = api_run(&server)?;
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(phase(&r, "restore")["outcome"], "failed", "{r:#}");
    assert!(
        r["error"].as_str().unwrap_or_default().contains("sha256"),
        "{r:#}"
    );
    assert!(scratch_entries(work.path()).is_empty());
    std::fs::write(&object, &original)?;

    let files = primary.binlog_files()?;
    let n = files.len();
    assert!(n >= 4, "{files:?}");
    let victim = files[n - 2].0.clone();
    let earlier = files[n - 3].0.clone();
    let last = files[n - 1].0.clone();
    // A binlog missing from the archive: binlog verification fails and names it.
    let gone = work.path().join("data/db1").join(&earlier);
    let saved = std::fs::read(&gone)?;
    std::fs::remove_file(&gone)?;
    let r = api_run(&server)?;
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(
        phase(&r, "binlog verification")["outcome"],
        "failed",
        "{r:#}"
    );
    assert!(
        r["error"].as_str().unwrap_or_default().contains("missing"),
        "{r:#}"
    );
    assert_eq!(r["error_position"], earlier.as_str(), "{r:#}");
    assert!(scratch_entries(work.path()).is_empty());
    std::fs::write(&gone, &saved)?;

    // A byte flipped in an archived binlog after its check (bit rot), no longer on the
    // primary: binlog verification fails at that file, and the archive's state for it
    // ends FAIL.
    primary.sql(&format!("PURGE BINARY LOGS TO '{last}'"))?;
    let path = work.path().join("data/db1").join(&victim);
    let mut bytes = std::fs::read(&path)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&path, &bytes)?;
    let r = api_run(&server)?;
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(phase(&r, "restore")["outcome"], "passed", "{r:#}");
    assert_eq!(
        phase(&r, "binlog verification")["outcome"],
        "failed",
        "{r:#}"
    );
    let err = r["error"].as_str().unwrap_or_default();
    assert!(err.contains(&victim), "{r:#}");
    assert!(
        r["error_position"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&victim),
        "{r:#}"
    );
    wait_for(
        "the damaged file to be FAIL",
        Duration::from_secs(60),
        || {
            let b = server.get_json("/v1/sources/db1/binlogs")?;
            let st = b["files"].as_array().and_then(|a| {
                a.iter()
                    .find(|f| f["name"] == victim.as_str())
                    .map(|f| f["state"].clone())
            });
            Ok((st == Some(json!("FAIL"))).then_some(()))
        },
    )?;
    assert!(scratch_entries(work.path()).is_empty());

    // Every run is listed, newest first, and the failures show on the summary page.
    let listed = server.get_json("/v1/verifications?source=db1")?;
    let outcomes: Vec<&str> = listed["verifications"]
        .as_array()
        .context("list")?
        .iter()
        .filter_map(|v| v["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes,
        ["failed", "failed", "failed", "failed", "passed", "passed", "no_base"]
    );
    let (_, summary) = server.get_text("/v1/verifications/summary.html")?;
    assert!(summary.contains("4 failed"), "{summary}");
    Ok(())
}
