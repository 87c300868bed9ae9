//! COM_BINLOG_DUMP and COM_BINLOG_DUMP_GTID: where a dump starts (a file and position,
//! MariaDB's `@slave_connect_state`, or a MySQL GTID set), and the dump itself: a reader
//! ([`DumpCtx`]) that checks every event and frames the stream into chunks, and the task
//! that writes them to the replica (see the module doc of [`super`]).
//!
//! The reader is a task that runs its file work in steps on the runtime's blocking
//! threads ([`DumpCtx::advance`]): a step reads and sends until the dump has to wait
//! (at the durable end, for the next file, at the stop point). The wait holds no thread:
//! it ends when the source's durable end moves (`StatusCell::watch_durable`, told by the
//! capture's writer), at the next heartbeat, or when the replica leaves. At most
//! [`CONCURRENT_STEPS`] steps run at once across the process, each sending at most
//! [`STEP_BYTES`] before the next dump's turn. So the threads dumps hold stay a handful
//! however many replicas are served, and no idle dump polls the disk.

use node::util::lock;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog::FileState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use super::archive::{durable_end, fde_of, list_files, Archive, ArchiveFacts};
use super::compat::Compat;
use super::error::DumpError;
use super::wire::Wire;
use super::{ServeStats, Shared, StopAt};
use archive::cache::Opened;
use archive::fetch::Fetched;
use binlog::binlog_order;
use binlog::{
    self, event_type, ChecksumAlg, EventHeader, EventReader, Gtid, CHECKSUM_LEN, HEADER_LEN,
    LOG_EVENT_ARTIFICIAL_F, LOG_EVENT_BINLOG_IN_USE_F,
};
use mysql_wire::errcode::ER_MASTER_FATAL_ERROR_READING_BINLOG;
use mysql_wire::packet::{frame, Reader, BINLOG_SEND_ANNOTATE_ROWS_EVENT};
use mysql_wire::server;

/// Packets are framed into chunks of about this many bytes before they are written.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight per replica.
const CHUNKS_IN_FLIGHT: usize = 8;
/// How often a dump looks again while it waits for bytes nothing announces: a file
/// being fetched from the store, an archive without a running capture.
const POLL: Duration = Duration::from_millis(20);
/// Bytes one step of a dump sends before it lets other dumps have a turn.
const STEP_BYTES: u64 = 4 << 20;
/// Steps of every dump of the process that run at once: the blocking threads dumps hold
/// stay this many however many replicas are served.
const CONCURRENT_STEPS: usize = 4;
/// The turns: a step runs while it holds one of these (first come, first served).
static STEPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_STEPS);

/// A MySQL GTID set as COM_BINLOG_DUMP_GTID sends it: per server UUID, the intervals
/// `[start, end)` of transaction numbers.
type GtidSet = Vec<([u8; 16], Vec<(u64, u64)>)>;

/// Which event groups a GTID start skips.
#[derive(Debug, Clone, Default)]
enum GtidSkip {
    /// A position start: nothing is skipped.
    #[default]
    None,
    /// MariaDB: per domain, sequence numbers up to this are applied already.
    MariaDb(BTreeMap<u32, u64>),
    /// MySQL: per server UUID, the intervals `[start, end)` applied already.
    MySql(GtidSet),
}

impl GtidSkip {
    /// True when the group of `g` is applied on the replica already.
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

/// Where a dump starts and which event groups it skips.
#[derive(Debug, Clone)]
pub(super) struct Start {
    file: String,
    pos: u64,
    skip: GtidSkip,
    /// BINLOG_DUMP_NON_BLOCK: end the dump with an EOF packet at the end of the last
    /// durable binlog instead of waiting for more.
    non_blocking: bool,
    /// The client asked for MariaDB's ANNOTATE_ROWS events: COM_BINLOG_DUMP with
    /// BINLOG_SEND_ANNOTATE_ROWS_EVENT (a replica with `replicate_annotate_row_events`),
    /// or COM_BINLOG_DUMP_GTID (no such flag). Without it they are left out or replaced,
    /// see [`Compat`].
    annotate_rows: bool,
}

/// The dump command's flag asking for an EOF packet at the end of the binlogs instead
/// of waiting (`mysqlbinlog --read-from-remote-server` without `--stop-never`).
/// Source: mysql-server `include/mysql_com.h` (`BINLOG_DUMP_NON_BLOCK`), MariaDB
/// `sql/sql_repl.cc`.
pub const BINLOG_DUMP_NON_BLOCK: u16 = 0x01;

/// A file name from a dump command: trailing NUL bytes dropped (python-mysql-replication
/// pads an empty name with NULs), so that a NUL-only name is empty ("the first binlog").
fn dump_file_name(raw: &[u8]) -> String {
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// What the client announced in `@master_binlog_checksum` (or MySQL 8's
/// `@source_binlog_checksum`): how the events the fake primary makes up (the artificial
/// ROTATE, heartbeats) are framed for it. `None`: the client is not checksum-aware.
/// 'NONE' (mysqlbinlog's choice, any case) means no CRC32 on those events, whatever the
/// binlog's own events carry; any other value means a CRC32: "CRC32" (a replica's
/// `@@global.binlog_checksum`), and also mysql_async's 'ALL' or an empty string, which
/// the server's `find_type` does not know and turns into an algorithm that is neither
/// OFF nor UNDEF (checked against MariaDB 10.11 for 'ALL', 'xyz' and '').
/// Source: MariaDB `sql/sql_repl.cc` `get_binlog_checksum_value_at_connect`,
/// `fake_event_header`; mysql-server `sql/rpl_binlog_sender.cc` does the same.
pub(super) fn announced_checksum(vars: &BTreeMap<String, String>) -> Option<ChecksumAlg> {
    let v = vars
        .get("master_binlog_checksum")
        .or_else(|| vars.get("source_binlog_checksum"))?;
    if v.eq_ignore_ascii_case("NONE") {
        Some(ChecksumAlg::Off)
    } else {
        Some(ChecksumAlg::Crc32)
    }
}

/// Parses MariaDB's `@slave_connect_state` ("0-1-100,1-2-7"; empty = from the start).
///
/// # Errors
///
/// [`DumpError::BadConnectState`] naming the GTID that does not parse.
pub fn parse_connect_state(s: &str) -> Result<Vec<Gtid>, DumpError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<Gtid>()
                .map_err(|_| DumpError::BadConnectState { gtid: p.to_owned() })
        })
        .collect()
}

/// Parses COM_BINLOG_DUMP_GTID's body (after the command byte): flags u16, server_id
/// u32, name_len u32, name, pos u64, data_len u32, then the encoded GTID set
/// (n_sids u64; per sid: uuid\[16\], n_intervals u64, (start u64, end u64)*).
/// Source: mysql-server `sql/rpl_binlog_sender.cc`, `Gtid_set::add_gtid_encoding`.
fn parse_dump_gtid(body: &[u8]) -> Result<(String, u64, GtidSet), DumpError> {
    let e = DumpError::MalformedDumpGtid;
    let mut r = Reader::new(body, "COM_BINLOG_DUMP_GTID");
    r.u16().map_err(e)?;
    r.u32().map_err(e)?;
    let nl = r.u32().map_err(e)? as usize;
    let name = dump_file_name(r.take(nl).map_err(e)?);
    let pos = r.u64().map_err(e)?;
    let mut set = Vec::new();
    if r.remaining() >= 4 {
        let dl = r.u32().map_err(e)? as usize;
        if dl >= 8 {
            let n = r.u64().map_err(e)?;
            if n > 100_000 {
                return Err(DumpError::ImplausibleGtidSet {
                    count: n,
                    what: "UUIDs",
                });
            }
            for _ in 0..n {
                let mut uuid = [0u8; 16];
                uuid.copy_from_slice(r.take(16).map_err(e)?);
                let k = r.u64().map_err(e)?;
                if k > 1_000_000 {
                    return Err(DumpError::ImplausibleGtidSet {
                        count: k,
                        what: "intervals",
                    });
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

/// The start of a dump asked for with command `cmd` (0x12 or 0x1E) and its `body`: a
/// file and position, or the earliest end in the index of the GTIDs the replica holds
/// (`@slave_connect_state` in `vars`, or the COM_BINLOG_DUMP_GTID set).
///
/// # Errors
///
/// [`DumpError`], the text for ERROR 1236: a malformed packet, an unknown file or
/// impossible position, a MariaDB GTID the archive does not hold, an empty archive, an
/// index failure.
pub(super) async fn start_point(
    cmd: u8,
    body: &[u8],
    vars: &BTreeMap<String, String>,
    facts: &ArchiveFacts,
    a: &Archive,
) -> Result<Start, DumpError> {
    let first = || {
        facts
            .files
            .first()
            .map(|(n, _)| n.clone())
            .ok_or_else(|| DumpError::NothingArchived {
                source_name: a.source.clone(),
            })
    };
    let flags = dump_flags(cmd, body);
    let non_blocking = flags & BINLOG_DUMP_NON_BLOCK != 0;
    let annotate_rows = cmd == 0x1e || flags & BINLOG_SEND_ANNOTATE_ROWS_EVENT != 0;
    // (gtids to look up, skip rule) for GTID starts; a plain position otherwise.
    let (lookups, skip) = match requested_start(cmd, body, vars, facts)? {
        Requested::At(s) => {
            return Ok(Start {
                non_blocking,
                annotate_rows,
                ..s
            })
        }
        Requested::First => {
            return Ok(Start {
                file: first()?,
                pos: 4,
                skip: GtidSkip::None,
                non_blocking,
                annotate_rows,
            })
        }
        Requested::Gtids(lookups, skip) => (lookups, skip),
    };
    let (file, pos) = match earliest_end(&lookups, a).await? {
        Some(b) => b,
        None => (first()?, 4),
    };
    Ok(Start {
        file,
        pos,
        skip,
        non_blocking,
        annotate_rows,
    })
}

/// Fuzzing entry: a dump command's body through every parser it reaches before the
/// index (flags, file and position against a two-file archive, the GTID set, a
/// `@slave_connect_state` made of the same bytes). Never panics.
pub(super) fn parse_dump_command(data: &[u8]) -> usize {
    let facts = two_file_facts(4096, 256);
    let mut vars = BTreeMap::new();
    let mut n = usize::from(dump_flags(0x12, data)) + usize::from(dump_flags(0x1e, data));
    n += requested_start(0x12, data, &vars, &facts).is_ok() as usize;
    n += requested_start(0x1e, data, &vars, &facts).is_ok() as usize;
    vars.insert(
        "slave_connect_state".to_string(),
        String::from_utf8_lossy(data).into_owned(),
    );
    vars.insert(
        "master_binlog_checksum".to_string(),
        String::from_utf8_lossy(data).into_owned(),
    );
    n += requested_start(0x12, data, &vars, &facts).is_ok() as usize;
    n + announced_checksum(&vars).is_some() as usize
}

/// A MariaDB 10.11 CRC32 archive of `mysql-bin.000001` and `.000002` with these sizes
/// (the fuzz entry's and the tests' archive).
fn two_file_facts(first: u64, second: u64) -> ArchiveFacts {
    ArchiveFacts {
        version: "10.11.6-MariaDB".into(),
        mariadb: true,
        server_id: 1,
        alg: ChecksumAlg::Crc32,
        files: vec![
            ("mysql-bin.000001".into(), first),
            ("mysql-bin.000002".into(), second),
        ],
    }
}

/// The flags of a dump command: COM_BINLOG_DUMP's u16 after the position,
/// COM_BINLOG_DUMP_GTID's leading u16; 0 for a body too short to hold them (its parse
/// reports the error).
fn dump_flags(cmd: u8, body: &[u8]) -> u16 {
    let at = if cmd == 0x1e { 0 } else { 4 };
    match body.get(at..at + 2) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// What a dump command asks for, before the index is consulted.
enum Requested {
    /// A file and position (checked against the archive's files).
    At(Start),
    /// The start of the archive's first file.
    First,
    /// After these GTIDs, skipping the groups the rule names.
    Gtids(Vec<Gtid>, GtidSkip),
}

/// Parses the dump command: COM_BINLOG_DUMP_GTID's set (a file and position when the set
/// is empty), or COM_BINLOG_DUMP's file and position unless the replica set
/// `@slave_connect_state`.
fn requested_start(
    cmd: u8,
    body: &[u8],
    vars: &BTreeMap<String, String>,
    facts: &ArchiveFacts,
) -> Result<Requested, DumpError> {
    if cmd == 0x1e {
        let (name, pos, set) = parse_dump_gtid(body)?;
        if set.is_empty() && !name.is_empty() {
            return position_start(&name, pos, facts).map(Requested::At);
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
        return Ok(Requested::Gtids(lookups, GtidSkip::MySql(set)));
    }
    let mut r = Reader::new(body, "COM_BINLOG_DUMP");
    let pos = r.u32()?;
    r.u16()?;
    r.u32()?;
    let name = dump_file_name(r.rest());
    match vars.get("slave_connect_state") {
        None => {
            if name.is_empty() {
                return Ok(Requested::First);
            }
            position_start(&name, u64::from(pos), facts).map(Requested::At)
        }
        Some(state) => {
            let gtids = parse_connect_state(state)?;
            let mut m = BTreeMap::new();
            for g in &gtids {
                if let Gtid::MariaDb { domain, seq, .. } = g {
                    m.insert(*domain, *seq);
                }
            }
            Ok(Requested::Gtids(gtids, GtidSkip::MariaDb(m)))
        }
    }
}

/// The earliest (file, end offset) of `lookups`' transactions in the index; `None` when
/// none is found (or there are none). A MySQL GTID the index lacks is ignored (a
/// replica's set names other servers too); a MariaDB one is an error.
async fn earliest_end(lookups: &[Gtid], a: &Archive) -> Result<Option<(String, u64)>, DumpError> {
    let mut best: Option<(String, u64)> = None;
    for g in lookups {
        let idx = a.index.clone();
        let (source, g2) = (a.source.clone(), g.clone());
        let found = tokio::task::spawn_blocking(move || idx.find_gtid(&source, &g2)).await??;
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
                return Err(DumpError::GtidNotArchived {
                    source_name: a.source.clone(),
                    gtid: g.clone(),
                })
            }
        }
    }
    Ok(best)
}

/// A start at `pos` of `name`, checked against the archive's files (4 ..= size).
fn position_start(name: &str, pos: u64, facts: &ArchiveFacts) -> Result<Start, DumpError> {
    let Some((_, size)) = facts.files.iter().find(|(n, _)| n == name) else {
        return Err(DumpError::UnknownFile {
            file: name.to_owned(),
        });
    };
    if pos < 4 || pos > *size {
        return Err(DumpError::ImpossiblePosition {
            pos,
            file: name.to_owned(),
            size: *size,
        });
    }
    Ok(Start {
        file: name.to_string(),
        pos,
        skip: GtidSkip::None,
        non_blocking: false,
        annotate_rows: false,
    })
}

/// Runs a dump from `start` until the replica leaves, the listener stops (`cancel`) or the
/// archive cannot be served (ERROR 1236 sent): the reader thread (span
/// `fake_primary_dump` with the source, under the session's) frames the events, this task
/// writes the chunks.
///
/// # Errors
///
/// Writing to the replica fails, or the reader thread cannot be started.
pub(super) async fn dump(
    shared: Arc<Shared>,
    archive: Arc<Archive>,
    mut wire: Wire,
    facts: ArchiveFacts,
    start: Start,
    opts: DumpOptions,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let ctx = DumpCtx {
        archive: archive.clone(),
        stop: shared.stop.clone(),
        stats: shared.stats.clone(),
        server_id: facts.server_id,
        heartbeat: opts.heartbeat,
        made_up_crc: opts.checksum == Some(ChecksumAlg::Crc32),
        semi_sync: opts.semi_sync,
        non_blocking: start.non_blocking,
        compat: Compat {
            capability: opts.capability,
            annotate_rows: start.annotate_rows,
        },
        rt: tokio::runtime::Handle::current(),
        seq: wire.seq,
    };
    info!(source = %archive.source, file = %start.file, pos = start.pos, "replica dump starts");
    shared.stats.active_dumps.fetch_add(1, Ordering::Relaxed);
    let done = cancel.child_token();
    let span = tracing::info_span!("fake_primary_dump", source = %archive.source);
    let reader = tokio::spawn(
        Arc::new(ctx)
            .drive(start, tx, done.clone())
            .instrument(span),
    );
    let mut probe = [0u8; 512];
    let mut acks = AckReader::default();
    let r = loop {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(c) => if let Err(e) = wire.w.write_all(&c).await { break Err(e.into()) },
                None => break Ok(()),
            },
            // The replica sends nothing during a dump but semi-sync acks: a read returns
            // those, or the end when it closes the connection.
            n = wire.r.read(&mut probe) => match n {
                Ok(0) | Err(_) => break Ok(()),
                Ok(n) => acks.feed(probe.get(..n).unwrap_or_default()),
            },
            _ = cancel.cancelled() => break Ok(()),
        }
    };
    done.cancel();
    drop(rx);
    let _ = reader.await;
    shared.stats.active_dumps.fetch_sub(1, Ordering::Relaxed);
    if opts.semi_sync {
        shared
            .stats
            .semi_sync_acks
            .fetch_add(acks.count, Ordering::Relaxed);
        info!(
            source = %archive.source,
            acks = acks.count,
            last = acks.last.as_deref().unwrap_or("-"),
            "semi-sync replica's dump ended"
        );
    }
    r
}

/// The semi-sync acks a replica writes during a dump, framed as packets: `0xEF`, the
/// position (8 bytes LE), the file name (mysql-server `semisync_source.cc`
/// `ReplSemiSyncMaster::reportReplyPacket`). Bounded: a packet is parsed as its bytes
/// arrive, and one longer than 4 KiB is counted and skipped, never buffered.
#[derive(Default)]
struct AckReader {
    /// Bytes of the packet being read (header included), at most 4 KiB + 4.
    pending: Vec<u8>,
    /// Bytes of an oversized packet still to skip.
    skip: usize,
    /// Acks received.
    count: u64,
    /// The newest ack, "file:pos".
    last: Option<String>,
}

impl AckReader {
    const MAX: usize = 4096;

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            self.pending.push(bytes[0]);
            bytes = bytes.get(1..).unwrap_or_default();
            let Some(h) = self.pending.get(..4) else {
                continue;
            };
            let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
            if len > Self::MAX {
                self.skip = len;
                self.pending.clear();
                continue;
            }
            if self.pending.len() == 4 + len {
                self.packet();
                self.pending.clear();
            }
        }
    }

    fn packet(&mut self) {
        let body = self.pending.get(4..).unwrap_or_default();
        if body.first() != Some(&mysql_wire::semisync::MAGIC) || body.len() < 9 {
            return;
        }
        let mut pos = [0u8; 8];
        pos.copy_from_slice(&body[1..9]);
        self.count += 1;
        self.last = Some(format!(
            "{}:{}",
            String::from_utf8_lossy(&body[9..]),
            u64::from_le_bytes(pos)
        ));
    }
}

/// What the reader of one dump needs (its steps run on blocking threads and reach the
/// catalog through `rt`).
struct DumpCtx {
    archive: Arc<Archive>,
    stop: Option<StopAt>,
    stats: Arc<ServeStats>,
    server_id: u32,
    heartbeat: Duration,
    /// Whether the events the fake primary makes up before the first FORMAT_DESCRIPTION
    /// carry a CRC32 (what the client announced, see [`announced_checksum`]).
    made_up_crc: bool,
    /// A semi-sync stream ([`DumpOptions::semi_sync`]).
    semi_sync: bool,
    /// End with an EOF packet at the end of the last durable binlog.
    non_blocking: bool,
    /// How MariaDB-only events go to this client (`@mariadb_slave_capability`).
    compat: Compat,
    rt: tokio::runtime::Handle,
    seq: u8,
}

/// How a dump is served beyond its start: the heartbeat period the client asked for and
/// the checksum it announced.
pub(super) struct DumpOptions {
    /// Heartbeat period (`@master_heartbeat_period`, default 30 s).
    pub heartbeat: Duration,
    /// The client's `@master_binlog_checksum`, see [`announced_checksum`].
    pub checksum: Option<ChecksumAlg>,
    /// The client's `@mariadb_slave_capability` for a MariaDB archive (`None` for a
    /// MySQL one), see [`Compat::capability_of`].
    pub capability: Option<u8>,
    /// The client is a semi-sync replica ([`asked_semi_sync`]): every event goes out
    /// with the semi-sync header, and a transaction's last event asks for an ack.
    pub semi_sync: bool,
}

/// True when the replica asked for a semi-sync stream before the dump: `SET
/// @rpl_semi_sync_slave = 1` (MariaDB, MySQL before 8.0.26) or `@rpl_semi_sync_replica
/// = 1` (MySQL 8.0.26+), as mysql-server `plugin/semisync/semisync_replica_plugin.cc`
/// `repl_semi_slave_request_dump` sends it.
pub(super) fn asked_semi_sync(vars: &BTreeMap<String, String>) -> bool {
    ["rpl_semi_sync_slave", "rpl_semi_sync_replica"]
        .iter()
        .any(|v| vars.get(*v).is_some_and(|x| x.trim() == "1"))
}

/// Whether a semi-sync stream asks the replica to acknowledge `ev`: the event that ends
/// a transaction (XID, or a QUERY other than `BEGIN`: a COMMIT of a non-transactional
/// engine or a DDL statement), as a semi-sync primary asks at its commit. Made-up
/// events (heartbeats, artificial ROTATEs) never ask.
fn wants_ack(ev: &[u8]) -> bool {
    let Ok(h) = EventHeader::parse(ev) else {
        return false;
    };
    if h.flags & LOG_EVENT_ARTIFICIAL_F != 0 || h.log_pos == 0 {
        return false;
    }
    match h.type_code {
        event_type::XID => true,
        event_type::QUERY => {
            // The text ends the body (before a checksum, if any): BEGIN is 5 bytes.
            let tail = ev.len().saturating_sub(CHECKSUM_LEN + 5);
            let begin = |from: usize| ev.get(from..from + 5) == Some(b"BEGIN".as_slice());
            !(begin(tail) || begin(ev.len().saturating_sub(5)))
        }
        _ => false,
    }
}

/// How [`DumpCtx::send_file`] ended.
enum Sent {
    /// The file is closed and sent whole: go on with the next one.
    Closed,
    /// Everything readable now is sent: wait for more.
    Wait,
    /// The stop point is reached: the dump idles (heartbeats) until the replica leaves.
    Stopped,
    /// [`STEP_BYTES`] were sent and more is readable: the next step goes on.
    More,
    /// The replica left (or a non-blocking dump reached the end and sent its EOF).
    Done,
}

/// How a step of a dump ([`DumpCtx::advance`]) ended.
enum Step {
    /// The dump waits for more bytes; `following` while they come from a fetch from
    /// the store (nothing announces them: look again every [`POLL`]).
    Idle {
        /// Waiting on a fetch.
        following: bool,
    },
    /// [`STEP_BYTES`] were sent: the next step goes on at once (after the other dumps
    /// waiting for a turn).
    More,
    /// Over: the replica left, the stop point's wait ended, or an error was sent.
    Done,
}

/// Where a dump is between its steps.
enum At {
    /// Open this file at this offset and send from there.
    Open {
        /// Binlog file name.
        file: String,
        /// Offset, bytes.
        pos: u64,
        /// The dump came here from the previous timeline's last file: what this file
        /// repeats of it is not sent again ([`DumpCtx::sent_elsewhere`]). A dump that
        /// starts in the file gets it as stored.
        crossed: bool,
    },
    /// Sending this file.
    Sending(FileCursor),
    /// This file is sent whole: waiting for the file after it.
    Next(FileCursor),
    /// The stop point is reached (at this file and offset): heartbeats only.
    Stopped {
        /// Binlog file name.
        file: String,
        /// Offset, bytes.
        pos: u64,
    },
}

/// A dump's state, handed to each step and back.
struct DumpState {
    /// Where it is (`None` only while a step runs).
    at: Option<At>,
    /// The GTID skip rule and whether the current group is skipped.
    skip: Skipping,
    /// The framed output.
    out: Out,
}

/// The file a dump is sending and how far it got.
struct FileCursor {
    /// Binlog file name.
    file: String,
    /// Its path in the archive (for messages).
    path: PathBuf,
    /// The file, open: it stays readable when the file leaves the local disk or the
    /// cache (eviction, cache trimming) while it is being sent.
    fh: std::fs::File,
    /// Its checksum algorithm (from its FORMAT_DESCRIPTION).
    alg: ChecksumAlg,
    /// Offset of the next event to send, bytes.
    pos: u64,
    /// While the file is still being fetched from the store: how far it is.
    following: Option<Following>,
    /// The dump crossed a switch into this file and every transaction so far in it was
    /// indexed in an earlier timeline's file: those are not sent again
    /// ([`DumpCtx::sent_elsewhere`]); false from the first one that was not.
    repeats: bool,
}

/// An evicted file a dump sends while it is fetched (`archive::cache::Opened::Fetching`).
struct Following {
    /// The followed fetch's progress.
    progress: Arc<archive::fetch::Progress>,
    /// This dump's own read of the file: waited for when the followed fetch fails.
    fetch: tokio::task::JoinHandle<Result<PathBuf, archive::fetch::FetchError>>,
}

/// Why a file to send could not be opened.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    /// Not local, and the archive store could not give it.
    #[error("{0}")]
    Fetch(#[from] archive::fetch::FetchError),
    /// Opening the local or cached copy failed.
    #[error("open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The GTID start's skip rule and whether the current event group is being skipped.
struct Skipping {
    /// Which groups to skip.
    rule: GtidSkip,
    /// Inside a skipped group.
    active: bool,
}

/// The reader's output: packets framed into chunks for the writer task.
struct Out {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    seq: u8,
    last_sent: Instant,
    /// Whether a made-up event (artificial ROTATE, heartbeat) gets a CRC32 now: what the
    /// client announced until a FORMAT_DESCRIPTION was sent, then that event's algorithm,
    /// which is what the client parses with from there on (MariaDB `sql/sql_repl.cc`
    /// updates `current_checksum_alg` the same way).
    made_up_crc: bool,
    /// The writer task's queue was full at the last flush: the buffer is kept, the step
    /// ends, and the reader waits for room before the next one (a slow replica never
    /// holds a step's thread).
    blocked: bool,
    /// A semi-sync stream ([`DumpOptions::semi_sync`]).
    semi_sync: bool,
}

impl Out {
    fn event(&mut self, ev: &[u8]) {
        // Packet = 0x00 + event; frame() splits at 16 MiB. A semi-sync stream puts its
        // 2-byte header before the event (mysql_wire::semisync).
        let mut p = Vec::with_capacity(ev.len() + 3);
        p.push(0);
        if self.semi_sync {
            use mysql_wire::semisync::{MAGIC, NEED_ACK};
            p.extend_from_slice(&[MAGIC, if wants_ack(ev) { NEED_ACK } else { 0 }]);
        }
        p.extend_from_slice(ev);
        frame(&mut self.buf, &mut self.seq, &p);
    }

    /// Ends a non-blocking dump: an EOF packet after the last event, sent at once.
    fn eof(&mut self) {
        frame(&mut self.buf, &mut self.seq, &server::eof_packet());
        self.flush();
    }

    /// Sends the buffered chunk when the writer task has room, else keeps it and sets
    /// [`Out::blocked`]; false when the replica is gone.
    fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return !self.tx.is_closed();
        }
        match self.tx.try_reserve() {
            Ok(room) => {
                room.send(std::mem::take(&mut self.buf));
                self.last_sent = Instant::now();
                true
            }
            Err(mpsc::error::TrySendError::Full(())) => {
                self.blocked = true;
                true
            }
            Err(mpsc::error::TrySendError::Closed(())) => false,
        }
    }

    /// Sends the buffer once it holds a chunk; false when the replica is gone.
    fn flush_if_full(&mut self) -> bool {
        if self.buf.len() >= CHUNK {
            self.flush()
        } else {
            true
        }
    }
}

/// The artificial ROTATE that names the file a dump continues in (`pos` in `file`),
/// log_pos 0, with a CRC32 only when `crc` (see [`announced_checksum`]).
fn artificial_rotate(file: &str, pos: u64, server_id: u32, crc: bool) -> Vec<u8> {
    let mut body = pos.to_le_bytes().to_vec();
    body.extend_from_slice(file.as_bytes());
    build_event(
        event_type::ROTATE,
        server_id,
        0,
        LOG_EVENT_ARTIFICIAL_F,
        &body,
        crc,
    )
}

/// An event of `type_code` with timestamp 0 (ROTATE, HEARTBEAT), with a CRC32 when
/// `crc`.
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

/// Offset of the FORMAT_DESCRIPTION's `created` timestamp in the event: the header,
/// binlog_version (2), server_version (50).
const FDE_CREATED_OFFSET: usize = HEADER_LEN + 2 + 50;

/// Rewrites a FORMAT_DESCRIPTION for sending: in-use flag cleared; for the FDE re-sent
/// when a dump starts past offset 4 (`log_pos` given, 0), log_pos set and `created`
/// zeroed, as MariaDB and MySQL do so that a replica does not take it for a server
/// restart (which would drop its temporary tables), and the CRC recomputed when the
/// event carries one. Source: MariaDB `sql/sql_repl.cc` `send_format_descriptor_event`.
fn fde_for_send(ev: &[u8], alg: ChecksumAlg, log_pos: Option<u32>) -> Vec<u8> {
    let mut v = ev.to_vec();
    if v.len() < HEADER_LEN {
        return v;
    }
    v[17] &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
    if let Some(p) = log_pos {
        v[13..17].copy_from_slice(&p.to_le_bytes());
        if let Some(created) = v.get_mut(FDE_CREATED_OFFSET..FDE_CREATED_OFFSET + 4) {
            created.copy_from_slice(&[0; 4]);
        }
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
    /// Streams from `start` into `tx` until `done` or the replica leaves: steps of
    /// [`DumpCtx::advance`] on the blocking threads, and between them, while the dump
    /// waits, no thread (see the module doc). An archive that cannot be served ends the
    /// stream with ERROR 1236 (and the message is kept in the stats).
    async fn drive(
        self: Arc<Self>,
        start: Start,
        tx: mpsc::Sender<Vec<u8>>,
        done: CancellationToken,
    ) {
        let mut watch = self.archive.status.as_ref().map(|s| s.watch_durable());
        let mut st = DumpState {
            at: Some(At::Open {
                file: start.file,
                pos: start.pos,
                crossed: false,
            }),
            skip: Skipping {
                rule: start.skip,
                active: false,
            },
            out: Out {
                tx,
                buf: Vec::with_capacity(CHUNK + 64 * 1024),
                seq: self.seq,
                last_sent: Instant::now(),
                made_up_crc: self.made_up_crc,
                blocked: false,
                semi_sync: self.semi_sync,
            },
        };
        loop {
            if let Some(w) = watch.as_mut() {
                // What moved from here on wakes the wait after this step.
                w.borrow_and_update();
            }
            let Some((back, step)) = self.clone().take_turn(st, &done).await else {
                return;
            };
            st = back;
            if matches!(step, Step::Done) {
                // What a full queue kept back (an EOF, an ERROR 1236) still goes out.
                let rest = std::mem::take(&mut st.out.buf);
                if !rest.is_empty() {
                    let _ = st.out.tx.send(rest).await;
                }
                return;
            }
            if st.out.blocked {
                // Wait for room, then the next step sends what was kept first.
                let room = tokio::select! {
                    _ = done.cancelled() => return,
                    r = st.out.tx.reserve() => r.is_ok(),
                };
                if !room {
                    return;
                }
                st.out.blocked = false;
                continue;
            }
            if let Step::Idle { following } = step {
                if !self.wait_for_more(&st, &mut watch, following, &done).await {
                    return;
                }
            }
        }
    }

    /// Runs one step of the dump on a blocking thread once a turn is free ([`STEPS`]);
    /// `None` when the dump is cancelled meanwhile or the step panicked.
    async fn take_turn(
        self: Arc<Self>,
        mut st: DumpState,
        done: &CancellationToken,
    ) -> Option<(DumpState, Step)> {
        let turn = tokio::select! {
            _ = done.cancelled() => return None,
            t = STEPS.acquire() => t.ok()?,
        };
        let (d, span) = (done.clone(), tracing::Span::current());
        let step = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let r = self.advance(&mut st, &d);
            (st, r)
        })
        .await;
        drop(turn);
        step.ok()
    }

    /// The wait of an idle dump, holding no thread: until the durable end moves, the
    /// next heartbeat is due, or (following a fetch, or without a capture to watch)
    /// [`POLL`]. False when the dump is cancelled. A capture that is gone
    /// (`watch` closed) leaves the dump looking every [`POLL`].
    async fn wait_for_more(
        &self,
        st: &DumpState,
        watch: &mut Option<tokio::sync::watch::Receiver<u64>>,
        following: bool,
        done: &CancellationToken,
    ) -> bool {
        // The watch never misses a move of the durable end: without one, the wait
        // ends at the next heartbeat.
        let wait = match (following, &watch) {
            (false, Some(_)) => self
                .heartbeat
                .saturating_sub(st.out.last_sent.elapsed())
                .max(POLL),
            _ => POLL,
        };
        let mut lost = false;
        {
            let moved = async {
                match watch.as_mut() {
                    Some(w) if !following => w.changed().await.is_ok(),
                    _ => std::future::pending::<bool>().await,
                }
            };
            tokio::select! {
                _ = done.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
                ok = moved => lost = !ok,
            }
        }
        if lost {
            *watch = None;
        }
        true
    }

    /// One step: reads and sends until the dump has to wait ([`Step::Idle`], after a
    /// heartbeat when one is due) or is over ([`Step::Done`]). A dump that cannot go on
    /// ends here with ERROR 1236 to the replica. Blocking.
    fn advance(&self, st: &mut DumpState, done: &CancellationToken) -> Step {
        match self.step(st, done) {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                warn!(source = %self.archive.source, error = %msg, "fake primary: dump ends with an error");
                *lock(&self.stats.last_error) = Some(msg.clone());
                let out = &mut st.out;
                let mut seq = out.seq;
                frame(
                    &mut out.buf,
                    &mut seq,
                    &server::err_packet(ER_MASTER_FATAL_ERROR_READING_BINLOG, &msg),
                );
                out.flush();
                Step::Done
            }
        }
    }

    /// [`DumpCtx::advance`] before its error handling: opens files, sends them, moves to
    /// the next one (refusing to cross a gap), until it has to wait.
    fn step(&self, st: &mut DumpState, done: &CancellationToken) -> Result<Step, DumpError> {
        loop {
            let Some(at) = st.at.take() else {
                return Ok(Step::Done);
            };
            match at {
                At::Open { file, pos, crossed } => {
                    match self.open_file(file.clone(), pos, crossed, &mut st.out) {
                        Ok(cur) => st.at = Some(At::Sending(cur)),
                        // The ACTIVE file's first sync came before its FORMAT_DESCRIPTION
                        // was written: wait for more of it (nothing was sent yet).
                        Err(DumpError::NoFormatDescription { .. })
                            if durable_end(&self.archive).is_some_and(|(f, _)| f == file) =>
                        {
                            st.at = Some(At::Open { file, pos, crossed });
                            return Ok(match st.out.flush() && !done.is_cancelled() {
                                true => Step::Idle { following: false },
                                false => Step::Done,
                            });
                        }
                        Err(e) => return Err(e),
                    }
                }
                At::Sending(mut cur) => {
                    match self.send_file(&mut cur, &mut st.skip, &mut st.out)? {
                        Sent::Done => return Ok(Step::Done),
                        Sent::More => {
                            st.at = Some(At::Sending(cur));
                            return Ok(Step::More);
                        }
                        // The file is closed and fully sent: on to the next one.
                        Sent::Closed => st.at = Some(At::Next(cur)),
                        Sent::Stopped => {
                            self.stats.reached_stop.store(true, Ordering::Relaxed);
                            let (file, pos) = (cur.file.clone(), cur.pos);
                            st.at = Some(At::Stopped { file, pos });
                        }
                        Sent::Wait => {
                            let (file, pos) = (cur.file.clone(), cur.pos);
                            let following = cur.following.is_some();
                            st.at = Some(At::Sending(cur));
                            return Ok(self.idle(&file, pos, &mut st.out, done, following));
                        }
                    }
                }
                At::Next(cur) => match self.next_file(&cur, &mut st.out)? {
                    Some(next) => {
                        if let Some(reason) = self.gap_after(&cur.file)? {
                            return Err(DumpError::Gap {
                                source_name: self.archive.source.clone(),
                                after: cur.file.clone(),
                                next,
                                reason,
                            });
                        }
                        let crossed = self.cross_timeline(&cur.file, &next)?;
                        st.at = Some(At::Open {
                            file: next,
                            pos: 4,
                            crossed,
                        });
                    }
                    None if self.non_blocking => return Ok(Step::Done),
                    None => {
                        let (file, pos) = (cur.file.clone(), cur.pos);
                        st.at = Some(At::Next(cur));
                        return Ok(self.idle(&file, pos, &mut st.out, done, false));
                    }
                },
                At::Stopped { file, pos } => {
                    let step = self.idle(&file, pos, &mut st.out, done, false);
                    st.at = Some(At::Stopped { file, pos });
                    return Ok(step);
                }
            }
        }
    }

    fn file_state(&self, name: &str) -> Result<Option<(FileState, String)>, DumpError> {
        let cat = self.archive.catalog.clone();
        let (source, file) = (self.archive.source.clone(), name.to_string());
        self.rt
            .block_on(async move { cat.get_file(&source, &file).await })
            .map(|r| r.map(|r| (r.state, r.info)))
            .map_err(DumpError::Catalog)
    }

    fn gap_after(&self, name: &str) -> Result<Option<String>, DumpError> {
        let cat = self.archive.catalog.clone();
        let source = self.archive.source.clone();
        let gaps = self
            .rt
            .block_on(async move { cat.list_gaps(&source).await })?;
        Ok(gaps
            .into_iter()
            .find(|g| g.after_file.as_deref() == Some(name))
            .map(|g| g.reason))
    }

    /// Moving from `file` to `next`: true across a timeline switch, where `next` must
    /// be its timeline's first file, and that timeline must hold every transaction of the
    /// earlier one (no divergence); otherwise the dump ends with the reason.
    fn cross_timeline(&self, file: &str, next: &str) -> Result<bool, DumpError> {
        let (t, _) = binlog::split_timeline(file);
        let (u, _) = binlog::split_timeline(next);
        if u == t {
            return Ok(false);
        }
        let cat = self.archive.catalog.clone();
        let source = self.archive.source.clone();
        let rows = self
            .rt
            .block_on(async move { cat.list_timelines(&source).await })?;
        let row = rows.iter().find(|r| r.timeline == i64::from(u));
        let first = row.and_then(|r| r.first_file.clone());
        // A timeline between the two holds no file (capture left its server before the
        // first byte): `next` is then the first file of a later one.
        if first.as_deref() != Some(next) {
            return Err(DumpError::TimelineHole {
                source_name: self.archive.source.clone(),
                after: file.to_owned(),
                next: next.to_owned(),
                first: first.unwrap_or_else(|| "unknown".into()),
            });
        }
        if let Some(divergent) = row.and_then(|r| r.divergent.clone()) {
            return Err(DumpError::DivergentSwitch {
                source_name: self.archive.source.clone(),
                timeline: t,
                last_file: file.to_owned(),
                next_timeline: u,
                next_file: next.to_owned(),
                divergent,
            });
        }
        Ok(true)
    }

    /// The first file of a timeline >= 2 repeats, from its start, transactions the
    /// previous timeline holds (the switch stores the new server's whole file): in it,
    /// after crossing the switch ([`DumpCtx::cross_timeline`]), whether the transaction
    /// `g` is indexed in another file (sent from there, so skipped here).
    fn sent_elsewhere(&self, file: &str, g: &Gtid) -> bool {
        matches!(
            self.archive.index.find_gtid(&self.archive.source, g),
            Ok(Some(e)) if e.file != file
        )
    }

    /// Starts sending `file` at `pos`: refuses a FAIL file or one without a readable
    /// FORMAT_DESCRIPTION, sends the artificial ROTATE and, past offset 4, the file's
    /// FORMAT_DESCRIPTION with log_pos 0.
    fn open_file(
        &self,
        file: String,
        pos: u64,
        crossed: bool,
        out: &mut Out,
    ) -> Result<FileCursor, DumpError> {
        let source_name = self.archive.source.clone();
        if let Some((FileState::Fail, info)) = self.file_state(&file)? {
            return Err(DumpError::FileFailed {
                file,
                source_name,
                info,
            });
        }
        let (path, handle, following) = match self.open_handle(&file) {
            Ok(x) => x,
            Err(OpenError::Fetch(source)) => {
                return Err(DumpError::NotInStore {
                    file,
                    source_name,
                    source: Box::new(source),
                })
            }
            Err(OpenError::Open { path, source }) => {
                return Err(DumpError::Io {
                    what: "open",
                    path,
                    source,
                })
            }
        };
        let dup = handle.try_clone().map_err(DumpError::io("read", &path))?;
        let Some((fh, fde)) = fde_of(dup) else {
            return Err(DumpError::NoFormatDescription { file, source_name });
        };
        // Its CRC, and "no checksums" against the next event: a damaged FDE must not
        // switch off the CRC check of every event served after it.
        let mut check = handle.try_clone().map_err(DumpError::io("read", &path))?;
        let trusted = binlog::check::trusted_format_description(&mut check)
            .map_err(DumpError::io("read", &path))?;
        if trusted.is_none() {
            self.archive.report_damage(&file);
            return Err(DumpError::UntrustedFormatDescription { file, source_name });
        }
        let alg = fde.checksum_alg;
        out.event(&artificial_rotate(
            &file,
            pos,
            self.server_id,
            out.made_up_crc,
        ));
        if pos > 4 {
            let raw = read_at(&handle, &path, 4, fh.event_size as usize)?;
            out.event(&fde_for_send(&raw, alg, Some(0)));
            out.made_up_crc = alg == ChecksumAlg::Crc32;
        }
        let repeats = crossed;
        Ok(FileCursor {
            file,
            path,
            fh: handle,
            alg,
            pos,
            following,
            repeats,
        })
    }

    /// The path of `file` (local, cached or fetched) and the file opened. When the local
    /// file leaves the disk between the two (evicted meanwhile), it is looked up again,
    /// now in the store.
    fn open_handle(
        &self,
        file: &str,
    ) -> Result<(PathBuf, std::fs::File, Option<Following>), OpenError> {
        let mut tries = 0;
        loop {
            let path = match self.rt.block_on(self.archive.open_of(file))? {
                Opened::Whole(path) => path,
                Opened::Fetching {
                    path,
                    handle,
                    progress,
                    fetch,
                } => {
                    info!(
                        source = %self.archive.source,
                        file,
                        fetched = ?progress.now(),
                        "sending an evicted binlog while it is fetched from the archive store"
                    );
                    return Ok((path, handle, Some(Following { progress, fetch })));
                }
            };
            match std::fs::File::open(&path) {
                Ok(f) => return Ok((path, f, None)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 2 => tries += 1,
                Err(source) => return Err(OpenError::Open { path, source }),
            }
        }
    }

    /// The file after `cur`'s, if the archive has one yet. A non-blocking dump with none
    /// ends here with an EOF packet (`None`, and the caller ends it).
    fn next_file(&self, cur: &FileCursor, out: &mut Out) -> Result<Option<String>, DumpError> {
        let files = list_files(&self.archive)?;
        let next = files
            .iter()
            .find(|(n, _)| binlog_order(n) > binlog_order(&cur.file))
            .map(|(n, _)| n.clone());
        if next.is_none() && self.non_blocking {
            out.eof();
        }
        Ok(next)
    }

    /// Before a wait: flushes, and sends a heartbeat when the line was quiet for the
    /// heartbeat period (framed as every made-up event, see `Out::made_up_crc`).
    /// [`Step::Done`] when the replica left or the dump is cancelled.
    fn idle(
        &self,
        file: &str,
        pos: u64,
        out: &mut Out,
        done: &CancellationToken,
        following: bool,
    ) -> Step {
        if !out.flush() || done.is_cancelled() {
            return Step::Done;
        }
        if out.last_sent.elapsed() >= self.heartbeat {
            let hb = build_event(
                event_type::HEARTBEAT,
                self.server_id,
                u32::try_from(pos).unwrap_or(u32::MAX),
                LOG_EVENT_ARTIFICIAL_F,
                file.as_bytes(),
                out.made_up_crc,
            );
            out.event(&hb);
            if !out.flush() {
                return Step::Done;
            }
        }
        Step::Idle { following }
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

    /// Sends `cur`'s file from `cur.pos` to its end (closed file) or up to what is
    /// readable now (the ACTIVE file's durable end, what a fetch wrote so far); see
    /// [`Sent`] for how it ends.
    fn send_file(
        &self,
        cur: &mut FileCursor,
        skip: &mut Skipping,
        out: &mut Out,
    ) -> Result<Sent, DumpError> {
        let file = cur.file.clone();
        loop {
            if self.stopped(&file, cur.pos) {
                return Ok(Sent::Stopped);
            }
            // How far this file may be read: the durable length while it is the ACTIVE
            // file, its size once a later file exists, and while it is fetched from the
            // store, what the fetch wrote so far.
            let live = durable_end(&self.archive);
            let fetching = self.fetched(cur)?;
            let size = match fetching {
                Some(n) => n,
                None => cur
                    .fh
                    .metadata()
                    .map(|m| m.len())
                    .map_err(|source| DumpError::Stat {
                        path: cur.path.clone(),
                        source,
                    })?,
            };
            let (mut limit, mut closed) = match &live {
                Some((f, p)) if *f == file => (*p, false),
                Some((f, _)) if binlog_order(f) < binlog_order(&file) => (0, false),
                _ => (size, true),
            };
            if let Some(n) = fetching {
                (limit, closed) = (limit.min(n), false);
            }
            if cur.pos < limit {
                let before = cur.pos;
                // A step sends at most STEP_BYTES, then lets other dumps have a turn; an
                // event larger than that goes out whole (no cap when nothing fit).
                let cap = limit.min(cur.pos.saturating_add(STEP_BYTES));
                self.send_range(cur, cap, fetching.is_some() || cap < limit, skip, out)?;
                if cur.pos == before && cap < limit {
                    self.send_range(cur, limit, fetching.is_some(), skip, out)?;
                }
                if !out.flush_if_full() {
                    return Ok(Sent::Done);
                }
                if out.blocked
                    || (cur.pos > before && cur.pos < limit && !self.stopped(&file, cur.pos))
                {
                    return Ok(Sent::More);
                }
                if cur.pos < limit && !self.stopped(&file, cur.pos) {
                    if fetching.is_none() {
                        return Err(DumpError::StoppedInside { file, pos: cur.pos });
                    }
                    // The fetch has written part of the next event: wait for the rest.
                    if cur.pos == before {
                        return Ok(Sent::Wait);
                    }
                }
                continue;
            }
            if closed {
                return Ok(Sent::Closed);
            }
            if fetching.is_some() {
                // More of the file is on its way from the store.
                return Ok(Sent::Wait);
            }
            if self.non_blocking {
                // The end of the ACTIVE file's durable prefix is the end of the binlogs.
                out.eof();
                return Ok(Sent::Done);
            }
            return Ok(Sent::Wait);
        }
    }

    /// While `cur`'s file is being fetched from the store: the bytes of it readable now
    /// (`Some`); `None` once it is whole. When the followed fetch failed, this dump's
    /// own read of the file (which fetches the file again if it must) is waited for
    /// between steps (nothing more is readable meanwhile); once it ended, the file is
    /// reopened from it at the same offset: the bytes are the same.
    fn fetched(&self, cur: &mut FileCursor) -> Result<Option<u64>, DumpError> {
        let Some(f) = &cur.following else {
            return Ok(None);
        };
        match f.progress.now() {
            // While this dump's own read of the file runs: it ends whole or with the
            // error even when the followed fetch never says so.
            Fetched::Running(_, n) if !f.fetch.is_finished() => return Ok(Some(n)),
            // The followed fetch failed and this dump's own read still runs: nothing more
            // is readable yet; the dump waits for it between steps, holding no turn.
            Fetched::Failed if !f.fetch.is_finished() => return Ok(Some(cur.pos)),
            Fetched::Whole(_) => {
                cur.following = None;
                return Ok(None);
            }
            Fetched::Running(..) | Fetched::Failed => {}
        }
        let Some(f) = cur.following.take() else {
            return Ok(None);
        };
        let not_in_store = |e: archive::fetch::FetchError| DumpError::NotInStore {
            file: cur.file.clone(),
            source_name: self.archive.source.clone(),
            source: Box::new(e),
        };
        let path = match self.rt.block_on(f.fetch) {
            Ok(Ok(path)) => path,
            Ok(Err(e)) => return Err(not_in_store(e)),
            Err(source) => return Err(not_in_store(archive::fetch::FetchError::Task { source })),
        };
        cur.fh = std::fs::File::open(&path).map_err(DumpError::io("open", &path))?;
        cur.path = path;
        Ok(None)
    }

    /// Sends the events of `cur`'s file from `cur.pos` up to `limit` (or the stop point),
    /// each CRC-checked first, skipping the groups `skip` names; advances `cur.pos`.
    /// A damaged event is reported to the source's checker and ends the dump. With
    /// `partial` (a file still being fetched: `limit` may cut an event), an event cut
    /// at `limit` is left for the next call.
    fn send_range(
        &self,
        cur: &mut FileCursor,
        limit: u64,
        partial: bool,
        skip: &mut Skipping,
        out: &mut Out,
    ) -> Result<(), DumpError> {
        let (file, path, alg) = (cur.file.as_str(), cur.path.as_path(), cur.alg);
        let (pos, repeats) = (&mut cur.pos, &mut cur.repeats);
        // A second handle on the open file (it shares the offset: set here, read only here).
        let mut f = cur.fh.try_clone().map_err(DumpError::io("read", path))?;
        f.seek(SeekFrom::Start(*pos))
            .map_err(DumpError::io("read", path))?;
        let br = std::io::BufReader::with_capacity(1 << 20, f.take(limit - *pos));
        let mut r = EventReader::new_at(br, *pos);
        while let Some(item) = r.next_event() {
            if partial && matches!(item, Err(binlog::EventError::Truncated { .. })) {
                return Ok(());
            }
            let (off, h, ev) = item.map_err(|source| {
                self.archive.report_damage(file);
                DumpError::Damaged {
                    file: file.to_owned(),
                    source_name: self.archive.source.clone(),
                    offset: source.offset().unwrap_or(*pos),
                    source,
                }
            })?;
            if self.stopped(file, off) {
                return Ok(());
            }
            binlog::verify_checksum(ev, alg).map_err(|source| {
                self.archive.report_damage(file);
                DumpError::CrcFailed {
                    file: file.to_owned(),
                    source_name: self.archive.source.clone(),
                    offset: off,
                    source,
                }
            })?;
            let t = h.type_code;
            if event_type::is_gtid(t) {
                skip.active = match binlog::parse_gtid(&h, ev, alg) {
                    Ok(Some(g)) => {
                        let again = *repeats && self.sent_elsewhere(file, &g.gtid);
                        // The first transaction not sent before: the new server's own
                        // history from here on, nothing more to look up.
                        *repeats = again;
                        skip.rule.skips(&g.gtid) || again
                    }
                    _ => false,
                };
            } else if is_control(t) {
                skip.active = false;
            }
            if !skip.active {
                let sent = if t == event_type::FORMAT_DESCRIPTION {
                    out.event(&fde_for_send(ev, alg, None));
                    out.made_up_crc = alg == ChecksumAlg::Crc32;
                    true
                } else {
                    // As stored, or as a MariaDB primary rewrites it for this client.
                    match self.compat.apply(ev, alg)? {
                        Some(e) => {
                            out.event(&e);
                            true
                        }
                        None => false,
                    }
                };
                if sent {
                    self.stats.events_sent.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .bytes_sent
                        .fetch_add(u64::from(h.event_size), Ordering::Relaxed);
                }
            }
            *pos = off + u64::from(h.event_size);
            if !out.flush_if_full() {
                return Ok(());
            }
            if out.blocked {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// `len` bytes of `path` at `off`.
fn read_at(fh: &std::fs::File, path: &Path, off: u64, len: usize) -> Result<Vec<u8>, DumpError> {
    let mut f = fh.try_clone().map_err(DumpError::io("read", path))?;
    f.seek(SeekFrom::Start(off))
        .map_err(DumpError::io("read", path))?;
    let mut v = Vec::new();
    f.take(len as u64)
        .read_to_end(&mut v)
        .map_err(DumpError::io("read", path))?;
    if v.len() != len {
        return Err(DumpError::ShortRead {
            path: path.to_owned(),
            offset: off,
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semi_sync_acks_are_read_in_any_split_and_oversized_packets_skipped() {
        let a1 = mysql_wire::semisync::ack("binlog.000003", 1234);
        let a2 = mysql_wire::semisync::ack("binlog.000004", 4);
        let frame_of = |body: &[u8], seq: u8| {
            let mut f = vec![body.len() as u8, (body.len() >> 8) as u8, 0, seq];
            f.extend_from_slice(body);
            f
        };
        let mut wire = frame_of(&a1, 0);
        wire.extend(frame_of(&[0u8; 5000], 0)); // not an ack, too long to keep
        wire.extend(frame_of(&a2, 0));
        for split in [1, 3, 7, wire.len()] {
            let mut r = AckReader::default();
            for part in wire.chunks(split) {
                r.feed(part);
            }
            assert_eq!(r.count, 2, "split {split}");
            assert_eq!(r.last.as_deref(), Some("binlog.000004:4"));
            assert!(r.pending.len() <= AckReader::MAX + 4);
        }
    }

    #[test]
    fn a_transaction_end_asks_for_an_ack_and_made_up_events_do_not() {
        let alg = ChecksumAlg::Crc32;
        let xid = build_event(event_type::XID, 1, 500, 0, &[0u8; 8], true);
        assert!(wants_ack(&xid));
        let hb = build_event(
            event_type::HEARTBEAT,
            1,
            500,
            LOG_EVENT_ARTIFICIAL_F,
            b"f",
            true,
        );
        assert!(!wants_ack(&hb));
        let mut begin = vec![0u8; 13];
        begin.extend_from_slice(b"testBEGIN");
        let q = build_event(
            event_type::QUERY,
            1,
            700,
            0,
            &begin,
            alg == ChecksumAlg::Crc32,
        );
        assert!(!wants_ack(&q), "BEGIN opens a transaction");
        let mut ddl = vec![0u8; 13];
        ddl.extend_from_slice(b"testCREATE TABLE t (a INT)");
        let q = build_event(event_type::QUERY, 1, 800, 0, &ddl, true);
        assert!(wants_ack(&q), "DDL ends one");
    }

    fn facts() -> ArchiveFacts {
        two_file_facts(1000, 500)
    }

    /// COM_BINLOG_DUMP's body as clients send it: pos u32, flags u16, server_id u32, name.
    fn dump_body(pos: u32, flags: u16, name: &[u8]) -> Vec<u8> {
        let mut b = pos.to_le_bytes().to_vec();
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&77u32.to_le_bytes());
        b.extend_from_slice(name);
        b
    }

    #[test]
    fn a_nul_padded_empty_name_means_the_first_binlog() {
        // python-mysql-replication 1.x (MariaDB, no GTID, blocking=False): an empty name
        // padded with NULs, its length cutting one off.
        let body = dump_body(4, BINLOG_DUMP_NON_BLOCK, b"\0\0");
        let vars = BTreeMap::new();
        assert!(matches!(
            requested_start(0x12, &body, &vars, &facts()),
            Ok(Requested::First)
        ));
        assert_eq!(dump_flags(0x12, &body) & BINLOG_DUMP_NON_BLOCK, 1);
        assert_eq!(dump_file_name(b"\0\0\0"), "");
        assert_eq!(dump_file_name(b"mysql-bin.000002\0"), "mysql-bin.000002");
        // With @slave_connect_state set, the empty name means the GTID position.
        let mut vars = BTreeMap::new();
        vars.insert("slave_connect_state".to_string(), "0-1-1".to_string());
        assert!(matches!(
            requested_start(0x12, &body, &vars, &facts()),
            Ok(Requested::Gtids(..))
        ));
    }

    #[test]
    fn mysqlbinlog_non_block_dump_parses_with_its_flag() {
        // mariadb-binlog --read-from-remote-server --to-last-log: flag 0x01, the name.
        let body = dump_body(4, BINLOG_DUMP_NON_BLOCK, b"mysql-bin.000002");
        match requested_start(0x12, &body, &BTreeMap::new(), &facts()) {
            Ok(Requested::At(s)) => assert_eq!((s.file.as_str(), s.pos), ("mysql-bin.000002", 4)),
            _ => panic!("a position start"),
        }
        assert_eq!(dump_flags(0x12, &body), BINLOG_DUMP_NON_BLOCK);
        // A blocking replica (flags 0) and COM_BINLOG_DUMP_GTID's leading flags.
        assert_eq!(dump_flags(0x12, &dump_body(4, 0, b"x")), 0);
        assert_eq!(dump_flags(0x1e, &[1, 0, 0, 0]), BINLOG_DUMP_NON_BLOCK);
        assert_eq!(dump_flags(0x12, &[4, 0]), 0);
        // python-mysql-replication does not ask for ANNOTATE_ROWS (flag 0x02); a MariaDB
        // replica and mariadb-binlog do.
        assert_eq!(
            dump_flags(0x12, &dump_body(4, 0x03, b"x")) & BINLOG_SEND_ANNOTATE_ROWS_EVENT,
            2
        );
        // Trailing bytes after the name's NULs do not matter; an unknown name is 1236.
        assert!(requested_start(
            0x12,
            &dump_body(4, 0, b"nope.000009"),
            &BTreeMap::new(),
            &facts()
        )
        .is_err());
    }

    #[test]
    fn made_up_events_follow_the_announced_checksum() {
        let mut vars = BTreeMap::new();
        assert_eq!(announced_checksum(&vars), None);
        vars.insert("master_binlog_checksum".to_string(), "NONE".to_string());
        assert_eq!(announced_checksum(&vars), Some(ChecksumAlg::Off));
        vars.insert("master_binlog_checksum".to_string(), "CRC32".to_string());
        assert_eq!(announced_checksum(&vars), Some(ChecksumAlg::Crc32));
        let mut mysql8 = BTreeMap::new();
        mysql8.insert("source_binlog_checksum".to_string(), "crc32".to_string());
        assert_eq!(announced_checksum(&mysql8), Some(ChecksumAlg::Crc32));
        // mysql_async announces 'ALL': unknown to the server, which then frames its
        // made-up events with a CRC32 (MariaDB 10.11 sends a 47-byte artificial ROTATE
        // for mysql-bin.000001); so does an empty value. 'none' is NONE.
        for (v, want) in [
            ("ALL", ChecksumAlg::Crc32),
            ("", ChecksumAlg::Crc32),
            ("none", ChecksumAlg::Off),
        ] {
            vars.insert("master_binlog_checksum".to_string(), v.to_string());
            assert_eq!(announced_checksum(&vars), Some(want), "{v:?}");
        }
        // mysqlbinlog announces 'NONE': the artificial ROTATE has no CRC32, so the name
        // it reads is exactly the file's (no 4 bytes of CRC taken as part of it).
        let plain = artificial_rotate("mysql-bin.000001", 4, 1, false);
        assert_eq!(plain.len(), HEADER_LEN + 8 + "mysql-bin.000001".len());
        let r = binlog::parse_rotate(&plain, ChecksumAlg::Off).unwrap();
        assert_eq!((r.next_file.as_str(), r.position), ("mysql-bin.000001", 4));
        let crc = artificial_rotate("mysql-bin.000001", 4, 1, true);
        binlog::verify_checksum(&crc, ChecksumAlg::Crc32).unwrap();
        let r = binlog::parse_rotate(&crc, ChecksumAlg::Crc32).unwrap();
        assert_eq!(r.next_file, "mysql-bin.000001");
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
        // `created` zeroed, as a real primary sends it (the bytes a client writes with
        // mariadb-binlog --raw --start-position are then the same).
        assert_eq!(
            &sent[FDE_CREATED_OFFSET..FDE_CREATED_OFFSET + 4],
            &[0, 0, 0, 0]
        );
        binlog::verify_checksum(&sent, ChecksumAlg::Crc32).unwrap();
        let same = fde_for_send(&ev, ChecksumAlg::Crc32, None);
        assert_eq!(
            &same[FDE_CREATED_OFFSET..FDE_CREATED_OFFSET + 4],
            &[7, 7, 7, 7]
        );
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
