//! The fake primary: a MySQL-protocol listener that real replicas connect to with
//! CHANGE MASTER TO, serving one source's archived binlogs.
//!
//! # Which source, which dialect
//!
//! One listener serves one source: a per-source port (`[source.replication] listen`,
//! with one replication account) or a PITR job's own listener on an ephemeral 127.0.0.1
//! port with one-time credentials and a stop point. The handshake presents the version
//! found in the archive's newest FORMAT_DESCRIPTION (MariaDB as "5.5.5-<version>"), so a
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
//! # Dump
//!
//! COM_BINLOG_DUMP (0x12) starts at a file and position, or, when the replica set
//! `@slave_connect_state` (MariaDB GTID mode), at the earliest end of the connect state's
//! GTIDs in the index, skipping event groups whose GTID the state already holds (as
//! MariaDB's `mysql_binlog_send` does). COM_BINLOG_DUMP_GTID (0x1E) does the same with a
//! MySQL GTID set. The stream is: an artificial ROTATE (timestamp 0,
//! LOG_EVENT_ARTIFICIAL_F) naming the file; the file's FORMAT_DESCRIPTION with log_pos 0
//! when starting past offset 4; then the stored events verbatim (the FORMAT_DESCRIPTION's
//! in-use flag cleared, as servers send it). Every event's CRC32 is checked before it
//! goes out: a bad event, a FAIL file, a missing file or a recorded gap ends the dump with
//! ERROR 1236 and the reason, never with skipped bytes. The ACTIVE file is followed up to
//! its durable (fsynced) length only. Idle streams get HEARTBEAT events (type 27) at the
//! period the replica asked for (`@master_heartbeat_period`, nanoseconds; default 30 s).
//!
//! A stop point (file, offset) — always a transaction boundary from the PITR planner —
//! ends sending: no event at or after it goes out; the connection stays open with
//! heartbeats, so the replica idles instead of reconnecting.
//!
//! # Memory
//!
//! Each dump runs a reader thread that frames packets into 256 KiB chunks and a task that
//! writes them; at most 8 chunks are in flight per replica (an event larger than a chunk
//! is one chunk of its own size).
//!
//! Nothing here writes to the archive: a crash loses nothing; replicas reconnect and
//! resume from their own position.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catalog::{Catalog, FileState};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::archive::index::Index;
use crate::archive::store::binlog_order;
use crate::status::StatusCell;
use binlog::{
    self, event_type, ChecksumAlg, EventHeader, EventReader, FormatDescription, Gtid, CHECKSUM_LEN,
    HEADER_LEN, LOG_EVENT_ARTIFICIAL_F, LOG_EVENT_BINLOG_IN_USE_F,
};
use mysql_wire::packet::{frame, Reader, MAX_PHYSICAL_PAYLOAD};
use mysql_wire::server;

/// ER_MASTER_FATAL_ERROR_READING_BINLOG: the replica stops its IO thread with this.
pub const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;
/// ER_ACCESS_DENIED_ERROR.
const ER_ACCESS_DENIED: u16 = 1045;
/// ER_UNKNOWN_COM_ERROR.
const ER_UNKNOWN_COM: u16 = 1047;
/// Largest command packet accepted from a replica (bytes): a GTID set of thousands of
/// UUIDs fits; anything larger is refused.
const MAX_COMMAND: usize = 4 << 20;
/// Packets are framed into chunks of about this many bytes before they are written.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight per replica.
const CHUNKS_IN_FLIGHT: usize = 8;
/// How often an idle dump looks for new durable bytes.
const POLL: Duration = Duration::from_millis(20);
/// Heartbeat period when the replica asks for none (MariaDB's default is
/// slave_net_timeout / 2 = 30 s).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Where a dump stops: no event starting at or after `pos` in `file`, nor any event of a
/// later file, is sent. Always a transaction boundary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StopAt {
    /// Binlog file name.
    pub file: String,
    /// Offset in `file`, bytes.
    pub pos: u64,
}

/// The archive one listener serves.
pub struct Archive {
    /// Source name.
    pub source: String,
    /// `<data_dir>/<source>`.
    pub dir: PathBuf,
    /// Live capture status (durable end of the ACTIVE file); `None` when nothing captures
    /// into this archive: every file is then served whole.
    pub status: Option<StatusCell>,
    /// Catalog (file states and gaps).
    pub catalog: Arc<Catalog>,
    /// Transaction index (GTID starts).
    pub index: Arc<Index>,
    /// The source's checker queue: a file found damaged while serving is sent here so
    /// the archive's own state for it becomes FAIL (and it is re-pulled while the
    /// primary still has it). `None` when no checker runs.
    pub checks: Option<tokio::sync::mpsc::Sender<String>>,
}

impl Archive {
    /// Queues `file` for a check by the source's checker (best effort: a full queue
    /// drops the request; the periodic scrub finds the damage later).
    fn report_damage(&self, file: &str) {
        if let Some(tx) = &self.checks {
            let _ = tx.try_send(file.to_string());
        }
    }
}

/// The one account a listener accepts.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password (never logged).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:***", self.user)
    }
}

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

/// Binds `bind` and serves `archive` to replicas that log in with `creds`, stopping every
/// dump at `stop` when given. Sessions end when the returned listener is stopped or
/// dropped, or when `cancel` fires.
///
/// # Errors
///
/// The bind error, with the address.
pub async fn spawn(
    bind: SocketAddr,
    archive: Arc<Archive>,
    creds: Credentials,
    stop: Option<StopAt>,
    cancel: &CancellationToken,
) -> anyhow::Result<Listener> {
    let tcp = TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("fake primary: listen on {bind}: {e}"))?;
    let addr = tcp.local_addr()?;
    let stats = Arc::new(ServeStats::default());
    let cancel = cancel.child_token();
    let shared = Arc::new(Shared {
        archive,
        creds,
        stop,
        stats: stats.clone(),
        next_id: AtomicU32::new(1),
    });
    info!(source = %shared.archive.source, %addr, "fake primary listening");
    let c2 = cancel.clone();
    tokio::spawn(async move {
        loop {
            let (sock, peer) = tokio::select! {
                _ = c2.cancelled() => break,
                r = tcp.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "fake primary: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let shared = shared.clone();
            let c3 = c2.clone();
            tokio::spawn(async move {
                let _ = sock.set_nodelay(true);
                let source = shared.archive.source.clone();
                tokio::select! {
                    _ = c3.cancelled() => {}
                    r = session(shared, sock, c3.clone()) => {
                        if let Err(e) = r {
                            debug!(%source, %peer, error = %e, "replica session ended");
                        }
                    }
                }
            });
        }
    });
    Ok(Listener {
        addr,
        stats,
        cancel,
    })
}

struct Shared {
    archive: Arc<Archive>,
    creds: Credentials,
    stop: Option<StopAt>,
    stats: Arc<ServeStats>,
    next_id: AtomicU32,
}

/// Facts about the archive a session needs (read at connect time).
#[derive(Debug, Clone)]
struct ArchiveFacts {
    version: String,
    mariadb: bool,
    server_id: u32,
    alg: ChecksumAlg,
    files: Vec<(String, u64)>,
}

fn archive_facts(a: &Archive) -> anyhow::Result<ArchiveFacts> {
    let files = list_files(a)?;
    let mut out = ArchiveFacts {
        version: "10.11.0-MariaDB-binlog-server".into(),
        mariadb: true,
        server_id: 1,
        alg: ChecksumAlg::Crc32,
        files: files.clone(),
    };
    if let Some((name, _)) = files.last() {
        if let Some((h, fde)) = read_fde_event(&a.dir.join(name))? {
            out.version = fde.server_version.clone();
            out.mariadb = fde.is_mariadb;
            out.server_id = h.server_id;
            out.alg = fde.checksum_alg;
        }
    }
    Ok(out)
}

/// The archive's binlog files in order with their sizes on disk (the ACTIVE file's size
/// may include bytes not yet durable).
fn list_files(a: &Archive) -> anyhow::Result<Vec<(String, u64)>> {
    let mut v = Vec::new();
    let rd = match std::fs::read_dir(&a.dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => anyhow::bail!("list {}: {e}", a.dir.display()),
    };
    for ent in rd {
        let ent = ent?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if crate::archive::store::binlog_seq(&name).is_none()
            || !crate::archive::store::is_safe_file_name(&name)
        {
            continue;
        }
        let md = ent.metadata()?;
        if md.is_file() {
            v.push((name, md.len()));
        }
    }
    v.sort_by_key(|(n, _)| binlog_order(n));
    Ok(v)
}

fn read_fde_event(
    path: &std::path::Path,
) -> anyhow::Result<Option<(EventHeader, FormatDescription)>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => anyhow::bail!("open {}: {e}", path.display()),
    };
    let Ok(mut r) = EventReader::new_at_start(std::io::BufReader::new(f)) else {
        return Ok(None);
    };
    match r.next_event() {
        Some(Ok((_, h, ev))) if h.type_code == event_type::FORMAT_DESCRIPTION => {
            Ok(FormatDescription::parse(ev).ok().map(|f| (h, f)))
        }
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------
// Wire framing (server side)
// ---------------------------------------------------------------------------------------

struct Wire {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    seq: u8,
}

impl Wire {
    async fn read(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut hdr = [0u8; 4];
        self.r.read_exact(&mut hdr).await?;
        let len = usize::from(hdr[0]) | usize::from(hdr[1]) << 8 | usize::from(hdr[2]) << 16;
        self.seq = hdr[3].wrapping_add(1);
        if len > MAX_COMMAND || len >= MAX_PHYSICAL_PAYLOAD {
            anyhow::bail!("command packet of {len} bytes is too large");
        }
        let mut buf = vec![0u8; len];
        self.r.read_exact(&mut buf).await?;
        Ok(buf)
    }

    async fn write(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 8);
        frame(&mut out, &mut self.seq, payload);
        self.w.write_all(&out).await?;
        Ok(())
    }

    async fn ok(&mut self) -> anyhow::Result<()> {
        self.write(&server::ok_packet()).await
    }

    async fn err(&mut self, code: u16, msg: &str) -> anyhow::Result<()> {
        self.write(&server::err_packet(code, msg)).await
    }
}

/// A text result set: column names, rows of optional strings.
async fn result_set(
    w: &mut Wire,
    cols: &[&str],
    rows: &[Vec<Option<String>>],
) -> anyhow::Result<()> {
    let mut out = Vec::new();
    server::result_set(&mut out, &mut w.seq, cols, rows);
    w.w.write_all(&out).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------------------

async fn session(
    shared: Arc<Shared>,
    sock: TcpStream,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let facts = {
        let a = shared.archive.clone();
        tokio::task::spawn_blocking(move || archive_facts(&a)).await??
    };
    let (r, w) = sock.into_split();
    let mut wire = Wire {
        r: BufReader::with_capacity(64 * 1024, r),
        w,
        seq: 0,
    };
    let conn_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let nonce = server::scramble();
    // HandshakeV10.
    let version = if facts.mariadb && !facts.version.starts_with("5.5.5-") {
        format!("5.5.5-{}", facts.version)
    } else {
        facts.version.clone()
    };
    wire.seq = 0;
    wire.write(&server::handshake_v10(
        &version,
        conn_id,
        &nonce,
        server::SERVER_CAPABILITIES,
    ))
    .await?;

    // HandshakeResponse41.
    let resp = wire.read().await?;
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
        || !server::native_password_matches(&nonce, &shared.creds.password, &token)
    {
        wire.err(
            ER_ACCESS_DENIED,
            &format!(
                "Access denied for user '{user}' (binlog-server fake primary of {})",
                shared.archive.source
            ),
        )
        .await?;
        anyhow::bail!("access denied for {user:?}");
    }
    wire.ok().await?;
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
                answer_query(&mut wire, &sql, &mut vars, &facts, &shared.archive).await?;
            }
            0x02 | 0x0e | 0x15 => wire.ok().await?,
            0x12 | 0x1e => {
                let start = match start_point(cmd, body, &vars, &facts, &shared.archive).await {
                    Ok(s) => s,
                    Err(msg) => {
                        *lock(&shared.stats.last_error) = Some(msg.clone());
                        wire.err(ER_MASTER_FATAL_ERROR_READING_BINLOG, &msg).await?;
                        return Ok(());
                    }
                };
                let crc_aware = vars.contains_key("master_binlog_checksum")
                    || vars.contains_key("source_binlog_checksum");
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
                return dump(shared, wire, facts, start, hb, cancel).await;
            }
            _ => wire.err(ER_UNKNOWN_COM, "Unknown command").await?,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------

/// Splits at top-level commas (outside quotes and parentheses).
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0i32;
    for c in s.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                cur.push(c);
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    cur.push(c);
                }
                '(' => {
                    depth += 1;
                    cur.push(c);
                }
                ')' => {
                    depth -= 1;
                    cur.push(c);
                }
                ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            },
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].replace("\\'", "'");
        }
    }
    v.to_string()
}

/// A server variable the fake primary answers (`@@GLOBAL.name`, SHOW VARIABLES).
fn server_var(name: &str, facts: &ArchiveFacts, a: &Archive) -> Option<String> {
    let n = name.to_ascii_lowercase();
    let n = n
        .strip_prefix("global.")
        .or_else(|| n.strip_prefix("session."))
        .unwrap_or(&n);
    Some(match n {
        "server_id" => facts.server_id.to_string(),
        "version" => facts.version.clone(),
        "binlog_checksum" => facts.alg.as_str().to_string(),
        "log_bin" => "1".into(),
        "binlog_format" => "ROW".into(),
        "gtid_domain_id" => "0".into(),
        "gtid_strict_mode" => "0".into(),
        "gtid_mode" => {
            if facts.mariadb {
                return None;
            }
            let last = a.index.last(&a.source).ok().flatten();
            if last.and_then(|l| l.gtid).is_some() {
                "ON"
            } else {
                "OFF"
            }
            .into()
        }
        "server_uuid" => {
            // A stable UUID per source (the fake primary is not the real primary).
            let h = crc32fast::hash(a.source.as_bytes());
            format!("{h:08x}-0000-4000-8000-00000000b1a5")
        }
        "gtid_binlog_pos" | "gtid_current_pos" => a
            .index
            .last(&a.source)
            .ok()
            .flatten()
            .and_then(|l| l.gtid)
            .unwrap_or_default(),
        "time_zone" => "SYSTEM".into(),
        "system_time_zone" => "UTC".into(),
        "collation_server" => "utf8mb4_general_ci".into(),
        "character_set_server" => "utf8mb4".into(),
        "max_allowed_packet" => "1073741824".into(),
        "hostname" => "binlog-server".into(),
        _ => return None,
    })
}

fn eval_select_item(
    item: &str,
    vars: &BTreeMap<String, String>,
    facts: &ArchiveFacts,
    a: &Archive,
) -> Option<String> {
    let item = item.trim();
    let lower = item.to_ascii_lowercase();
    if lower == "unix_timestamp()" {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        return Some(t.to_string());
    }
    if lower == "version()" {
        return Some(facts.version.clone());
    }
    if let Some(v) = lower.strip_prefix("@@") {
        return server_var(v, facts, a);
    }
    if let Some(v) = lower.strip_prefix('@') {
        return vars.get(v).cloned();
    }
    if item.starts_with('\'') || item.starts_with('"') {
        return Some(unquote(item));
    }
    if !item.is_empty()
        && item
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Some(item.to_string());
    }
    None
}

async fn answer_query(
    w: &mut Wire,
    sql: &str,
    vars: &mut BTreeMap<String, String>,
    facts: &ArchiveFacts,
    a: &Archive,
) -> anyhow::Result<()> {
    let s = sql.trim().trim_end_matches(';').trim();
    let lower = s.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    match words.as_slice() {
        ["set", ..] => {
            for asg in split_top(&s[3..]) {
                let Some((k, v)) = asg.split_once('=') else {
                    continue;
                };
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim();
                let value = if let Some(var) = v.to_ascii_lowercase().strip_prefix("@@") {
                    server_var(var, facts, a).unwrap_or_default()
                } else {
                    unquote(v)
                };
                if let Some(name) = k.strip_prefix('@').filter(|n| !n.starts_with('@')) {
                    vars.insert(name.to_string(), value);
                }
            }
            w.ok().await
        }
        ["select", ..] => {
            let body = s[6..].trim();
            let body = match body.to_ascii_lowercase().find(" from ") {
                Some(i) => &body[..i],
                None => body,
            };
            let items = split_top(body);
            let mut cols = Vec::new();
            let mut row = Vec::new();
            for it in &items {
                let (expr, alias) = match it.to_ascii_lowercase().rfind(" as ") {
                    Some(i) => (&it[..i], it[i + 4..].trim().trim_matches('`').to_string()),
                    None => (it.as_str(), it.clone()),
                };
                cols.push(alias);
                row.push(eval_select_item(expr, vars, facts, a));
            }
            let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
            result_set(w, &cols, &[row]).await
        }
        ["show", "variables", "like", ..]
        | ["show", "global", "variables", "like", ..]
        | ["show", "session", "variables", "like", ..] => {
            let pat = s
                .to_ascii_lowercase()
                .rsplit_once(" like ")
                .map(|(_, p)| unquote(p))
                .unwrap_or_default();
            let rows: Vec<Vec<Option<String>>> = server_var(&pat, facts, a)
                .map(|v| vec![vec![Some(pat.clone()), Some(v)]])
                .unwrap_or_default();
            result_set(w, &["Variable_name", "Value"], &rows).await
        }
        ["show", "binary", "logs", ..] | ["show", "master", "logs", ..] => {
            let files = list_files(a)?;
            let durable = durable_end(a);
            let rows: Vec<Vec<Option<String>>> = files
                .iter()
                .map(|(n, size)| {
                    let size = match &durable {
                        Some((f, p)) if f == n => *p,
                        _ => *size,
                    };
                    vec![Some(n.clone()), Some(size.to_string())]
                })
                .collect();
            result_set(w, &["Log_name", "File_size"], &rows).await
        }
        ["show", "master", "status", ..] | ["show", "binary", "log", "status", ..] => {
            let files = list_files(a)?;
            let row = match (durable_end(a), files.last()) {
                (Some((f, p)), _) => Some((f, p)),
                (None, Some((f, p))) => Some((f.clone(), *p)),
                _ => None,
            };
            let gtid = server_var("gtid_binlog_pos", facts, a);
            let rows: Vec<Vec<Option<String>>> = row
                .map(|(f, p)| {
                    vec![vec![
                        Some(f),
                        Some(p.to_string()),
                        Some(String::new()),
                        Some(String::new()),
                        gtid.clone(),
                    ]]
                })
                .unwrap_or_default();
            result_set(
                w,
                &[
                    "File",
                    "Position",
                    "Binlog_Do_DB",
                    "Binlog_Ignore_DB",
                    "Executed_Gtid_Set",
                ],
                &rows,
            )
            .await
        }
        ["show", ..] => result_set(w, &["Value"], &[]).await,
        _ => w.ok().await,
    }
}

/// The live capture's durable end (ACTIVE file, fsynced length), when a capture runs.
fn durable_end(a: &Archive) -> Option<(String, u64)> {
    let s = a.status.as_ref()?.lock();
    Some((s.durable_file.clone()?, s.durable_pos?))
}

// ---------------------------------------------------------------------------------------
// Start point
// ---------------------------------------------------------------------------------------

/// A MySQL GTID set as COM_BINLOG_DUMP_GTID sends it: per server UUID, the intervals
/// `[start, end)` of transaction numbers.
type GtidSet = Vec<([u8; 16], Vec<(u64, u64)>)>;

/// Which event groups a GTID start skips.
#[derive(Debug, Clone, Default)]
enum GtidSkip {
    #[default]
    None,
    /// MariaDB: per domain, sequence numbers up to this are applied already.
    MariaDb(BTreeMap<u32, u64>),
    /// MySQL: per server UUID, the intervals `[start, end)` applied already.
    MySql(GtidSet),
}

impl GtidSkip {
    fn skips(&self, g: &Gtid) -> bool {
        match (self, g) {
            (GtidSkip::MariaDb(m), Gtid::MariaDb { domain, seq, .. }) => {
                m.get(domain).is_some_and(|s| seq <= s)
            }
            (GtidSkip::MySql(v), Gtid::MySql { uuid, gno }) => v
                .iter()
                .filter(|(u, _)| u == uuid)
                .any(|(_, iv)| iv.iter().any(|(s, e)| gno >= s && gno < e)),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Start {
    file: String,
    pos: u64,
    skip: GtidSkip,
}

/// Parses MariaDB's `@slave_connect_state` ("0-1-100,1-2-7"; empty = from the start).
pub fn parse_connect_state(s: &str) -> Result<Vec<Gtid>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<Gtid>()
                .map_err(|_| format!("bad GTID {p:?} in @slave_connect_state"))
        })
        .collect()
}

/// Parses COM_BINLOG_DUMP_GTID's body (after the command byte): flags u16, server_id
/// u32, name_len u32, name, pos u64, data_len u32, then the encoded GTID set
/// (n_sids u64; per sid: uuid\[16\], n_intervals u64, (start u64, end u64)*).
/// Source: mysql-server `sql/rpl_binlog_sender.cc`, `Gtid_set::add_gtid_encoding`.
fn parse_dump_gtid(body: &[u8]) -> Result<(String, u64, GtidSet), String> {
    let e = |e: mysql_wire::packet::PacketError| format!("malformed COM_BINLOG_DUMP_GTID: {e}");
    let mut r = Reader::new(body, "COM_BINLOG_DUMP_GTID");
    r.u16().map_err(e)?;
    r.u32().map_err(e)?;
    let nl = r.u32().map_err(e)? as usize;
    let name = String::from_utf8_lossy(r.take(nl).map_err(e)?).into_owned();
    let pos = r.u64().map_err(e)?;
    let mut set = Vec::new();
    if r.remaining() >= 4 {
        let dl = r.u32().map_err(e)? as usize;
        if dl >= 8 {
            let n = r.u64().map_err(e)?;
            if n > 100_000 {
                return Err(format!("GTID set with {n} UUIDs is not plausible"));
            }
            for _ in 0..n {
                let uuid: [u8; 16] = r
                    .take(16)
                    .map_err(e)?
                    .try_into()
                    .map_err(|_| "uuid".to_string())?;
                let k = r.u64().map_err(e)?;
                if k > 1_000_000 {
                    return Err(format!("GTID set with {k} intervals is not plausible"));
                }
                let mut iv = Vec::new();
                for _ in 0..k {
                    iv.push((r.u64().map_err(e)?, r.u64().map_err(e)?));
                }
                set.push((uuid, iv));
            }
        }
    }
    Ok((name, pos, set))
}

async fn start_point(
    cmd: u8,
    body: &[u8],
    vars: &BTreeMap<String, String>,
    facts: &ArchiveFacts,
    a: &Archive,
) -> Result<Start, String> {
    let first = || {
        facts
            .files
            .first()
            .map(|(n, _)| n.clone())
            .ok_or_else(|| format!("binlog-server holds no binlog of {} yet", a.source))
    };
    // (gtids to look up, skip rule) for GTID starts; a plain position otherwise.
    let (lookups, skip) = if cmd == 0x1e {
        let (name, pos, set) = parse_dump_gtid(body)?;
        if set.is_empty() && !name.is_empty() {
            return position_start(&name, pos, facts);
        }
        let lookups: Vec<Gtid> = set
            .iter()
            .filter_map(|(u, iv)| {
                iv.iter()
                    .map(|(_, e)| *e)
                    .max()
                    .filter(|e| *e > 1)
                    .map(|e| Gtid::MySql {
                        uuid: *u,
                        gno: e - 1,
                    })
            })
            .collect();
        (lookups, GtidSkip::MySql(set))
    } else {
        let mut r = Reader::new(body, "COM_BINLOG_DUMP");
        let pos = r.u32().map_err(|e| e.to_string())?;
        r.u16().map_err(|e| e.to_string())?;
        r.u32().map_err(|e| e.to_string())?;
        let name = String::from_utf8_lossy(r.rest()).into_owned();
        match vars.get("slave_connect_state") {
            None => {
                if name.is_empty() {
                    return Ok(Start {
                        file: first()?,
                        pos: 4,
                        skip: GtidSkip::None,
                    });
                }
                return position_start(&name, u64::from(pos), facts);
            }
            Some(state) => {
                let gtids = parse_connect_state(state)?;
                let mut m = BTreeMap::new();
                for g in &gtids {
                    if let Gtid::MariaDb { domain, seq, .. } = g {
                        m.insert(*domain, *seq);
                    }
                }
                (gtids, GtidSkip::MariaDb(m))
            }
        }
    };
    let mut best: Option<(String, u64)> = None;
    for g in &lookups {
        let idx = a.index.clone();
        let (src, g2) = (a.source.clone(), g.clone());
        let found = tokio::task::spawn_blocking(move || idx.find_gtid(&src, &g2))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        match found {
            Some(e) => {
                if best
                    .as_ref()
                    .is_none_or(|(f, p)| (binlog_order(&e.file), e.end) < (binlog_order(f), *p))
                {
                    best = Some((e.file, e.end));
                }
            }
            // A MySQL replica's set names its own and other servers' UUIDs too.
            None if matches!(g, Gtid::MySql { .. }) => {}
            None => {
                return Err(format!(
                    "binlog-server's archive of {} does not hold GTID {g} (the replica's \
                     position): it is older than the archive or was never written by this \
                     primary",
                    a.source
                ))
            }
        }
    }
    let (file, pos) = match best {
        Some(b) => b,
        None => (first()?, 4),
    };
    Ok(Start { file, pos, skip })
}

fn position_start(name: &str, pos: u64, facts: &ArchiveFacts) -> Result<Start, String> {
    let Some((_, size)) = facts.files.iter().find(|(n, _)| n == name) else {
        return Err(format!(
            "Could not find first log file name in binary log index file: binlog-server does not hold {name:?}"
        ));
    };
    if pos < 4 || pos > *size {
        return Err(format!(
            "Client requested master to start replication from impossible position {pos} in {name} (size {size})"
        ));
    }
    Ok(Start {
        file: name.to_string(),
        pos,
        skip: GtidSkip::None,
    })
}

// ---------------------------------------------------------------------------------------
// Dump
// ---------------------------------------------------------------------------------------

async fn dump(
    shared: Arc<Shared>,
    mut wire: Wire,
    facts: ArchiveFacts,
    start: Start,
    heartbeat: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let ctx = DumpCtx {
        archive: shared.archive.clone(),
        stop: shared.stop.clone(),
        stats: shared.stats.clone(),
        server_id: facts.server_id,
        heartbeat,
        rt: tokio::runtime::Handle::current(),
        seq: wire.seq,
    };
    info!(source = %shared.archive.source, file = %start.file, pos = start.pos, "replica dump starts");
    shared.stats.active_dumps.fetch_add(1, Ordering::Relaxed);
    let done = cancel.child_token();
    let d2 = done.clone();
    let reader = std::thread::Builder::new()
        .name("fake-primary-dump".into())
        .spawn(move || {
            let _ = ctx.run(start, &tx, &d2);
        })?;
    let mut probe = [0u8; 64];
    let r = loop {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(c) => if let Err(e) = wire.w.write_all(&c).await { break Err(e.into()) },
                None => break Ok(()),
            },
            // The replica sends nothing during a dump (no semi-sync here): a read returns
            // only when it closes the connection.
            n = wire.r.read(&mut probe) => match n {
                Ok(0) | Err(_) => break Ok(()),
                Ok(_) => {}
            },
            _ = cancel.cancelled() => break Ok(()),
        }
    };
    done.cancel();
    drop(rx);
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    shared.stats.active_dumps.fetch_sub(1, Ordering::Relaxed);
    r
}

struct DumpCtx {
    archive: Arc<Archive>,
    stop: Option<StopAt>,
    stats: Arc<ServeStats>,
    server_id: u32,
    heartbeat: Duration,
    rt: tokio::runtime::Handle,
    seq: u8,
}

enum Next {
    Continue,
    Done,
}

struct Out<'a> {
    tx: &'a mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    seq: u8,
    last_sent: Instant,
}

impl Out<'_> {
    fn event(&mut self, ev: &[u8]) {
        // Packet = 0x00 + event; frame() splits at 16 MiB.
        let mut p = Vec::with_capacity(ev.len() + 1);
        p.push(0);
        p.extend_from_slice(ev);
        frame(&mut self.buf, &mut self.seq, &p);
    }

    /// Sends the buffered chunk; false when the replica is gone.
    fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return !self.tx.is_closed();
        }
        let b = std::mem::take(&mut self.buf);
        self.last_sent = Instant::now();
        self.tx.blocking_send(b).is_ok()
    }

    fn flush_if_full(&mut self) -> bool {
        if self.buf.len() >= CHUNK {
            self.flush()
        } else {
            true
        }
    }
}

fn build_event(
    type_code: u8,
    server_id: u32,
    log_pos: u32,
    flags: u16,
    body: &[u8],
    crc: bool,
) -> Vec<u8> {
    let size = HEADER_LEN + body.len() + if crc { CHECKSUM_LEN } else { 0 };
    let h = EventHeader {
        timestamp: 0,
        type_code,
        server_id,
        event_size: size as u32,
        log_pos,
        flags,
    };
    let mut ev = Vec::with_capacity(size);
    ev.extend_from_slice(&h.to_bytes());
    ev.extend_from_slice(body);
    if crc {
        let c = binlog::crc32(&ev);
        ev.extend_from_slice(&c.to_le_bytes());
    }
    ev
}

/// Rewrites a FORMAT_DESCRIPTION for sending: in-use flag cleared, log_pos set to
/// `log_pos`, CRC recomputed when the event carries one.
fn fde_for_send(ev: &[u8], alg: ChecksumAlg, log_pos: Option<u32>) -> Vec<u8> {
    let mut v = ev.to_vec();
    if v.len() < HEADER_LEN {
        return v;
    }
    v[17] &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
    if let Some(p) = log_pos {
        v[13..17].copy_from_slice(&p.to_le_bytes());
        if alg == ChecksumAlg::Crc32 && v.len() >= HEADER_LEN + CHECKSUM_LEN {
            let n = v.len() - CHECKSUM_LEN;
            let c = binlog::crc32(&v[..n]);
            v[n..].copy_from_slice(&c.to_le_bytes());
        }
    }
    v
}

/// Event types that are never part of a transaction's group (not skipped by a GTID
/// start, and they end a skipped group).
fn is_control(t: u8) -> bool {
    matches!(
        t,
        event_type::ROTATE
            | event_type::FORMAT_DESCRIPTION
            | event_type::STOP
            | event_type::PREVIOUS_GTIDS
            | event_type::MARIADB_GTID_LIST
            | event_type::MARIADB_BINLOG_CHECKPOINT
            | event_type::MARIADB_START_ENCRYPTION
            | event_type::INCIDENT
            | event_type::HEARTBEAT
    )
}

impl DumpCtx {
    fn run(
        &self,
        start: Start,
        tx: &mpsc::Sender<Vec<u8>>,
        done: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut out = Out {
            tx,
            buf: Vec::with_capacity(CHUNK + 64 * 1024),
            seq: self.seq,
            last_sent: Instant::now(),
        };
        match self.stream(start, &mut out, done) {
            Ok(()) => {}
            Err(msg) => {
                warn!(source = %self.archive.source, error = %msg, "fake primary: dump ends with an error");
                *lock(&self.stats.last_error) = Some(msg.clone());
                let mut seq = out.seq;
                frame(
                    &mut out.buf,
                    &mut seq,
                    &server::err_packet(ER_MASTER_FATAL_ERROR_READING_BINLOG, &msg),
                );
                out.flush();
            }
        }
        Ok(())
    }

    fn file_state(&self, name: &str) -> Result<Option<(FileState, String)>, String> {
        let cat = self.archive.catalog.clone();
        let (src, n) = (self.archive.source.clone(), name.to_string());
        self.rt
            .block_on(async move { cat.get_file(&src, &n).await })
            .map(|r| r.map(|r| (r.state, r.info)))
            .map_err(|e| format!("catalog: {e}"))
    }

    fn gap_after(&self, name: &str) -> Result<Option<String>, String> {
        let cat = self.archive.catalog.clone();
        let src = self.archive.source.clone();
        let gaps = self
            .rt
            .block_on(async move { cat.list_gaps(&src).await })
            .map_err(|e| format!("catalog: {e}"))?;
        Ok(gaps
            .into_iter()
            .find(|g| g.after_file.as_deref() == Some(name))
            .map(|g| g.reason))
    }

    /// Streams until the replica leaves (Ok) or the archive cannot be served (Err with
    /// the message for ERROR 1236).
    fn stream(
        &self,
        start: Start,
        out: &mut Out<'_>,
        done: &CancellationToken,
    ) -> Result<(), String> {
        let src = &self.archive.source;
        let mut file = start.file;
        let mut pos = start.pos;
        let mut skipping = false;
        let skip = start.skip;
        loop {
            if let Some((FileState::Fail, info)) = self.file_state(&file)? {
                return Err(format!(
                    "binlog {file} of {src} failed its check ({info}); binlog-server does not \
                     serve it until a re-pull makes it good"
                ));
            }
            let path = self.archive.dir.join(&file);
            let Some((fh, fde)) = read_fde_event(&path).map_err(|e| e.to_string())? else {
                return Err(format!(
                    "binlog {file} of {src} has no readable FORMAT_DESCRIPTION"
                ));
            };
            let alg = fde.checksum_alg;
            let crc = alg == ChecksumAlg::Crc32;
            let mut body = pos.to_le_bytes().to_vec();
            body.extend_from_slice(file.as_bytes());
            out.event(&build_event(
                event_type::ROTATE,
                self.server_id,
                0,
                LOG_EVENT_ARTIFICIAL_F,
                &body,
                crc,
            ));
            if pos > 4 {
                let raw = read_at(&path, 4, fh.event_size as usize)?;
                out.event(&fde_for_send(&raw, alg, Some(0)));
            }
            match self.send_file(
                &file,
                &path,
                alg,
                &mut pos,
                (&skip, &mut skipping),
                out,
                done,
            )? {
                Next::Done => return Ok(()),
                Next::Continue => {}
            }
            // The file is closed and fully sent: on to the next one.
            let next = loop {
                let files = list_files(&self.archive).map_err(|e| e.to_string())?;
                let next = files
                    .iter()
                    .find(|(n, _)| binlog_order(n) > binlog_order(&file))
                    .map(|(n, _)| n.clone());
                if let Some(n) = next {
                    break n;
                }
                if !self.idle(&file, pos, alg, out, done) {
                    return Ok(());
                }
            };
            if let Some(reason) = self.gap_after(&file)? {
                return Err(format!(
                    "binlog-server's archive of {src} has a gap after {file} ({reason}): \
                     serving {next} would skip transactions"
                ));
            }
            file = next;
            pos = 4;
        }
    }

    /// Waits one poll interval, sending a heartbeat when due. False when the replica left.
    /// Flushes, sends a heartbeat when the line was quiet for the heartbeat period (with
    /// a CRC32 when the file's events carry one), waits a moment. False when the replica
    /// left or the dump is cancelled.
    fn idle(
        &self,
        file: &str,
        pos: u64,
        alg: ChecksumAlg,
        out: &mut Out<'_>,
        done: &CancellationToken,
    ) -> bool {
        if !out.flush() || done.is_cancelled() {
            return false;
        }
        if out.last_sent.elapsed() >= self.heartbeat {
            let hb = build_event(
                event_type::HEARTBEAT,
                self.server_id,
                u32::try_from(pos).unwrap_or(u32::MAX),
                LOG_EVENT_ARTIFICIAL_F,
                file.as_bytes(),
                alg == ChecksumAlg::Crc32,
            );
            out.event(&hb);
            if !out.flush() {
                return false;
            }
        }
        std::thread::sleep(POLL);
        true
    }

    fn stopped(&self, file: &str, pos: u64) -> bool {
        match &self.stop {
            None => false,
            Some(s) => {
                let (a, b) = (binlog_order(file), binlog_order(&s.file));
                a > b || (a == b && pos >= s.pos)
            }
        }
    }

    /// Sends `file` from `*pos` to its end (closed file) or follows it while it is the
    /// ACTIVE file. Returns Done when the replica left or the stop point was reached and
    /// the replica then left.
    #[allow(clippy::too_many_arguments)]
    fn send_file(
        &self,
        file: &str,
        path: &std::path::Path,
        alg: ChecksumAlg,
        pos: &mut u64,
        (skip, skipping): (&GtidSkip, &mut bool),
        out: &mut Out<'_>,
        done: &CancellationToken,
    ) -> Result<Next, String> {
        loop {
            if self.stopped(file, *pos) {
                self.stats.reached_stop.store(true, Ordering::Relaxed);
                while self.idle(file, *pos, alg, out, done) {}
                return Ok(Next::Done);
            }
            // How far this file may be read: the durable length while it is the ACTIVE
            // file, its size once a later file exists.
            let live = durable_end(&self.archive);
            let size = std::fs::metadata(path)
                .map(|m| m.len())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let (limit, closed) = match &live {
                Some((f, p)) if f == file => (*p, false),
                Some((f, _)) if binlog_order(f) < binlog_order(file) => (0, false),
                _ => (size, true),
            };
            if *pos < limit {
                self.send_range(file, path, alg, pos, limit, skipping, skip, out)?;
                if !out.flush_if_full() {
                    return Ok(Next::Done);
                }
                if *pos < limit && !self.stopped(file, *pos) {
                    return Err(format!(
                        "binlog {file}: stopped inside the readable range at {pos}"
                    ));
                }
                continue;
            }
            if closed {
                return Ok(Next::Continue);
            }
            if !self.idle(file, *pos, alg, out, done) {
                return Ok(Next::Done);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_range(
        &self,
        file: &str,
        path: &std::path::Path,
        alg: ChecksumAlg,
        pos: &mut u64,
        limit: u64,
        skipping: &mut bool,
        skip: &GtidSkip,
        out: &mut Out<'_>,
    ) -> Result<(), String> {
        let io = |e: std::io::Error| format!("read {}: {e}", path.display());
        let mut f = std::fs::File::open(path).map_err(io)?;
        f.seek(SeekFrom::Start(*pos)).map_err(io)?;
        let br = std::io::BufReader::with_capacity(1 << 20, f.take(limit - *pos));
        let mut r = EventReader::new_at(br, *pos);
        while let Some(item) = r.next_event() {
            let (off, h, ev) = item.map_err(|e| {
                self.archive.report_damage(file);
                format!(
                    "binlog {file} of {} is damaged at offset {}: {e}; not served",
                    self.archive.source,
                    e.offset().unwrap_or(*pos)
                )
            })?;
            if self.stopped(file, off) {
                return Ok(());
            }
            binlog::verify_checksum(ev, alg).map_err(|e| {
                self.archive.report_damage(file);
                format!(
                    "binlog {file} of {} fails its CRC32 check at offset {off} ({e}); not served",
                    self.archive.source
                )
            })?;
            let t = h.type_code;
            if event_type::is_gtid(t) {
                *skipping = match binlog::parse_gtid(&h, ev, alg) {
                    Ok(Some(g)) => skip.skips(&g.gtid),
                    _ => false,
                };
            } else if is_control(t) {
                *skipping = false;
            }
            if !*skipping {
                if t == event_type::FORMAT_DESCRIPTION {
                    out.event(&fde_for_send(ev, alg, None));
                } else {
                    out.event(ev);
                }
                self.stats.events_sent.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_sent
                    .fetch_add(u64::from(h.event_size), Ordering::Relaxed);
            }
            *pos = off + u64::from(h.event_size);
            if !out.flush_if_full() {
                return Ok(());
            }
        }
        Ok(())
    }
}

fn read_at(path: &std::path::Path, off: u64, len: usize) -> Result<Vec<u8>, String> {
    let io = |e: std::io::Error| format!("read {}: {e}", path.display());
    let mut f = std::fs::File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(off)).map_err(io)?;
    let mut v = Vec::new();
    f.take(len as u64).read_to_end(&mut v).map_err(io)?;
    if v.len() != len {
        return Err(format!("{}: short read at {off}", path.display()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_assignments_split_outside_quotes() {
        assert_eq!(
            split_top(" @slave_connect_state='0-1-5,1-2-3', @slave_gtid_strict_mode=1"),
            vec![
                "@slave_connect_state='0-1-5,1-2-3'",
                "@slave_gtid_strict_mode=1"
            ]
        );
        assert_eq!(
            split_top("UNIX_TIMESTAMP(), f(a, b)"),
            vec!["UNIX_TIMESTAMP()", "f(a, b)"]
        );
        assert_eq!(unquote("'CRC32'"), "CRC32");
    }

    #[test]
    fn connect_state_and_skips() {
        let g = parse_connect_state("0-1-100, 2-5-7").unwrap();
        assert_eq!(g.len(), 2);
        assert!(parse_connect_state("").unwrap().is_empty());
        assert!(parse_connect_state("0-1-x").is_err());
        let mut m = BTreeMap::new();
        m.insert(0u32, 100u64);
        let skip = GtidSkip::MariaDb(m);
        let gt = |d, s| Gtid::MariaDb {
            domain: d,
            server_id: 1,
            seq: s,
        };
        assert!(skip.skips(&gt(0, 100)));
        assert!(!skip.skips(&gt(0, 101)));
        assert!(
            !skip.skips(&gt(1, 5)),
            "a domain the replica does not name is sent"
        );
    }

    #[test]
    fn dump_gtid_packet_parses_and_rejects_garbage() {
        let mut b = Vec::new();
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&7u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&4u64.to_le_bytes());
        let mut set = Vec::new();
        set.extend_from_slice(&1u64.to_le_bytes());
        set.extend_from_slice(&[0xAB; 16]);
        set.extend_from_slice(&1u64.to_le_bytes());
        set.extend_from_slice(&1u64.to_le_bytes());
        set.extend_from_slice(&43u64.to_le_bytes());
        b.extend_from_slice(&(set.len() as u32).to_le_bytes());
        b.extend_from_slice(&set);
        let (name, pos, s) = parse_dump_gtid(&b).unwrap();
        assert_eq!((name.as_str(), pos), ("", 4));
        assert_eq!(s, vec![([0xAB; 16], vec![(1, 43)])]);
        let skip = GtidSkip::MySql(s);
        assert!(skip.skips(&Gtid::MySql {
            uuid: [0xAB; 16],
            gno: 42
        }));
        assert!(!skip.skips(&Gtid::MySql {
            uuid: [0xAB; 16],
            gno: 43
        }));
        // Truncated: an error, not a panic.
        for n in 0..b.len() {
            let _ = parse_dump_gtid(&b[..n]);
        }
        assert!(parse_dump_gtid(&b[..b.len() - 3]).is_err());
    }

    #[test]
    fn resent_format_description_has_log_pos_zero_and_a_valid_crc() {
        let body = vec![7u8; 80];
        let mut ev = build_event(
            event_type::FORMAT_DESCRIPTION,
            1,
            123,
            LOG_EVENT_BINLOG_IN_USE_F,
            &body,
            true,
        );
        // A stored FDE's CRC is computed with the in-use flag cleared.
        let n = ev.len() - CHECKSUM_LEN;
        let mut clear = ev.clone();
        clear[17] = 0;
        let c = binlog::crc32(&clear[..n]);
        ev[n..].copy_from_slice(&c.to_le_bytes());
        let sent = fde_for_send(&ev, ChecksumAlg::Crc32, Some(0));
        assert_eq!(&sent[13..17], &[0, 0, 0, 0]);
        assert_eq!(sent[17] & 1, 0);
        binlog::verify_checksum(&sent, ChecksumAlg::Crc32).unwrap();
        let same = fde_for_send(&ev, ChecksumAlg::Crc32, None);
        binlog::verify_checksum(&same, ChecksumAlg::Crc32).unwrap();
        let rot = build_event(
            event_type::ROTATE,
            1,
            0,
            LOG_EVENT_ARTIFICIAL_F,
            b"\x04\0\0\0\0\0\0\0f.1",
            true,
        );
        binlog::verify_checksum(&rot, ChecksumAlg::Crc32).unwrap();
    }
}
