//! The fake primary: a MySQL-protocol listener that real replicas connect to with
//! CHANGE MASTER TO, serving one source's archived binlogs.
//!
//! # Which source, which dialect
//!
//! One listener serves one source: a per-source port (`[source.replication] listen`,
//! with one replication account) or a PITR job's own listener on an ephemeral 127.0.0.1
//! port with one-time credentials and a stop point. The handshake presents the version
//! found in the archive's newest FORMAT_DESCRIPTION (MariaDB as `"5.5.5-<version>"`), so a
//! replica sees the dialect it would see on the real primary.
//!
//! # Session (DESIGN.md "Fake primary -> real replica"; mysql-server `sql/rpl_replica.cc`,
//! MariaDB `sql/slave.cc` `get_master_version_and_clock`)
//!
//! HandshakeV10 with `mysql_native_password` (an AuthSwitchRequest when the client starts
//! with another plugin), then a command loop. Queries are answered tolerantly, not by
//! exact string: `SET` stores user variables (`@master_binlog_checksum`,
//! `@slave_connect_state`, `@master_heartbeat_period`, ...) and answers OK; `SELECT`
//! evaluates each item (`UNIX_TIMESTAMP()`, `@@GLOBAL.x` from a small variable table,
//! `@x`, literals) and unknown items are NULL; `SHOW VARIABLES LIKE`, `SHOW BINARY LOGS`
//! and `SHOW MASTER STATUS` answer from the archive; other statements get OK.
//! COM_REGISTER_SLAVE and COM_PING get OK.
//!
//! # Before the login
//!
//! What an unauthenticated client can make the listener do is bounded: at most
//! `max_sessions` sessions per listener ([`DEFAULT_MAX_SESSIONS`], `[source.replication]
//! max_sessions`; beyond it a connection gets ERROR 1040 "Too many connections" instead
//! of the greeting, as a server at max_connections); 10 s (`session::HANDSHAKE_TIMEOUT`)
//! from the accept to a complete login, after which the connection is closed; after 3
//! failed logins from an address its connections wait before the greeting, 50 ms
//! doubling per failure up to 2 s; nothing of the archive is read (the greeting's
//! version is read once at start and refreshed after each login). With TLS
//! (`tls_cert`/`tls_key`) the greeting offers CLIENT_SSL, the client's SSLRequest
//! upgrades the socket (rustls), and a client that logs in without TLS gets ERROR 3159.
//!
//! # Dump
//!
//! COM_BINLOG_DUMP (0x12) starts at a file and position, or, when the replica set
//! `@slave_connect_state` (MariaDB GTID mode), at the earliest end of the connect state's
//! GTIDs in the index, skipping event groups whose GTID the state already holds (as
//! MariaDB's `mysql_binlog_send` does). COM_BINLOG_DUMP_GTID (0x1E) does the same with a
//! MySQL GTID set. The stream is: an artificial ROTATE (timestamp 0,
//! LOG_EVENT_ARTIFICIAL_F) naming the file; the file's FORMAT_DESCRIPTION with log_pos 0
//! when starting past offset 4; then the stored events verbatim (the FORMAT_DESCRIPTION's
//! in-use flag cleared, as servers send it), but for a MariaDB archive's own events,
//! which go to a client by its `@mariadb_slave_capability` as a MariaDB primary sends
//! them (left out, or replaced by a BEGIN or a dummy of the same size: `compat.rs`). Every event's CRC32 is checked before it
//! goes out: a bad event, a FAIL file, a missing file or a recorded gap ends the dump with
//! ERROR 1236 and the reason, never with skipped bytes. The ACTIVE file is followed up to
//! its durable (fsynced) length only. Idle streams get HEARTBEAT events (type 27) at the
//! period the replica asked for (`@master_heartbeat_period`, nanoseconds; default 30 s).
//!
//! A replica that set `@rpl_semi_sync_slave = 1` or `@rpl_semi_sync_replica = 1` (the
//! fake primary answers `rpl_semi_sync_master_enabled` / `_source_enabled` ON) gets a
//! semi-sync stream: each event after the 2-byte header (`mysql_wire::semisync`), a
//! transaction's end (XID, a QUERY other than BEGIN) asking for an ack; the acks are
//! read and counted ([`ServeStats::semi_sync_acks`]), nothing waits for them.
//!
//! Timelines (failover follow): every timeline's files are served by their stored names
//! (`tl<N>/<name>`). A dump that reaches the end of a timeline continues with the next
//! timeline's first file, leaving out there what it already sent from the earlier
//! timeline (each transaction once); a switch with divergent transactions, or a next
//! file that is not the timeline's first, ends the dump with ERROR 1236 and the reason.
//! A dump that starts in a timeline's first file gets it as stored.
//!
//! A stop point (file, offset) — always a transaction boundary from the PITR planner —
//! ends sending: no event at or after it goes out; the connection stays open with
//! heartbeats, so the replica idles instead of reconnecting.
//!
//! # Memory
//!
//! Each dump runs a reader task that frames packets into 256 KiB chunks (its file work
//! in steps on the blocking threads, see `dump.rs`) and a task that writes them; at most
//! 8 chunks are in flight per replica (an event larger than a chunk is one chunk of its
//! own size).
//!
//! Nothing here writes to the archive: a crash loses nothing; replicas reconnect and
//! resume from their own position.
//!
//! # Files
//!
//! | file | its one job |
//! |---|---|
//! | `mod.rs` | the public types ([`StopAt`], [`Credentials`], [`ServeStats`], [`Listener`]) and [`spawn`]: bind, accept, one task per replica |
//! | `archive.rs` | what a session reads of the archive: [`Archive`], the files on disk, the newest FORMAT_DESCRIPTION, the durable end |
//! | `wire.rs` | the server side of one connection: command packets in, OK/ERR/result sets out |
//! | `session.rs` | one replica connection: greeting, `mysql_native_password` login, command loop |
//! | `query.rs` | the tolerant answers to a replica's `SET`, `SELECT` and `SHOW` statements |
//! | `dump.rs` | COM_BINLOG_DUMP / COM_BINLOG_DUMP_GTID: the start point, and the reader task that checks and frames the events |
//! | `error.rs` | [`DumpError`]: why a dump ends with ERROR 1236, one variant per cause; its text is the ERR packet's |
//! | `compat.rs` | what a MariaDB primary sends a client by its `@mariadb_slave_capability`: MariaDB's events left out, or replaced by BEGIN and dummy events of the same size |

mod archive;
mod compat;
mod dump;
mod error;
mod query;
mod session;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_wire::errcode::ER_CON_COUNT_ERROR;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

pub use archive::{Archive, ForRestore};
pub use dump::parse_connect_state;
pub use error::DumpError;

/// Where a dump stops: no event starting at or after `pos` in `file`, nor any event of a
/// later file, is sent. Always a transaction boundary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StopAt {
    /// Binlog file name.
    pub file: String,
    /// Offset in `file`, bytes.
    pub pos: u64,
}

/// Fuzzing entry (target `replica_input`; its corpus is replayed by `cargo test`):
/// every parser what a replica sends reaches before the archive is read: the
/// HandshakeResponse41, a query's text (SET, SELECT, SHOW ... LIKE), a dump command's
/// body and `@slave_connect_state`. Returns a figure so the work is not optimised away.
pub fn parse_replica_input(data: &[u8]) -> usize {
    let mut n = mysql_wire::server::HandshakeResponse::parse(data).is_ok() as usize;
    let text = String::from_utf8_lossy(data);
    n += query::parse_only(&text);
    n += parse_connect_state(&text).map(|v| v.len()).unwrap_or(0);
    n + dump::parse_dump_command(data)
}

/// The one account a listener accepts (`[source.replication]`, or a PITR job's).
pub use node::config::Credentials;

/// Live figures of a listener, for the API and PITR progress.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Replica connections accepted (authenticated).
    pub connections: AtomicU64,
    /// Dumps running now.
    pub active_dumps: AtomicU64,
    /// Event bytes sent (all dumps).
    pub bytes_sent: AtomicU64,
    /// Events sent (all dumps).
    pub events_sent: AtomicU64,
    /// True once a dump reached the stop point.
    pub reached_stop: AtomicBool,
    /// Semi-sync acks received from replicas (counted when their dump ends).
    pub semi_sync_acks: AtomicU64,
    /// The last error sent to a replica (ERROR 1236 text), if any.
    pub last_error: Mutex<Option<String>>,
}

/// A running listener.
pub struct Listener {
    /// Bound address (the ephemeral port when bound to port 0).
    pub addr: SocketAddr,
    /// Figures.
    pub stats: Arc<ServeStats>,
    cancel: CancellationToken,
}

impl Listener {
    /// Stops accepting and ends every session of this listener.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// How a listener serves, besides its archive and account.
#[derive(Clone)]
pub struct ListenerOptions {
    /// TLS, required of every client when set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Most sessions at once.
    pub max_sessions: usize,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            tls: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// The fake primary could not listen on `addr` (in use, no permission, bad address): a
/// definite stop of whatever asked for the listener; fix the address or free the port.
#[derive(Debug, thiserror::Error)]
#[error("fake primary: listen on {addr}: {source}")]
pub struct ListenError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Binds `bind` and serves `archive` to replicas that log in with `creds`, stopping every
/// dump at `stop` when given. Sessions end when the returned listener is stopped or
/// dropped, or when `cancel` fires.
///
/// # Errors
///
/// [`ListenError`]: the bind error, with the address.
pub async fn spawn(
    bind: SocketAddr,
    archive: Arc<Archive>,
    creds: Credentials,
    stop: Option<StopAt>,
    opts: ListenerOptions,
    cancel: &CancellationToken,
) -> Result<Listener, ListenError> {
    let tcp = TcpListener::bind(bind)
        .await
        .map_err(|source| ListenError { addr: bind, source })?;
    let addr = tcp
        .local_addr()
        .map_err(|source| ListenError { addr: bind, source })?;
    let stats = Arc::new(ServeStats::default());
    let cancel = cancel.child_token();
    let greeting = {
        let a = archive.clone();
        tokio::task::spawn_blocking(move || archive::archive_facts(&a))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|f| greeting_version(&f))
            .unwrap_or_else(|| DEFAULT_GREETING.to_string())
    };
    let shared = Arc::new(Shared {
        sessions: Default::default(),
        archive,
        creds,
        stop,
        stats: stats.clone(),
        next_id: AtomicU32::new(1),
        tls: opts.tls.map(tokio_rustls::TlsAcceptor::from),
        max_sessions: opts.max_sessions,
        logins: Default::default(),
        greeting: Mutex::new(greeting),
    });
    info!(source = %shared.archive.source, %addr, "fake primary listening");
    let span = tracing::info_span!("fake_primary", source = %shared.archive.source, %addr);
    tokio::spawn(accept_loop(tcp, shared, cancel.clone()).instrument(span));
    Ok(Listener {
        addr,
        stats,
        cancel,
    })
}

/// Accepts replicas until `cancel` fires; each connection runs [`session::session`] in a
/// task of its own (span `fake_primary_session` with the source and the peer).
async fn accept_loop(tcp: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let (sock, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "fake primary: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if shared.sessions.load(Ordering::Relaxed) >= shared.max_sessions {
            // As a server at max_connections: ERROR 1040 instead of the greeting.
            debug!(%peer, max = shared.max_sessions, "fake primary: too many sessions; refused");
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut sock = sock;
                let mut pkt = Vec::new();
                mysql_wire::packet::frame(
                    &mut pkt,
                    &mut 0,
                    &mysql_wire::server::err_packet(ER_CON_COUNT_ERROR, "Too many connections"),
                );
                let _ = tokio::time::timeout(Duration::from_secs(5), sock.write_all(&pkt)).await;
            });
            continue;
        }
        let guard = SessionGuard::new(shared.clone());
        let shared = shared.clone();
        let c3 = cancel.clone();
        let source = shared.archive.source.clone();
        let span = tracing::info_span!("fake_primary_session", source = %source, %peer);
        tokio::spawn(
            async move {
                let _guard = guard;
                let _ = sock.set_nodelay(true);
                tokio::select! {
                    _ = c3.cancelled() => {}
                    r = session::session(shared, sock, peer.ip(), c3.clone()) => {
                        if let Err(e) = r {
                            debug!(%source, %peer, error = %e, "replica session ended");
                        }
                    }
                }
            }
            .instrument(span),
        );
    }
}

/// Most sessions one listener serves at once unless configured; beyond it a connection
/// gets ERROR 1040.
pub const DEFAULT_MAX_SESSIONS: usize = 64;

/// The greeting's version while the archive holds no readable file.
const DEFAULT_GREETING: &str = "5.5.5-10.11.0-MariaDB-binlog-server";

/// The version a greeting presents for an archive (MariaDB as `5.5.5-<version>`).
fn greeting_version(f: &archive::ArchiveFacts) -> String {
    if f.mariadb && !f.version.starts_with("5.5.5-") {
        format!("5.5.5-{}", f.version)
    } else {
        f.version.clone()
    }
}

/// Counts a session of a listener while it lives.
struct SessionGuard(Arc<Shared>);

impl SessionGuard {
    fn new(shared: Arc<Shared>) -> SessionGuard {
        shared.sessions.fetch_add(1, Ordering::Relaxed);
        SessionGuard(shared)
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the sessions of one listener share.
struct Shared {
    /// Sessions open now (greeting sent, not yet ended).
    sessions: std::sync::atomic::AtomicUsize,
    /// The archive served.
    archive: Arc<Archive>,
    /// The one account accepted.
    creds: Credentials,
    /// Where every dump stops.
    stop: Option<StopAt>,
    /// The listener's figures.
    stats: Arc<ServeStats>,
    /// Connection id of the next session (in the handshake).
    next_id: AtomicU32,
    /// TLS, required when set.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Most sessions at once.
    max_sessions: usize,
    /// Failed logins per client address.
    logins: session::Logins,
    /// The version the greeting presents (refreshed after each login).
    greeting: Mutex<String>,
}

impl Shared {
    fn greeting_version(&self) -> String {
        node::util::lock(&self.greeting).clone()
    }

    fn set_greeting(&self, f: &archive::ArchiveFacts) {
        *node::util::lock(&self.greeting) = greeting_version(f);
    }
}
