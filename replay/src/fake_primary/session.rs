//! One replica connection: server-side packet framing ([`Wire`]), the HandshakeV10
//! greeting, the `mysql_native_password` login against the listener's one account, and
//! the command loop that answers queries ([`super::query`]) or hands over to a dump
//! ([`super::dump`]).

use node::util::lock;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::archive::{session_facts, ArchiveFacts};
use super::compat::Compat;
use super::dump::{announced_checksum, dump, start_point, DumpOptions};
use super::query::answer_query;
use super::wire::{read_packet, Wire};
use super::Shared;
use binlog::ChecksumAlg;
use mysql_wire::errcode::{
    ER_ACCESS_DENIED_ERROR, ER_MASTER_FATAL_ERROR_READING_BINLOG, ER_SECURE_TRANSPORT_REQUIRED,
    ER_UNKNOWN_COM_ERROR,
};

use mysql_wire::server;

/// Time a client has from the greeting to a complete login (MariaDB's connect_timeout
/// is 10 s too).
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Heartbeat period when the replica asks for none (MariaDB's default is
/// slave_net_timeout / 2 = 30 s).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Failed logins from one address before its connections are delayed.
const FREE_FAILURES: u32 = 3;
/// The delay after [`FREE_FAILURES`] failures, doubled with each further failure...
const FIRST_DELAY: Duration = Duration::from_millis(50);
/// ... up to this.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// An address's failures are forgotten this long after its last one, or at a login.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (the oldest are dropped beyond).
const MAX_TRACKED: usize = 10_000;

/// Failed logins per client address: each connection from an address with more than
/// [`FREE_FAILURES`] recent failures waits before its greeting, 50 ms doubling per
/// failure up to 2 s (as MySQL's connection_control plugin delays, faster to recover).
#[derive(Default)]
pub(super) struct Logins {
    by_addr:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
}

impl Logins {
    /// How long a new connection from `ip` waits before its greeting.
    pub(super) fn delay(&self, ip: std::net::IpAddr) -> Duration {
        let m = lock(&self.by_addr);
        match m.get(&ip) {
            Some(&(n, last)) if n >= FREE_FAILURES && last.elapsed() < FORGET_AFTER => {
                let shift = (n - FREE_FAILURES).min(16);
                (FIRST_DELAY * (1u32 << shift)).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failed login from `ip`; returns the failures in a row.
    pub(super) fn failed(&self, ip: std::net::IpAddr) -> u32 {
        let mut m = lock(&self.by_addr);
        if m.len() >= MAX_TRACKED {
            m.retain(|_, (_, last)| last.elapsed() < FORGET_AFTER);
            if m.len() >= MAX_TRACKED {
                if let Some(oldest) = m.iter().min_by_key(|(_, (_, last))| *last).map(|(k, _)| *k) {
                    m.remove(&oldest);
                }
            }
        }
        let e = m.entry(ip).or_insert((0, std::time::Instant::now()));
        if e.1.elapsed() >= FORGET_AFTER {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = std::time::Instant::now();
        e.0
    }

    /// A login from `ip` succeeded: its failures are forgotten.
    pub(super) fn succeeded(&self, ip: std::net::IpAddr) {
        lock(&self.by_addr).remove(&ip);
    }
}

/// Serves one replica connection: (a delay after failed logins from `peer`), greeting,
/// TLS when the listener has it, login, then commands until it quits, a dump ends, or
/// the login fails. Nothing of the archive is read before the login succeeds (the
/// greeting's version is the listener's cached one).
///
/// # Errors
///
/// I/O and protocol errors, and a refused login (after the ERR packet is sent).
pub(super) async fn session(
    shared: Arc<Shared>,
    sock: TcpStream,
    peer: std::net::IpAddr,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let delay = shared.logins.delay(peer);
    // A client that does not finish the handshake in time holds no session.
    let login = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        tokio::time::sleep(delay).await;
        login(sock, &shared).await
    })
    .await
    .map_err(|_| anyhow::anyhow!("no login within {HANDSHAKE_TIMEOUT:?}; closed"))??;
    let mut wire = match login {
        Login::Accepted(w) => {
            shared.logins.succeeded(peer);
            w
        }
        Login::Denied { user } => {
            let n = shared.logins.failed(peer);
            // The name is the client's: escaped and cut, so it cannot forge log lines.
            let shown: String = user.chars().take(64).collect();
            tracing::warn!(%peer, user = ?shown, failures = n, "fake primary: login refused");
            anyhow::bail!("access denied for {user:?}");
        }
    };
    // On a fleet node that does not capture the source: the store's view of it.
    // The index guard is held only while the view is built: a session looks a GTID up
    // in the index once, when its dump starts.
    let archive = match shared.archive.for_restore().await {
        Ok(r) => r.archive,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "fake primary: this node does not capture the source and cannot read it from the store; session closed");
            return Err(e.into());
        }
    };
    let facts = session_facts(&archive).await?;
    shared.set_greeting(&facts);
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);

    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let pkt = wire.read().await?;
        let Some((&cmd, body)) = pkt.split_first() else {
            anyhow::bail!("empty command packet");
        };
        match cmd {
            0x01 => return Ok(()),
            0x03 => {
                let sql = String::from_utf8_lossy(body).into_owned();
                answer_query(&mut wire, &sql, &mut vars, &facts, &archive).await?;
            }
            0x02 | 0x0e | 0x15 => wire.ok().await?,
            0x12 | 0x1e => {
                let session = DumpSession {
                    shared,
                    archive,
                    wire,
                    facts,
                };
                return start_dump(session, (cmd, body), &vars, cancel).await;
            }
            _ => wire.err(ER_UNKNOWN_COM_ERROR, "Unknown command").await?,
        }
    }
}

/// How a login ended that was answered (I/O and protocol failures are errors).
enum Login {
    /// OK was sent: the session goes on over this connection.
    Accepted(Wire),
    /// ERR 1045 was sent for this user name (the client's, lossily decoded).
    Denied {
        /// The name the client gave.
        user: String,
    },
}

/// Largest handshake packet read before TLS (an SSLRequest is 32 bytes, a
/// HandshakeResponse41 a few hundred).
const MAX_HANDSHAKE_PACKET: usize = 64 * 1024;

/// HandshakeV10 (the listener's cached version, MariaDB as `5.5.5-<version>`; CLIENT_SSL
/// when the listener has TLS), the TLS upgrade on an SSLRequest (required when the
/// listener has TLS: a plain login gets ERROR 3159), the HandshakeResponse41 (an
/// AuthSwitchRequest to `mysql_native_password` when the client starts with another
/// plugin), and the check against the listener's account.
async fn login(mut sock: TcpStream, shared: &Shared) -> anyhow::Result<Login> {
    use tokio::io::AsyncWriteExt;
    let conn_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let nonce = server::scramble(node::random::bytes()?);
    let version = shared.greeting_version();
    let mut caps = server::SERVER_CAPABILITIES;
    if shared.tls.is_some() {
        caps |= mysql_wire::packet::caps::SSL;
    }
    let mut seq = 0u8;
    let mut out = Vec::new();
    mysql_wire::packet::frame(
        &mut out,
        &mut seq,
        &server::handshake_v10(&version, conn_id, &nonce, caps),
    );
    sock.write_all(&out).await?;
    // Straight from the socket, without a buffer: after an SSLRequest the client's TLS
    // hello follows at once and must stay in the socket.
    let (first, next_seq) = read_packet(&mut sock, MAX_HANDSHAKE_PACKET).await?;
    let client_caps = first
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let (mut wire, resp) = if client_caps & mysql_wire::packet::caps::SSL != 0 {
        let Some(acceptor) = &shared.tls else {
            anyhow::bail!("the client asked for TLS, which this listener does not offer");
        };
        let tls = acceptor.accept(sock).await?;
        let mut wire = Wire::new(tokio_util::either::Either::Right(tls), 0);
        let resp = wire.read().await?;
        (wire, resp)
    } else {
        let mut wire = Wire::new(tokio_util::either::Either::Left(sock), next_seq);
        if shared.tls.is_some() {
            wire.err(
                ER_SECURE_TRANSPORT_REQUIRED,
                "Connections using insecure transport are prohibited: this fake primary needs MASTER_SSL=1",
            )
            .await?;
            anyhow::bail!("a plain login where TLS is required");
        }
        (wire, first)
    };

    // HandshakeResponse41.
    let server::HandshakeResponse {
        user,
        auth: mut token,
        plugin: client_plugin,
    } = server::HandshakeResponse::parse(&resp)?;
    if client_plugin
        .as_deref()
        .is_some_and(|p| p != server::NATIVE_PASSWORD)
    {
        wire.write(&server::auth_switch_request(
            server::NATIVE_PASSWORD,
            &nonce,
        ))
        .await?;
        token = wire.read().await?;
    }
    if user != shared.creds.user
        || shared.creds.password.is_empty()
        || !server::native_password_matches(&nonce, &shared.creds.password, &token)
    {
        wire.err(
            ER_ACCESS_DENIED_ERROR,
            &format!(
                "Access denied for user '{user}' (binlog-server fake primary of {})",
                shared.archive.source
            ),
        )
        .await?;
        return Ok(Login::Denied { user });
    }
    wire.ok().await?;
    Ok(Login::Accepted(wire))
}

/// A session about to dump: the listener's state, the archive it serves (the
/// listener's, or the store's view of it on a node that does not capture the source),
/// the connection and the facts read at login.
struct DumpSession {
    shared: Arc<Shared>,
    archive: Arc<super::Archive>,
    wire: Wire,
    facts: ArchiveFacts,
}

/// COM_BINLOG_DUMP (0x12) or COM_BINLOG_DUMP_GTID (0x1E) with its body: finds the start
/// point, refuses a replica that cannot take the archive's checksums (both with ERROR
/// 1236), and runs the dump with the heartbeat period the replica asked for.
async fn start_dump(
    session: DumpSession,
    (cmd, body): (u8, &[u8]),
    vars: &BTreeMap<String, String>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let DumpSession {
        shared,
        archive,
        mut wire,
        facts,
    } = session;
    let start = match start_point(cmd, body, vars, &facts, &archive).await {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            *lock(&shared.stats.last_error) = Some(msg.clone());
            wire.err(ER_MASTER_FATAL_ERROR_READING_BINLOG, &msg).await?;
            return Ok(());
        }
    };
    let crc_aware =
        vars.contains_key("master_binlog_checksum") || vars.contains_key("source_binlog_checksum");
    if facts.alg == ChecksumAlg::Crc32 && !crc_aware {
        let msg = "Slave can not handle replication events with the checksum that master is configured to log (set @master_binlog_checksum first)";
        wire.err(ER_MASTER_FATAL_ERROR_READING_BINLOG, msg).await?;
        return Ok(());
    }
    let hb = vars
        .get("master_heartbeat_period")
        .or_else(|| vars.get("source_heartbeat_period"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ns| *ns >= 1e6)
        .map(|ns| Duration::from_nanos(ns as u64))
        .unwrap_or(DEFAULT_HEARTBEAT);
    let opts = DumpOptions {
        heartbeat: hb,
        checksum: announced_checksum(vars),
        capability: Compat::capability_of(
            vars.get("mariadb_slave_capability").map(String::as_str),
            facts.mariadb,
        ),
        semi_sync: super::dump::asked_semi_sync(vars),
    };
    dump(shared, archive, wire, facts, start, opts, cancel).await
}
