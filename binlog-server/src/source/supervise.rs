//! Supervision of one source: start its tasks, recover its store, and run the reconnect
//! loop around [`super::stream`].
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

use catalog::{Catalog, FileProgress};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use super::check::check_loop;
use super::context::{PrimaryView, Shared, SourceCommand, SourceRuntime};
use super::error::StreamEnd;
use super::gaps::record_gap;
use super::poll::poll_primary;
use super::stream::stream_once;
use super::writer::{self, WriterMsg, WriterNote};
use crate::archive::store::{self, SourceStore};
use crate::config::Source;
use crate::status::{CaptureState, Metrics, StatusCell};

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

    // 2. The writer and syncer threads, and the note handler.
    let writer::Threads {
        tx: wtx,
        notes: nrx,
        writer: writer_thread,
        syncer: syncer_thread,
    } = writer::start(
        &name,
        &store,
        &shared.index,
        &shared.metrics,
        next_ordinal,
        shared.capture.fsync_interval,
    )
    .context("start the writer threads")?;
    let checker_wake = Arc::new(Notify::new());
    let writer_failed = CancellationToken::new();
    tokio::spawn(
        handle_notes(
            shared.catalog.clone(),
            name.clone(),
            status.clone(),
            nrx,
            checker_wake.clone(),
            writer_failed.clone(),
        )
        .instrument(tracing::info_span!("notes", source = %name)),
    );

    // 3. Poller and checker.
    tokio::spawn(poll_primary(
        shared.clone(),
        src.clone(),
        status.clone(),
        primary_view.clone(),
        cancel.clone(),
    ));
    tokio::spawn(check_loop(
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

/// Applies the writer's notes: the live status, the catalog rows of the active file
/// (written at once for a new file, then at most once a second: the control file is the
/// durable record, the catalog row is for people and the API), REPORTED on close (and a
/// wake-up for the checker), and a writer failure (cancels `failed`). Ends when the
/// writer is gone.
async fn handle_notes(
    catalog: Arc<Catalog>,
    name: String,
    status: StatusCell,
    mut notes: mpsc::UnboundedReceiver<WriterNote>,
    wake: Arc<Notify>,
    failed: CancellationToken,
) {
    let mut recorded_file = String::new();
    let mut pending: Option<FileProgress> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let n = tokio::select! {
            n = notes.recv() => n,
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
