//! Restore verification against a real MariaDB primary, `binlog-server serve` as a
//! child process and the `verifier` command: a good archive passes every phase; when the
//! primary's data no longer match base + binlogs (a write that bypassed the binlog) the
//! data checks fail; a base altered after it was taken fails the restore (SHA-256); a damaged archived
//! binlog fails binlog verification with its position and ends FAIL in the archive; a
//! missing one fails it with the file's name; no base → "no base to verify". Scratch
//! instances are gone after each run. The schedule's rules are unit-tested in
//! `verifier/src/schedule.rs` with given clocks.
//!
//! # One archive, many scenarios
//!
//! Every scenario is its own test on one shared [`Fixture`] (a [`Sandbox`] whose primary
//! has the writes, physical bases and three more binlogs), set up once per test binary
//! by the first scenario that runs and stopped at exit ([`SharedFixture`]). Scenarios
//! hold it one at a time (runs of one source cannot overlap anyway: 409), and each
//! leaves it as it found it, also when it fails: the drift, the altered base object and
//! the removed binlog are put back by `Undo` guards, a kept instance is deleted by
//! [`PitrJobs`]. Bit rot cannot be undone (a FAIL file the primary no longer has stays
//! FAIL, and every later run would fail on it), so that scenario runs on a second source
//! `db2` of the same primary with its own base, which no other scenario uses. The one
//! run made before any base existed is recorded by the set-up and asserted by its own
//! scenario. Each run of db1 is recorded in the fixture, so that the listing scenario
//! checks the list and the weekly counts against the runs made so far, whichever
//! scenarios ran before it (it makes a passing and a failing run itself when none was
//! made yet). `cargo test --test verifier SCENARIO` runs any one alone.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test verifier`.

use std::collections::BTreeSet;
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

/// The source every scenario but the bit-rot one verifies.
const SOURCE: &str = "db1";
/// A second source of the same primary, with its own base: only the bit-rot scenario,
/// which leaves a FAIL file behind, verifies it.
const ROT_SOURCE: &str = "db2";

/// `verifier run --source <source>`: (exit code, report, stderr).
fn verifier_run(cfg: &Path, source: &str) -> Result<(i32, Value, String)> {
    let out = Command::new(verifier_bin())
        .args(["run", "--config"])
        .arg(cfg)
        .args(["--source", source])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("verifier run printed no JSON; stderr: {stderr}"))?;
    Ok((out.status.code().unwrap_or(-1), report, stderr))
}

/// A run through the API, waited for, and recorded in `runs`.
fn api_run(sb: &Sandbox, runs: &mut Runs, source: &str, body: Value) -> Result<Value> {
    let server = sb.server();
    let (code, r) = server.post_json(&format!("/v1/sources/{source}/verifications"), &body)?;
    assert_eq!(code, 202, "{r:#}");
    let id = r["id"].as_str().context("id")?.to_string();
    runs.started(source, &id);
    let r = wait_for("verification", Duration::from_secs(600), || {
        let r = server.get_json(&format!("/v1/verifications/{id}"))?;
        Ok((r["outcome"] != "running").then_some(r))
    })?;
    runs.finished(source, &r);
    Ok(r)
}

/// `verifier run` of db1, recorded in `runs`.
fn cli_run(sb: &Sandbox, runs: &mut Runs) -> Result<(i32, Value, String)> {
    let (code, r, stderr) = verifier_run(sb.config_path(), SOURCE)?;
    runs.finished(SOURCE, &r);
    Ok((code, r, stderr))
}

fn phase<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["phases"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or(&Value::Null)
}

/// The scratch instances' directories (`<data_dir>/pitr/*`).
fn scratch_entries(sb: &Sandbox) -> BTreeSet<String> {
    std::fs::read_dir(sb.pitr_dir())
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

/// Puts back what a scenario damaged when it drops, also when the scenario fails;
/// [`Undo::now`] does it at once and returns its error.
struct Undo<F: FnOnce() -> Result<()>> {
    what: &'static str,
    f: Option<F>,
}

impl<F: FnOnce() -> Result<()>> Undo<F> {
    fn new(what: &'static str, f: F) -> Undo<F> {
        Undo { what, f: Some(f) }
    }

    fn now(mut self) -> Result<()> {
        match self.f.take() {
            Some(f) => f().with_context(|| format!("put back {}", self.what)),
            None => Ok(()),
        }
    }
}

impl<F: FnOnce() -> Result<()>> Drop for Undo<F> {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            if let Err(e) = f() {
                eprintln!("putting back {} failed: {e:#}", self.what);
            }
        }
    }
}

/// One verification run as the scenarios made it: its source, id and (once finished)
/// outcome.
#[derive(Debug)]
struct Run {
    source: String,
    id: String,
    outcome: Option<String>,
}

/// Every verification run made on the fixture, oldest first.
#[derive(Debug, Default)]
struct Runs(Vec<Run>);

impl Runs {
    fn started(&mut self, source: &str, id: &str) {
        self.0.push(Run {
            source: source.to_string(),
            id: id.to_string(),
            outcome: None,
        });
    }

    /// Records a finished run's outcome (adding the run when it was not started here).
    fn finished(&mut self, source: &str, report: &Value) {
        let id = report["id"].as_str().unwrap_or_default();
        let outcome = report["outcome"].as_str().map(str::to_string);
        match self.0.iter_mut().find(|r| r.id == id) {
            Some(r) => r.outcome = outcome,
            None => self.0.push(Run {
                source: source.to_string(),
                id: id.to_string(),
                outcome,
            }),
        }
    }

    fn of<'a>(&'a self, source: &'a str) -> impl DoubleEndedIterator<Item = &'a Run> + 'a {
        self.0.iter().filter(move |r| r.source == source)
    }

    fn any(&self, source: &str, outcome: &str) -> bool {
        self.of(source)
            .any(|r| r.outcome.as_deref() == Some(outcome))
    }

    /// The weekly summary's counts for `source`: "P passed, F failed, N no base".
    fn week_counts(&self, source: &str) -> String {
        let n = |o: &str| {
            self.of(source)
                .filter(|r| r.outcome.as_deref() == Some(o))
                .count()
        };
        format!(
            "{} passed, {} failed, {} no base",
            n("passed"),
            n("failed"),
            n("no_base")
        )
    }
}

/// The archive every scenario verifies: a primary with t1, t2 (InnoDB) and flat
/// (MyISAM), captured as db1 and db2, a physical base of each, then 651 transactions
/// over three more binlogs.
struct Fixture {
    sb: Sandbox,
    /// db1's base.
    base_id: String,
    /// The `verifier run` of db1 before any base: exit code, report, stderr, and the
    /// list of db1's verifications right after it.
    no_base: (i32, Value, String, Value),
    /// The primary's binlogs after the writes (SHOW BINARY LOGS).
    files: Vec<(String, u64)>,
    runs: Runs,
}

static FIXTURE: SharedFixture<Fixture> = SharedFixture::new();

/// The shared fixture, set up by the first scenario that asks, held until the guard drops.
fn fixture() -> Result<FixtureGuard<Fixture>> {
    FIXTURE.lock(Fixture::start)
}

impl Fixture {
    fn start() -> Result<Fixture> {
        let sb = Sandbox::builder(server_bin())
            .also_source(ROT_SOURCE, 4243)
            .local_base_store()
            .source_backup(SourceBackup::physical())
            .source_verify(
                "day = \"sun\"\nstart = \"03:00\"\nstop_at = \"07:30\"\nchain_timeout = \"5m\"",
            )
            .setup(|primary| {
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
                burst(primary, 100, "pre")
            })
            .start()?;
        let mut runs = Runs::default();

        // No base yet (asserted by no_base_run_is_recorded_and_exits_3).
        let (code, report, stderr) = cli_run(&sb, &mut runs)?;
        let listed = sb.server().get_json("/v1/verifications?source=db1")?;

        // A physical base of each source, then more writes over three binlogs.
        let b1 = sb.start_base(SOURCE)?;
        let b2 = sb.start_base(ROT_SOURCE)?;
        let base = sb.wait_base(&b1)?;
        sb.wait_base(&b2)?;
        let primary = sb.primary();
        burst(primary, 200, "after-base")?;
        primary.flush_binary_logs()?;
        burst(primary, 200, "second")?;
        primary.flush_binary_logs()?;
        burst(primary, 200, "third")?;
        primary.sql("ALTER TABLE test.t1 ADD COLUMN extra INT DEFAULT 7")?;
        primary.flush_binary_logs()?;
        burst(primary, 50, "latest")?;
        sb.wait_caught_up()?;
        for source in sb.sources() {
            wait_all_succ(sb.server(), source, Duration::from_secs(60))?;
        }
        let files = primary.binlog_files()?;
        Ok(Fixture {
            base_id: base.id,
            no_base: (code, report, stderr, listed),
            files,
            runs,
            sb,
        })
    }
}

/// No base yet: "no base to verify" is recorded, exit status 3.
#[test]
fn no_base_run_is_recorded_and_exits_3() -> Result<()> {
    let fx = fixture()?;
    let (code, r, stderr, listed) = &fx.no_base;
    assert_eq!(*code, 3, "{stderr}\n{r:#}");
    assert_eq!(r["outcome"], "no_base", "{r:#}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no base to verify"),
        "{r:#}"
    );
    assert_eq!(listed["verifications"][0]["id"], r["id"], "{listed:#}");
    Ok(())
}

/// A good archive passes every phase.
#[test]
fn a_good_archive_passes_every_phase() -> Result<()> {
    let mut guard = fixture()?;
    let Fixture {
        sb, base_id, runs, ..
    } = &mut *guard;
    let server = sb.server();
    let bid = base_id.as_str();
    let before = scratch_entries(sb);
    let (code, r, stderr) = cli_run(sb, runs)?;
    assert_eq!(code, 0, "{stderr}\n{r:#}");
    assert_eq!(r["outcome"], "passed", "{r:#}");
    assert_eq!(r["base"]["id"], bid, "{r:#}");
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
    assert_eq!(
        scratch_entries(sb),
        before,
        "the scratch instance is left: {:?}",
        scratch_entries(sb)
    );
    let id = r["id"].as_str().context("id")?;
    let (code, page) = server.get_text(&format!("/v1/verifications/{id}.html"))?;
    assert_eq!(code, 200);
    assert!(page.contains("PASSED") && page.contains(bid), "{page}");
    let (code, summary) = server.get_text("/v1/verifications/summary.html")?;
    assert_eq!(code, 200);
    // The week's counts of db1 so far ("1 passed, 0 failed, 1 no base" when this
    // scenario runs first).
    let counts = runs.week_counts(SOURCE);
    assert!(
        summary.contains("db1") && summary.contains(&counts),
        "expected {counts:?}: {summary}"
    );
    let metrics = server.get_text("/metrics")?.1;
    assert!(
        metrics.contains("binlog_server_verification_last_result{source=\"db1\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("binlog_server_verification_last_rto_seconds{source=\"db1\"}"));
    Ok(())
}

/// keep_instance: the scratch instance stays up (reachable on its socket) until its
/// PITR job is deleted. A second run of the same source meanwhile is refused (409).
#[test]
fn keep_instance_keeps_the_scratch_instance_until_its_job_is_deleted() -> Result<()> {
    let mut guard = fixture()?;
    let Fixture { sb, runs, .. } = &mut *guard;
    let server = sb.server();
    let mut jobs = PitrJobs::new(server);
    let before = scratch_entries(sb);
    let (code, r) = server.post_json(
        "/v1/sources/db1/verifications",
        &json!({"keep_instance": true}),
    )?;
    assert_eq!(code, 202, "{r:#}");
    let kid = r["id"].as_str().context("id")?.to_string();
    runs.started(SOURCE, &kid);
    let (code, busy) = server.post_json("/v1/sources/db1/verifications", &json!({}))?;
    if let Some(id) = busy["id"].as_str() {
        runs.started(SOURCE, id);
    }
    assert_eq!(code, 409, "{busy:#}");
    let r = wait_for("kept verification", Duration::from_secs(600), || {
        let r = server.get_json(&format!("/v1/verifications/{kid}"))?;
        Ok((r["outcome"] != "running").then_some(r))
    })?;
    runs.finished(SOURCE, &r);
    if let Some(job) = r["instance"]["pitr_job"].as_str() {
        jobs.add(job);
    }
    assert_eq!(r["outcome"], "passed", "{r:#}");
    assert_eq!(phase(&r, "clean-up")["outcome"], "skipped", "{r:#}");
    let socket = r["instance"]["socket"].as_str().context("kept socket")?;
    assert_eq!(
        sql_socket(socket, "SELECT COUNT(*) FROM test.t2")?,
        vec![vec!["10".to_string()]]
    );
    let kept: Vec<String> = scratch_entries(sb).difference(&before).cloned().collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let job = r["instance"]["pitr_job"].as_str().context("pitr_job")?;
    let (code, _) = jobs.delete(job)?;
    assert_eq!(code, 200);
    assert_eq!(scratch_entries(sb), before);
    Ok(())
}

/// The primary's data drift from what the base plus the binlogs give (a write that
/// bypassed the binlog): the data checks fail and name the table. The drift is undone
/// afterwards, also when an assertion fails.
fn drift_run(sb: &Sandbox, runs: &mut Runs) -> Result<()> {
    let primary = sb.primary();
    let before = scratch_entries(sb);
    primary.sql(
        "SET sql_log_bin = 0; UPDATE test.t2 SET n = n + 1000 WHERE id = 3; SET sql_log_bin = 1;",
    )?;
    let undo = Undo::new("the drifted row", || {
        primary
            .sql("SET sql_log_bin = 0; UPDATE test.t2 SET n = n - 1000 WHERE id = 3; SET sql_log_bin = 1;")
            .map(|_| ())
    });
    let r = api_run(sb, runs, SOURCE, json!({}))?;
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(phase(&r, "data checks")["outcome"], "failed", "{r:#}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`test`.`t2` checksum"),
        "{r:#}"
    );
    assert_eq!(
        scratch_entries(sb),
        before,
        "{:?} {r:#}",
        scratch_entries(sb)
    );
    undo.now()
}

#[test]
fn data_drift_on_the_primary_fails_the_data_checks() -> Result<()> {
    let mut guard = fixture()?;
    let Fixture { sb, runs, .. } = &mut *guard;
    drift_run(sb, runs)
}

/// A base altered after it was taken (a stored object changed): the restore refuses
/// it, since every object's size and SHA-256 are checked on download.
#[test]
fn an_altered_base_fails_the_restore() -> Result<()> {
    let mut guard = fixture()?;
    let Fixture { sb, runs, .. } = &mut *guard;
    let before = scratch_entries(sb);
    let mut objects = Vec::new();
    // db1's bases only (the store keeps <source>/<base id>/...).
    let mut dirs = vec![sb.bases_dir().context("no local base store")?.join(SOURCE)];
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
    let undo = Undo::new("the altered base object", || {
        std::fs::write(&object, &original).map_err(Into::into)
    });
    let r = api_run(sb, runs, SOURCE, json!({}))?;
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(phase(&r, "restore")["outcome"], "failed", "{r:#}");
    assert!(
        r["error"].as_str().unwrap_or_default().contains("sha256"),
        "{r:#}"
    );
    assert_eq!(scratch_entries(sb), before);
    undo.now()
}

/// A binlog missing from the archive: binlog verification fails and names it.
#[test]
fn a_missing_binlog_fails_binlog_verification() -> Result<()> {
    let mut guard = fixture()?;
    let Fixture {
        sb, runs, files, ..
    } = &mut *guard;
    let n = files.len();
    assert!(n >= 4, "{files:?}");
    let earlier = files[n - 3].0.clone();
    let before = scratch_entries(sb);
    let gone = sb.archive_dir(SOURCE).join(&earlier);
    let saved = std::fs::read(&gone)?;
    std::fs::remove_file(&gone)?;
    let undo = Undo::new("the removed binlog", || {
        std::fs::write(&gone, &saved).map_err(Into::into)
    });
    let r = api_run(sb, runs, SOURCE, json!({}))?;
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
    assert_eq!(scratch_entries(sb), before);
    undo.now()
}

/// A byte flipped in an archived binlog after its check (bit rot), no longer on the
/// primary: binlog verification fails at that file, and the archive's state for it
/// ends FAIL. On db2, since the FAIL file stays (see the module docs).
#[test]
fn bit_rot_fails_binlog_verification_and_the_file_ends_fail() -> Result<()> {
    let mut guard = fixture()?;
    let Fixture {
        sb, runs, files, ..
    } = &mut *guard;
    let server = sb.server();
    let n = files.len();
    assert!(n >= 4, "{files:?}");
    let victim = files[n - 2].0.clone();
    let last = files[n - 1].0.clone();
    let before = scratch_entries(sb);
    sb.primary()
        .sql(&format!("PURGE BINARY LOGS TO '{last}'"))?;
    let path = sb.archive_dir(ROT_SOURCE).join(&victim);
    let mut bytes = std::fs::read(&path)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&path, &bytes)?;
    let r = api_run(sb, runs, ROT_SOURCE, json!({}))?;
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
            let b = server.get_json(&format!("/v1/sources/{ROT_SOURCE}/binlogs"))?;
            let st = b["files"].as_array().and_then(|a| {
                a.iter()
                    .find(|f| f["name"] == victim.as_str())
                    .map(|f| f["state"].clone())
            });
            Ok((st == Some(json!("FAIL"))).then_some(()))
        },
    )?;
    assert_eq!(scratch_entries(sb), before);
    Ok(())
}

/// Every run is listed, newest first, and the failures show on the summary page: the
/// runs of db1 made so far by the set-up and the other scenarios (with one passing and
/// one failing run made here when none was yet).
#[test]
fn every_run_is_listed_newest_first_and_counted_on_the_summary() -> Result<()> {
    let mut guard = fixture()?;
    let Fixture { sb, runs, .. } = &mut *guard;
    if !runs.any(SOURCE, "passed") {
        let r = api_run(sb, runs, SOURCE, json!({}))?;
        assert_eq!(r["outcome"], "passed", "{r:#}");
    }
    if !runs.any(SOURCE, "failed") {
        drift_run(sb, runs)?;
    }
    let server = sb.server();
    let listed = server.get_json("/v1/verifications?source=db1")?;
    // (id, outcome, started_at) as listed.
    let got: Vec<(&str, &str, i64)> = listed["verifications"]
        .as_array()
        .context("list")?
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap_or_default(),
                v["outcome"].as_str().unwrap_or_default(),
                v["started_at"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    // Newest first: started_at never increases down the list...
    assert!(
        got.windows(2).all(|w| w[0].2 >= w[1].2),
        "not newest first: {listed:#}"
    );
    // ...and the list holds exactly the runs made, in the order they were made, newest
    // first; runs started within the same second may list in either order (started_at
    // has whole seconds), so the list is compared with that order among them restored.
    let want: Vec<&Run> = runs.of(SOURCE).rev().collect();
    let made = |id: &str| want.iter().position(|r| r.id == id);
    let mut in_made_order = got.clone();
    in_made_order.sort_by_key(|(id, _, started)| (std::cmp::Reverse(*started), made(id)));
    assert_eq!(
        in_made_order.iter().map(|(id, ..)| *id).collect::<Vec<_>>(),
        want.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        "{listed:#}"
    );
    for (id, outcome, _) in &got {
        if let Some(Some(o)) = made(id).map(|i| &want[i].outcome) {
            assert_eq!(outcome, o, "run {id}: {listed:#}");
        }
    }
    let (_, summary) = server.get_text("/v1/verifications/summary.html")?;
    let counts = runs.week_counts(SOURCE);
    assert!(summary.contains(&counts), "expected {counts:?}: {summary}");
    Ok(())
}
