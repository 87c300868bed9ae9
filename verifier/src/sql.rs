//! The SQL the phases send: sessions on the scratch instance, statements whose failure
//! ends a phase ([`q`], [`value`]), `SHOW SLAVE STATUS` ([`SlaveStatus`]) and quoting.
//! Literals and identifiers are quoted by `mysql_wire::quote`.

use mysql_wire::conn::Conn;
use mysql_wire::ResultSet;

use crate::phase::Fail;
use replay::instance;

/// Root over the private instance's socket (it runs with --skip-grant-tables).
///
/// # Errors
///
/// [`ScratchConnectError`]; its text is the report's message.
pub(super) async fn connect_socket(socket: &str) -> Result<Conn, ScratchConnectError> {
    instance::connect_admin(&instance::socket_url(std::path::Path::new(socket)))
        .await
        .map_err(|source| ScratchConnectError {
            socket: socket.to_owned(),
            source,
        })
}

/// The scratch instance does not answer on its socket: the phase fails with this text.
#[derive(Debug, thiserror::Error)]
#[error("connect to the scratch instance at {socket}: {source}")]
pub(super) struct ScratchConnectError {
    /// The socket path.
    pub socket: String,
    /// The client's error.
    #[source]
    pub source: mysql_wire::conn::ConnError,
}

/// Runs `sql`; a failure reads "`what`: the server's message".
pub(super) async fn q(c: &mut Conn, sql: &str, what: &str) -> Result<(), Fail> {
    c.query(sql)
        .await
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}").into())
}

/// The first value of `sql`'s first row ("" for none); a failure reads "`sql`: the
/// server's message".
pub(super) async fn value(c: &mut Conn, sql: &str) -> Result<String, Fail> {
    c.query_value(sql)
        .await
        .map(|v| v.unwrap_or_default())
        .map_err(|e| format!("{sql}: {e}").into())
}

/// One `SHOW SLAVE STATUS` of the scratch instance.
pub(super) struct SlaveStatus(ResultSet);

impl SlaveStatus {
    /// Reads it; a failure reads "SHOW SLAVE STATUS: the server's message".
    pub(super) async fn read(c: &mut Conn) -> Result<SlaveStatus, Fail> {
        c.query("SHOW SLAVE STATUS")
            .await
            .map(SlaveStatus)
            .map_err(|e| format!("SHOW SLAVE STATUS: {e}").into())
    }

    /// Column `c` ("" when absent or NULL).
    pub(super) fn get(&self, c: &str) -> String {
        self.0.get(0, c).unwrap_or_default().to_string()
    }

    /// Where the SQL thread is in the primary's binlogs, "file:pos".
    pub(super) fn position(&self) -> String {
        format!(
            "{}:{}",
            self.get("Relay_Master_Log_File"),
            self.get("Exec_Master_Log_Pos")
        )
    }
}
