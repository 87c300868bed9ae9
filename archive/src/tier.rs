//! The handle of the archive store (the object tier of the archive): the object store
//! with the `[archive]` settings, shared by every source's shipper, scrub and readers,
//! and the requests (scrub now, a damaged object found) that reach a source's scrub loop
//! through it.

use std::collections::HashMap;
use std::sync::Arc;

use node::config::ArchiveSettings;
use objstore::codec;
use objstore::store::{Store, StoreError};
use thiserror::Error;

/// The archive store and its settings, shared by every source's shipper.
pub struct ArchiveTier {
    /// The store.
    pub store: Arc<Store>,
    /// `[archive]`.
    pub settings: ArchiveSettings,
    /// Scrubs asked for (by the API) and files a read found damaged, by source; each
    /// source's shipper takes its own.
    scrub_asks: std::sync::Mutex<HashMap<String, ScrubAsk>>,
}

/// What a source's scrub loop is asked to do.
#[derive(Debug, Default)]
struct ScrubAsk {
    /// A whole scrub now.
    all: bool,
    /// Files a read found damaged.
    files: Vec<String>,
}

impl ArchiveTier {
    /// Opens the store of `settings`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`].
    pub fn open(settings: ArchiveSettings) -> Result<ArchiveTier, StoreError> {
        let store = Arc::new(Store::open(&settings.store)?);
        Ok(ArchiveTier {
            store,
            settings,
            scrub_asks: Default::default(),
        })
    }

    /// [`ArchiveTier::open`], then, with `[archive] object_lock`, checks the bucket's
    /// Object Lock (objstore::lock): enabled, with a default retention rule of the
    /// configured mode and at least `keep_days` days, so that S3 locks every new object
    /// at least until archive retention could first delete it. Multipart uploads then
    /// also set that date explicitly ([`Store::with_retention`]).
    ///
    /// # Errors
    ///
    /// [`LockCheckError`]: a definite stop at start with the reason, or the store
    /// failing (retry the start).
    pub async fn open_checked(settings: ArchiveSettings) -> Result<ArchiveTier, LockCheckError> {
        let mut tier = ArchiveTier::open(settings)?;
        let Some(mode) = tier.settings.object_lock else {
            return Ok(tier);
        };
        let url = tier.settings.store.url.clone();
        let lock = tier
            .store
            .object_lock()
            .ok_or_else(|| LockCheckError::NotS3 { url: url.clone() })?;
        let rule = lock
            .bucket_rule()
            .await
            .map_err(StoreError::from)?
            .ok_or_else(|| LockCheckError::NoRule {
                url: url.clone(),
                mode: mode.as_s3(),
            })?;
        if rule.mode != mode {
            return Err(LockCheckError::Mode {
                url,
                configured: mode.as_s3(),
                bucket: rule.mode.as_s3(),
            });
        }
        if let Some(keep_days) = tier.settings.keep_days {
            if rule.days < keep_days {
                return Err(LockCheckError::TooShort {
                    url,
                    days: rule.days,
                    keep_days,
                });
            }
        }
        let store = (*tier.store).clone().with_retention(mode, rule.days);
        tier.store = Arc::new(store);
        Ok(tier)
    }

    /// Asks `source`'s shipper to scrub the whole store now (`POST
    /// /v1/sources/{name}/archive/scrub`); the result shows in its status.
    pub fn request_scrub(&self, source: &str) {
        node::util::lock(&self.scrub_asks)
            .entry(source.to_string())
            .or_default()
            .all = true;
    }

    /// Reports that reading `file` of `source` back found its object damaged: the
    /// shipper checks it and repairs it (see [`super::scrub`]).
    pub fn report_damaged(&self, source: &str, file: &str) {
        node::util::lock(&self.scrub_asks)
            .entry(source.to_string())
            .or_default()
            .files
            .push(file.to_string());
    }

    /// Takes what `source` was asked: (whole scrub, damaged files).
    pub(crate) fn take_scrub_ask(&self, source: &str) -> (bool, Vec<String>) {
        match node::util::lock(&self.scrub_asks).remove(source) {
            Some(a) => (a.all, a.files),
            None => (false, Vec::new()),
        }
    }

    /// The codec descriptor of new objects.
    pub fn codec(&self) -> &'static str {
        codec::descriptor(
            self.settings.compression,
            self.settings.keyring.current().is_some(),
        )
    }
}

/// Why the archive store's Object Lock does not hold what `[archive] object_lock` asks
/// ([`ArchiveTier::open_checked`]). All but `Store` are definite stops: fix the bucket
/// or the config.
#[derive(Debug, Error)]
pub enum LockCheckError {
    /// The store failed or could not be opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Object Lock needs an S3 store.
    #[error("[archive] object_lock needs an s3:// store, not {url}")]
    NotS3 {
        /// Store URL.
        url: String,
    },
    /// The bucket has no Object Lock, or no default retention rule.
    #[error("[archive] object_lock: the bucket of {url} has no Object Lock default retention rule; create the bucket with Object Lock enabled and put a default rule: {{\"ObjectLockEnabled\":\"Enabled\",\"Rule\":{{\"DefaultRetention\":{{\"Mode\":\"{mode}\",\"Days\":<at least keep_days>}}}}}} (aws s3api put-object-lock-configuration)")]
    NoRule {
        /// Store URL.
        url: String,
        /// The configured mode.
        mode: &'static str,
    },
    /// The bucket's rule has another mode.
    #[error("[archive] object_lock = {configured} but the default rule of the bucket of {url} is {bucket}: make them agree")]
    Mode {
        /// Store URL.
        url: String,
        /// The configured mode.
        configured: &'static str,
        /// The bucket's mode.
        bucket: &'static str,
    },
    /// The rule locks objects for less than archive retention keeps them.
    #[error("the default rule of the bucket of {url} locks objects for {days} days, less than [archive] keep_days = {keep_days}: raise the rule's days")]
    TooShort {
        /// Store URL.
        url: String,
        /// The rule's days.
        days: u32,
        /// `keep_days`.
        keep_days: u32,
    },
}

/// Why work on the archive store (shipping, eviction, scrub) failed. Every variant is
/// retried by the loop that met it after its backoff; the ones that name damage or a
/// changed file stay failing (and visible in the source's archive status) until an
/// operator looks.
#[derive(Debug, Error)]
pub enum TierError {
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] catalog::CatalogError),
    /// The store failed (after its client's retries) or refused.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Encoding or decoding failed.
    #[error("{0}")]
    Codec(#[from] codec::CodecError),
    /// Reading or writing a local file failed.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An object left by a crash holds other bytes than the ones to ship (plaintext
    /// SHA-256s, hex); it is never overwritten.
    #[error("object {key} exists with other bytes (plaintext sha256 {got}, expected {want}); it is not overwritten: inspect it")]
    OtherBytes {
        /// The object's key.
        key: String,
        /// Its plaintext SHA-256.
        got: String,
        /// The SHA-256 to ship.
        want: String,
    },
    /// A file recorded as stored whose object the store does not have; the local copy
    /// is kept.
    #[error(
        "{file} is recorded in the store as {key} but the store does not have it; kept locally"
    )]
    ObjectMissing {
        /// The binlog file.
        file: String,
        /// The recorded key.
        key: String,
    },
    /// A SUCC file without a recorded SHA-256 (not shipped).
    #[error("{file} is SUCC without a recorded SHA-256; not shipped")]
    NoChecksum {
        /// The binlog file.
        file: String,
    },
    /// The local file's bytes are not the ones its check recorded (not shipped; an
    /// object already written is removed again).
    #[error("{file} changed since its check ({size} bytes, sha256 {sha256}; recorded {recorded_size} bytes, {recorded}); not shipped")]
    Changed {
        /// The binlog file.
        file: String,
        /// Its size now, bytes.
        size: u64,
        /// Its SHA-256 now, hex.
        sha256: String,
        /// The recorded size, bytes.
        recorded_size: u64,
        /// The recorded SHA-256, hex.
        recorded: String,
    },
    /// A blocking task (`what`: read, encode, copy) panicked or was cancelled.
    #[error("{what} task failed: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A manifest could not be serialized.
    #[error("manifest: {0}")]
    Manifest(#[source] serde_json::Error),
    /// The upload stopped taking bytes before the file was read to its end.
    #[error("the upload stopped")]
    UploadStopped,
}
