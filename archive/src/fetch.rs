//! Reading binlogs back from the archive store: a whole file by its manifest, decoded
//! while it streams and checked (size and plaintext SHA-256 against the manifest) before
//! it is put in place. Used by `binlog-server archive get`; the archive reader that
//! serves evicted files to the fake primary and PITR is built on it.
//!
//! Nothing partial is ever visible: the bytes go to `<out>.part` in the target
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

/// The manifest of `file` of `source`.
///
/// # Errors
///
/// [`FetchError::Store`] (missing included), [`FetchError::Manifest`].
pub async fn manifest(store: &Store, source: &str, file: &str) -> Result<Manifest, FetchError> {
    let key = objects::manifest_key(source, file);
    let raw = store.get_bytes(&key, MANIFEST_MAX).await?;
    serde_json::from_slice(&raw).map_err(|e| FetchError::Manifest {
        key,
        message: e.to_string(),
    })
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
    let sync = flush == Flush::Fsync;
    let m = manifest(store, source, file).await?;
    let part = out.with_extension(match out.extension() {
        Some(e) => format!("{}.part", e.to_string_lossy()),
        None => "part".into(),
    });
    let r = fetch_into(store, keyring, &m, &part, sync).await;
    match r {
        Ok(()) => {
            tokio::fs::rename(&part, out)
                .await
                .map_err(|source| FetchError::Write {
                    path: out.to_path_buf(),
                    source,
                })?;
            Ok(m)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            Err(e)
        }
    }
}

async fn fetch_into(
    store: &Store,
    keyring: Arc<Keyring>,
    m: &Manifest,
    part: &Path,
    sync: bool,
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
    let mut dec = Decoder::new(&m.codec, keyring).map_err(codec_err)?;
    let mut s = Box::pin(store.get_stream(&m.object_key).await?);
    let (mut h, mut len) = (Sha256::new(), 0u64);
    let mut plain = Vec::new();
    while let Some(piece) = s.next().await {
        dec.write(&piece?, &mut plain).map_err(codec_err)?;
        h.update(&plain);
        len += plain.len() as u64;
        f.write_all(&plain).await.map_err(werr)?;
        plain.clear();
    }
    dec.finish(&mut plain).map_err(codec_err)?;
    h.update(&plain);
    len += plain.len() as u64;
    f.write_all(&plain).await.map_err(werr)?;
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
