//! The object store: an `object_store` (local directory or S3-compatible) under a
//! prefix, shared by base backups (layout: `snapshotter::take`) and the binlog archive
//! (layout: binlog-server `archive::objects`).
//!
//! # Rules
//!
//! - Objects are never overwritten: every key is unique (base ids, binlog names with
//!   offsets). A single PUT ([`Store::put_bytes`]) is create-only in one request
//!   (`If-None-Match: *` on S3, a no-clobber link on the local store), so of two racing
//!   writers one gets [`StoreError::Exists`]. A multipart upload ([`Store::put_stream`])
//!   is refused when the key exists at its start, but `object_store` 0.12 completes
//!   multipart uploads in overwrite mode, so it is not race-free: with several writers
//!   per source, keys must be unique per writer (the fleet's epochs).
//! - Uploads use bounded memory: multipart with `part_size` parts and at most
//!   `upload_concurrency` parts in flight (about `part_size * (concurrency + 1)` bytes).
//! - S3 requests are retried by `object_store`'s client with exponential backoff (100 ms
//!   doubling to 15 s, `retries` times, 5 minutes at most); a failed multipart upload is
//!   aborted so no parts are left behind.
//! - The SHA-256 of every object is computed while it streams and checked again when it is
//!   read back for a restore.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One object as stored: its key (relative to the store's prefix), its size in bytes
/// and the SHA-256 of its stored bytes (lower-case hex). What a put returns and what the
/// catalog records of a base's or a binlog's objects.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredObject {
    /// Key inside the store (relative to the store's prefix).
    pub key: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the object's bytes, lower-case hex.
    pub sha256: String,
}

/// Where the store is and how it is written to (validated by the caller's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// `file:///abs/dir` or `s3://bucket/prefix` (no credentials in it).
    pub url: String,
    /// S3 endpoint (S3-compatible servers); `None` for AWS.
    pub s3_endpoint: Option<String>,
    /// S3 region.
    pub s3_region: String,
    /// Allow plain http to the endpoint.
    pub s3_allow_http: bool,
    /// Multipart part size, bytes (5 MiB ..= 1 GiB).
    pub part_size: usize,
    /// Parts in flight per upload.
    pub upload_concurrency: usize,
    /// Retries per S3 request.
    pub retries: usize,
    /// Send a SHA-256 checksum with every upload part (`x-amz-checksum-sha256`, checked
    /// by S3): a bucket with S3 Object Lock wants an integrity checksum on uploads.
    /// (Single PUTs to a locked bucket go through `objstore::lock` with Content-MD5.)
    /// Costs one more SHA-256 pass over what is uploaded; off elsewhere.
    pub checksums: bool,
}

impl StoreOptions {
    /// Whether `other` is the same S3 bucket (same endpoint and bucket name; prefixes
    /// may differ). Never true for `file://` stores.
    pub fn same_bucket(&self, other: &StoreOptions) -> bool {
        let bucket = |url: &str| {
            url.strip_prefix("s3://")
                .map(|r| r.split('/').next().unwrap_or("").to_owned())
        };
        bucket(&self.url).is_some()
            && bucket(&self.url) == bucket(&other.url)
            && self.s3_endpoint == other.s3_endpoint
    }
}

/// Checks a store URL for the config key `key`, creating a `file://` directory.
///
/// # Errors
///
/// `(key, message)` for a relative `file://` path, an uncreatable directory, an `s3://`
/// URL without a bucket, any other scheme.
pub fn check_url(url: &str, key: &str) -> Result<(), (String, String)> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err((
                key.into(),
                format!("{url:?}: a file:// store needs an absolute path (file:///var/...)"),
            ));
        }
        std::fs::create_dir_all(path).map_err(|e| {
            (
                key.into(),
                format!("cannot create the store directory {path}: {e}"),
            )
        })?;
        Ok(())
    } else if let Some(rest) = url.strip_prefix("s3://") {
        if rest.split('/').next().unwrap_or("").is_empty() {
            return Err((
                key.into(),
                format!("{url:?}: no bucket (s3://bucket/prefix)"),
            ));
        }
        Ok(())
    } else {
        Err((
            key.into(),
            format!("{url:?}: use file:///abs/dir or s3://bucket/prefix"),
        ))
    }
}

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be opened (bad URL, missing credentials).
    #[error("object store {url}: {message}")]
    Open {
        /// Store URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// An object operation failed (after the client's retries).
    #[error("object store {op} {key}: {source}")]
    Object {
        /// Operation.
        op: &'static str,
        /// Key.
        key: String,
        /// Cause.
        #[source]
        source: object_store::Error,
    },
    /// The key exists already: objects are never overwritten.
    #[error("object {0} already exists; objects are never overwritten")]
    Exists(String),
    /// Reading the local side (tool output, file) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was read or written.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An object read into memory is larger than the caller allows (not the object it
    /// expects there). Stop: inspect the object.
    #[error("object {key} is larger than the {max} bytes expected there")]
    TooLarge {
        /// Key.
        key: String,
        /// The limit, bytes.
        max: usize,
    },
    /// Encoding or decoding an object failed (a missing or wrong key, a damaged
    /// object): the message names the object and the key id. Stop: the bytes read are
    /// not to be used.
    #[error("object {key}: {source}")]
    Codec {
        /// Key.
        key: String,
        /// Cause.
        #[source]
        source: crate::codec::CodecError,
    },
    /// An Object Lock call failed (objstore::lock); retried by the caller's next pass.
    #[error("{0}")]
    Lock(#[from] crate::lock::LockError),
    /// An object read back does not have the recorded SHA-256 (or size).
    #[error("object {key} is damaged: expected {expected}, read {actual}")]
    Damaged {
        /// Key.
        key: String,
        /// Recorded SHA-256 / size.
        expected: String,
        /// What was read.
        actual: String,
    },
}

impl StoreError {
    /// Whether the object was not there (a missing key, not a failing store).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::Object {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}

/// After a multipart upload to a locked bucket: makes the object's lock at least
/// `now + days` (S3 applied the bucket's rule when the upload completed; moto 5 does
/// not apply it to multipart uploads). Only ever a later date, so a node clock behind
/// the store's never asks for a shorter lock; a failure is logged and left to the
/// hourly extension (`archive::lock`), never failing an upload that completed.
async fn retain_uploaded(lock: &crate::lock::ObjectLock, key: &str, retain: crate::lock::Retain) {
    let until = retain.until(unix_now());
    let r = async {
        let now = lock.retention(key).await?;
        if now.and_then(|r| r.until).is_some_and(|u| u >= until) {
            return Ok(());
        }
        lock.retain(key, retain.mode, until).await
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(key, error = %e, "could not set the object lock date after an upload; the bucket's default rule holds it, the next extension pass sets it");
    }
}

/// The system clock, unix seconds (0 before 1970).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An object store with the base-backup prefix applied.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    url: String,
    part_size: usize,
    concurrency: usize,
    /// The store keeps user metadata (S3's `x-amz-meta-*`); a local directory does not.
    metadata: bool,
    /// How [`Store::put_stream`] / [`Store::put_file`] encode new objects (none: as
    /// they are).
    encode: Option<crate::codec::Compression>,
    /// Keys: the first seals new objects when `encode` is set; all open old ones.
    keyring: Arc<crate::keyring::Keyring>,
    /// The Object Lock calls of an `s3://` store (none for a local directory).
    lock: Option<Arc<crate::lock::ObjectLock>>,
    /// With Object Lock on ([`Store::with_retention`]): how long every object written is
    /// locked.
    retain: Option<crate::lock::Retain>,
}

/// Suffix added to the key of an object [`Store::put_stream`] encoded (descriptor `desc`
/// with `+` as `_`), so that [`Store::get_to`] knows how to decode it and `aws s3 ls`
/// shows it: `.zstd.bsrv`, `.aes-256-gcm.bsrv`, `.zstd_aes-256-gcm.bsrv`.
pub fn codec_suffix(desc: &str) -> String {
    if desc == "none" {
        String::new()
    } else {
        format!(".{}.bsrv", desc.replace('+', "_"))
    }
}

/// The codec descriptor of an encoded object's key, and the key without its suffix
/// (the name the tool wrote); `("none", key)` for a key without one.
pub fn split_codec_suffix(key: &str) -> (&'static str, &str) {
    for desc in ["zstd+aes-256-gcm", "zstd", "aes-256-gcm"] {
        let suffix = codec_suffix(desc);
        if let Some(plain) = key.strip_suffix(suffix.as_str()) {
            return (desc, plain);
        }
    }
    ("none", key)
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

fn key_path(key: &str) -> ObjPath {
    ObjPath::from(key)
}

impl Store {
    /// Opens the store of validated settings. `file://` directories must exist (the config
    /// validation creates them); `s3://bucket/prefix` takes its credentials from the
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] with the reason.
    pub fn open(s: &StoreOptions) -> Result<Store, StoreError> {
        let open_err = |message: String| StoreError::Open {
            url: s.url.clone(),
            message,
        };
        let mut lock = None;
        let inner: Arc<dyn ObjectStore> = if let Some(dir) = s.url.strip_prefix("file://") {
            Arc::new(LocalFileSystem::new_with_prefix(dir).map_err(|e| open_err(e.to_string()))?)
        } else if let Some(rest) = s.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut b = AmazonS3Builder::from_env();
            if s.checksums {
                b = b.with_checksum_algorithm(object_store::aws::Checksum::SHA256);
            }
            let mut b = b
                .with_bucket_name(bucket)
                .with_region(&s.s3_region)
                .with_allow_http(s.s3_allow_http)
                .with_retry(RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(15),
                        base: 2.0,
                    },
                    max_retries: s.retries,
                    retry_timeout: Duration::from_secs(300),
                });
            if let Some(ep) = &s.s3_endpoint {
                b = b.with_endpoint(ep);
            }
            // The lock calls go where the store's own calls go (an endpoint from the
            // environment, `AWS_ENDPOINT`, included).
            let endpoint = b.get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint);
            let s3 = b.build().map_err(|e| {
                open_err(format!(
                    "{e}; S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                ))
            })?;
            let prefix = prefix.trim_matches('/');
            lock = Some(Arc::new(
                crate::lock::ObjectLock::new(
                    s3.credentials().clone(),
                    &s.s3_region,
                    endpoint.as_deref(),
                    bucket,
                    prefix,
                    s.s3_allow_http,
                )
                .map_err(|e| open_err(e.to_string()))?,
            ));
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            }
        } else {
            return Err(open_err("use file:///abs/dir or s3://bucket/prefix".into()));
        };
        Ok(Store {
            inner,
            url: s.url.clone(),
            part_size: s.part_size,
            concurrency: s.upload_concurrency,
            metadata: s.url.starts_with("s3://"),
            encode: None,
            keyring: Arc::new(crate::keyring::Keyring::none()),
            lock,
            retain: None,
        })
    }

    /// This store, encoding what [`Store::put_stream`] and [`Store::put_file`] write with
    /// `compression` and, when `keyring` has a key, encryption (objstore::codec; the key
    /// gets [`codec_suffix`]), and opening encoded objects in [`Store::get_to`] with
    /// `keyring`. `put_bytes` (manifests, binlog objects the caller encoded) is never
    /// encoded.
    pub fn with_codec(
        mut self,
        compression: crate::codec::Compression,
        keyring: Arc<crate::keyring::Keyring>,
    ) -> Store {
        self.encode = Some(compression);
        self.keyring = keyring;
        self
    }

    /// The descriptor new objects of [`Store::put_stream`] get.
    pub fn codec(&self) -> &'static str {
        match self.encode {
            None => "none",
            Some(c) => crate::codec::descriptor(c, self.keyring.current().is_some()),
        }
    }

    /// A store over any `object_store` (tests: `InMemory`).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, url: &str, part_size: usize) -> Self {
        Store {
            inner,
            url: url.to_owned(),
            part_size,
            concurrency: 2,
            metadata: false,
            encode: None,
            keyring: Arc::new(crate::keyring::Keyring::none()),
            lock: None,
            retain: None,
        }
    }

    /// The Object Lock calls of this store; `None` for a `file://` store.
    pub fn object_lock(&self) -> Option<&crate::lock::ObjectLock> {
        self.lock.as_deref()
    }

    /// This store, locking every object it writes in `mode` for `days` days: single PUTs
    /// carry the lock in their request (`ObjectLock::put_locked`); multipart uploads get
    /// the bucket's rule from S3 and the date explicitly right after they complete (moto 5
    /// does not apply the rule to them). On a `file://` store it changes nothing.
    pub fn with_retention(mut self, mode: crate::lock::LockMode, days: u32) -> Store {
        self.retain = Some(crate::lock::Retain { mode, days });
        self
    }

    /// The lock calls and how long objects are locked, when this store locks what it
    /// writes ([`Store::with_retention`] on an `s3://` store).
    pub fn locking(&self) -> Option<(&crate::lock::ObjectLock, crate::lock::Retain)> {
        self.lock.as_deref().zip(self.retain)
    }

    /// The store URL (no credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Copies object `from` to the new key `to` inside the store (server-side where the
    /// store can; `to` must not exist: keys are never reused). Used to keep a damaged
    /// object aside before it is replaced.
    ///
    /// # Errors
    ///
    /// [`StoreError::Exists`] when `to` exists; [`StoreError::Object`] otherwise.
    pub async fn copy_to(&self, from: &str, to: &str) -> Result<(), StoreError> {
        if self.exists(to).await? {
            return Err(StoreError::Exists(to.to_owned()));
        }
        self.inner
            .copy(&key_path(from), &key_path(to))
            .await
            .map_err(|source| StoreError::Object {
                op: "copy",
                key: from.to_owned(),
                source,
            })
    }

    /// Whether `key` exists.
    ///
    /// # Errors
    ///
    /// [`StoreError::Object`] for failures other than "not found".
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.inner.head(&key_path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StoreError::Object {
                op: "head",
                key: key.to_owned(),
                source,
            }),
        }
    }

    /// Uploads everything `reader` yields as object `key` (multipart, bounded memory),
    /// adding the bytes sent to `progress` as they go. Returns the object's size and
    /// SHA-256. On error the multipart upload is aborted.
    ///
    /// # Errors
    ///
    /// [`StoreError::Exists`] if `key` exists; [`StoreError::Io`] if `reader` fails;
    /// [`StoreError::Object`] if the store fails after its retries.
    pub async fn put_stream<R: AsyncRead + Unpin>(
        &self,
        key: &str,
        reader: R,
        progress: &AtomicU64,
    ) -> Result<StoredObject, StoreError> {
        self.put_stream_with(key, reader, progress, &[]).await
    }

    /// The streaming encoder of this store's codec `desc` for an upload to `key`, or
    /// None when objects are stored as they are.
    fn encoder(&self, desc: &str, key: &str) -> Result<Option<crate::codec::Encoder>, StoreError> {
        match self.encode {
            Some(c) if desc != "none" => crate::codec::Encoder::new(c, self.keyring.current())
                .map(Some)
                .map_err(|source| StoreError::Codec {
                    key: key.to_owned(),
                    source,
                }),
            _ => Ok(None),
        }
    }

    /// [`Store::put_stream`] with user metadata (`x-amz-meta-<name>` on S3), kept where
    /// the store can keep it ([`Store::keeps_metadata`]) and left out elsewhere.
    ///
    /// # Errors
    ///
    /// As [`Store::put_stream`].
    pub async fn put_stream_with<R: AsyncRead + Unpin>(
        &self,
        key: &str,
        mut reader: R,
        progress: &AtomicU64,
        metadata: &[(&'static str, String)],
    ) -> Result<StoredObject, StoreError> {
        let desc = self.codec();
        let encoded_key = format!("{key}{}", codec_suffix(desc));
        let key = encoded_key.as_str();
        let mut enc = self.encoder(desc, key)?;
        if self.exists(key).await? {
            return Err(StoreError::Exists(key.to_owned()));
        }
        let path = key_path(key);
        let obj_err = |op, source| StoreError::Object {
            op,
            key: key.to_owned(),
            source,
        };
        let attributes = self.attributes(metadata);
        let upload = self
            .inner
            .put_multipart_opts(
                &path,
                object_store::PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| obj_err("start upload", e))?;
        let mut wm = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 1024 * 1024];
        let mut encoded = Vec::new();
        let result: Result<(), StoreError> = async {
            loop {
                let n = reader
                    .read(&mut buf)
                    .await
                    .map_err(|source| StoreError::Io {
                        what: format!("read the data of {key}"),
                        source,
                    })?;
                let chunk = buf.get(..n).unwrap_or_default();
                let codec_err = |source| StoreError::Codec {
                    key: key.to_owned(),
                    source,
                };
                let stored: &[u8] = match enc.as_mut() {
                    None => chunk,
                    Some(e) => {
                        encoded.clear();
                        if n == 0 {
                            if let Some(e) = enc.take() {
                                e.finish(&mut encoded).map_err(codec_err)?;
                            }
                        } else {
                            e.write(chunk, &mut encoded).map_err(codec_err)?;
                        }
                        &encoded
                    }
                };
                if !stored.is_empty() {
                    hasher.update(stored);
                    wm.wait_for_capacity(self.concurrency)
                        .await
                        .map_err(|e| obj_err("upload part", e))?;
                    wm.write(stored);
                    total += stored.len() as u64;
                }
                if n == 0 {
                    return Ok(());
                }
                progress.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        .await;
        if let Err(e) = result {
            let _ = wm.abort().await;
            return Err(e);
        }
        wm.finish()
            .await
            .map_err(|e| obj_err("complete upload", e))?;
        if let Some((lock, retain)) = self.locking() {
            retain_uploaded(lock, key, retain).await;
        }
        Ok(StoredObject {
            key: key.to_owned(),
            bytes: total,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Uploads a local file as `key` (see [`Store::put_stream`]).
    ///
    /// # Errors
    ///
    /// As [`Store::put_stream`], plus opening the file.
    pub async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        progress: &AtomicU64,
    ) -> Result<StoredObject, StoreError> {
        let f = tokio::fs::File::open(path)
            .await
            .map_err(|source| StoreError::Io {
                what: format!("open {}", path.display()),
                source,
            })?;
        self.put_stream(key, tokio::io::BufReader::new(f), progress)
            .await
    }

    /// Uploads a small object from memory in one create-only request (no multipart):
    /// an existing key is never overwritten, even by a concurrent writer (the store
    /// must support conditional PUT: AWS S3 and MinIO do, and the S3-compatible test
    /// server does).
    ///
    /// # Errors
    ///
    /// As [`Store::put_stream`]: [`StoreError::Exists`] when the key exists.
    pub async fn put_bytes(&self, key: &str, data: &[u8]) -> Result<StoredObject, StoreError> {
        self.put_bytes_with(key, data, &[]).await
    }

    /// [`Store::put_bytes`] with user metadata (see [`Store::put_stream_with`]).
    ///
    /// # Errors
    ///
    /// As [`Store::put_stream`].
    pub async fn put_bytes_with(
        &self,
        key: &str,
        data: &[u8],
        metadata: &[(&'static str, String)],
    ) -> Result<StoredObject, StoreError> {
        // Create-only in the one request (S3: `If-None-Match: *`; the local store: a
        // link that fails on an existing name), so two writers racing for one key
        // cannot both succeed, unlike a HEAD followed by a PUT.
        if let Some((lock, retain)) = self.locking() {
            // With Object Lock: the same create-only PUT, locked in the same request.
            let until = retain.until(unix_now());
            if !lock
                .put_locked(key, data.to_vec(), metadata, retain.mode, until)
                .await?
            {
                return Err(StoreError::Exists(key.to_owned()));
            }
        } else {
            self.put_create_only(key, data, metadata).await?;
        }
        Ok(StoredObject {
            key: key.to_owned(),
            bytes: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
        })
    }

    /// `data` as `key` in one create-only PUT through `object_store`.
    async fn put_create_only(
        &self,
        key: &str,
        data: &[u8],
        metadata: &[(&'static str, String)],
    ) -> Result<(), StoreError> {
        let attributes = self.attributes(metadata);
        self.inner
            .put_opts(
                &key_path(key),
                bytes::Bytes::copy_from_slice(data).into(),
                object_store::PutOptions {
                    mode: object_store::PutMode::Create,
                    attributes,
                    ..Default::default()
                },
            )
            .await
            .map_err(|source| match source {
                object_store::Error::AlreadyExists { .. } => StoreError::Exists(key.to_owned()),
                source => StoreError::Object {
                    op: "put",
                    key: key.to_owned(),
                    source,
                },
            })?;
        Ok(())
    }

    /// Streams object `obj` into `out`, checking its size and SHA-256 against the record;
    /// `progress` grows by the bytes read. The writer is flushed, not shut down.
    ///
    /// # Errors
    ///
    /// [`StoreError::Object`] if it cannot be read; [`StoreError::Damaged`] if size or
    /// SHA-256 differ (the bytes already written to `out` must then be discarded);
    /// [`StoreError::Io`] if `out` fails.
    pub async fn get_to<W: AsyncWrite + Unpin>(
        &self,
        obj: &StoredObject,
        out: &mut W,
        progress: &AtomicU64,
    ) -> Result<(), StoreError> {
        let got = self
            .inner
            .get(&key_path(&obj.key))
            .await
            .map_err(|source| StoreError::Object {
                op: "get",
                key: obj.key.clone(),
                source,
            })?;
        let mut stream = got.into_stream();
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        // When the consumer fails (a tool that choked on damaged input closes its pipe),
        // the rest is still read and hashed: a damaged object is reported as damaged,
        // not as the consumer's broken pipe.
        let mut write_err: Option<std::io::Error> = None;
        let codec_err = |source| StoreError::Codec {
            key: obj.key.clone(),
            source,
        };
        let (desc, _) = split_codec_suffix(&obj.key);
        let mut dec = match desc {
            "none" => None,
            d => Some(crate::codec::Decoder::new(d, self.keyring.clone()).map_err(codec_err)?),
        };
        let mut plain = Vec::new();
        let mut codec_failure = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| StoreError::Object {
                op: "read",
                key: obj.key.clone(),
                source,
            })?;
            hasher.update(&chunk);
            total += chunk.len() as u64;
            progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let data: &[u8] = match dec.as_mut() {
                None => &chunk,
                Some(d) => {
                    plain.clear();
                    if codec_failure.is_none() {
                        if let Err(e) = d.write(&chunk, &mut plain) {
                            codec_failure = Some(e);
                        }
                    }
                    &plain
                }
            };
            if write_err.is_none() && codec_failure.is_none() {
                if let Err(e) = out.write_all(data).await {
                    write_err = Some(e);
                }
            }
        }
        if let (Some(d), None) = (dec.take(), &codec_failure) {
            plain.clear();
            match d.finish(&mut plain) {
                Ok(()) => {
                    if write_err.is_none() {
                        if let Err(e) = out.write_all(&plain).await {
                            write_err = Some(e);
                        }
                    }
                }
                Err(e) => codec_failure = Some(e),
            }
        }
        if write_err.is_none() {
            if let Err(e) = out.flush().await {
                write_err = Some(e);
            }
        }
        let sha = hex::encode(hasher.finalize());
        if total != obj.bytes || sha != obj.sha256 {
            return Err(StoreError::Damaged {
                key: obj.key.clone(),
                expected: format!("{} bytes, sha256 {}", obj.bytes, obj.sha256),
                actual: format!("{total} bytes, sha256 {sha}"),
            });
        }
        if let Some(e) = codec_failure {
            return Err(codec_err(e));
        }
        if let Some(source) = write_err {
            return Err(StoreError::Io {
                what: format!("write the data of {}", obj.key),
                source,
            });
        }
        Ok(())
    }

    /// `metadata` as object attributes where the store keeps them (none elsewhere).
    fn attributes(&self, metadata: &[(&'static str, String)]) -> object_store::Attributes {
        let mut attributes = object_store::Attributes::new();
        if self.metadata {
            for (k, v) in metadata {
                attributes.insert(
                    object_store::Attribute::Metadata((*k).into()),
                    v.clone().into(),
                );
            }
        }
        attributes
    }

    /// Whether user metadata given to [`Store::put_stream_with`] is kept (S3) or not
    /// (a local directory).
    pub fn keeps_metadata(&self) -> bool {
        self.metadata
    }

    /// The user metadata of `key` (empty where the store keeps none).
    ///
    /// # Errors
    ///
    /// [`StoreError::Object`] (a missing key included).
    pub async fn metadata_of(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let r = self
            .inner
            .get_opts(
                &key_path(key),
                object_store::GetOptions {
                    head: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|source| StoreError::Object {
                op: "head",
                key: key.to_owned(),
                source,
            })?;
        Ok(r.attributes
            .iter()
            .filter_map(|(k, v)| match k {
                object_store::Attribute::Metadata(n) => Some((n.to_string(), v.to_string())),
                _ => None,
            })
            .collect())
    }

    /// The bytes of `key`, as stored, in pieces as they arrive (a whole object is not
    /// held in memory). The caller checks what it reads.
    ///
    /// # Errors
    ///
    /// [`StoreError::Object`], at the start or for any piece.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<
        impl futures::Stream<Item = Result<bytes::Bytes, StoreError>> + Send + 'static,
        StoreError,
    > {
        let k = key.to_owned();
        let got = self
            .inner
            .get(&key_path(key))
            .await
            .map_err(|source| StoreError::Object {
                op: "get",
                key: k.clone(),
                source,
            })?;
        Ok(got.into_stream().map(move |r| {
            r.map_err(|source| StoreError::Object {
                op: "read",
                key: k.clone(),
                source,
            })
        }))
    }

    /// The whole object `key` in memory (small objects: chunks, manifests), at most `max`
    /// bytes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Object`]; [`StoreError::TooLarge`] past `max` (reading stops there).
    pub async fn get_bytes(&self, key: &str, max: usize) -> Result<Vec<u8>, StoreError> {
        let mut s = Box::pin(self.get_stream(key).await?);
        let mut out = Vec::new();
        while let Some(piece) = s.next().await {
            let piece = piece?;
            if out.len() + piece.len() > max {
                return Err(StoreError::TooLarge {
                    key: key.to_owned(),
                    max,
                });
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    /// Deletes `key`; a missing key is not an error.
    ///
    /// # Errors
    ///
    /// [`StoreError::Object`].
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&key_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Object {
                op: "delete",
                key: key.to_owned(),
                source,
            }),
        }
    }

    /// Keys (with sizes) under `prefix` (a `/`-separated directory, e.g. `db1/<id>`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Object`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let p = key_path(prefix);
        let mut s = self.inner.list(Some(&p));
        let mut out = Vec::new();
        while let Some(m) = s.next().await {
            let m = m.map_err(|source| StoreError::Object {
                op: "list",
                key: prefix.to_owned(),
                source,
            })?;
            out.push((m.location.to_string(), m.size));
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn an_encoding_store_seals_streams_under_a_suffixed_key_and_opens_them() {
        use crate::codec::Compression;
        use crate::keyring::{Key, Keyring};
        let mem = Arc::new(InMemory::new());
        let ring = Arc::new(Keyring::from_keys(vec![Key::new(
            Some("k1".into()),
            [7u8; 32],
        )]));
        let store = Store::from_object_store(mem.clone(), "memory://", 5 * 1024 * 1024)
            .with_codec(Compression::Zstd, ring.clone());
        assert_eq!(store.codec(), "zstd+aes-256-gcm");
        let mut data = b"a secret row ".repeat(200_000);
        data.extend_from_slice(b"tail");
        let progress = AtomicU64::new(0);
        let obj = store
            .put_stream("db1/b1/backup.mbstream", &data[..], &progress)
            .await
            .unwrap();
        assert_eq!(obj.key, "db1/b1/backup.mbstream.zstd_aes-256-gcm.bsrv");
        assert_eq!(
            split_codec_suffix(&obj.key),
            ("zstd+aes-256-gcm", "db1/b1/backup.mbstream")
        );
        assert_eq!(
            progress.load(Ordering::Relaxed),
            data.len() as u64,
            "plaintext progress"
        );
        assert!(
            obj.bytes * 10 < data.len() as u64,
            "compressed: {}",
            obj.bytes
        );
        let raw = store.get_bytes(&obj.key, 1 << 30).await.unwrap();
        assert!(!raw.windows(12).any(|w| w == b"a secret row"), "encrypted");
        assert_eq!(raw.len() as u64, obj.bytes);
        let mut out = Vec::new();
        store
            .get_to(&obj, &mut out, &AtomicU64::new(0))
            .await
            .unwrap();
        assert_eq!(out, data);
        // Without the key: a named error, never garbage.
        let plain = Store::from_object_store(mem, "memory://", 5 * 1024 * 1024);
        let r = plain
            .get_to(&obj, &mut Vec::new(), &AtomicU64::new(0))
            .await;
        match r {
            Err(StoreError::Codec { key, source }) => {
                assert_eq!(key, obj.key);
                assert!(source.to_string().contains("k1"), "{source}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(split_codec_suffix("a/t.sql.zst"), ("none", "a/t.sql.zst"));
    }

    /// Two writers racing for one key with a single PUT: exactly one wins, the other gets
    /// `Exists`, and the object holds the winner's bytes; on the memory and the local
    /// directory stores (the S3 case runs against the S3-compatible server in
    /// tests/tests/archive.rs).
    #[tokio::test]
    async fn racing_single_puts_of_one_key_leave_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let local = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let stores = [
            Store::from_object_store(Arc::new(InMemory::new()), "memory://", 5 << 20),
            Store::from_object_store(local, "file://", 5 << 20),
        ];
        for store in &stores {
            for round in 0..20 {
                let key = format!("db1/binlogs/m.{round:06}.manifest.json");
                let (a, b) = tokio::join!(
                    store.put_bytes(&key, b"writer a"),
                    store.put_bytes(&key, b"writer b")
                );
                let winner: &[u8] = match (&a, &b) {
                    (Ok(_), Err(StoreError::Exists(k))) if *k == key => b"writer a",
                    (Err(StoreError::Exists(k)), Ok(_)) if *k == key => b"writer b",
                    other => panic!("{} round {round}: {other:?}", store.url()),
                };
                assert_eq!(store.get_bytes(&key, 64).await.unwrap(), winner);
                let again = store.put_bytes(&key, b"late").await;
                assert!(matches!(again, Err(StoreError::Exists(_))), "{again:?}");
            }
        }
    }

    #[tokio::test]
    async fn put_get_roundtrip_refuses_overwrite_and_detects_damage() {
        let mem = Arc::new(InMemory::new());
        let store = Store::from_object_store(mem.clone(), "memory://", 5 * 1024 * 1024);
        // 12 MiB + 3 bytes: three parts.
        let data: Vec<u8> = (0..12 * 1024 * 1024 + 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let progress = AtomicU64::new(0);
        let obj = store
            .put_stream("db1/b1/backup.mbstream", &data[..], &progress)
            .await
            .unwrap();
        assert_eq!(obj.bytes, data.len() as u64);
        assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
        assert_eq!(obj.sha256, hex::encode(Sha256::digest(&data)));
        let again = store.put_bytes("db1/b1/backup.mbstream", b"x").await;
        assert!(matches!(again, Err(StoreError::Exists(_))), "{again:?}");

        let mut out = Vec::new();
        store
            .get_to(&obj, &mut out, &AtomicU64::new(0))
            .await
            .unwrap();
        assert_eq!(out, data);

        // Replace the bytes behind the store's back: the read-back check catches it.
        mem.put(&key_path(&obj.key), b"tampered".to_vec().into())
            .await
            .unwrap();
        let r = store
            .get_to(&obj, &mut Vec::new(), &AtomicU64::new(0))
            .await;
        assert!(matches!(r, Err(StoreError::Damaged { .. })), "{r:?}");
        // Even when the consumer gives up first (a tool closing its pipe on bad input),
        // the damage is what is reported.
        let mut failing = FailingWriter;
        let r = store.get_to(&obj, &mut failing, &AtomicU64::new(0)).await;
        assert!(matches!(r, Err(StoreError::Damaged { .. })), "{r:?}");

        assert_eq!(
            store.list("db1").await.unwrap(),
            vec![("db1/b1/backup.mbstream".to_string(), 8)]
        );
        store.delete(&obj.key).await.unwrap();
        store.delete(&obj.key).await.unwrap();
        assert!(!store.exists(&obj.key).await.unwrap());
    }

    /// A writer whose every write fails like a closed pipe.
    struct FailingWriter;

    impl tokio::io::AsyncWrite for FailingWriter {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
}
