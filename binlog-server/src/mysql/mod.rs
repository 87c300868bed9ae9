//! The MySQL/MariaDB client side: wire framing, connection, TLS and the dialects a fake
//! replica speaks.

pub mod conn;
pub mod packet;
pub mod tls;
