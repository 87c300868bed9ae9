//! A minimal MySQL/MariaDB client connection: handshake, authentication, optional TLS,
//! text-protocol queries, COM_REGISTER_SLAVE and the binlog dump stream.
//!
//! It exists because the fake replica must send COM_BINLOG_DUMP with flags that stock
//! `mysql_async` cannot send (DESIGN.md, "Measured on this kind of machine", item 2), and
//! because the dump loop is the hot path of capture: packets are cut out of the read
//! buffer without copying (`BytesMut::split_to`), except for events larger than
//! 16 MiB, which arrive as several physical packets and are joined. Reads ask for 16 KiB
//! to 256 KiB, growing while the stream fills them (a catch-up) and shrinking while it
//! trickles, so an idle or slow connection keeps little memory.
//!
//! Authentication: `mysql_native_password` (MariaDB's and MySQL 5.7's default) and
//! `caching_sha2_password` (MySQL 8's default; the full-authentication path sends the
//! password in clear and therefore only over TLS). MariaDB's `client_ed25519` and
//! `parsec` are refused with a clear error. Sources: MySQL Internals "Connection Phase",
//! MariaDB KB "1 - Connecting", mysql-server `sql-common/client.cc`.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::packet::{
    self, caps, is_eof, Handshake, PacketError, Reader, ServerError, MAX_LOGICAL_PAYLOAD,
    MAX_PHYSICAL_PAYLOAD,
};
use crate::url::{SourceUrl, TlsMode};

/// Errors of a client connection, sorted by how the caller reacts.
#[derive(Debug, Error)]
pub enum ConnError {
    /// Socket-level failure (connect refused, reset, EOF): transient, retry.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No data within the read timeout: transient, retry.
    #[error("{0}: timed out")]
    Timeout(&'static str),
    /// The server answered with an ERR packet.
    #[error("{0}")]
    Server(ServerError),
    /// The peer sent bytes we cannot parse: treated as transient (a reconnect reads anew).
    #[error(transparent)]
    Protocol(#[from] PacketError),
    /// TLS set-up failed (bad CA file, server without TLS while required, handshake error).
    #[error("TLS: {0}")]
    Tls(String),
    /// No TLS client configuration could be built (bad `ssl-ca`, unusable mode).
    #[error("TLS: {0}")]
    TlsConfig(#[from] crate::tls::TlsConfigError),
    /// Authentication cannot proceed (unsupported plugin, full auth without TLS).
    #[error("authentication: {0}")]
    Auth(String),
}

impl ConnError {
    /// The server error code, when the server sent an ERR packet.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            ConnError::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Parsed source URL (host, port, user, password, TLS mode).
    pub url: SourceUrl,
    /// Connect + handshake timeout.
    pub connect_timeout: Duration,
    /// Timeout for each read while waiting for a query result.
    pub query_timeout: Duration,
}

/// A text-protocol result set: column names and rows of nullable strings. The one
/// result-set type of the project (the service's queries, the snapshotter's, tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    /// Column names in order.
    pub columns: Vec<String>,
    /// Rows; each has one entry per column, `None` for SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    /// Value of `column` (case-insensitive) in row `row`, if present and not NULL.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))?;
        self.rows.get(row)?.get(i)?.as_deref()
    }

    /// First column of the first row, if present and not NULL.
    pub fn value(&self) -> Option<&str> {
        self.rows.first()?.first()?.as_deref()
    }
}

/// An authenticated connection to a MySQL or MariaDB server.
pub struct Conn {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    seq: u8,
    handshake: Handshake,
    query_timeout: Duration,
    /// Free space made in the read buffer before a socket read, bytes: doubles while
    /// reads fill it (a catch-up), halves while they return a quarter of it or less (a
    /// trickle), between [`MIN_READ_CHUNK`] and [`MAX_READ_CHUNK`]. A trickling stream
    /// then keeps a small buffer resident (its events hold the buffer they were cut
    /// from until the writer has appended them).
    read_chunk: usize,
    /// The physical packets read so far of a logical packet of 16 MiB or more, kept here
    /// so that [`Conn::read_packet`] is cancel-safe.
    partial: Option<BytesMut>,
}

/// Smallest free space made in the read buffer before a socket read (bytes).
const MIN_READ_CHUNK: usize = 16 * 1024;
/// Largest (bytes): a catch-up reads in pieces of this size.
const MAX_READ_CHUNK: usize = 256 * 1024;

/// The read chunk after a read that got `got` bytes into `room` bytes of free space:
/// doubled when the read filled it, halved when it got a quarter of the chunk or less,
/// within [`MIN_READ_CHUNK`, `MAX_READ_CHUNK`].
fn next_read_chunk(chunk: usize, got: usize, room: usize) -> usize {
    if got >= room {
        (chunk * 2).min(MAX_READ_CHUNK)
    } else if got <= chunk / 4 {
        (chunk / 2).max(MIN_READ_CHUNK)
    } else {
        chunk
    }
}

impl Conn {
    /// Connects, negotiates TLS when the URL asks for it, and authenticates.
    ///
    /// Errors: `Io`/`Timeout` when the server is unreachable (transient), `Server` with
    /// code 1045 for bad credentials (definite), `Tls`/`Auth` for set-up problems.
    pub async fn connect(opts: &ConnectOptions) -> Result<Conn, ConnError> {
        tokio::time::timeout(opts.connect_timeout, Self::connect_inner(opts))
            .await
            .map_err(|_| ConnError::Timeout("connect"))?
    }

    async fn connect_inner(opts: &ConnectOptions) -> Result<Conn, ConnError> {
        let url = &opts.url;
        // A host that is an absolute path is a Unix socket (scratch instances of PITR).
        let io: Box<dyn Io> = if url.host.starts_with('/') {
            Box::new(
                tokio::net::UnixStream::connect(&url.host)
                    .await
                    .map_err(|source| ConnError::Io {
                        context: "connect to the server's socket",
                        source,
                    })?,
            )
        } else {
            let tcp = TcpStream::connect((url.host.as_str(), url.port))
                .await
                .map_err(|source| ConnError::Io {
                    context: "connect to the primary",
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            Box::new(tcp)
        };
        let mut conn = Conn {
            io,
            rbuf: BytesMut::with_capacity(MIN_READ_CHUNK),
            read_chunk: MIN_READ_CHUNK,
            partial: None,
            seq: 0,
            handshake: Handshake {
                server_version: String::new(),
                connection_id: 0,
                capabilities: 0,
                nonce: Vec::new(),
                auth_plugin: String::new(),
            },
            query_timeout: opts.query_timeout,
        };
        let greeting = conn.read_packet().await?;
        if greeting.first() == Some(&0xFF) {
            return Err(ConnError::Server(ServerError::parse(&greeting)?));
        }
        conn.handshake = Handshake::parse(&greeting)?;
        let server_caps = conn.handshake.capabilities;

        let mut client_caps = caps::LONG_PASSWORD
            | caps::LONG_FLAG
            | caps::PROTOCOL_41
            | caps::TRANSACTIONS
            | caps::SECURE_CONNECTION
            | caps::MULTI_RESULTS
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_DATA;
        client_caps &= server_caps | caps::PROTOCOL_41;

        let use_tls = match url.tls {
            TlsMode::Disabled => false,
            TlsMode::Preferred => server_caps & caps::SSL != 0,
            TlsMode::Required | TlsMode::VerifyCa | TlsMode::VerifyIdentity => {
                if server_caps & caps::SSL == 0 {
                    return Err(ConnError::Tls(
                        "the server does not offer TLS but the URL requires it (ssl-mode); \
                         configure ssl_cert/ssl_key on the server or drop ssl-mode"
                            .into(),
                    ));
                }
                true
            }
        };
        if use_tls {
            client_caps |= caps::SSL;
            let mut req = Vec::with_capacity(32);
            req.extend_from_slice(&client_caps.to_le_bytes());
            req.extend_from_slice(&(MAX_PHYSICAL_PAYLOAD as u32).to_le_bytes());
            req.push(45); // utf8mb4_general_ci
            req.extend_from_slice(&[0u8; 23]);
            conn.write_packet(&req).await?;
            conn.start_tls(url).await?;
        }

        let plugin = conn.handshake.auth_plugin.clone();
        let nonce = conn.handshake.nonce.clone();
        let auth = auth_response(&plugin, &nonce, url.password.as_deref(), use_tls)?;
        let mut resp = Vec::with_capacity(128);
        resp.extend_from_slice(&client_caps.to_le_bytes());
        resp.extend_from_slice(&(MAX_PHYSICAL_PAYLOAD as u32).to_le_bytes());
        resp.push(45);
        resp.extend_from_slice(&[0u8; 23]);
        resp.extend_from_slice(url.user.as_bytes());
        resp.push(0);
        packet::put_lenenc_int(&mut resp, auth.len() as u64);
        resp.extend_from_slice(&auth);
        resp.extend_from_slice(plugin.as_bytes());
        resp.push(0);
        conn.write_packet(&resp).await?;
        conn.finish_auth(plugin, use_tls, url.password.as_deref())
            .await?;
        Ok(conn)
    }

    async fn start_tls(&mut self, url: &SourceUrl) -> Result<(), ConnError> {
        let config = crate::tls::client_config(url)?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let name = rustls_pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| ConnError::Tls(format!("server name {:?}: {e}", url.host)))?;
        // The TLS layer starts right after the SSLRequest; nothing may be buffered.
        if !self.rbuf.is_empty() {
            return Err(ConnError::Tls(
                "server sent data before the TLS handshake".into(),
            ));
        }
        let plain = std::mem::replace(&mut self.io, Box::new(tokio::io::duplex(1).0));
        let tls = connector.connect(name, plain).await.map_err(|e| {
            // rustls reports protocol and certificate failures as InvalidData; anything
            // else is the network (reset, EOF) and worth a retry.
            if e.kind() == std::io::ErrorKind::InvalidData {
                ConnError::Tls(format!("handshake with {}: {e}", url.host))
            } else {
                ConnError::Io {
                    context: "TLS handshake",
                    source: e,
                }
            }
        })?;
        self.io = Box::new(tls);
        Ok(())
    }

    async fn finish_auth(
        &mut self,
        mut plugin: String,
        tls: bool,
        password: Option<&str>,
    ) -> Result<(), ConnError> {
        for _ in 0..8 {
            let p = self.read_packet().await?;
            match p.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(ConnError::Server(ServerError::parse(&p)?)),
                Some(0xFE) => {
                    // AuthSwitchRequest: plugin name NUL, then plugin data.
                    let mut r = Reader::new(p.get(1..).unwrap_or_default(), "auth switch");
                    plugin = String::from_utf8_lossy(r.nul_str()?).into_owned();
                    let data = r.rest();
                    let data = data.strip_suffix(&[0]).unwrap_or(data);
                    let resp = auth_response(&plugin, data, password, tls)?;
                    self.write_packet(&resp).await?;
                }
                Some(0x01) if plugin == "caching_sha2_password" => match p.get(1) {
                    Some(0x03) => {} // fast auth succeeded; OK follows
                    Some(0x04) => {
                        if !tls {
                            return Err(ConnError::Auth(
                                "caching_sha2_password needs full authentication, which \
                                 sends the password and is only done over TLS here: add \
                                 ?ssl-mode=REQUIRED to the source URL (or log in once with \
                                 the mysql client to fill the server's cache)"
                                    .into(),
                            ));
                        }
                        let mut pw = password.unwrap_or("").as_bytes().to_vec();
                        pw.push(0);
                        self.write_packet(&pw).await?;
                    }
                    other => {
                        return Err(ConnError::Auth(format!(
                            "unexpected caching_sha2_password state {other:?}"
                        )))
                    }
                },
                other => {
                    return Err(ConnError::Auth(format!(
                        "unexpected packet 0x{:02x} during authentication with {plugin}",
                        other.copied().unwrap_or(0)
                    )))
                }
            }
        }
        Err(ConnError::Auth(
            "too many authentication round trips".into(),
        ))
    }

    /// The server's version string (MariaDB's "5.5.5-" prefix removed).
    pub fn server_version(&self) -> &str {
        &self.handshake.server_version
    }

    /// The server's connection id for this session (for KILL and SHOW PROCESSLIST).
    pub fn connection_id(&self) -> u32 {
        self.handshake.connection_id
    }

    /// True when a whole packet is already buffered (the next read will not block).
    pub fn has_buffered_packet(&self) -> bool {
        frame_header(&self.rbuf).is_some_and(|(len, _)| self.rbuf.len() >= 4 + len)
    }

    /// Reads one logical packet (joining 16 MiB continuation packets), without timeout.
    /// Returns the payload; the sequence id is tracked internally. Cancel-safe: a read
    /// dropped at an await (a `select!` that took another branch) loses nothing, the
    /// next call goes on where it stopped.
    pub async fn read_packet(&mut self) -> Result<Bytes, ConnError> {
        loop {
            let next = self.read_physical().await?;
            let Some(joined) = self.partial.as_mut() else {
                if next.len() < MAX_PHYSICAL_PAYLOAD {
                    return Ok(next);
                }
                self.partial = Some(BytesMut::from(&next[..]));
                continue;
            };
            if joined.len() + next.len() > MAX_LOGICAL_PAYLOAD {
                self.partial = None;
                return Err(ConnError::Protocol(PacketError::Malformed {
                    what: "packet",
                    detail: format!("logical packet larger than {MAX_LOGICAL_PAYLOAD} bytes"),
                }));
            }
            joined.extend_from_slice(&next);
            if next.len() < MAX_PHYSICAL_PAYLOAD {
                return Ok(self.partial.take().unwrap_or_default().freeze());
            }
        }
    }

    async fn read_physical(&mut self) -> Result<Bytes, ConnError> {
        self.fill(4).await?;
        let (len, seq) = frame_header(&self.rbuf).ok_or_else(|| {
            ConnError::Protocol(PacketError::Malformed {
                what: "packet",
                detail: "short header".into(),
            })
        })?;
        self.seq = seq.wrapping_add(1);
        self.fill(4 + len).await?;
        self.rbuf.advance(4);
        Ok(self.rbuf.split_to(len).freeze())
    }

    async fn fill(&mut self, n: usize) -> Result<(), ConnError> {
        while self.rbuf.len() < n {
            let want = (n - self.rbuf.len()).max(self.read_chunk);
            self.rbuf.reserve(want);
            let room = self.rbuf.capacity() - self.rbuf.len();
            let got = self
                .io
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|source| ConnError::Io {
                    context: "read from the server",
                    source,
                })?;
            if got == 0 {
                return Err(ConnError::Io {
                    context: "read from the server",
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed by the server",
                    ),
                });
            }
            self.read_chunk = next_read_chunk(self.read_chunk, got, room);
        }
        Ok(())
    }

    /// Writes one logical packet, splitting it at 16 MiB, with the current sequence id.
    pub async fn write_packet(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        let mut out = Vec::with_capacity(payload.len() + 8);
        packet::frame(&mut out, &mut self.seq, payload);
        self.io
            .write_all(&out)
            .await
            .map_err(|source| ConnError::Io {
                context: "write to the server",
                source,
            })?;
        self.io.flush().await.map_err(|source| ConnError::Io {
            context: "write to the server",
            source,
        })
    }

    /// Sends a command packet (sequence id 0).
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        self.seq = 0;
        self.write_packet(payload).await
    }

    async fn read_timed(&mut self, what: &'static str) -> Result<Bytes, ConnError> {
        let t = self.query_timeout;
        tokio::time::timeout(t, self.read_packet())
            .await
            .map_err(|_| ConnError::Timeout(what))?
    }

    /// Reads the OK/ERR answer to a command.
    pub async fn read_ok(&mut self, what: &'static str) -> Result<(), ConnError> {
        let p = self.read_timed(what).await?;
        match p.first() {
            Some(0x00) => Ok(()),
            Some(0xFF) => Err(ConnError::Server(ServerError::parse(&p)?)),
            _ => Err(ConnError::Protocol(PacketError::Malformed {
                what: "OK",
                detail: format!("unexpected answer to {what}"),
            })),
        }
    }

    /// Runs one statement with the text protocol and returns its result set (empty for
    /// statements without one). Multi-statement strings are not supported.
    pub async fn query(&mut self, sql: &str) -> Result<ResultSet, ConnError> {
        let mut cmd = Vec::with_capacity(sql.len() + 1);
        cmd.push(0x03);
        cmd.extend_from_slice(sql.as_bytes());
        self.send_command(&cmd).await?;
        let first = self.read_timed("query").await?;
        match first.first() {
            Some(0x00) => return Ok(ResultSet::default()),
            Some(0xFF) => return Err(ConnError::Server(ServerError::parse(&first)?)),
            _ => {}
        }
        let ncols = Reader::new(&first, "result set header")
            .lenenc_int()?
            .unwrap_or(0);
        if ncols > 4096 {
            return Err(ConnError::Protocol(PacketError::Malformed {
                what: "result set header",
                detail: format!("{ncols} columns"),
            }));
        }
        let mut rs = ResultSet::default();
        for _ in 0..ncols {
            let p = self.read_timed("column definition").await?;
            let mut r = Reader::new(&p, "column definition");
            for _ in 0..4 {
                r.lenenc_bytes()?; // catalog, schema, table, org_table
            }
            let name = r.lenenc_bytes()?.unwrap_or_default();
            rs.columns.push(String::from_utf8_lossy(name).into_owned());
        }
        let p = self.read_timed("column definitions EOF").await?;
        if !is_eof(&p) {
            return Err(ConnError::Protocol(PacketError::Malformed {
                what: "EOF",
                detail: "expected EOF after column definitions".into(),
            }));
        }
        loop {
            let p = self.read_timed("row").await?;
            if is_eof(&p) {
                break;
            }
            if p.first() == Some(&0xFF) {
                return Err(ConnError::Server(ServerError::parse(&p)?));
            }
            let mut r = Reader::new(&p, "row");
            let mut row = Vec::with_capacity(rs.columns.len());
            for _ in 0..rs.columns.len() {
                row.push(
                    r.lenenc_bytes()?
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                );
            }
            rs.rows.push(row);
            if rs.rows.len() > 1_000_000 {
                return Err(ConnError::Protocol(PacketError::Malformed {
                    what: "result set",
                    detail: "more than 1,000,000 rows".into(),
                }));
            }
        }
        Ok(rs)
    }

    /// Runs a statement and returns the first column of the first row, if any.
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<String>, ConnError> {
        let rs = self.query(sql).await?;
        Ok(rs
            .rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }

    /// Reads the next binlog stream packet without a timeout: `Ok(Some(event))` for an
    /// event (the 0x00 marker stripped), `Ok(None)` for EOF (the server ended the dump),
    /// an error for an ERR packet (e.g. 1236) or a broken connection.
    pub async fn read_binlog_packet(&mut self) -> Result<Option<Bytes>, ConnError> {
        let mut p = self.read_packet().await?;
        match p.first() {
            Some(0x00) => {
                p.advance(1);
                Ok(Some(p))
            }
            Some(0xFF) => Err(ConnError::Server(ServerError::parse(&p)?)),
            _ if is_eof(&p) => Ok(None),
            other => Err(ConnError::Protocol(PacketError::Malformed {
                what: "binlog stream",
                detail: format!("packet starting with 0x{:02x}", other.copied().unwrap_or(0)),
            })),
        }
    }
}

/// Payload length and sequence id of the packet header at the start of `buf`, if the 4
/// header bytes are there.
fn frame_header(buf: &[u8]) -> Option<(usize, u8)> {
    let h = buf.get(..4)?;
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    Some((len, h[3]))
}

/// The authentication response for `plugin` given the server's nonce, for the first
/// response and for an auth switch alike. `mysql_clear_password` is refused unless the
/// connection is TLS (`tls`): whatever a greeting (a spoofed primary, a restore
/// destination) names, the password never goes out in clear.
fn auth_response(
    plugin: &str,
    nonce: &[u8],
    password: Option<&str>,
    tls: bool,
) -> Result<Vec<u8>, ConnError> {
    let pw = password.unwrap_or("").as_bytes();
    // Nonces are 20 bytes; some servers append a NUL.
    let nonce = nonce.get(..20).unwrap_or(nonce);
    match plugin {
        "mysql_native_password" | "" => Ok(mysql_common::scramble::scramble_native(nonce, pw)
            .map(|s| s.to_vec())
            .unwrap_or_default()),
        "caching_sha2_password" => Ok(mysql_common::scramble::scramble_sha256(nonce, pw)
            .map(|s| s.to_vec())
            .unwrap_or_default()),
        "mysql_clear_password" if !tls => Err(ConnError::Auth(
            "the server asked for mysql_clear_password, which would send the password in \
             clear: use TLS (ssl-mode=REQUIRED) for this user"
                .into(),
        )),
        "mysql_clear_password" => {
            let mut v = pw.to_vec();
            v.push(0);
            Ok(v)
        }
        other => Err(ConnError::Auth(format!(
            "authentication plugin {other:?} is not supported; give the replication user \
             mysql_native_password (MariaDB) or caching_sha2_password (MySQL 8)"
        ))),
    }
}

#[cfg(test)]
mod clear_password_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One framed packet: 3-byte length, sequence id, payload.
    fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len() as u32;
        let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
        v.extend_from_slice(payload);
        v
    }

    /// A greeting naming `plugin` (no TLS offered).
    fn greeting(plugin: &str) -> Vec<u8> {
        let nonce = [7u8; 20];
        let caps = caps::LONG_PASSWORD
            | caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_DATA;
        let mut g = crate::server::handshake_v10("10.11.6-MariaDB", 1, &nonce, caps);
        let native = format!("{}\0", crate::server::NATIVE_PASSWORD);
        g.truncate(g.len() - native.len());
        g.extend_from_slice(plugin.as_bytes());
        g.push(0);
        g
    }

    /// A listener that greets with `plugin`, answers the first response with an auth
    /// switch to `switch_to` when given, and returns every byte the client sent.
    async fn listener(
        plugin: &'static str,
        switch_to: Option<&'static str>,
    ) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(&frame(0, &greeting(plugin))).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let mut switched = false;
            loop {
                let n = match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => break,
                };
                got.extend_from_slice(&buf[..n]);
                if let (Some(p), false) = (switch_to, switched) {
                    switched = true;
                    let sw = crate::server::auth_switch_request(p, &[9u8; 20]);
                    let _ = s.write_all(&frame(2, &sw)).await;
                }
            }
            got
        });
        (port, h)
    }

    async fn connect(port: u16) -> Result<Conn, ConnError> {
        Conn::connect(&ConnectOptions {
            url: SourceUrl::parse(&format!("mysql://repl:s3cret-pw@127.0.0.1:{port}")).unwrap(),
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(5),
        })
        .await
    }

    #[tokio::test]
    async fn a_greeting_naming_mysql_clear_password_gets_no_password_without_tls() {
        let (port, h) = listener("mysql_clear_password", None).await;
        let r = connect(port).await;
        assert!(matches!(r, Err(ConnError::Auth(_))), "{:?}", r.err());
        let sent = h.await.unwrap();
        assert!(
            !sent.windows(9).any(|w| w == b"s3cret-pw"),
            "the password went out in clear"
        );
    }

    #[tokio::test]
    async fn an_auth_switch_to_mysql_clear_password_gets_no_password_without_tls() {
        let (port, h) = listener("mysql_native_password", Some("mysql_clear_password")).await;
        let r = connect(port).await;
        assert!(matches!(r, Err(ConnError::Auth(_))), "{:?}", r.err());
        let sent = h.await.unwrap();
        assert!(!sent.is_empty(), "the first response was sent");
        assert!(
            !sent.windows(9).any(|w| w == b"s3cret-pw"),
            "the password went out in clear"
        );
    }
}

/// Property tests (proptest) of the packet framing the reader undoes and of the field
/// reader every packet parser uses.
#[cfg(test)]
mod proptests {
    use super::frame_header;
    use crate::packet::{frame, put_lenenc_int, Reader};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Framed packets read back as the same payloads with consecutive sequence ids.
        #[test]
        fn framed_packets_read_back(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5000), 0..8),
            seq0 in any::<u8>(),
        ) {
            let mut wire = Vec::new();
            let mut seq = seq0;
            for p in &payloads {
                frame(&mut wire, &mut seq, p);
            }
            let mut at = 0;
            let mut expect_seq = seq0;
            for p in &payloads {
                let (len, s) = frame_header(&wire[at..]).expect("a header");
                prop_assert_eq!(s, expect_seq);
                expect_seq = expect_seq.wrapping_add(1);
                prop_assert_eq!(&wire[at + 4..at + 4 + len], p.as_slice());
                at += 4 + len;
            }
            prop_assert_eq!(at, wire.len());
        }

        /// The field reader never panics and never reads past its input.
        #[test]
        fn the_field_reader_stays_in_bounds(data in proptest::collection::vec(any::<u8>(), 0..512), ops in proptest::collection::vec(0u8..8, 0..64)) {
            let mut r = Reader::new(&data, "proptest");
            let mut used = 0usize;
            for op in ops {
                let before = r.remaining();
                let ok = match op {
                    0 => r.u8().is_ok(),
                    1 => r.u16().is_ok(),
                    2 => r.u24().is_ok(),
                    3 => r.u32().is_ok(),
                    4 => r.u64().is_ok(),
                    5 => r.nul_str().is_ok(),
                    6 => r.lenenc_int().is_ok(),
                    _ => r.lenenc_bytes().is_ok(),
                };
                prop_assert!(r.remaining() <= before);
                if ok { used += before - r.remaining(); }
                prop_assert!(used <= data.len());
            }
        }

        /// A length-encoded integer reads back as written.
        #[test]
        fn lenenc_ints_read_back(n in any::<u64>()) {
            let mut b = Vec::new();
            put_lenenc_int(&mut b, n);
            let mut r = Reader::new(&b, "proptest");
            prop_assert_eq!(r.lenenc_int().unwrap(), Some(n));
            prop_assert_eq!(r.remaining(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_chunk_grows_while_reads_fill_it_and_shrinks_while_they_trickle() {
        let mut c = MIN_READ_CHUNK;
        for _ in 0..10 {
            c = next_read_chunk(c, c, c);
        }
        assert_eq!(c, MAX_READ_CHUNK, "full reads grow it to the largest");
        assert_eq!(next_read_chunk(c, c / 2, c), c, "half full: kept");
        for _ in 0..10 {
            c = next_read_chunk(c, 100, c);
        }
        assert_eq!(
            c, MIN_READ_CHUNK,
            "trickling reads shrink it to the smallest"
        );
    }
}
