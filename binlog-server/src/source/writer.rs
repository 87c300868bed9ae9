//! The writer and syncer of a source, two lanes on the process's fixed pools
//! ([`super::pool`]): events arrive in batches from the stream task; the writer appends
//! them to the ACTIVE file and closes files at ROTATE; the syncer makes appended bytes
//! durable (fdatasync), then records the durable length in the control file, then
//! indexes the transactions now durable, then tells the async side. The batches on
//! their way to the writer are bounded in bytes ([`WRITER_BUDGET_BYTES`]): the stream
//! waits when the writer is that far behind. A failed write or fdatasync is final for
//! the source (see [`WriterNote::Failed`]).

use std::time::Instant;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use catalog::FileProgress;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::warn;

use binlog::{self, event_type, EventHeader, FormatDescription, Gtid, TxnRecord, TxnTracker};

use archive::index::Index;
use archive::local::{self, ActiveFile, Control, LocalFiles};
use node::status::Metrics;

use super::pool::{Actor, IoPools, Lane, WeakLane};

/// Messages from the reader to the writer.
pub(crate) enum WriterMsg {
    /// Switch to `file` at `pos` (closing the current file if it is another).
    Open { file: String, pos: u64 },
    /// Events for the current file, in order.
    Events(Vec<(EventHeader, Bytes)>),
    /// Flush and fsync; reply with the durable position.
    Sync {
        reply: oneshot::Sender<Result<Option<(String, u64)>, WriterError>>,
    },
    /// A semi-sync primary waits for an ack of what was appended: sync as soon as the
    /// syncer is free instead of after `fsync_interval` (group commit: one fdatasync
    /// covers every ack owed by then). The durable end then reaches the stream through
    /// [`WriterTx::synced`], which sends the ack.
    SyncSoon,
}

/// A failed write, fdatasync or control-file update, with its I/O error. Final for the
/// source: after a failed fsync the page cache state is unknown (fsyncgate), so only a
/// process restart, whose crash recovery trusts the disk alone, may continue.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {source}")]
pub struct WriterError {
    /// What failed ("fdatasync binlog.000007", "write the control file", ...).
    pub what: String,
    /// The I/O error (shared: the same failure goes to the reply and to the notes).
    #[source]
    pub source: Arc<std::io::Error>,
}

impl WriterError {
    fn new(what: impl Into<String>, source: std::io::Error) -> Self {
        WriterError {
            what: what.into(),
            source: Arc::new(source),
        }
    }

    /// The syncer is gone (it panicked, or ended after an earlier error).
    fn syncer_gone() -> Self {
        WriterError::new(
            "the syncer ended",
            std::io::Error::other("channel to the syncer closed"),
        )
    }
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
    Failed(WriterError),
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
    /// Bytes of batches queued to this writer and not appended yet may not pass this
    /// budget (closed when the writer ends, so a waiting sender hears of it).
    budget: Arc<Semaphore>,
    /// The longest bytes stay appended and not synced while data keeps flowing.
    interval: Duration,
    /// Since when unsynced bytes wait.
    first_dirty: Option<Instant>,
    /// When the last batch or file switch arrived.
    last_input: Instant,
    /// An idle tick is on its way ([`Writer::drained`]).
    tick_armed: bool,
    /// A semi-sync ack is owed ([`WriterMsg::SyncSoon`]): the next sync starts as soon
    /// as the syncer is free.
    urgent: bool,
    /// The last batch was small and fresh ([`at_tail`]): the stream reads at the
    /// primary's tail, not a backlog, so each sync starts as soon as the syncer is free
    /// (group commit) instead of after `interval`.
    at_tail: bool,
    /// This writer's own lane, for the idle tick.
    me: WeakLane<Writer>,
    /// The runtime that runs the idle tick's timer.
    rt: tokio::runtime::Handle,
    store: Arc<LocalFiles>,
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
    /// The syncer's lane.
    syncer: Lane<Syncer>,
    /// Result of the sync in flight.
    inflight: Option<std::sync::mpsc::Receiver<Result<(String, u64), WriterError>>>,
}

/// Where the syncer answers: the file and the length now durable, or the error.
type SyncReply = std::sync::mpsc::Sender<Result<(String, u64), WriterError>>;

/// One sync for the syncer thread.
struct SyncJob {
    /// When the oldest byte this sync covers arrived.
    arrived: Instant,
    ticket: archive::local::SyncTicket,
    name: String,
    records: Vec<TxnRecord>,
    upto: u64,
    progress: FileProgress,
    flush_control: bool,
}

/// The syncer: makes appended data durable (fdatasync), then records the durable
/// length (control file), then indexes the transactions now durable, then tells the
/// async side, in submission order, and wakes the writer. A failed fdatasync is final
/// (fsyncgate: the page cache may have dropped the dirty pages), reported to the writer
/// and the async side.
struct Syncer {
    source: String,
    /// The writer, woken after each sync (so it submits what was appended meanwhile).
    writer: WeakLane<Writer>,
    fsyncs: prometheus_client::metrics::counter::Counter,
    /// Arrival-to-durable seconds per sync (`Metrics::durable_wait`).
    durable_wait: prometheus_client::metrics::histogram::Histogram,
    store: Arc<LocalFiles>,
    index: Arc<Index>,
    notes: mpsc::UnboundedSender<WriterNote>,
    /// The synced end, published the moment fdatasync returns ([`WriterTx::synced`]).
    synced: Arc<watch::Sender<Option<SyncedEnd>>>,
    next_ordinal: u64,
    /// Set after a failed index write: no later batch may move the index past it.
    index_broken: bool,
}

/// The end of what the syncer has fdatasynced: file name and length in bytes. Bytes up
/// to it survive a crash (recovery walks forward from the control file over complete,
/// CRC-checked events, so a control file that lags behind loses nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncedEnd {
    /// The file (the primary's name).
    pub file: Arc<str>,
    /// Its fdatasynced length, bytes.
    pub len: u64,
}

/// Messages to the syncer.
enum SyncerInput {
    /// Sync this, answer there.
    Job(Box<SyncJob>, SyncReply),
    /// The writer ended: so does the syncer, after the jobs before this.
    Stop,
}

impl Actor for Syncer {
    type Msg = SyncerInput;

    fn handle(&mut self, msg: SyncerInput) -> bool {
        let SyncerInput::Job(job, reply) = msg else {
            return false;
        };
        let r = self.one(*job);
        let failed = r.is_err();
        if let Err(e) = &r {
            let _ = self.notes.send(WriterNote::Failed(e.clone()));
        }
        let _ = reply.send(r);
        self.writer.send(WriterInput::Synced);
        !failed
    }
}

impl Syncer {
    fn one(&mut self, job: SyncJob) -> Result<(String, u64), WriterError> {
        let t = &job.ticket;
        t.file
            .sync_data()
            .map_err(|e| WriterError::new(format!("fdatasync {}", job.name), e))?;
        if t.new_entry {
            local::fsync_dir(&self.store.dir_of(&job.name))
                .map_err(|e| WriterError::new(format!("fsync the directory of {}", job.name), e))?;
        }
        self.fsyncs.inc();
        self.durable_wait
            .observe(job.arrived.elapsed().as_secs_f64());
        // An ack owed to a semi-sync primary may go now: the bytes are on disk. The
        // control file, the index and the catalog follow (they only speed up recovery
        // or serve readers).
        self.synced.send_replace(Some(SyncedEnd {
            file: job.name.as_str().into(),
            len: t.len,
        }));
        self.store
            .write_control(
                &Control {
                    file: job.name.clone(),
                    durable_len: t.len,
                },
                job.flush_control,
            )
            .map_err(|e| WriterError::new("write the control file", e))?;
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
            archive::index::read_fde(&self.store.path(file), file)
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
            self.last_type = binlog::check::valid_prefix(&self.store.path(file), 4)
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
        let mut reader = binlog::EventReader::new_at(r, ipos.offset);
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
            rx.recv().map_err(|_| WriterError::syncer_gone())
        } else {
            match rx.try_recv() {
                Ok(r) => Ok(r),
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(false),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(WriterError::syncer_gone()),
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
            Err(e) => Err(std::io::Error::new(e.source.kind(), e)),
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
            arrived: self.first_dirty.unwrap_or_else(Instant::now),
            upto: self.tracker.open_txn_start().unwrap_or(ticket.len),
            name: a.name.clone(),
            progress: self.progress.to_file(&a.name, ticket.len),
            ticket,
            records: std::mem::take(&mut self.pending),
            flush_control: self.closing,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        if !self.syncer.send(SyncerInput::Job(Box::new(job), tx)) {
            return Err(std::io::Error::other("the syncer ended"));
        }
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

    fn apply(&mut self, msg: WriterMsg) -> std::io::Result<()> {
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
                    .map_err(|e| WriterError::new("fsync", e));
                let failed = r.is_err();
                let _ = reply.send(r);
                if failed {
                    return Err(std::io::Error::other("fsync failed"));
                }
                Ok(())
            }
            WriterMsg::SyncSoon => {
                self.urgent = true;
                Ok(())
            }
        }
    }

    /// Reports a failed write or sync (final for the source).
    fn fail(&self, e: std::io::Error) {
        let what = format!(
            "writing {}",
            self.active.as_ref().map(|a| a.name.as_str()).unwrap_or("?")
        );
        let _ = self
            .notes
            .send(WriterNote::Failed(WriterError::new(what, e)));
    }

    /// After a batch or file switch: syncs when unsynced bytes have waited `interval`
    /// while data keeps flowing.
    fn after_input(&mut self) -> std::io::Result<()> {
        if !self.dirty() {
            // What an owed ack covers is durable or in the sync in flight.
            self.first_dirty = None;
            self.urgent = false;
            return self.collect_sync(false).map(|_| ());
        }
        let t = *self.first_dirty.get_or_insert_with(Instant::now);
        let due = self.urgent || self.at_tail || t.elapsed() >= self.interval;
        if due && self.request_sync(false)? {
            self.first_dirty = None;
            self.urgent = false;
        }
        Ok(())
    }

    /// The final sync at shut-down (with the control file flushed), then the syncer's
    /// end.
    fn finish(&mut self) {
        self.closing = true;
        if let Err(e) = self.sync() {
            let _ = self
                .notes
                .send(WriterNote::Failed(WriterError::new("final fsync", e)));
        }
        self.syncer.send(SyncerInput::Stop);
    }
}

/// Messages to the writer's lane.
enum WriterInput {
    /// From the stream, with the budget bytes it holds.
    Msg(WriterMsg, usize),
    /// The sync in flight ended (from the syncer).
    Synced,
    /// The idle tick ([`Writer::drained`]).
    Tick,
    /// Shut down: final sync, then answer.
    Close(oneshot::Sender<()>),
}

/// fsync policy: while a backlog streams in, at most `interval` after the first unsynced
/// byte; at the primary's tail ([`at_tail`]) or
/// when a semi-sync ack is owed, as soon as the syncer is free; and at once when nothing
/// has arrived for [`IDLE_GRACE`] (the stream caught up or paused).
/// An I/O error is final: after a failed fsync the page cache state is unknown, so the
/// source stops (a restart recovers from the disk).
impl Actor for Writer {
    type Msg = WriterInput;

    fn handle(&mut self, msg: WriterInput) -> bool {
        let r = match msg {
            WriterInput::Msg(m, bytes) => {
                self.last_input = Instant::now();
                if let WriterMsg::Events(evs) = &m {
                    self.at_tail = at_tail(bytes, evs);
                }
                let r = self.apply(m).and_then(|_| self.after_input());
                self.budget.add_permits(bytes);
                r
            }
            WriterInput::Synced => self.collect_sync(false).and_then(|_| self.after_input()),
            WriterInput::Tick => {
                self.tick_armed = false;
                Ok(())
            }
            WriterInput::Close(done) => {
                self.finish();
                let _ = done.send(());
                return false;
            }
        };
        match r {
            Ok(()) => true,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// Nothing queued: syncs now if nothing arrived for [`IDLE_GRACE`] or the interval
    /// passed, else arms a tick for when the grace ends. While a sync runs, the syncer's
    /// [`WriterInput::Synced`] brings the writer back here.
    fn drained(&mut self) -> bool {
        if !self.dirty() {
            self.first_dirty = None;
            self.urgent = false;
            return true;
        }
        let quiet = self.last_input.elapsed();
        let waited = self
            .first_dirty
            .is_some_and(|t| t.elapsed() >= self.interval);
        if quiet >= IDLE_GRACE || waited || self.urgent || self.at_tail {
            return match self.request_sync(false) {
                Ok(submitted) => {
                    if submitted {
                        self.first_dirty = None;
                        self.urgent = false;
                    }
                    true
                }
                Err(e) => {
                    self.fail(e);
                    false
                }
            };
        }
        if !self.tick_armed {
            self.tick_armed = true;
            let me = self.me.clone();
            let wait = IDLE_GRACE - quiet;
            self.rt.spawn(async move {
                tokio::time::sleep(wait).await;
                me.send(WriterInput::Tick);
            });
        }
        true
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A sender waiting for budget hears that the writer is gone.
        self.budget.close();
    }
}

/// How long the writer waits for more data before it treats the stream as idle and
/// syncs at once.
const IDLE_GRACE: Duration = Duration::from_millis(2);

/// Whether a batch shows a stream at the primary's tail rather than a backlog: smaller
/// than [`TAIL_BATCH_BYTES`] (the reader sends a batch when the connection holds nothing
/// more, or at 256 KiB, `stream.rs`) and with an event written on the primary at most
/// [`TAIL_AGE_SECS`] ago (header timestamps, seconds; a catch-up reads old events in
/// batches the primary's send rate may keep small). Syncing every tail batch at once
/// costs little (the primary's commit rate bounds it) and keeps commit-to-durable within
/// a few ms; syncing a backlog every `fsync_interval` keeps catch-up's CPU per GB down.
/// A clock skewed by more than that between the primary and this node, or a long
/// transaction, only makes its batches wait for `fsync_interval` or a pause again.
/// `bytes` is the batch's size as [`WriterTx::send`] counted it for the budget.
fn at_tail(bytes: usize, evs: &[(EventHeader, Bytes)]) -> bool {
    if bytes >= TAIL_BATCH_BYTES {
        return false;
    }
    let newest = evs.iter().map(|(h, _)| h.timestamp).max().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    newest != 0 && u64::from(newest) + TAIL_AGE_SECS >= now
}

/// Batches at least this large are a backlog ([`at_tail`]), bytes.
const TAIL_BATCH_BYTES: usize = 64 << 10;

/// Events older than this are a backlog ([`at_tail`]), seconds.
const TAIL_AGE_SECS: u64 = 2;

/// Bytes of event batches queued to one source's writer and not yet appended: the
/// stream waits beyond this (a batch is at most 256 KiB, see `stream.rs`).
pub(crate) const WRITER_BUDGET_BYTES: usize = 4 << 20;

/// The writer is gone (it failed or shut down); its notes say why.
#[derive(Debug, thiserror::Error)]
#[error("the writer has ended")]
pub(crate) struct WriterGone;

/// The sending side of a source's writer.
pub(crate) struct WriterTx {
    lane: Lane<Writer>,
    budget: Arc<Semaphore>,
    synced: Arc<watch::Sender<Option<SyncedEnd>>>,
}

impl WriterTx {
    /// Watches the end of what is fdatasynced: it moves as soon as each fdatasync
    /// returns, before the control file, the index and the status follow (what a
    /// semi-sync ack waits for; `None` until the first sync).
    pub(crate) fn synced(&self) -> watch::Receiver<Option<SyncedEnd>> {
        self.synced.subscribe()
    }

    /// Queues `msg`, first waiting while the batches queued hold
    /// [`WRITER_BUDGET_BYTES`].
    ///
    /// # Errors
    ///
    /// [`WriterGone`]: the writer failed or shut down (its notes say why).
    pub(crate) async fn send(&self, msg: WriterMsg) -> Result<(), WriterGone> {
        let bytes = match &msg {
            WriterMsg::Events(evs) => evs
                .iter()
                .map(|(_, b)| b.len())
                .sum::<usize>()
                .clamp(1, WRITER_BUDGET_BYTES),
            _ => 0,
        };
        if bytes > 0 {
            let n = u32::try_from(bytes).map_err(|_| WriterGone)?;
            self.budget
                .acquire_many(n)
                .await
                .map_err(|_| WriterGone)?
                .forget();
        }
        match self.lane.send(WriterInput::Msg(msg, bytes)) {
            true => Ok(()),
            false => Err(WriterGone),
        }
    }

    /// Shuts the writer down: a final sync of everything appended (control file
    /// flushed), then the syncer ends. Returns when that is done, or at once when the
    /// writer has already ended.
    pub(crate) async fn close(self) {
        let (tx, rx) = oneshot::channel();
        if self.lane.send(WriterInput::Close(tx)) {
            let _ = rx.await;
        }
    }
}

/// A source's running writer and syncer.
pub(crate) struct Started {
    /// Messages to the writer.
    pub tx: WriterTx,
    /// What the writer and syncer report.
    pub notes: mpsc::UnboundedReceiver<WriterNote>,
}

/// Starts the writer and syncer of source `name` on `store`, as lanes of `pools`;
/// transactions get index ordinals from `next_ordinal` on; the writer syncs at least
/// every `fsync_interval`. Must be called inside a tokio runtime (its idle ticks run
/// there).
pub(crate) fn start(
    name: &str,
    store: &Arc<LocalFiles>,
    index: &Arc<Index>,
    metrics: &Arc<Metrics>,
    pools: &IoPools,
    next_ordinal: u64,
    fsync_interval: Duration,
) -> Started {
    let (ntx, notes) = mpsc::unbounded_channel::<WriterNote>();
    let budget = Arc::new(Semaphore::new(WRITER_BUDGET_BYTES));
    let rt = tokio::runtime::Handle::current();
    let synced = Arc::new(watch::Sender::new(None));
    let lane = Lane::new_cyclic(&pools.writers, |me| {
        let syncer = Syncer {
            source: name.to_owned(),
            writer: me.clone(),
            fsyncs: metrics.fsyncs.get_or_create(&Metrics::label(name)).clone(),
            durable_wait: metrics
                .durable_wait
                .get_or_create(&Metrics::label(name))
                .clone(),
            store: store.clone(),
            index: index.clone(),
            notes: ntx.clone(),
            synced: synced.clone(),
            next_ordinal,
            index_broken: false,
        };
        Writer {
            source: name.to_owned(),
            budget: budget.clone(),
            interval: fsync_interval,
            first_dirty: None,
            last_input: Instant::now(),
            tick_armed: false,
            urgent: false,
            at_tail: false,
            me,
            rt,
            store: store.clone(),
            index: index.clone(),
            notes: ntx,
            active: None,
            fde: None,
            tracker: TxnTracker::new(),
            pending: Vec::new(),
            progress: Progress::default(),
            last_type: None,
            closing: false,
            syncer: Lane::new(&pools.syncers, syncer),
            inflight: None,
        }
    });
    Started {
        tx: WriterTx {
            lane,
            budget,
            synced,
        },
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` events of `size` bytes written at unix second `timestamp` (a QUERY type code,
    /// zero bodies: the writer stores bytes, it does not judge them), their log_pos
    /// running on from `start`.
    fn events(n: usize, size: usize, start: u64, timestamp: u32) -> Vec<(EventHeader, Bytes)> {
        (0..n)
            .map(|i| {
                let end = start + ((i + 1) * size) as u64;
                let header = EventHeader {
                    timestamp,
                    type_code: event_type::QUERY,
                    server_id: 1,
                    event_size: size as u32,
                    log_pos: end as u32,
                    flags: 0,
                };
                (header, Bytes::from(vec![0u8; size]))
            })
            .collect()
    }

    /// Streams 8 MiB of events written at `timestamp` into a fresh store in batches of
    /// `batch` bytes with an `fsync_interval` of an hour, `pace` apart (zero: as fast as
    /// the writer takes them), and waits until all of it is synced, then until the writer
    /// and syncer ended (they use the index and the directory, which go with this
    /// function); returns how many fdatasyncs that took.
    async fn fsyncs_for(batch: usize, timestamp: u32, pace: Duration) -> u64 {
        const EVENT: usize = 1024;
        const TOTAL: usize = 8 << 20;
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = LocalFiles::open(dir.path(), "db").unwrap();
        let store = Arc::new(store);
        let index = Arc::new(Index::open(&dir.path().join("index")).unwrap());
        let metrics = Arc::new(Metrics::new());
        let pools = IoPools::start().unwrap();
        let started = start(
            "db",
            &store,
            &index,
            &metrics,
            &pools,
            0,
            Duration::from_secs(3600),
        );
        let mut synced = started.tx.synced();
        let file = "mysql-bin.000001".to_string();
        started
            .tx
            .send(WriterMsg::Open {
                file: file.clone(),
                pos: 4,
            })
            .await
            .unwrap();
        let per_batch = (batch / EVENT).max(1);
        let mut pos = 4;
        for _ in 0..TOTAL / (per_batch * EVENT) {
            let evs = events(per_batch, EVENT, pos, timestamp);
            pos += (per_batch * EVENT) as u64;
            started.tx.send(WriterMsg::Events(evs)).await.unwrap();
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
        }
        let want = SyncedEnd {
            file: file.as_str().into(),
            len: pos,
        };
        tokio::time::timeout(
            Duration::from_secs(60),
            synced.wait_for(|s| s.as_ref() == Some(&want)),
        )
        .await
        .expect("everything synced within 60 s, not after the hour")
        .unwrap();
        let n = metrics.fsyncs.get_or_create(&Metrics::label("db")).get();
        let mut started = started;
        started.tx.close().await;
        let ended = async { while started.notes.recv().await.is_some() {} };
        tokio::time::timeout(Duration::from_secs(30), ended)
            .await
            .expect("the writer and syncer end once their channel is closed");
        n
    }

    /// At the primary's tail (small batches of fresh events, the stream never pausing)
    /// a sync starts as soon as the last one ended, whatever `fsync_interval` says; a
    /// backlog, in full batches or of old events, is synced far less often (here: when
    /// it stops, by the idle rule, or when the budget made the sender wait 2 ms).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fresh_small_batches_are_synced_as_they_come_and_a_backlog_is_not() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        // A tail trickles in (a batch each millisecond); a backlog comes at once.
        let tail = fsyncs_for(8 << 10, now + 5, Duration::from_millis(1)).await;
        let full = fsyncs_for(256 << 10, now + 5, Duration::ZERO).await;
        let old = fsyncs_for(8 << 10, now - 3600, Duration::ZERO).await;
        assert!(
            tail >= 4,
            "tail batches synced as they came: {tail} fdatasyncs"
        );
        for (what, n) in [("full batches", full), ("old events", old)] {
            assert!(
                tail >= 4 * n,
                "a backlog of {what} is synced far less often: {n} fdatasyncs, {tail} at the tail"
            );
        }
    }
}
