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
        i64::try_from(SQLITE_MIGRATOR.iter().count()).expect("small")
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

    // Nothing listens on port 1: the server is down. The password never shows.
    let err = Catalog::open("postgres://repl:s3cret@127.0.0.1:1/catalog")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::Open { url, .. } if url.contains("127.0.0.1:1")),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("password_env"), "{msg}");
    assert!(
        !msg.contains("s3cret") && !format!("{err:?}").contains("s3cret"),
        "{err:?}"
    );
    let err = Catalog::open_with_password("postgresql://repl@127.0.0.1:1/catalog", Some("s3cret"))
        .await
        .unwrap_err();
    assert!(matches!(&err, CatalogError::Open { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
    let err = Catalog::open_with_password("sqlite::memory:", Some("s3cret"))
        .await
        .unwrap_err();
    assert!(matches!(&err, CatalogError::BadUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("password_env"), "{err}");

    let err = Catalog::open("mysql://root:s3cret@127.0.0.1/c")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::Unsupported { scheme } if scheme == "mysql"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("\"mysql\"") && msg.contains("postgres:"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret") && !format!("{err:?}").contains("s3cret"));

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
