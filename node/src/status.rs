//! Live state of each source (what `GET /v1/sources` shows: capture, the primary's
//! binlog list ([`PrimaryView`]), the archive tier ([`ArchiveStatus`])) and the
//! Prometheus metrics.
//!
//! Metric names follow `binlog_server_{what}_{unit}` with one bounded label, `source`
//! (the configured source names).

use crate::util::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// Capture state of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureState {
    /// Opening the store, recovering, re-indexing.
    Starting,
    /// Connected and receiving events.
    Streaming,
    /// A transient error happened; waiting to reconnect (backoff).
    Reconnecting,
    /// A definite error stopped the source; `last_error` says why and what to do.
    Failed,
    /// Shut down.
    Stopped,
    /// A fleet node that does not hold the source's lease: another node (or none yet)
    /// captures it; this node starts when it acquires the lease.
    Standby,
}

/// The last takeover of a source by this node (a fleet node that acquired its lease).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TakeoverView {
    /// The epoch of the tenure that began.
    pub epoch: i64,
    /// Who held the lease before (`None`: nobody ever did).
    pub previous_owner: Option<String>,
    /// From the previous owner's last renewal to the first event streamed again under
    /// this tenure, seconds (`None` while not streaming yet, or without a previous
    /// owner). The owner died after that renewal, within a third of `lease_ttl`, so
    /// this is an upper bound of the outage.
    pub seconds: Option<f64>,
    /// When the lease was acquired, unix seconds.
    pub acquired_at: i64,
    /// What the takeover did (kept, fetched, dropped, where capture resumed).
    pub summary: String,
}

/// What the API reports about a source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// Source name.
    pub name: String,
    /// Primary URL with the password redacted.
    pub url: String,
    /// Capture state.
    pub state: CaptureState,
    /// The last error (transient or definite), with what to do.
    pub last_error: Option<String>,
    /// "mariadb" or "mysql", once connected.
    pub dialect: Option<String>,
    /// The primary's version string, once connected.
    pub server_version: Option<String>,
    /// Active file of the archive.
    pub durable_file: Option<String>,
    /// Durable (fsynced) length of `durable_file`, bytes.
    pub durable_pos: Option<u64>,
    /// GTID of the newest durable transaction.
    pub last_gtid: Option<String>,
    /// Timestamp (unix seconds) of the newest durable event.
    pub last_event_time: Option<u32>,
    /// The primary's current binlog file (last poll).
    pub primary_file: Option<String>,
    /// The primary's current binlog position (last poll), bytes.
    pub primary_pos: Option<u64>,
    /// Bytes the archive is behind the primary (last poll), when known.
    pub bytes_behind: Option<u64>,
    /// Seconds between the primary's clock and the newest durable event while behind;
    /// 0 when caught up; unknown before the first poll.
    pub seconds_behind: Option<u64>,
    /// Reconnects since start.
    pub reconnects: u64,
    /// Noteworthy facts, e.g. "capture began at mysql-bin.000007, the oldest binlog the
    /// primary still had: earlier ones were purged before capture started".
    pub notes: Vec<String>,
    /// Shipping to the archive store (`None` when `[archive]` is off).
    pub archive: Option<crate::status::ArchiveStatus>,
    /// The last takeover by this node (`None` on a single node, or before one).
    pub takeover: Option<TakeoverView>,
    /// Semi-sync capture (`semi_sync = true`; `None` otherwise).
    pub semi_sync: Option<SemiSyncView>,
}

/// What the API shows of a semi-sync source (`semi_sync = true`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SemiSyncView {
    /// The current stream is semi-sync (the primary has the semi-sync variables).
    pub active: bool,
    /// The primary's `rpl_semi_sync_master_enabled` (`..._source_enabled`) when the
    /// stream started.
    pub primary_enabled: bool,
    /// Acks sent since start, each only after the events it covers were fdatasynced.
    pub acks: u64,
    /// The last ack's position, `file:pos`.
    pub last_ack: Option<String>,
    /// When the last ack was sent, unix seconds.
    pub last_ack_at: Option<i64>,
    /// The primary's `Rpl_semi_sync_master_status` (`..._source_status`) at the last
    /// poll: `true` while its commits wait for a semi-sync ack, `false` while they do
    /// not: it fell back to async (no ack within its timeout, or no replica with
    /// `rpl_semi_sync_master_wait_no_slave = OFF`) or semi-sync was turned off.
    pub primary_semi_sync: Option<bool>,
    /// The primary's count of commits acknowledged by a semi-sync replica
    /// (`Rpl_semi_sync_master_yes_tx`) at the last poll.
    pub primary_yes_tx: Option<u64>,
    /// The primary's count of commits released without an ack
    /// (`Rpl_semi_sync_master_no_tx`) at the last poll.
    pub primary_no_tx: Option<u64>,
    /// Changes of the primary's status from ON to OFF seen by the poller since start (a
    /// fallback to async, or semi-sync turned off).
    pub fallbacks: u64,
    /// When the last fallback was seen, unix seconds.
    pub last_fallback_at: Option<i64>,
}

impl SourceStatus {
    /// A fresh status in state Starting.
    pub fn new(name: &str, url: &str) -> Self {
        SourceStatus {
            name: name.to_owned(),
            url: url.to_owned(),
            state: CaptureState::Starting,
            last_error: None,
            dialect: None,
            server_version: None,
            durable_file: None,
            durable_pos: None,
            last_gtid: None,
            last_event_time: None,
            primary_file: None,
            primary_pos: None,
            bytes_behind: None,
            seconds_behind: None,
            reconnects: 0,
            notes: Vec::new(),
            archive: None,
            takeover: None,
            semi_sync: None,
        }
    }
}

/// Shared, lock-protected status of one source, and the count of this process's
/// changes to the source's catalog rows that the capture does not show in the status
/// (a file checked), which tells the source's shipper to read the catalog again.
#[derive(Debug, Clone)]
pub struct StatusCell {
    status: Arc<Mutex<SourceStatus>>,
    rows_touched: Arc<AtomicU64>,
    /// Moves each time the durable end does ([`StatusCell::durable_moved`]).
    durable: Arc<tokio::sync::watch::Sender<u64>>,
}

impl StatusCell {
    /// Wraps a status.
    pub fn new(s: SourceStatus) -> Self {
        StatusCell {
            status: Arc::new(Mutex::new(s)),
            rows_touched: Arc::default(),
            durable: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// Tells whoever waits on [`watch_durable`](StatusCell::watch_durable) that the
    /// durable end (`durable_file`, `durable_pos`) moved: call after changing them.
    pub fn durable_moved(&self) {
        self.durable.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees each [`durable_moved`](StatusCell::durable_moved) (the
    /// fake primary's dumps wait on it at the end of the binlogs instead of polling).
    pub fn watch_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// Locks the status (a poisoned lock is recovered: the data is plain values).
    pub fn lock(&self) -> MutexGuard<'_, SourceStatus> {
        lock(&self.status)
    }

    /// Notes that this process changed the source's catalog rows (the checker after a
    /// file's check), so that the shipper does not wait for its next periodic read of
    /// the catalog to act on it.
    pub fn touch_rows(&self) {
        self.rows_touched.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times [`touch_rows`](StatusCell::touch_rows) was called.
    pub fn rows_touched(&self) -> u64 {
        self.rows_touched.load(Ordering::Relaxed)
    }

    /// A copy for the API.
    pub fn snapshot(&self) -> SourceStatus {
        self.lock().clone()
    }

    /// Adds a note (kept to the last 20).
    pub fn note(&self, text: impl Into<String>) {
        let mut s = self.lock();
        s.notes.push(text.into());
        let n = s.notes.len();
        if n > 20 {
            s.notes.drain(..n - 20);
        }
    }
}

/// Which sources this node runs scheduled jobs for (bases, retention, verifications):
/// every source on a single node; on a fleet node only those whose lease it holds at
/// the moment a job is due, so that a job runs once across the fleet.
#[derive(Clone)]
pub struct Ownership(Arc<EpochOf>);

/// A source's lease epoch on this node, `None` when it does not hold it.
type EpochOf = dyn Fn(&str) -> Option<i64> + Send + Sync;

impl Ownership {
    /// A single node: every source runs here, under epoch 0 (no lease).
    pub fn everywhere() -> Ownership {
        Ownership(Arc::new(|_| Some(0)))
    }

    /// Sources run here while `epoch(source)` names the tenure this node holds (a fleet
    /// node's lease keeper).
    pub fn new(epoch: impl Fn(&str) -> Option<i64> + Send + Sync + 'static) -> Ownership {
        Ownership(Arc::new(epoch))
    }

    /// Whether a scheduled job of `source` runs on this node now.
    pub fn runs_here(&self, source: &str) -> bool {
        (self.0)(source).is_some()
    }

    /// The lease epoch this node writes `source`'s rows under now (0 on a single node);
    /// `None` when it does not hold the source.
    pub fn epoch_here(&self, source: &str) -> Option<i64> {
        (self.0)(source)
    }
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ownership")
    }
}

/// Label set of per-source metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Source name.
    pub source: String,
}

/// The buckets of [`Metrics::durable_wait`], seconds: 0.25 ms to 2 s.
pub fn durable_wait_histogram() -> Histogram {
    Histogram::new([
        0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
    ])
}

/// The process's metrics registry.
pub struct Metrics {
    registry: Registry,
    /// Bytes of events received from primaries (after CRC check).
    pub received_bytes: Family<SourceLabel, Counter>,
    /// Events received.
    pub received_events: Family<SourceLabel, Counter>,
    /// Events whose CRC32 did not verify on arrival (never stored).
    pub crc_failures: Family<SourceLabel, Counter>,
    /// Semi-sync acks sent to primaries (each after its fdatasync).
    pub semi_sync_acks: Family<SourceLabel, Counter>,
    /// The primary's semi-sync state at the last poll: 1 on, 0 fallen back to async.
    pub semi_sync_primary_on: Family<SourceLabel, Gauge>,
    /// Fallbacks of the primary to async seen by the poller.
    pub semi_sync_fallbacks: Family<SourceLabel, Counter>,
    /// Reconnects after transient errors.
    pub reconnects: Family<SourceLabel, Counter>,
    /// fdatasync calls on active files.
    pub fsyncs: Family<SourceLabel, Counter>,
    /// Per fdatasync of an active file: how long its oldest byte waited from arrival
    /// until the fdatasync returned, seconds ([`durable_wait_histogram`]'s buckets).
    pub durable_wait: Family<SourceLabel, Histogram, fn() -> Histogram>,
    /// Bytes behind the primary (last poll).
    pub lag_bytes: Family<SourceLabel, Gauge>,
    /// Seconds behind the primary (last poll).
    pub lag_seconds: Family<SourceLabel, Gauge>,
    /// Files that failed their check (FAIL) at the last check run.
    pub check_failures: Family<SourceLabel, Counter>,
    /// End of the last passed restore verification, unix seconds.
    pub verify_last_success: Family<SourceLabel, Gauge>,
    /// RTO of the last restore verification that reached a caught-up instance, seconds.
    pub verify_last_rto: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Result of the last restore verification: 1 passed, 0 failed, -1 no base to
    /// verify, -2 cancelled.
    pub verify_last_result: Family<SourceLabel, Gauge>,
    /// Plaintext binlog bytes uploaded to the archive store (chunks and whole files).
    pub archive_uploaded_bytes: Family<SourceLabel, Counter>,
    /// Bytes uploaded to the archive store as stored (compressed, encrypted).
    pub archive_stored_bytes: Family<SourceLabel, Counter>,
    /// Durable local bytes the archive store does not hold yet.
    pub archive_lag_bytes: Family<SourceLabel, Gauge>,
    /// Age of the oldest of them, seconds.
    pub archive_lag_seconds: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Plaintext bytes uploaded / binlog bytes shipped (at most 2).
    pub archive_amplification: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Failed shipping passes (each retried).
    pub archive_errors: Family<SourceLabel, Counter>,
    /// Takeovers of a source by this node (lease acquired, capture started).
    pub takeovers: Family<SourceLabel, Counter>,
    /// The last takeover's time, from the previous owner's last renewal to streaming
    /// again, seconds.
    pub takeover_seconds: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Tenures of a source that ended on this node, and why (`lost`, `expired`,
    /// `released`).
    pub tenures_ended: Family<EndLabel, Counter>,
    /// Writes of this node refused by a lease's fence (it was a stale owner).
    pub fenced_writes: Family<SourceLabel, Counter>,
    /// Catalog calls since the process started (`catalog::Catalog::calls`: one per
    /// statement outside a transaction, one per transaction), set at each scrape.
    pub catalog_calls: Gauge,
}

/// Label set of [`Metrics::tenures_ended`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabel {
    /// Source name.
    pub source: String,
    /// `lost`, `expired` or `released`.
    pub reason: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("binlog_server");
        let m = Metrics {
            received_bytes: Family::default(),
            received_events: Family::default(),
            semi_sync_acks: Family::default(),
            semi_sync_primary_on: Family::default(),
            semi_sync_fallbacks: Family::default(),
            crc_failures: Family::default(),
            reconnects: Family::default(),
            fsyncs: Family::default(),
            durable_wait: Family::new_with_constructor(durable_wait_histogram),
            lag_bytes: Family::default(),
            lag_seconds: Family::default(),
            check_failures: Family::default(),
            verify_last_success: Family::default(),
            verify_last_rto: Family::default(),
            verify_last_result: Family::default(),
            archive_uploaded_bytes: Family::default(),
            archive_stored_bytes: Family::default(),
            archive_lag_bytes: Family::default(),
            archive_lag_seconds: Family::default(),
            archive_amplification: Family::default(),
            archive_errors: Family::default(),
            takeovers: Family::default(),
            takeover_seconds: Family::default(),
            tenures_ended: Family::default(),
            fenced_writes: Family::default(),
            catalog_calls: Gauge::default(),
            registry: Registry::default(),
        };
        m.register_capture(&mut registry);
        m.register_verification(&mut registry);
        m.register_archive(&mut registry);
        m.register_fleet(&mut registry);
        Metrics { registry, ..m }
    }

    /// Registers the capture metrics (received, CRC, reconnects, fsyncs, lag, checks).
    fn register_capture(&self, r: &mut Registry) {
        r.register(
            "received_bytes",
            "Bytes of binlog events received and CRC-checked",
            self.received_bytes.clone(),
        );
        r.register(
            "received_events",
            "Binlog events received and CRC-checked",
            self.received_events.clone(),
        );
        r.register(
            "semi_sync_acks",
            "Semi-sync acks sent to the primary, each only after the events it covers were fdatasynced",
            self.semi_sync_acks.clone(),
        );
        r.register(
            "semi_sync_primary_on",
            "The primary's Rpl_semi_sync_master_status at the last poll: 1 on, 0 fallen back to async",
            self.semi_sync_primary_on.clone(),
        );
        r.register(
            "semi_sync_fallbacks",
            "Changes of the primary's semi-sync status from ON to OFF seen by the poller (a fallback to async, or semi-sync turned off)",
            self.semi_sync_fallbacks.clone(),
        );
        r.register(
            "crc_failures",
            "Events whose CRC32 failed on arrival (never stored)",
            self.crc_failures.clone(),
        );
        r.register(
            "reconnects",
            "Reconnects to the primary after transient errors",
            self.reconnects.clone(),
        );
        r.register(
            "fsyncs",
            "fdatasync calls on active binlog files",
            self.fsyncs.clone(),
        );
        r.register(
            "durable_wait_seconds",
            "Per fdatasync of an active binlog file: seconds from the arrival of the oldest byte it made durable until it returned (receive-to-durable)",
            self.durable_wait.clone(),
        );
        r.register(
            "lag_bytes",
            "Bytes the archive is behind the primary",
            self.lag_bytes.clone(),
        );
        r.register(
            "lag_seconds",
            "Seconds the archive is behind the primary",
            self.lag_seconds.clone(),
        );
        r.register(
            "check_failures",
            "Binlog file checks that ended in FAIL",
            self.check_failures.clone(),
        );
    }

    /// Registers the restore-verification metrics.
    fn register_verification(&self, r: &mut Registry) {
        r.register(
            "verification_last_success_timestamp_seconds",
            "End of the last passed restore verification (unix seconds)",
            self.verify_last_success.clone(),
        );
        r.register(
            "verification_last_rto_seconds",
            "RTO of the last restore verification: start to a usable instance caught up with the primary",
            self.verify_last_rto.clone(),
        );
        r.register(
            "verification_last_result",
            "Last restore verification: 1 passed, 0 failed, -1 no base to verify, -2 cancelled",
            self.verify_last_result.clone(),
        );
    }

    /// Registers the archive store's shipping metrics.
    fn register_archive(&self, r: &mut Registry) {
        r.register(
            "archive_uploaded_bytes",
            "Plaintext binlog bytes uploaded to the archive store (chunks and whole files)",
            self.archive_uploaded_bytes.clone(),
        );
        r.register(
            "archive_stored_bytes",
            "Bytes uploaded to the archive store as stored (compressed, encrypted)",
            self.archive_stored_bytes.clone(),
        );
        r.register(
            "archive_lag_bytes",
            "Durable local binlog bytes the archive store does not hold yet",
            self.archive_lag_bytes.clone(),
        );
        r.register(
            "archive_lag_seconds",
            "How long the oldest binlog bytes not yet in the archive store have waited",
            self.archive_lag_seconds.clone(),
        );
        r.register(
            "archive_upload_amplification",
            "Plaintext bytes uploaded to the archive store per binlog byte shipped (at most 2)",
            self.archive_amplification.clone(),
        );
        r.register(
            "archive_errors",
            "Failed archive shipping passes (each is retried with backoff)",
            self.archive_errors.clone(),
        );
    }

    /// Registers the fleet's metrics (takeovers, tenures).
    fn register_fleet(&self, r: &mut Registry) {
        r.register(
            "takeovers",
            "Takeovers of a source by this node: lease acquired and capture started",
            self.takeovers.clone(),
        );
        r.register(
            "takeover_seconds",
            "The last takeover's time: the previous owner's last lease renewal to streaming again",
            self.takeover_seconds.clone(),
        );
        r.register(
            "tenures_ended",
            "Tenures of a source's lease that ended on this node, by reason (lost, expired, released)",
            self.tenures_ended.clone(),
        );
        r.register(
            "fenced_writes",
            "Writes of this node refused by a lease's fence: it wrote as a stale owner and stopped",
            self.fenced_writes.clone(),
        );
        r.register(
            "catalog_calls",
            "Catalog calls since the process started: one per statement outside a transaction, one per transaction",
            self.catalog_calls.clone(),
        );
    }

    /// The label of `source`.
    pub fn label(source: &str) -> SourceLabel {
        SourceLabel {
            source: source.to_owned(),
        }
    }

    /// Prometheus text exposition (format 0.0.4 compatible / OpenMetrics text).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Latest view of the primary's binlogs (from the poller), and the FORMAT_DESCRIPTIONs
/// capture streamed (from the stream), shared with the checker.
#[derive(Debug, Clone, Default)]
pub struct PrimaryView {
    /// SHOW BINARY LOGS.
    pub binlogs: Vec<(String, u64)>,
    /// SHOW MASTER STATUS.
    pub current: Option<(String, u64)>,
    /// When it was read.
    pub at: Option<Instant>,
    /// The timeline whose server it was read from (names above are stored names:
    /// `tl<N>/` on timelines N >= 2; 0 before the first poll).
    pub timeline: u32,
    /// The FORMAT_DESCRIPTION the primary streamed at offset 4 of each of the last
    /// [`FORMATS_KEPT`] files this process captured (from the wire, before the disk):
    /// the check's [`binlog::check::CheckOptions::expected_format`].
    pub formats: std::collections::VecDeque<(String, binlog::check::ExpectedFormat)>,
}

/// How many files' streamed FORMAT_DESCRIPTIONs a [`PrimaryView`] keeps (the newest).
pub const FORMATS_KEPT: usize = 16;

impl PrimaryView {
    /// Records the FORMAT_DESCRIPTION the primary streamed for `file`, forgetting the
    /// oldest beyond [`FORMATS_KEPT`].
    pub fn record_format(&mut self, file: &str, format: binlog::check::ExpectedFormat) {
        self.formats.retain(|(f, _)| f != file);
        self.formats.push_back((file.to_owned(), format));
        while self.formats.len() > FORMATS_KEPT {
            self.formats.pop_front();
        }
    }

    /// Forgets `file`'s streamed FORMAT_DESCRIPTION (after a re-pull replaced the file:
    /// the stored copy is then checked on its own).
    pub fn forget_format(&mut self, file: &str) {
        self.formats.retain(|(f, _)| f != file);
    }

    /// What the primary streamed as `file`'s FORMAT_DESCRIPTION, when this process
    /// captured the file's start recently.
    pub fn format_of(&self, file: &str) -> Option<binlog::check::ExpectedFormat> {
        self.formats
            .iter()
            .find(|(f, _)| f == file)
            .map(|(_, x)| x.clone())
    }
}

/// Live shipping figures of one source (`GET /v1/sources/{name}`: `"archive"`). Counts
/// are since the process started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveStatus {
    /// Store URL.
    pub store: String,
    /// Durable local bytes the store does not hold yet.
    pub lag_bytes: u64,
    /// How long the oldest of them has waited, seconds.
    pub lag_seconds: f64,
    /// Plaintext bytes uploaded (chunks and whole files).
    pub uploaded_bytes: u64,
    /// Bytes uploaded as stored (compressed, encrypted).
    pub stored_bytes: u64,
    /// Binlog bytes newly held by the store (each byte counted once).
    pub shipped_bytes: u64,
    /// Upload amplification over the source's whole history in the catalog (every
    /// restart included): plaintext bytes uploaded / binlog bytes the store holds or
    /// held (at most 2).
    pub amplification: Option<f64>,
    /// Objects written.
    pub objects: u64,
    /// The last pass's error, cleared by the next good pass.
    pub last_error: Option<String>,
    /// A scrub of the store is running.
    pub scrubbing: bool,
    /// The last scrub of the store (since the process started).
    pub last_scrub: Option<ScrubReport>,
}

/// One scrub pass's result (`GET /v1/sources/{name}`: `archive.last_scrub`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrubReport {
    /// Why it ran: `"schedule"`, `"request"` or `"damaged read"`.
    pub trigger: String,
    /// Start and end, unix seconds.
    pub started_at: i64,
    /// See `started_at`.
    pub finished_at: i64,
    /// Whole-file objects checked.
    pub objects: u64,
    /// Their stored bytes read.
    pub bytes: u64,
    /// The damaged ones and what was done.
    pub damaged: Vec<Damage>,
}

/// A damaged object and its repair.
#[derive(Debug, Clone, Serialize)]
pub struct Damage {
    /// Binlog file.
    pub file: String,
    /// Object key.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
    /// `"local copy"`, `"primary"` or `"none"` (cannot be repaired: no good copy left).
    pub repair: String,
    /// Where the damaged object was kept aside, when it was.
    pub kept_as: Option<String>,
}
