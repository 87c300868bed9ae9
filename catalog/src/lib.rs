//! Metadata store of binlog-server: sources, the binlog files archived for each, their
//! verification states, and the holes in the archive.
//!
//! # Tables
//!
//! - `sources` — one row per configured primary, keyed by `name`: the redacted URL, a
//!   free-text `state` set by the stream task (`"new"` when first inserted, then e.g.
//!   `"streaming"`, `"reconnecting"`, `"failed"`, `"stopped"`) and the `last_error`.
//! - `binlog_files` — one row per archived binlog file, keyed by `(source, name)` where
//!   `name` is the primary's file name. `seq` is [`binlog::binlog_seq`] of the name (or -1) and
//!   orders the files; `size` in bytes; first/last event time (unix seconds, from the
//!   events) and GTID; the verification `state`, `info` and SHA-256.
//! - `binlog_gaps` — holes in the archive: binlogs the primary no longer had when we
//!   asked, between `after_file` and `before_file` (either may be NULL).
//! - `base_backups`, `base_backup_objects` — base backups and their stored objects; see
//!   the [`backups`] module for their states.
//! - `archive_objects` — binlog files and chunks of open files in the archive store; see
//!   the [`archive`] module.
//! - `nodes`, `source_leases` — the nodes of a fleet and which one owns each source,
//!   under which epoch; see the [`leases`] module.
//!
//! # File states
//!
//! ```text
//!   (absent) --record_active--> ACTIVE --mark_reported--> REPORTED --set_checked--> SUCC
//!   (absent) --mark_reported--> REPORTED                          \--set_checked--> FAIL
//!   FAIL --mark_reported (file pulled again)--> REPORTED
//!   SUCC | FAIL --set_checked (re-check)--> SUCC | FAIL
//! ```
//!
//! - ACTIVE: the file the primary is still writing; we hold a durable prefix of it.
//! - REPORTED: closed and fully on disk; waiting for the checker.
//! - SUCC: verified; `sha256` holds the file's SHA-256 (lower-case hex).
//! - FAIL: a check failed; `info` says which and where.
//!
//! Any other move is refused with [`CatalogError::InvalidState`] and leaves the row as it
//! was. Every state change sets `state_changed_at`; reaching REPORTED sets `reported_at`,
//! every check sets `checked_at`.
//!
//! # Engines
//!
//! One statement text runs on both engines, through sqlx's `Any` driver:
//!
//! - **SQLite** (`sqlite:` URLs): the embedded default for one node.
//! - **PostgreSQL** (`postgres:` URLs): the catalog a fleet of nodes shares.
//!
//! The migrations are kept per engine (`migrations/sqlite/`, `migrations/postgres/`)
//! with the same versions, tables, columns and constraints. PostgreSQL's key columns
//! are `COLLATE "C"`, so `ORDER BY name` sorts bytes as SQLite does, whatever the
//! database's locale. The statements use only what both engines share:
//!
//! - `$n` placeholders (SQLite takes them too);
//! - `BIGINT`, `TEXT`, `VARCHAR(n)` and `DOUBLE PRECISION` columns, no autoincrement
//!   and no SQL date functions. **All timestamps are `BIGINT` unix seconds (UTC)**,
//!   computed by the application and bound as parameters;
//! - `ON CONFLICT (...) DO NOTHING` and `IS NOT DISTINCT FROM` (SQLite 3.24 and 3.39).
//!
//! Sizes are `u64` in Rust and `BIGINT` (i64) in the database, converted with checks.
//! Each transition is one conditional `UPDATE ... WHERE state IN (...)` (with the `state`
//! assignment written last), followed by an `INSERT` when the row is absent. A
//! unique-key violation from a racing writer is retried outside any transaction, since
//! PostgreSQL aborts a transaction at its first error.

pub mod archive;
pub mod backups;
mod error;
pub mod leases;
pub mod pitr;
mod takeover;
pub mod timelines;
pub mod verify;

use binlog::binlog_seq;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use sqlx::{Executor, FromRow};

pub use archive::{contiguous_end, ArchiveFingerprint, ArchiveKind, ArchiveObjectRow};
pub use backups::{BackupResult, BackupRow, BackupState, NewBackup};
pub use error::CatalogError;
pub use leases::{Granted, LeaseRow, NodeRow};
pub use pitr::PitrJobRow;
pub use timelines::{NewTimeline, TimelineRow};

/// Now in the catalog's unit of time: whole seconds since the Unix epoch, UTC (every
/// `*_at` column). The one clock of the service; tests that need another pass times in.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The SQLite schema migrations, embedded at build time from `catalog/migrations/sqlite/`.
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The PostgreSQL schema migrations, embedded at build time from
/// `catalog/migrations/postgres/`: the same versions, tables and columns as SQLite's.
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a statement waits for another writer's lock (SQLite's busy timeout,
/// PostgreSQL's `statement_timeout`) or for a pooled connection, before failing with
/// [`CatalogError::Query`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections kept to an on-disk catalog (SQLite serialises writers anyway; WAL lets
/// readers run beside the writer).
const MAX_FILE_CONNECTIONS: u32 = 4;

/// Connections kept to a PostgreSQL catalog by one node.
const MAX_POSTGRES_CONNECTIONS: u32 = 8;

/// Verification state of one archived binlog file; stored as `"ACTIVE"`, `"REPORTED"`,
/// `"SUCC"` or `"FAIL"` (also its `Display`, `FromStr` and serde form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FileState {
    /// Still being written by the primary; we hold a durable prefix.
    Active,
    /// Closed and fully on disk; waiting for the checker.
    Reported,
    /// Verified; SHA-256 recorded.
    Succ,
    /// A check failed; `info` says which. Pulled again, back to REPORTED.
    Fail,
}

impl FileState {
    /// All states, in lifecycle order.
    pub const ALL: [FileState; 4] = [
        FileState::Active,
        FileState::Reported,
        FileState::Succ,
        FileState::Fail,
    ];

    /// The stored form: `"ACTIVE"`, `"REPORTED"`, `"SUCC"` or `"FAIL"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Active => "ACTIVE",
            FileState::Reported => "REPORTED",
            FileState::Succ => "SUCC",
            FileState::Fail => "FAIL",
        }
    }
}

impl fmt::Display for FileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`FileState::from_str`]: the text is not one of the four stored forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown binlog file state {0:?} (expected ACTIVE, REPORTED, SUCC or FAIL)")]
pub struct ParseFileStateError(pub String);

impl FromStr for FileState {
    type Err = ParseFileStateError;

    /// Parses the stored form, exactly (upper case): `"ACTIVE"`, `"REPORTED"`, `"SUCC"`,
    /// `"FAIL"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseFileStateError(s.to_owned()))
    }
}

/// What the stream task knows about a binlog file it is writing or has closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProgress {
    /// The primary's file name, e.g. `"mysql-bin.000042"`.
    pub name: String,
    /// Durable size in bytes (for an ACTIVE file: the fsynced prefix).
    pub size: u64,
    /// Timestamp of the first real event, unix seconds; `None` = unknown (keeps the
    /// stored value on update).
    pub first_event_time: Option<i64>,
    /// Timestamp of the last stored event, unix seconds; `None` keeps the stored value.
    pub last_event_time: Option<i64>,
    /// First GTID in the file (`"0-1-50"` for MariaDB, `"uuid:n"` for MySQL); `None`
    /// keeps the stored value.
    pub first_gtid: Option<String>,
    /// Last GTID in the file; `None` keeps the stored value.
    pub last_gtid: Option<String>,
}

/// One row of `sources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRow {
    /// Source name (primary key).
    pub name: String,
    /// The primary's URL with the password removed.
    pub url: String,
    /// Free-text state set by the stream task (`"new"` until it sets one).
    pub state: String,
    /// Last error, `None` when cleared.
    pub last_error: Option<String>,
    /// When the row last changed, unix seconds.
    pub updated_at: i64,
}

/// One row of `binlog_files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BinlogFileRow {
    /// Source name.
    pub source: String,
    /// The primary's file name.
    pub name: String,
    /// [`binlog::binlog_seq`] of the name, or -1 if it has no numeric extension.
    pub seq: i64,
    /// Size in bytes.
    pub size: u64,
    /// Verification state.
    pub state: FileState,
    /// Checker's message (which check failed and where, for FAIL); empty if none.
    pub info: String,
    /// First event timestamp, unix seconds.
    pub first_event_time: Option<i64>,
    /// Last event timestamp, unix seconds.
    pub last_event_time: Option<i64>,
    /// First GTID in the file.
    pub first_gtid: Option<String>,
    /// Last GTID in the file.
    pub last_gtid: Option<String>,
    /// SHA-256 of the file, lower-case hex, once checked.
    pub sha256: Option<String>,
    /// When the row was inserted, unix seconds.
    pub created_at: i64,
    /// When the file last reached REPORTED, unix seconds.
    pub reported_at: Option<i64>,
    /// When the file was last checked, unix seconds.
    pub checked_at: Option<i64>,
    /// When `state` last changed (or the row was inserted), unix seconds.
    pub state_changed_at: i64,
}

/// One row of `binlog_gaps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GapRow {
    /// Source name.
    pub source: String,
    /// Last file we hold before the hole (`None`: the hole is before everything we hold).
    pub after_file: Option<String>,
    /// First file we hold after the hole (`None`: not known yet).
    pub before_file: Option<String>,
    /// Why the files are missing, e.g. the primary's error 1236 message.
    pub reason: String,
    /// When the hole was first recorded, unix seconds.
    pub detected_at: i64,
}

/// The `seq` column for a file name: [`binlog::binlog_seq`], or -1 if none or above `i64::MAX`.
fn seq_column(name: &str) -> i64 {
    binlog_seq(name)
        .and_then(|s| i64::try_from(s).ok())
        .unwrap_or(-1)
}

/// Converts a size for storage in a BIGINT column.
fn size_to_db(size: u64) -> Result<i64, CatalogError> {
    i64::try_from(size).map_err(|_| CatalogError::InvalidArgument {
        field: "size",
        value: size.to_string(),
        reason: "larger than the catalog's BIGINT column can hold (i64::MAX bytes)",
    })
}

fn query_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> CatalogError {
    move |source| CatalogError::Query { op, source }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn file_key(source: &str, name: &str) -> String {
    format!("{source}/{name}")
}

/// Columns of `binlog_files` in [`FileRaw`] order.
const FILE_COLUMNS: &str = "source, name, seq, size, state, info, first_event_time, \
     last_event_time, first_gtid, last_gtid, sha256, created_at, reported_at, checked_at, \
     state_changed_at";

/// `binlog_files` row as stored, before range and state checks.
#[derive(FromRow)]
struct FileRaw {
    source: String,
    name: String,
    seq: i64,
    size: i64,
    state: String,
    info: String,
    first_event_time: Option<i64>,
    last_event_time: Option<i64>,
    first_gtid: Option<String>,
    last_gtid: Option<String>,
    sha256: Option<String>,
    created_at: i64,
    reported_at: Option<i64>,
    checked_at: Option<i64>,
    state_changed_at: i64,
}

impl TryFrom<FileRaw> for BinlogFileRow {
    type Error = CatalogError;

    fn try_from(r: FileRaw) -> Result<Self, CatalogError> {
        let corrupt = |column, detail: String| CatalogError::Corrupt {
            table: "binlog_files",
            key: file_key(&r.source, &r.name),
            column,
            detail,
        };
        let size = u64::try_from(r.size)
            .map_err(|_| corrupt("size", format!("{} is negative", r.size)))?;
        let state = r
            .state
            .parse::<FileState>()
            .map_err(|e| corrupt("state", e.to_string()))?;
        Ok(BinlogFileRow {
            source: r.source,
            name: r.name,
            seq: r.seq,
            size,
            state,
            info: r.info,
            first_event_time: r.first_event_time,
            last_event_time: r.last_event_time,
            first_gtid: r.first_gtid,
            last_gtid: r.last_gtid,
            sha256: r.sha256,
            created_at: r.created_at,
            reported_at: r.reported_at,
            checked_at: r.checked_at,
            state_changed_at: r.state_changed_at,
        })
    }
}

/// Rows as [`BinlogFileRow`]s in binlog order: by timeline (`binlog::split_timeline`:
/// a later timeline's files after every file of an earlier one), then `seq` (-1 first),
/// then name. The statements order by `seq, name`; the timeline is sorted here.
fn convert_files(raw: Vec<FileRaw>) -> Result<Vec<BinlogFileRow>, CatalogError> {
    let mut v = raw
        .into_iter()
        .map(BinlogFileRow::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    v.sort_by(|a, b| {
        (binlog::split_timeline(&a.name).0, a.seq, &a.name).cmp(&(
            binlog::split_timeline(&b.name).0,
            b.seq,
            &b.name,
        ))
    });
    Ok(v)
}

/// `sources` row as stored.
#[derive(FromRow)]
struct SourceRaw {
    name: String,
    url: String,
    state: String,
    last_error: Option<String>,
    updated_at: i64,
}

impl From<SourceRaw> for SourceRow {
    fn from(r: SourceRaw) -> Self {
        SourceRow {
            name: r.name,
            url: r.url,
            state: r.state,
            last_error: r.last_error,
            updated_at: r.updated_at,
        }
    }
}

/// `binlog_gaps` row as stored.
#[derive(FromRow)]
struct GapRaw {
    source: String,
    after_file: Option<String>,
    before_file: Option<String>,
    reason: String,
    detected_at: i64,
}

/// Opens an SQLite catalog; `rest` is the URL after `sqlite:`. Returns the catalog and
/// the URL to show (an SQLite URL holds no password).
async fn open_sqlite(url: &str, rest: &str) -> Result<(Catalog, String), CatalogError> {
    let path_and_params = rest.strip_prefix("//").unwrap_or(rest);
    let (path, params) = path_and_params
        .split_once('?')
        .unwrap_or((path_and_params, ""));
    let in_memory = path == ":memory:" || params.split('&').any(|p| p == "mode=memory");
    if path.is_empty() && !in_memory {
        return Err(CatalogError::BadUrl {
            url: url.to_owned(),
            reason: "it names no database file",
        });
    }
    // sqlx strips only a lower-case scheme; `mode=rwc` creates a missing file.
    let mut normalized = format!("sqlite:{rest}");
    if !params.split('&').any(|p| p.starts_with("mode=")) {
        normalized.push(if params.is_empty() && !rest.contains('?') {
            '?'
        } else {
            '&'
        });
        normalized.push_str("mode=rwc");
    }
    let open_err = |source| CatalogError::Open {
        url: url.to_owned(),
        source,
    };
    let options = normalized.parse::<AnyConnectOptions>().map_err(open_err)?;
    // Reading the schema reads the file's header: a file that is not a database fails.
    probe(&options, "SELECT COUNT(*) FROM sqlite_master", url).await?;
    let busy_ms = BUSY_TIMEOUT.as_millis();
    let pool = AnyPoolOptions::new()
        .acquire_timeout(BUSY_TIMEOUT)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                conn.execute(format!("PRAGMA busy_timeout = {busy_ms}").as_str())
                    .await?;
                conn.execute("PRAGMA synchronous = FULL").await?;
                if !in_memory {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                }
                Ok(())
            })
        });
    let pool = if in_memory {
        // A new connection would open a new, empty in-memory database; one long-lived
        // connection keeps the one database alive.
        pool.max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        pool.max_connections(MAX_FILE_CONNECTIONS)
    };
    let pool = pool.connect_with(options).await.map_err(open_err)?;
    let catalog = Catalog {
        pool,
        calls: Arc::default(),
        backend: Backend::Sqlite,
        node: Arc::from(""),
        fence: None,
    };
    Ok((catalog, url.to_owned()))
}

/// Opens one connection and runs `check` on it, before any pool exists: a pool retries
/// a failing connection until its acquire timeout, and a wrong URL, a file that is not a
/// database or a server that is down is better said at once. `shown` is the URL for
/// the error, without a password.
async fn probe(options: &AnyConnectOptions, check: &str, shown: &str) -> Result<(), CatalogError> {
    let open_err = |source| CatalogError::Open {
        url: shown.to_owned(),
        source,
    };
    let mut conn = sqlx::ConnectOptions::connect(options)
        .await
        .map_err(open_err)?;
    let checked = conn.execute(check).await.map(|_| ());
    let _ = sqlx::Connection::close(conn).await;
    checked.map_err(open_err)
}

/// Opens a PostgreSQL catalog; `rest` is the URL after its scheme. Returns the catalog
/// and the URL to show: the password removed.
async fn open_postgres(
    rest: &str,
    password: Option<&str>,
) -> Result<(Catalog, String), CatalogError> {
    let normalized = format!("postgres:{rest}");
    let mut options =
        normalized
            .parse::<AnyConnectOptions>()
            .map_err(|source| CatalogError::Open {
                url: "postgres:(unparsable URL)".to_owned(),
                source,
            })?;
    let mut shown_url = options.database_url.clone();
    if shown_url.cannot_be_a_base() || shown_url.host_str().is_none_or(str::is_empty) {
        // Never shown: without `//host` the whole rest may be `user:password@...`.
        return Err(CatalogError::BadUrl {
            url: "postgres:(without //host)".to_owned(),
            reason: "it names no host: write postgres://user@host:5432/dbname",
        });
    }
    let _ = shown_url.set_password(None);
    // libpq-style `?password=` is taken by the driver too; never show it.
    let kept: Vec<(String, String)> = shown_url
        .query_pairs()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("password"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        shown_url.set_query(None);
    } else {
        shown_url.query_pairs_mut().clear().extend_pairs(kept);
    }
    let shown = shown_url.to_string();
    if let Some(p) = password {
        if options.database_url.set_password(Some(p)).is_err() {
            return Err(CatalogError::BadUrl {
                url: shown,
                reason: "it cannot carry a user and password (no host)",
            });
        }
    }
    probe(&options, "SELECT 1", &shown).await?;
    let statement_timeout_ms = BUSY_TIMEOUT.as_millis();
    let pool = AnyPoolOptions::new()
        .max_connections(MAX_POSTGRES_CONNECTIONS)
        .acquire_timeout(BUSY_TIMEOUT)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                conn.execute(format!("SET statement_timeout = {statement_timeout_ms}").as_str())
                    .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|source| CatalogError::Open {
            url: shown.clone(),
            source,
        })?;
    let catalog = Catalog {
        pool,
        calls: Arc::default(),
        backend: Backend::Postgres,
        node: Arc::from(""),
        fence: None,
    };
    Ok((catalog, shown))
}

/// Which database engine holds a catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (or memory) of this process: the embedded default for one node.
    Sqlite,
    /// A PostgreSQL database shared by the nodes of a fleet.
    Postgres,
}

impl Backend {
    /// `"sqlite"` or `"postgres"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Handle to the catalog database: a connection pool, cheap to clone and share between
/// tasks. All methods are safe to call concurrently and to retry.
#[derive(Clone, Debug)]
pub struct Catalog {
    pool: AnyPool,
    /// Calls made through this handle and its clones ([`Catalog::calls`]).
    calls: Arc<AtomicU64>,
    backend: Backend,
    /// The node whose jobs this handle creates and sweeps ([`Catalog::with_node`]).
    node: Arc<str>,
    /// The tenure that fences this handle's writes of one source ([`Catalog::fenced`]).
    fence: Option<(Arc<str>, i64)>,
}

impl Catalog {
    /// Opens (creating if missing) the catalog at `url` and brings its schema up to date;
    /// [`open_with_password`](Catalog::open_with_password) without a password.
    ///
    /// # Errors
    ///
    /// As [`open_with_password`](Catalog::open_with_password).
    pub async fn open(url: &str) -> Result<Catalog, CatalogError> {
        Self::open_with_password(url, None).await
    }

    /// Opens the catalog at `url` and brings its schema up to date (the migrations of
    /// its engine, embedded at build time; applied migrations are skipped, so every node
    /// of a fleet and every restart may run them).
    ///
    /// - **SQLite**: `"sqlite:///abs/path/catalog.db"`, `"sqlite:relative/path.db"`
    ///   (relative to the working directory) or `"sqlite::memory:"` (private to this
    ///   handle and its clones, gone when the last one is dropped). SQLite query
    ///   parameters such as `?mode=ro` are passed on. The file is created if missing (its
    ///   directory is not), put in WAL mode with `synchronous=FULL` (a committed state
    ///   change survives a power cut), and a busy timeout of 10 s.
    /// - **PostgreSQL**: `"postgres://user@host:5432/dbname"` (or `postgresql://`), with
    ///   libpq-style parameters such as `?sslmode=verify-full` passed on. `password`, when
    ///   given, replaces any password in the URL; errors and logs show the URL without
    ///   it. Every statement is limited to 10 s (`statement_timeout`), so no call waits
    ///   on a lock for longer.
    ///
    /// # Errors
    ///
    /// - [`CatalogError::BadUrl`]: no `scheme:` prefix, no database path, or a password
    ///   for an SQLite catalog.
    /// - [`CatalogError::Unsupported`]: a scheme other than `sqlite` and `postgres` (e.g.
    ///   `mysql`); only the scheme is reported.
    /// - [`CatalogError::Open`]: unknown URL parameter, missing directory, no permission,
    ///   not an SQLite database; PostgreSQL down, unknown database, authentication
    ///   refused.
    /// - [`CatalogError::Migrate`]: the schema cannot be applied, or the database was
    ///   written by a build with migrations this one does not know.
    pub async fn open_with_password(
        url: &str,
        password: Option<&str>,
    ) -> Result<Catalog, CatalogError> {
        sqlx::any::install_default_drivers();
        let Some((scheme, rest)) = url.split_once(':') else {
            return Err(CatalogError::BadUrl {
                url: url.to_owned(),
                reason: "it has no scheme",
            });
        };
        let (catalog, shown) = if scheme.eq_ignore_ascii_case("sqlite") {
            if password.is_some() {
                return Err(CatalogError::BadUrl {
                    url: url.to_owned(),
                    reason: "an SQLite catalog takes no password (password_env is for postgres)",
                });
            }
            open_sqlite(url, rest).await?
        } else if scheme.eq_ignore_ascii_case("postgres")
            || scheme.eq_ignore_ascii_case("postgresql")
        {
            open_postgres(rest, password).await?
        } else {
            return Err(CatalogError::Unsupported {
                scheme: scheme.to_owned(),
            });
        };
        let migrator = match catalog.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator
            .run(&catalog.pool)
            .await
            .map_err(|source| CatalogError::Migrate {
                url: shown.clone(),
                source,
            })?;
        tracing::debug!(url = %shown, backend = catalog.backend.as_str(), "catalog opened");
        Ok(catalog)
    }

    /// Catalog calls made since the catalog was opened, by this handle and every handle
    /// derived from it ([`with_node`](Catalog::with_node), [`fenced`](Catalog::fenced)):
    /// one per statement outside a transaction, one per transaction. The figure behind
    /// the `catalog_calls` metric (a per-source cost of issue 21's item 7).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// This handle with `node` as the node that runs the jobs it creates (bases, PITRs,
    /// verifications: their `node` column), and whose jobs its start-up sweeps
    /// ([`fail_interrupted_backups`](Catalog::fail_interrupted_backups),
    /// [`unfinished_pitr_jobs`](Catalog::unfinished_pitr_jobs),
    /// [`cancel_running_verifications`](Catalog::cancel_running_verifications)) touch.
    /// A handle from [`open`](Catalog::open) is node `""`, a single node's.
    pub fn with_node(mut self, node: &str) -> Catalog {
        self.node = Arc::from(node);
        self
    }

    /// A handle whose writes of `source`'s binlog rows and state are fenced by tenure
    /// `epoch` of its lease: [`record_active`](Catalog::record_active),
    /// [`mark_reported`](Catalog::mark_reported), [`set_checked`](Catalog::set_checked),
    /// [`set_source_state`](Catalog::set_source_state),
    /// [`record_gap`](Catalog::record_gap),
    /// [`mark_chunks_deleted`](Catalog::mark_chunks_deleted),
    /// [`mark_file_expired`](Catalog::mark_file_expired) and
    /// [`forget_file`](Catalog::forget_file) each check, in their own
    /// statement, that the tenure is live on the database's clock, and return
    /// [`CatalogError::Fenced`] (nothing written) when it is over. A lease owner gives
    /// this handle to every task of its tenure. Epoch 0 (a single node) fences nothing.
    ///
    /// So each of those methods may also fail with [`CatalogError::Fenced`] on such a
    /// handle (nothing written: the caller stops writing for the source).
    pub fn fenced(&self, source: &str, epoch: i64) -> Catalog {
        let mut c = self.clone();
        c.fence = (epoch >= 1).then(|| (Arc::from(source), epoch));
        c
    }

    /// The fence of a statement writing `source`'s rows, whose source is bound as
    /// `source_param` (e.g. `"$6"`): `" AND EXISTS (...)"`, or `""` when this handle
    /// fences nothing for `source`.
    fn fence_clause(&self, source: &str, source_param: &str) -> String {
        match &self.fence {
            Some((s, epoch)) if &**s == source => format!(
                " AND {}",
                leases::fence_sql(self.backend, source_param, &epoch.to_string())
            ),
            _ => String::new(),
        }
    }

    /// The row source of an `INSERT ... {rows}` of `values` (placeholder list, e.g.
    /// `"$1, $2"`): `VALUES (...)`, or on a handle fenced for `source` (its name bound to
    /// `source_param`) a `SELECT ... WHERE` the tenure is live, so that the row goes in
    /// only while it is.
    fn fenced_values(&self, source: &str, source_param: &str, values: &str) -> String {
        let fence = self.fence_clause(source, source_param);
        if fence.is_empty() {
            format!("VALUES ({values})")
        } else {
            format!("SELECT {values} WHERE 1 = 1{fence}")
        }
    }

    /// After a fenced statement changed nothing: [`CatalogError::Fenced`] when the
    /// handle's tenure of `source` is over (that is why), `Ok` otherwise.
    async fn refuse_if_fenced(&self, source: &str, op: &'static str) -> Result<(), CatalogError> {
        match &self.fence {
            Some((s, epoch)) if &**s == source && !self.tenure_live(source, *epoch).await? => {
                tracing::warn!(
                    source,
                    epoch,
                    op,
                    "catalog write refused: this writer's lease is over"
                );
                Err(CatalogError::Fenced {
                    source_name: source.to_string(),
                    epoch: *epoch,
                    op,
                })
            }
            _ => Ok(()),
        }
    }

    /// The node this handle runs jobs as (`""` for a single node).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The engine this catalog lives in.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for diagnostics and tests that need raw SQL. Writes through
    /// it bypass every state check of this crate; statements must use `$1`-style
    /// placeholders, which both engines accept. Every use counts as one call in
    /// [`calls`](Catalog::calls): the crate's own statements go through it too (one per
    /// statement outside a transaction, one per transaction).
    pub fn pool(&self) -> &AnyPool {
        self.calls.fetch_add(1, Ordering::Relaxed);
        &self.pool
    }

    /// Closes the pool, waiting for connections in use to be returned. Dropping the
    /// handle also works; this makes the moment explicit (e.g. before removing the file).
    pub async fn close(self) {
        self.pool.close().await;
    }

    /// Inserts the source `name` (state `"new"`, no error) or, if present, updates its
    /// URL. `url_redacted` must not contain a password. Sets `updated_at` to now.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if a statement fails.
    pub async fn upsert_source(&self, name: &str, url_redacted: &str) -> Result<(), CatalogError> {
        const OP: &str = "upsert_source";
        for _ in 0..2 {
            let ts = unix_now();
            let updated =
                sqlx::query("UPDATE sources SET url = $1, updated_at = $2 WHERE name = $3")
                    .bind(url_redacted)
                    .bind(ts)
                    .bind(name)
                    .execute(self.pool())
                    .await
                    .map_err(query_err(OP))?;
            if updated.rows_affected() > 0 {
                return Ok(());
            }
            let inserted = sqlx::query(
                "INSERT INTO sources (name, url, state, last_error, created_at, updated_at) \
                 VALUES ($1, $2, 'new', NULL, $3, $4)",
            )
            .bind(name)
            .bind(url_redacted)
            .bind(ts)
            .bind(ts)
            .execute(self.pool())
            .await;
            match inserted {
                Ok(_) => return Ok(()),
                Err(e) if is_unique_violation(&e) => continue, // raced another insert
                Err(e) => return Err(query_err(OP)(e)),
            }
        }
        Err(CatalogError::Conflict {
            op: OP,
            key: name.to_owned(),
        })
    }

    /// Sets the source's free-text `state` (e.g. `"streaming"`, `"reconnecting"`,
    /// `"failed"`, `"stopped"`) and `last_error` (`None` clears it); `updated_at` = now.
    ///
    /// # Errors
    ///
    /// [`CatalogError::NotFound`] if the source was never [`upsert_source`]d;
    /// [`CatalogError::Query`] if the statement fails.
    ///
    /// [`upsert_source`]: Catalog::upsert_source
    pub async fn set_source_state(
        &self,
        name: &str,
        state: &str,
        last_error: Option<&str>,
    ) -> Result<(), CatalogError> {
        let updated = sqlx::query(&format!(
            "UPDATE sources SET state = $1, last_error = $2, updated_at = $3 WHERE name = $4{}",
            self.fence_clause(name, "$4")
        ))
        .bind(state)
        .bind(last_error)
        .bind(unix_now())
        .bind(name)
        .execute(self.pool())
        .await
        .map_err(query_err("set_source_state"))?;
        if updated.rows_affected() == 0 {
            self.refuse_if_fenced(name, "set_source_state").await?;
            return Err(CatalogError::NotFound {
                what: "source",
                key: name.to_owned(),
            });
        }
        Ok(())
    }

    /// The source `name`, or `None` if absent.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn get_source(&self, name: &str) -> Result<Option<SourceRow>, CatalogError> {
        let row = sqlx::query_as::<_, SourceRaw>(
            "SELECT name, url, state, last_error, updated_at FROM sources WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(query_err("get_source"))?;
        Ok(row.map(SourceRow::from))
    }

    /// All sources, ordered by name.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn list_sources(&self) -> Result<Vec<SourceRow>, CatalogError> {
        let rows = sqlx::query_as::<_, SourceRaw>(
            "SELECT name, url, state, last_error, updated_at FROM sources ORDER BY name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_err("list_sources"))?;
        Ok(rows.into_iter().map(SourceRow::from).collect())
    }

    /// Records progress on the file being written.
    ///
    /// - Absent: inserted as ACTIVE (`created_at` = `state_changed_at` = now).
    /// - ACTIVE: `size` is set; each of first/last event time and GTID is set when
    ///   `Some`, kept when `None`.
    /// - Any other state: the state and other fields are left alone, only `size` is
    ///   updated (a late progress report after the file was closed).
    ///
    /// # Errors
    ///
    /// [`CatalogError::InvalidArgument`] if `file.size` exceeds `i64::MAX`;
    /// [`CatalogError::Query`] if a statement fails.
    pub async fn record_active(
        &self,
        source: &str,
        file: &FileProgress,
    ) -> Result<(), CatalogError> {
        const OP: &str = "record_active";
        let size = size_to_db(file.size)?;
        for _ in 0..2 {
            let updated = sqlx::query(&format!(
                "UPDATE binlog_files SET size = $1, \
                 first_event_time = COALESCE($2, first_event_time), \
                 last_event_time = COALESCE($3, last_event_time), \
                 first_gtid = COALESCE($4, first_gtid), \
                 last_gtid = COALESCE($5, last_gtid) \
                 WHERE source = $6 AND name = $7 AND state = 'ACTIVE'{}",
                self.fence_clause(source, "$6")
            ))
            .bind(size)
            .bind(file.first_event_time)
            .bind(file.last_event_time)
            .bind(file.first_gtid.as_deref())
            .bind(file.last_gtid.as_deref())
            .bind(source)
            .bind(&file.name)
            .execute(self.pool())
            .await
            .map_err(query_err(OP))?;
            if updated.rows_affected() > 0 {
                return Ok(());
            }
            self.refuse_if_fenced(source, OP).await?;
            let updated = sqlx::query(&format!(
                "UPDATE binlog_files SET size = $1 WHERE source = $2 AND name = $3{}",
                self.fence_clause(source, "$2")
            ))
            .bind(size)
            .bind(source)
            .bind(&file.name)
            .execute(self.pool())
            .await
            .map_err(query_err(OP))?;
            if updated.rows_affected() > 0 {
                tracing::debug!(source, file = %file.name, size, "size of a closed file updated");
                return Ok(());
            }
            let ts = unix_now();
            let inserted = self
                .insert_file(source, file, size, FileState::Active, None, ts)
                .await;
            match inserted {
                Ok(0) => self.refuse_if_fenced(source, OP).await?,
                Ok(_) => return Ok(()),
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(query_err(OP)(e)),
            }
        }
        Err(CatalogError::Conflict {
            op: OP,
            key: file_key(source, &file.name),
        })
    }

    /// Moves the file to REPORTED (closed and complete on disk) with its final size and
    /// progress fields (`None` fields keep the stored value).
    ///
    /// - Absent or ACTIVE → REPORTED; `reported_at` = `state_changed_at` = now.
    /// - FAIL → REPORTED (the file was pulled again): also clears `info` and `sha256`,
    ///   since they described the old bytes.
    /// - REPORTED → REPORTED: idempotent; fields updated, timestamps kept.
    ///
    /// # Errors
    ///
    /// [`CatalogError::InvalidState`] if the file is SUCC (row unchanged);
    /// [`CatalogError::InvalidArgument`] if `file.size` exceeds `i64::MAX`;
    /// [`CatalogError::Query`] if a statement fails.
    pub async fn mark_reported(
        &self,
        source: &str,
        file: &FileProgress,
    ) -> Result<(), CatalogError> {
        const OP: &str = "mark_reported";
        let size = size_to_db(file.size)?;
        for _ in 0..2 {
            let ts = unix_now();
            // `state` is assigned last: MySQL evaluates SET left to right with new values.
            let updated = sqlx::query(&format!(
                "UPDATE binlog_files SET size = $1, \
                 first_event_time = COALESCE($2, first_event_time), \
                 last_event_time = COALESCE($3, last_event_time), \
                 first_gtid = COALESCE($4, first_gtid), \
                 last_gtid = COALESCE($5, last_gtid), \
                 info = CASE WHEN state = 'FAIL' THEN '' ELSE info END, \
                 sha256 = CASE WHEN state = 'FAIL' THEN NULL ELSE sha256 END, \
                 reported_at = CASE WHEN state = 'REPORTED' THEN reported_at ELSE $6 END, \
                 state_changed_at = CASE WHEN state = 'REPORTED' THEN state_changed_at ELSE $7 END, \
                 state = 'REPORTED' \
                 WHERE source = $8 AND name = $9 AND state IN ('ACTIVE', 'REPORTED', 'FAIL'){}",
                self.fence_clause(source, "$8")
            ))
            .bind(size)
            .bind(file.first_event_time)
            .bind(file.last_event_time)
            .bind(file.first_gtid.as_deref())
            .bind(file.last_gtid.as_deref())
            .bind(ts)
            .bind(ts)
            .bind(source)
            .bind(&file.name)
            .execute(self.pool())
            .await
            .map_err(query_err(OP))?;
            if updated.rows_affected() > 0 {
                tracing::debug!(source, file = %file.name, size, "binlog file REPORTED");
                return Ok(());
            }
            self.refuse_if_fenced(source, OP).await?;
            if let Some(row) = self.get_file(source, &file.name).await? {
                return Err(CatalogError::InvalidState {
                    source_name: source.to_owned(),
                    file: file.name.clone(),
                    from: Some(row.state),
                    to: FileState::Reported,
                });
            }
            let inserted = self
                .insert_file(source, file, size, FileState::Reported, Some(ts), ts)
                .await;
            match inserted {
                Ok(0) => self.refuse_if_fenced(source, OP).await?,
                Ok(_) => {
                    tracing::debug!(source, file = %file.name, size, "binlog file REPORTED");
                    return Ok(());
                }
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(query_err(OP)(e)),
            }
        }
        Err(CatalogError::Conflict {
            op: OP,
            key: file_key(source, &file.name),
        })
    }

    /// Records a check result: REPORTED, SUCC or FAIL → `state` (SUCC or FAIL), with the
    /// checker's `info`, the file's SHA-256 (lower-case hex; `None` stores NULL) and the
    /// checked `size` in bytes; `checked_at` = now, and `state_changed_at` = now if the
    /// state changes.
    ///
    /// # Errors
    ///
    /// - [`CatalogError::InvalidArgument`] if `state` is ACTIVE or REPORTED, or `size`
    ///   exceeds `i64::MAX`.
    /// - [`CatalogError::NotFound`] if the file is not in the catalog.
    /// - [`CatalogError::InvalidState`] if the file is still ACTIVE (row unchanged).
    /// - [`CatalogError::Query`] if a statement fails.
    pub async fn set_checked(
        &self,
        source: &str,
        name: &str,
        state: FileState,
        info: &str,
        sha256_hex: Option<&str>,
        size: u64,
    ) -> Result<(), CatalogError> {
        const OP: &str = "set_checked";
        if !matches!(state, FileState::Succ | FileState::Fail) {
            return Err(CatalogError::InvalidArgument {
                field: "state",
                value: state.to_string(),
                reason: "a check result must be SUCC or FAIL",
            });
        }
        let size = size_to_db(size)?;
        for _ in 0..2 {
            let ts = unix_now();
            // `state` is assigned last: MySQL evaluates SET left to right with new values.
            let updated = sqlx::query(&format!(
                "UPDATE binlog_files SET size = $1, info = $2, sha256 = $3, checked_at = $4, \
                 state_changed_at = CASE WHEN state = $5 THEN state_changed_at ELSE $6 END, \
                 state = $7 \
                 WHERE source = $8 AND name = $9 AND state IN ('REPORTED', 'SUCC', 'FAIL'){}",
                self.fence_clause(source, "$8")
            ))
            .bind(size)
            .bind(info)
            .bind(sha256_hex)
            .bind(ts)
            .bind(state.as_str())
            .bind(ts)
            .bind(state.as_str())
            .bind(source)
            .bind(name)
            .execute(self.pool())
            .await
            .map_err(query_err(OP))?;
            if updated.rows_affected() > 0 {
                if state == FileState::Fail {
                    tracing::warn!(source, file = name, info, "binlog file check FAILED");
                } else {
                    tracing::debug!(source, file = name, "binlog file check SUCC");
                }
                return Ok(());
            }
            self.refuse_if_fenced(source, OP).await?;
            match self.get_file(source, name).await? {
                None => {
                    return Err(CatalogError::NotFound {
                        what: "binlog file",
                        key: file_key(source, name),
                    })
                }
                Some(row) if row.state == FileState::Active => {
                    return Err(CatalogError::InvalidState {
                        source_name: source.to_owned(),
                        file: name.to_owned(),
                        from: Some(row.state),
                        to: state,
                    })
                }
                // Reported by another writer between the two statements: try again.
                Some(_) => continue,
            }
        }
        Err(CatalogError::Conflict {
            op: OP,
            key: file_key(source, name),
        })
    }

    /// All files of `source`, ordered by timeline, then `seq`, then name (so
    /// `mysql-bin.000009` comes before `mysql-bin.000010`, names without a numeric
    /// extension, seq -1, first, and `tl2/mysql-bin.000001` after both).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails; [`CatalogError::Corrupt`] if a row
    /// holds a negative size or unknown state.
    pub async fn list_files(&self, source: &str) -> Result<Vec<BinlogFileRow>, CatalogError> {
        let raw = sqlx::query_as::<_, FileRaw>(&format!(
            "SELECT {FILE_COLUMNS} FROM binlog_files WHERE source = $1 ORDER BY seq, name"
        ))
        .bind(source)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("list_files"))?;
        convert_files(raw)
    }

    /// The files of `source` in `state`, ordered like [`list_files`](Catalog::list_files).
    ///
    /// # Errors
    ///
    /// As [`list_files`](Catalog::list_files).
    pub async fn files_in_state(
        &self,
        source: &str,
        state: FileState,
    ) -> Result<Vec<BinlogFileRow>, CatalogError> {
        let raw = sqlx::query_as::<_, FileRaw>(&format!(
            "SELECT {FILE_COLUMNS} FROM binlog_files WHERE source = $1 AND state = $2 \
             ORDER BY seq, name"
        ))
        .bind(source)
        .bind(state.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(query_err("files_in_state"))?;
        convert_files(raw)
    }

    /// The file `name` of `source`, or `None` if absent.
    ///
    /// # Errors
    ///
    /// As [`list_files`](Catalog::list_files).
    pub async fn get_file(
        &self,
        source: &str,
        name: &str,
    ) -> Result<Option<BinlogFileRow>, CatalogError> {
        let raw = sqlx::query_as::<_, FileRaw>(&format!(
            "SELECT {FILE_COLUMNS} FROM binlog_files WHERE source = $1 AND name = $2"
        ))
        .bind(source)
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(query_err("get_file"))?;
        raw.map(BinlogFileRow::try_from).transpose()
    }

    /// Records a hole in the archive that the operator must see: binlogs the primary no
    /// longer had when we asked, between `after_file` and `before_file` (`None`: no file
    /// on that side). Idempotent per `(source, after_file, before_file)`: recording the
    /// same hole again keeps its `detected_at` and replaces `reason`. A new hole is logged
    /// at `error` level.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if a statement fails.
    pub async fn record_gap(
        &self,
        source: &str,
        after_file: Option<&str>,
        before_file: Option<&str>,
        reason: &str,
    ) -> Result<(), CatalogError> {
        const OP: &str = "record_gap";
        // `IS NOT DISTINCT FROM` matches NULL to NULL (SQLite >= 3.39 and PostgreSQL).
        let sql = format!(
            "UPDATE binlog_gaps SET reason = $1 WHERE source = $2 \
             AND after_file IS NOT DISTINCT FROM $3 AND before_file IS NOT DISTINCT FROM $4{}",
            self.fence_clause(source, "$2")
        );
        let update = sqlx::query(&sql)
            .bind(reason)
            .bind(source)
            .bind(after_file)
            .bind(before_file);
        let updated = update.execute(self.pool()).await.map_err(query_err(OP))?;
        if updated.rows_affected() > 0 {
            tracing::debug!(
                source,
                ?after_file,
                ?before_file,
                reason,
                "known gap seen again"
            );
            return Ok(());
        }
        // A stale owner must not record a gap the new owner does not have.
        let rows = self.fenced_values(source, "$1", "$1, $2, $3, $4, $5");
        let inserted = sqlx::query(&format!(
            "INSERT INTO binlog_gaps (source, after_file, before_file, reason, detected_at) {rows}"
        ))
        .bind(source)
        .bind(after_file)
        .bind(before_file)
        .bind(reason)
        .bind(unix_now())
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        if inserted.rows_affected() == 0 {
            self.refuse_if_fenced(source, OP).await?;
        }
        tracing::error!(
            source,
            after_file = after_file.unwrap_or("-"),
            before_file = before_file.unwrap_or("-"),
            reason,
            "gap in the binlog archive: these binlogs are lost"
        );
        Ok(())
    }

    /// The holes recorded for `source`, ordered by `detected_at`, then `after_file` and
    /// `before_file` (`None` first).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn list_gaps(&self, source: &str) -> Result<Vec<GapRow>, CatalogError> {
        let raw = sqlx::query_as::<_, GapRaw>(
            "SELECT source, after_file, before_file, reason, detected_at FROM binlog_gaps \
             WHERE source = $1 ORDER BY detected_at",
        )
        .bind(source)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("list_gaps"))?;
        let mut gaps: Vec<GapRow> = raw
            .into_iter()
            .map(|r| GapRow {
                source: r.source,
                after_file: r.after_file,
                before_file: r.before_file,
                reason: r.reason,
                detected_at: r.detected_at,
            })
            .collect();
        // NULL ordering differs between databases; sort here so every backend agrees.
        gaps.sort_by(|a, b| {
            (a.detected_at, &a.after_file, &a.before_file).cmp(&(
                b.detected_at,
                &b.after_file,
                &b.before_file,
            ))
        });
        Ok(gaps)
    }

    /// Inserts a new `binlog_files` row; returns the raw driver error so the caller can
    /// tell a unique-key race from a real failure.
    async fn insert_file(
        &self,
        source: &str,
        file: &FileProgress,
        size: i64,
        state: FileState,
        reported_at: Option<i64>,
        ts: i64,
    ) -> Result<u64, sqlx::Error> {
        const VALUES: &str = "$1, $2, $3, $4, $5, '', $6, $7, $8, $9, NULL, $10, $11, NULL, $12";
        let rows = self.fenced_values(source, "$1", VALUES);
        let r = sqlx::query(&format!(
            "INSERT INTO binlog_files (source, name, seq, size, state, info, first_event_time, \
             last_event_time, first_gtid, last_gtid, sha256, created_at, reported_at, \
             checked_at, state_changed_at) {rows}"
        ))
        .bind(source)
        .bind(&file.name)
        .bind(seq_column(&file.name))
        .bind(size)
        .bind(state.as_str())
        .bind(file.first_event_time)
        .bind(file.last_event_time)
        .bind(file.first_gtid.as_deref())
        .bind(file.last_gtid.as_deref())
        .bind(ts)
        .bind(reported_at)
        .bind(ts)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests;
