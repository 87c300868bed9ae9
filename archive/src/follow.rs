//! A fleet node that does not hold a source's lease follows the source's archive from
//! the store, so that a PITR, an export or a fake-primary dump asked of it runs there:
//! it reads closed files and the active file's shipped chunks from the store, and it
//! plans with an index it keeps itself, without the owner's disk or index.
//!
//! # What a refresh does ([`refresh`])
//!
//! 1. From the catalog: the source's file rows and its live object rows.
//! 2. The **view**: the closed files the store holds whole, oldest first, up to the first
//!    file it does not (not shipped yet), then that file's prefix from its contiguous
//!    chunks, when they start at 0 (normally the owner's active file). FAIL files (gaps:
//!    the primary no longer had them) are skipped and marked unindexed, so a plan across
//!    one is refused as on the owner, and the view goes on past them.
//! 3. The **tail copy**: that prefix is decoded into `<data_dir>/.store-view/<source>/
//!    <file>`, cut to its valid prefix (every event CRC-checked). A later refresh only
//!    appends the chunks past the checked length, which this process keeps
//!    ([`IndexWriter`]): bytes a cancelled refresh appended past it are cut first, and a
//!    copy an earlier run left is checked whole. Chunks are immutable prefixes of the
//!    primary's file, so the part a running dump reads is never rewritten, only
//!    extended. Copies of other files are removed (their files are whole in the store
//!    now). Source names never start with `.`, so the directory is no source's.
//! 4. The **index**: this node's transaction index of the source ([`super::index`]) is
//!    brought to the view's end, file by file in binlog order from its position: each
//!    closed file from its index segment ([`super::segment`], a few bytes per
//!    transaction), or, when it has none (shipped before segments existed) or it is
//!    refused, read back through the [`ArchiveReader`] (the cache); then the tail
//!    copy. It stops at the view's end, so it never skips a file. The holes of an
//!    earlier takeover that the store now holds whole are filled by starting over, as a
//!    takeover does.
//!
//! A view is served up to its **end** ([`StoreView::end`]: the tail copy's checked
//! length, or the newest whole file's size) as a capture's durable end is: a blocking
//! dump waits there, since the tail copy is not a closed file. A session sees the store
//! as of its login; a later session gets a later view.
//!
//! The index is the one a capture of the source on this node writes, so a refresh runs
//! only while this node does not capture it: the caller holds the source's writer lock
//! (`replay`'s `Archive::writer`), which a tenure holds from its takeover to its end.
//!
//! # Durability and recovery
//!
//! Nothing here is the only copy of anything: the tail copy is not fsynced, and the
//! index is derived data (a crash loses at most its newest batches with their
//! position, and the next refresh re-reads from the older position). A takeover by this
//! node later starts from the index position a refresh left, since every entry in it
//! is of bytes identical to the primary's.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use catalog::{ArchiveKind, BinlogFileRow, Catalog, FileState};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedMutexGuard;

use super::cache::{ArchiveReader, Evicted};
use super::index::{Index, IndexPos};
use super::rebuild::{fetch_chunk, ChunkCtx, HeldChunk, RebuildError};
use super::segment;
use super::takeover::{coverage, objects_by_file};
use super::tier::ArchiveTier;
use binlog::binlog_order;

/// The directory under `data_dir` that holds the tail copies, one directory per source.
pub const VIEW_DIR: &str = ".store-view";

/// `<data_dir>/.store-view/<source>`: where `source`'s tail copy is kept.
pub fn view_dir(data_dir: &Path, source: &str) -> PathBuf {
    data_dir.join(VIEW_DIR).join(source)
}

/// Who writes a source's index on this node: its capture, for a whole tenure
/// ([`IndexWriter::capture`]), or a refresh between tenures ([`IndexWriter::follow`]).
/// A capture that wants in makes a running refresh stop after its current file, so a
/// long first refresh never delays a takeover by more than one file.
///
/// It also remembers the tail copy's validated length, which only the refresh holding
/// the lock reads and writes.
#[derive(Debug, Default)]
pub struct IndexWriter {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Captures waiting for the lock (a counter: a dropped `capture()` future gives its
    /// turn back, see [`Waiting`]).
    capture_waiting: AtomicUsize,
    /// The tail copy's file and the length of its prefix checked event by event, bytes.
    /// `None` after a start: the next refresh checks the whole copy again.
    tail_valid: std::sync::Mutex<Option<(String, u64)>>,
}

/// A capture waiting for the index, counted while this lives (also when the waiting
/// future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often a refresh that finds another refresh of the source running looks again.
const FOLLOW_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

impl IndexWriter {
    /// Waits for the index (a running refresh stops after its current file); the guard
    /// is held for the tenure.
    pub async fn capture(&self) -> OwnedMutexGuard<()> {
        let _waiting = Waiting::new(&self.capture_waiting);
        self.lock.clone().lock_owned().await
    }

    /// The index for a refresh: waits while another refresh holds it; `None` when a
    /// capture holds it or waits for it (this node is taking the source over, and its
    /// own archive is the one to read).
    pub async fn follow(&self) -> Option<OwnedMutexGuard<()>> {
        loop {
            if self.yielding() {
                return None;
            }
            if let Ok(g) = self.lock.clone().try_lock_owned() {
                return Some(g);
            }
            tokio::time::sleep(FOLLOW_RETRY).await;
        }
    }

    /// A capture waits for the index.
    fn yielding(&self) -> bool {
        self.capture_waiting.load(Ordering::SeqCst) > 0
    }

    /// The validated length of `file`'s tail copy, when this process checked it.
    fn tail_valid(&self, file: &str) -> Option<u64> {
        let g = self.tail_valid.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().filter(|(f, _)| f == file).map(|(_, len)| *len)
    }

    fn set_tail_valid(&self, v: Option<(String, u64)>) {
        *self.tail_valid.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }
}

/// What a refresh reads and writes.
pub struct FollowCtx<'a> {
    /// The shared catalog.
    pub catalog: &'a Catalog,
    /// The archive store.
    pub tier: &'a Arc<ArchiveTier>,
    /// The reader through which closed files are read back (the cache).
    pub reader: &'a ArchiveReader,
    /// This node's transaction index.
    pub index: &'a Arc<Index>,
    /// Source name.
    pub source: &'a str,
    /// [`view_dir`] of the source.
    pub dir: &'a Path,
    /// The source's index writer, whose refresh guard the caller holds: a capture
    /// waiting for it stops the refresh after its current file.
    pub writer: &'a IndexWriter,
}

/// What the store holds of a source, as a refresh found it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreView {
    /// Closed files the store holds whole, oldest first, contiguous: (file, size bytes).
    pub whole: Vec<(String, u64)>,
    /// The file after them held as chunks, and the length of its valid prefix in the tail
    /// copy, bytes (`None`: no chunks from offset 0).
    pub tail: Option<(String, u64)>,
    /// FAIL files between them (gaps), skipped: marked unindexed in this node's index,
    /// so a plan across one is refused.
    pub failed: Vec<String>,
    /// The index position after the refresh.
    pub indexed: Option<IndexPos>,
    /// Files indexed by this refresh (the tail copy counts when it grew).
    pub indexed_files: usize,
    /// Transactions they added.
    pub transactions: u64,
    /// Closed files indexed from their index segments (the others were read back).
    pub from_segments: usize,
    /// The refresh stopped early: this node's capture of the source wants the index
    /// (the index ends before the view's end).
    pub interrupted: bool,
}

impl StoreView {
    /// Where the view ends: the tail copy and its checked length, else the newest whole
    /// file and its size; `None` when the store holds nothing of the source.
    pub fn end(&self) -> Option<(String, u64)> {
        self.tail.clone().or_else(|| self.whole.last().cloned())
    }

    /// The view's files that are only in the store, for a fake primary over the tail
    /// copy's directory: every whole file (the tail is the directory's one file).
    pub fn evicted(&self) -> Evicted {
        let e = Evicted::default();
        for (f, size) in &self.whole {
            e.insert(f, *size);
        }
        e
    }
}

/// Brings the view of `ctx.source` and this node's index of it up to what the store
/// holds (module docs). The caller holds the source's writer lock.
///
/// # Errors
///
/// [`RebuildError`]: the catalog, the store, a damaged object (named), the index, or
/// the tail copy's directory. Nothing is left half-done that the next refresh does not
/// redo; the caller reports the error (a PITR asked of this node is refused with it).
pub async fn refresh(ctx: &FollowCtx<'_>) -> Result<StoreView, RebuildError> {
    let (mut view, objects, tail_chunks) = list_view(ctx).await?;
    let tail = match view.tail.take() {
        Some((file, _)) => extend_tail(ctx, &file, &tail_chunks)
            .await?
            .map(|len| (file, len)),
        None => None,
    };
    if tail.is_none() {
        ctx.writer.set_tail_valid(None);
    }
    remove_other_copies(ctx.dir, tail.as_ref().map(|(f, _)| f.as_str()))?;
    view.tail = tail;
    index_view(ctx, &mut view, &objects).await?;
    Ok(view)
}

/// The whole object of each file the store holds whole: file -> (epoch, codec).
type WholeObjects = HashMap<String, (i64, String)>;

/// Steps 1 and 2: the whole files and the chunked file after them (its length is the
/// chunks' contiguous coverage here; [`extend_tail`] makes it the copy's valid prefix).
async fn list_view(
    ctx: &FollowCtx<'_>,
) -> Result<(StoreView, WholeObjects, Vec<HeldChunk>), RebuildError> {
    let mut rows: Vec<BinlogFileRow> = ctx.catalog.list_files(ctx.source).await?;
    rows.sort_by_key(|r| binlog_order(&r.name));
    let objs = ctx.catalog.list_archive_objects(ctx.source).await?;
    let by_file = objects_by_file(&objs);
    let objects: WholeObjects = objs
        .iter()
        .filter(|o| o.kind == ArchiveKind::File)
        .map(|o| (o.file.clone(), (o.epoch, o.codec.clone())))
        .collect();
    let mut view = StoreView::default();
    for r in &rows {
        let (held_whole, chunks) = by_file
            .get(r.name.as_str())
            .map_or((false, &[][..]), |(w, c)| (*w, c.as_slice()));
        if r.state == FileState::Fail {
            // A gap (the primary no longer has it): later files are still restorable
            // from a base after it, and a plan across it is refused.
            view.failed.push(r.name.clone());
            continue;
        }
        if held_whole && r.state != FileState::Active {
            view.whole.push((r.name.clone(), r.size));
            continue;
        }
        let cov = coverage(chunks);
        if cov > 4 {
            view.tail = Some((r.name.clone(), cov));
            return Ok((view, objects, chunks.to_vec()));
        }
        break;
    }
    Ok((view, objects, Vec::new()))
}

/// Step 3: appends to the tail copy of `file` the chunks past its length, keeps the
/// valid prefix; returns that length (`None`: no chunk starts at 0).
async fn extend_tail(
    ctx: &FollowCtx<'_>,
    file: &str,
    chunks: &[HeldChunk],
) -> Result<Option<u64>, RebuildError> {
    let path = ctx.dir.join(file);
    let werr = |source: std::io::Error| RebuildError::Write {
        path: path.clone(),
        source,
    };
    tokio::fs::create_dir_all(super::local::dir_of_in(ctx.dir, file))
        .await
        .map_err(werr)?;
    let on_disk = match tokio::fs::metadata(&path).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(werr(e)),
    };
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .map_err(werr)?;
    // What a cancelled refresh appended past the checked prefix goes; a copy this
    // process has not checked (left by an earlier run) is checked whole below.
    let (had, check_from) = match ctx.writer.tail_valid(file) {
        Some(valid) if valid <= on_disk => {
            if valid < on_disk {
                out.set_len(valid).await.map_err(werr)?;
            }
            (valid, valid)
        }
        _ => (on_disk, 4),
    };
    let cctx = ChunkCtx {
        catalog: ctx.catalog,
        tier: ctx.tier,
        source: ctx.source,
        import_rows: false,
    };
    // As a rebuild reads them: a chunk is at most ship_bytes of plaintext, a little more
    // stored.
    let max = usize::try_from(ctx.tier.settings.ship_bytes)
        .unwrap_or(usize::MAX / 4)
        .saturating_mul(2)
        .max(1 << 20);
    let mut pos = had;
    while let Some((start, end, codec, key, _)) = chunks
        .iter()
        .filter(|c| c.0 <= pos && c.1 > pos)
        .max_by_key(|c| c.1)
    {
        let (_, plain) = fetch_chunk(&cctx, key, codec, *start, *end, max).await?;
        let from = usize::try_from(pos - start).unwrap_or(usize::MAX);
        let Some(new) = plain.get(from..) else {
            break;
        };
        if pos == 0 && !new.starts_with(&binlog::BINLOG_MAGIC) {
            return Err(RebuildError::Invalid {
                key: key.clone(),
                message: "the first chunk does not start with the binlog magic".into(),
            });
        }
        out.write_all(new).await.map_err(werr)?;
        pos += new.len() as u64;
    }
    out.flush().await.map_err(werr)?;
    drop(out);
    if pos < 4 {
        let _ = tokio::fs::remove_file(&path).await;
        return Ok(None);
    }
    // Only what was appended is checked when the copy up to `had` was checked.
    let from = check_from.max(4);
    let p = path.clone();
    let len = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let v = binlog::check::valid_prefix(&p, from)?;
        let f = std::fs::OpenOptions::new().write(true).open(&p)?;
        f.set_len(v.len)?;
        Ok(v.len)
    })
    .await
    .map_err(|source| RebuildError::Task { source })?
    .map_err(werr)?;
    ctx.writer.set_tail_valid(Some((file.to_string(), len)));
    Ok(Some(len))
}

/// Removes every file of `dir` and its timelines' directories but `keep` (a stored
/// name): tail copies of files whole in the store now.
fn remove_other_copies(dir: &Path, keep: Option<&str>) -> Result<(), RebuildError> {
    let dirs = match super::local::timeline_dirs(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(RebuildError::Write {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let keep = keep.map(|k| dir.join(k));
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            if is_file && keep.as_deref() != Some(e.path().as_path()) {
                // A dump reading it keeps its open handle; the next open reads the store.
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Step 4: indexes the view's files after the index position, in order, to its end.
async fn index_view(
    ctx: &FollowCtx<'_>,
    view: &mut StoreView,
    objects: &WholeObjects,
) -> Result<(), RebuildError> {
    let files: Vec<(String, u64, bool)> = view
        .whole
        .iter()
        .map(|(f, s)| (f.clone(), *s, true))
        .chain(view.tail.iter().map(|(f, s)| (f.clone(), *s, false)))
        .collect();
    let from = first_to_index(ctx, &files).await?;
    mark_failed(ctx, &view.failed).await?;
    for (file, size, whole) in files.iter().skip(from) {
        if ctx.writer.yielding() {
            view.interrupted = true;
            break;
        }
        let segment = match (whole, objects.get(file)) {
            (true, Some((epoch, codec))) => {
                segment::load_or_warn(ctx.tier, ctx.source, file, *size, (*epoch, codec)).await
            }
            _ => None,
        };
        let (index, s, f, size) = (
            ctx.index.clone(),
            ctx.source.to_string(),
            file.clone(),
            *size,
        );
        let (pos, added) = match segment {
            Some(records) => {
                view.from_segments += 1;
                tokio::task::spawn_blocking(move || index.import_file(&s, &f, &records, size))
                    .await
                    .map_err(|source| RebuildError::Task { source })??
            }
            None => {
                let path = match whole {
                    true => ctx.reader.path(ctx.source, ctx.dir, file).await?,
                    false => ctx.dir.join(file),
                };
                tokio::task::spawn_blocking(move || index.index_file(&s, &f, &path, size))
                    .await
                    .map_err(|source| RebuildError::Task { source })??
            }
        };
        if added > 0 || *whole {
            view.indexed_files += 1;
        }
        view.transactions += added;
        view.indexed = Some(pos);
    }
    if view.indexed.is_none() {
        view.indexed = ctx.index.position(ctx.source)?;
    }
    Ok(())
}

/// Where indexing resumes in `files` (the view, in order): at the index position's file
/// while it is not indexed to its end, after it otherwise; past the end when the position
/// is beyond the view (this node indexed more while it captured the source); from the
/// start, the index cleared, when the position names no file of the view or a hole is
/// whole in the store now.
async fn first_to_index(
    ctx: &FollowCtx<'_>,
    files: &[(String, u64, bool)],
) -> Result<usize, RebuildError> {
    let pos = ctx.index.position(ctx.source)?;
    let holes = ctx.index.unindexed(ctx.source)?;
    let names: HashSet<&str> = files.iter().map(|(f, _, _)| f.as_str()).collect();
    let healed = holes.iter().any(|h| names.contains(h.as_str()));
    let at = pos
        .as_ref()
        .and_then(|p| files.iter().position(|(f, _, _)| *f == p.file));
    let beyond = |p: &IndexPos| {
        files
            .last()
            .is_none_or(|(f, size, _)| order(&p.file, p.offset) >= order(f, *size))
    };
    let before = |p: &IndexPos| {
        files
            .first()
            .is_some_and(|(f, _, _)| binlog_order(&p.file) < binlog_order(f))
    };
    Ok(match (&pos, at) {
        (None, _) => 0,
        (Some(_), _) if healed => clear(ctx).await?,
        (Some(p), Some(i)) => {
            let (_, size, whole) = &files[i];
            if p.offset < *size || !whole {
                i
            } else {
                i + 1
            }
        }
        (Some(p), None) if beyond(p) => files.len(),
        // Older than the store's oldest file (retention deleted the files between): the
        // ordinals stay consistent, and no plan can span the deleted files.
        (Some(p), None) if before(p) => 0,
        (Some(_), None) => clear(ctx).await?,
    })
}

/// Marks the FAIL files past the index position unindexed (holes), so a plan across
/// one is refused and the index starts over once the store holds it whole.
async fn mark_failed(ctx: &FollowCtx<'_>, failed: &[String]) -> Result<(), RebuildError> {
    let pos = ctx.index.position(ctx.source)?;
    let after: Vec<String> = failed
        .iter()
        .filter(|f| {
            pos.as_ref()
                .is_none_or(|p| binlog_order(f) > binlog_order(&p.file))
        })
        .cloned()
        .collect();
    if after.is_empty() {
        return Ok(());
    }
    let (index, s) = (ctx.index.clone(), ctx.source.to_string());
    tokio::task::spawn_blocking(move || index.mark_unindexed(&s, &after))
        .await
        .map_err(|source| RebuildError::Task { source })??;
    Ok(())
}

/// Clears the index of the source (it is rebuilt from the view's start); returns 0.
async fn clear(ctx: &FollowCtx<'_>) -> Result<usize, RebuildError> {
    let (index, s) = (ctx.index.clone(), ctx.source.to_string());
    tokio::task::spawn_blocking(move || index.clear(&s))
        .await
        .map_err(|source| RebuildError::Task { source })??;
    Ok(0)
}

/// Binlog order of a position.
fn order(file: &str, pos: u64) -> (binlog::BinlogOrder, u64) {
    (binlog_order(file), pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_capture_goes_first_and_a_dropped_one_gives_its_turn_back() {
        let w = Arc::new(IndexWriter::default());
        let refresh = w.follow().await.expect("the index is free");
        let w2 = w.clone();
        let capture = tokio::spawn(async move {
            let _g = w2.capture().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(w.yielding(), "the capture waits");
        assert!(
            w.follow().await.is_none(),
            "no refresh while a capture waits"
        );
        capture.abort();
        let _ = capture.await;
        assert!(!w.yielding(), "the dropped capture no longer waits");

        // A second refresh waits for the first instead of giving up.
        let w3 = w.clone();
        let second = tokio::spawn(async move { w3.follow().await.is_some() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished());
        drop(refresh);
        assert!(second.await.expect("task"), "it gets the index");
    }

    #[test]
    fn the_checked_length_is_kept_per_file() {
        let w = IndexWriter::default();
        assert_eq!(w.tail_valid("b.000002"), None);
        w.set_tail_valid(Some(("b.000002".into(), 1234)));
        assert_eq!(w.tail_valid("b.000002"), Some(1234));
        assert_eq!(
            w.tail_valid("b.000003"),
            None,
            "another file's copy is unchecked"
        );
    }
}
