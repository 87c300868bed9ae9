//! The file checker of a source: closed files are checked (REPORTED -> SUCC | FAIL,
//! seed 001), SUCC files re-verified (recheck), FAIL files re-pulled ([`super::repull`])
//! while the primary still has them.

use node::util::lock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog::{FileProgress, FileState};
use tokio::sync::{mpsc, Notify};
use tracing::{info, warn};

use super::context::SourceCtx;
use super::lowprio::low_priority;
use super::repull::repull;
use archive::local::LocalFiles;
use binlog::check::{check_file, CheckOptions, CheckReport};
use binlog::{self};
use node::status::Metrics;
use node::status::PrimaryView;

/// Capture is "catching up" while more than this many bytes behind the primary.
const CATCH_UP_BYTES: u64 = 64 << 20;

/// Checks REPORTED files, re-pulls FAIL ones, rechecks SUCC ones. Woken by `wake` (a file
/// was closed) and every few seconds; `on_demand` names files to check now. Ends when
/// the source is cancelled.
pub async fn check_loop(
    ctx: SourceCtx,
    store: Arc<LocalFiles>,
    view: Arc<std::sync::Mutex<PrimaryView>>,
    wake: Arc<Notify>,
    on_demand: Arc<tokio::sync::Mutex<mpsc::Receiver<String>>>,
) {
    // The receiver outlives one tenure of the source: the checker of the next one
    // takes it when this one is gone.
    let mut on_demand = on_demand.lock().await;
    let mut checker = Checker {
        ctx,
        store,
        view,
        repulls: HashMap::new(),
        last_recheck: Instant::now(),
    };
    let mut deferred_since: Option<Instant> = None;
    let mut next = BUSY_TICK;
    loop {
        let mut forced: Vec<String> = Vec::new();
        tokio::select! {
            _ = checker.ctx.cancel.cancelled() => return,
            _ = wake.notified() => {}
            Some(f) = on_demand.recv() => forced.push(f),
            _ = tokio::time::sleep(next) => {}
        }
        // While capture is far behind the primary (a catch-up), checks wait, up to 10
        // minutes, so that reading, hashing and walking files does not take CPU and disk
        // from capture on a small machine. Checks asked for by the API are not deferred.
        let far_behind = checker
            .ctx
            .status
            .lock()
            .bytes_behind
            .is_some_and(|b| b > CATCH_UP_BYTES);
        if far_behind && forced.is_empty() {
            let since = *deferred_since.get_or_insert_with(Instant::now);
            if since.elapsed() < Duration::from_secs(600) {
                // Look again soon: once capture has caught up no close may wake us.
                next = BUSY_TICK;
                continue;
            }
        }
        deferred_since = None;
        // Give the first poll of the primary a moment so sizes can be compared.
        if checker.view.lock().map(|v| v.at.is_none()).unwrap_or(true) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let Some(todo) = checker.todo(forced).await else {
            next = BUSY_TICK;
            continue;
        };
        next = if todo.is_empty() {
            IDLE_TICK
        } else {
            BUSY_TICK
        };
        for file in todo {
            if checker.ctx.cancel.is_cancelled() {
                return;
            }
            checker.check_one(&file).await;
            checker.ctx.status.touch_rows();
        }
    }
}

/// How soon the checker looks at the catalog again while files wait (a REPORTED file
/// whose final size is not known yet, a FAIL file with re-pulls left).
const BUSY_TICK: Duration = Duration::from_secs(2);

/// How soon it looks again when nothing waited: a file's close wakes it at once, so this
/// is the safety net (and the recheck's clock), at two catalog reads per tick.
const IDLE_TICK: Duration = Duration::from_secs(30);

/// The checker's state: the source, its files, the primary's latest view, how often
/// each FAIL file was re-pulled (at most 3 times per process), the last recheck pass.
struct Checker {
    ctx: SourceCtx,
    store: Arc<LocalFiles>,
    view: Arc<std::sync::Mutex<PrimaryView>>,
    repulls: HashMap<String, u32>,
    last_recheck: Instant,
}

impl Checker {
    /// The files to look at now, in binlog order: REPORTED ones, `forced` ones, SUCC ones
    /// due for a recheck, FAIL ones with re-pulls left. None when the catalog cannot be read.
    async fn todo(&mut self, forced: Vec<String>) -> Option<Vec<String>> {
        let (catalog, name) = (&self.ctx.shared.catalog, &self.ctx.source.name);
        let mut todo: Vec<String> = match catalog.files_in_state(name, FileState::Reported).await {
            Ok(v) => v.into_iter().map(|r| r.name).collect(),
            Err(e) => {
                warn!(source = %name, error = %e, "catalog read failed");
                return None;
            }
        };
        todo.extend(forced);
        let recheck = self.ctx.shared.capture.recheck_interval;
        if !recheck.is_zero()
            && self.last_recheck.elapsed() >= recheck.min(Duration::from_secs(3600))
        {
            self.last_recheck = Instant::now();
            let now = catalog::unix_now();
            if let Ok(rows) = catalog.files_in_state(name, FileState::Succ).await {
                for r in rows {
                    let due = r
                        .checked_at
                        .is_none_or(|t| now - t >= recheck.as_secs() as i64);
                    // An evicted file is not on this disk to recheck (the store's copy
                    // was checked when it was written).
                    if due && self.store.dir().join(&r.name).exists() {
                        todo.push(r.name);
                    }
                }
            }
        }
        if let Ok(rows) = catalog.files_in_state(name, FileState::Fail).await {
            for r in rows {
                if self.repulls.get(&r.name).copied().unwrap_or(0) < 3 {
                    todo.push(r.name);
                }
            }
        }
        todo.sort_by_key(|n| binlog::binlog_order(n));
        todo.dedup();
        Some(todo)
    }

    /// One file: a FAIL file is re-pulled while the primary has it; a closed file is
    /// checked once its final size is known; a SUCC file whose SHA-256 changed is FAIL.
    async fn check_one(&mut self, file: &str) {
        let (catalog, name) = (&self.ctx.shared.catalog, &self.ctx.source.name);
        let row = match catalog.get_file(name, file).await {
            Ok(Some(r)) => r,
            _ => return,
        };
        if row.state == FileState::Active {
            return;
        }
        if row.state == FileState::Succ && !self.store.dir().join(file).exists() {
            // Evicted: the archive store holds it (checked when written); nothing here
            // to read.
            return;
        }
        if row.state == FileState::Fail {
            return self.repull_fail(file, &row).await;
        }
        if size_not_final_yet(&self.view, file) {
            return;
        }
        let previous_sha = if row.state == FileState::Succ {
            row.sha256.clone()
        } else {
            None
        };
        let outcome = self.recheck(file, None).await;
        if let (Some(prev), Some((state, sha))) = (previous_sha, outcome) {
            if state == FileState::Succ && sha != prev {
                let info = format!("SHA-256 changed since the last check (was {prev}, now {sha})");
                if self.ctx.may_write() {
                    let _ = catalog
                        .set_checked(name, file, FileState::Fail, &info, Some(&sha), row.size)
                        .await;
                }
            }
        }
    }

    /// Fetches a FAIL file again while the primary lists it, then checks it once more;
    /// a failed re-pull is added to the file's info.
    async fn repull_fail(&mut self, file: &str, row: &catalog::BinlogFileRow) {
        let (shared, source) = (&self.ctx.shared, &self.ctx.source);
        let name = &source.name;
        let (size, _, _) = listed_size(&self.view, file);
        if size.is_none() {
            return; // the primary no longer has it: stays FAIL with its info
        }
        *self.repulls.entry(file.to_owned()).or_insert(0) += 1;
        let upstream = node::util::lock(&self.ctx.upstream).clone();
        match repull(shared, source, &upstream, &self.store, file).await {
            Ok(bytes) => {
                info!(source = %name, file, bytes, "re-pulled a FAIL file from the primary");
                // The reference FDE was recorded from the stream that wrote the bad copy.
                lock(&self.view).forget_format(file);
                let p = FileProgress {
                    name: file.to_owned(),
                    size: bytes,
                    ..Default::default()
                };
                if !self.ctx.may_write() {
                    return;
                }
                let _ = shared.catalog.mark_reported(name, &p).await;
                // Carry the first reason forward into the next check's info.
                let reason = row
                    .info
                    .split(" (re-pulled")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                self.recheck(file, Some(&reason)).await;
            }
            Err(e) => {
                warn!(source = %name, file, error = %e, "re-pull failed");
                if !self.ctx.may_write() {
                    return;
                }
                let info = format!("{}; re-pull failed: {e}", row.info);
                let _ = shared
                    .catalog
                    .set_checked(
                        name,
                        file,
                        FileState::Fail,
                        &info,
                        row.sha256.as_deref(),
                        row.size,
                    )
                    .await;
            }
        }
    }

    /// Runs the file check and records SUCC or FAIL. Returns the state and SHA-256.
    async fn recheck(
        &self,
        file: &str,
        repaired_from: Option<&str>,
    ) -> Option<(FileState, String)> {
        let (shared, name) = (&self.ctx.shared, &self.ctx.source.name);
        let (expected, polled, later) = listed_size(&self.view, file);
        let path = self.store.path(file);
        let opts = CheckOptions {
            require_terminal: true,
            expected_size: expected,
            expected_format: lock(&self.view).format_of(file),
        };
        let report = match low_priority(move || check_file(&path, &opts)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                warn!(source = %name, file, error = %e, "cannot read the file to check it");
                if !self.ctx.may_write() {
                    return None;
                }
                let _ = shared
                    .catalog
                    .set_checked(
                        name,
                        file,
                        FileState::Fail,
                        &format!("cannot read the stored file: {e}"),
                        None,
                        0,
                    )
                    .await;
                return None;
            }
            Err(_) => return None,
        };
        let (file_timeline, _) = binlog::split_timeline(file);
        let now_on = lock(&self.ctx.upstream).timeline;
        if file_timeline < now_on && report.events == 0 {
            self.drop_empty_cut_file(file, now_on).await;
            return None;
        }
        let (state, mut info) = if file_timeline < now_on && ends_unclosed_only(&report) {
            // The last file of a timeline capture left at a failover: what the old
            // primary streamed, CRC-checked, with nothing to compare its size with.
            (
                FileState::Succ,
                format!(
                    "{} events, CRC32 ok; the last file of timeline {file_timeline}: capture \
                     switched to timeline {now_on} with it open (no ROTATE/STOP), so the old \
                     primary's copy could not be compared",
                    report.events
                ),
            )
        } else {
            verdict(&report, expected, polled, later)
        };
        if let Some(prev) = repaired_from {
            info = format!("{info} (re-pulled from the primary after FAIL: {prev})");
        }
        if state == FileState::Fail {
            shared
                .metrics
                .check_failures
                .get_or_create(&Metrics::label(name))
                .inc();
            warn!(source = %name, file, %info, "binlog file check failed");
        }
        // The check may have run for long: a tenure that ended meanwhile writes nothing.
        if !self.ctx.may_write() {
            return None;
        }
        let _ = shared
            .catalog
            .set_checked(
                name,
                file,
                state,
                &info,
                Some(&report.sha256_hex),
                report.size,
            )
            .await;
        let p = FileProgress {
            name: file.to_owned(),
            size: report.size,
            first_event_time: report.first_event_time.map(i64::from),
            last_event_time: report.last_event_time.map(i64::from),
            first_gtid: report.first_gtid.as_ref().map(|g| g.to_string()),
            last_gtid: report.last_gtid.as_ref().map(|g| g.to_string()),
        };
        let _ = shared.catalog.record_active(name, &p).await;
        Some((state, report.sha256_hex))
    }
}

impl Checker {
    /// The last file of a timeline capture left at a failover, when it holds no event
    /// (the old primary died between its ROTATE and the new file's first event): nothing
    /// of any transaction is in it, so it is removed, from the disk and the catalog,
    /// rather than checked FAIL or replayed as a file without a FORMAT_DESCRIPTION.
    /// Only once the later timeline has a file here and the index has moved past it;
    /// until then the next pass looks again.
    async fn drop_empty_cut_file(&self, file: &str, now_on: u32) {
        let name = &self.ctx.source.name;
        let later_file = self
            .store
            .list()
            .is_ok_and(|v| v.iter().any(|(n, _)| binlog::split_timeline(n).0 >= now_on));
        let index_past = self
            .ctx
            .shared
            .index
            .position(name)
            .is_ok_and(|p| p.is_none_or(|p| p.file != file));
        if !later_file || !index_past || !self.ctx.may_write() {
            return;
        }
        let (path, dir) = (self.store.path(file), self.store.dir_of(file));
        let removed = low_priority(move || -> std::io::Result<()> {
            match std::fs::remove_file(&path) {
                Ok(()) => archive::local::fsync_dir(&dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await;
        if !matches!(removed, Ok(Ok(()))) {
            warn!(source = %name, file, "cannot remove an empty file the failover cut; the next pass tries again");
            return;
        }
        match self.ctx.shared.catalog.forget_file(name, file).await {
            Ok(()) => {
                let msg = format!(
                    "{file} held no event (the old primary died between its ROTATE and the \
                     file's first event): removed, timeline {now_on} continues the history"
                );
                warn!(source = %name, "{msg}");
                self.ctx.status.note(msg);
            }
            Err(e) => {
                warn!(source = %name, file, error = %e, "cannot forget an empty file the failover cut")
            }
        }
    }
}

/// The primary's view of `file`: (final size if listed, whether the primary was polled,
/// whether it lists later files). A size read while `file` was still the primary's last
/// (active) file is not final and is not returned.
fn listed_size(view: &Arc<std::sync::Mutex<PrimaryView>>, file: &str) -> (Option<u64>, bool, bool) {
    let v = lock(view);
    let later = v
        .binlogs
        .iter()
        .any(|(n, _)| binlog::binlog_order(n) > binlog::binlog_order(file));
    let size = v
        .binlogs
        .iter()
        .find(|(n, _)| n == file)
        .map(|(_, s)| *s)
        .filter(|_| later);
    (size, v.at.is_some(), later)
}

/// True while the primary's last poll cannot give `file`'s final size yet: the poll
/// still shows it as the primary's newest binlog, or was taken before the file existed.
/// The check then waits for the next poll, unless the view is stale (primary unreachable
/// for over a minute), in which case the file is checked without the size comparison.
fn size_not_final_yet(view: &Arc<std::sync::Mutex<PrimaryView>>, file: &str) -> bool {
    let v = lock(view);
    let fresh = v.at.is_some_and(|t| t.elapsed() < Duration::from_secs(60));
    fresh
        && v.binlogs
            .last()
            .is_some_and(|(n, _)| binlog::binlog_order(n) <= binlog::binlog_order(file))
}

/// True when the report's only problem is the missing ROTATE/STOP at the end.
fn ends_unclosed_only(r: &CheckReport) -> bool {
    !r.problems.is_empty()
        && r.problems
            .iter()
            .all(|p| p.kind == binlog::check::ProblemKind::NoTerminalEvent)
}

/// SUCC or FAIL from a check report. A file that ends without ROTATE/STOP is still
/// SUCC when everything else holds and the primary lists it with the same size and has
/// moved on to later files: the primary stopped without closing it (a crash), and the
/// archive holds exactly what the primary has.
fn verdict(
    r: &CheckReport,
    expected: Option<u64>,
    polled: bool,
    later: bool,
) -> (FileState, String) {
    let missing_terminal_only = ends_unclosed_only(r);
    let size_note = match (expected, polled) {
        (Some(s), _) => format!("size {s} = primary's"),
        (None, true) => "size not compared: the primary no longer lists it".into(),
        (None, false) => "size not compared: the primary has not been reached yet".into(),
    };
    if r.is_ok() {
        return (FileState::Succ, format!("{}; {size_note}", r.info()));
    }
    if missing_terminal_only && expected == Some(r.size) && later {
        return (
            FileState::Succ,
            format!(
                "{} events, CRC32 ok; no ROTATE/STOP at the end: the primary stopped without closing it (crash), and its copy has the same size",
                r.events
            ),
        );
    }
    (FileState::Fail, r.info())
}
