//! Capture of one source: the fake replica's stream loop and the writer thread.
//!
//! ```text
//!  primary --COM_BINLOG_DUMP--> reader task --bounded channel--> writer thread --> file
//!            (frame, CRC32 check,           (batches of events)   (append, fdatasync
//!             drop artificial events)                              every fsync_interval,
//!                                                                  control file, index)
//! ```
//!
//! # What is stored
//!
//! Every event the primary has in its file, verbatim. Events the primary makes up for the
//! stream are recognised and dropped: heartbeats (27, 41), any event flagged
//! LOG_EVENT_ARTIFICIAL_F (the ROTATE at the start of a dump and at file switches, the
//! fake GTID_LIST), a ROTATE or GTID_LIST with `log_pos` 0, and the FORMAT_DESCRIPTION the
//! primary re-sends when a dump starts past position 4. Stored events must be contiguous:
//! an event whose non-zero `log_pos` differs from its end offset in our file means the
//! primary skipped bytes, and capture stops with that reason rather than store a file
//! that differs from the primary's.
//!
//! # Resumption
//!
//! The outer loop reconnects with capped exponential backoff after transient errors, and
//! always from the writer's position after it has drained and synced, never from what
//! was merely received. Definite errors (ERROR 1236, access denied, unusable
//! binlog settings, disk errors) stop the source with the reason in the status and the
//! catalog; `POST /v1/sources/{name}/restart` starts it again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use catalog::{Catalog, FileProgress};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{CaptureConfig, Source, StartAt};
use crate::event::{
    self, event_type, ChecksumAlg, EventHeader, FormatDescription, Gtid, TxnRecord, TxnTracker,
    HEADER_LEN,
};
use crate::index::Index;
use crate::primary::{self, SessionError};
use crate::status::{CaptureState, Metrics, StatusCell};
use crate::store::{self, ActiveFile, Control, SourceStore};

/// Commands to a running source (from the API).
#[derive(Debug)]
pub enum SourceCommand {
    /// Start again after a definite error. With `accept_gap`, capture continues from the
    /// primary's oldest binlog even though files between the archive's end and it are
    /// gone (the gap is recorded in the catalog).
    Restart {
        /// Continue past a gap.
        accept_gap: bool,
    },
}

/// Everything a source task shares with the rest of the process.
#[derive(Clone)]
pub struct Shared {
    /// Catalog.
    pub catalog: Arc<Catalog>,
    /// Transaction index.
    pub index: Arc<Index>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Capture tuning.
    pub capture: CaptureConfig,
    /// Archive root.
    pub data_dir: std::path::PathBuf,
}

/// Latest view of the primary's binlogs (from the poller), shared with the checker.
#[derive(Debug, Clone, Default)]
pub struct PrimaryView {
    /// SHOW BINARY LOGS.
    pub binlogs: Vec<(String, u64)>,
    /// SHOW MASTER STATUS.
    pub current: Option<(String, u64)>,
    /// When it was read.
    pub at: Option<Instant>,
}

/// Messages from the reader to the writer thread.
enum WriterMsg {
    /// Switch to `file` at `pos` (closing the current file if it is another).
    Open { file: String, pos: u64 },
    /// Events for the current file, in order.
    Events(Vec<(EventHeader, Bytes)>),
    /// Flush and fsync; reply with the durable position.
    Sync {
        reply: oneshot::Sender<Result<Option<(String, u64)>, String>>,
    },
}

/// What the writer tells the async side.
#[derive(Debug)]
pub enum WriterNote {
    /// The durable position moved.
    Durable {
        /// File.
        file: String,
        /// Durable length.
        len: u64,
        /// Progress of the file so far.
        progress: FileProgress,
    },
    /// A file was closed (the stream moved to the next file): it is REPORTED.
    Closed(FileProgress),
    /// The writer failed (disk error): definite for the source.
    Failed(String),
}

/// Per-file progress kept by the writer.
#[derive(Debug, Clone, Default)]
struct Progress {
    first_time: Option<u32>,
    last_time: Option<u32>,
    first_gtid: Option<Gtid>,
    last_gtid: Option<Gtid>,
}

impl Progress {
    fn to_file(&self, name: &str, size: u64) -> FileProgress {
        FileProgress {
            name: name.to_owned(),
            size,
            first_event_time: self.first_time.map(i64::from),
            last_event_time: self.last_time.map(i64::from),
            first_gtid: self.first_gtid.as_ref().map(|g| g.to_string()),
            last_gtid: self.last_gtid.as_ref().map(|g| g.to_string()),
        }
    }
}

struct Writer {
    source: String,
    store: Arc<SourceStore>,
    index: Arc<Index>,
    notes: mpsc::UnboundedSender<WriterNote>,
    active: Option<ActiveFile>,
    fde: Option<FormatDescription>,
    tracker: TxnTracker,
    pending: Vec<TxnRecord>,
    progress: Progress,
    /// Type of the last event appended to the active file.
    last_type: Option<u8>,
    /// Set while closing a file: the control file is flushed too.
    closing: bool,
    /// The syncer thread's queue.
    syncer: std::sync::mpsc::Sender<(SyncJob, SyncReply)>,
    /// Result of the sync in flight.
    inflight: Option<std::sync::mpsc::Receiver<Result<(String, u64), String>>>,
}

/// Where the syncer answers: the file and the length now durable, or the error.
type SyncReply = std::sync::mpsc::Sender<Result<(String, u64), String>>;

/// One sync for the syncer thread.
struct SyncJob {
    ticket: crate::store::SyncTicket,
    name: String,
    records: Vec<TxnRecord>,
    upto: u64,
    progress: FileProgress,
    flush_control: bool,
}

/// The syncer thread: makes appended data durable (fdatasync), then records the durable
/// length (control file), then indexes the transactions now durable, then tells the
/// async side, in submission order. A failed fdatasync is final (fsyncgate: the page
/// cache may have dropped the dirty pages), reported to the writer and the async side.
struct Syncer {
    source: String,
    store: Arc<SourceStore>,
    index: Arc<Index>,
    metrics: Arc<Metrics>,
    notes: mpsc::UnboundedSender<WriterNote>,
    next_ordinal: u64,
    /// Set after a failed index write: no later batch may move the index past it.
    index_broken: bool,
}

impl Syncer {
    fn run(mut self, jobs: std::sync::mpsc::Receiver<(SyncJob, SyncReply)>) {
        let fsyncs = self
            .metrics
            .fsyncs
            .get_or_create(&Metrics::label(&self.source))
            .clone();
        for (job, reply) in jobs {
            let r = self.one(job, &fsyncs);
            let failed = r.is_err();
            if let Err(e) = &r {
                let _ = self.notes.send(WriterNote::Failed(e.clone()));
            }
            let _ = reply.send(r);
            if failed {
                return;
            }
        }
    }

    fn one(
        &mut self,
        job: SyncJob,
        fsyncs: &prometheus_client::metrics::counter::Counter,
    ) -> Result<(String, u64), String> {
        let t = &job.ticket;
        t.file
            .sync_data()
            .map_err(|e| format!("fdatasync {}: {e}", job.name))?;
        if t.new_entry {
            store::fsync_dir(self.store.dir())
                .map_err(|e| format!("fsync the directory of {}: {e}", job.name))?;
        }
        fsyncs.inc();
        self.store
            .write_control(
                &Control {
                    file: job.name.clone(),
                    durable_len: t.len,
                },
                job.flush_control,
            )
            .map_err(|e| format!("write the control file: {e}"))?;
        if !self.index_broken {
            match self.index.commit(
                &self.source,
                &job.name,
                &job.records,
                job.upto,
                self.next_ordinal,
            ) {
                Ok(pos) => self.next_ordinal = pos.next_ordinal,
                Err(e) => {
                    // Stop indexing for this process: the index position stays where the
                    // last good batch left it, and catch_up fills the rest on restart.
                    self.index_broken = true;
                    warn!(source = %self.source, error = %e, "index write failed; indexing stops until restart, which re-indexes from the files")
                }
            }
        }
        let _ = self.notes.send(WriterNote::Durable {
            file: job.name.clone(),
            len: t.len,
            progress: job.progress,
        });
        Ok((job.name, t.len))
    }
}

impl Writer {
    fn open(&mut self, file: &str, pos: u64) -> std::io::Result<()> {
        if let Some(a) = &self.active {
            if a.name == file && a.len == pos {
                return Ok(());
            }
        }
        self.close()?;
        let a = ActiveFile::open(&self.store, file, pos)?;
        self.fde = if pos > 4 {
            crate::index::read_fde(&self.store.path(file), file)
                .ok()
                .flatten()
        } else {
            None
        };
        self.tracker = TxnTracker::new();
        self.pending.clear();
        self.progress = Progress::default();
        self.last_type = None;
        if pos > 4 {
            // Continuing a file after a restart: the index was brought up to `pos` by
            // catch_up before streaming started; learn the last event's type (whether
            // the file is already closed by ROTATE/STOP) from the file itself.
            self.last_type = crate::checker::valid_prefix(&self.store.path(file), 4)
                .ok()
                .filter(|v| v.len == pos)
                .and_then(|v| v.last_event_type);
            self.replay_open_transaction(file, pos);
        }
        self.active = Some(a);
        Ok(())
    }

    /// After a restart mid-file, the index stops at the start of the transaction that was
    /// open at `pos` (a transaction boundary); feed the events between there and `pos` to
    /// the tracker so that transaction is indexed once it completes.
    fn replay_open_transaction(&mut self, file: &str, pos: u64) {
        use std::io::{Read, Seek};
        let Some(fde) = self.fde.clone() else { return };
        let Ok(Some(ipos)) = self.index.position(&self.source) else {
            return;
        };
        if ipos.file != file || ipos.offset >= pos || ipos.offset < 4 {
            return;
        }
        let Ok(mut f) = std::fs::File::open(self.store.path(file)) else {
            return;
        };
        if f.seek(std::io::SeekFrom::Start(ipos.offset)).is_err() {
            return;
        }
        let r = std::io::BufReader::new(f.take(pos - ipos.offset));
        let mut reader = crate::event::EventReader::new_at(r, ipos.offset);
        while let Some(Ok((off, h, ev))) = reader.next_event() {
            // Transactions completed before `pos` are already indexed.
            let _ = self.tracker.observe(off, &h, ev, &fde);
        }
    }

    fn close(&mut self) -> std::io::Result<()> {
        if self.active.is_some() {
            self.closing = true;
            let r = self.sync();
            self.closing = false;
            r?;
        }
        let terminal = matches!(self.last_type, Some(event_type::ROTATE | event_type::STOP));
        if let Some(a) = self.active.as_mut() {
            if !terminal && a.len > 4 {
                // The primary moved on without a ROTATE or STOP: it crashed with this file
                // open, and its copy keeps the in-use flag.
                a.mark_in_use(&self.store)?;
            }
        }
        self.last_type = None;
        if let Some(a) = self.active.take() {
            let p = self.progress.to_file(&a.name, a.len);
            let _ = self.notes.send(WriterNote::Closed(p));
        }
        Ok(())
    }

    fn append(&mut self, header: &EventHeader, ev: &[u8]) -> std::io::Result<()> {
        let Some(a) = self.active.as_mut() else {
            return Err(std::io::Error::other("event before any file was opened"));
        };
        let offset = a.len;
        a.append(ev)?;
        self.last_type = Some(header.type_code);
        if header.type_code == event_type::FORMAT_DESCRIPTION && offset == 4 {
            self.fde = FormatDescription::parse(ev).ok();
        }
        let p = &mut self.progress;
        if header.timestamp != 0 {
            p.first_time.get_or_insert(header.timestamp);
            p.last_time = Some(header.timestamp);
        }
        if let Some(fde) = &self.fde {
            if let Ok(Some(rec)) = self.tracker.observe(offset, header, ev, fde) {
                if let Some(g) = &rec.gtid {
                    if p.first_gtid.is_none() {
                        p.first_gtid = Some(g.clone());
                    }
                    p.last_gtid = Some(g.clone());
                }
                self.pending.push(rec);
            }
        }
        Ok(())
    }

    fn dirty(&self) -> bool {
        self.active.as_ref().is_some_and(|a| a.dirty())
    }

    /// Collects the result of the sync in flight, if any: `wait` blocks for it. Returns
    /// false when one is still running (and `wait` is false).
    fn collect_sync(&mut self, wait: bool) -> std::io::Result<bool> {
        let Some(rx) = &self.inflight else {
            return Ok(true);
        };
        let r = if wait {
            rx.recv().map_err(|_| "the syncer thread died".to_string())
        } else {
            match rx.try_recv() {
                Ok(r) => Ok(r),
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(false),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    Err("the syncer thread died".to_string())
                }
            }
        };
        self.inflight = None;
        match r.and_then(|x| x) {
            Ok((name, len)) => {
                if let Some(a) = self.active.as_mut() {
                    if a.name == name {
                        a.mark_durable(len);
                    }
                }
                Ok(true)
            }
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Hands everything appended so far to the syncer thread (fdatasync, then the control
    /// file, then the index, then the note to the async side), so appends go on while the
    /// disk works. With `wait`, blocks until it is durable. Without, does nothing while a
    /// previous sync is still running. Returns whether the data is now submitted.
    fn request_sync(&mut self, wait: bool) -> std::io::Result<bool> {
        if !self.collect_sync(wait)? {
            return Ok(false);
        }
        let Some(a) = self.active.as_mut() else {
            return Ok(true);
        };
        if !a.dirty() {
            return Ok(true);
        }
        let ticket = a.prepare_sync()?;
        let job = SyncJob {
            upto: self.tracker.open_txn_start().unwrap_or(ticket.len),
            name: a.name.clone(),
            progress: self.progress.to_file(&a.name, ticket.len),
            ticket,
            records: std::mem::take(&mut self.pending),
            flush_control: self.closing,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        self.syncer
            .send((job, tx))
            .map_err(|_| std::io::Error::other("the syncer thread died"))?;
        self.inflight = Some(rx);
        if wait {
            self.collect_sync(true)?;
        }
        Ok(true)
    }

    /// Blocking sync of everything appended.
    fn sync(&mut self) -> std::io::Result<()> {
        self.request_sync(true).map(|_| ())
    }

    fn position(&self) -> Option<(String, u64)> {
        self.active.as_ref().map(|a| (a.name.clone(), a.durable))
    }

    fn handle(&mut self, msg: WriterMsg) -> std::io::Result<()> {
        match msg {
            WriterMsg::Open { file, pos } => self.open(&file, pos),
            WriterMsg::Events(evs) => {
                for (h, ev) in evs {
                    self.append(&h, &ev)?;
                }
                Ok(())
            }
            WriterMsg::Sync { reply } => {
                let r = self
                    .sync()
                    .map(|_| self.position())
                    .map_err(|e| e.to_string());
                let failed = r.is_err();
                let _ = reply.send(r);
                if failed {
                    return Err(std::io::Error::other("fsync failed"));
                }
                Ok(())
            }
        }
    }

    /// The writer thread's loop. fsync policy: at most `interval` after the first
    /// unsynced byte while data flows, and at once when no message has arrived for
    /// [`IDLE_GRACE`] (the stream caught up or paused). An I/O error is final: after a
    /// failed fsync the page cache state is unknown, so the source stops (a restart
    /// recovers from the disk).
    fn run(
        mut self,
        rt: tokio::runtime::Handle,
        mut rx: mpsc::Receiver<WriterMsg>,
        interval: Duration,
    ) {
        let mut first_dirty: Option<Instant> = None;
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => Some(Some(m)),
                Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
                Err(mpsc::error::TryRecvError::Empty) => {
                    let wait = match first_dirty {
                        Some(t) => interval
                            .saturating_sub(t.elapsed())
                            .min(IDLE_GRACE)
                            .max(Duration::from_millis(1)),
                        None if self.inflight.is_some() => Duration::from_millis(1),
                        None => Duration::from_secs(3600),
                    };
                    rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await })
                        .ok()
                }
            };
            let res = match msg {
                Some(Some(msg)) => self.handle(msg).and_then(|_| {
                    if !self.dirty() {
                        first_dirty = None;
                        return self.collect_sync(false).map(|_| ());
                    }
                    let t = *first_dirty.get_or_insert_with(Instant::now);
                    if t.elapsed() >= interval && self.request_sync(false)? {
                        first_dirty = None;
                    }
                    Ok(())
                }),
                Some(None) => {
                    self.closing = true;
                    if let Err(e) = self.sync() {
                        let _ = self
                            .notes
                            .send(WriterNote::Failed(format!("final fsync: {e}")));
                    }
                    return;
                }
                None => {
                    // Idle (or the interval passed): sync now if no sync is running.
                    self.request_sync(false).map(|submitted| {
                        if submitted {
                            first_dirty = None;
                        }
                    })
                }
            };
            if let Err(e) = res {
                let _ = self.notes.send(WriterNote::Failed(format!(
                    "writing {}: {e}",
                    self.active.as_ref().map(|a| a.name.as_str()).unwrap_or("?")
                )));
                return;
            }
        }
    }
}

/// How long the writer waits for more data before it treats the stream as idle and
/// syncs at once.
const IDLE_GRACE: Duration = Duration::from_millis(2);

/// Why one streaming attempt ended.
pub(crate) enum StreamEnd {
    Transient(String),
    Definite(String),
    /// CRC failure at a position (counted to turn repeated ones definite).
    Crc(String, (String, u64)),
    Cancelled,
}

impl StreamEnd {
    /// The reason, for errors reported elsewhere (re-pull).
    pub(crate) fn message(self) -> String {
        match self {
            StreamEnd::Transient(m) | StreamEnd::Definite(m) | StreamEnd::Crc(m, _) => m,
            StreamEnd::Cancelled => "cancelled".into(),
        }
    }
}

/// The checksum algorithm an arriving event is verified with: a FORMAT_DESCRIPTION
/// carries its own; every other event follows the last FDE (or, before any, what was
/// declared with `@master_binlog_checksum`).
pub(crate) fn arrival_alg(
    header: &EventHeader,
    ev: &[u8],
    current: ChecksumAlg,
) -> Result<ChecksumAlg, String> {
    if header.type_code == event_type::FORMAT_DESCRIPTION {
        FormatDescription::parse(ev)
            .map(|f| f.checksum_alg)
            .map_err(|e| format!("bad FORMAT_DESCRIPTION: {e}"))
    } else {
        Ok(current)
    }
}

impl From<SessionError> for StreamEnd {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Transient(m) => StreamEnd::Transient(m),
            SessionError::Definite(m) => StreamEnd::Definite(m),
        }
    }
}

/// A source's running capture: handles for the API.
pub struct SourceRuntime {
    /// Source name.
    pub name: String,
    /// Live status.
    pub status: StatusCell,
    /// Commands (restart).
    pub commands: mpsc::Sender<SourceCommand>,
    /// Files to check now (even SUCC ones): re-verified, re-pulled if bad.
    pub checks: mpsc::Sender<String>,
    /// The primary's latest binlog list.
    pub primary: Arc<std::sync::Mutex<PrimaryView>>,
}

/// Starts the tasks of one source; returns the runtime handle and the supervised task
/// (which ends only on cancellation, or with an error when the store cannot be opened).
pub fn spawn_source(
    shared: Shared,
    src: Source,
    cancel: CancellationToken,
) -> (SourceRuntime, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let status = StatusCell::new(crate::status::SourceStatus::new(
        &src.name,
        &src.url.redacted(),
    ));
    let (tx, rx) = mpsc::channel(16);
    let (check_tx, check_rx) = mpsc::channel(64);
    let primary = Arc::new(std::sync::Mutex::new(PrimaryView::default()));
    let rt = SourceRuntime {
        name: src.name.clone(),
        status: status.clone(),
        commands: tx,
        checks: check_tx,
        primary: primary.clone(),
    };
    let name = src.name.clone();
    let task = tokio::spawn(async move {
        let catalog = shared.catalog.clone();
        let r = run_source(shared, src, status.clone(), rx, check_rx, primary, cancel).await;
        if let Err(e) = &r {
            let msg = format!("{e:#}");
            {
                let mut s = status.lock();
                s.state = CaptureState::Failed;
                s.last_error = Some(msg.clone());
            }
            let _ = catalog.set_source_state(&name, "failed", Some(&msg)).await;
        }
        r
    });
    (rt, task)
}

async fn run_source(
    shared: Shared,
    src: Source,
    status: StatusCell,
    mut commands: mpsc::Receiver<SourceCommand>,
    check_rx: mpsc::Receiver<String>,
    primary_view: Arc<std::sync::Mutex<PrimaryView>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let name = src.name.clone();
    shared
        .catalog
        .upsert_source(&name, &src.url.redacted())
        .await
        .context("record the source in the catalog")?;
    shared
        .catalog
        .set_source_state(&name, "starting", None)
        .await?;

    // 1. Store recovery and index catch-up (blocking I/O).
    let data_dir = shared.data_dir.clone();
    let n2 = name.clone();
    let (store, mut resume, note) =
        tokio::task::spawn_blocking(move || SourceStore::open(&data_dir, &n2))
            .await?
            .with_context(|| format!("open the store of source {name}"))?;
    if let Some(n) = note {
        info!(source = %name, "{n}");
        status.note(format!("recovery: {n}"));
    }
    let store = Arc::new(store);
    let (end_file, end_len) = match &resume {
        store::Resume::Empty => (None, 0),
        store::Resume::At { file, pos } => (Some(file.clone()), *pos),
        store::Resume::Next { closed, .. } => {
            let len = std::fs::metadata(store.path(closed))
                .map(|m| m.len())
                .unwrap_or(0);
            (Some(closed.clone()), len)
        }
    };
    let mut next_ordinal = 0;
    if end_file.is_none() {
        // Nothing archived: entries left from an earlier archive of this source name
        // would collide with the new ordinals.
        let (idx, n3) = (shared.index.clone(), name.clone());
        tokio::task::spawn_blocking(move || idx.clear(&n3))
            .await?
            .context("clear the index of an empty archive")?;
    }
    if let Some(f) = &end_file {
        let (idx, st, n3, f2) = (shared.index.clone(), store.clone(), name.clone(), f.clone());
        let (pos, added) =
            tokio::task::spawn_blocking(move || idx.catch_up(&n3, &st, &f2, end_len))
                .await?
                .context("bring the index up to date")?;
        if added > 0 {
            info!(source = %name, added, "re-indexed transactions from the stored files");
        }
        next_ordinal = pos.map(|p| p.next_ordinal).unwrap_or(0);
        status.lock().durable_file = Some(f.clone());
        status.lock().durable_pos = Some(end_len);
    }
    if let Ok(Some(last)) = shared.index.last(&name) {
        status.lock().last_gtid = last.gtid;
    }
    reconcile_catalog(&shared.catalog, &name, &store, &resume).await?;
    if !src.capture {
        status.lock().state = CaptureState::Stopped;
        status.note("archive only (capture = false): nothing connects to the primary");
        shared
            .catalog
            .set_source_state(&name, "archive-only", None)
            .await?;
        cancel.cancelled().await;
        return Ok(());
    }

    // 2. The writer thread and the note handler.
    let (wtx, wrx) = mpsc::channel::<WriterMsg>(256);
    let (ntx, mut nrx) = mpsc::unbounded_channel::<WriterNote>();
    let (sync_tx, sync_rx) = std::sync::mpsc::channel();
    let syncer = Syncer {
        source: name.clone(),
        store: store.clone(),
        index: shared.index.clone(),
        metrics: shared.metrics.clone(),
        notes: ntx.clone(),
        next_ordinal,
        index_broken: false,
    };
    let syncer_thread = std::thread::Builder::new()
        .name(format!("syncer-{name}"))
        .spawn(move || syncer.run(sync_rx))
        .context("start the syncer thread")?;
    let writer = Writer {
        source: name.clone(),
        store: store.clone(),
        index: shared.index.clone(),
        notes: ntx,
        active: None,
        fde: None,
        tracker: TxnTracker::new(),
        pending: Vec::new(),
        progress: Progress::default(),
        last_type: None,
        closing: false,
        syncer: sync_tx,
        inflight: None,
    };
    let handle = tokio::runtime::Handle::current();
    let interval = shared.capture.fsync_interval;
    let writer_thread = std::thread::Builder::new()
        .name(format!("writer-{name}"))
        .spawn(move || writer.run(handle, wrx, interval))
        .context("start the writer thread")?;

    let checker_wake = Arc::new(Notify::new());
    let writer_failed = CancellationToken::new();
    {
        let (catalog, status, wake, name, failed) = (
            shared.catalog.clone(),
            status.clone(),
            checker_wake.clone(),
            name.clone(),
            writer_failed.clone(),
        );
        tokio::spawn(async move {
            // Catalog rows of the active file: written at once for a new file, then at
            // most once a second (the control file is the durable record; the catalog
            // row is for people and the API).
            let mut recorded_file = String::new();
            let mut pending: Option<FileProgress> = None;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                let n = tokio::select! {
                    n = nrx.recv() => n,
                    _ = tick.tick() => {
                        if let Some(p) = pending.take() {
                            if let Err(e) = catalog.record_active(&name, &p).await {
                                warn!(source = %name, error = %e, "catalog update failed");
                            }
                        }
                        continue;
                    }
                };
                let Some(n) = n else { break };
                match n {
                    WriterNote::Durable {
                        file,
                        len,
                        progress,
                    } => {
                        {
                            let mut s = status.lock();
                            s.durable_file = Some(file.clone());
                            s.durable_pos = Some(len);
                            if progress.last_gtid.is_some() {
                                s.last_gtid = progress.last_gtid.clone();
                            }
                            if let Some(t) = progress.last_event_time {
                                s.last_event_time = u32::try_from(t).ok();
                            }
                        }
                        if file != recorded_file {
                            recorded_file = file;
                            pending = None;
                            if let Err(e) = catalog.record_active(&name, &progress).await {
                                warn!(source = %name, error = %e, "catalog update failed");
                            }
                        } else {
                            pending = Some(progress);
                        }
                    }
                    WriterNote::Closed(p) => {
                        if pending.as_ref().is_some_and(|q| q.name == p.name) {
                            pending = None;
                        }
                        if let Err(e) = catalog.mark_reported(&name, &p).await {
                            warn!(source = %name, error = %e, "catalog update failed");
                        }
                        wake.notify_one();
                    }
                    WriterNote::Failed(m) => {
                        warn!(source = %name, "{m}");
                        status.lock().last_error = Some(m);
                        failed.cancel();
                    }
                }
            }
        });
    }

    // 3. Poller and checker.
    tokio::spawn(crate::checktask::poll_primary(
        shared.clone(),
        src.clone(),
        status.clone(),
        primary_view.clone(),
        cancel.clone(),
    ));
    tokio::spawn(crate::checktask::check_loop(
        shared.clone(),
        src.clone(),
        status.clone(),
        store.clone(),
        primary_view.clone(),
        checker_wake.clone(),
        check_rx,
        cancel.clone(),
    ));
    checker_wake.notify_one();

    // 4. The outer reconnect loop.
    let label = Metrics::label(&name);
    let mut backoff = shared.capture.reconnect_min_backoff;
    let mut crc_strikes: (Option<(String, u64)>, u32) = (None, 0);
    let mut accept_gap = false;
    loop {
        if writer_failed.is_cancelled() {
            writer_gone(&shared, &name, &status, None, &cancel).await;
            break;
        }
        // Where to resume: the writer's durable position once it has drained.
        let (rtx, rrx) = oneshot::channel();
        let answer = match wtx.send(WriterMsg::Sync { reply: rtx }).await {
            Ok(()) => rrx.await.ok(),
            Err(_) => None,
        };
        match answer {
            Some(Ok(Some((file, pos)))) => resume = store::Resume::At { file, pos },
            Some(Ok(None)) => {}
            other => {
                let why = match other {
                    Some(Err(e)) => Some(e),
                    _ => None,
                };
                writer_gone(&shared, &name, &status, why, &cancel).await;
                break;
            }
        }
        if accept_gap {
            resume = store::Resume::Empty;
        }
        let attempt_started = Instant::now();
        let attempt = stream_once(
            &shared,
            &src,
            &status,
            &wtx,
            &store,
            &resume,
            accept_gap,
            &label,
            &cancel,
            &writer_failed,
        )
        .await;
        let end = match attempt {
            StreamEnd::Cancelled => break,
            other => other,
        };
        accept_gap = false;
        if attempt_started.elapsed() >= Duration::from_secs(10) {
            // The connection worked for a while: start the backoff over.
            backoff = shared.capture.reconnect_min_backoff;
        }
        let (msg, definite) = match end {
            StreamEnd::Transient(m) => (m, false),
            StreamEnd::Definite(m) => (m, true),
            StreamEnd::Crc(m, at) => {
                if crc_strikes.0.as_ref() == Some(&at) {
                    crc_strikes.1 += 1;
                } else {
                    crc_strikes = (Some(at.clone()), 1);
                }
                if crc_strikes.1 >= 5 {
                    (
                        format!("{m}; 5 attempts gave the same bad event: the primary's binlog is damaged at {}:{}", at.0, at.1),
                        true,
                    )
                } else {
                    (m, false)
                }
            }
            StreamEnd::Cancelled => break,
        };
        if definite {
            let mut msg = msg;
            if msg.contains("1236") {
                let requested = match &resume {
                    store::Resume::At { file, .. } => Some(file.clone()),
                    store::Resume::Next { next, .. } => Some(next.clone()),
                    store::Resume::Empty => None,
                };
                if let Some(extra) =
                    record_gap(&shared, &src, &store, &name, requested.as_deref(), &msg).await
                {
                    msg = format!("{msg}; {extra}");
                }
            }
            fail(&shared, &name, &status, &msg).await;
            match wait_for_restart(&mut commands, &cancel).await {
                None => break,
                Some(gap) => {
                    accept_gap = gap;
                    backoff = shared.capture.reconnect_min_backoff;
                    status.lock().last_error = None;
                    continue;
                }
            }
        }
        warn!(source = %name, error = %msg, backoff = ?backoff, "capture interrupted; reconnecting");
        {
            let mut s = status.lock();
            s.state = CaptureState::Reconnecting;
            s.last_error = Some(msg.clone());
            s.reconnects += 1;
        }
        shared.metrics.reconnects.get_or_create(&label).inc();
        let _ = shared
            .catalog
            .set_source_state(&name, "reconnecting", Some(&msg))
            .await;
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(backoff) => {}
        }
        if cancel.is_cancelled() {
            break;
        }
        backoff = (backoff * 2).min(shared.capture.reconnect_max_backoff);
    }
    drop(wtx);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = writer_thread.join();
        let _ = syncer_thread.join();
    })
    .await;
    status.lock().state = CaptureState::Stopped;
    let _ = shared
        .catalog
        .set_source_state(&name, "stopped", None)
        .await;
    Ok(())
}

/// The writer thread is gone (an I/O error, or a panic): this source stops here and
/// waits for shut-down; the others go on. The file state after a failed write or fsync
/// is unknown, so only a process restart (with crash recovery) may continue.
async fn writer_gone(
    shared: &Shared,
    name: &str,
    status: &StatusCell,
    why: Option<String>,
    cancel: &CancellationToken,
) {
    let why = why
        .or_else(|| status.lock().last_error.clone())
        .unwrap_or_else(|| "the writer thread stopped".into());
    fail(
        shared,
        name,
        status,
        &format!("{why}: check the disk, then restart binlog-server"),
    )
    .await;
    cancel.cancelled().await;
}

async fn fail(shared: &Shared, name: &str, status: &StatusCell, msg: &str) {
    warn!(source = %name, error = %msg, "capture stopped by a definite error");
    {
        let mut s = status.lock();
        s.state = CaptureState::Failed;
        s.last_error = Some(msg.to_owned());
    }
    let _ = shared
        .catalog
        .set_source_state(name, "failed", Some(msg))
        .await;
}

/// Waits for a restart command; returns `Some(accept_gap)`, or None on cancellation.
async fn wait_for_restart(
    commands: &mut mpsc::Receiver<SourceCommand>,
    cancel: &CancellationToken,
) -> Option<bool> {
    tokio::select! {
    _ = cancel.cancelled() => None,
    cmd = commands.recv() => cmd.map(|SourceCommand::Restart { accept_gap }| accept_gap),    }
}

/// After ERROR 1236: when the binlog capture asked for is no longer on the primary,
/// records the hole (from the archive's last file to the primary's oldest) in the
/// catalog. When the primary still lists it, 1236 meant something else (a position past
/// the primary's end: after a crash with sync_binlog=0 a primary can lose a binlog tail
/// the archive already holds; or an event over max_allowed_packet), and no gap is
/// recorded. Returns an explanation to add to the error.
async fn record_gap(
    shared: &Shared,
    src: &Source,
    store: &SourceStore,
    name: &str,
    requested: Option<&str>,
    msg: &str,
) -> Option<String> {
    let last = store
        .list()
        .ok()
        .and_then(|v| v.last().map(|(n, _)| n.clone()));
    let listed = match primary::connect(src, &shared.capture).await {
        Ok(mut s) => primary::show_binary_logs(&mut s.conn).await.ok(),
        Err(_) => None,
    };
    let Some(listed) = listed else {
        return Some("could not list the primary's binlogs to tell whether this is a gap".into());
    };
    if let Some(req) = requested {
        if listed.iter().any(|(n, _)| n == req) {
            return Some(format!(
                "{req} is still on the primary, so this is no purge and no gap was recorded: \
                 the primary refused the position (is its copy shorter than the archive's, \
                 e.g. after a crash with sync_binlog=0?)"
            ));
        }
    }
    let first = listed.first().map(|(n, _)| n.clone());
    let reason = format!(
        "the primary no longer has the binlogs after {} (its oldest is {}): {msg}",
        last.as_deref().unwrap_or("the start"),
        first.as_deref().unwrap_or("unknown")
    );
    let _ = shared
        .catalog
        .record_gap(name, last.as_deref(), first.as_deref(), &reason)
        .await;
    Some(format!(
        "gap recorded: binlogs between {} and {} are missing from the archive; take a new base \
         backup, then POST /v1/sources/{name}/restart with {{\"accept_gap\": true}}",
        last.as_deref().unwrap_or("the start"),
        first.as_deref().unwrap_or("the primary's oldest")
    ))
}

/// Makes the catalog agree with the files on disk after a restart.
async fn reconcile_catalog(
    catalog: &Catalog,
    name: &str,
    store: &SourceStore,
    resume: &store::Resume,
) -> anyhow::Result<()> {
    let files = store.list()?;
    let active = match resume {
        store::Resume::At { file, .. } => Some(file.as_str()),
        _ => None,
    };
    for (f, size) in &files {
        let row = catalog.get_file(name, f).await?;
        let p = FileProgress {
            name: f.clone(),
            size: *size,
            first_event_time: None,
            last_event_time: None,
            first_gtid: None,
            last_gtid: None,
        };
        if Some(f.as_str()) == active {
            catalog.record_active(name, &p).await?;
        } else if row
            .as_ref()
            .is_none_or(|r| r.state == catalog::FileState::Active)
        {
            catalog.mark_reported(name, &p).await?;
        }
    }
    Ok(())
}

/// Resolves where to start when the archive is empty (or a gap was accepted).
async fn start_point(
    s: &mut primary::Session,
    src: &Source,
    status: &StatusCell,
    accept_gap: bool,
    store: &SourceStore,
) -> Result<(String, u64), StreamEnd> {
    let logs = primary::show_binary_logs(&mut s.conn)
        .await
        .map_err(|e| StreamEnd::from(primary::classify(e, "SHOW BINARY LOGS")))?;
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
                archived_last
                    .as_ref()
                    .is_none_or(|l| store::binlog_order(n) > store::binlog_order(l))
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
        match &src.start {
            StartAt::Earliest => {
                let purged = store::binlog_seq(&first).is_some_and(|n| n > 1);
                status.note(if purged {
                    format!("capture began at {first}, the oldest binlog the primary still had: earlier binlogs had been purged on the primary and are not in the archive")
                } else {
                    format!("capture began at {first}, the primary's first binlog")
                });
                first
            }
            StartAt::Current => {
                let cur = primary::show_master_status(&mut s.conn)
                    .await
                    .map_err(|e| StreamEnd::from(primary::classify(e, "SHOW MASTER STATUS")))?
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

/// One connection's worth of streaming.
#[allow(clippy::too_many_arguments)]
async fn stream_once(
    shared: &Shared,
    src: &Source,
    status: &StatusCell,
    wtx: &mpsc::Sender<WriterMsg>,
    store: &SourceStore,
    resume: &store::Resume,
    accept_gap: bool,
    label: &crate::status::SourceLabel,
    cancel: &CancellationToken,
    writer_failed: &CancellationToken,
) -> StreamEnd {
    let cap = &shared.capture;
    let mut s = tokio::select! {
        _ = cancel.cancelled() => return StreamEnd::Cancelled,
        r = primary::connect(src, cap) => match r { Ok(s) => s, Err(e) => return e.into() },
    };
    {
        let mut st = status.lock();
        st.dialect = Some(s.dialect.name().into());
        st.server_version = Some(s.conn.server_version().to_owned());
    }
    if s.binlog_format == "STATEMENT" {
        status.note("the primary uses binlog_format=STATEMENT: archived and replayable, but non-deterministic statements may replay differently; ROW is recommended");
    }
    let (file, pos) = match resume {
        store::Resume::At { file, pos } => (file.clone(), *pos),
        store::Resume::Next { next, .. } => (next.clone(), 4),
        store::Resume::Empty => match start_point(&mut s, src, status, accept_gap, store).await {
            Ok(x) => x,
            Err(e) => return e,
        },
    };
    if let Err(e) = primary::prepare_dump(&mut s, cap.heartbeat_period).await {
        return e.into();
    }
    if let Err(e) = primary::start_dump(&mut s, src.server_id, &file, pos, true, false).await {
        return e.into();
    }
    info!(source = %src.name, %file, pos, dialect = s.dialect.name(), "streaming");
    {
        let mut st = status.lock();
        st.state = CaptureState::Streaming;
    }
    let _ = shared
        .catalog
        .set_source_state(&src.name, "streaming", None)
        .await;

    let received_bytes = shared.metrics.received_bytes.get_or_create(label).clone();
    let received_events = shared.metrics.received_events.get_or_create(label).clone();
    let crc_failures = shared.metrics.crc_failures.get_or_create(label).clone();
    let read_timeout = cap.heartbeat_period * 3 + Duration::from_secs(5);

    let mut st = StreamState {
        file: file.clone(),
        offset: pos,
        opened: false,
        alg: s.checksum,
    };
    if let store::Resume::At { .. } = resume {
        // The writer owns the file being continued from the start, so that a stream that
        // begins by moving to the next file (the primary stopped or crashed) closes it.
        if wtx
            .send(WriterMsg::Open {
                file: file.clone(),
                pos,
            })
            .await
            .is_err()
        {
            return StreamEnd::Definite("the writer stopped".into());
        }
        st.opened = true;
    }
    let mut batch: Vec<(EventHeader, Bytes)> = Vec::new();
    let mut batch_bytes = 0usize;
    loop {
        let pkt = tokio::select! {
            _ = cancel.cancelled() => return StreamEnd::Cancelled,
            _ = writer_failed.cancelled() => return StreamEnd::Definite("the writer failed".into()),
            r = tokio::time::timeout(read_timeout, s.conn.read_binlog_packet()) => r,
        };
        let ev = match pkt {
            Err(_) => {
                return StreamEnd::Transient(format!(
                    "no event or heartbeat for {read_timeout:?}: the connection is presumed dead"
                ))
            }
            Ok(Err(e)) => return primary::classify(e, "binlog stream").into(),
            Ok(Ok(None)) => {
                return StreamEnd::Transient("the primary ended the binlog stream (EOF)".into())
            }
            Ok(Ok(Some(ev))) => ev,
        };
        let header = match EventHeader::parse(&ev) {
            Ok(h) if h.event_size as usize == ev.len() => h,
            Ok(h) => {
                return StreamEnd::Transient(format!(
                    "event size {} in its header differs from the packet's {} bytes at {}:{}",
                    h.event_size,
                    ev.len(),
                    st.file,
                    st.offset
                ))
            }
            Err(e) => {
                return StreamEnd::Transient(format!(
                    "bad event header at {}:{}: {e}",
                    st.file, st.offset
                ))
            }
        };
        let alg = match arrival_alg(&header, &ev, st.alg) {
            Ok(a) => a,
            Err(e) => return StreamEnd::Transient(format!("{e} at {}:{}", st.file, st.offset)),
        };
        if let Err(e) = event::verify_checksum(&ev, alg) {
            crc_failures.inc();
            return StreamEnd::Crc(
                format!(
                    "CRC32 check failed for a {} event at {}:{} ({e}); not stored",
                    event_type::name(header.type_code),
                    st.file,
                    st.offset
                ),
                (st.file.clone(), st.offset),
            );
        }
        received_bytes.inc_by(ev.len() as u64);
        received_events.inc();
        match classify_event(&mut st, &header, &ev, alg) {
            Ok(Action::Skip) => {}
            Ok(Action::Switch { file, pos }) => {
                if let Some(e) = going_back(store, &file) {
                    return e;
                }
                if !batch.is_empty() {
                    if wtx
                        .send(WriterMsg::Events(std::mem::take(&mut batch)))
                        .await
                        .is_err()
                    {
                        return StreamEnd::Definite("the writer stopped".into());
                    }
                    batch_bytes = 0;
                }
                if wtx.send(WriterMsg::Open { file, pos }).await.is_err() {
                    return StreamEnd::Definite("the writer stopped".into());
                }
            }
            Ok(Action::Store { then_switch }) => {
                if !st.opened {
                    st.opened = true;
                    if wtx
                        .send(WriterMsg::Open {
                            file: st.file.clone(),
                            pos: st.offset,
                        })
                        .await
                        .is_err()
                    {
                        return StreamEnd::Definite("the writer stopped".into());
                    }
                }
                batch_bytes += ev.len();
                st.offset += ev.len() as u64;
                batch.push((header, ev));
                if let Some(next) = then_switch {
                    if let Some(e) = going_back(store, &next) {
                        return e;
                    }
                    if wtx
                        .send(WriterMsg::Events(std::mem::take(&mut batch)))
                        .await
                        .is_err()
                    {
                        return StreamEnd::Definite("the writer stopped".into());
                    }
                    batch_bytes = 0;
                    st.file = next.clone();
                    st.offset = 4;
                    if wtx
                        .send(WriterMsg::Open { file: next, pos: 4 })
                        .await
                        .is_err()
                    {
                        return StreamEnd::Definite("the writer stopped".into());
                    }
                }
            }
            Err(end) => return end,
        }
        if !batch.is_empty() && (batch_bytes >= 256 * 1024 || !s.conn.has_buffered_packet()) {
            if wtx
                .send(WriterMsg::Events(std::mem::take(&mut batch)))
                .await
                .is_err()
            {
                return StreamEnd::Definite("the writer stopped".into());
            }
            batch_bytes = 0;
        }
    }
}

/// A switch to `file` that is already archived and older than the archive's newest file
/// would overwrite a closed file: the primary went back in its history (RESET MASTER, or
/// another server answering at that address). Stop rather than damage the archive.
fn going_back(store: &SourceStore, file: &str) -> Option<StreamEnd> {
    let files = store.list().ok()?;
    let (last, _) = files.last()?;
    (store::binlog_order(file) < store::binlog_order(last) && files.iter().any(|(n, _)| n == file))
        .then(|| {
            StreamEnd::Definite(format!(
                "the primary moved to {file}, which is already archived and older than {last}: \
                 was RESET MASTER run, or is another server answering at this address? \
                 Capture stopped so the archive is not overwritten"
            ))
        })
}

/// The reader's view of where the stream is.
pub(crate) struct StreamState {
    /// File the next stored event belongs to.
    file: String,
    /// Offset in `file` of the next stored event.
    offset: u64,
    /// Whether the writer has been told to open `file`.
    opened: bool,
    /// Checksum algorithm of the current file.
    alg: ChecksumAlg,
}

impl StreamState {
    /// A stream that starts at `file`:`pos`; `alg` is the declared checksum algorithm.
    pub(crate) fn new(file: &str, pos: u64, alg: ChecksumAlg) -> Self {
        StreamState {
            file: file.to_owned(),
            offset: pos,
            opened: false,
            alg,
        }
    }

    /// Offset in the current file of the next stored event.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Checksum algorithm of the current file.
    pub(crate) fn alg(&self) -> ChecksumAlg {
        self.alg
    }

    /// Moves past a stored event of `len` bytes.
    pub(crate) fn advance(&mut self, len: u64) {
        self.offset += len;
    }
}

/// What to do with an arriving event.
pub(crate) enum Action {
    /// Not part of the file (heartbeat, artificial event, re-sent FDE).
    Skip,
    /// The primary moved to another file (artificial ROTATE).
    Switch { file: String, pos: u64 },
    /// Store the event; after it, switch to the named file (a real ROTATE).
    Store { then_switch: Option<String> },
}

/// Decides whether an arriving (CRC-checked) event is stored, skipped, or moves the
/// stream to another file; checks contiguity and file names. Shared by capture and
/// re-pull.
pub(crate) fn classify_event(
    st: &mut StreamState,
    h: &EventHeader,
    ev: &[u8],
    alg: ChecksumAlg,
) -> Result<Action, StreamEnd> {
    let t = h.type_code;
    if t == event_type::HEARTBEAT || t == event_type::HEARTBEAT_V2 {
        return Ok(Action::Skip);
    }
    let artificial = h.flags & event::LOG_EVENT_ARTIFICIAL_F != 0;
    if t == event_type::ROTATE && (artificial || h.log_pos == 0) {
        // A CRC-valid ROTATE that does not parse will not parse after a reconnect either.
        let r = event::parse_rotate(ev, alg).map_err(|e| {
            StreamEnd::Definite(format!(
                "the primary sent an unusable artificial ROTATE at {}:{}: {e}",
                st.file, st.offset
            ))
        })?;
        if !store::is_safe_file_name(&r.next_file) {
            return Err(StreamEnd::Definite(format!(
                "the primary announced an unusable binlog file name {:?}",
                r.next_file
            )));
        }
        if r.next_file == st.file && r.position == st.offset {
            return Ok(Action::Skip);
        }
        if r.next_file == st.file {
            return Err(StreamEnd::Transient(format!(
                "the primary resumed {} at {} but the archive is at {}",
                r.next_file, r.position, st.offset
            )));
        }
        st.file = r.next_file.clone();
        st.offset = r.position;
        st.opened = true;
        return Ok(Action::Switch {
            file: r.next_file,
            pos: r.position,
        });
    }
    if t == event_type::FORMAT_DESCRIPTION {
        if let Ok(f) = FormatDescription::parse(ev) {
            st.alg = f.checksum_alg;
        }
        if st.offset != 4 || h.log_pos == 0 || artificial {
            return Ok(Action::Skip);
        }
    }
    if t == event_type::MARIADB_GTID_LIST && (artificial || h.log_pos == 0) {
        return Ok(Action::Skip);
    }
    if artificial {
        return Ok(Action::Skip);
    }
    let end = st.offset + ev.len() as u64;
    if h.log_pos != 0 && u64::from(h.log_pos) != end && end <= u64::from(u32::MAX) {
        return Err(StreamEnd::Definite(format!(
            "the stream is not contiguous: a {} event of {} bytes at {}:{} says it ends at {}; the primary skipped data (for MariaDB, is @mariadb_slave_capability honoured?)",
            event_type::name(t),
            ev.len(),
            st.file,
            st.offset,
            h.log_pos
        )));
    }
    if ev.len() < HEADER_LEN {
        return Err(StreamEnd::Transient("short event".into()));
    }
    if t == event_type::ROTATE {
        let r = event::parse_rotate(ev, alg).map_err(|e| {
            StreamEnd::Definite(format!(
                "the primary sent an unusable ROTATE at {}:{}: {e}",
                st.file, st.offset
            ))
        })?;
        if !store::is_safe_file_name(&r.next_file) {
            return Err(StreamEnd::Definite(format!(
                "the primary announced an unusable binlog file name {:?}",
                r.next_file
            )));
        }
        return Ok(Action::Store {
            then_switch: Some(r.next_file),
        });
    }
    Ok(Action::Store { then_switch: None })
}

#[cfg(test)]
mod tests {
    //! The stream classification fed with real binlogs written by MySQL 5.x–9.x and
    //! MariaDB servers (`../shared/fixtures/binlogs`), wrapped as a primary would stream
    //! them: the only way to exercise the MySQL dialect's events here, since no MySQL
    //! server can be installed. The stored bytes must equal the file's.
    use super::*;
    use crate::event::{EventReader, BINLOG_MAGIC, LOG_EVENT_BINLOG_IN_USE_F};
    use std::path::PathBuf;

    fn corpus() -> PathBuf {
        std::env::var_os("BINLOG_CORPUS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/binlogs")
            })
    }

    fn files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("corpus directory (set BINLOG_CORPUS_DIR)") {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if !p.to_string_lossy().ends_with(".md") && !p.to_string_lossy().ends_with(".gz")
            {
                out.push(p);
            }
        }
    }

    fn event(type_code: u8, flags: u16, log_pos: u32, body: &[u8], alg: ChecksumAlg) -> Vec<u8> {
        let size = HEADER_LEN + body.len() + if alg == ChecksumAlg::Crc32 { 4 } else { 0 };
        let mut e = Vec::with_capacity(size);
        e.extend_from_slice(&0u32.to_le_bytes());
        e.push(type_code);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&(size as u32).to_le_bytes());
        e.extend_from_slice(&log_pos.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(body);
        if alg == ChecksumAlg::Crc32 {
            let c = crc32fast::hash(&e);
            e.extend_from_slice(&c.to_le_bytes());
        }
        e
    }

    fn fake_rotate(name: &str, pos: u64, alg: ChecksumAlg) -> Vec<u8> {
        let mut body = pos.to_le_bytes().to_vec();
        body.extend_from_slice(name.as_bytes());
        event(
            event_type::ROTATE,
            event::LOG_EVENT_ARTIFICIAL_F,
            0,
            &body,
            alg,
        )
    }

    /// Events of a file: (offset, header, bytes). None if the file is not a clean
    /// single-FDE binlog with contiguous positions (relay logs, damaged files).
    fn clean_events(bytes: &[u8]) -> Option<Vec<(u64, EventHeader, Vec<u8>)>> {
        let mut r = EventReader::new_at_start(bytes).ok()?;
        let mut v = Vec::new();
        let mut fdes = 0;
        let mut alg = ChecksumAlg::Off;
        while let Some(item) = r.next_event() {
            let (off, h, ev) = item.ok()?;
            if h.type_code == event_type::FORMAT_DESCRIPTION {
                fdes += 1;
                alg = FormatDescription::parse(ev).ok()?.checksum_alg;
            }
            event::verify_checksum(ev, alg).ok()?;
            if h.log_pos != 0 && u64::from(h.log_pos) != off + u64::from(h.event_size) {
                return None;
            }
            v.push((off, h, ev.to_vec()));
        }
        (fdes == 1 && v.first().map(|e| e.1.type_code) == Some(event_type::FORMAT_DESCRIPTION))
            .then_some(v)
    }

    /// Runs `stream` through classify_event from `file`:`pos` and returns the bytes
    /// stored (from `pos` on).
    fn store_stream(name: &str, pos: u64, alg: ChecksumAlg, stream: &[Vec<u8>]) -> Vec<u8> {
        let mut st = StreamState {
            file: name.to_owned(),
            offset: pos,
            opened: false,
            alg,
        };
        let mut out = Vec::new();
        for ev in stream {
            let h = EventHeader::parse(ev).unwrap();
            let a = if h.type_code == event_type::FORMAT_DESCRIPTION {
                FormatDescription::parse(ev).unwrap().checksum_alg
            } else {
                st.alg
            };
            event::verify_checksum(ev, a).unwrap();
            match classify_event(&mut st, &h, ev, a) {
                Ok(Action::Skip) => {}
                Ok(Action::Store { .. }) => {
                    st.offset += ev.len() as u64;
                    out.extend_from_slice(ev);
                }
                Ok(Action::Switch { file, .. }) => panic!("unexpected switch to {file}"),
                Err(StreamEnd::Definite(m)) | Err(StreamEnd::Transient(m)) => panic!("{name}: {m}"),
                Err(_) => panic!("{name}: stream error"),
            }
        }
        out
    }

    #[test]
    fn real_binlogs_stream_into_identical_files() {
        let mut all = Vec::new();
        files(&corpus(), &mut all);
        let mut tested = 0;
        let mut mysql8 = 0;
        for path in all {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.len() < 4 || bytes[..4] != BINLOG_MAGIC {
                continue;
            }
            let Some(events) = clean_events(&bytes) else {
                continue;
            };
            let fde = FormatDescription::parse(&events[0].2).unwrap();
            let alg = fde.checksum_alg;
            let name = "binlog.000007";
            // The primary sends the FDE with LOG_EVENT_BINLOG_IN_USE_F cleared.
            let mut sent_fde = events[0].2.clone();
            sent_fde[17] &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
            let mut expected = bytes.clone();
            expected[4 + 17] &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
            if fde.server_version.starts_with("8.") || fde.server_version.starts_with("9.") {
                mysql8 += 1;
            }

            // From position 4: fake ROTATE, FDE, a heartbeat, every event.
            let mut stream = vec![fake_rotate(name, 4, alg), sent_fde.clone()];
            stream.push(event(event_type::HEARTBEAT, 0, 0, name.as_bytes(), alg));
            stream.extend(events[1..].iter().map(|e| e.2.clone()));
            let mut got = BINLOG_MAGIC.to_vec();
            got.extend(store_stream(name, 4, alg, &stream));
            assert_eq!(got, expected, "{}", path.display());

            // From the middle: fake ROTATE at the offset, the re-sent FDE (log_pos 0),
            // then the events from there.
            if events.len() > 2 {
                let k = events.len() / 2;
                let off = events[k].0;
                let mut resent = sent_fde.clone();
                resent[13..17].copy_from_slice(&0u32.to_le_bytes());
                if alg == ChecksumAlg::Crc32 {
                    let n = resent.len() - 4;
                    let c = crc32fast::hash(&resent[..n]);
                    resent[n..].copy_from_slice(&c.to_le_bytes());
                }
                let mut stream = vec![fake_rotate(name, off, alg), resent];
                stream.extend(events[k..].iter().map(|e| e.2.clone()));
                let got = store_stream(name, off, alg, &stream);
                assert_eq!(
                    &got[..],
                    &expected[off as usize..],
                    "{} from {off}",
                    path.display()
                );
            }
            tested += 1;
        }
        assert!(
            tested >= 80,
            "only {tested} corpus files were clean binlogs"
        );
        assert!(mysql8 >= 20, "only {mysql8} MySQL 8/9 files");
    }

    #[test]
    fn archived_files_are_never_reopened() {
        let d = tempfile::tempdir().unwrap();
        let (store, _, _) = SourceStore::open(d.path(), "db").unwrap();
        for n in ["b.000001", "b.000002", "b.index"] {
            std::fs::write(store.path(n), BINLOG_MAGIC).unwrap();
        }
        assert!(going_back(&store, "b.000001").is_some());
        assert!(
            going_back(&store, "b.000002").is_none(),
            "the newest file may continue"
        );
        assert!(going_back(&store, "b.000003").is_none());
        // A copied index file is not a binlog.
        let names: Vec<String> = store.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["b.000001", "b.000002"]);
    }

    #[test]
    fn a_hole_in_the_stream_is_refused() {
        let alg = ChecksumAlg::Crc32;
        let mut st = StreamState {
            file: "b.000001".into(),
            offset: 100,
            opened: true,
            alg,
        };
        // An event claiming to end at 1000 while it would end at 100 + its size.
        let ev = event(event_type::QUERY, 0, 1000, &[0u8; 40], alg);
        let h = EventHeader::parse(&ev).unwrap();
        assert!(matches!(
            classify_event(&mut st, &h, &ev, alg),
            Err(StreamEnd::Definite(m)) if m.contains("not contiguous")
        ));
        // A file name with a slash is never used as a path.
        let ev = fake_rotate("../../etc/passwd", 4, alg);
        let h = EventHeader::parse(&ev).unwrap();
        assert!(matches!(
            classify_event(&mut st, &h, &ev, alg),
            Err(StreamEnd::Definite(_))
        ));
    }
}
