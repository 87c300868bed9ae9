//! Reading binlogs back from the archive store: a whole file by its manifest, decoded
//! while it streams and checked (size and plaintext SHA-256 against the manifest) before
//! it is put in place. Used by `binlog-server archive get`; the archive reader that
//! serves evicted files to the fake primary and PITR is built on it.
//!
//! Nothing partial is ever visible: the bytes go to `<out>.<n>.part` in the target
//! directory, which is fsynced and renamed to `<out>` only after the check passed; a
//! failed fetch removes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use objstore::codec::Decoder;
use objstore::keyring::Keyring;
use objstore::store::{Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::objects::{self, Manifest};

/// Largest manifest read, bytes (they are under 1 KiB).
const MANIFEST_MAX: usize = 1 << 20;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The store failed or the object is missing. Retry, or check the store.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The manifest is not JSON of the expected shape. Stop: the store was changed by hand.
    #[error("manifest {key}: {message}")]
    Manifest {
        /// Manifest key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Decoding failed (missing or wrong key, damaged object), naming the object.
    #[error("object {key}: {source}")]
    Codec {
        /// Object key.
        key: String,
        /// Cause (names the key id).
        #[source]
        source: objstore::codec::CodecError,
    },
    /// The decoded bytes are not the manifest's. Stop: the object is damaged.
    #[error("object {key} is damaged: decoded {got_len} bytes with sha256 {got_sha}, the manifest says {want_len} bytes, {want_sha}")]
    Damaged {
        /// Object key.
        key: String,
        /// Decoded length.
        got_len: u64,
        /// Decoded SHA-256.
        got_sha: String,
        /// Manifest length.
        want_len: u64,
        /// Manifest SHA-256.
        want_sha: String,
    },
    /// The task of a fetch ended without an answer (it panicked, or the runtime shuts
    /// down): retry.
    #[error("the fetch's task failed: {source}")]
    Task {
        /// Cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Reading a local copy failed (the disk): retry, or check the disk.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the local file failed.
    #[error("write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The manifest of `file` of `source` written in `epoch`.
///
/// # Errors
///
/// [`FetchError::Store`] (missing included), [`FetchError::Manifest`].
pub async fn manifest(
    store: &Store,
    source: &str,
    file: &str,
    epoch: i64,
) -> Result<Manifest, FetchError> {
    let key = objects::manifest_key(source, file, epoch);
    let raw = store.get_bytes(&key, MANIFEST_MAX).await?;
    serde_json::from_slice(&raw).map_err(|e| FetchError::Manifest {
        key,
        message: e.to_string(),
    })
}

/// The manifest of `file` of `epoch` (one GET), or the current one ([`current_manifest`])
/// when the epoch is not known or the store does not hold that one (a row that named
/// an object replaced since).
async fn manifest_at(
    store: &Store,
    source: &str,
    file: &str,
    epoch: Option<i64>,
) -> Result<Manifest, FetchError> {
    match epoch {
        Some(e) => match manifest(store, source, file, e).await {
            Err(FetchError::Store(se)) if se.is_not_found() => {
                current_manifest(store, source, file).await
            }
            r => r,
        },
        None => current_manifest(store, source, file).await,
    }
}

/// The epoch of the newest manifest of `file` in the store (a reader without the
/// catalog takes that one; see [`objects`]); `None` when it has none. One listing of the
/// source's `binlogs/` keys.
///
/// # Errors
///
/// [`FetchError::Store`].
pub async fn latest_epoch(
    store: &Store,
    source: &str,
    file: &str,
) -> Result<Option<i64>, FetchError> {
    let dir = format!("{source}/binlogs/");
    let mut best = None;
    for (key, _) in store.list(&dir).await? {
        let Some(name) = key
            .strip_prefix(&dir)
            .and_then(|n| n.strip_suffix(".manifest.json"))
        else {
            continue;
        };
        let (f, epoch) = objects::split_epoch(name);
        if f == file {
            best = best.max(Some(epoch));
        }
    }
    Ok(best)
}

/// The manifest a reader without the catalog uses for `file`: epoch 0's when it exists
/// (a single node's store: one GET, as before epochs), else the newest epoch's
/// ([`latest_epoch`], one listing).
///
/// # Errors
///
/// [`FetchError::Store`] (not found when the file has no manifest at all),
/// [`FetchError::Manifest`].
pub async fn current_manifest(
    store: &Store,
    source: &str,
    file: &str,
) -> Result<Manifest, FetchError> {
    match manifest(store, source, file, 0).await {
        Err(FetchError::Store(e)) if e.is_not_found() => {
            match latest_epoch(store, source, file).await? {
                Some(epoch) if epoch > 0 => manifest(store, source, file, epoch).await,
                _ => Err(FetchError::Store(e)),
            }
        }
        other => other,
    }
}

/// How a fetched file is made durable before it is renamed into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// fsynced (a file a person asked for: `archive get`, `export`).
    Fsync,
    /// Left in the page cache: the cache of read-back copies, which `serve` empties at
    /// start (a crash can leave a copy whose bytes never reached the disk; it is never
    /// used).
    PageCache,
}

/// Fetches `file` of `source` into `out` (decoded, checked, flushed as `flush` says,
/// renamed into place); returns its manifest.
///
/// # Errors
///
/// [`FetchError`]; `out` is then left as it was.
pub async fn fetch_file(
    store: &Store,
    keyring: Arc<Keyring>,
    source: &str,
    file: &str,
    out: &Path,
    flush: Flush,
) -> Result<Manifest, FetchError> {
    fetch_file_at(store, keyring, (source, file, None), out, flush).await
}

/// [`fetch_file`] of `(source, file, epoch)`: the manifest of that epoch (one GET, as
/// the catalog's row names it; when the store does not hold it, the current one), or
/// with `None` the current one ([`current_manifest`], which may list the store).
///
/// # Errors
///
/// [`FetchError`]; `out` is then left as it was.
pub async fn fetch_file_at(
    store: &Store,
    keyring: Arc<Keyring>,
    what: (&str, &str, Option<i64>),
    out: &Path,
    flush: Flush,
) -> Result<Manifest, FetchError> {
    fetch_file_tracked(store, keyring, what, out, flush, None).await
}

/// [`fetch_file_at`] that publishes its progress in `progress` for readers that follow
/// it ([`Progress`]): the staging file, the bytes written to it, and how it ended.
///
/// # Errors
///
/// [`FetchError`]; `out` is then left as it was (and `progress` says failed).
pub async fn fetch_file_tracked(
    store: &Store,
    keyring: Arc<Keyring>,
    (source, file, epoch): (&str, &str, Option<i64>),
    out: &Path,
    flush: Flush,
    progress: Option<&Progress>,
) -> Result<Manifest, FetchError> {
    let sync = flush == Flush::Fsync;
    // A fetch that fails or is dropped midway (its reader cancelled) says failed and
    // leaves no staging file, so nothing follows it forever.
    let part = part_path(out);
    let mut dropped = DroppedFetch {
        part: Some(part.clone()),
        progress,
    };
    let m = manifest_at(store, source, file, epoch).await?;
    fetch_into(store, keyring, &m, &part, sync, progress).await?;
    tokio::fs::rename(&part, out)
        .await
        .map_err(|source| FetchError::Write {
            path: out.to_path_buf(),
            source,
        })?;
    dropped.part = None;
    if let Some(p) = progress {
        p.finish(true);
    }
    Ok(m)
}

/// The guard of [`fetch_file_tracked`]: dropped before the fetch ended whole (it failed,
/// or its future was dropped), it marks the progress failed and removes the staging
/// file.
struct DroppedFetch<'a> {
    part: Option<PathBuf>,
    progress: Option<&'a Progress>,
}

impl Drop for DroppedFetch<'_> {
    fn drop(&mut self) {
        if let Some(part) = self.part.take() {
            if let Some(p) = self.progress {
                p.finish(false);
            }
            let _ = std::fs::remove_file(part);
        }
    }
}

/// A fetch followed by readers publishes its progress every this many bytes (and at its
/// end): one flush of the staging file each.
const PUBLISH_BYTES: u64 = 256 << 10;

/// How far one fetch has come, for a reader that streams the file while it is fetched
/// (`cache::ArchiveReader::open`): the staging file (the same inode is renamed into
/// place at the end), the bytes written to it so far, each flushed to the file before it
/// counts, and how the fetch ended. The bytes are not checked against the manifest
/// until the end: a reader checks each event's CRC32 as it reads.
#[derive(Debug, Default)]
pub struct Progress {
    part: std::sync::Mutex<Option<PathBuf>>,
    written: std::sync::atomic::AtomicU64,
    /// 0 running, 1 whole and checked, 2 failed.
    end: std::sync::atomic::AtomicU8,
}

/// What a [`Progress`] says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Running: the staging file once it exists, and the bytes readable in it.
    Running(Option<PathBuf>, u64),
    /// Whole, checked and renamed into place, bytes.
    Whole(u64),
    /// The fetch failed (its staging file is removed); the bytes read from it were
    /// readable then, and the file must be read from another fetch.
    Failed,
}

impl Progress {
    /// Where the fetch stands.
    pub fn now(&self) -> Fetched {
        use std::sync::atomic::Ordering;
        let written = self.written.load(Ordering::Acquire);
        match self.end.load(Ordering::Acquire) {
            1 => Fetched::Whole(written),
            2 => Fetched::Failed,
            _ => Fetched::Running(node::util::lock(&self.part).clone(), written),
        }
    }

    fn started(&self, part: &Path) {
        *node::util::lock(&self.part) = Some(part.to_path_buf());
    }

    /// The first `n` bytes are in the staging file (flushed) for followers to read.
    fn publish(&self, n: u64) {
        self.written.store(n, std::sync::atomic::Ordering::Release);
    }

    fn finish(&self, ok: bool) {
        self.end
            .store(if ok { 1 } else { 2 }, std::sync::atomic::Ordering::Release);
    }
}

/// The first `max` bytes (fewer when the file is shorter) of `(source, file, epoch)`'s
/// whole object, decoded as it streams; the download stops there. Not checked against
/// the manifest's SHA-256, which covers the whole file: for a reader that checks what
/// it parses (a FORMAT_DESCRIPTION's CRC32), such as a session reading the dialect.
///
/// # Errors
///
/// [`FetchError`]: the store, the manifest or the codec (the key named).
pub async fn read_prefix(
    store: &Store,
    keyring: Arc<Keyring>,
    (source, file, epoch): (&str, &str, Option<i64>),
    max: usize,
) -> Result<Vec<u8>, FetchError> {
    let m = manifest_at(store, source, file, epoch).await?;
    let codec_err = |source| FetchError::Codec {
        key: m.object_key.clone(),
        source,
    };
    let mut dec = Decoder::new(&m.codec, keyring).map_err(codec_err)?;
    let mut s = Box::pin(store.get_stream(&m.object_key).await?);
    let mut out = Vec::new();
    let mut plain = Vec::new();
    while out.len() < max {
        let Some(piece) = s.next().await else {
            dec.finish(&mut plain).map_err(codec_err)?;
            out.extend_from_slice(&plain);
            break;
        };
        dec.write(&piece?, &mut plain).map_err(codec_err)?;
        out.extend_from_slice(&plain);
        plain.clear();
    }
    out.truncate(max);
    Ok(out)
}

/// `<out>.<n>.part`: where one fetch writes before its rename to `out`, `n` unique in
/// this process, so two fetches of one file (a reader and a prefetch, or two commands)
/// never write one staging file.
fn part_path(out: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{n}.part"));
    out.with_file_name(name)
}

/// A fetch's staging file as decoded bytes arrive: their SHA-256 and count, and what
/// followers were last told is in the file.
struct Staged<'a> {
    f: &'a mut tokio::fs::File,
    h: Sha256,
    len: u64,
    published: u64,
    progress: Option<&'a Progress>,
}

impl Staged<'_> {
    /// Hashes, counts and writes `plain` (emptied), then, following a fetch, flushes
    /// and publishes once [`PUBLISH_BYTES`] more are in, and at the `last` piece.
    async fn append(&mut self, plain: &mut Vec<u8>, last: bool) -> std::io::Result<()> {
        self.h.update(&plain);
        self.len += plain.len() as u64;
        self.f.write_all(plain).await?;
        plain.clear();
        if let Some(p) = self
            .progress
            .filter(|_| last || self.len - self.published >= PUBLISH_BYTES)
        {
            // In the file (not in tokio's buffer) before a follower may read it.
            self.f.flush().await?;
            p.publish(self.len);
            self.published = self.len;
        }
        Ok(())
    }
}

async fn fetch_into(
    store: &Store,
    keyring: Arc<Keyring>,
    m: &Manifest,
    part: &Path,
    sync: bool,
    progress: Option<&Progress>,
) -> Result<(), FetchError> {
    let werr = |source| FetchError::Write {
        path: part.to_path_buf(),
        source,
    };
    let codec_err = |source| FetchError::Codec {
        key: m.object_key.clone(),
        source,
    };
    let mut f = tokio::fs::File::create(part).await.map_err(werr)?;
    if let Some(p) = progress {
        p.started(part);
    }
    let mut dec = Decoder::new(&m.codec, keyring).map_err(codec_err)?;
    let mut s = Box::pin(store.get_stream(&m.object_key).await?);
    let mut out = Staged {
        f: &mut f,
        h: Sha256::new(),
        len: 0,
        published: 0,
        progress,
    };
    let mut plain = Vec::new();
    while let Some(piece) = s.next().await {
        dec.write(&piece?, &mut plain).map_err(codec_err)?;
        out.append(&mut plain, false).await.map_err(werr)?;
    }
    dec.finish(&mut plain).map_err(codec_err)?;
    out.append(&mut plain, true).await.map_err(werr)?;
    let (h, len) = (out.h, out.len);
    let sha = hex::encode(h.finalize());
    if sha != m.sha256 || len != m.size {
        return Err(FetchError::Damaged {
            key: m.object_key.clone(),
            got_len: len,
            got_sha: sha,
            want_len: m.size,
            want_sha: m.sha256.clone(),
        });
    }
    if sync {
        f.sync_all().await.map_err(werr)?;
    } else {
        f.flush().await.map_err(werr)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    use crate::test_support::local_store;

    /// Writes `bytes` as `file`'s whole object and manifest of `epoch`, codec none.
    async fn ship(store: &Store, file: &str, epoch: i64, bytes: &[u8]) {
        let key = objects::file_key("db1", file, epoch);
        let stored = store.put_bytes(&key, bytes).await.expect("object");
        let sha = hex::encode(Sha256::digest(bytes));
        let m = Manifest {
            version: 1,
            source: "db1".into(),
            file: file.into(),
            object_key: key,
            size: bytes.len() as u64,
            sha256: sha.clone(),
            stored_bytes: stored.bytes,
            stored_sha256: stored.sha256,
            codec: "none".into(),
            key_id: None,
            epoch,
            first_gtid: None,
            last_gtid: None,
            first_event_time: None,
            last_event_time: None,
            created_at: 0,
        };
        let json = serde_json::to_vec(&m).expect("json");
        store
            .put_bytes(&objects::manifest_key("db1", file, epoch), &json)
            .await
            .expect("manifest");
    }

    /// Two writers of one file never share a key: an epoch-1 and an epoch-2 writer both
    /// land, and a reader without the catalog takes the newest epoch; a neighbour whose
    /// name extends this one's (`...000001` and `...0000010`) is not taken for it; a
    /// single node's epoch-0 object is read first when there is one.
    #[tokio::test]
    async fn each_epoch_writes_its_own_keys_and_readers_take_the_newest() {
        let d = tempfile::tempdir().expect("tempdir");
        let store = local_store(&d.path().join("store"));
        let file = "mysql-bin.000001";
        assert_eq!(latest_epoch(&store, "db1", file).await.expect("list"), None);
        ship(&store, file, 1, b"written by epoch 1").await;
        assert_eq!(
            latest_epoch(&store, "db1", file).await.expect("list"),
            Some(1)
        );
        ship(&store, file, 2, b"written by epoch 2").await;
        ship(&store, "mysql-bin.0000010", 9, b"a neighbour").await;
        assert_eq!(
            latest_epoch(&store, "db1", file).await.expect("list"),
            Some(2)
        );
        assert_eq!(
            manifest(&store, "db1", file, 1)
                .await
                .expect("epoch 1")
                .epoch,
            1
        );
        let out = d.path().join("out");
        let keyring = Arc::new(Keyring::default());
        let m = fetch_file(&store, keyring.clone(), "db1", file, &out, Flush::PageCache)
            .await
            .expect("fetch");
        assert_eq!(m.epoch, 2);
        assert_eq!(std::fs::read(&out).expect("read"), b"written by epoch 2");
        ship(&store, "mysql-bin.000003", 0, b"a single node's").await;
        let m = fetch_file(
            &store,
            keyring.clone(),
            "db1",
            "mysql-bin.000003",
            &out,
            Flush::PageCache,
        )
        .await
        .expect("fetch epoch 0");
        assert_eq!(m.epoch, 0);
        assert_eq!(std::fs::read(&out).expect("read"), b"a single node's");
        let missing = fetch_file(
            &store,
            keyring,
            "db1",
            "mysql-bin.000002",
            &out,
            Flush::PageCache,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&missing, FetchError::Store(e) if e.is_not_found()),
            "{missing:?}"
        );
    }
}
