//! Shipping: every binlog of a source goes to the archive store (layout:
//! [`super::objects`]), so the node's disk is no longer the only copy.
//!
//! Two loops per source, so a long whole-file upload never holds back the open file
//! (and a third that publishes the lag every second, whatever the store does):
//!
//! - **Chunks** (every `ship_interval / 4`, at least every 250 ms): the durable bytes of
//!   an ACTIVE or REPORTED file that the store does not hold yet go out as one chunk
//!   object `[covered, durable)` once `ship_bytes` of them wait or the oldest has waited
//!   `ship_interval`, whichever first (a chunk is at most `ship_bytes`). Only durable
//!   bytes are read: the ACTIVE file up to the fsynced length the writer published, a
//!   REPORTED file whole. Each byte goes out once as a chunk.
//! - **Files** (oldest first, up to 4 at once; up to 8 MiB in one request, larger ones
//!   multipart): a SUCC file goes out whole, encoded while it streams
//!   (bounded memory), its plaintext SHA-256 checked against the one the checker
//!   recorded; then its manifest; then its catalog row; then its chunks are deleted.
//!   Each byte goes out once more, so upload amplification (plaintext bytes uploaded /
//!   binlog bytes) stays at most 2.
//! - **Idle**: each pass first looks at the source's change counter in the catalog (one
//!   row, moved by the database at every change of the source's file and object rows:
//!   `Catalog::archive_fingerprint`). While it, the capture's durable end and the
//!   disk's free space stay as they were, no lag waits and no file is due for eviction
//!   by age, a pass lists nothing (a full pass still runs every minute), so an idle
//!   source costs the same whatever its archive's file count. The three loops share one
//!   read of the counter, read again only when the durable end moved, this process
//!   changed the source's rows (`StatusCell::touch_rows`: a file checked) or
//!   [`FINGERPRINT_AGE`] passed: an idle source costs one catalog call every few
//!   seconds.
//!
//! # Errors and crashes
//!
//! A failed pass is retried with backoff (1 s doubling to 60 s; the store client retries
//! each request first); capture goes on meanwhile and the backlog shows as the lag in
//! the API and metrics. The record that points at data is written after the data (see
//! [`super::objects`]): after a crash an object may exist without its row; the next
//! pass gets "exists", reads the object back, and records it only when it decodes to the
//! same plaintext SHA-256; otherwise the pass fails with both digests named (never
//! overwritten, never silently adopted).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog::{
    ArchiveFingerprint, ArchiveKind, ArchiveObjectRow, BinlogFileRow, Catalog, FileState,
};
use futures::StreamExt;
use objstore::codec::{self, Decoder, Encoder};
use objstore::store::StoreError;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::cache::Evicted;
use super::objects::{self, Manifest};
use super::tier::{ArchiveTier, TierError};
use node::status::PrimaryView;
use node::status::{ArchiveStatus, Metrics, StatusCell};

/// Longest wait between two passes of the chunk loop.
const MAX_TICK: Duration = Duration::from_millis(250);
/// Backoff after a failed pass: from 1 s, doubling, capped.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Files up to this size go out in one request, bytes.
const SMALL_FILE: u64 = 8 * 1024 * 1024;
/// Whole files shipped at once.
const FILES_IN_FLIGHT: usize = 4;
/// Plaintext read per step of a whole-file upload, bytes.
const READ_STEP: usize = 1024 * 1024;

/// One source's shipper.
struct Shipper {
    source: String,
    dir: PathBuf,
    catalog: Arc<Catalog>,
    tier: Arc<ArchiveTier>,
    status: StatusCell,
    metrics: Arc<Metrics>,
    /// Per file with durable bytes the store lacks: since when (the lag's age).
    waiting: std::sync::Mutex<HashMap<String, Instant>>,
    /// Files only in the store.
    evicted: Evicted,
    /// The primary's binlog list (a damaged object is pulled again while it has it).
    primary: Arc<std::sync::Mutex<PrimaryView>>,
    /// Files whose chunk prefix was looked at for crash leftovers in this process.
    swept: std::sync::Mutex<std::collections::HashSet<String>>,
    /// What the last chunk or lag pass listed: the catalog's fingerprint, the durable
    /// end and the lag it found. While all three say nothing changed and nothing waits,
    /// those passes skip their listings ([`Shipper::settled`]).
    chunk_seen: std::sync::Mutex<Option<(ChunkSeen, Instant)>>,
    /// The last read of the catalog's fingerprint, when, and what this process saw
    /// then (durable end, rows touched): [`Shipper::fingerprint`].
    fingerprint_seen: std::sync::Mutex<Option<(ArchiveFingerprint, Instant, LocalMark)>>,
    /// The fingerprint the last whole file pass started from, and when it ended.
    file_seen: std::sync::Mutex<Option<(ArchiveFingerprint, Instant)>>,
    /// When the next file becomes old enough to evict (`local_retention`), unix
    /// seconds, as the last eviction found; `None`: none will without a change.
    evict_due: std::sync::Mutex<Option<i64>>,
    /// The fencing epoch of every object and row this shipper writes.
    epoch: i64,
}

/// What one source's shipper works with.
pub struct ShipperCtx {
    /// Source name.
    pub source: String,
    /// Its local directory (`<data_dir>/<source>`).
    pub dir: PathBuf,
    /// Catalog.
    pub catalog: Arc<Catalog>,
    /// The archive store.
    pub tier: Arc<ArchiveTier>,
    /// Its live status (durable end in; archive figures out).
    pub status: StatusCell,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Files only in the store (the evictor adds to it; the fake primary lists it).
    pub evicted: Evicted,
    /// The primary's binlog list, from the source's poller.
    pub primary: Arc<std::sync::Mutex<PrimaryView>>,
    /// The writer's fencing epoch, in every key and row it writes: the source's lease
    /// tenure on a fleet node, 0 on a single node (`archive::objects`).
    pub epoch: i64,
}

/// Starts the chunk and file loops of a source; they end when `cancel` fires.
pub fn spawn(ctx: ShipperCtx, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    {
        let mut s = ctx.status.lock();
        s.archive = Some(ArchiveStatus {
            store: ctx.tier.store.url().to_string(),
            ..Default::default()
        });
    }
    let sh = Arc::new(Shipper {
        source: ctx.source,
        dir: ctx.dir,
        catalog: ctx.catalog,
        tier: ctx.tier,
        status: ctx.status,
        metrics: ctx.metrics,
        evicted: ctx.evicted,
        primary: ctx.primary,
        swept: Default::default(),
        waiting: Default::default(),
        chunk_seen: Default::default(),
        fingerprint_seen: Default::default(),
        file_seen: Default::default(),
        evict_due: Default::default(),
        epoch: ctx.epoch,
    });
    let span = tracing::info_span!("archive", source = %sh.source);
    let (a, b, c, d, e) = (sh.clone(), sh.clone(), sh.clone(), sh.clone(), sh);
    let (c2, c3, c4, c5) = (
        cancel.clone(),
        cancel.clone(),
        cancel.clone(),
        cancel.clone(),
    );
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            tokio::join!(
                a.chunk_loop(cancel),
                b.file_loop(c2),
                c.lag_loop(c3),
                d.scrub_loop(c4),
                e.lock_loop(c5)
            );
        },
        span,
    ))
}

/// Free bytes (for unprivileged users) on the file system holding `dir`; `None` when
/// it cannot be read.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path and `st` a zeroed statvfs that the call fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    #[allow(clippy::useless_conversion)] // fsblkcnt_t and c_ulong are not u64 on every target
    let free = u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize));
    (r == 0).then_some(free)
}

/// Whether an object a crash left (`key`, decoded to plaintext SHA-256 `got`) is the one
/// to record (`want`); logs the adoption.
fn adopted(key: &str, got: &str, want: &str) -> Result<(), TierError> {
    if got != want {
        return Err(TierError::OtherBytes {
            key: key.to_owned(),
            got: got.to_owned(),
            want: want.to_owned(),
        });
    }
    info!(key, "adopted an object a crash left without its record");
    Ok(())
}

/// Plaintext bytes `[start, end)` of `file` hold these objects' coverage: the end of the
/// contiguous chunks from 0.
fn covered(chunks: &[&ArchiveObjectRow]) -> u64 {
    catalog::contiguous_end(chunks.iter().map(|c| (c.start_offset, c.end_offset)))
}

/// What a chunk or lag pass saw (see `Shipper::chunk_seen`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChunkSeen {
    /// The catalog's fingerprint before the listing.
    fingerprint: ArchiveFingerprint,
    /// The capture's durable end then.
    durable: (Option<String>, Option<u64>),
    /// The lag the listing found, bytes.
    lag_bytes: u64,
}

/// What this process knows moved a source's rows: the capture's durable end and the
/// count of row changes the checker and the shipper itself noted
/// (`StatusCell::rows_touched`).
type LocalMark = ((Option<String>, Option<u64>), u64);

/// The shared read of the catalog's fingerprint is trusted at most this long while
/// nothing moved here: the delay after which a change by another process (a retention
/// run, a node's takeover work) is seen.
const FINGERPRINT_AGE: Duration = Duration::from_secs(5);

/// Every pass lists everything at least this often, even when the catalog's change
/// counter did not move: a safety net for what the catalog does not see (a file
/// removed from the disk by hand). Eviction by age and by free space, which depend on
/// time and the disk, not on rows, are due on their own ([`Shipper::file_pass`]).
const FULL_PASS: Duration = Duration::from_secs(60);

/// How often a shipper extends the Object Lock of objects still kept: far inside the
/// half of the lock period (a day at least) that a pass leaves before a lock ends.
const LOCK_PASS: Duration = Duration::from_secs(3600);

/// One file's objects in a listing.
#[derive(Default)]
struct FileObjects<'a> {
    /// Its whole object, when the store holds it whole.
    whole: Option<&'a ArchiveObjectRow>,
    /// Its live chunks, in the listing's order (end offset).
    chunks: Vec<&'a ArchiveObjectRow>,
}

/// A listing's objects by file, built once per pass (so a pass is linear in the
/// archive's size, not quadratic).
fn by_file(objs: &[ArchiveObjectRow]) -> HashMap<&str, FileObjects<'_>> {
    let mut m: HashMap<&str, FileObjects<'_>> = HashMap::new();
    for o in objs {
        let e = m.entry(o.file.as_str()).or_default();
        match o.kind {
            ArchiveKind::File => e.whole = Some(o),
            ArchiveKind::Chunk => e.chunks.push(o),
        }
    }
    m
}

impl Shipper {
    /// Runs `pass` every `tick` until cancelled, backing off after failures.
    async fn repeat<F, Fut>(&self, tick: Duration, cancel: &CancellationToken, mut pass: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), TierError>>,
    {
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match pass().await {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    tick
                }
                Err(e) => {
                    let msg = e.to_string();
                    warn!(error = %msg, retry_in = ?backoff, "archive shipping failed; retrying");
                    if let Some(a) = self.status.lock().archive.as_mut() {
                        a.last_error = Some(msg);
                    }
                    self.metrics
                        .archive_errors
                        .get_or_create(&Metrics::label(&self.source))
                        .inc();
                    let w = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    w
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn chunk_loop(&self, cancel: CancellationToken) {
        let tick = (self.tier.settings.ship_interval / 4).min(MAX_TICK);
        self.repeat(tick, &cancel, || self.chunk_pass()).await;
    }

    async fn lag_loop(&self, cancel: CancellationToken) {
        self.repeat(Duration::from_secs(1), &cancel, || self.lag_pass())
            .await;
    }

    async fn file_loop(&self, cancel: CancellationToken) {
        let tick = self.tier.settings.ship_interval.min(Duration::from_secs(1));
        self.repeat(tick, &cancel, || self.file_pass()).await;
    }

    /// With Object Lock: extends the locks of objects still kept (`super::lock`) at
    /// start and every [`LOCK_PASS`]; ends at once without it.
    async fn lock_loop(&self, cancel: CancellationToken) {
        if self.tier.store.locking().is_none() {
            return;
        }
        self.repeat(LOCK_PASS, &cancel, || async {
            super::lock::extend_due(
                &self.catalog,
                &self.tier.store,
                &self.source,
                catalog::unix_now(),
            )
            .await
            .map(|_| ())
        })
        .await;
    }

    /// Scrubs the store when asked, when a read found an object damaged, and every
    /// `scrub_interval` (the first one a full interval after start).
    async fn scrub_loop(&self, cancel: CancellationToken) {
        let mut last = Instant::now();
        let (mut all, mut files) = (false, Vec::<String>::new());
        let mut backoff = Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let (a, f) = self.tier.take_scrub_ask(&self.source);
            all |= a;
            files.extend(f);
            let every = self.tier.settings.scrub_interval;
            let due = !every.is_zero() && last.elapsed() >= every;
            if !all && !due && files.is_empty() {
                continue;
            }
            let trigger = match (all, due) {
                (true, _) => "request",
                (false, true) => "schedule",
                _ => "damaged read",
            };
            files.sort();
            files.dedup();
            let ctx = super::scrub::ScrubCtx {
                source: &self.source,
                dir: &self.dir,
                catalog: &self.catalog,
                tier: &self.tier,
                evicted: &self.evicted,
                primary: &self.primary,
            };
            self.set_scrubbing(true);
            let only = (!all && !due).then_some(files.as_slice());
            let r = super::scrub::scrub(&ctx, only, trigger).await;
            self.set_scrubbing(false);
            match r {
                Ok(report) => {
                    if only.is_none() {
                        last = Instant::now();
                    }
                    (all, backoff) = (false, Duration::from_secs(1));
                    files.clear();
                    if let Some(a) = self.status.lock().archive.as_mut() {
                        a.last_scrub = Some(report);
                    }
                }
                Err(e) => {
                    let msg = format!("scrub of the archive store: {e}");
                    warn!(error = %msg, retry_in = ?backoff, "archive scrub failed; retrying");
                    if let Some(a) = self.status.lock().archive.as_mut() {
                        a.last_error = Some(msg);
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn set_scrubbing(&self, on: bool) {
        if let Some(a) = self.status.lock().archive.as_mut() {
            a.scrubbing = on;
        }
    }

    /// The files and their objects.
    async fn listing(&self) -> Result<(Vec<BinlogFileRow>, Vec<ArchiveObjectRow>), TierError> {
        let files = self.catalog.list_files(&self.source).await?;
        let objs = self.catalog.list_archive_objects(&self.source).await?;
        Ok((files, objs))
    }

    /// The durable end the capture published.
    fn durable(&self) -> (Option<String>, Option<u64>) {
        let s = self.status.lock();
        (s.durable_file.clone(), s.durable_pos)
    }

    /// The catalog's fingerprint, and whether a chunk or lag pass may skip its listing:
    /// the last one found no lag, and neither the catalog nor the durable end changed
    /// since. An idle source then costs one aggregate query per pass, not a listing of
    /// every row.
    async fn settled(&self) -> Result<(ChunkSeen, bool), TierError> {
        let fingerprint = self.fingerprint().await?;
        let now = ChunkSeen {
            fingerprint,
            durable: self.durable(),
            lag_bytes: 0,
        };
        let skip = node::util::lock(&self.chunk_seen)
            .as_ref()
            .is_some_and(|(seen, at)| *seen == now && at.elapsed() < FULL_PASS);
        Ok((now, skip))
    }

    /// The catalog's fingerprint of the source, shared by the chunk, lag and file
    /// loops: read again when the durable end moved, another task touched the rows, or
    /// the last read is [`FINGERPRINT_AGE`] old.
    async fn fingerprint(&self) -> Result<ArchiveFingerprint, TierError> {
        let mark = (self.durable(), self.status.rows_touched());
        if let Some((f, at, seen)) = &*node::util::lock(&self.fingerprint_seen) {
            if *seen == mark && at.elapsed() < FINGERPRINT_AGE {
                return Ok(*f);
            }
        }
        let f = self.catalog.archive_fingerprint(&self.source).await?;
        *node::util::lock(&self.fingerprint_seen) = Some((f, Instant::now(), mark));
        Ok(f)
    }

    fn saw(&self, mut seen: ChunkSeen, lag_bytes: u64) {
        seen.lag_bytes = lag_bytes;
        *node::util::lock(&self.chunk_seen) = Some((seen, Instant::now()));
    }

    /// One pass of the chunk loop: publishes the lag, then ships what is due.
    async fn chunk_pass(&self) -> Result<(), TierError> {
        let (seen, skip) = self.settled().await?;
        if skip {
            return Ok(());
        }
        let (files, objs) = self.listing().await?;
        let now = Instant::now();
        let (due, lag_bytes, oldest) = self.backlog(&files, &objs, now);
        self.publish_lag(lag_bytes, oldest.map(|t| now.duration_since(t)));
        self.saw(seen, lag_bytes);
        let shipped = !due.is_empty();
        for (file, mut from, end) in due {
            while from < end {
                let to = end.min(from + self.tier.settings.ship_bytes);
                self.ship_chunk(&file, from, to).await?;
                from = to;
            }
            node::util::lock(&self.waiting).remove(&file);
        }
        if shipped {
            // Rows changed: the loops read the catalog again rather than trust the
            // fingerprint read before.
            self.status.touch_rows();
        }
        Ok(())
    }

    /// The lag loop's pass: publishes the backlog even while the other loops wait on a
    /// slow or unreachable store.
    async fn lag_pass(&self) -> Result<(), TierError> {
        let (seen, skip) = self.settled().await?;
        if skip {
            return Ok(());
        }
        let (files, objs) = self.listing().await?;
        let now = Instant::now();
        let (_, lag_bytes, oldest) = self.backlog(&files, &objs, now);
        self.publish_lag(lag_bytes, oldest.map(|t| now.duration_since(t)));
        self.saw(seen, lag_bytes);
        Ok(())
    }

    /// The durable bytes the store lacks: the chunks due now `(file, from, to)`, the
    /// lag in bytes, and since when the oldest of them waits.
    fn backlog(
        &self,
        files: &[BinlogFileRow],
        objs: &[ArchiveObjectRow],
        now: Instant,
    ) -> (Vec<(String, u64, u64)>, u64, Option<Instant>) {
        let (dfile, dpos) = {
            let s = self.status.lock();
            (s.durable_file.clone(), s.durable_pos)
        };
        let mut due = Vec::new();
        let (mut lag_bytes, mut oldest) = (0u64, None::<Instant>);
        let mut seen = std::collections::HashSet::new();
        let mut since = node::util::lock(&self.waiting);
        let objects = by_file(objs);
        let none = FileObjects::default();
        for f in files {
            let held = objects.get(f.name.as_str()).unwrap_or(&none);
            if f.state == FileState::Fail || held.whole.is_some() {
                continue;
            }
            let chunks = &held.chunks;
            let end = match (f.state, &dfile, dpos) {
                (FileState::Active, Some(df), Some(p)) if *df == f.name => p.max(f.size),
                _ => f.size,
            };
            let cov = covered(chunks);
            if end <= cov {
                continue;
            }
            seen.insert(f.name.clone());
            let t = *since.entry(f.name.clone()).or_insert(now);
            lag_bytes += end - cov;
            oldest = Some(oldest.map_or(t, |o| o.min(t)));
            let open = matches!(f.state, FileState::Active | FileState::Reported);
            if open
                && (end - cov >= self.tier.settings.ship_bytes
                    || now.duration_since(t) >= self.tier.settings.ship_interval)
            {
                due.push((f.name.clone(), cov, end));
            }
        }
        since.retain(|k, _| seen.contains(k));
        (due, lag_bytes, oldest)
    }

    fn publish_lag(&self, bytes: u64, age: Option<Duration>) {
        let secs = age.map_or(0.0, |d| d.as_secs_f64());
        if let Some(a) = self.status.lock().archive.as_mut() {
            a.lag_bytes = bytes;
            a.lag_seconds = secs;
        }
        let l = Metrics::label(&self.source);
        self.metrics
            .archive_lag_bytes
            .get_or_create(&l)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.metrics.archive_lag_seconds.get_or_create(&l).set(secs);
    }

    /// Counts one stored object: `plain` bytes uploaded, `stored` as stored, `new` binlog
    /// bytes the store did not hold before.
    fn count(&self, plain: u64, stored: u64, new: u64) {
        let l = Metrics::label(&self.source);
        self.metrics
            .archive_uploaded_bytes
            .get_or_create(&l)
            .inc_by(plain);
        self.metrics
            .archive_stored_bytes
            .get_or_create(&l)
            .inc_by(stored);
        let mut s = self.status.lock();
        if let Some(a) = s.archive.as_mut() {
            a.uploaded_bytes += plain;
            a.stored_bytes += stored;
            a.shipped_bytes += new;
            a.objects += 1;
            a.last_error = None;
        }
    }

    /// Publishes the upload amplification from the catalog's totals.
    async fn publish_amplification(&self) -> Result<(), TierError> {
        let (up, held) = self.catalog.archive_upload_totals(&self.source).await?;
        if held == 0 {
            return Ok(());
        }
        let x = up as f64 / held as f64;
        if let Some(a) = self.status.lock().archive.as_mut() {
            a.amplification = Some(x);
        }
        self.metrics
            .archive_amplification
            .get_or_create(&Metrics::label(&self.source))
            .set(x);
        Ok(())
    }

    /// Reads `[from, to)` of `file` (durable bytes: the caller checked).
    async fn read_range(&self, file: &str, from: u64, to: u64) -> Result<Vec<u8>, TierError> {
        let path = self.dir.join(file);
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            let io = |source| TierError::Read {
                path: path.clone(),
                source,
            };
            let mut f = std::fs::File::open(&path).map_err(io)?;
            f.seek(SeekFrom::Start(from)).map_err(io)?;
            let len = usize::try_from(to - from).unwrap_or(usize::MAX);
            let mut buf = vec![0u8; len];
            f.read_exact(&mut buf).map_err(io)?;
            Ok(buf)
        })
        .await
        .map_err(|source| TierError::Task {
            what: "read",
            source,
        })?
    }

    /// Ships chunk `[from, to)` of `file` and records it.
    async fn ship_chunk(&self, file: &str, from: u64, to: u64) -> Result<(), TierError> {
        let plain = self.read_range(file, from, to).await?;
        let sha = hex::encode(Sha256::digest(&plain));
        let desc = self.tier.codec();
        let key = objects::chunk_key(&self.source, file, from, to, self.epoch, desc);
        let stored = self.encode(plain).await?;
        let obj = match self.tier.store.put_bytes(&key, &stored).await {
            Ok(o) => o,
            Err(StoreError::Exists(_)) => self.adopt_small(&key, desc, &sha).await?,
            Err(e) => return Err(e.into()),
        };
        let stored = obj.bytes;
        self.record(file, ArchiveKind::Chunk, (from, to), sha, obj, desc)
            .await?;
        self.count(to - from, stored, to - from);
        Ok(())
    }

    /// Records the stored object `obj` holding plaintext `range` (sha256 `sha`) of `file`.
    async fn record(
        &self,
        file: &str,
        kind: ArchiveKind,
        (start, end): (u64, u64),
        sha: String,
        obj: objstore::store::StoredObject,
        desc: &str,
    ) -> Result<(), TierError> {
        self.catalog
            .record_archive_object(&ArchiveObjectRow {
                source: self.source.clone(),
                file: file.to_string(),
                kind,
                start_offset: start,
                end_offset: end,
                object_key: obj.key,
                sha256: sha,
                stored_bytes: obj.bytes,
                stored_sha256: obj.sha256,
                codec: desc.to_string(),
                key_id: self.key_id(),
                epoch: self.epoch,
                created_at: 0,
                deleted_at: None,
            })
            .await?;
        Ok(())
    }

    /// `plain` encoded with the configured codec (on a blocking thread).
    async fn encode(&self, plain: Vec<u8>) -> Result<Vec<u8>, TierError> {
        let (comp, ring) = (
            self.tier.settings.compression,
            self.tier.settings.keyring.clone(),
        );
        tokio::task::spawn_blocking(move || codec::encode(&plain, comp, ring.current()))
            .await
            .map_err(|source| TierError::Task {
                what: "encode",
                source,
            })?
            .map_err(TierError::from)
    }

    /// User metadata of a whole-file object (`x-amz-meta-*` on S3): plaintext SHA-256,
    /// codec, plaintext size, and the key id when encrypted.
    fn object_metadata(&self, sha: &str, desc: &str, size: u64) -> Vec<(&'static str, String)> {
        let mut meta = vec![
            ("sha256", sha.to_string()),
            ("codec", desc.to_string()),
            ("size", size.to_string()),
        ];
        if let Some(id) = self.key_id() {
            meta.push(("key-id", id));
        }
        meta
    }

    fn key_id(&self) -> Option<String> {
        self.tier
            .settings
            .keyring
            .current()
            .map(|k| k.id().to_string())
    }

    /// An object left by a crash (the key exists): read back and decoded, adopted when
    /// its plaintext has `sha`.
    async fn adopt_small(
        &self,
        key: &str,
        desc: &str,
        sha: &str,
    ) -> Result<objstore::store::StoredObject, TierError> {
        // A chunk is at most ship_bytes of plaintext; its encoding adds little.
        let max = usize::try_from(self.tier.settings.ship_bytes)
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
            .saturating_add(1 << 20);
        let stored = self.tier.store.get_bytes(key, max).await?;
        let plain = codec::decode(&stored, desc, self.tier.settings.keyring.clone())?;
        let got = hex::encode(Sha256::digest(&plain));
        adopted(key, &got, sha)?;
        Ok(objstore::store::StoredObject {
            key: key.to_string(),
            bytes: stored.len() as u64,
            sha256: hex::encode(Sha256::digest(&stored)),
        })
    }

    /// One pass of the file loop: evicts, retires the chunks of files the store holds
    /// whole, and ships the oldest SUCC files the store lacks, [`FILES_IN_FLIGHT`] at
    /// once. A backlog of closed files (many small ones after a catch-up) goes out
    /// batch after batch from one listing, at most 64 batches per pass, so eviction and
    /// the figures stay current and a file's share of the listing stays small whatever
    /// the archive's size.
    async fn file_pass(&self) -> Result<(), TierError> {
        let fingerprint = self.fingerprint().await?;
        let last = *node::util::lock(&self.file_seen);
        let unchanged = last.is_some_and(|(f, at)| f == fingerprint && at.elapsed() < FULL_PASS);
        let age_due = node::util::lock(&self.evict_due).is_some_and(|t| catalog::unix_now() >= t);
        if unchanged && !age_due && !self.low_on_space() {
            return Ok(());
        }
        if let Err(e) = self.whole_file_pass().await {
            // Retried in full, whatever the catalog says then.
            *node::util::lock(&self.file_seen) = None;
            return Err(e);
        }
        *node::util::lock(&self.file_seen) = Some((fingerprint, Instant::now()));
        Ok(())
    }

    /// Whether the data directory's file system has less than `min_free_bytes` free
    /// (one `statvfs`).
    fn low_on_space(&self) -> bool {
        let min_free = self.tier.settings.min_free_bytes;
        min_free > 0 && free_bytes(&self.dir).is_some_and(|f| f < min_free)
    }

    /// [`Shipper::file_pass`] when something changed, a file is old enough to evict,
    /// the disk is low on space, or [`FULL_PASS`] went by.
    async fn whole_file_pass(&self) -> Result<(), TierError> {
        self.publish_amplification().await?;
        let (files, objs) = self.listing().await?;
        self.evict(&files, &objs).await?;
        let objects = by_file(&objs);
        let mut todo = Vec::new();
        let mut retired = false;
        for f in &files {
            let Some(held) = objects.get(f.name.as_str()) else {
                if f.state == FileState::Succ {
                    todo.push((f, Vec::new()));
                }
                continue;
            };
            if held.whole.is_some() {
                if !held.chunks.is_empty() {
                    self.retire_chunks(&f.name, &held.chunks).await?;
                    retired = true;
                } else if self.needs_sweep(f) {
                    // A chunk a crash left without its row, for a file shipped whole since:
                    // looked for once per process, for files checked in the last day.
                    self.retire_chunks(&f.name, &[]).await?;
                    node::util::lock(&self.swept).insert(f.name.clone());
                }
                continue;
            }
            if f.state == FileState::Succ {
                todo.push((f, held.chunks.clone()));
            }
        }
        let worked = retired || !todo.is_empty();
        let mut todo = todo.into_iter();
        for _ in 0..64 {
            let batch: Vec<_> = todo.by_ref().take(FILES_IN_FLIGHT).collect();
            if batch.is_empty() {
                break;
            }
            self.ship_batch(batch).await?;
        }
        if worked {
            // Rows changed (and a pass ships at most 256 files): the next pass reads the
            // catalog again instead of trusting the fingerprint read before this one.
            self.status.touch_rows();
        }
        Ok(())
    }

    /// Ships `batch` (SUCC files the store lacks, with their chunks) at once; each
    /// file's chunks go once it is whole. The first failure is the batch's.
    async fn ship_batch(
        &self,
        batch: Vec<(&BinlogFileRow, Vec<&ArchiveObjectRow>)>,
    ) -> Result<(), TierError> {
        let done = futures::future::join_all(batch.into_iter().map(|(f, chunks)| async move {
            // The pass's listing may be older than this batch: a file archive retention
            // forgot meanwhile, or whose row changed, is left to the next pass.
            let now = self.catalog.get_file(&self.source, &f.name).await?;
            if now.as_ref().is_none_or(|r| {
                r.state != FileState::Succ || r.sha256 != f.sha256 || r.size != f.size
            }) {
                return Ok(());
            }
            let cov = covered(&chunks);
            self.ship_file(f, f.size.saturating_sub(cov)).await?;
            self.retire_chunks(&f.name, &chunks).await
        }))
        .await;
        done.into_iter().collect::<Result<Vec<()>, TierError>>()?;
        Ok(())
    }

    /// Whether `f`'s chunk prefix is still to be looked at for crash leftovers: not yet
    /// in this process, and its state changed in the last day.
    fn needs_sweep(&self, f: &BinlogFileRow) -> bool {
        catalog::unix_now() - f.state_changed_at < 86_400
            && !node::util::lock(&self.swept).contains(&f.name)
    }

    /// The local tier as a cache: removes from the local disk SUCC files the store holds
    /// whole (checked with a HEAD first), oldest first, never the two newest files,
    /// when `local_retention` says they are old enough, while the source's files hold
    /// more than `local_bytes`, or while the file system has less than `min_free_bytes`
    /// free (then the cache of read-back copies is emptied first).
    async fn evict(
        &self,
        files: &[BinlogFileRow],
        objs: &[ArchiveObjectRow],
    ) -> Result<(), TierError> {
        // Files archive retention deleted are no longer in the store either.
        let objects = by_file(objs);
        let whole = |name: &str| objects.get(name).and_then(|h| h.whole);
        self.evicted.retain(|name| whole(name).is_some());
        let s = &self.tier.settings;
        if self.low_on_space() {
            let freed = super::cache::empty(&s.cache_dir);
            if freed > 0 {
                warn!(
                    freed,
                    "low on disk space: emptied the cache of files read back from the store"
                );
            }
        }
        *node::util::lock(&self.evict_due) = None;
        if s.local_retention.is_none() && s.local_bytes.is_none() && !self.low_on_space() {
            return Ok(());
        }
        let mut due: Option<i64> = None;
        let now = catalog::unix_now();
        let keep_s = s
            .local_retention
            .map(|k| i64::try_from(k.as_secs()).unwrap_or(i64::MAX));
        let mut local_total: u64 = files
            .iter()
            .filter(|f| self.dir.join(&f.name).exists())
            .map(|f| f.size)
            .sum();
        for f in files.iter().take(files.len().saturating_sub(2)) {
            if f.state != FileState::Succ {
                continue;
            }
            let Some(o) = whole(&f.name) else {
                continue;
            };
            let path = self.dir.join(&f.name);
            if !path.exists() {
                continue;
            }
            let since = f.last_event_time.unwrap_or(f.state_changed_at);
            let age = now - since;
            let why = if keep_s.is_some_and(|k| age >= k) {
                "older than local_retention"
            } else if s.local_bytes.is_some_and(|b| local_total > b) {
                "over local_bytes"
            } else if self.low_on_space() {
                "less than min_free_bytes free"
            } else {
                if let Some(k) = keep_s {
                    let at = since.saturating_add(k);
                    due = Some(due.map_or(at, |d| d.min(at)));
                }
                continue;
            };
            if !self.tier.store.exists(&o.object_key).await? {
                return Err(TierError::ObjectMissing {
                    file: f.name.clone(),
                    key: o.object_key.clone(),
                });
            }
            self.evicted.insert(&f.name, f.size);
            std::fs::remove_file(&path).map_err(|source| TierError::Read {
                path: path.clone(),
                source,
            })?;
            local_total = local_total.saturating_sub(f.size);
            info!(file = %f.name, age_s = age, why, "evicted from the local disk: the archive store holds it");
        }
        *node::util::lock(&self.evict_due) = due;
        Ok(())
    }

    /// Marks the chunk rows of `file` deleted (fenced by the shipper's tenure: a stale
    /// owner is refused here and deletes nothing), then deletes `chunks` from the store
    /// and every other object under the file's chunk prefix (a chunk a crash left
    /// without its row). Objects left by a crash after the marking are found by the
    /// sweep a shipper makes once of each file whose state changed in the last day.
    async fn retire_chunks(
        &self,
        file: &str,
        chunks: &[&ArchiveObjectRow],
    ) -> Result<(), TierError> {
        self.catalog.mark_chunks_deleted(&self.source, file).await?;
        for c in chunks {
            self.tier.store.delete(&c.object_key).await?;
        }
        let prefix = objects::chunks_prefix(&self.source, file);
        for (key, _) in self.tier.store.list(&prefix).await? {
            self.tier.store.delete(&key).await?;
        }
        Ok(())
    }

    /// Ships SUCC file `f` whole (`new` of its bytes were not in the store as chunks),
    /// then its manifest, then its row.
    async fn ship_file(&self, f: &BinlogFileRow, new: u64) -> Result<(), TierError> {
        let Some(want) = f.sha256.clone() else {
            return Err(TierError::NoChecksum {
                file: f.name.clone(),
            });
        };
        let key = objects::file_key(&self.source, &f.name, self.epoch);
        let desc = self.tier.codec();
        let obj = if f.size <= SMALL_FILE {
            self.upload_small(f, &key, desc, &want).await?
        } else {
            self.upload_streamed(f, &key, desc, &want).await?
        };
        self.ship_index_segment(f, desc).await;
        let manifest = Manifest {
            version: 1,
            source: self.source.clone(),
            file: f.name.clone(),
            object_key: key.clone(),
            size: f.size,
            sha256: want.clone(),
            stored_bytes: obj.bytes,
            stored_sha256: obj.sha256.clone(),
            codec: desc.to_string(),
            key_id: self.key_id(),
            epoch: self.epoch,
            first_gtid: f.first_gtid.clone(),
            last_gtid: f.last_gtid.clone(),
            first_event_time: f.first_event_time,
            last_event_time: f.last_event_time,
            created_at: catalog::unix_now(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(TierError::Manifest)?;
        match self
            .tier
            .store
            .put_bytes(
                &objects::manifest_key(&self.source, &f.name, self.epoch),
                &json,
            )
            .await
        {
            Ok(_) | Err(StoreError::Exists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let stored = obj.bytes;
        self.record(&f.name, ArchiveKind::File, (0, f.size), want, obj, desc)
            .await?;
        self.count(f.size, stored, new);
        info!(file = %f.name, bytes = f.size, stored, "binlog shipped whole to the archive store");
        Ok(())
    }

    /// Writes the transaction index segment of `f` ([`super::segment`]) beside its
    /// whole object, encoded with `desc`. Best effort: it is derived data, and a reader
    /// without it reads the file itself, so a failure is only logged.
    async fn ship_index_segment(&self, f: &BinlogFileRow, desc: &str) {
        let path = self.dir.join(&f.name);
        let (name, size) = (f.name.clone(), f.size);
        let records = tokio::task::spawn_blocking(move || {
            super::index::file_transactions(&path, &name, size)
        })
        .await;
        let seg = match records {
            Ok(Ok(r)) => super::segment::encode(&r, f.size),
            Ok(Err(e)) => {
                warn!(file = %f.name, error = %e, "no transaction index segment for this file (readers index the file itself)");
                return;
            }
            Err(e) => {
                warn!(file = %f.name, error = %e, "the index segment task failed");
                return;
            }
        };
        let key = objects::index_key(&self.source, &f.name, self.epoch, desc);
        let stored = match self.encode(seg).await {
            Ok(s) => s,
            Err(e) => {
                warn!(file = %f.name, error = %e, "cannot encode the transaction index segment");
                return;
            }
        };
        match self.tier.store.put_bytes(&key, &stored).await {
            Ok(_) | Err(StoreError::Exists(_)) => {}
            Err(e) => {
                warn!(file = %f.name, key, error = %e, "cannot store the transaction index segment (readers index the file itself)")
            }
        }
    }

    /// Uploads `f` streamed through the encoder (multipart, bounded memory); the
    /// plaintext SHA-256 is checked against `want` at the end (a mismatch removes the
    /// object again).
    async fn upload_streamed(
        &self,
        f: &BinlogFileRow,
        key: &str,
        desc: &'static str,
        want: &str,
    ) -> Result<objstore::store::StoredObject, TierError> {
        let path = self.dir.join(&f.name);
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        let (comp, ring) = (
            self.tier.settings.compression,
            self.tier.settings.keyring.clone(),
        );
        let reader = tokio::task::spawn_blocking(move || -> Result<(String, u64), TierError> {
            use std::io::Read;
            let io = |source| TierError::Read {
                path: path.clone(),
                source,
            };
            let mut file = std::fs::File::open(&path).map_err(io)?;
            let mut enc = Encoder::new(comp, ring.current())?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; READ_STEP];
            let mut total = 0u64;
            let mut out = Vec::with_capacity(READ_STEP);
            loop {
                let n = file.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                let piece = buf.get(..n).unwrap_or_default();
                h.update(piece);
                total += n as u64;
                enc.write(piece, &mut out)?;
                if !out.is_empty()
                    && tx
                        .blocking_send(Ok(std::mem::take(&mut out).into()))
                        .is_err()
                {
                    return Err(TierError::UploadStopped);
                }
            }
            enc.finish(&mut out)?;
            if !out.is_empty() {
                let _ = tx.blocking_send(Ok(out.into()));
            }
            Ok((hex::encode(h.finalize()), total))
        });
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
        let body = tokio_util::io::StreamReader::new(Box::pin(stream));
        let meta = self.object_metadata(want, desc, f.size);
        let put = self
            .tier
            .store
            .put_stream_with(key, body, &AtomicU64::new(0), &meta)
            .await;
        let read = reader.await.map_err(|source| TierError::Task {
            what: "read",
            source,
        })?;
        let obj = match put {
            Ok(o) => {
                let (sha, len) = read?;
                if sha != want || len != f.size {
                    self.tier.store.delete(key).await?;
                    return Err(TierError::Changed {
                        file: f.name.clone(),
                        size: len,
                        sha256: sha,
                        recorded_size: f.size,
                        recorded: want.to_owned(),
                    });
                }
                o
            }
            Err(StoreError::Exists(_)) => self.adopt_file(key, desc, want).await?,
            Err(e) => return Err(e.into()),
        };
        Ok(obj)
    }

    /// Uploads a file of at most [`SMALL_FILE`] bytes in one request, its plaintext
    /// SHA-256 checked against `want` first.
    async fn upload_small(
        &self,
        f: &BinlogFileRow,
        key: &str,
        desc: &'static str,
        want: &str,
    ) -> Result<objstore::store::StoredObject, TierError> {
        let plain = self.read_range(&f.name, 0, f.size).await?;
        let sha = hex::encode(Sha256::digest(&plain));
        if sha != want {
            return Err(TierError::Changed {
                file: f.name.clone(),
                size: plain.len() as u64,
                sha256: sha,
                recorded_size: f.size,
                recorded: want.to_owned(),
            });
        }
        let stored = self.encode(plain).await?;
        let meta = self.object_metadata(want, desc, f.size);
        match self.tier.store.put_bytes_with(key, &stored, &meta).await {
            Ok(o) => Ok(o),
            Err(StoreError::Exists(_)) => self.adopt_small(key, desc, want).await,
            Err(e) => Err(e.into()),
        }
    }

    /// A whole-file object left by a crash: streamed back and decoded, adopted when its
    /// plaintext has `sha`.
    async fn adopt_file(
        &self,
        key: &str,
        desc: &str,
        sha: &str,
    ) -> Result<objstore::store::StoredObject, TierError> {
        let mut s = Box::pin(self.tier.store.get_stream(key).await?);
        let mut dec = Decoder::new(desc, self.tier.settings.keyring.clone())?;
        let (mut hp, mut hs, mut stored) = (Sha256::new(), Sha256::new(), 0u64);
        let mut out = Vec::new();
        while let Some(piece) = s.next().await {
            let piece = piece?;
            hs.update(&piece);
            stored += piece.len() as u64;
            dec.write(&piece, &mut out)?;
            hp.update(&out);
            out.clear();
        }
        dec.finish(&mut out)?;
        hp.update(&out);
        let got = hex::encode(hp.finalize());
        adopted(key, &got, sha)?;
        Ok(objstore::store::StoredObject {
            key: key.to_string(),
            bytes: stored,
            sha256: hex::encode(hs.finalize()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(start: u64, end: u64) -> ArchiveObjectRow {
        ArchiveObjectRow {
            source: "s".into(),
            file: "f".into(),
            kind: ArchiveKind::Chunk,
            start_offset: start,
            end_offset: end,
            object_key: String::new(),
            sha256: String::new(),
            stored_bytes: 0,
            stored_sha256: String::new(),
            codec: "none".into(),
            key_id: None,
            epoch: 0,
            created_at: 0,
            deleted_at: None,
        }
    }

    #[test]
    fn coverage_is_the_contiguous_prefix() {
        let (a, b, c) = (chunk(0, 100), chunk(100, 250), chunk(300, 400));
        assert_eq!(covered(&[]), 0);
        assert_eq!(covered(&[&b, &a]), 250);
        assert_eq!(covered(&[&a, &c]), 100, "a hole stops the prefix");
        assert_eq!(covered(&[&b]), 0, "nothing from offset 0");
    }
}
