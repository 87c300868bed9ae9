//! `mysql-wire`: the MySQL/MariaDB client/server protocol as the log server speaks it.
//!
//! | module | its one job |
//! |---|---|
//! | [`packet`] | packet framing and the packet shapes both sides parse (pure, never panics on input) |
//! | [`errcode`] | the server error codes sent or matched, by their `mysqld_error.h` names |
//! | [`conn`] | the client connection: handshake, auth, TLS upgrade, text queries, the binlog stream |
//! | [`quote`] | SQL literals and identifiers for statements that cannot use parameters |
//! | [`semisync`] | semi-sync replication, the replica's side: asking for it, the event header, the ack packet |
//! | [`server`] | the packets a server writes (greeting, OK/ERR/EOF, result sets) and the handshake response it parses |
//! | [`tls`] | rustls configurations: the client's per [`TlsMode`], a listener's from PEM files ([`tls::server_config`]) |
//! | [`url`] | `mysql://` URLs ([`SourceUrl`]) |
//!
//! Sources: MySQL Internals "Client/Server Protocol", MariaDB KB "Clients & Connectors /
//! MariaDB protocol".

pub mod conn;
pub mod errcode;
pub mod packet;
pub mod quote;
pub mod semisync;
pub mod server;
pub mod tls;
pub mod url;

pub use conn::{Conn, ConnError, ConnectOptions, ResultSet};
pub use url::{SourceUrl, TlsMode};
