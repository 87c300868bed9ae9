use super::*;

const SRC: &str = "db1";

fn progress(name: &str, size: u64) -> FileProgress {
    FileProgress {
        name: name.to_owned(),
        size,
        ..FileProgress::default()
    }
}

fn file_url(dir: &tempfile::TempDir) -> String {
    // dir is absolute, so this is sqlite:///tmp/.../catalog.db
    format!("sqlite://{}", dir.path().join("catalog.db").display())
}

async fn memory() -> Catalog {
    Catalog::open("sqlite::memory:").await.expect("open memory")
}

#[test]
fn binlog_seq_parses_numeric_extension() {
    assert_eq!(binlog_seq("mysql-bin.000042"), Some(42));
    assert_eq!(binlog_seq("mariadb-bin.000001"), Some(1));
    assert_eq!(binlog_seq("host.name-bin.1000000"), Some(1_000_000));
    assert_eq!(binlog_seq("mysql-bin.index"), None);
    assert_eq!(binlog_seq("mysql-bin"), None);
    assert_eq!(binlog_seq("mysql-bin."), None);
    assert_eq!(binlog_seq("mysql-bin.+5"), None);
    assert_eq!(binlog_seq("mysql-bin.99999999999999999999999"), None);
    assert_eq!(seq_column("mysql-bin.index"), -1);
    assert_eq!(seq_column("mysql-bin.18446744073709551615"), -1);
    assert_eq!(seq_column("mysql-bin.000010"), 10);
}

#[test]
fn file_state_text_forms() {
    for st in FileState::ALL {
        assert_eq!(st.to_string().parse::<FileState>(), Ok(st));
        let json = serde_json::to_string(&st).expect("serialize");
        assert_eq!(json, format!("\"{st}\""));
        assert_eq!(serde_json::from_str::<FileState>(&json).expect("parse"), st);
    }
    assert_eq!(FileState::Succ.to_string(), "SUCC");
    let err = "succ".parse::<FileState>().unwrap_err();
    assert!(err.to_string().contains("\"succ\""), "{err}");
}

#[tokio::test]
async fn open_twice_on_same_file_keeps_data_and_uses_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = file_url(&dir);
    assert!(url.starts_with("sqlite:///"), "{url}");

    let cat = Catalog::open(&url).await.expect("first open");
    cat.upsert_source(SRC, "mysql://repl@127.0.0.1:3306")
        .await
        .expect("upsert");
    cat.record_active(SRC, &progress("mysql-bin.000001", 4))
        .await
        .expect("record");

    // A second handle on the same file while the first is still open (as a second
    // process would): migrations are skipped, data is shared.
    let cat2 = Catalog::open(&url).await.expect("second open");
    assert_eq!(cat2.list_files(SRC).await.expect("list").len(), 1);
    cat2.close().await;
    cat.close().await;

    let cat3 = Catalog::open(&url).await.expect("reopen");
    let src = cat3.get_source(SRC).await.expect("get").expect("present");
    assert_eq!(src.url, "mysql://repl@127.0.0.1:3306");
    assert_eq!(src.state, "new");
    let f = cat3
        .get_file(SRC, "mysql-bin.000001")
        .await
        .expect("get")
        .expect("present");
    assert_eq!((f.state, f.size, f.seq), (FileState::Active, 4, 1));

    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&cat3.pool)
        .await
        .expect("pragma");
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&cat3.pool)
        .await
        .expect("count");
    assert_eq!(
        applied,
        i64::try_from(MIGRATOR.iter().count()).expect("small")
    );
    cat3.close().await;
}

#[tokio::test]
async fn memory_catalog_survives_idle_connections() {
    let cat = memory().await;
    cat.upsert_source(SRC, "u").await.expect("upsert");
    // Many sequential calls through the single pooled connection see the same database.
    for i in 0..20u64 {
        cat.record_active(SRC, &progress("mysql-bin.000001", i))
            .await
            .expect("record");
    }
    let clone = cat.clone();
    let f = clone
        .get_file(SRC, "mysql-bin.000001")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(f.size, 19);
    // Two memory catalogs are independent.
    let other = memory().await;
    assert!(other.list_sources().await.expect("list").is_empty());
}

#[tokio::test]
async fn sources_upsert_state_and_error() {
    let cat = memory().await;
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

#[tokio::test]
async fn state_transitions_active_reported_fail_reported_succ() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = Catalog::open(&file_url(&dir)).await.expect("open");
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

#[tokio::test]
async fn mark_reported_inserts_absent_file() {
    let cat = memory().await;
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

#[tokio::test]
async fn set_checked_errors() {
    let cat = memory().await;
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

#[tokio::test]
async fn list_files_orders_by_seq_then_name() {
    let cat = memory().await;
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

#[tokio::test]
async fn gaps_are_recorded_deduplicated_and_per_source() {
    let cat = memory().await;
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

#[tokio::test]
async fn bad_urls_say_what_to_fix() {
    let dir = tempfile::tempdir().expect("tempdir");

    let missing = format!(
        "sqlite://{}",
        dir.path().join("no-such-dir/catalog.db").display()
    );
    let err = Catalog::open(&missing).await.unwrap_err();
    assert!(matches!(err, CatalogError::Open { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no-such-dir/catalog.db"), "{msg}");
    assert!(msg.contains("directory exists"), "{msg}");
    assert!(std::error::Error::source(&err).is_some());

    let err = Catalog::open("postgres://repl:s3cret@db.example:5432/catalog")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::Unsupported { scheme } if scheme == "postgres"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("\"postgres\""), "{msg}");
    assert!(msg.contains("sqlite:"), "{msg}");
    assert!(!msg.contains("s3cret") && !format!("{err:?}").contains("s3cret"));

    let err = Catalog::open("mysql://root@127.0.0.1/c").await.unwrap_err();
    assert!(matches!(err, CatalogError::Unsupported { .. }), "{err:?}");

    let err = Catalog::open("/var/lib/catalog.db").await.unwrap_err();
    assert!(matches!(err, CatalogError::BadUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("sqlite:///abs/path"), "{err}");

    for empty in ["sqlite:", "sqlite://"] {
        let err = Catalog::open(empty).await.unwrap_err();
        assert!(
            matches!(err, CatalogError::BadUrl { .. }),
            "{empty}: {err:?}"
        );
    }

    let bogus = format!(
        "sqlite://{}?bogus=1",
        dir.path().join("catalog.db").display()
    );
    let err = Catalog::open(&bogus).await.unwrap_err();
    assert!(matches!(err, CatalogError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("bogus"), "{err}");

    // Not an SQLite file.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).expect("write junk");
    let err = Catalog::open(&format!("sqlite://{}", junk.display()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::Open { .. } | CatalogError::Migrate { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn upper_case_scheme_and_memory_variants_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("SQLite://{}", dir.path().join("c.db").display());
    let cat = Catalog::open(&url).await.expect("upper-case scheme");
    cat.close().await;
    assert!(dir.path().join("c.db").exists());
    Catalog::open("sqlite://?mode=memory")
        .await
        .expect("mode=memory")
        .close()
        .await;
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let cat = memory().await;
    cat.record_active(SRC, &progress("mysql-bin.000001", 4))
        .await
        .expect("record");
    // The CHECK constraint keeps bad values out through SQL too...
    let refused = sqlx::query("UPDATE binlog_files SET state = 'BOGUS'")
        .execute(&cat.pool)
        .await;
    assert!(refused.is_err());
    // ...so bypass it the way a hand edit with checks disabled would.
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&cat.pool)
        .await
        .expect("pragma");
    sqlx::query("UPDATE binlog_files SET size = -5")
        .execute(&cat.pool)
        .await
        .expect("bad size");
    let err = cat.list_files(SRC).await.unwrap_err();
    assert!(
        matches!(err, CatalogError::Corrupt { column: "size", .. }),
        "{err:?}"
    );
    sqlx::query("UPDATE binlog_files SET size = 5, state = 'BOGUS'")
        .execute(&cat.pool)
        .await
        .expect("bad state");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = file_url(&dir);
    let cat = Catalog::open(&url).await.expect("open");
    let cat_b = Catalog::open(&url).await.expect("open second pool");
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

#[tokio::test]
async fn archive_objects_record_once_list_in_file_order_and_chunks_retire() {
    use crate::{ArchiveKind, ArchiveObjectRow};
    let cat = memory().await;
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
    assert_eq!(
        cat.mark_chunks_deleted("db1", "mysql-bin.000010")
            .await
            .unwrap(),
        2
    );
    assert_eq!(cat.list_archive_objects("db1").await.unwrap().len(), 1);
    assert!(cat.list_archive_objects("db2").await.unwrap().is_empty());
    // A damaged whole object is forgotten (to be shipped again); a new one records.
    cat.forget_file_object("db1", "mysql-bin.000009")
        .await
        .unwrap();
    assert!(cat.list_archive_objects("db1").await.unwrap().is_empty());
    cat.record_archive_object(&again).await.unwrap();
    assert_eq!(
        cat.list_archive_objects("db1").await.unwrap()[0].object_key,
        "other"
    );
}

#[tokio::test]
async fn an_imported_base_keeps_its_times_and_objects_and_imports_once() {
    use crate::{BackupRow, BackupState};
    use objstore::store::StoredObject;
    let cat = memory().await;
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
