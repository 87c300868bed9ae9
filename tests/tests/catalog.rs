//! The catalog's behaviour, the same on both of its engines: every scenario here runs
//! twice, on an SQLite file and on a real PostgreSQL database (`<scenario>::sqlite` and
//! `<scenario>::postgres`). The PostgreSQL server is the harness's throw-away one
//! ([`Postgres`]), started once for this test binary and stopped by PID when it exits;
//! each scenario gets a database of its own, so they run in parallel.
//!
//! What only one engine has (SQLite's WAL mode, in-memory catalogs, URL parsing) is
//! tested in `catalog/src/tests.rs`.

use std::sync::atomic::{AtomicU32, Ordering};

use binlog_tests::{Postgres, SharedFixture};
use catalog::{Backend, BackupResult, BackupState, Catalog, CatalogError, FileProgress, FileState};

const SRC: &str = "db1";

/// The PostgreSQL server of this test binary.
static PG: SharedFixture<Postgres> = SharedFixture::new();

/// The engine a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh, empty catalog database of one scenario: an SQLite file in a temp dir, or a
/// new database on the shared PostgreSQL server.
struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Engine {
    /// A new empty database (not opened yet).
    fn database(self) -> TestDb {
        match self {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                }
            }
            Engine::Postgres => {
                static NEXT: AtomicU32 = AtomicU32::new(0);
                let name = format!(
                    "catalog_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                // Hold the fixture only while creating the database: the scenarios use
                // their own databases side by side.
                let pg = PG.lock(Postgres::start).expect("start PostgreSQL");
                pg.sql(&format!("CREATE DATABASE {name}"))
                    .expect("create the scenario's database");
                TestDb {
                    url: pg.url_for(&name),
                    _dir: None,
                }
            }
        }
    }

    /// A new empty database, opened (migrations applied).
    async fn open(self) -> (Catalog, TestDb) {
        let db = self.database();
        let cat = Catalog::open(&db.url).await.expect("open the catalog");
        let want = match self {
            Engine::Sqlite => Backend::Sqlite,
            Engine::Postgres => Backend::Postgres,
        };
        assert_eq!(cat.backend(), want);
        (cat, db)
    }
}

/// Runs the scenario `async fn $name(engine: Engine)` on both engines, as the tests
/// `$name::sqlite` and `$name::postgres`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Engine::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Engine::Postgres).await
            }
        }
    )*};
}

on_both_engines!(
    open_twice_keeps_data_and_applies_migrations_once,
    sources_upsert_state_and_error,
    state_transitions_active_reported_fail_reported_succ,
    mark_reported_inserts_absent_file,
    set_checked_errors,
    list_files_orders_by_seq_then_name,
    gaps_are_recorded_deduplicated_and_per_source,
    corrupt_rows_are_errors_not_panics,
    concurrent_writers_on_one_file,
    archive_objects_record_once_list_in_file_order_and_chunks_retire,
    an_imported_base_keeps_its_times_and_objects_and_imports_once,
    state_flow_and_objects_written_with_completion,
    interrupted_bases_become_error_and_skips_record_why,
    pitr_jobs_are_saved_replaced_and_listed_while_unfinished,
    verifications_are_saved_listed_newest_first_and_cancelled,
    a_lease_has_one_owner_and_a_new_epoch_at_every_change_of_owner,
    racing_acquisitions_leave_one_owner,
    nodes_heartbeat_on_the_database_clock,
    start_up_sweeps_touch_only_the_nodes_own_jobs,
    an_old_owner_cannot_record_an_archive_object,
    a_new_owner_adopts_the_tail_under_its_epoch_only,
    a_fenced_handle_writes_only_while_its_tenure_lasts,
    object_locks_come_due_and_only_the_owner_records_an_extension,
    timelines_are_recorded_once_and_fenced,
);

async fn timelines_are_recorded_once_and_fenced(engine: Engine) {
    use std::time::Duration;
    let (cat, _db) = engine.open().await;
    cat.upsert_source(SRC, "mysql://repl@db1").await.unwrap();
    assert!(cat.list_timelines(SRC).await.unwrap().is_empty());
    let first = catalog::NewTimeline {
        timeline: 1,
        server_id: 1,
        server_url: "mysql://repl@db1a:3306",
        ..Default::default()
    };
    assert!(cat.add_timeline(SRC, &first).await.unwrap());
    // Capture reached the same server again after a restart: nothing changes.
    let again = catalog::NewTimeline {
        server_id: 99,
        ..first.clone()
    };
    assert!(!cat.add_timeline(SRC, &again).await.unwrap());
    let a = cat
        .acquire_lease(SRC, "node-a", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("free");
    let owner = cat.fenced(SRC, a.epoch);
    let second = catalog::NewTimeline {
        timeline: 2,
        server_id: 2,
        server_url: "mysql://repl@db1b:3306",
        switch_gtid: Some("0-1-400"),
        first_file: Some("tl2/mysql-bin.000004"),
        reason: Some("the primary was unreachable for 30s"),
        ..Default::default()
    };
    assert!(owner.add_timeline(SRC, &second).await.unwrap());
    owner
        .set_divergent(SRC, 2, "0-1-398..0-1-400 (3 transactions)")
        .await
        .unwrap();
    let rows = cat.list_timelines(SRC).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].timeline, rows[0].server_id), (1, 1));
    assert_eq!(rows[0].switch_gtid, None);
    let r = &rows[1];
    assert_eq!((r.timeline, r.server_id), (2, 2));
    assert_eq!(r.first_file.as_deref(), Some("tl2/mysql-bin.000004"));
    assert_eq!(r.switch_gtid.as_deref(), Some("0-1-400"));
    assert_eq!(
        r.divergent.as_deref(),
        Some("0-1-398..0-1-400 (3 transactions)")
    );
    assert!(r.started_at >= rows[0].started_at);
    assert!(cat.list_timelines("other").await.unwrap().is_empty());
    // A later timeline's files list after every file of the earlier one.
    for f in [
        "tl2/mysql-bin.000004",
        "mysql-bin.000010",
        "mysql-bin.000009",
    ] {
        cat.mark_reported(SRC, &progress(f, 100)).await.unwrap();
    }
    let names: Vec<String> = cat
        .list_files(SRC)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names,
        [
            "mysql-bin.000009",
            "mysql-bin.000010",
            "tl2/mysql-bin.000004"
        ]
    );
    // Once the tenure is over, the old owner records no switch.
    tokio::time::sleep(Duration::from_millis(400)).await;
    cat.acquire_lease(SRC, "node-b", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("expired");
    let third = catalog::NewTimeline {
        timeline: 3,
        ..second.clone()
    };
    assert!(matches!(
        owner.add_timeline(SRC, &third).await,
        Err(catalog::CatalogError::Fenced { .. })
    ));
    assert!(matches!(
        owner.set_divergent(SRC, 2, "x").await,
        Err(catalog::CatalogError::Fenced { .. })
    ));
    assert_eq!(cat.list_timelines(SRC).await.unwrap().len(), 2);

    // A rebuild imports rows as the store records them: a new one as it is, an existing
    // one unchanged except for a divergence it lacked.
    let rows = cat.list_timelines(SRC).await.unwrap();
    let (cat2, _db2) = engine.open().await;
    cat2.upsert_source(SRC, "mysql://repl@db1").await.unwrap();
    let mut undecided = rows[1].clone();
    undecided.divergent = None;
    assert!(cat2.import_timeline(&rows[0]).await.unwrap());
    assert!(cat2.import_timeline(&undecided).await.unwrap());
    assert!(!cat2.import_timeline(&undecided).await.unwrap());
    assert!(cat2.import_timeline(&rows[1]).await.unwrap());
    assert!(!cat2.import_timeline(&rows[1]).await.unwrap());
    assert_eq!(cat2.list_timelines(SRC).await.unwrap(), rows);
}

fn progress(name: &str, size: u64) -> FileProgress {
    FileProgress {
        name: name.to_owned(),
        size,
        ..FileProgress::default()
    }
}

fn new(id: &str) -> catalog::NewBackup {
    catalog::NewBackup {
        id: id.into(),
        source: "db1".into(),
        method: "physical".into(),
        tool: "mariabackup".into(),
        ..Default::default()
    }
}

fn obj(key: &str) -> objstore::store::StoredObject {
    objstore::store::StoredObject {
        key: key.into(),
        bytes: 10,
        sha256: "a".repeat(64),
    }
}

/// The number of migration files of `engine` in the source tree.
fn migration_files(engine: Engine) -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../catalog/migrations")
        .join(match engine {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        });
    let n = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();
    i64::try_from(n).expect("few files")
}

async fn open_twice_keeps_data_and_applies_migrations_once(engine: Engine) {
    let db = engine.database();
    let cat = Catalog::open(&db.url).await.expect("first open");
    cat.upsert_source(SRC, "mysql://repl@127.0.0.1:3306")
        .await
        .expect("upsert");
    cat.record_active(SRC, &progress("mysql-bin.000001", 4))
        .await
        .expect("record");
    // A second handle while the first is still open (a second process or node):
    // migrations are skipped, data is shared.
    let cat2 = Catalog::open(&db.url).await.expect("second open");
    assert_eq!(cat2.list_files(SRC).await.expect("list").len(), 1);
    cat2.close().await;
    cat.close().await;

    let cat3 = Catalog::open(&db.url).await.expect("reopen");
    let src = cat3.get_source(SRC).await.expect("get").expect("present");
    assert_eq!(
        (src.url.as_str(), src.state.as_str()),
        ("mysql://repl@127.0.0.1:3306", "new")
    );
    let f = cat3
        .get_file(SRC, "mysql-bin.000001")
        .await
        .expect("get")
        .expect("present");
    assert_eq!((f.state, f.size, f.seq), (FileState::Active, 4, 1));
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(cat3.pool())
        .await
        .expect("count");
    assert_eq!(applied, migration_files(engine));
    cat3.close().await;
}

async fn pitr_jobs_are_saved_replaced_and_listed_while_unfinished(engine: Engine) {
    let (cat, _db) = engine.open().await;
    assert!(cat.get_pitr_job("p1").await.expect("get").is_none());
    cat.save_pitr_job("p1", SRC, "planning", "{}")
        .await
        .expect("save");
    cat.save_pitr_job("p2", SRC, "done", "{\"ok\":true}")
        .await
        .expect("save p2");
    cat.save_pitr_job("p1", SRC, "replaying", "{\"phase\":2}")
        .await
        .expect("replace");
    let p1 = cat.get_pitr_job("p1").await.expect("get").expect("present");
    assert_eq!(
        (p1.source.as_str(), p1.state.as_str(), p1.report.as_str()),
        (SRC, "replaying", "{\"phase\":2}")
    );
    assert!(p1.updated_at >= p1.created_at && p1.created_at > 1_600_000_000);
    let unfinished: Vec<String> = cat
        .unfinished_pitr_jobs()
        .await
        .expect("unfinished")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(unfinished, ["p1"]);
}

async fn verifications_are_saved_listed_newest_first_and_cancelled(engine: Engine) {
    use catalog::verify::VerificationRow;
    let (cat, _db) = engine.open().await;
    let run = |id: &str, source: &str, started_at: i64, state: &str| VerificationRow {
        id: id.into(),
        source: source.into(),
        base_id: None,
        trigger_kind: "schedule".into(),
        state: state.into(),
        started_at,
        finished_at: None,
        rto_seconds: None,
        error: None,
        report: "{}".into(),
    };
    cat.save_verification(&run("v1", SRC, 1_000, "running"))
        .await
        .expect("v1");
    cat.save_verification(&run("v2", SRC, 2_000, "running"))
        .await
        .expect("v2");
    cat.save_verification(&run("v3", "db2", 3_000, "running"))
        .await
        .expect("v3");
    let mut done = run("v1", SRC, 1_000, "passed");
    done.base_id = Some("b1".into());
    done.finished_at = Some(1_090);
    done.rto_seconds = Some(87.5);
    cat.save_verification(&done).await.expect("replace v1");
    let v1 = cat.get_verification("v1").await.expect("get").expect("v1");
    assert_eq!(v1, done);

    let ids = |rows: Vec<VerificationRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(cat.list_verifications(None, 0, 10).await.expect("all")),
        ["v3", "v2", "v1"]
    );
    assert_eq!(
        ids(cat.list_verifications(Some(SRC), 0, 10).await.expect("db1")),
        ["v2", "v1"]
    );
    assert_eq!(
        ids(cat
            .list_verifications(Some(SRC), 1_500, 10)
            .await
            .expect("since")),
        ["v2"]
    );
    assert_eq!(
        ids(cat.list_verifications(None, 0, 1).await.expect("limit")),
        ["v3"]
    );

    let mut cancelled = cat
        .cancel_running_verifications("node restarted")
        .await
        .expect("cancel");
    cancelled.sort();
    assert_eq!(cancelled, ["v2", "v3"]);
    let v2 = cat.get_verification("v2").await.expect("get").expect("v2");
    assert_eq!(
        (v2.state.as_str(), v2.error.as_deref()),
        ("cancelled", Some("node restarted"))
    );
    assert!(v2.finished_at.is_some());
    assert_eq!(
        cat.get_verification("v1")
            .await
            .expect("get")
            .expect("v1")
            .state,
        "passed"
    );
}

async fn sources_upsert_state_and_error(engine: Engine) {
    let (cat, _db) = engine.open().await;
    cat.upsert_source("b", "mysql://repl@h2").await.expect("b");
    cat.upsert_source("a", "mysql://repl@h1").await.expect("a");
    cat.upsert_source("a", "mysql://repl@h1b")
        .await
        .expect("a again");

    cat.set_source_state("a", "failed", Some("ERROR 1236"))
        .await
        .expect("state");
    let a = cat.get_source("a").await.expect("get").expect("present");
    assert_eq!(a.url, "mysql://repl@h1b");
    assert_eq!(a.state, "failed");
    assert_eq!(a.last_error.as_deref(), Some("ERROR 1236"));
    assert!(a.updated_at > 1_600_000_000);

    cat.set_source_state("a", "streaming", None)
        .await
        .expect("state");
    let a = cat.get_source("a").await.expect("get").expect("present");
    assert_eq!((a.state.as_str(), a.last_error), ("streaming", None));

    let names: Vec<String> = cat
        .list_sources()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a", "b"]);

    assert!(cat.get_source("zz").await.expect("get").is_none());
    let err = cat
        .set_source_state("zz", "streaming", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::NotFound { what: "source", key } if key == "zz"),
        "{err:?}"
    );
}

async fn state_transitions_active_reported_fail_reported_succ(engine: Engine) {
    let (cat, _db) = engine.open().await;
    let name = "mysql-bin.000007";

    // ACTIVE, growing.
    let mut p = FileProgress {
        name: name.to_owned(),
        size: 256,
        first_event_time: Some(1_700_000_000),
        last_event_time: Some(1_700_000_010),
        first_gtid: Some("0-1-100".to_owned()),
        last_gtid: Some("0-1-105".to_owned()),
    };
    cat.record_active(SRC, &p).await.expect("active");
    let f = cat.get_file(SRC, name).await.expect("get").expect("row");
    assert_eq!(f.state, FileState::Active);
    assert_eq!(f.seq, 7);
    assert_eq!(f.info, "");
    assert_eq!(f.reported_at, None);
    assert_eq!(f.state_changed_at, f.created_at);
    let created = f.created_at;

    // A progress report without first fields keeps them; new last fields win.
    let grow = FileProgress {
        name: name.to_owned(),
        size: 1024,
        last_event_time: Some(1_700_000_020),
        last_gtid: Some("0-1-110".to_owned()),
        ..FileProgress::default()
    };
    cat.record_active(SRC, &grow).await.expect("grow");
    let f = cat.get_file(SRC, name).await.expect("get").expect("row");
    assert_eq!(f.size, 1024);
    assert_eq!(f.first_event_time, Some(1_700_000_000));
    assert_eq!(f.first_gtid.as_deref(), Some("0-1-100"));
    assert_eq!(f.last_event_time, Some(1_700_000_020));
    assert_eq!(f.last_gtid.as_deref(), Some("0-1-110"));

    // Checking an ACTIVE file is refused and changes nothing.
    let err = cat
        .set_checked(SRC, name, FileState::Succ, "ok", Some("ab"), 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::InvalidState {
                from: Some(FileState::Active),
                to: FileState::Succ,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("is ACTIVE"), "{err}");

    // ACTIVE -> REPORTED.
    p.size = 2048;
    p.last_event_time = Some(1_700_000_030);
    p.last_gtid = Some("0-1-120".to_owned());
    cat.mark_reported(SRC, &p).await.expect("reported");
    let f = cat.get_file(SRC, name).await.expect("get").expect("row");
    assert_eq!(f.state, FileState::Reported);
    assert_eq!(f.size, 2048);
    assert_eq!(f.last_gtid.as_deref(), Some("0-1-120"));
    assert!(f.reported_at.is_some());
    assert_eq!(f.created_at, created);
    assert!(f.state_changed_at >= created);
    let reported_at = f.reported_at;

    // REPORTED -> REPORTED is idempotent.
    cat.mark_reported(SRC, &p).await.expect("reported again");
    let f = cat.get_file(SRC, name).await.expect("get").expect("row");
    assert_eq!((f.state, f.reported_at), (FileState::Reported, reported_at));

    // A late progress report leaves the state alone but updates the size.
    cat.record_active(SRC, &progress(name, 2049))
        .await
        .expect("late");
    let f = cat.get_file(SRC, name).await.expect("get").expect("row");
    assert_eq!((f.state, f.size), (FileState::Reported, 2049));
    assert_eq!(f.last_gtid.as_deref(), Some("0-1-120"));

    // REPORTED -> FAIL.
    cat.set_checked(
        SRC,
        name,
        FileState::Fail,
        "CRC32 mismatch at offset 1234",
        None,
        2049,
    )
    .await
    .expect("fail");
    let f = cat.get_file(SRC, name).await.expect("get").expect("row");
    assert_eq!(f.state, FileState::Fail);
    assert_eq!(f.info, "CRC32 mismatch at offset 1234");
    assert!(f.checked_at.is_some());
    assert_eq!(
        cat.files_in_state(SRC, FileState::Fail)
            .await
            .expect("fail list")
            .len(),
        1
    );

    // FAIL -> REPORTED (pulled again): info and sha256 of the old bytes are cleared.
    cat.mark_reported(SRC, &p).await.expect("re-reported");
    let f = cat.get_file(SRC, name).await.expect("get").expect("row");
    assert_eq!(f.state, FileState::Reported);
    assert_eq!(f.size, 2048);
    assert_eq!(f.info, "");
    assert_eq!(f.sha256, None);

    // REPORTED -> SUCC.
    let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    cat.set_checked(SRC, name, FileState::Succ, "", Some(sha), 2048)
        .await
        .expect("succ");
    let f = cat.get_file(SRC, name).await.expect("get").expect("row");
    assert_eq!(f.state, FileState::Succ);
    assert_eq!(f.sha256.as_deref(), Some(sha));
    assert_eq!(f.size, 2048);
    assert!(f.checked_at.is_some());
    assert!(cat
        .files_in_state(SRC, FileState::Reported)
        .await
        .expect("reported list")
        .is_empty());

    // SUCC -> SUCC re-check is allowed; SUCC -> REPORTED is not.
    cat.set_checked(SRC, name, FileState::Succ, "rechecked", Some(sha), 2048)
        .await
        .expect("recheck");
    let err = cat.mark_reported(SRC, &p).await.unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::InvalidState {
                from: Some(FileState::Succ),
                to: FileState::Reported,
                ..
            }
        ),
        "{err:?}"
    );
    let f = cat.get_file(SRC, name).await.expect("get").expect("row");
    assert_eq!((f.state, f.info.as_str()), (FileState::Succ, "rechecked"));
    cat.close().await;
}

async fn mark_reported_inserts_absent_file(engine: Engine) {
    let (cat, _db) = engine.open().await;
    cat.mark_reported(SRC, &progress("mysql-bin.000003", 500))
        .await
        .expect("reported");
    let f = cat
        .get_file(SRC, "mysql-bin.000003")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(f.state, FileState::Reported);
    assert_eq!(f.reported_at, Some(f.created_at));
    assert_eq!(f.state_changed_at, f.created_at);
}

async fn set_checked_errors(engine: Engine) {
    let (cat, _db) = engine.open().await;
    let err = cat
        .set_checked(SRC, "mysql-bin.000001", FileState::Succ, "", None, 4)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::NotFound { what: "binlog file", key } if key == "db1/mysql-bin.000001"),
        "{err:?}"
    );
    for bad in [FileState::Active, FileState::Reported] {
        let err = cat
            .set_checked(SRC, "mysql-bin.000001", bad, "", None, 4)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CatalogError::InvalidArgument { field: "state", .. }),
            "{err:?}"
        );
    }
    let err = cat
        .record_active(SRC, &progress("mysql-bin.000001", u64::MAX))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CatalogError::InvalidArgument { field: "size", .. }),
        "{err:?}"
    );
    assert!(cat.list_files(SRC).await.expect("list").is_empty());
}

async fn list_files_orders_by_seq_then_name(engine: Engine) {
    let (cat, _db) = engine.open().await;
    for name in [
        "mysql-bin.000100",
        "mysql-bin.000010",
        "mysql-bin.000009",
        "mysql-bin.index",
        "mysql-bin.1000000",
    ] {
        cat.record_active(SRC, &progress(name, 4))
            .await
            .expect("record");
    }
    cat.record_active("other", &progress("mysql-bin.000001", 4))
        .await
        .expect("record other");
    cat.mark_reported(SRC, &progress("mysql-bin.000009", 8))
        .await
        .expect("report");
    cat.mark_reported(SRC, &progress("mysql-bin.000010", 8))
        .await
        .expect("report");

    let names: Vec<(String, i64)> = cat
        .list_files(SRC)
        .await
        .expect("list")
        .into_iter()
        .map(|f| (f.name, f.seq))
        .collect();
    assert_eq!(
        names,
        [
            ("mysql-bin.index".to_owned(), -1),
            ("mysql-bin.000009".to_owned(), 9),
            ("mysql-bin.000010".to_owned(), 10),
            ("mysql-bin.000100".to_owned(), 100),
            ("mysql-bin.1000000".to_owned(), 1_000_000),
        ]
    );
    let reported: Vec<String> = cat
        .files_in_state(SRC, FileState::Reported)
        .await
        .expect("reported")
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(reported, ["mysql-bin.000009", "mysql-bin.000010"]);
    assert_eq!(
        cat.files_in_state(SRC, FileState::Active)
            .await
            .expect("active")
            .len(),
        3
    );
    assert_eq!(cat.list_files("other").await.expect("other").len(), 1);
    assert!(cat.list_files("nobody").await.expect("nobody").is_empty());
}

async fn gaps_are_recorded_deduplicated_and_per_source(engine: Engine) {
    let (cat, _db) = engine.open().await;
    assert!(cat.list_gaps(SRC).await.expect("empty").is_empty());
    cat.record_gap(
        SRC,
        Some("mysql-bin.000003"),
        Some("mysql-bin.000006"),
        "ERROR 1236: binlog purged",
    )
    .await
    .expect("gap");
    cat.record_gap(SRC, None, Some("mysql-bin.000001"), "started late")
        .await
        .expect("gap before all");
    cat.record_gap(SRC, Some("mysql-bin.000009"), None, "purged at tail")
        .await
        .expect("gap open end");
    // Same hole again: one row, reason replaced.
    cat.record_gap(
        SRC,
        Some("mysql-bin.000003"),
        Some("mysql-bin.000006"),
        "ERROR 1236 again",
    )
    .await
    .expect("gap again");
    cat.record_gap(SRC, None, Some("mysql-bin.000001"), "started late")
        .await
        .expect("gap before all again");
    cat.record_gap("other", None, None, "everything lost")
        .await
        .expect("other");

    let gaps = cat.list_gaps(SRC).await.expect("list");
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    let g = gaps
        .iter()
        .find(|g| g.after_file.as_deref() == Some("mysql-bin.000003"))
        .expect("middle gap");
    assert_eq!(g.before_file.as_deref(), Some("mysql-bin.000006"));
    assert_eq!(g.reason, "ERROR 1236 again");
    assert!(g.detected_at > 1_600_000_000);
    assert!(gaps.iter().all(|g| g.source == SRC));
    assert!(gaps
        .iter()
        .any(|g| g.after_file.is_none() && g.before_file.as_deref() == Some("mysql-bin.000001")));

    let other = cat.list_gaps("other").await.expect("other");
    assert_eq!(other.len(), 1);
    assert_eq!(
        (
            other[0].after_file.as_deref(),
            other[0].before_file.as_deref()
        ),
        (None, None)
    );
}

async fn corrupt_rows_are_errors_not_panics(engine: Engine) {
    let (cat, _db) = engine.open().await;
    cat.record_active(SRC, &progress("mysql-bin.000001", 4))
        .await
        .expect("record");
    // The CHECK constraint keeps bad values out through SQL too...
    let refused = sqlx::query("UPDATE binlog_files SET state = 'BOGUS'")
        .execute(cat.pool())
        .await;
    assert!(refused.is_err());
    // ...so bypass it the way a hand edit with checks disabled would.
    let bypass = match engine {
        Engine::Sqlite => "PRAGMA ignore_check_constraints = ON",
        Engine::Postgres => {
            "ALTER TABLE binlog_files DROP CONSTRAINT binlog_files_state_check, \
             DROP CONSTRAINT binlog_files_size_check"
        }
    };
    // SQLite's pragma holds for one connection only: the edits share one.
    let mut conn = cat.pool().acquire().await.expect("a connection");
    sqlx::query(bypass)
        .execute(&mut *conn)
        .await
        .expect("disable the checks");
    sqlx::query("UPDATE binlog_files SET size = -5")
        .execute(&mut *conn)
        .await
        .expect("bad size");
    let err = cat.list_files(SRC).await.unwrap_err();
    assert!(
        matches!(err, CatalogError::Corrupt { column: "size", .. }),
        "{err:?}"
    );
    sqlx::query("UPDATE binlog_files SET size = 5, state = 'BOGUS'")
        .execute(&mut *conn)
        .await
        .expect("bad state");
    drop(conn);
    let err = cat.get_file(SRC, "mysql-bin.000001").await.unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::Corrupt {
                column: "state",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("BOGUS"), "{err}");
}

async fn concurrent_writers_on_one_file(engine: Engine) {
    let db = engine.database();
    let cat = Catalog::open(&db.url).await.expect("open");
    let cat_b = Catalog::open(&db.url).await.expect("open second pool");
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let c = if t % 2 == 0 {
            cat.clone()
        } else {
            cat_b.clone()
        };
        tasks.push(tokio::spawn(async move {
            let src = format!("s{}", t % 2);
            c.upsert_source(&src, "u").await?;
            for i in 0..10u64 {
                // Files shared between tasks of one source race on insert.
                let name = format!("mysql-bin.{:06}", i);
                c.record_active(&src, &progress(&name, i * 100 + t)).await?;
                c.mark_reported(&src, &progress(&name, i * 100)).await?;
            }
            Ok::<(), CatalogError>(())
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("task");
    }
    for src in ["s0", "s1"] {
        let files = cat.list_files(src).await.expect("list");
        assert_eq!(files.len(), 10);
        assert!(files.iter().all(|f| f.state == FileState::Reported));
    }
    assert_eq!(cat.list_sources().await.expect("sources").len(), 2);
}

async fn archive_objects_record_once_list_in_file_order_and_chunks_retire(engine: Engine) {
    use catalog::{ArchiveKind, ArchiveObjectRow};
    let (cat, _db) = engine.open().await;
    let row = |file: &str, kind, start, end| ArchiveObjectRow {
        source: "db1".into(),
        file: file.into(),
        kind,
        start_offset: start,
        end_offset: end,
        object_key: format!("db1/binlogs/{file}/{start}-{end}"),
        sha256: "ab".repeat(32),
        stored_bytes: 10,
        stored_sha256: "cd".repeat(32),
        codec: "zstd".into(),
        key_id: None,
        epoch: 0,
        created_at: 0,
        deleted_at: None,
    };
    cat.record_archive_object(&row("mysql-bin.000010", ArchiveKind::Chunk, 0, 100))
        .await
        .unwrap();
    cat.record_archive_object(&row("mysql-bin.000010", ArchiveKind::Chunk, 100, 250))
        .await
        .unwrap();
    cat.record_archive_object(&row("mysql-bin.000009", ArchiveKind::File, 0, 900))
        .await
        .unwrap();
    // A retry after a crash records nothing new.
    let mut again = row("mysql-bin.000009", ArchiveKind::File, 0, 900);
    again.object_key = "other".into();
    cat.record_archive_object(&again).await.unwrap();
    let got = cat.list_archive_objects("db1").await.unwrap();
    let keys: Vec<(&str, ArchiveKind, u64)> = got
        .iter()
        .map(|o| (o.file.as_str(), o.kind, o.end_offset))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("mysql-bin.000009", ArchiveKind::File, 900),
            ("mysql-bin.000010", ArchiveKind::Chunk, 100),
            ("mysql-bin.000010", ArchiveKind::Chunk, 250),
        ]
    );
    assert_eq!(got[0].object_key, "db1/binlogs/mysql-bin.000009/0-900");
    assert!(got[0].created_at > 0);
    // The fingerprint moves with every change a shipper acts on, and only then.
    let fp = cat.archive_fingerprint("db1").await.unwrap();
    assert_eq!(cat.archive_fingerprint("db1").await.unwrap(), fp);
    assert_ne!(
        cat.archive_fingerprint("db2").await.unwrap(),
        fp,
        "another source's"
    );
    let whole = cat.file_object("db1", "mysql-bin.000009").await.unwrap();
    assert_eq!(
        whole.map(|o| (o.object_key, o.end_offset)),
        Some(("db1/binlogs/mysql-bin.000009/0-900".to_string(), 900))
    );
    assert!(
        cat.file_object("db1", "mysql-bin.000010")
            .await
            .unwrap()
            .is_none(),
        "chunks are not a whole object"
    );
    assert_eq!(
        cat.mark_chunks_deleted("db1", "mysql-bin.000010")
            .await
            .unwrap(),
        2
    );
    let after = cat.archive_fingerprint("db1").await.unwrap();
    assert_ne!(after, fp, "chunks marked deleted");
    assert_eq!(cat.list_archive_objects("db1").await.unwrap().len(), 1);
    assert!(cat.list_archive_objects("db2").await.unwrap().is_empty());
    // Deleted chunks still count as uploaded: 100 + 150 + 900 bytes sent, 900 + 250 held.
    assert_eq!(
        cat.archive_upload_totals("db1").await.unwrap(),
        (1_150, 1_150)
    );
    // A damaged whole object is forgotten (to be shipped again); a new one records.
    // The fingerprint is a counter, not sums: a row replaced by one of the same size,
    // kind and times still moves it.
    let replaced = cat.archive_fingerprint("db1").await.unwrap();
    cat.forget_file_object("db1", "mysql-bin.000009")
        .await
        .unwrap();
    assert!(cat.list_archive_objects("db1").await.unwrap().is_empty());
    cat.record_archive_object(&again).await.unwrap();
    assert_ne!(
        cat.archive_fingerprint("db1").await.unwrap(),
        replaced,
        "a whole object replaced"
    );
    let same = cat.archive_fingerprint("db1").await.unwrap();
    cat.record_archive_object(&again).await.unwrap();
    assert_eq!(
        cat.archive_fingerprint("db1").await.unwrap(),
        same,
        "recording a row the catalog holds changes nothing"
    );
    assert_eq!(
        cat.list_archive_objects("db1").await.unwrap()[0].object_key,
        "other"
    );
    // A scrub's repair marks the damaged whole object deleted before it removes it; if
    // its row is not forgotten (a crash), the file shipped again replaces it.
    assert_eq!(
        cat.mark_file_object_deleted("db1", "mysql-bin.000009")
            .await
            .unwrap(),
        1
    );
    assert!(cat.list_archive_objects("db1").await.unwrap().is_empty());
    let mut third = again.clone();
    third.object_key = "third".into();
    cat.record_archive_object(&third).await.unwrap();
    let live = cat.list_archive_objects("db1").await.unwrap();
    assert_eq!(
        live.iter()
            .map(|o| o.object_key.as_str())
            .collect::<Vec<_>>(),
        vec!["third"]
    );
    assert_eq!(live[0].deleted_at, None);
    // Retention forgets a file's row and its objects together; other files stay.
    cat.record_active("db1", &progress("mysql-bin.000009", 900))
        .await
        .unwrap();
    cat.record_active("db1", &progress("mysql-bin.000010", 250))
        .await
        .unwrap();
    cat.forget_file("db1", "mysql-bin.000009").await.unwrap();
    cat.forget_file("db1", "mysql-bin.000009").await.unwrap();
    assert!(cat
        .get_file("db1", "mysql-bin.000009")
        .await
        .unwrap()
        .is_none());
    assert!(cat
        .get_file("db1", "mysql-bin.000010")
        .await
        .unwrap()
        .is_some());
    assert!(cat.list_archive_objects("db1").await.unwrap().is_empty());
    let before = cat.archive_fingerprint("db1").await.unwrap();
    cat.record_archive_object(&row("mysql-bin.000010", ArchiveKind::File, 0, 250))
        .await
        .unwrap();
    assert_ne!(
        cat.archive_fingerprint("db1").await.unwrap(),
        before,
        "a whole object recorded"
    );
}

async fn an_imported_base_keeps_its_times_and_objects_and_imports_once(engine: Engine) {
    use catalog::{BackupRow, BackupState};
    use objstore::store::StoredObject;
    let (cat, _db) = engine.open().await;
    let row = BackupRow {
        id: "db1-20261201T000000Z-abcd".into(),
        source: "db1".into(),
        method: "physical".into(),
        tool: "mariabackup".into(),
        incremental: false,
        parent_id: None,
        state: BackupState::Completed,
        info: Some("rebuilt".into()),
        started_at: 1_000,
        finished_at: Some(1_100),
        bytes: 0,
        binlog_file: Some("mysql-bin.000003".into()),
        binlog_pos: Some(4_567),
        gtid_pos: Some("0-1-42".into()),
        consistent_at: Some(1_090),
        from_lsn: None,
        to_lsn: Some(99),
        server_version: None,
        tool_version: None,
        command: None,
        db_list: None,
        store_url: Some("file:///b".into()),
        state_changed_at: 1_100,
        objects: vec![
            StoredObject {
                key: "db1/x/a".into(),
                bytes: 10,
                sha256: "ab".repeat(32),
            },
            StoredObject {
                key: "db1/x/manifest.json".into(),
                bytes: 5,
                sha256: "cd".repeat(32),
            },
        ],
    };
    assert!(cat.import_backup(&row).await.unwrap());
    assert!(!cat.import_backup(&row).await.unwrap(), "imported once");
    let got = cat.get_backup(&row.id).await.unwrap().unwrap();
    assert_eq!(got.state, BackupState::Completed);
    assert_eq!((got.started_at, got.finished_at), (1_000, Some(1_100)));
    assert_eq!(got.bytes, 15, "the sum of the objects");
    assert_eq!(got.objects.len(), 2);
    assert_eq!(got.binlog_pos, Some(4_567));
}

async fn state_flow_and_objects_written_with_completion(engine: Engine) {
    let (c, _db) = engine.open().await;
    c.begin_backup(&new("b1")).await.unwrap();
    assert!(matches!(
        c.begin_backup(&new("b1")).await,
        Err(CatalogError::InvalidArgument { .. })
    ));
    c.set_backup_progress("b1", 5).await.unwrap();
    c.set_backup_details(
        "b1",
        Some("mariadb-backup"),
        Some("10.11.6-MariaDB"),
        None,
        None,
    )
    .await
    .unwrap();
    // None keeps what is there.
    c.set_backup_details(
        "b1",
        None,
        None,
        Some("10.11.6"),
        Some("mariadb-backup --backup"),
    )
    .await
    .unwrap();
    c.set_uploading("b1").await.unwrap();
    let r = c.get_backup("b1").await.unwrap().unwrap();
    assert_eq!(
        (
            r.tool.as_str(),
            r.server_version.as_deref(),
            r.tool_version.as_deref(),
            r.command.as_deref()
        ),
        (
            "mariadb-backup",
            Some("10.11.6-MariaDB"),
            Some("10.11.6"),
            Some("mariadb-backup --backup")
        )
    );
    let r = c.get_backup("b1").await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.bytes, r.objects.len()),
        (BackupState::Uploading, 5, 0)
    );
    let res = BackupResult {
        binlog_file: Some("mysql-bin.000002".into()),
        binlog_pos: Some(385),
        gtid_pos: Some("0-1-9".into()),
        consistent_at: Some(1_700_000_000),
        to_lsn: Some(44404),
        objects: vec![obj("db1/b1/a"), obj("db1/b1/b")],
    };
    c.complete_backup("b1", &res).await.unwrap();
    let r = c.get_backup("b1").await.unwrap().unwrap();
    assert_eq!(r.state, BackupState::Completed);
    assert_eq!(r.bytes, 20);
    assert_eq!(r.objects.len(), 2);
    assert_eq!(r.to_lsn, Some(44404));
    // Completed is final for these moves.
    assert!(c.fail_backup("b1", "x").await.is_err());
    assert!(c.complete_backup("b1", &res).await.is_err());
    assert_eq!(c.get_backup("b1").await.unwrap().unwrap().objects.len(), 2);
    c.expire_backup("b1", "retention").await.unwrap();
    c.mark_deleted("b1").await.unwrap();
    assert_eq!(
        c.get_backup("b1").await.unwrap().unwrap().state,
        BackupState::Deleted
    );
    assert!(matches!(
        c.set_uploading("nope").await,
        Err(CatalogError::NotFound { .. })
    ));
}

async fn interrupted_bases_become_error_and_skips_record_why(engine: Engine) {
    let (c, _db) = engine.open().await;
    c.begin_backup(&new("b1")).await.unwrap();
    c.begin_backup(&new("b2")).await.unwrap();
    c.set_uploading("b2").await.unwrap();
    c.begin_backup(&new("b3")).await.unwrap();
    c.skip_backup("b3", "replica_only and read_only=OFF")
        .await
        .unwrap();
    let mut failed = c.fail_interrupted_backups().await.unwrap();
    failed.sort();
    assert_eq!(failed, vec!["b1", "b2"]);
    let rows = c.list_backups("db1").await.unwrap();
    assert_eq!(rows.len(), 3);
    let b1 = rows.iter().find(|r| r.id == "b1").unwrap();
    assert_eq!(b1.state, BackupState::Error);
    assert!(b1.info.as_deref().unwrap_or("").contains("interrupted"));
    let b3 = rows.iter().find(|r| r.id == "b3").unwrap();
    assert_eq!(b3.state, BackupState::Skipped);
    assert!(b3.finished_at.is_some());
    assert!(c.list_backups("other").await.unwrap().is_empty());
}

async fn a_lease_has_one_owner_and_a_new_epoch_at_every_change_of_owner(engine: Engine) {
    use std::time::Duration;
    let (cat, _db) = engine.open().await;
    let long = Duration::from_secs(30);
    let a = cat
        .acquire_lease(SRC, "node-a", long)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(a.epoch, 1);
    assert!(a.expires_ms >= a.renewed_ms + 30_000 - 1, "{a:?}");
    // Held: nobody acquires it, not even its owner (that is a renewal).
    assert_eq!(cat.acquire_lease(SRC, "node-b", long).await.unwrap(), None);
    assert_eq!(cat.acquire_lease(SRC, "node-a", long).await.unwrap(), None);
    assert!(cat.lease_held(SRC, "node-a", 1).await.unwrap());
    assert!(!cat.lease_held(SRC, "node-b", 1).await.unwrap());
    assert!(!cat.lease_held(SRC, "node-a", 2).await.unwrap());
    assert!(!cat.lease_held("db2", "node-a", 1).await.unwrap());
    // Only the tenure itself renews.
    let renewed = cat
        .renew_lease(SRC, "node-a", 1, long)
        .await
        .unwrap()
        .expect("renew");
    assert_eq!(renewed.epoch, 1);
    assert!(renewed.expires_ms >= a.expires_ms);
    assert_eq!(cat.renew_lease(SRC, "node-b", 1, long).await.unwrap(), None);
    assert_eq!(cat.renew_lease(SRC, "node-a", 0, long).await.unwrap(), None);

    // A short tenure expires on the database's clock; then it is never renewed, and
    // another node takes it under the next epoch.
    let c = cat
        .acquire_lease("db2", "node-a", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("db2");
    assert_eq!(c.epoch, 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(!cat.lease_held("db2", "node-a", 1).await.unwrap());
    assert_eq!(
        cat.renew_lease("db2", "node-a", 1, long).await.unwrap(),
        None
    );
    let b = cat
        .acquire_lease("db2", "node-b", long)
        .await
        .unwrap()
        .expect("expired is free");
    assert_eq!(b.epoch, 2);
    let (now, leases) = cat.list_leases().await.unwrap();
    let db2 = leases.iter().find(|l| l.source == "db2").expect("db2 row");
    assert_eq!(db2.owner.as_deref(), Some("node-b"));
    assert_eq!(db2.previous_owner.as_deref(), Some("node-a"));
    assert_eq!(db2.previous_renewed_ms, Some(c.renewed_ms));
    assert!(db2.is_live(now));
    assert_eq!(
        leases.iter().map(|l| l.source.as_str()).collect::<Vec<_>>(),
        [SRC, "db2"]
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );

    // A release frees it at once; the old epoch is dead for good.
    assert!(!cat.release_lease("db2", "node-a", 2).await.unwrap());
    assert!(cat.release_lease("db2", "node-b", 2).await.unwrap());
    assert!(!cat.lease_held("db2", "node-b", 2).await.unwrap());
    assert_eq!(
        cat.renew_lease("db2", "node-b", 2, long).await.unwrap(),
        None
    );
    let (now, leases) = cat.list_leases().await.unwrap();
    let db2 = leases.iter().find(|l| l.source == "db2").expect("db2 row");
    assert!(!db2.is_live(now) && db2.owner.is_none());
    let again = cat
        .acquire_lease("db2", "node-a", long)
        .await
        .unwrap()
        .expect("released is free");
    assert_eq!(again.epoch, 3);
    let (_, leases) = cat.list_leases().await.unwrap();
    let db2 = leases.iter().find(|l| l.source == "db2").expect("db2 row");
    assert_eq!(db2.previous_owner.as_deref(), Some("node-b"));
}

async fn racing_acquisitions_leave_one_owner(engine: Engine) {
    use std::time::Duration;
    let db = engine.database();
    // Two pools, as two nodes would have.
    let pools = [
        Catalog::open(&db.url).await.expect("open"),
        Catalog::open(&db.url).await.expect("open second pool"),
    ];
    for round in 0..5 {
        let source = format!("race{round}");
        let mut tasks = Vec::new();
        for n in 0..8 {
            let cat = pools[n % 2].clone();
            let source = source.clone();
            tasks.push(tokio::spawn(async move {
                let node = format!("node-{n}");
                let got = cat
                    .acquire_lease(&source, &node, Duration::from_secs(30))
                    .await?;
                Ok::<_, CatalogError>(got.map(|g| (node, g.epoch)))
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            if let Some(w) = t.await.expect("join").expect("acquire") {
                winners.push(w);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (node, epoch) = &winners[0];
        assert_eq!(*epoch, 1);
        assert!(pools[0].lease_held(&source, node, 1).await.unwrap());
    }
}

async fn nodes_heartbeat_on_the_database_clock(engine: Engine) {
    let (cat, _db) = engine.open().await;
    let before = cat.db_now_ms().await.unwrap();
    assert!(before > 1_600_000_000_000, "{before} is not ms since 1970");
    let t1 = cat
        .node_heartbeat("node-b", "https://10.0.0.8:7480", true)
        .await
        .unwrap()
        .heartbeat_ms;
    let t0 = cat
        .node_heartbeat("node-a", "https://10.0.0.7:7480", true)
        .await
        .unwrap()
        .heartbeat_ms;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let b = cat
        .node_heartbeat("node-b", "https://10.0.0.9:7480", false)
        .await
        .unwrap();
    let t2 = b.heartbeat_ms;
    assert!(t0 >= before && t2 > t1, "{before} {t0} {t1} {t2}");
    assert!(!b.is_draining());
    let (now, nodes) = cat.list_nodes().await.unwrap();
    assert!(now >= t2);
    assert!(nodes
        .iter()
        .all(|n| n.is_alive(now, std::time::Duration::from_secs(5))));
    assert!(!nodes[0].is_alive(now + 10_000, std::time::Duration::from_secs(5)));
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["node-a", "node-b"]);
    let b = &nodes[1];
    assert_eq!(
        (b.advertise.as_str(), b.started_ms, b.heartbeat_ms),
        ("https://10.0.0.9:7480", t1, t2)
    );
    // Draining is a flag the node reads at its next heartbeat.
    assert!(cat.set_node_draining("node-b", true).await.unwrap());
    assert!(!cat.set_node_draining("node-z", true).await.unwrap());
    let b = cat
        .node_heartbeat("node-b", "https://10.0.0.9:7480", false)
        .await
        .unwrap();
    assert!(b.is_draining());
    assert!(cat.set_node_draining("node-b", false).await.unwrap());
    let (_, nodes) = cat.list_nodes().await.unwrap();
    assert!(nodes.iter().all(|n| !n.is_draining()));
}

async fn start_up_sweeps_touch_only_the_nodes_own_jobs(engine: Engine) {
    use catalog::verify::VerificationRow;
    let db = engine.database();
    let single = Catalog::open(&db.url).await.expect("open");
    let a = Catalog::open(&db.url)
        .await
        .expect("open")
        .with_node("node-a");
    let b = Catalog::open(&db.url)
        .await
        .expect("open")
        .with_node("node-b");
    assert_eq!(
        (single.node(), a.node(), b.node()),
        ("", "node-a", "node-b")
    );
    let run = |id: &str| VerificationRow {
        id: id.into(),
        source: SRC.into(),
        base_id: None,
        trigger_kind: "manual".into(),
        state: "running".into(),
        started_at: 1_000,
        finished_at: None,
        rto_seconds: None,
        error: None,
        report: "{}".into(),
    };
    for (cat, tag) in [(&single, "x"), (&a, "a"), (&b, "b")] {
        cat.begin_backup(&new(&format!("base-{tag}")))
            .await
            .unwrap();
        cat.save_pitr_job(&format!("pitr-{tag}"), SRC, "replaying", "{}")
            .await
            .unwrap();
        cat.save_verification(&run(&format!("verify-{tag}")))
            .await
            .unwrap();
    }
    // node-b restarts: only its own work is interrupted.
    assert_eq!(b.fail_interrupted_backups().await.unwrap(), ["base-b"]);
    let pitrs: Vec<String> = b
        .unfinished_pitr_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(pitrs, ["pitr-b"]);
    assert_eq!(
        b.cancel_running_verifications("restart").await.unwrap(),
        ["verify-b"]
    );
    for tag in ["a", "x"] {
        let base = a.get_backup(&format!("base-{tag}")).await.unwrap().unwrap();
        assert_eq!(base.state, BackupState::Doing, "base-{tag}");
        let v = a
            .get_verification(&format!("verify-{tag}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.state, "running", "verify-{tag}");
    }
    assert_eq!(
        b.get_verification("verify-b").await.unwrap().unwrap().state,
        "cancelled"
    );
    // Another node rewriting a job's report does not take the job over.
    a.save_pitr_job("pitr-b", SRC, "replaying", "{\"by\":\"a\"}")
        .await
        .unwrap();
    assert!(a
        .unfinished_pitr_jobs()
        .await
        .unwrap()
        .iter()
        .all(|j| j.id == "pitr-a"));
    // The single node's sweep finds the rows of before the fleet (node '').
    assert_eq!(single.fail_interrupted_backups().await.unwrap(), ["base-x"]);
}

async fn an_old_owner_cannot_record_an_archive_object(engine: Engine) {
    use catalog::{ArchiveKind, ArchiveObjectRow};
    use std::time::Duration;
    let (cat, _db) = engine.open().await;
    let row = |file: &str, epoch: i64| ArchiveObjectRow {
        source: SRC.into(),
        file: file.into(),
        kind: ArchiveKind::File,
        start_offset: 0,
        end_offset: 900,
        object_key: format!("db1/binlogs/{file}.e{epoch}"),
        sha256: "ab".repeat(32),
        stored_bytes: 10,
        stored_sha256: "cd".repeat(32),
        codec: "none".into(),
        key_id: None,
        epoch,
        created_at: 0,
        deleted_at: None,
    };
    let keys =
        |rows: Vec<ArchiveObjectRow>| rows.into_iter().map(|r| r.object_key).collect::<Vec<_>>();
    // No lease at all: a fenced row is refused.
    let err = cat
        .record_archive_object(&row("b.000001", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::Fenced { epoch: 1, .. }),
        "{err:?}"
    );
    // node-a holds epoch 1: its rows are recorded, a retry is a no-op.
    let a = cat
        .acquire_lease(SRC, "node-a", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("free");
    assert_eq!(a.epoch, 1);
    cat.record_archive_object(&row("b.000001", 1))
        .await
        .unwrap();
    cat.record_archive_object(&row("b.000001", 1))
        .await
        .unwrap();
    // node-a pauses past its lease; node-b takes the source under epoch 2.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let b = cat
        .acquire_lease(SRC, "node-b", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("expired");
    assert_eq!(b.epoch, 2);
    // The zombie wakes and tries to make its object canonical: refused, nothing recorded.
    let err = cat
        .record_archive_object(&row("b.000002", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CatalogError::Fenced {
                epoch: 1,
                op: "record_archive_object",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("must stop"), "{err}");
    cat.record_archive_object(&row("b.000002", 2))
        .await
        .unwrap();
    assert_eq!(
        keys(cat.list_archive_objects(SRC).await.unwrap()),
        ["db1/binlogs/b.000001.e1", "db1/binlogs/b.000002.e2"]
    );
    // A rebuild imports what the store holds, whatever its epoch, without a lease.
    cat.import_archive_object(&row("b.000004", 1))
        .await
        .unwrap();
    assert_eq!(cat.list_archive_objects(SRC).await.unwrap().len(), 3);
    // ... and raises the epoch above everything the store holds, so the next tenure
    // never reuses an epoch of an old key; a live tenure is left alone.
    assert_eq!(cat.raise_lease_epoch("db9", 7).await.unwrap(), 7);
    assert_eq!(cat.raise_lease_epoch("db9", 3).await.unwrap(), 7);
    let next = cat
        .acquire_lease("db9", "node-a", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free");
    assert_eq!(next.epoch, 8);
    assert_eq!(cat.raise_lease_epoch("db9", 20).await.unwrap(), 8);
    // Epoch 0, a single node's, is not fenced.
    let mut single = row("b.000003", 0);
    single.source = "solo".into();
    cat.record_archive_object(&single).await.unwrap();
    assert_eq!(cat.list_archive_objects("solo").await.unwrap().len(), 1);
}

async fn a_new_owner_adopts_the_tail_under_its_epoch_only(engine: Engine) {
    use catalog::{ArchiveKind, ArchiveObjectRow};
    use std::time::Duration;
    let (cat, _db) = engine.open().await;
    let lease = cat
        .acquire_lease(SRC, "node-a", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free");
    cat.mark_reported(SRC, &progress("b.000001", 900))
        .await
        .unwrap();
    cat.set_checked(SRC, "b.000001", FileState::Succ, "ok", Some("ab"), 900)
        .await
        .unwrap();
    cat.mark_reported(SRC, &progress("b.000002", 800))
        .await
        .unwrap();
    cat.record_active(SRC, &progress("b.000003", 700))
        .await
        .unwrap();
    cat.record_active(SRC, &progress("b.000004", 50))
        .await
        .unwrap();
    let chunk = |file: &str, start: u64, end: u64| ArchiveObjectRow {
        source: SRC.into(),
        file: file.into(),
        kind: ArchiveKind::Chunk,
        start_offset: start,
        end_offset: end,
        object_key: format!("db1/binlogs/{file}.chunks/{start}-{end}"),
        sha256: "ab".repeat(32),
        stored_bytes: end - start,
        stored_sha256: "cd".repeat(32),
        codec: "none".into(),
        key_id: None,
        epoch: lease.epoch,
        created_at: 0,
        deleted_at: None,
    };
    for (f, a, b) in [
        ("b.000003", 0, 100),
        ("b.000003", 100, 200),
        ("b.000003", 300, 400),
        ("b.000004", 0, 50),
    ] {
        cat.record_archive_object(&chunk(f, a, b)).await.unwrap();
    }
    let state = |cat: &Catalog| {
        let cat = cat.clone();
        async move {
            let files: Vec<(String, FileState, u64)> = cat
                .list_files(SRC)
                .await
                .unwrap()
                .into_iter()
                .map(|f| (f.name, f.state, f.size))
                .collect();
            let chunks: Vec<(String, u64)> = cat
                .list_archive_objects(SRC)
                .await
                .unwrap()
                .into_iter()
                .map(|o| (o.file, o.end_offset))
                .collect();
            (files, chunks)
        }
    };
    let before = state(&cat).await;
    // Another epoch is refused and changes nothing.
    let err = cat
        .adopt_tail(
            SRC,
            lease.epoch + 1,
            Some(("b.000003", 200)),
            &["b.000002".into()],
            &["b.000004".into()],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Fenced { .. }), "{err:?}");
    assert_eq!(state(&cat).await, before);
    cat.adopt_tail(
        SRC,
        lease.epoch,
        Some(("b.000003", 200)),
        &["b.000002".into()],
        &["b.000004".into()],
    )
    .await
    .unwrap();
    let (files, chunks) = state(&cat).await;
    assert_eq!(
        files,
        [
            ("b.000001".to_string(), FileState::Succ, 900),
            ("b.000002".to_string(), FileState::Fail, 800),
            ("b.000003".to_string(), FileState::Active, 200),
        ]
    );
    assert_eq!(
        chunks,
        [("b.000003".to_string(), 100), ("b.000003".to_string(), 200)]
    );
    let f2 = cat.get_file(SRC, "b.000002").await.unwrap().unwrap();
    assert!(
        f2.info.contains("pulled again from the primary"),
        "{}",
        f2.info
    );
}

async fn a_fenced_handle_writes_only_while_its_tenure_lasts(engine: Engine) {
    use std::time::Duration;
    let (cat, _db) = engine.open().await;
    cat.upsert_source(SRC, "mysql://repl@db1").await.unwrap();
    cat.upsert_source("db2", "mysql://repl@db2").await.unwrap();
    let a = cat
        .acquire_lease(SRC, "node-a", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("free");
    let zombie = cat.fenced(SRC, a.epoch);
    // While the tenure lasts, the fenced handle writes as the plain one does.
    zombie
        .record_active(SRC, &progress("b.000001", 100))
        .await
        .unwrap();
    zombie
        .mark_reported(SRC, &progress("b.000001", 200))
        .await
        .unwrap();
    zombie
        .set_checked(SRC, "b.000001", FileState::Succ, "ok", Some("ab"), 200)
        .await
        .unwrap();
    zombie
        .record_active(SRC, &progress("b.000002", 50))
        .await
        .unwrap();
    zombie
        .set_source_state(SRC, "streaming", None)
        .await
        .unwrap();
    // Bases: one taken, one running and one expired by retention during the tenure.
    zombie.begin_backup(&new("done")).await.unwrap();
    let result = catalog::BackupResult {
        binlog_file: Some("b.000001".into()),
        binlog_pos: Some(4),
        gtid_pos: None,
        consistent_at: Some(1_700_000_000),
        to_lsn: None,
        objects: vec![obj("db1/done/a")],
    };
    zombie.complete_backup("done", &result).await.unwrap();
    zombie.begin_backup(&new("running")).await.unwrap();
    zombie.set_backup_progress("running", 5).await.unwrap();
    zombie.begin_backup(&new("old")).await.unwrap();
    zombie.complete_backup("old", &result).await.unwrap();
    zombie.expire_backup("old", "retention").await.unwrap();
    // node-b takes the source after the expiry.
    tokio::time::sleep(Duration::from_millis(450)).await;
    cat.acquire_lease(SRC, "node-b", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("expired");
    let fenced =
        |e: CatalogError| matches!(e, CatalogError::Fenced { epoch, .. } if epoch == a.epoch);
    let before = cat.list_files(SRC).await.unwrap();
    let e = zombie
        .record_active(SRC, &progress("b.000002", 90))
        .await
        .unwrap_err();
    assert!(fenced(e));
    let e = zombie
        .record_active(SRC, &progress("b.000003", 10))
        .await
        .unwrap_err();
    assert!(fenced(e), "a new row is refused too");
    let e = zombie
        .mark_reported(SRC, &progress("b.000002", 90))
        .await
        .unwrap_err();
    assert!(fenced(e));
    let e = zombie
        .set_checked(SRC, "b.000001", FileState::Fail, "zombie", None, 1)
        .await
        .unwrap_err();
    assert!(fenced(e));
    let e = zombie
        .set_source_state(SRC, "stopped", None)
        .await
        .unwrap_err();
    assert!(fenced(e));
    let e = zombie
        .mark_chunks_deleted(SRC, "b.000001")
        .await
        .unwrap_err();
    assert!(fenced(e));
    let e = zombie
        .record_gap(SRC, Some("b.000002"), Some("b.000009"), "zombie")
        .await
        .unwrap_err();
    assert!(fenced(e));
    // Archive retention's record before its deletes, and its forgetting of the row.
    let e = zombie.mark_file_expired(SRC, "b.000001").await.unwrap_err();
    assert!(
        fenced(e),
        "a stale owner records no expiry, so it deletes nothing"
    );
    let e = zombie.forget_file(SRC, "b.000001").await.unwrap_err();
    assert!(fenced(e));
    // A scrub's repair: its record before the deletes, and the forgetting of the row.
    let e = zombie
        .mark_file_object_deleted(SRC, "b.000001")
        .await
        .unwrap_err();
    assert!(fenced(e), "a stale owner's scrub deletes nothing");
    let e = zombie
        .forget_file_object(SRC, "b.000001")
        .await
        .unwrap_err();
    assert!(fenced(e));
    // Base rows: a new base, its progress, details and completion, its failure, and
    // base retention's two steps are refused; the rows stay as they were.
    let bases = cat.list_backups(SRC).await.unwrap();
    let e = zombie.begin_backup(&new("late")).await.unwrap_err();
    assert!(fenced(e), "a stale owner starts no base");
    let e = zombie.set_backup_progress("running", 9).await.unwrap_err();
    assert!(fenced(e));
    let e = zombie
        .set_backup_details("running", Some("x"), None, None, None)
        .await
        .unwrap_err();
    assert!(fenced(e));
    let e = zombie
        .complete_backup("running", &result)
        .await
        .unwrap_err();
    assert!(fenced(e));
    let e = zombie.fail_backup("running", "zombie").await.unwrap_err();
    assert!(fenced(e));
    let e = zombie.expire_backup("done", "zombie").await.unwrap_err();
    assert!(
        fenced(e),
        "a stale owner expires no base, so it deletes none"
    );
    let e = zombie.mark_deleted("old").await.unwrap_err();
    assert!(fenced(e));
    assert_eq!(
        cat.list_backups(SRC).await.unwrap(),
        bases,
        "no base row changed"
    );
    assert!(cat.list_gaps(SRC).await.unwrap().is_empty(), "no false gap");
    assert_eq!(
        cat.list_files(SRC).await.unwrap(),
        before,
        "nothing changed"
    );
    assert_eq!(
        cat.get_source(SRC).await.unwrap().unwrap().state,
        "streaming"
    );
    // Another source, and the plain handle, are not fenced by it.
    zombie
        .set_source_state("db2", "streaming", None)
        .await
        .unwrap();
    cat.record_active(SRC, &progress("b.000002", 95))
        .await
        .unwrap();
    // Epoch 0 (a single node) fences nothing.
    cat.fenced(SRC, 0)
        .record_active(SRC, &progress("b.000002", 99))
        .await
        .unwrap();
}

async fn object_locks_come_due_and_only_the_owner_records_an_extension(engine: Engine) {
    use catalog::{ArchiveKind, ArchiveObjectRow};
    use std::time::Duration;
    let (cat, _db) = engine.open().await;
    let row = |source: &str, file: &str, epoch: i64| ArchiveObjectRow {
        source: source.into(),
        file: file.into(),
        kind: ArchiveKind::File,
        start_offset: 0,
        end_offset: 900,
        object_key: format!("{source}/binlogs/{file}.e{epoch}"),
        sha256: "ab".repeat(32),
        stored_bytes: 10,
        stored_sha256: "cd".repeat(32),
        codec: "none".into(),
        key_id: None,
        epoch,
        created_at: 0,
        deleted_at: None,
    };
    let files = |rows: Vec<ArchiveObjectRow>| rows.into_iter().map(|r| r.file).collect::<Vec<_>>();
    // Rows are created now (the catalog's clock); with the bucket's rule of 100 s their
    // locks end 100 s from now.
    let now = catalog::unix_now();
    for f in ["b.000001", "b.000002"] {
        cat.record_archive_object(&row("solo", f, 0)).await.unwrap();
    }
    let due = |at| cat.archive_locks_due("solo", at, 100, 10);
    assert_eq!(files(due(now + 200).await.unwrap()).len(), 2);
    assert!(due(now - 10).await.unwrap().is_empty());
    cat.set_archive_lock_until("solo", "b.000001", ArchiveKind::File, 900, now + 9000)
        .await
        .unwrap();
    assert_eq!(
        files(due(now + 200).await.unwrap()),
        ["b.000002"],
        "an extension recorded"
    );
    assert_eq!(
        files(due(now + 9100).await.unwrap()),
        ["b.000002", "b.000001"],
        "oldest lock first"
    );
    let one = cat
        .archive_locks_due("solo", now + 9100, 100, 1)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);

    // A stale owner's extension is refused; the owner's is recorded.
    let a = cat
        .acquire_lease(SRC, "node-a", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("free");
    cat.record_archive_object(&row(SRC, "b.000001", a.epoch))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let b = cat
        .acquire_lease(SRC, "node-b", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("expired");
    let err = cat
        .fenced(SRC, a.epoch)
        .set_archive_lock_until(SRC, "b.000001", ArchiveKind::File, 900, now + 9000)
        .await
        .unwrap_err();
    assert!(matches!(&err, CatalogError::Fenced { .. }), "{err:?}");
    let due_src = || cat.archive_locks_due(SRC, now + 200, 100, 10);
    assert_eq!(due_src().await.unwrap().len(), 1);
    cat.fenced(SRC, b.epoch)
        .set_archive_lock_until(SRC, "b.000001", ArchiveKind::File, 900, now + 9000)
        .await
        .unwrap();
    assert!(due_src().await.unwrap().is_empty());
}
