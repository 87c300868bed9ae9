//! Supervision of one source: start its tasks, recover its store, and run the reconnect
//! loop around [`super::stream`].
//!
//! ```text
//!  primary --COM_BINLOG_DUMP--> reader task --bounded queue---> writer lane ---> file
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

use catalog::{Catalog, FileProgress};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use super::check::check_loop;
use super::context::{SourceCommand, SourceCtx, SourceRuntime};
use super::error::StreamEnd;
use super::gaps::record_gap;
use super::poll::poll_primary;
use super::stream::{stream_once, Attempt};
use super::writer::{self, WriterError, WriterMsg, WriterNote, WriterTx};
use archive::local::{self, LocalFiles};
use node::config::Source;
use node::status::PrimaryView;
use node::status::{CaptureState, Metrics, StatusCell};

/// What a source's capture receives from the API, kept across the node's tenures of
/// the source (each tenure's capture borrows it).
pub struct SourceInbox {
    /// Restart commands.
    commands: mpsc::Receiver<SourceCommand>,
    /// Files to check now; the checker of a tenure holds the lock while it runs.
    checks: Arc<tokio::sync::Mutex<mpsc::Receiver<String>>>,
    /// The primary's latest binlog list.
    primary: Arc<std::sync::Mutex<PrimaryView>>,
}

impl SourceInbox {
    /// Drops the restart commands that arrived while no capture ran (a fleet node on
    /// standby); returns how many. A new tenure starts from the archive's state, not
    /// from an operator's request made to another capture.
    pub fn forget_commands(&mut self) -> usize {
        let mut n = 0;
        while self.commands.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

/// A source's handles: the runtime the API holds (state Starting) and the inbox its
/// capture reads.
pub fn source_handles(source: &Source) -> (SourceRuntime, SourceInbox) {
    let status = StatusCell::new(node::status::SourceStatus::new(
        &source.name,
        &source.url.redacted(),
    ));
    let (tx, rx) = mpsc::channel(16);
    let (check_tx, check_rx) = mpsc::channel(64);
    let primary = Arc::new(std::sync::Mutex::new(PrimaryView::default()));
    let rt = SourceRuntime {
        name: source.name.clone(),
        status,
        commands: tx,
        checks: check_tx,
        primary: primary.clone(),
    };
    let inbox = SourceInbox {
        commands: rx,
        checks: Arc::new(tokio::sync::Mutex::new(check_rx)),
        primary,
    };
    (rt, inbox)
}

/// Runs the capture of `ctx.source` until `ctx.cancel` (shut-down, or the end of the
/// tenure): recovery, the writer, poller and checker, the reconnect loop. An error
/// (the store could not be opened or recovered) is recorded in the status and, while
/// the tenure lasts, in the catalog.
pub async fn capture(ctx: &SourceCtx, inbox: &mut SourceInbox) -> anyhow::Result<()> {
    let r = run_source(ctx, inbox).await;
    if let Err(e) = &r {
        let msg = format!("{e:#}");
        {
            let mut s = ctx.status.lock();
            s.state = CaptureState::Failed;
            s.last_error = Some(msg.clone());
        }
        if ctx.may_write() {
            let _ = ctx
                .shared
                .catalog
                .set_source_state(&ctx.source.name, "failed", Some(&msg))
                .await;
        }
    }
    r
}

/// What recovery found: the store, where capture resumes, and the next index ordinal.
struct Recovered {
    store: Arc<LocalFiles>,
    resume: local::Resume,
    next_ordinal: u64,
}

async fn run_source(ctx: &SourceCtx, inbox: &mut SourceInbox) -> anyhow::Result<()> {
    let primary_view = inbox.primary.clone();
    use anyhow::Context;
    let (shared, name) = (&ctx.shared, &ctx.source.name);
    shared
        .catalog
        .upsert_source(name, &ctx.source.url.redacted())
        .await
        .context("record the source in the catalog")?;
    shared
        .catalog
        .set_source_state(name, "starting", None)
        .await?;

    // 1. Store recovery and index catch-up (blocking I/O).
    let Recovered {
        store,
        resume,
        next_ordinal,
    } = recover(ctx).await?;
    if ctx.source.archive_only {
        ctx.status.lock().state = CaptureState::Stopped;
        ctx.status
            .note("archive only (archive_only = true): nothing connects to the primary");
        shared
            .catalog
            .set_source_state(name, "archive-only", None)
            .await?;
        ctx.cancel.cancelled().await;
        return Ok(());
    }

    // 2. The writer and syncer (lanes on the process's pools), and the note handler.
    let writer::Started { tx: wtx, notes } = writer::start(
        name,
        &store,
        &shared.index,
        &shared.metrics,
        &shared.pools,
        next_ordinal,
        shared.capture.fsync_interval,
    );
    let checker_wake = Arc::new(Notify::new());
    let writer_failed = CancellationToken::new();
    tokio::spawn(
        handle_notes(
            ctx.clone(),
            notes,
            checker_wake.clone(),
            writer_failed.clone(),
        )
        .in_current_span(),
    );

    // 3. Poller and checker.
    tokio::spawn(
        poll_primary(ctx.clone(), primary_view.clone()).instrument(tracing::info_span!("poll")),
    );
    tokio::spawn(
        check_loop(
            ctx.clone(),
            store.clone(),
            primary_view.clone(),
            checker_wake.clone(),
            inbox.checks.clone(),
        )
        .instrument(tracing::info_span!("check")),
    );
    checker_wake.notify_one();

    // 4. The outer reconnect loop, then shut-down.
    let attempt = Attempt {
        ctx,
        wtx: &wtx,
        store: &store,
        writer_failed: &writer_failed,
        primary: &primary_view,
    };
    reconnect_loop(&attempt, &mut inbox.commands, resume).await;
    wtx.close().await;
    ctx.status.lock().state = CaptureState::Stopped;
    if ctx.may_write() {
        let _ = shared.catalog.set_source_state(name, "stopped", None).await;
    }
    Ok(())
}

/// Opens the store (crash recovery), brings the index up to date with the files, and
/// makes the status and the catalog agree with the disk.
async fn recover(ctx: &SourceCtx) -> anyhow::Result<Recovered> {
    use anyhow::Context;
    let (shared, name, status) = (&ctx.shared, &ctx.source.name, &ctx.status);
    let (data_dir, moved_name) = (shared.data_dir.clone(), name.clone());
    let (store, resume, note) =
        tokio::task::spawn_blocking(move || LocalFiles::open(&data_dir, &moved_name))
            .await?
            .with_context(|| format!("open the store of source {name}"))?;
    if let Some(n) = note {
        info!(source = %name, "{n}");
        status.note(format!("recovery: {n}"));
    }
    let store = Arc::new(store);
    let (end_file, end_len) = match &resume {
        local::Resume::Empty => (None, 0),
        local::Resume::At { file, pos } => (Some(file.clone()), *pos),
        local::Resume::Next { closed, .. } => {
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
        let (index, moved_name) = (shared.index.clone(), name.clone());
        tokio::task::spawn_blocking(move || index.clear(&moved_name))
            .await?
            .context("clear the index of an empty archive")?;
    }
    if let Some(f) = &end_file {
        let (index, moved_store, moved_name, file) =
            (shared.index.clone(), store.clone(), name.clone(), f.clone());
        let (pos, added) = tokio::task::spawn_blocking(move || {
            index.catch_up(&moved_name, &moved_store, &file, end_len)
        })
        .await?
        .context("bring the index up to date")?;
        if added > 0 {
            info!(source = %name, added, "re-indexed transactions from the stored files");
        }
        next_ordinal = pos.map(|p| p.next_ordinal).unwrap_or(0);
        status.lock().durable_file = Some(f.clone());
        status.lock().durable_pos = Some(end_len);
        status.durable_moved();
    }
    if let Ok(Some(last)) = shared.index.last(name) {
        status.lock().last_gtid = last.gtid;
    }
    reconcile_catalog(&shared.catalog, name, &store, &resume).await?;
    super::failover::restore(ctx, &store)
        .await
        .context("read the source's timelines")?;
    status.lock().url = super::failover::current_url(ctx).redacted();
    Ok(Recovered {
        store,
        resume,
        next_ordinal,
    })
}

/// How many CRC failures in a row at the same position make the damage definite.
const CRC_STRIKES: u32 = 5;

/// The reconnect loop's memory between attempts.
struct Retry {
    /// Delay before the next attempt (capped exponential).
    backoff: Duration,
    /// The position of the last CRC failure and how many attempts in a row failed there.
    crc_strikes: (Option<(String, u64)>, u32),
    /// The operator accepted a gap: the next attempt starts from the primary's oldest
    /// binlog after the archive.
    accept_gap: bool,
}

/// Streams, and after each attempt reacts to why it ended: a definite reason stops the
/// source until a restart command (recording a gap after a purge), a transient one
/// reconnects after the backoff. Always resumes from the writer's durable position.
/// Returns on cancellation or when the writer is gone.
async fn reconnect_loop(
    a: &Attempt<'_>,
    commands: &mut mpsc::Receiver<SourceCommand>,
    mut resume: local::Resume,
) {
    let ctx = a.ctx;
    let mut retry = Retry {
        backoff: ctx.shared.capture.reconnect_min_backoff,
        crc_strikes: (None, 0),
        accept_gap: false,
    };
    // Since when no attempt has streamed for long (failover_timeout counts from here).
    let mut down_since: Option<Instant> = None;
    loop {
        if a.writer_failed.is_cancelled() {
            writer_gone(ctx, None).await;
            return;
        }
        match durable_position(a.wtx).await {
            Ok(Some((file, pos))) => resume = local::Resume::At { file, pos },
            Ok(None) => {}
            Err(why) => {
                writer_gone(ctx, why).await;
                return;
            }
        }
        if retry.accept_gap {
            resume = local::Resume::Empty;
        }
        resume = new_timeline_start(ctx, resume);
        let attempt_started = Instant::now();
        let end = stream_once(a, &resume, retry.accept_gap).await;
        if matches!(end, StreamEnd::Cancelled) {
            return;
        }
        retry.accept_gap = false;
        if attempt_started.elapsed() >= Duration::from_secs(10) {
            // The connection worked for a while: start the backoff over.
            retry.backoff = ctx.shared.capture.reconnect_min_backoff;
            down_since = None;
        }
        let down_for = down_since.get_or_insert_with(Instant::now).elapsed();
        match follow_if_due(a, commands, &end, down_for).await {
            Follow::Stay => {}
            Follow::Switched => {
                down_since = None;
                retry.backoff = ctx.shared.capture.reconnect_min_backoff;
                continue;
            }
            Follow::Restarted => continue,
            Follow::Gone => return,
        }
        let (msg, definite) = judge(&mut retry, &end);
        if definite {
            let msg = explain_definite(a, &resume, &end, msg).await;
            fail(ctx, &msg).await;
            match wait_for_restart(commands, &ctx.cancel).await {
                None => return,
                Some(gap) => {
                    retry.accept_gap = gap;
                    retry.backoff = ctx.shared.capture.reconnect_min_backoff;
                    ctx.status.lock().last_error = None;
                    continue;
                }
            }
        }
        if !back_off(ctx, &msg, retry.backoff).await {
            return;
        }
        retry.backoff = (retry.backoff * 2).min(ctx.shared.capture.reconnect_max_backoff);
    }
}

/// What the reconnect loop does after [`follow_if_due`].
enum Follow {
    /// No switch: go on as the attempt's end says (backoff, or a definite stop).
    Stay,
    /// Capture switched servers: the next attempt streams from the new one now.
    Switched,
    /// A definite refusal to switch stopped the source, and a restart came.
    Restarted,
    /// Cancelled, or the writer is gone.
    Gone,
}

/// After an attempt that ended with `end`: when the server is not the primary
/// ([`StreamEnd::NotPrimary`]), or a transient end comes `down_for` past the source's
/// `failover_timeout`, drains the writer (the switch starts after the archive's true
/// last transaction) and looks for the primary ([`super::failover::follow`]). A
/// definite refusal stops the source until a restart command.
async fn follow_if_due(
    a: &Attempt<'_>,
    commands: &mut mpsc::Receiver<SourceCommand>,
    end: &StreamEnd,
    down_for: Duration,
) -> Follow {
    let ctx = a.ctx;
    let why = match end {
        StreamEnd::NotPrimary(why) => Some(why.clone()),
        e if !e.is_definite() => super::failover::overdue(&ctx.source, down_for),
        _ => None,
    };
    let Some(why) = why else {
        return Follow::Stay;
    };
    if let Err(why) = durable_position(a.wtx).await {
        writer_gone(ctx, why).await;
        return Follow::Gone;
    }
    match super::failover::follow(ctx, &why).await {
        Ok(true) => Follow::Switched,
        Ok(false) => Follow::Stay,
        Err(e) => {
            fail(ctx, &e.to_string()).await;
            match wait_for_restart(commands, &ctx.cancel).await {
                None => Follow::Gone,
                Some(_) => Follow::Restarted,
            }
        }
    }
}

/// A switch to a new timeline resumes at its first file's position 4, whatever the
/// writer's position on the old timeline (`super::failover`).
fn new_timeline_start(ctx: &SourceCtx, resume: local::Resume) -> local::Resume {
    let (timeline, first) = {
        let up = node::util::lock(&ctx.upstream);
        (up.timeline, up.first_file.clone())
    };
    let at = match &resume {
        local::Resume::At { file, .. } => Some(file),
        local::Resume::Next { next, .. } => Some(next),
        local::Resume::Empty => None,
    };
    match (at, first) {
        (Some(f), Some(first)) if binlog::split_timeline(f).0 < timeline => local::Resume::At {
            file: first,
            pos: 4,
        },
        _ => resume,
    }
}

/// Where to resume: the writer's durable position once it has drained (None: nothing
/// written yet). `Err` when the writer is gone, with its error when it said one.
async fn durable_position(wtx: &WriterTx) -> Result<Option<(String, u64)>, Option<WriterError>> {
    let (rtx, rrx) = oneshot::channel();
    if wtx.send(WriterMsg::Sync { reply: rtx }).await.is_err() {
        return Err(None);
    }
    match rrx.await {
        Ok(Ok(at)) => Ok(at),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// The message and whether the end is definite; counts CRC strikes: the same bad event
/// [`CRC_STRIKES`] times in a row means the primary's binlog is damaged there.
fn judge(retry: &mut Retry, end: &StreamEnd) -> (String, bool) {
    let msg = end.to_string();
    let StreamEnd::Crc { file, pos, .. } = end else {
        return (msg, end.is_definite());
    };
    let at = (file.clone(), *pos);
    if retry.crc_strikes.0.as_ref() == Some(&at) {
        retry.crc_strikes.1 += 1;
    } else {
        retry.crc_strikes = (Some(at), 1);
    }
    if retry.crc_strikes.1 >= CRC_STRIKES {
        (
            format!("{msg}; {CRC_STRIKES} attempts gave the same bad event: the primary's binlog is damaged at {file}:{pos}"),
            true,
        )
    } else {
        (msg, false)
    }
}

/// For ERROR 1236 (the primary cannot send the binlog asked for), finds out whether it
/// was purged (a gap, recorded) or the position refused, and adds that to the message.
async fn explain_definite(
    a: &Attempt<'_>,
    resume: &local::Resume,
    end: &StreamEnd,
    msg: String,
) -> String {
    if end.server_code() != Some(mysql_wire::errcode::ER_MASTER_FATAL_ERROR_READING_BINLOG) {
        return msg;
    }
    let requested = match resume {
        local::Resume::At { file, .. } => Some(file.clone()),
        local::Resume::Next { next, .. } => Some(next.clone()),
        local::Resume::Empty => None,
    };
    let ctx = a.ctx;
    match record_gap(ctx, a.store, &ctx.source.name, requested.as_deref(), &msg).await {
        Some(extra) => format!("{msg}; {extra}"),
        None => msg,
    }
}

/// Records a transient interruption and sleeps `backoff`; false when cancelled.
async fn back_off(ctx: &SourceCtx, msg: &str, backoff: Duration) -> bool {
    let name = &ctx.source.name;
    warn!(source = %name, error = %msg, backoff = ?backoff, "capture interrupted; reconnecting");
    {
        let mut s = ctx.status.lock();
        s.state = CaptureState::Reconnecting;
        s.last_error = Some(msg.to_owned());
        s.reconnects += 1;
    }
    ctx.shared
        .metrics
        .reconnects
        .get_or_create(&Metrics::label(name))
        .inc();
    let _ = ctx
        .shared
        .catalog
        .set_source_state(name, "reconnecting", Some(msg))
        .await;
    tokio::select! {
        _ = ctx.cancel.cancelled() => {}
        _ = tokio::time::sleep(backoff) => {}
    }
    !ctx.cancel.is_cancelled()
}

/// Applies the writer's notes. The live status first, at once: the durable end (which
/// the fake primary's dumps wait on; a semi-sync stream's acks wait on the syncer's own
/// signal, `WriterTx::synced`, which comes earlier) and a writer failure
/// (cancels `failed`); then, in order on a task of their own so that no catalog round
/// trip delays the next durable end, the catalog rows (only while the tenure lasts):
/// the active file's row (written at once for a new file, then at most once a second:
/// the control file is the durable record, the catalog row is for people and the API)
/// and REPORTED on close (with a wake-up for the checker). Ends when the writer is gone
/// and the rows are written.
async fn handle_notes(
    ctx: SourceCtx,
    mut notes: mpsc::UnboundedReceiver<WriterNote>,
    wake: Arc<Notify>,
    failed: CancellationToken,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let rows = tokio::spawn(record_notes(ctx.clone(), rx, wake));
    let (name, status) = (&ctx.source.name, &ctx.status);
    while let Some(n) = notes.recv().await {
        match &n {
            WriterNote::Durable {
                file,
                len,
                progress,
            } => {
                {
                    let mut s = status.lock();
                    s.durable_file = Some(file.clone());
                    s.durable_pos = Some(*len);
                    if progress.last_gtid.is_some() {
                        s.last_gtid = progress.last_gtid.clone();
                    }
                    if let Some(t) = progress.last_event_time {
                        s.last_event_time = u32::try_from(t).ok();
                    }
                }
                status.durable_moved();
            }
            WriterNote::Closed(_) => {}
            WriterNote::Failed(e) => {
                warn!(source = %name, error = %e, "the writer failed");
                status.lock().last_error = Some(e.to_string());
                failed.cancel();
                continue;
            }
        }
        let _ = tx.send(n);
    }
    drop(tx);
    let _ = rows.await;
}

/// The catalog side of [`handle_notes`]: the notes' rows, in order.
async fn record_notes(
    ctx: SourceCtx,
    mut notes: mpsc::UnboundedReceiver<WriterNote>,
    wake: Arc<Notify>,
) {
    let (catalog, name) = (&ctx.shared.catalog, &ctx.source.name);
    let mut recorded_file = String::new();
    let mut pending: Option<FileProgress> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let n = tokio::select! {
            n = notes.recv() => n,
            _ = tick.tick() => {
                if let Some(p) = pending.take().filter(|_| ctx.may_write()) {
                    if let Err(e) = catalog.record_active(name, &p).await {
                        catalog_write_failed(&ctx, &e);
                    }
                }
                continue;
            }
        };
        let Some(n) = n else { break };
        match n {
            WriterNote::Durable { file, progress, .. } => {
                if !ctx.may_write() {
                    continue;
                }
                if file != recorded_file {
                    recorded_file = file;
                    pending = None;
                    if let Err(e) = catalog.record_active(name, &progress).await {
                        catalog_write_failed(&ctx, &e);
                    }
                } else {
                    pending = Some(progress);
                }
            }
            WriterNote::Closed(p) => {
                if pending.as_ref().is_some_and(|q| q.name == p.name) {
                    pending = None;
                }
                if !ctx.may_write() {
                    continue;
                }
                match catalog.mark_reported(name, &p).await {
                    Ok(()) => {}
                    // Capture resumed at the end of a file that was closed and checked
                    // before (a restart or a takeover right after its rotation).
                    Err(catalog::CatalogError::InvalidState {
                        from: Some(catalog::FileState::Succ),
                        ..
                    }) => {
                        tracing::debug!(source = %name, file = %p.name, "closed file was already SUCC");
                    }
                    Err(e) => catalog_write_failed(&ctx, &e),
                }
                wake.notify_one();
            }
            WriterNote::Failed(_) => {}
        }
    }
}

/// A catalog write of the capture failed: a refusal by the lease's fence (this node's
/// tenure is over: another node owns the source) stops the source here at once, with
/// the reason in the log, the status and `binlog_server_fenced_writes`; any other
/// failure is logged and the next write tries again.
fn catalog_write_failed(ctx: &SourceCtx, e: &catalog::CatalogError) {
    let name = &ctx.source.name;
    if let catalog::CatalogError::Fenced { epoch, op, .. } = e {
        tracing::error!(source = %name, epoch, op, "a catalog write was refused: this node no longer holds the source's lease; stopping the source here");
        ctx.status.lock().last_error = Some(e.to_string());
        ctx.shared
            .metrics
            .fenced_writes
            .get_or_create(&Metrics::label(name))
            .inc();
        ctx.cancel.cancel();
    } else {
        warn!(source = %name, error = %e, "catalog update failed");
    }
}

/// The writer is gone (an I/O error, or a panic): this source stops here and
/// waits for shut-down; the others go on. The file state after a failed write or fsync
/// is unknown, so only a process restart (with crash recovery) may continue.
async fn writer_gone(ctx: &SourceCtx, why: Option<WriterError>) {
    let why = why
        .map(|e| e.to_string())
        .or_else(|| ctx.status.lock().last_error.clone())
        .unwrap_or_else(|| "the writer stopped".into());
    fail(
        ctx,
        &format!("{why}: check the disk, then restart binlog-server"),
    )
    .await;
    ctx.cancel.cancelled().await;
}

/// Stops the source with `msg` in the status and the catalog.
async fn fail(ctx: &SourceCtx, msg: &str) {
    warn!(source = %ctx.source.name, error = %msg, "capture stopped by a definite error");
    {
        let mut s = ctx.status.lock();
        s.state = CaptureState::Failed;
        s.last_error = Some(msg.to_owned());
    }
    let _ = ctx
        .shared
        .catalog
        .set_source_state(&ctx.source.name, "failed", Some(msg))
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

/// Makes the catalog agree with the files on disk after a restart.
async fn reconcile_catalog(
    catalog: &Catalog,
    name: &str,
    store: &LocalFiles,
    resume: &local::Resume,
) -> anyhow::Result<()> {
    let files = store.list()?;
    let active = match resume {
        local::Resume::At { file, .. } => Some(file.as_str()),
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
