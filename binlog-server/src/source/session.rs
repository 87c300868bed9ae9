//! Talking to a primary as a replica: dialect detection, the session set-up a dump needs,
//! COM_REGISTER_SLAVE and COM_BINLOG_DUMP, and the listing queries.
//!
//! MariaDB (MaxScale `pinloki`, Ripple; DESIGN.md "Replication protocol facts"):
//! `SET @master_binlog_checksum = @@global.binlog_checksum`, `SET
//! @mariadb_slave_capability = 4` (MARIA_SLAVE_CAPABILITY_GTID: otherwise the primary
//! rewrites GTID, GTID_LIST, BINLOG_CHECKPOINT and ANNOTATE_ROWS events into dummies),
//! `SET @master_heartbeat_period = <ns>`, COM_REGISTER_SLAVE, then COM_BINLOG_DUMP with
//! BINLOG_SEND_ANNOTATE_ROWS_EVENT so ANNOTATE_ROWS is not dropped.
//!
//! MySQL 5.7/8.x (mysql-server `sql/rpl_replica.cc` `get_master_version_and_clock`,
//! `request_dump`): the same checksum and heartbeat variables, named `@source_...` from
//! 8.0.26 (both names are set there), `@@GLOBAL.GTID_MODE` and `@@GLOBAL.SERVER_UUID`
//! read, COM_REGISTER_SLAVE, then COM_BINLOG_DUMP with flags 0. COM_BINLOG_DUMP_GTID is
//! built by [`mysql_wire::packet::com_binlog_dump_gtid`] for GTID resumption.
//! No MySQL server can be installed on the development machines: the MySQL path is built
//! from the protocol and checked against real MySQL binlog files only.

use std::time::Duration;

use binlog::ChecksumAlg;
use mysql_wire::conn::{Conn, ConnError, ConnectOptions};
use mysql_wire::errcode::{
    ER_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR, ER_COLUMNACCESS_DENIED_ERROR,
    ER_DBACCESS_DENIED_ERROR, ER_HOST_NOT_PRIVILEGED, ER_MASTER_FATAL_ERROR_READING_BINLOG,
    ER_MUST_CHANGE_PASSWORD, ER_MUST_CHANGE_PASSWORD_LOGIN, ER_PARSE_ERROR,
    ER_SPECIFIC_ACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR,
};
use mysql_wire::packet::{self, BINLOG_SEND_ANNOTATE_ROWS_EVENT};
use mysql_wire::SourceUrl;
use node::config::{CaptureConfig, Source};

/// Which server family we talk to (from the handshake's version string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MariaDB (any version).
    MariaDb,
    /// MySQL, Percona Server, Aurora/RDS MySQL.
    MySql {
        /// Version as (major, minor, patch).
        version: (u32, u32, u32),
    },
}

impl Dialect {
    /// Detects the dialect from a server version string such as "10.11.19-MariaDB-0+deb12u1"
    /// or "8.0.36-log".
    pub fn detect(server_version: &str) -> Dialect {
        if binlog::is_mariadb_version(server_version) {
            return Dialect::MariaDb;
        }
        let mut nums = server_version
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u32>().unwrap_or(0));
        Dialect::MySql {
            version: (
                nums.next().unwrap_or(0),
                nums.next().unwrap_or(0),
                nums.next().unwrap_or(0),
            ),
        }
    }

    /// "mariadb" or "mysql".
    pub fn name(&self) -> &'static str {
        match self {
            Dialect::MariaDb => "mariadb",
            Dialect::MySql { .. } => "mysql",
        }
    }

    /// True for MySQL >= 8.0.26, which renamed `@master_*` session variables to `@source_*`.
    fn uses_source_names(&self) -> bool {
        matches!(self, Dialect::MySql { version } if *version >= (8, 0, 26))
    }
}

/// Why a session cannot be used. The caller reacts through [`SessionError::is_definite`]
/// (stop the source with the reason, or retry with backoff) and
/// [`SessionError::server_code`]; the cause is kept whole.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The connection or the server failed while doing `what`.
    #[error("{what}: {source}")]
    Conn {
        /// What the session was doing ("connect", "SHOW BINARY LOGS", "binlog stream").
        what: &'static str,
        /// The connection error, with the server's ERR packet when there was one.
        #[source]
        source: ConnError,
    },
    /// The primary's settings make capture impossible (binary logging off, an unsupported
    /// binlog_checksum, our server_id equal to the primary's, a position COM_BINLOG_DUMP
    /// cannot express): definite, the message says what to change.
    #[error("{0}")]
    Unusable(String),
}

impl SessionError {
    /// True when no retry can help: server errors of [`is_definite_server_error`],
    /// authentication and TLS failures, and unusable settings.
    pub fn is_definite(&self) -> bool {
        match self {
            SessionError::Conn { source, .. } => match source {
                ConnError::Server(se) => is_definite_server_error(se.code),
                ConnError::Auth(_) | ConnError::Tls(_) | ConnError::TlsConfig(_) => true,
                _ => false,
            },
            SessionError::Unusable(_) => true,
        }
    }

    /// The primary's error code, when it answered with an ERR packet.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            SessionError::Conn { source, .. } => source.server_code(),
            SessionError::Unusable(_) => None,
        }
    }
}

/// Server error codes that no retry can fix.
pub fn is_definite_server_error(code: u16) -> bool {
    matches!(
        code,
        ER_MASTER_FATAL_ERROR_READING_BINLOG // binlog purged / unreadable
            | ER_ACCESS_DENIED_ERROR
            | ER_DBACCESS_DENIED_ERROR
            | ER_SPECIFIC_ACCESS_DENIED_ERROR // e.g. REPLICATION SLAVE
            | ER_TABLEACCESS_DENIED_ERROR
            | ER_COLUMNACCESS_DENIED_ERROR
            | ER_ACCESS_DENIED_NO_PASSWORD_ERROR
            | ER_HOST_NOT_PRIVILEGED
            | ER_MUST_CHANGE_PASSWORD
            | ER_MUST_CHANGE_PASSWORD_LOGIN
    )
}

/// Wraps a connection error with what the session was doing.
pub fn classify(e: ConnError, what: &'static str) -> SessionError {
    SessionError::Conn { what, source: e }
}

/// A connected, checked session on a primary.
pub struct Session {
    /// The connection.
    pub conn: Conn,
    /// Detected dialect.
    pub dialect: Dialect,
    /// The primary's `binlog_checksum` (what we declared to accept).
    pub checksum: ChecksumAlg,
    /// The primary's `binlog_format`.
    pub binlog_format: String,
    /// The primary's `server_id`.
    pub primary_server_id: u32,
    /// The server answers `@@GLOBAL.read_only` = 1: a replica, or a primary demoted by a
    /// switchover.
    pub read_only: bool,
    /// The dump was asked for semi-sync ([`enable_semi_sync`]): every event arrives with
    /// the semi-sync header (`mysql_wire::semisync`).
    pub semi_sync: bool,
}

/// Connection options for one of a source's servers.
pub fn connect_options(url: &SourceUrl, cap: &CaptureConfig) -> ConnectOptions {
    ConnectOptions {
        url: url.clone(),
        connect_timeout: cap.connect_timeout,
        query_timeout: cap.connect_timeout.max(Duration::from_secs(30)),
    }
}

/// Connects to `url` (the source's current server, `super::context::Upstream`) and
/// reads the variables every use needs (no replication set-up).
pub async fn connect(
    source: &Source,
    url: &SourceUrl,
    cap: &CaptureConfig,
) -> Result<Session, SessionError> {
    let mut conn = Conn::connect(&connect_options(url, cap))
        .await
        .map_err(|e| classify(e, "connect"))?;
    let dialect = Dialect::detect(conn.server_version());
    let rs = conn
        .query("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_checksum, @@GLOBAL.binlog_format, @@GLOBAL.server_id, @@GLOBAL.read_only")
        .await
        .map_err(|e| classify(e, "read the primary's binlog settings"))?;
    let v = |i: usize| {
        rs.rows
            .first()
            .and_then(|r| r.get(i))
            .cloned()
            .flatten()
            .unwrap_or_default()
    };
    let log_bin = v(0);
    if !(log_bin == "1" || log_bin.eq_ignore_ascii_case("ON")) {
        return Err(SessionError::Unusable(format!(
            "the primary has binary logging off (log_bin={log_bin:?}): start it with --log-bin"
        )));
    }
    let checksum = match v(1).to_ascii_uppercase().as_str() {
        "CRC32" => ChecksumAlg::Crc32,
        "NONE" => {
            if !cap.allow_no_checksum {
                return Err(SessionError::Unusable(
                    "the primary has binlog_checksum=NONE: events cannot be verified. Set \
                     binlog_checksum=CRC32 on the primary (SET GLOBAL binlog_checksum='CRC32'), \
                     or accept unverified capture with [capture] allow_no_checksum = true"
                        .into(),
                ));
            }
            ChecksumAlg::Off
        }
        other => {
            return Err(SessionError::Unusable(format!(
                "the primary's binlog_checksum={other:?} is not supported (CRC32 or NONE)"
            )))
        }
    };
    let binlog_format = v(2).to_ascii_uppercase();
    let primary_server_id = v(3).parse().unwrap_or(0);
    let read_only = v(4) == "1" || v(4).eq_ignore_ascii_case("ON");
    if primary_server_id == source.server_id {
        return Err(SessionError::Unusable(format!(
            "source {} uses server_id {} which is the primary's own server_id: choose another",
            source.name, source.server_id
        )));
    }
    Ok(Session {
        conn,
        dialect,
        checksum,
        binlog_format,
        primary_server_id,
        read_only,
        semi_sync: false,
    })
}

/// Asks the primary to stream semi-sync (before [`start_dump`]), as a stock replica
/// does (mysql-server `semisync_replica.cc`, `request_transmit`): when the primary has
/// the semi-sync variables, the session variable is set, whether the primary's side is
/// enabled now or not (it may be turned on later); a primary without them streams
/// asynchronously. Returns whether the stream is semi-sync, and the primary's
/// `..._enabled` value.
///
/// # Errors
///
/// [`SessionError`] when a query fails for another reason than the variable's absence.
pub async fn enable_semi_sync(s: &mut Session) -> Result<(bool, bool), SessionError> {
    use mysql_wire::semisync::{enable_statement, Variant};
    let candidates: &[(&str, Variant)] = match s.dialect {
        Dialect::MariaDb => &[("rpl_semi_sync_master_enabled", Variant::Slave)],
        Dialect::MySql { .. } => &[
            ("rpl_semi_sync_source_enabled", Variant::Replica),
            ("rpl_semi_sync_master_enabled", Variant::Slave),
        ],
    };
    for (var, variant) in candidates {
        let enabled = match s.conn.query_value(&format!("SELECT @@GLOBAL.{var}")).await {
            Ok(v) => v.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("ON")),
            Err(e) if e.server_code() == Some(mysql_wire::errcode::ER_UNKNOWN_SYSTEM_VARIABLE) => {
                continue
            }
            Err(e) => return Err(classify(e, "read the primary's semi-sync setting")),
        };
        s.conn
            .query(enable_statement(*variant))
            .await
            .map_err(|e| classify(e, "ask for semi-sync"))?;
        s.semi_sync = true;
        return Ok((true, enabled));
    }
    Ok((false, false))
}

/// Declares checksum awareness, the MariaDB capability and the heartbeat period.
pub async fn prepare_dump(s: &mut Session, heartbeat: Duration) -> Result<(), SessionError> {
    let ns = heartbeat.as_nanos().min(u128::from(u64::MAX));
    let stmts: Vec<String> = match s.dialect {
        Dialect::MariaDb => vec![
            "SET @master_binlog_checksum = @@global.binlog_checksum".into(),
            "SET @mariadb_slave_capability = 4".into(),
            format!("SET @master_heartbeat_period = {ns}"),
        ],
        d if d.uses_source_names() => vec![
            "SET @source_binlog_checksum = @@global.binlog_checksum, @master_binlog_checksum = @@global.binlog_checksum".into(),
            format!("SET @source_heartbeat_period = {ns}, @master_heartbeat_period = {ns}"),
        ],
        Dialect::MySql { .. } => vec![
            "SET @master_binlog_checksum = @@global.binlog_checksum".into(),
            format!("SET @master_heartbeat_period = {ns}"),
        ],
    };
    for sql in stmts {
        s.conn
            .query(&sql)
            .await
            .map_err(|e| classify(e, "prepare the replication session"))?;
    }
    if let Dialect::MySql { .. } = s.dialect {
        // Read like a real replica does; failures are not fatal on old versions.
        let _ = s
            .conn
            .query("SELECT @@GLOBAL.GTID_MODE, @@GLOBAL.SERVER_UUID")
            .await;
    }
    Ok(())
}

/// Registers as a replica (COM_REGISTER_SLAVE) and starts the dump at `file`:`pos`.
/// `register = false` with `server_id = 0` and `non_blocking = true` gives a one-off
/// read that ends with EOF at the end of the binlogs (used for re-pulls).
pub async fn start_dump(
    s: &mut Session,
    server_id: u32,
    file: &str,
    pos: u64,
    register: bool,
    non_blocking: bool,
) -> Result<(), SessionError> {
    let pos32 = u32::try_from(pos).map_err(|_| {
        SessionError::Unusable(format!(
            "position {pos} in {file} is beyond 4 GiB, which COM_BINLOG_DUMP cannot express"
        ))
    })?;
    if register {
        s.conn
            .send_command(&packet::com_register_slave(
                server_id,
                "binlog-server",
                "",
                0,
            ))
            .await
            .map_err(|e| classify(e, "register as replica"))?;
        s.conn
            .read_ok("COM_REGISTER_SLAVE")
            .await
            .map_err(|e| classify(e, "register as replica"))?;
    }
    let mut flags = match s.dialect {
        Dialect::MariaDb => BINLOG_SEND_ANNOTATE_ROWS_EVENT,
        Dialect::MySql { .. } => 0,
    };
    if non_blocking {
        flags |= 0x01; // BINLOG_DUMP_NON_BLOCK
    }
    s.conn
        .send_command(&packet::com_binlog_dump(pos32, flags, server_id, file))
        .await
        .map_err(|e| classify(e, "send COM_BINLOG_DUMP"))
}

/// `SHOW BINARY LOGS`: (file name, size in bytes) in the primary's order.
pub async fn show_binary_logs(conn: &mut Conn) -> Result<Vec<(String, u64)>, ConnError> {
    let rs = conn.query("SHOW BINARY LOGS").await?;
    Ok(rs
        .rows
        .iter()
        .filter_map(|r| {
            let name = r.first()?.clone()?;
            let size = r.get(1)?.as_deref()?.parse().ok()?;
            Some((name, size))
        })
        .collect())
}

/// The primary's current binlog file and position (`SHOW MASTER STATUS`, or
/// `SHOW BINARY LOG STATUS` on MySQL 8.4+ where the old name is gone).
pub async fn show_master_status(conn: &mut Conn) -> Result<Option<(String, u64)>, ConnError> {
    let rs = match conn.query("SHOW MASTER STATUS").await {
        Ok(rs) => rs,
        Err(ConnError::Server(e)) if e.code == ER_PARSE_ERROR => {
            conn.query("SHOW BINARY LOG STATUS").await?
        }
        Err(e) => return Err(e),
    };
    Ok(rs.get(0, "File").and_then(|f| {
        let p = rs.get(0, "Position")?.parse().ok()?;
        Some((f.to_owned(), p))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_wire::errcode::ER_CON_COUNT_ERROR;

    #[test]
    fn dialects() {
        assert_eq!(
            Dialect::detect("10.11.19-MariaDB-0+deb12u1"),
            Dialect::MariaDb
        );
        assert_eq!(
            Dialect::detect("8.0.36-log"),
            Dialect::MySql {
                version: (8, 0, 36)
            }
        );
        assert!(Dialect::detect("8.0.26").uses_source_names());
        assert!(!Dialect::detect("8.0.25").uses_source_names());
        assert!(!Dialect::detect("5.7.44-48-log").uses_source_names());
        assert!(Dialect::detect("9.6.0").uses_source_names());
    }

    #[test]
    fn definite_codes() {
        assert!(is_definite_server_error(
            ER_MASTER_FATAL_ERROR_READING_BINLOG
        ));
        assert!(is_definite_server_error(ER_ACCESS_DENIED_ERROR));
        assert!(!is_definite_server_error(ER_CON_COUNT_ERROR));
        assert!(!is_definite_server_error(1053));
    }
}
