//! What a session reads of the archive it serves: the files on disk, the newest
//! FORMAT_DESCRIPTION (the dialect the handshake presents) and the capture's durable end.

use super::error::DumpError;
use std::path::PathBuf;
use std::sync::Arc;

use catalog::Catalog;

use archive::fetch::FetchError;
use archive::follow::IndexWriter;
use archive::index::Index;
use binlog::binlog_order;
use binlog::{event_type, ChecksumAlg, EventHeader, EventReader, FormatDescription};
use node::status::{CaptureState, StatusCell};

/// The archive one listener serves.
pub struct Archive {
    /// Source name.
    pub source: String,
    /// `<data_dir>/<source>`.
    pub dir: PathBuf,
    /// Live capture status (durable end of the ACTIVE file); `None` when nothing captures
    /// into this archive: every file is then served whole.
    pub status: Option<StatusCell>,
    /// Catalog (file states and gaps).
    pub catalog: Arc<Catalog>,
    /// Transaction index (GTID starts).
    pub index: Arc<Index>,
    /// The source's checker queue: a file found damaged while serving is sent here so
    /// the archive's own state for it becomes FAIL (and it is re-pulled while the
    /// primary still has it). `None` when no checker runs.
    pub checks: Option<tokio::sync::mpsc::Sender<String>>,
    /// Files only in the archive store (evicted from `dir`).
    pub evicted: archive::cache::Evicted,
    /// Reads evicted files back from the store; `None` without `[archive]`.
    pub reader: Option<Arc<archive::cache::ArchiveReader>>,
    /// Who writes the source's index on this node: its capture for a tenure, or a
    /// follow from the store between them ([`Archive::for_restore`]).
    pub writer: Arc<IndexWriter>,
    /// A view of the store ([`Archive::for_restore`]): its end (the tail copy and its
    /// checked length, or the newest whole file and its size), served as a capture's
    /// durable end is, so that a dump never reads past what the view checked and never
    /// takes the tail copy, which later refreshes extend, for a closed file. `None` for
    /// a source's own archive.
    pub view_end: Option<(String, u64)>,
}

/// A restore's archive and, for a view of the store, the source's index held by it, so
/// that a capture starting meanwhile does not change the index under a plan.
pub struct ForRestore {
    /// The archive to read.
    pub archive: Arc<Archive>,
    /// The index writer's guard (`None`: the source's own archive).
    pub index_guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Archive {
    /// The archive a restore on this node reads: this one, unless `status` shows a fleet
    /// node that does not capture the source (standby); then a view of what the store
    /// holds, brought up to date now (`archive::follow`): the closed files the store
    /// holds whole (read back through the cache) and the active file's prefix from its
    /// chunks, with this node's index of them. While this node's capture holds the
    /// index (a tenure is starting), this archive.
    ///
    /// # Errors
    ///
    /// The store or the catalog cannot be read, or an object is damaged (the cause names
    /// it); the caller refuses the restore and says so.
    pub async fn for_restore(
        self: &Arc<Self>,
    ) -> Result<ForRestore, archive::rebuild::RebuildError> {
        let own = || ForRestore {
            archive: self.clone(),
            index_guard: None,
        };
        let standby = self
            .status
            .as_ref()
            .is_some_and(|s| s.snapshot().state == CaptureState::Standby);
        let (true, Some(reader)) = (standby, &self.reader) else {
            return Ok(own());
        };
        let Some(guard) = self.writer.follow().await else {
            return Ok(own());
        };
        let data_dir = self.dir.parent().unwrap_or(&self.dir);
        let dir = archive::follow::view_dir(data_dir, &self.source);
        let view = archive::follow::refresh(&archive::follow::FollowCtx {
            catalog: &self.catalog,
            tier: reader.tier(),
            reader,
            index: &self.index,
            source: &self.source,
            dir: &dir,
            writer: &self.writer,
        })
        .await?;
        tracing::info!(
            source = %self.source,
            whole = view.whole.len(),
            tail = ?view.tail,
            indexed_files = view.indexed_files,
            from_segments = view.from_segments,
            transactions = view.transactions,
            interrupted = view.interrupted,
            "followed the archive from the store (this node does not capture the source)"
        );
        let archive = Arc::new(Archive {
            source: self.source.clone(),
            dir,
            status: None,
            catalog: self.catalog.clone(),
            index: self.index.clone(),
            checks: None,
            evicted: view.evicted(),
            reader: Some(reader.clone()),
            writer: self.writer.clone(),
            view_end: view.end(),
        });
        Ok(ForRestore {
            archive,
            index_guard: Some(guard),
        })
    }
}

impl Archive {
    /// Queues `file` for a check by the source's checker (best effort: a full queue
    /// drops the request; the periodic scrub finds the damage later).
    pub(super) fn report_damage(&self, file: &str) {
        if let Some(tx) = &self.checks {
            let _ = tx.try_send(file.to_string());
        }
    }

    /// Where `file`'s bytes are: the local file, or (evicted) a checked copy fetched
    /// from the archive store into the cache.
    ///
    /// # Errors
    ///
    /// [`FetchError`] when it is not local and cannot be fetched.
    pub async fn path_of(&self, file: &str) -> Result<PathBuf, FetchError> {
        let local = self.dir.join(file);
        let Some(r) = &self.reader else {
            return Ok(local);
        };
        self.prefetch_after(r, file);
        r.path(&self.source, &self.dir, file).await
    }

    /// [`Archive::path_of`] for a dump: `file` opened as soon as its first
    /// [`FOLLOW_MIN`] bytes are there, an evicted file streamed while it is fetched
    /// ([`archive::cache::Opened::Fetching`]), so a replica's first event of a large
    /// evicted file does not wait for the whole download.
    ///
    /// # Errors
    ///
    /// [`FetchError`] when it is not local and cannot be fetched.
    pub async fn open_of(&self, file: &str) -> Result<archive::cache::Opened, FetchError> {
        let local = self.dir.join(file);
        let Some(r) = &self.reader else {
            return Ok(archive::cache::Opened::Whole(local));
        };
        self.prefetch_after(r, file);
        r.open(&self.source, &self.dir, file, FOLLOW_MIN).await
    }

    /// Starts fetching the evicted files after `file` while it is read: at least one,
    /// and as many as fit in PREFETCH_BYTES (at most PREFETCH_FILES), so a replica
    /// reading small files does not wait for the store once per file.
    fn prefetch_after(&self, r: &Arc<archive::cache::ArchiveReader>, file: &str) {
        let order = binlog::binlog_order(file);
        let mut next: Vec<(String, u64)> = self
            .evicted
            .snapshot()
            .into_iter()
            .filter(|(n, _)| binlog::binlog_order(n) > order)
            .collect();
        next.sort_by_key(|(n, _)| binlog::binlog_order(n));
        // A quarter of the cache at most, so prefetched files are not trimmed (least
        // recently used) before the dump reaches them.
        let window = PREFETCH_BYTES.min(r.tier().settings.cache_bytes / 4);
        let mut ahead = 0u64;
        for (n, size) in next.iter().take(PREFETCH_FILES) {
            if ahead > 0 && ahead + size > window {
                break;
            }
            ahead += size;
            r.prefetch(&self.source, &self.dir, n);
        }
    }
}

/// How much of an evicted file is fetched before a dump starts sending it, bytes: more
/// than its FORMAT_DESCRIPTION and the event after it, which the dump checks first.
const FOLLOW_MIN: u64 = 64 << 10;

/// How far ahead of a dump evicted files are fetched, bytes (at least one file).
const PREFETCH_BYTES: u64 = 64 << 20;

/// How many files ahead of a dump are fetched at most.
const PREFETCH_FILES: usize = 8;

/// Facts about the archive a session needs (read at connect time).
#[derive(Debug, Clone)]
pub(super) struct ArchiveFacts {
    /// Server version from the newest file's FORMAT_DESCRIPTION (without "5.5.5-").
    pub(super) version: String,
    /// The binlogs are MariaDB's.
    pub(super) mariadb: bool,
    /// The primary's server_id (from that event's header).
    pub(super) server_id: u32,
    /// The checksum algorithm of the newest file.
    pub(super) alg: ChecksumAlg,
    /// The files on disk with their sizes, as [`list_files`] returns them.
    pub(super) files: Vec<(String, u64)>,
}

/// Reads [`ArchiveFacts`] from the newest file on disk (a file only in the store is not
/// fetched for it); defaults (MariaDB 10.11, server_id 1, CRC32) while the archive holds
/// no readable file. Blocking.
///
/// # Errors
///
/// Listing the directory or opening the newest file fails.
pub(super) fn archive_facts(a: &Archive) -> anyhow::Result<ArchiveFacts> {
    let files = list_files(a)?;
    let newest = files
        .iter()
        .rev()
        .map(|(name, _)| a.dir.join(name))
        .find(|p| p.is_file());
    facts_from(files, newest.as_deref())
}

/// [`archive_facts`] for a session: from the newest file, whose first bytes are read
/// back from the store when it is only there, as on a view of the store whose files
/// are all whole (the download stops after the FORMAT_DESCRIPTION).
///
/// # Errors
///
/// Listing the directory, or reading the newest file's start (disk or store) fails.
pub(super) async fn session_facts(a: &Arc<Archive>) -> anyhow::Result<ArchiveFacts> {
    let files = {
        let a = a.clone();
        tokio::task::spawn_blocking(move || list_files(&a)).await??
    };
    let newest = files.last().map(|(name, _)| name.clone());
    let fde = match (newest, &a.reader) {
        (Some(name), Some(r)) => {
            let head = r.prefix(&a.source, &a.dir, &name, FDE_PREFIX).await?;
            fde_of(std::io::Cursor::new(head))
        }
        (Some(name), None) => {
            let path = a.dir.join(name);
            tokio::task::spawn_blocking(move || read_fde_event(&path)).await??
        }
        (None, _) => None,
    };
    Ok(facts_with(files, fde))
}

/// How much of a file's start holds its FORMAT_DESCRIPTION, bytes: the magic and one
/// event (a few hundred bytes in every version; MySQL 8's is under 200).
const FDE_PREFIX: usize = 16 << 10;

/// [`ArchiveFacts`] of `files`, the dialect read from the file at `newest`.
fn facts_from(
    files: Vec<(String, u64)>,
    newest: Option<&std::path::Path>,
) -> anyhow::Result<ArchiveFacts> {
    let fde = match newest {
        Some(path) => read_fde_event(path)?,
        None => None,
    };
    Ok(facts_with(files, fde))
}

/// [`ArchiveFacts`] of `files`, the dialect from `fde` (defaults without one).
fn facts_with(
    files: Vec<(String, u64)>,
    fde: Option<(EventHeader, FormatDescription)>,
) -> ArchiveFacts {
    let mut out = ArchiveFacts {
        version: "10.11.0-MariaDB-binlog-server".into(),
        mariadb: true,
        server_id: 1,
        alg: ChecksumAlg::Crc32,
        files,
    };
    if let Some((h, fde)) = fde {
        out.version = fde.server_version.clone();
        out.mariadb = fde.is_mariadb;
        out.server_id = h.server_id;
        out.alg = fde.checksum_alg;
    }
    out
}

/// The archive's binlog files in order with their sizes on disk (the ACTIVE file's size
/// may include bytes not yet durable), and the evicted ones (only in the archive store)
/// with their sizes. Empty when there are none.
///
/// # Errors
///
/// [`DumpError::Io`]: the directory cannot be read.
pub(super) fn list_files(a: &Archive) -> Result<Vec<(String, u64)>, DumpError> {
    // Every timeline's files, by stored name (`archive::local`, "Timelines").
    let mut v = match archive::local::list_binlogs(&a.dir) {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DumpError::io("list", &a.dir)(e)),
    };
    for (name, size) in a.evicted.snapshot() {
        if !v.iter().any(|(n, _)| *n == name) {
            v.push((name, size));
        }
    }
    if let Some(end) = &a.view_end {
        up_to_view_end(&mut v, end);
    }
    v.sort_by_key(|(n, _)| binlog_order(n));
    Ok(v)
}

/// Keeps a view's listing to the view as its session logged in: the tail copies'
/// directory is shared by every session of the source, so a later refresh may have
/// removed the copy of this view's end file (whole in the store now: it is then read
/// back from there, as the view's other files are) and written the copy of a later
/// file (past this view's end: dropped).
fn up_to_view_end(v: &mut Vec<(String, u64)>, (end_file, end_pos): &(String, u64)) {
    let last = binlog_order(end_file);
    v.retain(|(n, _)| binlog_order(n) <= last);
    if !v.iter().any(|(n, _)| n == end_file) {
        v.push((end_file.clone(), *end_pos));
    }
}

/// The FORMAT_DESCRIPTION at offset 4 of `path` with its header; `None` when the file
/// does not start with a readable one.
///
/// # Errors
///
/// The file cannot be opened.
pub(super) fn read_fde_event(
    path: &std::path::Path,
) -> anyhow::Result<Option<(EventHeader, FormatDescription)>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => anyhow::bail!("open {}: {e}", path.display()),
    };
    Ok(fde_of(f))
}

/// The FORMAT_DESCRIPTION at offset 4 of `f` (an open file, read from its start, or a
/// file's first bytes).
pub(super) fn fde_of(f: impl std::io::Read) -> Option<(EventHeader, FormatDescription)> {
    let Ok(mut r) = EventReader::new_at_start(std::io::BufReader::new(f)) else {
        return None;
    };
    match r.next_event() {
        Some(Ok((_, h, ev))) if h.type_code == event_type::FORMAT_DESCRIPTION => {
            FormatDescription::parse(ev).ok().map(|f| (h, f))
        }
        _ => None,
    }
}

/// The live capture's durable end (ACTIVE file, fsynced length), when a capture runs;
/// a store view's end ([`Archive::view_end`]).
pub(super) fn durable_end(a: &Archive) -> Option<(String, u64)> {
    if let Some(end) = &a.view_end {
        return Some(end.clone());
    }
    let s = a.status.as_ref()?.lock();
    Some((s.durable_file.clone()?, s.durable_pos?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[(String, u64)]) -> Vec<&str> {
        v.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn a_view_lists_its_end_file_after_a_later_refresh_replaced_its_copy() {
        // The view ended inside mysql-bin.000003 (its tail copy). A later session's
        // refresh found it whole in the store, removed its copy and wrote the copy of
        // mysql-bin.000004: this view still lists .000003 (read from the store) and not
        // .000004, so a dump neither skips .000003 nor reads past the view.
        let mut v = vec![
            ("mysql-bin.000004".to_string(), 900),
            ("mysql-bin.000001".to_string(), 500),
            ("mysql-bin.000002".to_string(), 600),
        ];
        up_to_view_end(&mut v, &("mysql-bin.000003".to_string(), 321));
        v.sort_by_key(|(n, _)| binlog_order(n));
        assert_eq!(
            names(&v),
            ["mysql-bin.000001", "mysql-bin.000002", "mysql-bin.000003"]
        );
        assert_eq!(v[2].1, 321);
    }

    #[test]
    fn a_view_keeps_its_end_file_copy_with_its_size_on_disk() {
        let mut v = vec![
            ("mysql-bin.000001".to_string(), 500),
            ("mysql-bin.000002".to_string(), 700),
        ];
        up_to_view_end(&mut v, &("mysql-bin.000002".to_string(), 650));
        assert_eq!(names(&v), ["mysql-bin.000001", "mysql-bin.000002"]);
        assert_eq!(v[1].1, 700);
    }
}
