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

/// SQLite only (opening twice and the migrations are tested on both engines in
/// `tests/tests/catalog.rs`): a file catalog runs in WAL mode with `synchronous=FULL`,
/// on every pooled connection.
#[tokio::test]
async fn a_file_catalog_uses_wal_and_full_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = file_url(&dir);
    assert!(url.starts_with("sqlite:///"), "{url}");
    let cat = Catalog::open(&url).await.expect("open");
    let mut conns = Vec::new();
    for _ in 0..2 {
        conns.push(cat.pool.acquire().await.expect("a connection"));
    }
    for conn in &mut conns {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut **conn)
            .await
            .expect("journal_mode");
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await
            .expect("synchronous");
        assert_eq!(sync, 2, "FULL");
    }
    drop(conns);
    cat.close().await;
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
    // A password as a query parameter, or a URL without //host: never shown.
    let err = Catalog::open("postgres://repl@127.0.0.1:1/catalog?sslmode=disable&password=s3cret")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::Open { url, .. } if url.contains("sslmode=disable")),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
    let err = Catalog::open("postgres:repl:s3cret@127.0.0.1/catalog")
        .await
        .unwrap_err();
    assert!(matches!(&err, CatalogError::BadUrl { .. }), "{err:?}");
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
