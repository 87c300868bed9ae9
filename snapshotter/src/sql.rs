//! The SQL the snapshotter needs of the target server (version, `read_only`, datadir,
//! `SHOW DATABASES`, the clone statements), behind a small trait so that binlog-server
//! supplies its own MySQL client and tests can supply a stand-in.

use std::future::Future;

/// A text result set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of nullable strings, one entry per column.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// Value of `column` (case-insensitive) in row `row`, when present and not NULL.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))?;
        self.rows.get(row)?.get(i)?.as_deref()
    }

    /// First column of the first row.
    pub fn value(&self) -> Option<&str> {
        self.rows.first()?.first()?.as_deref()
    }
}

/// One open session on the server being backed up.
pub trait Sql: Send {
    /// Runs one statement; the error is the server's message (or the connection's).
    fn query(&mut self, sql: &str) -> impl Future<Output = Result<Rows, String>> + Send;
}

impl<T: Sql> Sql for &mut T {
    fn query(&mut self, sql: &str) -> impl Future<Output = Result<Rows, String>> + Send {
        (**self).query(sql)
    }
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

/// Reads [`ServerFacts`].
///
/// # Errors
///
/// The server's message.
pub async fn server_facts<S: Sql>(sql: &mut S) -> Result<ServerFacts, String> {
    let r = sql
        .query("SELECT VERSION() AS v, @@GLOBAL.read_only AS ro, @@GLOBAL.datadir AS d")
        .await
        .map_err(|e| format!("read the server's version, read_only and datadir: {e}"))?;
    let version = r.get(0, "v").unwrap_or_default().to_owned();
    let ro = r.get(0, "ro").unwrap_or("0");
    Ok(ServerFacts {
        mariadb: version.contains("MariaDB"),
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
