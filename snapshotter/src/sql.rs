//! The SQL the snapshotter needs of the target server (version, `read_only`, datadir,
//! `SHOW DATABASES`, the clone statements), behind a small trait so that binlog-server
//! supplies its own MySQL client and tests can supply a stand-in; [`run_query`] runs one
//! statement and keeps what failed in a [`QueryError`]; literals for a statement come from
//! `mysql_wire::quote`.

use std::future::Future;

/// A text result set: the project's one type, from the wire client.
pub use mysql_wire::ResultSet as Rows;

/// A failure of the session, kept whole as the cause of a [`QueryError`].
pub type SessionFailure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One open session on the server being backed up.
pub trait Sql: Send {
    /// Runs one statement. The error is the implementation's own (for the wire client,
    /// [`mysql_wire::ConnError`] with the server's ERR packet); [`run_query`] keeps it
    /// as the cause, with the statement.
    fn query(&mut self, sql: &str) -> impl Future<Output = Result<Rows, SessionFailure>> + Send;
}

impl<T: Sql> Sql for &mut T {
    fn query(&mut self, sql: &str) -> impl Future<Output = Result<Rows, SessionFailure>> + Send {
        (**self).query(sql)
    }
}

/// The wire client is a session.
impl Sql for mysql_wire::Conn {
    async fn query(&mut self, sql: &str) -> Result<Rows, SessionFailure> {
        mysql_wire::Conn::query(self, sql)
            .await
            .map_err(|e| Box::new(e) as SessionFailure)
    }
}

/// A statement the snapshotter ran on the server failed (the server refused it, or the
/// session broke).
///
/// The caller does not retry: `take` records the [`Display`](std::fmt::Display) text
/// (`<what>: <message>`) as the base's ERROR `info` and ends the base; the clone method
/// does the same through its own message.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct QueryError {
    /// What the statement was for, e.g. "read the server's version, read_only and
    /// datadir".
    pub what: &'static str,
    /// The statement as sent.
    pub statement: String,
    /// The [`Sql`] implementation's error (server error or connection failure).
    #[source]
    pub source: SessionFailure,
}

/// Runs `statement` on `sql`; `what` says what it is for (the start of the error text).
///
/// # Errors
///
/// [`QueryError`] with the statement and the session's message.
pub async fn run_query<S: Sql>(
    sql: &mut S,
    what: &'static str,
    statement: &str,
) -> Result<Rows, QueryError> {
    sql.query(statement).await.map_err(|source| QueryError {
        what,
        statement: statement.to_owned(),
        source,
    })
}

/// What the snapshotter reads of the server before a base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `VERSION()`.
    pub version: String,
    /// MariaDB (else MySQL / Percona).
    pub mariadb: bool,
    /// `@@read_only` is ON.
    pub read_only: bool,
    /// `@@datadir`.
    pub datadir: String,
}

/// Reads [`ServerFacts`]. A missing value reads as empty (`read_only` as OFF).
///
/// # Errors
///
/// [`QueryError`] when the query fails.
pub async fn server_facts<S: Sql>(sql: &mut S) -> Result<ServerFacts, QueryError> {
    let r = run_query(
        sql,
        "read the server's version, read_only and datadir",
        "SELECT VERSION() AS v, @@GLOBAL.read_only AS ro, @@GLOBAL.datadir AS d",
    )
    .await?;
    let version = r.get(0, "v").unwrap_or_default().to_owned();
    let ro = r.get(0, "ro").unwrap_or("0");
    Ok(ServerFacts {
        mariadb: binlog::is_mariadb_version(&version),
        read_only: ro == "1" || ro.eq_ignore_ascii_case("ON"),
        datadir: r.get(0, "d").unwrap_or_default().to_owned(),
        version,
    })
}

/// Parses the leading `major.minor.patch` of a version string.
pub fn version_triple(v: &str) -> Option<(u32, u32, u32)> {
    let core: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut it = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;

    impl Sql for Failing {
        async fn query(&mut self, _sql: &str) -> Result<Rows, SessionFailure> {
            Err("ERROR 1045 (28000): Access denied".into())
        }
    }

    #[tokio::test]
    async fn query_error_keeps_the_statement_and_the_message() {
        let e = server_facts(&mut Failing).await.unwrap_err();
        assert_eq!(e.what, "read the server's version, read_only and datadir");
        assert!(
            e.statement.starts_with("SELECT VERSION()"),
            "{}",
            e.statement
        );
        assert_eq!(e.source.to_string(), "ERROR 1045 (28000): Access denied");
        assert_eq!(
            e.to_string(),
            "read the server's version, read_only and datadir: ERROR 1045 (28000): Access denied"
        );
    }
}
