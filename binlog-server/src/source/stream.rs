//! One connection's worth of streaming: connect, pick the start point, COM_BINLOG_DUMP,
//! then read, CRC-check and classify events and hand them to the writer in batches.

use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::info;

use binlog::check::ExpectedFormat;
use binlog::{self, event_type, ChecksumAlg, EventHeader, FormatDescription};

use super::classify::{arrival_alg, classify_event, Action, StreamState};
use super::context::SourceCtx;
use super::error::StreamEnd;
use super::session;
use super::writer::{WriterMsg, WriterTx};
use archive::local::{self, LocalFiles};
use node::config::{Source, StartAt};
use node::status::{CaptureState, Metrics, PrimaryView, StatusCell};
use node::util::lock;

/// Resolves where to start when the archive is empty (or a gap was accepted).
pub(crate) async fn start_point(
    s: &mut session::Session,
    source: &Source,
    status: &StatusCell,
    accept_gap: bool,
    store: &LocalFiles,
    timeline: u32,
) -> Result<(String, u64), StreamEnd> {
    let logs = session::show_binary_logs(&mut s.conn)
        .await
        .map_err(|e| StreamEnd::from(session::classify(e, "SHOW BINARY LOGS")))?;
    let Some((first, _)) = logs.first().cloned() else {
        return Err(StreamEnd::Definite(
            "the primary lists no binary logs (SHOW BINARY LOGS is empty)".into(),
        ));
    };
    let start = if accept_gap {
        // Continue with the primary's oldest binlog that is newer than the archive's
        // newest file: archived files are never opened for writing again.
        let archived_last = store
            .list()
            .ok()
            .and_then(|v| v.last().map(|(n, _)| n.clone()));
        let Some((next, _)) = logs
            .iter()
            .find(|(n, _)| {
                archived_last.as_ref().is_none_or(|l| {
                    binlog::binlog_order(&binlog::timeline_name(timeline, n))
                        > binlog::binlog_order(l)
                })
            })
            .cloned()
        else {
            return Err(StreamEnd::Definite(
                "the primary has no binlog newer than the archive's newest file".into(),
            ));
        };
        status.note(format!(
            "gap accepted by the operator: capture continues at {next}, the oldest binlog the primary has after the archive's last file"
        ));
        next
    } else {
        match &source.start {
            StartAt::Earliest => {
                let purged = binlog::binlog_seq(&first).is_some_and(|n| n > 1);
                status.note(if purged {
                    format!("capture began at {first}, the oldest binlog the primary still had: earlier binlogs had been purged on the primary and are not in the archive")
                } else {
                    format!("capture began at {first}, the primary's first binlog")
                });
                first
            }
            StartAt::Current => {
                let cur = session::show_master_status(&mut s.conn)
                    .await
                    .map_err(|e| StreamEnd::from(session::classify(e, "SHOW MASTER STATUS")))?
                    .map(|(f, _)| f)
                    .unwrap_or(first);
                status.note(format!("capture began at {cur}, the primary's current binlog (start = \"current\"), from position 4"));
                cur
            }
            StartAt::File(f) => {
                if !logs.iter().any(|(n, _)| n == f) {
                    return Err(StreamEnd::Definite(format!(
                        "start file {f} is not on the primary (it has {} .. {}): fix `start` in the config",
                        first,
                        logs.last().map(|(n, _)| n.as_str()).unwrap_or("?")
                    )));
                }
                status.note(format!("capture began at {f} (configured start)"));
                f.clone()
            }
        }
    };
    Ok((start, 4))
}

/// What one streaming attempt works with: the source's context, the writer's channel,
/// the store, and the token the note handler cancels when the writer fails.
pub(crate) struct Attempt<'a> {
    /// The source.
    pub ctx: &'a SourceCtx,
    /// Batches and file switches to the writer.
    pub wtx: &'a WriterTx,
    /// The source's files.
    pub store: &'a LocalFiles,
    /// Cancelled when the writer reported a failure.
    pub writer_failed: &'a CancellationToken,
    /// The primary's view, shared with the checker: gets each file's streamed
    /// FORMAT_DESCRIPTION.
    pub primary: &'a std::sync::Mutex<PrimaryView>,
}

/// Batches of stored events on their way to the writer: sent at 256 KiB, before a file
/// switch, and whenever the connection has no packet buffered (so idle streams are
/// written at once).
struct Batch {
    events: Vec<(EventHeader, Bytes)>,
    bytes: usize,
}

/// Bytes a batch collects before it is sent whatever the connection holds.
const BATCH_BYTES: usize = 256 * 1024;

impl Batch {
    /// Sends the collected events (if any) to the writer.
    async fn flush(&mut self, wtx: &WriterTx) -> Result<(), StreamEnd> {
        if self.events.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        wtx.send(WriterMsg::Events(std::mem::take(&mut self.events)))
            .await
            .map_err(|_| StreamEnd::WriterFailed(None))
    }
}

/// Tells the writer to continue in `file` at `pos`.
async fn open(wtx: &WriterTx, file: String, pos: u64) -> Result<(), StreamEnd> {
    wtx.send(WriterMsg::Open { file, pos })
        .await
        .map_err(|_| StreamEnd::WriterFailed(None))
}

/// One connection's worth of streaming from `resume` (or from the start point the
/// source's `start` names when the archive is empty or `accept_gap` is set). Returns why
/// it ended; it never ends without a reason.
pub(crate) async fn stream_once(
    a: &Attempt<'_>,
    resume: &local::Resume,
    accept_gap: bool,
) -> StreamEnd {
    let (mut s, file, pos, timeline) = match connect_and_dump(a, resume, accept_gap).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    let mut st = StreamState::new(&file, pos, s.checksum);
    st.timeline = timeline;
    if let local::Resume::At { .. } = resume {
        // The writer owns the file being continued from the start, so that a stream that
        // begins by moving to the next file (the primary stopped or crashed) closes it.
        if let Err(e) = open(a.wtx, st.stored(&file), pos).await {
            return e;
        }
        st.opened = true;
    }
    match read_events(a, &mut s, &mut st).await {
        Ok(()) => StreamEnd::Cancelled,
        Err(e) => e,
    }
}

/// Connects to the current server, checks it may feed the timeline
/// (`super::failover::admit`), works out the start, and starts the dump: the session,
/// the server's `(file, pos)` and the timeline they are stored on.
async fn connect_and_dump(
    a: &Attempt<'_>,
    resume: &local::Resume,
    accept_gap: bool,
) -> Result<(session::Session, String, u64, u32), StreamEnd> {
    let (source, status, cap) = (&a.ctx.source, &a.ctx.status, &a.ctx.shared.capture);
    let url = super::failover::current_url(a.ctx);
    let mut s = tokio::select! {
        _ = a.ctx.cancel.cancelled() => return Err(StreamEnd::Cancelled),
        r = session::connect(source, &url, cap) => r?,
    };
    super::failover::admit(a.ctx, s.read_only, s.primary_server_id).await?;
    let timeline = lock(&a.ctx.upstream).timeline;
    {
        let mut st = status.lock();
        st.dialect = Some(s.dialect.name().into());
        st.server_version = Some(s.conn.server_version().to_owned());
    }
    if s.binlog_format == "STATEMENT" {
        status.note("the primary uses binlog_format=STATEMENT: archived and replayable, but non-deterministic statements may replay differently; ROW is recommended");
    }
    // The archive names files by their stored names; the server by its own.
    let (file, pos) = match resume {
        local::Resume::At { file, pos } => (wire_name(file, timeline)?, *pos),
        local::Resume::Next { next, .. } => (wire_name(next, timeline)?, 4),
        local::Resume::Empty => {
            start_point(&mut s, source, status, accept_gap, a.store, timeline).await?
        }
    };
    session::prepare_dump(&mut s, cap.heartbeat_period).await?;
    if source.semi_sync {
        ask_semi_sync(&mut s, status).await?;
    }
    session::start_dump(&mut s, source.server_id, &file, pos, true, false).await?;
    info!(source = %source.name, %file, pos, dialect = s.dialect.name(), "streaming");
    status.lock().state = CaptureState::Streaming;
    let _ = a
        .ctx
        .shared
        .catalog
        .set_source_state(&source.name, "streaming", None)
        .await;
    Ok((s, file, pos, timeline))
}

/// The server's name of the stored file `stored`, which must be on `timeline` (the
/// reconnect loop resumes a new timeline at its first file).
fn wire_name(stored: &str, timeline: u32) -> Result<String, StreamEnd> {
    match binlog::split_timeline(stored) {
        (t, wire) if t == timeline => Ok(wire.to_owned()),
        (t, _) => Err(StreamEnd::Definite(format!(
            "capture would resume at {stored} (timeline {t}) on timeline {timeline}'s server: \
             the archive and the catalog's timelines disagree"
        ))),
    }
}

/// `semi_sync = true`: asks the primary for a semi-sync stream and shows the result in
/// the status (a primary without semi-sync streams asynchronously, with a note).
async fn ask_semi_sync(s: &mut session::Session, status: &StatusCell) -> Result<(), StreamEnd> {
    let (active, primary_enabled) = session::enable_semi_sync(s).await?;
    if !active {
        status.note(
            "semi_sync = true, but the primary has no semi-sync variables (plugin not loaded): \
             capturing asynchronously",
        );
    } else if !primary_enabled {
        status.note(
            "semi_sync = true, but semi-sync is off on the primary \
             (rpl_semi_sync_master_enabled, rpl_semi_sync_source_enabled on MySQL 8.0.26+): \
             its commits do not wait for this archive",
        );
    }
    let mut st = status.lock();
    let view = st.semi_sync.get_or_insert_with(Default::default);
    view.active = active;
    view.primary_enabled = primary_enabled;
    Ok(())
}

/// What woke the read loop.
enum Wake {
    /// A packet, a broken connection, or the read timeout.
    Packet(Result<Result<Option<Bytes>, mysql_wire::ConnError>, tokio::time::error::Elapsed>),
    /// The synced end moved while acks are owed.
    Synced,
    /// The poller found the primary read-only (`super::context::Upstream::demoted`).
    Demoted,
    /// A tick while the stream drains a demoted primary.
    Draining,
}

/// A demoted primary's stream, read to the primary's last position before it ends (a
/// switchover: the old primary's file is taken whole as far as it got).
struct Leaving {
    /// The primary's position when the poller saw it read-only (stored name, offset).
    until: Option<(String, u64)>,
    /// When the stream ends even if it did not get there.
    deadline: std::time::Instant,
}

/// How long a demoted primary's stream is read on for its last events, at most.
const DRAIN_MAX: Duration = Duration::from_secs(5);

impl Leaving {
    /// True when the stream at `st` has everything the demoted primary had, or waited
    /// long enough.
    fn done(&self, st: &StreamState) -> bool {
        let at = (binlog::binlog_order(&st.stored(&st.file)), st.offset);
        let reached = self
            .until
            .as_ref()
            .is_none_or(|(f, p)| at >= (binlog::binlog_order(f), *p));
        reached || std::time::Instant::now() >= self.deadline
    }
}

/// Reads events until the stream ends (the error says why) or the source is cancelled
/// (`Ok`): each is framed, CRC-checked, classified and stored in batches. A semi-sync
/// stream's events lose their header first, and the acks they ask for are sent once
/// the synced end covers them (`super::semisync`).
async fn read_events(
    a: &Attempt<'_>,
    s: &mut session::Session,
    st: &mut StreamState,
) -> Result<(), StreamEnd> {
    let label = Metrics::label(&a.ctx.source.name);
    let metrics = &a.ctx.shared.metrics;
    let received_bytes = metrics.received_bytes.get_or_create(&label).clone();
    let received_events = metrics.received_events.get_or_create(&label).clone();
    let crc_failures = metrics.crc_failures.get_or_create(&label).clone();
    let read_timeout = a.ctx.shared.capture.heartbeat_period * 3 + Duration::from_secs(5);
    let mut batch = Batch {
        events: Vec::new(),
        bytes: 0,
    };
    // Where a FORMAT_DESCRIPTION announcing no checksums arrived, until the next event
    // showed it carries none.
    let mut off_fde_at: Option<u64> = None;
    let mut acks = super::semisync::Acks::new(a.wtx);
    let demoted = lock(&a.ctx.upstream).demoted.clone();
    let mut leaving: Option<Leaving> = None;
    let demoted_end =
        || StreamEnd::NotPrimary("the primary became read-only (a switchover?)".into());
    loop {
        if leaving.as_ref().is_some_and(|l| l.done(st)) {
            batch.flush(a.wtx).await?;
            return Err(demoted_end());
        }
        let wake = tokio::select! {
            _ = a.ctx.cancel.cancelled() => return Ok(()),
            _ = demoted.notified(), if leaving.is_none() => Wake::Demoted,
            _ = tokio::time::sleep(Duration::from_millis(100)), if leaving.is_some() => Wake::Draining,
            _ = a.writer_failed.cancelled() => return Err(StreamEnd::WriterFailed(None)),
            _ = acks.synced_moved(), if acks.pending() => Wake::Synced,
            r = tokio::time::timeout(read_timeout, s.conn.read_binlog_packet()) => Wake::Packet(r),
        };
        let pkt = match wake {
            Wake::Demoted => {
                // Read on to the position the poller saw with it read-only.
                leaving = Some(Leaving {
                    until: lock(a.primary).current.clone(),
                    deadline: std::time::Instant::now() + DRAIN_MAX,
                });
                continue;
            }
            Wake::Draining => continue,
            Wake::Synced => {
                acks.send_covered(s, &a.ctx.status, metrics, &a.ctx.source.name)
                    .await?;
                continue;
            }
            Wake::Packet(p) => p,
        };
        let (want_ack, ev) = packet_event(pkt, read_timeout, s.semi_sync, st)?;
        let (header, alg) = match check_arrival(st, &ev) {
            Ok(x) => x,
            Err(e) => {
                if matches!(e, StreamEnd::Crc { .. }) {
                    crc_failures.inc();
                }
                return Err(e);
            }
        };
        received_bytes.inc_by(ev.len() as u64);
        received_events.inc();
        off_fde_at = unannounced_crc(st, off_fde_at, &header, &ev, alg)?;
        let action = classify_event(st, &header, &ev, alg)?;
        observe_if_forking(a, &header, &ev, alg).await?;
        // The event's end in its file (= the primary's: byte-identical), 64-bit: a
        // stored event ends at our offset plus its length; another (the primary flags
        // only real events) at its 32-bit log_pos.
        let owed = want_ack.then(|| {
            let end = match action {
                Action::Store { .. } => st.offset + ev.len() as u64,
                _ => u64::from(header.log_pos),
            };
            (st.stored(&st.file), end)
        });
        store_event(a, st, &mut batch, action, header, ev).await?;
        if let Some((file, pos)) = owed {
            acks.owe(&file, pos);
            batch.flush(a.wtx).await?;
            a.wtx
                .send(WriterMsg::SyncSoon)
                .await
                .map_err(|_| StreamEnd::WriterFailed(None))?;
        } else if batch.bytes >= BATCH_BYTES || !s.conn.has_buffered_packet() {
            batch.flush(a.wtx).await?;
        }
    }
}

/// The arrival side of the file check's FORMAT_DESCRIPTION rule: after an FDE that
/// announces no checksums (`off_fde_at` is where it arrived), an event that carries a
/// valid CRC32 anyway shows the FDE was damaged in transit (a flipped version or
/// algorithm byte): the connection is dropped and the file pulled again from there.
/// Returns the new `off_fde_at`.
fn unannounced_crc(
    st: &StreamState,
    off_fde_at: Option<u64>,
    header: &EventHeader,
    ev: &[u8],
    alg: ChecksumAlg,
) -> Result<Option<u64>, StreamEnd> {
    if header.type_code == event_type::FORMAT_DESCRIPTION {
        return Ok((alg == ChecksumAlg::Off).then_some(st.offset));
    }
    if let Some(at) = off_fde_at {
        if matches!(binlog::stored_and_computed_crc(header, ev), Ok((s, c)) if s == c) {
            return Err(StreamEnd::Transient(format!(
                "the FORMAT_DESCRIPTION of {} (arrived at {at}) announces no checksums, but the \
                 {} event after it carries a valid CRC32: damaged in transit; not stored",
                st.file,
                event_type::name(header.type_code)
            )));
        }
    }
    Ok(None)
}

/// Frames an arriving event and checks its CRC32: its header and checksum algorithm.
fn check_arrival(st: &StreamState, ev: &[u8]) -> Result<(EventHeader, ChecksumAlg), StreamEnd> {
    let header = match EventHeader::parse(ev) {
        Ok(h) if h.event_size as usize == ev.len() => h,
        Ok(h) => {
            return Err(StreamEnd::Transient(format!(
                "event size {} in its header differs from the packet's {} bytes at {}:{}",
                h.event_size,
                ev.len(),
                st.file,
                st.offset
            )))
        }
        Err(e) => {
            return Err(StreamEnd::Transient(format!(
                "bad event header at {}:{}: {e}",
                st.file, st.offset
            )))
        }
    };
    let alg = arrival_alg(&header, ev, st.alg).map_err(|e| {
        StreamEnd::Transient(format!(
            "bad FORMAT_DESCRIPTION: {e} at {}:{}",
            st.file, st.offset
        ))
    })?;
    if let Err(e) = binlog::verify_checksum(ev, alg) {
        return Err(StreamEnd::Crc {
            file: st.file.clone(),
            pos: st.offset,
            message: format!(
                "CRC32 check failed for a {} event at {}:{} ({e}); not stored",
                event_type::name(header.type_code),
                st.file,
                st.offset
            ),
        });
    }
    Ok((header, alg))
}

/// Carries out the classification of one event: skip it, switch files, or add it to the
/// batch (then switch after a real ROTATE).
async fn store_event(
    a: &Attempt<'_>,
    st: &mut StreamState,
    batch: &mut Batch,
    action: Action,
    header: EventHeader,
    ev: Bytes,
) -> Result<(), StreamEnd> {
    match action {
        Action::Skip => Ok(()),
        Action::Switch { file, pos } => {
            let file = st.stored(&file);
            if let Some(e) = going_back(a.store, &file) {
                return Err(e);
            }
            batch.flush(a.wtx).await?;
            open(a.wtx, file, pos).await
        }
        Action::Store { then_switch } => {
            if !st.opened {
                st.opened = true;
                open(a.wtx, st.stored(&st.file), st.offset).await?;
            }
            if header.type_code == event_type::FORMAT_DESCRIPTION && st.offset == 4 {
                record_format(a.primary, &st.stored(&st.file), &header, &ev);
            }
            batch.bytes += ev.len();
            st.offset += ev.len() as u64;
            batch.events.push((header, ev));
            let Some(next) = then_switch else {
                return Ok(());
            };
            let stored = st.stored(&next);
            if let Some(e) = going_back(a.store, &stored) {
                return Err(e);
            }
            batch.flush(a.wtx).await?;
            st.file = next;
            st.offset = 4;
            open(a.wtx, stored, 4).await
        }
    }
}

/// The event a packet of the stream carries, and whether the primary asks for its ack
/// (a semi-sync stream's header taken off); why the stream ended otherwise (the read
/// timeout passed, the connection broke, the primary sent EOF).
fn packet_event(
    pkt: Result<Result<Option<Bytes>, mysql_wire::ConnError>, tokio::time::error::Elapsed>,
    read_timeout: Duration,
    semi_sync: bool,
    st: &StreamState,
) -> Result<(bool, Bytes), StreamEnd> {
    let ev = match pkt {
        Err(_) => {
            return Err(StreamEnd::Transient(format!(
                "no event or heartbeat for {read_timeout:?}: the connection is presumed dead"
            )))
        }
        Ok(Err(e)) => return Err(session::classify(e, "binlog stream").into()),
        Ok(Ok(None)) => {
            return Err(StreamEnd::Transient(
                "the primary ended the binlog stream (EOF)".into(),
            ))
        }
        Ok(Ok(Some(ev))) => ev,
    };
    if !semi_sync {
        return Ok((false, ev));
    }
    mysql_wire::semisync::split_event(ev)
        .map_err(|e| StreamEnd::Transient(format!("semi-sync stream of {}: {e}", st.file)))
}

/// While a new timeline's divergence is undecided (`super::failover`, "Divergence"),
/// hands each MariaDB GTID of the stream to [`super::failover::observe_gtid`].
async fn observe_if_forking(
    a: &Attempt<'_>,
    header: &EventHeader,
    ev: &[u8],
    alg: ChecksumAlg,
) -> Result<(), StreamEnd> {
    let t = header.type_code;
    if (t != event_type::MARIADB_GTID && t != event_type::MARIADB_GTID_LIST)
        || lock(&a.ctx.upstream).fork.is_none()
    {
        return Ok(());
    }
    if t == event_type::MARIADB_GTID_LIST {
        let state = binlog::parse_gtid_list(header, ev, alg).unwrap_or_default();
        super::failover::observe_gtid_list(a.ctx, state);
    } else if let Ok(Some(g)) = binlog::parse_gtid(header, ev, alg) {
        super::failover::observe_gtid(a.ctx, &g.gtid).await?;
    }
    Ok(())
}

/// Keeps what the primary streamed as `file`'s FORMAT_DESCRIPTION for the file check,
/// when the FDE's own CRC32 vouches for it (an FDE without one, or damaged in transit,
/// is not a reference to hold the stored copy against).
fn record_format(
    primary: &std::sync::Mutex<PrimaryView>,
    file: &str,
    header: &EventHeader,
    ev: &[u8],
) {
    let own_crc_ok = matches!(binlog::stored_and_computed_crc(header, ev), Ok((s, c)) if s == c);
    if let Some(f) = FormatDescription::parse(ev)
        .ok()
        .filter(|f| f.checksum_field && own_crc_ok)
    {
        let format = ExpectedFormat {
            checksum_alg: f.checksum_alg,
            server_version: f.server_version,
        };
        lock(primary).record_format(file, format);
    }
}

/// A switch to `file` that is already archived and older than the archive's newest file
/// would overwrite a closed file: the primary went back in its history (RESET MASTER, or
/// another server answering at that address). Stop rather than damage the archive.
///
/// One stat of `file` at each rotation: only when the archive holds it is the directory
/// listed (a listing per rotation made a catch-up over 10,000 small files quadratic).
pub(crate) fn going_back(store: &LocalFiles, file: &str) -> Option<StreamEnd> {
    if !store.path(file).is_file() {
        return None;
    }
    let files = store.list().ok()?;
    let (last, _) = files.last()?;
    (binlog::binlog_order(file) < binlog::binlog_order(last)
        && files.iter().any(|(n, _)| n == file))
    .then(|| {
        StreamEnd::Definite(format!(
            "the primary moved to {file}, which is already archived and older than {last}: \
                 was RESET MASTER run, or is another server answering at this address? \
                 Capture stopped so the archive is not overwritten"
        ))
    })
}
