//! Rebuild from the archive store: a node that lost its disk (an empty `data_dir` and an
//! empty catalog) but keeps its `[archive]` store recreates, from the store alone, what
//! capture, PITR and verification need, then resumes capture at the exact byte where
//! the store's copy ends.
//!
//! # What is read, in order
//!
//! 1. **Bases**: every `<source>/<base id>/manifest.json` of the `[backup]` store whose
//!    objects are all present with their recorded sizes becomes a COMPLETED row with its
//!    objects ([`Catalog::import_backup`]); an incremental's parent is the manifest's
//!    `parent_id` (or, in manifests before it, the base whose end LSN is the
//!    incremental's start). A manifest with missing objects (a base retention was
//!    deleting) is skipped and reported.
//! 2. **Closed binlogs**: every `<file>[.e<epoch>].manifest.json` under
//!    `<source>/binlogs/` whose object is present with the manifest's `stored_bytes`
//!    (of the highest such epoch, when writers of several epochs shipped one file)
//!    becomes a SUCC row (size,
//!    SHA-256, GTIDs and times from the manifest) and its `archive_objects` row. The
//!    files stay in the store (they are *evicted*: the archive reader fetches them when
//!    something reads them).
//! 3. **The index**: each closed file, in binlog order, read through the archive reader
//!    (fetched, decoded and SHA-256-checked one at a time into the bounded cache) into
//!    [`Index::index_file`].
//! 4. **Timelines** (failover follow): every `<source>/timelines/` record becomes a
//!    `timelines` row; a timeline whose `tl<N>/` files the store holds without a record
//!    gets a row of unknown divergence, which replay refuses to cross
//!    ([`super::timelines`]).
//! 5. **Local files, last**: the newest closed file is copied from the cache into
//!    `<data_dir>/<source>/`; the chunks of the first file after it (the file that was
//!    ACTIVE), contiguous from offset 0, are decoded into `<data_dir>/<source>/<file>`,
//!    validated event by event (a bad event cuts the file there: the primary sends the
//!    rest again) and recorded as chunk rows, so shipping continues after them. Chunks
//!    of later files are left for shipping to retire.
//!
//! Capture then starts as after any restart: the store's recovery finds the rebuilt last
//! file, the index catch-up adds the active prefix, and the primary sends what follows.
//! Files older than the store's copy that the primary still has are not fetched again.
//!
//! # When, and after a crash
//!
//! [`needed`]: the source's directory holds no binlog, every binlog row the catalog has
//! for it points at a whole object in the store (none at all after a real loss), and the
//! store holds something for it. `serve` rebuilds such a source by itself before it
//! starts capture; `binlog-server rebuild --config FILE` does the same offline and
//! prints the report. Everything before step 5 is derived data written idempotently
//! (rows that exist are kept, the index of the source is rebuilt from scratch), and the
//! local files are written last: a rebuild that stops halfway is simply run again at
//! the next start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use catalog::{
    ArchiveKind, ArchiveObjectRow, BackupRow, BackupState, Catalog, CatalogError, FileProgress,
    FileState,
};
use objstore::store::{Store, StoreError, StoredObject};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::cache::ArchiveReader;
use super::fetch::{self, FetchError};
use super::index::{Index, IndexError};
use super::local::{fsync_dir, list_binlogs, prepare_dir_of, record_active};
use super::objects::{self, Manifest};
use super::tier::ArchiveTier;
use binlog::binlog_order;

/// Largest base manifest read, bytes (a mydumper base lists one object per table file).
const BASE_MANIFEST_MAX: usize = 64 << 20;

/// Why a rebuild stopped. Each is definite for this attempt: `serve` does not start
/// (the message names the object or file); fix the cause (the store's reachability,
/// the key file, a damaged object) and start again: the rebuild resumes from scratch.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// Listing or reading the store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A closed file could not be fetched (store, key, damaged object).
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// The timeline records ([`super::timelines`]): the store, or an object that is not
    /// a record.
    #[error("{0}")]
    Timelines(#[from] super::timelines::TimelineRecordError),
    /// Indexing a fetched file failed.
    #[error("index: {0}")]
    Index(#[from] IndexError),
    /// A chunk could not be decoded (wrong key, damaged object).
    #[error("chunk {key}: {source}")]
    Codec {
        /// Object key.
        key: String,
        /// Cause (names the key id).
        #[source]
        source: objstore::codec::CodecError,
    },
    /// A manifest or chunk is not what its name or record says.
    #[error("{key}: {message}")]
    Invalid {
        /// Object key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A blocking task (file system, index) panicked or was cancelled.
    #[error("a blocking task of the rebuild failed: {source}")]
    Task {
        /// Cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Writing a local file failed.
    #[error("write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a rebuild did, for the log, the source's notes and `binlog-server rebuild`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    /// Source name.
    pub source: String,
    /// Bases recreated from their manifests (ids).
    pub bases: Vec<String>,
    /// Closed binlogs recreated (SUCC rows), oldest first.
    pub files: Vec<String>,
    /// Their plaintext bytes.
    pub file_bytes: u64,
    /// Transactions indexed from them.
    pub transactions: u64,
    /// The newest closed file, copied to the local disk.
    pub local_closed: Option<String>,
    /// The file that was ACTIVE and the length rebuilt from its chunks, bytes.
    pub active: Option<(String, u64)>,
    /// What was not taken, and why (missing objects, chunks with a hole, files only in
    /// chunks before the newest whole file).
    pub skipped: Vec<String>,
    /// Timelines recreated (failover follow), oldest first: from their records in the
    /// store, or of unknown divergence when the store holds a timeline's files but not
    /// its record ([`super::timelines`]).
    pub timelines: Vec<i64>,
}

impl RebuildReport {
    /// One line: what was rebuilt and where capture resumes.
    pub fn summary(&self) -> String {
        let resume = match (&self.active, &self.local_closed) {
            (Some((f, len)), _) => format!("capture resumes in {f} at {len}"),
            (None, Some(f)) => format!("capture resumes after {f}"),
            (None, None) => "capture starts as configured".to_string(),
        };
        format!(
            "rebuilt from the archive store: {} base(s), {} closed binlog(s) ({} bytes, {} \
             transactions indexed); {resume}{}",
            self.bases.len(),
            self.files.len(),
            self.file_bytes,
            self.transactions,
            if self.skipped.is_empty() {
                String::new()
            } else {
                format!("; skipped: {}", self.skipped.join("; "))
            }
        )
    }
}

/// What a rebuild reads and writes.
pub struct RebuildCtx<'a> {
    /// The catalog.
    pub catalog: &'a Catalog,
    /// The transaction index.
    pub index: &'a Arc<Index>,
    /// The archive store and its settings.
    pub tier: &'a Arc<ArchiveTier>,
    /// The reader through which closed files are fetched (bounded cache).
    pub reader: &'a ArchiveReader,
    /// The `[backup]` store (bases), when it is another store than the archive's.
    pub bases: &'a Store,
    /// `data_dir`.
    pub data_dir: &'a Path,
    /// Source name.
    pub source: &'a str,
}

/// Whether `source` should be rebuilt from the store: no binlog in its directory, every
/// catalog file row backed by a whole object in the store, and something in the store.
///
/// # Errors
///
/// [`RebuildError::Catalog`], [`RebuildError::Store`] (listing), [`RebuildError::Write`]
/// (reading the directory).
pub async fn needed(ctx: &RebuildCtx<'_>) -> Result<bool, RebuildError> {
    let dir = ctx.data_dir.join(ctx.source);
    if has_binlogs(&dir).map_err(|source| RebuildError::Write {
        path: dir.clone(),
        source,
    })? {
        return Ok(false);
    }
    let rows = ctx.catalog.list_files(ctx.source).await?;
    if !rows.is_empty() {
        let objs = ctx.catalog.list_archive_objects(ctx.source).await?;
        let whole = |f: &str| {
            objs.iter()
                .any(|o| o.file == f && o.kind == ArchiveKind::File)
        };
        if !rows
            .iter()
            .all(|r| r.state == FileState::Succ && whole(&r.name))
        {
            return Ok(false);
        }
    }
    let binlogs = ctx
        .tier
        .store
        .list(&format!("{}/binlogs/", ctx.source))
        .await?;
    Ok(!binlogs.is_empty())
}

/// Whether `dir` or one of its timelines' directories holds a binlog file (a missing
/// directory holds none).
fn has_binlogs(dir: &Path) -> std::io::Result<bool> {
    match list_binlogs(dir) {
        Ok(v) => Ok(!v.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Rebuilds every configured source (or only `only`) that [`needed`] says lost its
/// local archive, in config order, before capture starts. Returns, per source looked
/// at, its report when it was rebuilt (`None`: nothing to rebuild).
///
/// # Errors
///
/// The first source whose rebuild failed, with its name and the store's URL in the
/// context; the sources before it stay rebuilt.
pub async fn rebuild_lost(
    settings: &node::config::Settings,
    catalog: &Catalog,
    index: &Arc<Index>,
    tier: &Arc<ArchiveTier>,
    reader: &ArchiveReader,
    only: Option<&str>,
) -> anyhow::Result<Vec<(String, Option<RebuildReport>)>> {
    use anyhow::Context;
    let bases = settings
        .store
        .open()
        .context("open the base store ([backup] store)")?;
    let mut out = Vec::new();
    for source in settings
        .sources
        .iter()
        .filter(|s| only.is_none_or(|o| o == s.name))
    {
        let ctx = RebuildCtx {
            catalog,
            index,
            tier,
            reader,
            bases: &bases,
            data_dir: &settings.data_dir,
            source: &source.name,
        };
        let name = &source.name;
        if !needed(&ctx)
            .await
            .with_context(|| format!("source {name}: look for an archive to rebuild"))?
        {
            out.push((name.clone(), None));
            continue;
        }
        let report = rebuild(&ctx).await.with_context(|| {
            format!(
                "source {name}: rebuild from the archive store {} (run it again to retry)",
                tier.store.url()
            )
        })?;
        out.push((name.clone(), Some(report)));
    }
    Ok(out)
}

/// What the store holds of one binlog file.
#[derive(Debug, Default)]
struct Held {
    /// Sizes of the whole objects present, by the epoch that wrote them.
    objects: BTreeMap<i64, u64>,
    /// The epochs whose manifest is present.
    manifests: std::collections::BTreeSet<i64>,
    /// Chunks: (start, end, codec, key, stored size).
    chunks: Vec<HeldChunk>,
}

impl Held {
    /// Every epoch that wrote something of this file: whole objects, manifests, chunks.
    fn epochs(&self) -> impl Iterator<Item = i64> + '_ {
        let chunk_epochs = self.chunks.iter().filter_map(|(_, _, _, key, _)| {
            key.rsplit('/')
                .next()
                .and_then(objects::parse_chunk_name)
                .map(|(_, _, epoch, _)| epoch)
        });
        self.objects
            .keys()
            .chain(self.manifests.iter())
            .copied()
            .chain(chunk_epochs)
    }
}

/// Rebuilds `ctx.source` (see the module doc). Call only when [`needed`] says so and
/// before capture of the source starts.
///
/// # Errors
///
/// [`RebuildError`]; the rebuild can be run again.
pub async fn rebuild(ctx: &RebuildCtx<'_>) -> Result<RebuildReport, RebuildError> {
    let source = ctx.source;
    let mut report = RebuildReport {
        source: source.to_string(),
        ..Default::default()
    };
    info!(source, store = %ctx.tier.store.url(), "rebuilding the source from the archive store");
    rebuild_bases(ctx, &mut report).await?;
    let held = list_held(ctx).await?;
    // Later tenures must write above every epoch the store already holds.
    let highest = held.values().flat_map(Held::epochs).max().unwrap_or(0);
    if highest > 0 {
        ctx.catalog.raise_lease_epoch(source, highest).await?;
    }
    let closed = record_closed_files(ctx, &held, &mut report).await?;
    let newest = closed.last().map(|m| binlog_order(&m.file));
    // Files only in chunks before the newest whole file: never SUCC (a FAIL file, say).
    for ((tl, seq, file), h) in &held {
        if h.manifests.is_empty()
            && !h.chunks.is_empty()
            && newest
                .as_ref()
                .is_some_and(|n| (*tl, *seq, file.clone()) < *n)
        {
            report.skipped.push(format!(
                "{file}: only chunks, before the newest whole file (a gap unless the \
                 primary still has it)"
            ));
        }
    }
    reindex(ctx, &closed, &mut report).await?;
    rebuild_timelines(ctx, &held, &mut report).await?;

    // 5. Local files, last: the newest closed file, then the active prefix.
    let dir = ctx.data_dir.join(source);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| RebuildError::Write {
            path: dir.clone(),
            source: e,
        })?;
    if let Some(m) = closed.last() {
        let cached = ctx.reader.path(source, &dir, &m.file).await?;
        let local = dir.join(&m.file);
        copy_durably(&cached, &local).await?;
        report.local_closed = Some(m.file.clone());
    }
    let active = held
        .iter()
        .find(|((tl, seq, file), h)| {
            h.manifests.is_empty()
                && !h.chunks.is_empty()
                && newest
                    .as_ref()
                    .is_none_or(|n| (*tl, *seq, file.clone()) > *n)
        })
        .map(|((_, _, f), h)| (f.clone(), &h.chunks));
    if let Some((file, chunks)) = active {
        let cctx = ChunkCtx {
            catalog: ctx.catalog,
            tier: ctx.tier,
            source,
            import_rows: true,
        };
        match rebuild_active(&cctx, &dir, &file, chunks).await? {
            Some(len) => report.active = Some((file, len)),
            None => report
                .skipped
                .push(format!("{file}: no chunk starts at offset 0")),
        }
    }
    info!(source, "{}", report.summary());
    Ok(report)
}

/// Step 4: the source's timelines (failover follow) from their records in the store,
/// and a row of unknown divergence for a timeline whose files the store holds without
/// its record ([`super::timelines::rows_for_rebuild`]).
async fn rebuild_timelines(
    ctx: &RebuildCtx<'_>,
    held: &BTreeMap<binlog::BinlogOrder, Held>,
    report: &mut RebuildReport,
) -> Result<(), RebuildError> {
    let mut first_files: BTreeMap<u32, String> = BTreeMap::new();
    for (tl, _, file) in held.keys() {
        first_files.entry(*tl).or_insert_with(|| file.clone());
    }
    let mut rows =
        super::timelines::rows_for_rebuild(&ctx.tier.store, ctx.source, &first_files).await?;
    name_unknown_servers(ctx, held, &mut rows).await;
    // A catalog that survived (only the disk was lost) keeps its rows: a made-up row of
    // unknown divergence never replaces one.
    let known: Vec<i64> = ctx
        .catalog
        .list_timelines(ctx.source)
        .await?
        .iter()
        .map(|r| r.timeline)
        .collect();
    for row in &rows {
        let unknown = row.divergent.as_deref() == Some(super::timelines::UNKNOWN_DIVERGENCE);
        if unknown && known.contains(&row.timeline) {
            continue;
        }
        ctx.catalog.import_timeline(row).await?;
        if unknown {
            report.skipped.push(format!(
                "timeline {}: its files are in the store but not its record; replay will not \
                 cross into it",
                row.timeline
            ));
        }
        report.timelines.push(row.timeline);
    }
    Ok(())
}

/// A timeline rebuilt without its record has no server_id: it is read from the first
/// event header of its first file when the store holds that whole (fetched through the
/// cache), so that capture knows the timeline's server (a file only in chunks leaves it
/// 0: unknown).
async fn name_unknown_servers(
    ctx: &RebuildCtx<'_>,
    held: &BTreeMap<binlog::BinlogOrder, Held>,
    rows: &mut [catalog::TimelineRow],
) {
    let dir = ctx.data_dir.join(ctx.source);
    for row in rows.iter_mut().filter(|r| r.server_id == 0) {
        let Some(first) = row.first_file.clone() else {
            continue;
        };
        let whole = held
            .get(&binlog_order(&first))
            .is_some_and(|h| !h.manifests.is_empty());
        if !whole {
            continue;
        }
        match ctx.reader.path(ctx.source, &dir, &first).await {
            Ok(p) => {
                let id = tokio::task::spawn_blocking(move || super::local::writer_server_id(&p))
                    .await
                    .ok()
                    .flatten();
                row.server_id = id.map_or(0, i64::from);
            }
            Err(e) => {
                warn!(source = ctx.source, file = %first, error = %e, "cannot read a rebuilt timeline's first file for its server_id")
            }
        }
    }
}

/// Step 1: what the store holds under `<source>/binlogs/`, by file in binlog order:
/// whole objects, manifests and chunks.
async fn list_held(
    ctx: &RebuildCtx<'_>,
) -> Result<BTreeMap<binlog::BinlogOrder, Held>, RebuildError> {
    let prefix = format!("{}/binlogs/", ctx.source);
    let mut held: BTreeMap<binlog::BinlogOrder, Held> = BTreeMap::new();
    for (key, size) in ctx.tier.store.list(&prefix).await? {
        let Some(rest) = key.strip_prefix(&prefix) else {
            continue;
        };
        if let Some((file, chunk)) = rest.split_once(".chunks/") {
            if let Some((start, end, _epoch, codec)) = objects::parse_chunk_name(chunk) {
                held.entry(binlog_order(file)).or_default().chunks.push((
                    start,
                    end,
                    codec,
                    key.clone(),
                    size,
                ));
            }
        } else if let Some(name) = rest.strip_suffix(".manifest.json") {
            let (file, epoch) = objects::split_epoch(name);
            held.entry(binlog_order(file))
                .or_default()
                .manifests
                .insert(epoch);
        } else if let Some(name) = objects::whole_object_name(rest) {
            let (file, epoch) = objects::split_epoch(name);
            held.entry(binlog_order(file))
                .or_default()
                .objects
                .insert(epoch, size);
        }
    }
    Ok(held)
}

/// Step 2: the closed files' catalog rows from their manifests (a manifest whose object
/// is missing or of another size is skipped and reported); the manifests, in order.
async fn record_closed_files(
    ctx: &RebuildCtx<'_>,
    held: &BTreeMap<binlog::BinlogOrder, Held>,
    report: &mut RebuildReport,
) -> Result<Vec<Manifest>, RebuildError> {
    let mut closed: Vec<Manifest> = Vec::new();
    for ((_, _, file), h) in held {
        if let Some(m) = usable_manifest(ctx, file, h, report).await? {
            record_closed(ctx, &m).await?;
            report.file_bytes += m.size;
            report.files.push(file.clone());
            closed.push(m);
        }
    }
    Ok(closed)
}

/// The manifest of `file` to rebuild from: of the highest epoch whose object is present
/// with the size the manifest records (the others are reported as skipped); `None` when
/// no epoch has both.
async fn usable_manifest(
    ctx: &RebuildCtx<'_>,
    file: &str,
    h: &Held,
    report: &mut RebuildReport,
) -> Result<Option<Manifest>, RebuildError> {
    let source = ctx.source;
    for &epoch in h.manifests.iter().rev() {
        let m = fetch::manifest(&ctx.tier.store, source, file, epoch).await?;
        if m.file != file || m.object_key != objects::file_key(source, file, epoch) {
            return Err(RebuildError::Invalid {
                key: objects::manifest_key(source, file, epoch),
                message: format!(
                    "names file {:?} at {:?}, not {file:?}: the store was changed by hand",
                    m.file, m.object_key
                ),
            });
        }
        let object = h.objects.get(&epoch).copied();
        if object == Some(m.stored_bytes) {
            return Ok(Some(m));
        }
        report.skipped.push(format!(
            "{file} (epoch {epoch}): its object is {} (the manifest says {} bytes)",
            object.map_or("missing".to_string(), |b| format!("{b} bytes")),
            m.stored_bytes
        ));
    }
    Ok(None)
}

/// Step 3: the source's index from scratch, file by file through the bounded cache.
async fn reindex(
    ctx: &RebuildCtx<'_>,
    closed: &[Manifest],
    report: &mut RebuildReport,
) -> Result<(), RebuildError> {
    let source = ctx.source;
    {
        let index = ctx.index.clone();
        let s = source.to_string();
        tokio::task::spawn_blocking(move || index.clear(&s))
            .await
            .map_err(|source| RebuildError::Task { source })??;
    }
    let dir = ctx.data_dir.join(source);
    for m in closed {
        let path = ctx.reader.path(source, &dir, &m.file).await?;
        let (index, s, f, size) = (
            ctx.index.clone(),
            source.to_string(),
            m.file.clone(),
            m.size,
        );
        let (_, added) = tokio::task::spawn_blocking(move || index.index_file(&s, &f, &path, size))
            .await
            .map_err(|source| RebuildError::Task { source })??;
        report.transactions += added;
    }
    Ok(())
}

/// The catalog rows of closed file `m`: SUCC with the manifest's facts, and its object.
async fn record_closed(ctx: &RebuildCtx<'_>, m: &Manifest) -> Result<(), RebuildError> {
    let source = ctx.source;
    if ctx.catalog.get_file(source, &m.file).await?.is_none() {
        let p = FileProgress {
            name: m.file.clone(),
            size: m.size,
            first_event_time: m.first_event_time,
            last_event_time: m.last_event_time,
            first_gtid: m.first_gtid.clone(),
            last_gtid: m.last_gtid.clone(),
        };
        ctx.catalog.mark_reported(source, &p).await?;
        ctx.catalog
            .set_checked(
                source,
                &m.file,
                FileState::Succ,
                "rebuilt from the archive store (checked when it was shipped)",
                Some(&m.sha256),
                m.size,
            )
            .await?;
    }
    ctx.catalog
        .import_archive_object(&ArchiveObjectRow {
            source: source.to_string(),
            file: m.file.clone(),
            kind: ArchiveKind::File,
            start_offset: 0,
            end_offset: m.size,
            object_key: m.object_key.clone(),
            sha256: m.sha256.clone(),
            stored_bytes: m.stored_bytes,
            stored_sha256: m.stored_sha256.clone(),
            codec: m.codec.clone(),
            key_id: m.key_id.clone(),
            epoch: m.epoch,
            created_at: m.created_at,
            deleted_at: None,
        })
        .await?;
    Ok(())
}

/// `src` copied to `dst` (through `dst.part`), fsynced, renamed, directory fsynced.
pub(crate) async fn copy_durably(src: &Path, dst: &Path) -> Result<(), RebuildError> {
    let (src, dst) = (src.to_path_buf(), dst.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let werr = |source| RebuildError::Write {
            path: dst.clone(),
            source,
        };
        let part = PathBuf::from(format!("{}.tmp", dst.display()));
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d).map_err(werr)?;
        }
        std::fs::copy(&src, &part).map_err(werr)?;
        std::fs::File::open(&part)
            .and_then(|f| f.sync_all())
            .map_err(werr)?;
        std::fs::rename(&part, &dst).map_err(werr)?;
        if let Some(d) = dst.parent() {
            fsync_dir(d).map_err(werr)?;
        }
        Ok(())
    })
    .await
    .map_err(|source| RebuildError::Task { source })?
}

/// What decoding the active file's chunks needs: the catalog (their rows), the store,
/// the source.
pub(crate) struct ChunkCtx<'a> {
    pub(crate) catalog: &'a Catalog,
    pub(crate) tier: &'a Arc<ArchiveTier>,
    pub(crate) source: &'a str,
    /// Record the chunks taken as rows (a rebuild into an empty catalog); a takeover
    /// read them from the catalog's rows.
    pub(crate) import_rows: bool,
}

/// A chunk of a file as the store holds it: (start, end, codec, key, stored size).
pub(crate) type HeldChunk = (u64, u64, String, String, u64);

/// Decodes the chunks of `file` contiguous from 0 into `<dir>/<file>`, keeps the valid
/// prefix, writes the control file and records the chunks inside it. Returns the
/// length kept, or `None` when no chunk starts at 0.
pub(crate) async fn rebuild_active(
    ctx: &ChunkCtx<'_>,
    dir: &Path,
    file: &str,
    chunks: &[HeldChunk],
) -> Result<Option<u64>, RebuildError> {
    let path = dir.join(file);
    let werr = |source: std::io::Error| RebuildError::Write {
        path: path.clone(),
        source,
    };
    // Largest chunk read back: a chunk is at most ship_bytes of plaintext; the stored
    // form is at most a little larger (zstd frame, 16 bytes per 64 KiB segment).
    let max = usize::try_from(ctx.tier.settings.ship_bytes)
        .unwrap_or(usize::MAX / 4)
        .saturating_mul(2)
        .max(1 << 20);
    // The chunks go to `<file>.tmp` one at a time (memory: one chunk), then the valid
    // prefix is renamed into place.
    let part = PathBuf::from(format!("{}.tmp", path.display()));
    {
        let (d, f) = (dir.to_path_buf(), file.to_string());
        tokio::task::spawn_blocking(move || prepare_dir_of(&d, &f))
            .await
            .map_err(|source| RebuildError::Task { source })?
            .map_err(werr)?;
    }
    let mut out = tokio::fs::File::create(&part).await.map_err(werr)?;
    let mut pos = 0u64;
    let mut taken: Vec<ArchiveObjectRow> = Vec::new();
    while let Some((start, end, codec, key, _)) = chunks
        .iter()
        .filter(|c| c.0 <= pos && c.1 > pos)
        .max_by_key(|c| c.1)
    {
        let (stored, plain) = fetch_chunk(ctx, key, codec, *start, *end, max).await?;
        let stored_sha = hex::encode(Sha256::digest(&stored));
        let from = usize::try_from(pos - start).unwrap_or(usize::MAX);
        let Some(new) = plain.get(from..) else {
            break;
        };
        if pos == 0 && !new.starts_with(&binlog::BINLOG_MAGIC) {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(RebuildError::Invalid {
                key: key.clone(),
                message: "the first chunk does not start with the binlog magic".into(),
            });
        }
        tokio::io::AsyncWriteExt::write_all(&mut out, new)
            .await
            .map_err(werr)?;
        pos += new.len() as u64;
        taken.push(ArchiveObjectRow {
            source: ctx.source.to_string(),
            file: file.to_string(),
            kind: ArchiveKind::Chunk,
            start_offset: *start,
            end_offset: *end,
            object_key: key.clone(),
            sha256: hex::encode(Sha256::digest(&plain)),
            stored_bytes: stored.len() as u64,
            stored_sha256: stored_sha,
            codec: codec.clone(),
            key_id: objstore::codec::key_id_of(&stored),
            epoch: key
                .rsplit('/')
                .next()
                .and_then(objects::parse_chunk_name)
                .map_or(0, |(_, _, epoch, _)| epoch),
            created_at: 0,
            deleted_at: None,
        });
    }
    tokio::io::AsyncWriteExt::flush(&mut out)
        .await
        .map_err(werr)?;
    drop(out);
    if pos == 0 {
        let _ = tokio::fs::remove_file(&part).await;
        return Ok(None);
    }
    let (d, f) = (dir.to_path_buf(), file.to_string());
    let len = tokio::task::spawn_blocking(move || install_valid_prefix(&part, &d, &f))
        .await
        .map_err(|source| RebuildError::Task { source })?
        .map_err(werr)?;
    for row in taken
        .iter()
        .filter(|r| ctx.import_rows && r.end_offset <= len)
    {
        ctx.catalog.import_archive_object(row).await?;
    }
    if len < taken.last().map_or(0, |r| r.end_offset) {
        warn!(
            source = ctx.source,
            file,
            kept = len,
            "the active file's chunks hold a bad event: kept the valid prefix, the primary sends the rest"
        );
    }
    Ok(Some(len))
}

/// One chunk of the active file read back and decoded: (stored bytes, plaintext).
/// Errors: the store's, the codec's, or a plaintext whose length is not the
/// `[start, end)` of the chunk's name.
pub(crate) async fn fetch_chunk(
    ctx: &ChunkCtx<'_>,
    key: &str,
    codec: &str,
    start: u64,
    end: u64,
    max: usize,
) -> Result<(Vec<u8>, Vec<u8>), RebuildError> {
    let stored = ctx.tier.store.get_bytes(key, max).await?;
    let plain = objstore::codec::decode(&stored, codec, ctx.tier.settings.keyring.clone())
        .map_err(|source| RebuildError::Codec {
            key: key.to_string(),
            source,
        })?;
    if plain.len() as u64 != end - start {
        return Err(RebuildError::Invalid {
            key: key.to_string(),
            message: format!(
                "decodes to {} bytes, its name says [{start}, {end})",
                plain.len()
            ),
        });
    }
    Ok((stored, plain))
}

/// Cuts `part` to its valid prefix, fsyncs it, renames it to the stored file `file` of
/// the source directory `dir` and records it as the active file
/// ([`super::local::record_active`]: control file written atomically, directories
/// fsynced). Returns the prefix's length, bytes. Blocking.
fn install_valid_prefix(part: &Path, dir: &Path, file: &str) -> std::io::Result<u64> {
    let v = binlog::check::valid_prefix(part, 4)?;
    let f = std::fs::OpenOptions::new().write(true).open(part)?;
    f.set_len(v.len)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(part, dir.join(file))?;
    record_active(dir, file, v.len)?;
    Ok(v.len)
}

/// The fields of a base's `manifest.json` (snapshotter `take.rs`) a row needs. Fields
/// added in manifest version 2 are optional, so older manifests rebuild too.
#[derive(Debug, Deserialize)]
struct BaseManifest {
    id: String,
    source: String,
    method: String,
    tool: String,
    #[serde(default)]
    tool_version: Option<String>,
    #[serde(default)]
    server_version: Option<String>,
    #[serde(default)]
    incremental_from_lsn: Option<u64>,
    #[serde(default)]
    incremental: Option<bool>,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    started_at: Option<i64>,
    #[serde(default)]
    finished_at: Option<i64>,
    #[serde(default)]
    databases: Option<Vec<String>>,
    #[serde(default)]
    db_list: Option<String>,
    #[serde(default)]
    store_url: Option<String>,
    #[serde(default)]
    binlog_file: Option<String>,
    #[serde(default)]
    binlog_pos: Option<u64>,
    #[serde(default)]
    gtid_pos: Option<String>,
    #[serde(default)]
    to_lsn: Option<u64>,
    #[serde(default)]
    consistent_at: Option<i64>,
    #[serde(default)]
    command: Option<String>,
    objects: Vec<StoredObject>,
}

/// Step 1: the bases of the source from their manifests in the `[backup]` store.
async fn rebuild_bases(
    ctx: &RebuildCtx<'_>,
    report: &mut RebuildReport,
) -> Result<(), RebuildError> {
    let prefix = format!("{}/", ctx.source);
    let listing: BTreeMap<String, u64> = ctx.bases.list(&prefix).await?.into_iter().collect();
    let mut manifests: Vec<(BaseManifest, StoredObject)> = Vec::new();
    for (key, size) in &listing {
        let Some(id) = key
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix("/manifest.json"))
        else {
            continue;
        };
        if id == "binlogs" || id.contains('/') {
            continue;
        }
        let raw = ctx.bases.get_bytes(key, BASE_MANIFEST_MAX).await?;
        let m: BaseManifest = serde_json::from_slice(&raw).map_err(|e| RebuildError::Invalid {
            key: key.clone(),
            message: format!("not a base manifest: {e}"),
        })?;
        if m.id != id || m.source != ctx.source {
            report
                .skipped
                .push(format!("{key}: names base {:?} of {:?}", m.id, m.source));
            continue;
        }
        let missing: Vec<&str> = m
            .objects
            .iter()
            .filter(|o| listing.get(&o.key) != Some(&o.bytes))
            .map(|o| o.key.as_str())
            .collect();
        if !missing.is_empty() {
            report.skipped.push(format!(
                "base {id}: {} object(s) missing or of another size (first {})",
                missing.len(),
                missing[0]
            ));
            continue;
        }
        let own = StoredObject {
            key: key.clone(),
            bytes: *size,
            sha256: hex::encode(Sha256::digest(&raw)),
        };
        manifests.push((m, own));
    }
    // Parents of older manifests (no parent_id): the base whose end LSN starts them.
    let by_lsn: BTreeMap<u64, String> = manifests
        .iter()
        .filter_map(|(m, _)| m.to_lsn.map(|l| (l, m.id.clone())))
        .collect();
    for (m, own) in manifests {
        let incremental = m.incremental.unwrap_or(m.incremental_from_lsn.is_some());
        let parent_id = m.parent_id.clone().or_else(|| {
            incremental
                .then(|| m.incremental_from_lsn.and_then(|l| by_lsn.get(&l).cloned()))
                .flatten()
        });
        let finished = m.finished_at.or(m.consistent_at).unwrap_or_default();
        let mut objects = m.objects;
        objects.push(own);
        let row = BackupRow {
            id: m.id.clone(),
            source: m.source,
            method: m.method,
            tool: m.tool,
            incremental,
            parent_id,
            state: BackupState::Completed,
            info: Some("rebuilt from its manifest in the store".into()),
            started_at: m.started_at.unwrap_or(finished),
            finished_at: Some(finished),
            bytes: 0,
            binlog_file: m.binlog_file,
            binlog_pos: m.binlog_pos,
            gtid_pos: m.gtid_pos,
            consistent_at: m.consistent_at,
            from_lsn: m.incremental_from_lsn,
            to_lsn: m.to_lsn,
            server_version: m.server_version,
            tool_version: m.tool_version,
            command: m.command,
            db_list: m.db_list.or(m.databases.map(|d| d.join(","))),
            store_url: m.store_url.or(Some(ctx.bases.url().to_string())),
            state_changed_at: finished,
            objects,
        };
        if ctx.catalog.import_backup(&row).await? {
            report.bases.push(m.id);
        }
    }
    Ok(())
}
