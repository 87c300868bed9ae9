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
