//! The local tier as a cache: files that left the local disk (`[archive]
//! local_retention`) are read back from the store through one reader, so a replica, a
//! PITR or a verification that needs them gets them without knowing where they came
//! from.
//!
//! # Layout and rules
//!
//! ```text
//! <cache_dir>/<source>/<file>         a file fetched from the store, checked (size, SHA-256)
//! <cache_dir>/<source>/<file>.<n>.part  a fetch in progress (removed when it fails)
//! ```
//!
//! - [`ArchiveReader::path`] is the one way to a binlog's bytes: the local file when the
//!   archive still holds it, else the cached copy, else a fetch into the cache first.
//! - A file is fetched whole, decoded and checked against its manifest before it is
//!   renamed into place ([`super::fetch`]), so a cached file is always a checked copy.
//! - [`ArchiveReader::open`] (the fake primary's dumps) does not wait for the end: it
//!   follows the fetch's staging file as it grows ([`Opened::Fetching`], the progress
//!   published every 256 KiB), so a replica gets the first events of a large evicted
//!   file at once. The reader checks each event's CRC32 as it reads; the whole file's
//!   SHA-256 is checked at the fetch's end, and a failed fetch is replaced by the
//!   reader's own read of the file, at the same offset.
//! - The cache holds at most `cache_bytes`: after each fetch the least recently used
//!   files go (a file being read keeps its open handle: removal only unlinks it).
//! - [`ArchiveReader::prefetch`]: when the fake primary opens a file, the next evicted
//!   ones are fetched in the background (as many as fit in 64 MiB, at least one, at
//!   most eight, and at most a quarter of `cache_bytes`), so a replica (a PITR) does not
//!   wait for each download in turn. At most [`FETCH_CONCURRENCY`] fetches run at once,
//!   one per file, and at most [`PREFETCH_CONCURRENCY`] of them prefetches, so the file
//!   a reader waits for never queues behind the ones after it.
//! - Which object a fetch reads: the catalog's row of the file's whole object names its
//!   epoch, so a fetch is two GETs (manifest, object) whatever the archive's size.
//!   Without a catalog (a command run by hand), or when it does not answer, the store is
//!   listed for the file's newest manifest.
//! - [`Evicted`] is the set of a source's files that are only in the store, kept in
//!   memory (from the catalog at start, then by the evictor) for listings (SHOW BINARY
//!   LOGS, the next file of a dump).
//!
//! Nothing here is the only copy of anything: a crash loses at most a cached copy.
//! Copies are not fsynced (a fetch is decoded, checked and renamed into place in the
//! page cache); `serve` empties the cache at start, so a copy torn by a machine crash is
//! never read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Mutex as AsyncMutex;
use tracing::info;

use super::fetch::{self, FetchError, Fetched, Progress};
use super::tier::ArchiveTier;
use node::util::lock;

/// A source's files that are only in the store: name -> size, bytes.
#[derive(Debug, Clone, Default)]
pub struct Evicted(Arc<Mutex<BTreeMap<String, u64>>>);

impl Evicted {
    /// Records that `file` (of `size` bytes) left the local disk.
    pub fn insert(&self, file: &str, size: u64) {
        lock(&self.0).insert(file.to_string(), size);
    }

    /// The evicted files and sizes.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        lock(&self.0).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Keeps only the files `keep` says yes to (the others are gone from the store too,
    /// by archive retention).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        lock(&self.0).retain(|k, _| keep(k));
    }

    /// Whether `file` is only in the store.
    pub fn contains(&self, file: &str) -> bool {
        lock(&self.0).contains_key(file)
    }
}

/// Fetches from the store at once, all sources together: a dump reading small files
/// one after the other waits for the store's latency once per [`FETCH_CONCURRENCY`]
/// files, not once per file.
pub const FETCH_CONCURRENCY: usize = 4;

/// One file's fetches: the lock (one fetch of a file at a time) and the progress of the
/// newest fetch, which a reader may follow ([`ArchiveReader::open`]).
#[derive(Default)]
struct FetchEntry {
    lock: AsyncMutex<()>,
    progress: Mutex<Option<Arc<Progress>>>,
}

type FetchLock = Arc<FetchEntry>;

/// The one reader of binlog files, local or in the store.
pub struct ArchiveReader {
    tier: Arc<ArchiveTier>,
    /// The catalog whose whole-file row names the object's epoch (without it, the
    /// store is listed to find the newest manifest).
    catalog: Option<Arc<catalog::Catalog>>,
    /// One fetch per file at a time (two readers of one evicted file wait for one
    /// download): (source, file) -> its lock, while a fetch of it runs.
    in_flight: Mutex<HashMap<(String, String), FetchLock>>,
    /// At most [`FETCH_CONCURRENCY`] fetches at once.
    slots: tokio::sync::Semaphore,
    /// At most [`PREFETCH_CONCURRENCY`] of them prefetches.
    prefetch_slots: tokio::sync::Semaphore,
}

/// How often [`ArchiveReader::open`] looks at a fetch it waits to follow.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// A binlog opened by [`ArchiveReader::open`].
#[derive(Debug)]
pub enum Opened {
    /// Whole: the local file or a checked cached copy.
    Whole(PathBuf),
    /// Being fetched into the cache: its staging file, open, readable up to what
    /// `progress` says (its inode is the cached copy once the fetch ends whole).
    /// `fetch` is this reader's own read of the file, which ends with the checked copy
    /// or the error: the one to wait for when the followed fetch fails.
    Fetching {
        /// The staging file (for messages; it is renamed at the end).
        path: PathBuf,
        /// It, open.
        handle: std::fs::File,
        /// The followed fetch's progress.
        progress: Arc<Progress>,
        /// This reader's own read of the file.
        fetch: tokio::task::JoinHandle<Result<PathBuf, FetchError>>,
    },
}

/// Of the [`FETCH_CONCURRENCY`] fetches, how many may be prefetches: one slot is always
/// left to a reader waiting for the file it reads now.
pub const PREFETCH_CONCURRENCY: usize = FETCH_CONCURRENCY - 1;

/// One user's hold on a file's fetch lock in [`ArchiveReader::in_flight`]. The entry is
/// removed when its last user is done, a dropped (cancelled) read included; every
/// clone of the lock is taken and dropped under the map's mutex, so the count is exact.
struct InFlight<'a> {
    map: &'a Mutex<HashMap<(String, String), FetchLock>>,
    key: (String, String),
    one: Option<FetchLock>,
}

impl<'a> InFlight<'a> {
    fn enter(
        map: &'a Mutex<HashMap<(String, String), FetchLock>>,
        source: &str,
        file: &str,
    ) -> InFlight<'a> {
        let key = (source.to_string(), file.to_string());
        let one = lock(map).entry(key.clone()).or_default().clone();
        InFlight {
            map,
            key,
            one: Some(one),
        }
    }

    async fn lock(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        Some(self.one.as_ref()?.lock.lock().await)
    }

    /// Publishes the progress of the fetch this user starts now.
    fn started(&self, p: &Arc<Progress>) {
        if let Some(one) = &self.one {
            *lock(&one.progress) = Some(p.clone());
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = lock(self.map);
        if let Some(one) = self.one.take() {
            let last = map.get(&self.key).is_some_and(|l| Arc::ptr_eq(l, &one))
                && Arc::strong_count(&one) == 2;
            if last {
                map.remove(&self.key);
            }
            drop(one);
        }
    }
}

impl ArchiveReader {
    /// A reader over `tier`'s store and cache directory, without a catalog (a command
    /// run by hand: each fetch lists the store for the file's newest manifest).
    pub fn new(tier: Arc<ArchiveTier>) -> ArchiveReader {
        ArchiveReader {
            tier,
            catalog: None,
            in_flight: Mutex::new(HashMap::new()),
            slots: tokio::sync::Semaphore::new(FETCH_CONCURRENCY),
            prefetch_slots: tokio::sync::Semaphore::new(PREFETCH_CONCURRENCY),
        }
    }

    /// A reader that takes each file's object epoch from `catalog`'s row (one lookup,
    /// whatever the archive's size), as `serve` runs it.
    pub fn with_catalog(tier: Arc<ArchiveTier>, catalog: Arc<catalog::Catalog>) -> ArchiveReader {
        ArchiveReader {
            catalog: Some(catalog),
            ..ArchiveReader::new(tier)
        }
    }

    /// The archive tier it reads from.
    pub fn tier(&self) -> &Arc<ArchiveTier> {
        &self.tier
    }

    /// The path of `file` of `source` whose local directory is `dir`: the local file, the
    /// cached copy, or a fresh fetch into the cache.
    ///
    /// # Errors
    ///
    /// [`FetchError`] when it is neither local nor cached and the fetch fails (the store,
    /// the key, or a damaged object: the message names it).
    pub async fn path(&self, source: &str, dir: &Path, file: &str) -> Result<PathBuf, FetchError> {
        self.path_for(source, dir, file, false).await
    }

    /// The local file, else the cached copy (marked as just used), when either exists.
    fn whole_copy(&self, source: &str, dir: &Path, file: &str) -> Option<PathBuf> {
        let local = dir.join(file);
        if local.exists() {
            return Some(local);
        }
        self.cached_copy(source, file)
    }

    /// Where the cache keeps `file` of `source`.
    fn cached_path(&self, source: &str, file: &str) -> PathBuf {
        self.tier.settings.cache_dir.join(source).join(file)
    }

    /// The cached copy of `file` (marked as just used), when it exists.
    fn cached_copy(&self, source: &str, file: &str) -> Option<PathBuf> {
        let cached = self.cached_path(source, file);
        cached.exists().then(|| {
            touch(&cached);
            cached
        })
    }

    /// [`ArchiveReader::path`] for a reader (`background` false) or a prefetch, which
    /// waits for one of [`PREFETCH_CONCURRENCY`] turns first, so a reader always finds
    /// a fetch slot that no prefetch holds.
    async fn path_for(
        &self,
        source: &str,
        dir: &Path,
        file: &str,
        background: bool,
    ) -> Result<PathBuf, FetchError> {
        match self.whole_copy(source, dir, file) {
            Some(whole) => Ok(whole),
            None => self.fetch_to_cache(source, file, background).await,
        }
    }

    /// The cached copy of `file`, fetched into the cache first unless another fetch
    /// made it meanwhile (checked again under the file's lock); `background` as for
    /// [`ArchiveReader::path_for`]. For callers that found it neither local nor cached.
    async fn fetch_to_cache(
        &self,
        source: &str,
        file: &str,
        background: bool,
    ) -> Result<PathBuf, FetchError> {
        let cached = self.cached_path(source, file);
        let cdir = cached
            .parent()
            .unwrap_or(&self.tier.settings.cache_dir)
            .to_path_buf();
        // The semaphores are never closed; were they, the fetch would go on unbounded.
        // A prefetch waits for its turn before it takes the file's lock, so a reader of
        // the same file never waits behind a queued prefetch.
        let _ahead = match background {
            true => self.prefetch_slots.acquire().await.ok(),
            false => None,
        };
        let entry = InFlight::enter(&self.in_flight, source, file);
        let _one = entry.lock().await;
        if let Some(cached) = self.cached_copy(source, file) {
            return Ok(cached);
        }
        let _slot = self.slots.acquire().await.ok();
        let progress = Arc::new(Progress::default());
        entry.started(&progress);
        self.fetch_into_cache(source, file, (&cdir, &cached), &progress)
            .await
    }

    /// `file` of `source` (local directory `dir`) opened for reading as soon as
    /// `min_bytes` of it are there: the local file or the cached copy, whole; else a
    /// fetch into the cache, followed while it runs ([`Opened::Fetching`]), so that a
    /// reader streams the file's start while its end is still downloading. A fetch that
    /// already runs (a prefetch) is followed too.
    ///
    /// # Errors
    ///
    /// [`FetchError`] when the fetch ends before `min_bytes` and fails (the store, the
    /// key, a damaged object), or its task fails.
    pub async fn open(
        self: &Arc<Self>,
        source: &str,
        dir: &Path,
        file: &str,
        min_bytes: u64,
    ) -> Result<Opened, FetchError> {
        if let Some(whole) = self.whole_copy(source, dir, file) {
            return Ok(Opened::Whole(whole));
        }
        let (me, s, f) = (self.clone(), source.to_string(), file.to_string());
        let fetch = tokio::spawn(async move { me.fetch_to_cache(&s, &f, false).await });
        let key = (source.to_string(), file.to_string());
        loop {
            if fetch.is_finished() {
                return match fetch.await {
                    Ok(r) => r.map(Opened::Whole),
                    Err(source) => Err(FetchError::Task { source }),
                };
            }
            let followed = lock(&self.in_flight)
                .get(&key)
                .and_then(|e| lock(&e.progress).clone());
            if let Some(progress) = followed {
                if let Fetched::Running(Some(part), n) = progress.now() {
                    if n >= min_bytes {
                        match std::fs::File::open(&part) {
                            Ok(handle) => {
                                return Ok(Opened::Fetching {
                                    path: part,
                                    handle,
                                    progress,
                                    fetch,
                                })
                            }
                            // Renamed into place or removed meanwhile: look again.
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(source) => return Err(FetchError::Read { path: part, source }),
                        }
                    }
                }
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    /// The fetch of [`ArchiveReader::path`]: `file` into `cached` (in `cdir`), checked;
    /// then the cache is trimmed.
    async fn fetch_into_cache(
        &self,
        source: &str,
        file: &str,
        (cdir, cached): (&Path, &Path),
        progress: &Progress,
    ) -> Result<PathBuf, FetchError> {
        tokio::fs::create_dir_all(cdir)
            .await
            .map_err(|source| FetchError::Write {
                path: cdir.to_path_buf(),
                source,
            })?;
        let epoch = self.object_epoch(source, file).await;
        let m = match fetch::fetch_file_tracked(
            &self.tier.store,
            self.tier.settings.keyring.clone(),
            (source, file, epoch),
            cached,
            fetch::Flush::PageCache,
            Some(progress),
        )
        .await
        {
            Ok(m) => m,
            Err(e) => {
                if matches!(e, FetchError::Damaged { .. }) {
                    // The shipper checks the object and replaces it from a good copy.
                    self.tier.report_damaged(source, file);
                }
                return Err(e);
            }
        };
        info!(
            source,
            file,
            bytes = m.size,
            "read an evicted binlog back from the archive store"
        );
        trim(
            &self.tier.settings.cache_dir,
            self.tier.settings.cache_bytes,
            cached,
        );
        Ok(cached.to_path_buf())
    }

    /// The first `max` bytes of `file` of `source` whose local directory is `dir`: from
    /// the local file or the cached copy, else decoded from the store's object as it
    /// streams, without fetching the rest ([`fetch::read_prefix`]: not checked against
    /// the manifest; the caller checks what it parses).
    ///
    /// # Errors
    ///
    /// [`FetchError`]: reading the local copy, or the store.
    pub async fn prefix(
        &self,
        source: &str,
        dir: &Path,
        file: &str,
        max: usize,
    ) -> Result<Vec<u8>, FetchError> {
        for p in [dir.join(file), self.cached_path(source, file)] {
            match read_head(&p, max).await {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(FetchError::Read { path: p, source }),
            }
        }
        let epoch = self.object_epoch(source, file).await;
        fetch::read_prefix(
            &self.tier.store,
            self.tier.settings.keyring.clone(),
            (source, file, epoch),
            max,
        )
        .await
    }

    /// The epoch of `file`'s whole object from the catalog's row; `None` without a
    /// catalog, a row, or when the catalog does not answer (then the store is listed).
    async fn object_epoch(&self, source: &str, file: &str) -> Option<i64> {
        match self.catalog.as_ref()?.file_object(source, file).await {
            Ok(row) => row.map(|r| r.epoch),
            Err(e) => {
                tracing::warn!(source, file, error = %e, "the catalog does not answer; the store is listed for the file's manifest");
                None
            }
        }
    }
}

impl ArchiveReader {
    /// Starts fetching `file` of `source` into the cache in the background when it is
    /// neither local nor cached: a dump that will reach it next finds it ready. A failed
    /// prefetch is only logged (the read that needs the file fetches it again and gets
    /// the error); a damaged object is reported for repair as by any read.
    pub fn prefetch(self: &Arc<Self>, source: &str, dir: &Path, file: &str) {
        if dir.join(file).exists() || self.cached_path(source, file).exists() {
            return;
        }
        let (me, s, f) = (self.clone(), source.to_string(), file.to_string());
        tokio::spawn(async move {
            if let Err(e) = me.fetch_to_cache(&s, &f, true).await {
                tracing::debug!(source = %s, file = %f, error = %e, "prefetch from the archive store failed");
            }
        });
    }
}

/// Removes every cached copy under `root` (all sources; low disk space). Returns the
/// bytes freed. A copy being read keeps its open handle: removal only unlinks it.
pub fn empty(root: &Path) -> u64 {
    remove_under(root, false)
}

/// [`empty`] at start, when no fetch runs: the staging files (`.part`) an earlier run
/// left (a crash) go too.
pub fn empty_at_start(root: &Path) -> u64 {
    remove_under(root, true)
}

fn remove_under(root: &Path, staging_too: bool) -> u64 {
    let mut freed = 0;
    for e in cache_entries(root) {
        // A fetch in progress (`.part`) finishes; its copy goes at the next pass.
        if !staging_too && is_staging(&e.file_name()) {
            continue;
        }
        if let Ok(md) = e.metadata() {
            if md.is_file() && std::fs::remove_file(e.path()).is_ok() {
                freed += md.len();
            }
        }
    }
    freed
}

/// The entries of every source's directory under the cache `root` and of its timelines'
/// directories (`<source>/tl<N>/`, where files of timelines N >= 2 are kept), the
/// directories themselves left out. Unreadable directories are skipped.
fn cache_entries(root: &Path) -> Vec<std::fs::DirEntry> {
    let Ok(sources) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in sources.flatten() {
        let Ok(dirs) = super::local::timeline_dirs(&s.path()) else {
            continue;
        };
        for d in dirs {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            out.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir())),
            );
        }
    }
    out
}

/// Whether a cache entry is a fetch's staging file (`<file>.<n>.part`).
fn is_staging(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().ends_with(".part")
}

/// The first `max` bytes of the file at `p` (fewer when it is shorter).
async fn read_head(p: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let f = tokio::fs::File::open(p).await?;
    let mut v = Vec::new();
    f.take(max as u64).read_to_end(&mut v).await?;
    Ok(v)
}

/// Marks `p` as just used (its mtime orders the cache).
fn touch(p: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(p) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Removes the least recently used files under `root` (every source's directory) until
/// the total is at most `budget` bytes, never `keep`.
fn trim(root: &Path, budget: u64, keep: &Path) {
    let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    for e in cache_entries(root) {
        // Another fetch's staging file: neither counted nor removed.
        if is_staging(&e.file_name()) {
            continue;
        }
        if let Ok(md) = e.metadata() {
            if md.is_file() {
                let t = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                files.push((t, md.len(), e.path()));
            }
        }
    }
    let mut total: u64 = files.iter().map(|(_, l, _)| l).sum();
    files.sort();
    for (_, len, p) in files {
        if total <= budget {
            break;
        }
        if p == keep {
            continue;
        }
        if std::fs::remove_file(&p).is_ok() {
            total = total.saturating_sub(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_removes_least_recently_used_first_and_keeps_the_new_one() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("db1");
        std::fs::create_dir_all(&s).unwrap();
        let t0 = SystemTime::now() - std::time::Duration::from_secs(100);
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let p = s.join(name);
            std::fs::write(&p, vec![0u8; 100]).unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i as u64 * 10))
                .unwrap();
        }
        // "a" is the oldest but in use as `keep`: "b" goes, then the budget holds.
        trim(d.path(), 200, &s.join("a"));
        assert!(s.join("a").exists());
        assert!(!s.join("b").exists());
        assert!(s.join("c").exists());
    }

    /// A timeline's files (`<source>/tl<N>/`) count towards the budget and go like any
    /// other; emptying the cache removes them too.
    #[test]
    fn trim_and_empty_reach_timeline_directories() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("db1");
        std::fs::create_dir_all(s.join("tl2")).unwrap();
        let t0 = SystemTime::now() - std::time::Duration::from_secs(100);
        for (i, p) in [s.join("tl2").join("a"), s.join("b")].iter().enumerate() {
            std::fs::write(p, vec![0u8; 100]).unwrap();
            let f = std::fs::File::options().append(true).open(p).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i as u64 * 10))
                .unwrap();
        }
        trim(d.path(), 100, &s.join("b"));
        assert!(
            !s.join("tl2").join("a").exists(),
            "the oldest, on timeline 2"
        );
        assert!(s.join("b").exists());
        std::fs::write(s.join("tl2").join("c"), vec![0u8; 50]).unwrap();
        assert_eq!(empty(d.path()), 150);
    }
}
