//! Takeover: a node that has just acquired a source's lease (under a new epoch) makes
//! its local archive continue exactly where the archive **store** ends, not where its
//! own disk or the previous owner's rows end, before capture starts.
//!
//! # What is durable, for a new owner
//!
//! The catalog is shared; the previous owner's disk is not. A file the catalog lists is
//! *durable* for the new owner when the store holds it whole, or when this node's own
//! copy is complete (a closed file of the recorded size; an open file at least as long
//! as the published size and the shipped chunks), or when it is closed and its shipped
//! chunks cover it from 0 to its size. The newest durable file is where the archive
//! stands; after it, at most one file continues (the *active* one):
//!
//! - from this node's copy when that is at least as long as the chunks' contiguous
//!   prefix from offset 0;
//! - else from those chunks, decoded and validated event by event (a bad event cuts the
//!   file there) ([`super::rebuild`]'s `rebuild_active`);
//! - else as a new file of the binlog magic alone, which the primary fills from
//!   position 4.
//!
//! Every row after the active file is backed by nothing that survived the old owner
//! and is dropped; the primary sends those binlogs again (as long as it still has them).
//! A closed file before it that nothing durable holds whole (the old owner closed and
//! checked it but had not shipped it yet) is marked FAIL, which makes the checker pull
//! it again from the primary. Those files are not in this node's index: they are
//! recorded as its holes (`Index::unindexed`), and the next takeover, once they are
//! durable again, re-indexes the source from scratch.
//!
//! # Steps, in order
//!
//! 1. Local files that disagree with the catalog (no row, a shorter copy of a closed
//!    file, a shorter copy of the open file, a file after the new end) are moved to
//!    `<data_dir>/<source>/superseded-e<epoch>/`, never deleted: they may hold bytes
//!    the primary no longer has. The control file goes with the active file it names.
//! 2. Closed files that only the chunks hold are decoded to local files.
//! 3. The newest durable file is copied from the store when it is not local, so that
//!    capture knows what follows it and the index catch-up finds it.
//! 4. The active file is decoded from its chunks (or kept).
//! 5. The catalog: [`Catalog::adopt_tail`], fenced by the new epoch.
//! 6. The evicted set: every file the store holds whole and the disk does not.
//! 7. The index: every closed file after the index's position, local, or from its
//!    index segment in the store (`super::segment`), or read back through the archive
//!    reader when it has none; from scratch when the position names a file that is
//!    gone (the capture's own catch-up then adds the active file).
//!
//! # After a crash
//!
//! Each step is idempotent, and the catalog changes only in step 5, in one transaction:
//! a takeover that stops halfway is run again by the next owner (this node or another),
//! which finds a state of the same kind: rows that claim more than the store holds.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use catalog::{ArchiveKind, ArchiveObjectRow, BinlogFileRow, Catalog, FileState};
use serde::Serialize;
use tracing::{info, warn};

use super::cache::{ArchiveReader, Evicted};
use super::index::Index;
use super::local::{
    dir_of_in, fsync_dir, list_binlogs, prepare_dir_of, record_active, CONTROL_FILE,
};
use super::rebuild::{copy_durably, rebuild_active, ChunkCtx, HeldChunk, RebuildError};
use super::tier::ArchiveTier;
use binlog::binlog_order;

/// What a takeover reads and writes.
pub struct TakeoverCtx<'a> {
    /// The shared catalog.
    pub catalog: &'a Catalog,
    /// This node's transaction index.
    pub index: &'a Arc<Index>,
    /// The archive store.
    pub tier: &'a Arc<ArchiveTier>,
    /// The reader through which files only in the store are fetched.
    pub reader: &'a ArchiveReader,
    /// `data_dir`.
    pub data_dir: &'a Path,
    /// Source name.
    pub source: &'a str,
    /// The new tenure's epoch: fences the catalog change.
    pub epoch: i64,
    /// The source's set of files only in the store (shared with the shipper and the
    /// fake primary), brought up to date.
    pub evicted: &'a Evicted,
}

impl TakeoverCtx<'_> {
    /// What decoding chunks needs; their rows are already in the catalog.
    fn chunks(&self) -> ChunkCtx<'_> {
        ChunkCtx {
            catalog: self.catalog,
            tier: self.tier,
            source: self.source,
            import_rows: false,
        }
    }
}

/// What a takeover did, for the log, the source's notes and the API.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TakeoverReport {
    /// Source name.
    pub source: String,
    /// The new epoch.
    pub epoch: i64,
    /// Local files kept as they were.
    pub kept: usize,
    /// Files written locally from the store (whole objects or chunks), oldest first.
    pub fetched: Vec<String>,
    /// The file capture continues and its length, bytes (`None`: the next file after
    /// the newest durable one, or the configured start).
    pub active: Option<(String, u64)>,
    /// Rows dropped: files after the active one that nothing durable backs.
    pub dropped: Vec<String>,
    /// Local files moved to `superseded-e<epoch>/`.
    pub set_aside: Vec<String>,
    /// Closed files that neither the store nor this disk holds whole: marked FAIL, so
    /// that the checker pulls them again from the primary while it has them.
    pub left_to_checker: Vec<String>,
    /// Closed files indexed, and the transactions they added.
    pub indexed_files: usize,
    /// Transactions indexed.
    pub transactions: u64,
}

impl TakeoverReport {
    /// One line: what was adopted and where capture resumes.
    pub fn summary(&self) -> String {
        let resume = match &self.active {
            Some((f, len)) => format!("capture resumes in {f} at {len}"),
            None => "capture resumes after the newest durable file".to_string(),
        };
        let mut s = format!(
            "took over under epoch {}: kept {} local file(s), fetched {} from the store, \
             indexed {} ({} transactions); {resume}",
            self.epoch,
            self.kept,
            self.fetched.len(),
            self.indexed_files,
            self.transactions
        );
        for (what, list) in [
            ("dropped rows nothing durable backs", &self.dropped),
            ("set aside", &self.set_aside),
            ("to pull again from the primary", &self.left_to_checker),
        ] {
            if !list.is_empty() {
                s.push_str(&format!("; {what}: {}", list.join(", ")));
            }
        }
        s
    }
}

/// The file capture continues: the first row after the newest durable file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Active {
    /// Its name.
    file: String,
    /// The length of this node's copy, bytes, when it has one (its valid prefix is
    /// measured before it is used).
    local: Option<u64>,
    /// Its chunks contiguous from offset 0.
    chunks: Vec<HeldChunk>,
}

/// The takeover's plan, from the catalog's rows and the local files alone.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Local files kept.
    keep: Vec<String>,
    /// Local files to move aside.
    set_aside: Vec<String>,
    /// Closed files to decode from chunks that cover them: (file, size, chunks).
    from_chunks: Vec<(String, u64, Vec<HeldChunk>)>,
    /// The newest durable file, when it must be copied from its whole object.
    copy_newest: Option<String>,
    /// How the active file continues.
    active: Option<Active>,
    /// Rows to drop.
    drop: Vec<String>,
    /// Closed files neither held whole nor decodable.
    left: Vec<String>,
    /// Durable files up to the newest, in binlog order: (file, size, closed).
    durable: Vec<(String, u64, bool)>,
    /// Files the store holds whole: (file, size).
    whole: Vec<(String, u64)>,
}

/// What the store holds of each file, from the live object rows, grouped once: (whether
/// a whole object is recorded, the chunks as (start, end, codec, key, stored size)).
pub(crate) fn objects_by_file(objs: &[ArchiveObjectRow]) -> HashMap<&str, (bool, Vec<HeldChunk>)> {
    let mut by_file: HashMap<&str, (bool, Vec<HeldChunk>)> = HashMap::new();
    for o in objs {
        let entry = by_file.entry(o.file.as_str()).or_default();
        match o.kind {
            ArchiveKind::File => entry.0 = true,
            ArchiveKind::Chunk => entry.1.push((
                o.start_offset,
                o.end_offset,
                o.codec.clone(),
                o.object_key.clone(),
                o.stored_bytes,
            )),
        }
    }
    by_file
}

/// The end of the chunks' contiguous coverage from offset 0, bytes.
pub(crate) fn coverage(chunks: &[HeldChunk]) -> u64 {
    catalog::contiguous_end(chunks.iter().map(|c| (c.0, c.1)))
}

/// What the store and this disk hold of one row.
#[derive(Debug)]
struct Facts {
    /// The row is closed (REPORTED, SUCC or FAIL).
    closed: bool,
    /// Its chunks.
    chunks: Vec<HeldChunk>,
    /// Their contiguous coverage from 0, bytes.
    cov: u64,
    /// The store holds it whole.
    whole: bool,
    /// This node's copy is complete (module docs).
    local_ok: bool,
}

impl Facts {
    /// The facts of row `r` from the store's objects of its file ([`objects_by_file`])
    /// and the local files (name -> size).
    fn of(
        r: &BinlogFileRow,
        held: Option<(bool, Vec<HeldChunk>)>,
        local: &BTreeMap<String, u64>,
    ) -> Facts {
        let closed = r.state != FileState::Active;
        let (whole, chunks) = held.unwrap_or_default();
        let cov = coverage(&chunks);
        let local_ok = local.get(&r.name).is_some_and(|&l| {
            if closed {
                l == r.size
            } else {
                l >= r.size.max(cov)
            }
        });
        Facts {
            closed,
            chunks,
            cov,
            whole,
            local_ok,
        }
    }

    /// Closed, and its chunks cover it whole.
    fn decodable(&self, r: &BinlogFileRow) -> bool {
        self.closed && r.size > 4 && self.cov >= r.size
    }
}

/// Plans a takeover (module docs) from `rows` (any order), `objs` (live objects) and
/// the local files (name -> size).
fn plan(rows: &[BinlogFileRow], objs: &[ArchiveObjectRow], local: &BTreeMap<String, u64>) -> Plan {
    let mut rows: Vec<&BinlogFileRow> = rows.iter().collect();
    rows.sort_by_key(|r| binlog_order(&r.name));
    let mut by_file = objects_by_file(objs);
    let mut facts: Vec<Facts> = rows
        .iter()
        .map(|r| Facts::of(r, by_file.remove(r.name.as_str()), local))
        .collect();
    let durable = |(r, f): (&&BinlogFileRow, &Facts)| f.whole || f.local_ok || f.decodable(r);
    // After the newest durable file, and never past an open file that is not durable:
    // capture cannot leave a hole in the middle of what it continues.
    let upto = rows
        .iter()
        .zip(&facts)
        .rposition(durable)
        .map_or(0, |i| i + 1)
        .min(
            rows.iter()
                .zip(&facts)
                .position(|(r, f)| !f.closed && !durable((r, f)))
                .unwrap_or(usize::MAX),
        );
    let mut p = Plan::default();
    for (r, f) in rows.iter().zip(&facts) {
        if f.whole {
            p.whole.push((r.name.clone(), r.size));
        }
    }
    let mut rest = facts.split_off(upto.min(facts.len()));
    for (r, f) in rows.iter().zip(facts) {
        plan_durable(&mut p, r, f);
    }
    if let (Some(next), Some(f)) = (rows.get(upto), (!rest.is_empty()).then(|| rest.remove(0))) {
        let cov = f.cov;
        p.active = Some(Active {
            file: next.name.clone(),
            local: local.get(&next.name).copied(),
            chunks: f.chunks.into_iter().filter(|c| c.0 < cov).collect(),
        });
    }
    for r in rows.iter().skip(upto + 1) {
        p.drop.push(r.name.clone());
    }
    let keep: HashSet<&str> = p.keep.iter().map(String::as_str).collect();
    // The newest closed durable file must be local: copied from its whole object.
    if let Some((f, _, true)) = p.durable.last() {
        let decoded = p.from_chunks.last().is_some_and(|(c, _, _)| c == f);
        let whole = p.whole.iter().any(|(w, _)| w == f);
        if !keep.contains(f.as_str()) && !decoded && whole {
            p.copy_newest = Some(f.clone());
        }
    }
    let active = p.active.as_ref().map(|a| a.file.as_str());
    p.set_aside = local
        .keys()
        .filter(|name| !keep.contains(name.as_str()) && active != Some(name.as_str()))
        .cloned()
        .collect();
    p
}

/// Plans a row up to the newest durable file: kept, decoded from chunks, only in the
/// store, or held whole by nobody (left: pulled again from the primary, FAIL files
/// included, which are not in this node's index either).
fn plan_durable(p: &mut Plan, r: &BinlogFileRow, f: Facts) {
    let decodable = f.decodable(r);
    if f.local_ok {
        p.keep.push(r.name.clone());
    } else if !f.whole && decodable {
        p.from_chunks.push((r.name.clone(), r.size, f.chunks));
    } else if !f.whole {
        p.left.push(r.name.clone());
    }
    if f.local_ok || f.whole || decodable {
        p.durable.push((r.name.clone(), r.size, f.closed));
    }
}

/// The binlog files of the source directory `dir` and its timelines' (stored name ->
/// size); none when it does not exist.
fn local_files(dir: &Path) -> std::io::Result<BTreeMap<String, u64>> {
    match list_binlogs(dir) {
        Ok(v) => Ok(v.into_iter().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// Takes `ctx.source` over (module docs). Call after acquiring its lease and before
/// capture of the source starts.
///
/// # Errors
///
/// [`RebuildError`]: the catalog (including [`catalog::CatalogError::Fenced`]: the
/// lease is gone; do not capture), the store, a damaged object, the local disk. Every
/// one leaves a state the next takeover handles: retry at the next tenure.
pub async fn take_over(ctx: &TakeoverCtx<'_>) -> Result<TakeoverReport, RebuildError> {
    let source = ctx.source;
    let dir = ctx.data_dir.join(source);
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RebuildError::Write { path, source }
    };
    let rows = ctx.catalog.list_files(source).await?;
    let objs = ctx.catalog.list_archive_objects(source).await?;
    let local = blocking({
        let dir = dir.clone();
        move || {
            std::fs::create_dir_all(&dir)?;
            local_files(&dir)
        }
    })
    .await?
    .map_err(werr(&dir))?;
    let p = plan(&rows, &objs, &local);
    let mut report = TakeoverReport {
        source: source.to_string(),
        epoch: ctx.epoch,
        kept: p.keep.len(),
        dropped: p.drop.clone(),
        set_aside: p.set_aside.clone(),
        left_to_checker: p.left.clone(),
        ..Default::default()
    };
    {
        let (d, e, files) = (dir.clone(), ctx.epoch, p.set_aside.clone());
        blocking(move || set_aside(&d, e, &files))
            .await?
            .map_err(werr(&dir))?;
    }
    let short_newest = fetch_closed(ctx, &dir, &p, &mut report).await?;
    let mut drop = p.drop.clone();
    let active = match (short_newest, &p.active) {
        (Some(short), next) => {
            continue_short(ctx, &dir, next.as_ref(), &mut drop, &mut report).await?;
            Some(short)
        }
        (None, Some(a)) => Some(continue_active(ctx, &dir, a, &mut report).await?),
        (None, None) => None,
    };
    ctx.catalog
        .adopt_tail(
            source,
            ctx.epoch,
            active.as_ref().map(|(f, l)| (f.as_str(), *l)),
            &report.left_to_checker,
            &drop,
        )
        .await?;
    report.active = active;
    report.dropped = drop;
    note_evicted(ctx, &dir, &p).await?;
    reindex(ctx, &dir, &p, &mut report).await?;
    info!(source, epoch = ctx.epoch, "{}", report.summary());
    Ok(report)
}

/// Step 1: moves `files` (stored names) of `dir` to `superseded-e<epoch>/` (a
/// timeline's file to its `tl<N>/` there), with the control file when it names one of
/// them.
fn set_aside(dir: &Path, epoch: i64, files: &[String]) -> std::io::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let aside = dir.join(format!("superseded-e{epoch}"));
    std::fs::create_dir_all(&aside)?;
    let control = super::local::read_control_in(dir);
    let mut touched: BTreeSet<PathBuf> = BTreeSet::from([aside.clone(), dir.to_path_buf()]);
    for f in files {
        warn!(file = %f, to = %aside.display(), "a local binlog disagrees with the archive's record; moved aside");
        let to = prepare_dir_of(&aside, f)?;
        std::fs::rename(dir.join(f), aside.join(f))?;
        touched.insert(to);
        touched.insert(dir_of_in(dir, f));
    }
    if control.is_some_and(|c| files.contains(&c.file)) {
        std::fs::rename(dir.join(CONTROL_FILE), aside.join(CONTROL_FILE))?;
    }
    touched.iter().try_for_each(|d| fsync_dir(d))
}

/// Steps 2 and 3: closed files decoded from their chunks, then the newest durable file
/// copied from its whole object when it is not local. A file whose chunks hold a bad
/// event is removed again and left to the checker, except the newest durable one: its
/// valid prefix is returned, (file, length), to continue capture in.
async fn fetch_closed(
    ctx: &TakeoverCtx<'_>,
    dir: &Path,
    p: &Plan,
    report: &mut TakeoverReport,
) -> Result<Option<(String, u64)>, RebuildError> {
    let cctx = ctx.chunks();
    let newest = p.durable.last().map(|(f, _, _)| f.as_str());
    for (file, size, chunks) in &p.from_chunks {
        match rebuild_active(&cctx, dir, file, chunks).await? {
            Some(len) if len == *size => report.fetched.push(file.clone()),
            Some(len) if Some(file.as_str()) == newest => {
                warn!(source = ctx.source, file, len, size, "the newest closed file's chunks hold a bad event; capture continues after its valid prefix");
                report.fetched.push(file.clone());
                return Ok(Some((file.clone(), len)));
            }
            got => {
                warn!(
                    source = ctx.source,
                    file,
                    ?got,
                    size,
                    "a closed file's chunks do not rebuild it whole; left to the checker"
                );
                let path = dir.join(file);
                let p = path.clone();
                blocking(move || std::fs::remove_file(p))
                    .await?
                    .map_err(|source| RebuildError::Write { path, source })?;
                report.left_to_checker.push(file.clone());
            }
        }
    }
    if let Some(f) = &p.copy_newest {
        let cached = ctx.reader.path(ctx.source, dir, f).await?;
        copy_durably(&cached, &dir.join(f)).await?;
        report.fetched.push(f.clone());
    }
    Ok(None)
}

/// Step 4 when the newest durable file decoded short: capture continues in it, and the
/// file planned to follow it (`next`) is dropped and set aside, for the primary sends
/// it again.
async fn continue_short(
    ctx: &TakeoverCtx<'_>,
    dir: &Path,
    next: Option<&Active>,
    drop: &mut Vec<String>,
    report: &mut TakeoverReport,
) -> Result<(), RebuildError> {
    let Some(a) = next else {
        return Ok(());
    };
    drop.insert(0, a.file.clone());
    if a.local.is_some() {
        let (d, e, aside) = (dir.to_path_buf(), ctx.epoch, [a.file.clone()]);
        blocking(move || set_aside(&d, e, &aside))
            .await?
            .map_err(|source| RebuildError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        report.set_aside.push(a.file.clone());
    }
    Ok(())
}

/// Step 6: every file the store holds whole and the disk does not joins the evicted
/// set.
async fn note_evicted(ctx: &TakeoverCtx<'_>, dir: &Path, p: &Plan) -> Result<(), RebuildError> {
    let (whole, d) = (p.whole.clone(), dir.to_path_buf());
    let gone: Vec<(String, u64)> = blocking(move || {
        whole
            .into_iter()
            .filter(|(f, _)| !d.join(f).exists())
            .collect()
    })
    .await?;
    for (f, size) in &gone {
        ctx.evicted.insert(f, *size);
    }
    Ok(())
}

/// Step 4: the file capture continues, and its length: this node's copy (its valid
/// prefix) when at least as long as the chunks, else the chunks decoded, else a new
/// file of the binlog magic alone, which the primary fills from position 4.
async fn continue_active(
    ctx: &TakeoverCtx<'_>,
    dir: &Path,
    a: &Active,
    report: &mut TakeoverReport,
) -> Result<(String, u64), RebuildError> {
    let path = dir.join(&a.file);
    let werr = |source| RebuildError::Write {
        path: path.clone(),
        source,
    };
    let cov = coverage(&a.chunks);
    let local = match a.local {
        Some(_) => {
            let p = path.clone();
            blocking(move || binlog::check::valid_prefix(&p, 4))
                .await?
                .map_err(werr)?
                .len
        }
        None => 0,
    };
    if local > 4 && local >= cov {
        return Ok((a.file.clone(), local));
    }
    if cov > 4 {
        if let Some(len) = decode_over_local(ctx, dir, a, local).await? {
            report.fetched.push(a.file.clone());
            return Ok((a.file.clone(), len));
        }
        if local > 4 {
            return Ok((a.file.clone(), local));
        }
    }
    let (d, f) = (dir.to_path_buf(), a.file.clone());
    blocking(move || write_fresh(&d, &f)).await?.map_err(werr)?;
    Ok((a.file.clone(), 4))
}

/// Decodes the chunks of `a` into its file and returns the length kept, unless that is
/// shorter than this node's valid copy of `local` bytes (chunks that hold a bad event
/// early): the copy is then put back (with its control file) and `None` returned.
async fn decode_over_local(
    ctx: &TakeoverCtx<'_>,
    dir: &Path,
    a: &Active,
    local: u64,
) -> Result<Option<u64>, RebuildError> {
    let path = dir.join(&a.file);
    let keep = PathBuf::from(format!("{}.keep", path.display()));
    let werr = |source| RebuildError::Write {
        path: path.clone(),
        source,
    };
    if local > 4 {
        let (from, to) = (path.clone(), keep.clone());
        blocking(move || std::fs::rename(from, to))
            .await?
            .map_err(werr)?;
    }
    let cctx = ctx.chunks();
    let got = rebuild_active(&cctx, dir, &a.file, &a.chunks).await?;
    if local <= 4 {
        return Ok(got);
    }
    let (p, k, d, f) = (
        path.clone(),
        keep.clone(),
        dir.to_path_buf(),
        a.file.clone(),
    );
    let longer = got.filter(|len| *len >= local);
    blocking(move || -> std::io::Result<()> {
        if longer.is_some() {
            return std::fs::remove_file(&k);
        }
        std::fs::rename(&k, &p)?;
        record_active(&d, &f, local)
    })
    .await?
    .map_err(werr)?;
    Ok(longer)
}

/// A new active file `file` (a stored name) in the source directory `dir`: the binlog
/// magic alone, fsynced, recorded in the control file (its timeline's directory
/// created first). Blocking.
fn write_fresh(dir: &Path, file: &str) -> std::io::Result<()> {
    prepare_dir_of(dir, file)?;
    let mut f = std::fs::File::create(dir.join(file))?;
    std::io::Write::write_all(&mut f, &binlog::BINLOG_MAGIC)?;
    f.sync_all()?;
    record_active(dir, file, 4)
}

/// Runs blocking file-system work off the runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RebuildError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| RebuildError::Task { source })
}

/// Step 7: indexes the closed durable files after the index's position (from scratch
/// when the position names a file that is not durable any more, or files were set
/// aside), each local or read back through the archive reader.
async fn reindex(
    ctx: &TakeoverCtx<'_>,
    dir: &Path,
    p: &Plan,
    report: &mut TakeoverReport,
) -> Result<(), RebuildError> {
    let source = ctx.source.to_string();
    let task_err = |source| RebuildError::Task { source };
    let pos = ctx.index.position(&source)?;
    let at = pos
        .as_ref()
        .and_then(|pos| p.durable.iter().position(|(f, _, _)| *f == pos.file));
    // Holes that are durable now (pulled again since) are filled by starting over.
    let left: HashSet<&str> = report.left_to_checker.iter().map(String::as_str).collect();
    let durable: HashSet<&str> = p.durable.iter().map(|(f, _, _)| f.as_str()).collect();
    let holes = ctx.index.unindexed(&source)?;
    let healed = holes
        .iter()
        .any(|h| durable.contains(h.as_str()) && !left.contains(h.as_str()));
    let from = match (&pos, at) {
        (Some(pos), Some(i)) if p.set_aside.is_empty() && !healed => {
            let (_, size, closed) = &p.durable[i];
            if *closed && pos.offset < *size {
                i
            } else {
                i + 1
            }
        }
        (None, _) => 0,
        _ => {
            let (index, s) = (ctx.index.clone(), source.clone());
            tokio::task::spawn_blocking(move || index.clear(&s))
                .await
                .map_err(task_err)??;
            0
        }
    };
    let active = report.active.as_ref().map(|(f, _)| f);
    let objects = ctx.catalog.list_archive_objects(&source).await?;
    let whole: HashMap<&str, (i64, &str)> = objects
        .iter()
        .filter(|o| o.kind == ArchiveKind::File)
        .map(|o| (o.file.as_str(), (o.epoch, o.codec.as_str())))
        .collect();
    for (file, size, closed) in p.durable.iter().skip(from) {
        if !closed || Some(file) == active {
            break;
        }
        if left.contains(file.as_str()) {
            continue;
        }
        // A file not on this disk is indexed from its segment when it has one, instead
        // of being read back whole.
        let segment = match (dir.join(file).is_file(), whole.get(file.as_str())) {
            (false, Some(&obj)) => {
                super::segment::load_or_warn(ctx.tier, &source, file, *size, obj).await
            }
            _ => None,
        };
        let (index, s, f, size) = (ctx.index.clone(), source.clone(), file.clone(), *size);
        let (_, added) = match segment {
            Some(records) => {
                tokio::task::spawn_blocking(move || index.import_file(&s, &f, &records, size))
                    .await
                    .map_err(task_err)??
            }
            None => {
                let path: PathBuf = ctx.reader.path(&source, dir, &f).await?;
                tokio::task::spawn_blocking(move || index.index_file(&s, &f, &path, size))
                    .await
                    .map_err(task_err)??
            }
        };
        report.indexed_files += 1;
        report.transactions += added;
    }
    // Files pulled again later are not indexed: PITR plans refuse them (module docs).
    let (index, s, left) = (
        ctx.index.clone(),
        source.clone(),
        report.left_to_checker.clone(),
    );
    tokio::task::spawn_blocking(move || index.mark_unindexed(&s, &left))
        .await
        .map_err(task_err)??;
    Ok(())
}

#[cfg(test)]
mod tests;
