//! The catalog's error type.

use crate::FileState;

/// Everything a [`Catalog`](crate::Catalog) call can fail with.
///
/// Each variant says what the caller (or the operator) should do about it; the
/// underlying `sqlx` error is kept as the [`std::error::Error::source`], never
/// flattened into a string.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The catalog URL cannot be understood at all (no scheme, no database path), or it
    /// is given a password that it cannot use. Fix the `catalog` URL in the
    /// configuration.
    #[error(
        "catalog URL {url:?} is not usable: {reason}; expected sqlite:///abs/path/catalog.db, \
         sqlite:relative/path.db, sqlite::memory: or postgres://user@host:5432/dbname"
    )]
    BadUrl {
        /// The URL as given, without its password.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The URL names a database kind this build cannot use (e.g. `mysql`). Only the
    /// scheme is reported, so a password in the URL is not leaked. Use an `sqlite:` or a
    /// `postgres:` URL.
    #[error(
        "catalog URL scheme {scheme:?} is not supported: use sqlite: (one node) or postgres: \
         (a fleet); a MySQL/MariaDB catalog is not built"
    )]
    Unsupported {
        /// The scheme, as written before the first `:`.
        scheme: String,
    },

    /// The database cannot be opened: for SQLite unknown URL parameters, a missing
    /// directory, no permission, not an SQLite file; for PostgreSQL a server that does
    /// not answer, an unknown database or refused credentials. Fix the URL or the
    /// server; retrying is safe.
    #[error(
        "cannot open the catalog database {url}: {source}; for SQLite check that the URL is \
         sqlite:///abs/path/catalog.db (or sqlite:relative.db), that its directory exists and \
         is writable by this user, and that the file is an SQLite database; for PostgreSQL \
         check that the server answers, the database exists and the user and password \
         (password_env) are accepted"
    )]
    Open {
        /// The URL as given, without its password.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// The schema could not be created or brought up to date. A "previously applied but
    /// missing" or checksum error means the database was written by a different
    /// (usually newer) build: run that build, or restore the catalog from a backup.
    #[error("cannot bring the catalog schema of {url} up to date: {source}")]
    Migrate {
        /// The URL as given.
        url: String,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A statement failed (I/O error, disk full, database locked for longer than the
    /// busy timeout, ...). Usually transient or an operator matter; retrying is safe,
    /// every catalog call is idempotent.
    #[error("catalog query failed in {op}: {source}")]
    Query {
        /// The catalog operation that failed, e.g. `"mark_reported"`.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// The row the call needs does not exist (e.g. [`set_source_state`] before
    /// [`upsert_source`], or [`set_checked`] on a file never recorded).
    ///
    /// [`set_source_state`]: crate::Catalog::set_source_state
    /// [`upsert_source`]: crate::Catalog::upsert_source
    /// [`set_checked`]: crate::Catalog::set_checked
    #[error("{what} {key:?} is not in the catalog")]
    NotFound {
        /// Kind of row: `"source"` or `"binlog file"`.
        what: &'static str,
        /// Its key; for a file `"<source>/<file name>"`.
        key: String,
    },

    /// The file's current state does not allow this transition (e.g. checking a file
    /// that is still ACTIVE, or reporting a file that is already SUCC). The caller has a
    /// logic error or raced another writer; the row was left unchanged.
    #[error(
        "binlog file {source_name}/{file} is {}; it cannot move to {to}",
        from.map_or("absent", FileState::as_str)
    )]
    InvalidState {
        /// Source name.
        source_name: String,
        /// Binlog file name.
        file: String,
        /// State found in the catalog (`None`: no such row).
        from: Option<FileState>,
        /// State the call asked for.
        to: FileState,
    },

    /// An argument cannot be stored (a size above `i64::MAX` bytes, or a target state the
    /// call does not accept). Nothing was written.
    #[error("invalid {field} {value}: {reason}")]
    InvalidArgument {
        /// Argument name.
        field: &'static str,
        /// Its value, rendered.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A row holds a value this build cannot represent (negative size, unknown state).
    /// The database was changed outside binlog-server or is damaged: inspect and fix
    /// that row by hand.
    #[error(
        "catalog row {table} {key:?} has an invalid {column}: {detail}; the database was \
         changed outside binlog-server or is damaged"
    )]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Row key, e.g. `"<source>/<file name>"`.
        key: String,
        /// Column name.
        column: &'static str,
        /// The offending value and why it is refused.
        detail: String,
    },

    /// A row kept changing under this call (another writer deleted it between two
    /// statements). Retry the call.
    #[error("catalog row {key:?} changed concurrently during {op}; retry")]
    Conflict {
        /// The catalog operation.
        op: &'static str,
        /// Row key.
        key: String,
    },

    /// A lease owner's write was refused: its tenure (`epoch`) of the source is over, so
    /// another node owns the source now. Nothing was written. Stop writing for the source
    /// (the writer is a stale owner); never retry under this epoch.
    #[error(
        "{op} refused: epoch {epoch} of source {source_name} no longer holds its lease \
         (another node owns it now); this writer must stop"
    )]
    Fenced {
        /// Source name.
        source_name: String,
        /// The writer's epoch.
        epoch: i64,
        /// The catalog operation refused.
        op: &'static str,
    },
}
