//! Server error codes the log server sends or reacts to, by their names in
//! mysql-server `include/mysqld_error.h` (the same numbers in MariaDB's
//! `include/mysqld_error.h`). An ERR packet's code ([`crate::packet::ServerError`]) and a
//! replica's `Last_IO_Errno` / `Last_SQL_Errno` are matched against these, never against
//! the message text.

/// ER_CON_COUNT_ERROR: "Too many connections".
pub const ER_CON_COUNT_ERROR: u16 = 1040;
/// ER_DBACCESS_DENIED_ERROR: access denied to a database.
pub const ER_DBACCESS_DENIED_ERROR: u16 = 1044;
/// ER_ACCESS_DENIED_ERROR: wrong user or password.
pub const ER_ACCESS_DENIED_ERROR: u16 = 1045;
/// ER_UNKNOWN_COM_ERROR: a command the server does not know.
pub const ER_UNKNOWN_COM_ERROR: u16 = 1047;
/// ER_PARSE_ERROR: SQL syntax the server does not accept.
pub const ER_PARSE_ERROR: u16 = 1064;
/// ER_HOST_NOT_PRIVILEGED: the host may not connect.
pub const ER_HOST_NOT_PRIVILEGED: u16 = 1130;
/// ER_TABLEACCESS_DENIED_ERROR: a command denied on a table.
pub const ER_TABLEACCESS_DENIED_ERROR: u16 = 1142;
/// ER_COLUMNACCESS_DENIED_ERROR: a command denied on a column.
pub const ER_COLUMNACCESS_DENIED_ERROR: u16 = 1143;
/// ER_UNKNOWN_SYSTEM_VARIABLE: `@@GLOBAL.x` names no variable (a plugin not loaded).
pub const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
/// ER_SPECIFIC_ACCESS_DENIED_ERROR: a privilege is missing (e.g. REPLICATION SLAVE).
pub const ER_SPECIFIC_ACCESS_DENIED_ERROR: u16 = 1227;
/// ER_MASTER_FATAL_ERROR_READING_BINLOG: the primary cannot send the binlog asked for
/// (purged, or a position past its end).
pub const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;
/// ER_ACCESS_DENIED_NO_PASSWORD_ERROR: access denied (unix socket plugin).
pub const ER_ACCESS_DENIED_NO_PASSWORD_ERROR: u16 = 1698;
/// ER_MUST_CHANGE_PASSWORD: the password has expired.
pub const ER_MUST_CHANGE_PASSWORD: u16 = 1820;
/// ER_MUST_CHANGE_PASSWORD_LOGIN: the password has expired (at login).
pub const ER_MUST_CHANGE_PASSWORD_LOGIN: u16 = 1862;
/// ER_SECURE_TRANSPORT_REQUIRED (MySQL 5.7+; MariaDB 10.5+ sends it for
/// `require_secure_transport`): a plain connection where TLS is required.
pub const ER_SECURE_TRANSPORT_REQUIRED: u16 = 3159;
