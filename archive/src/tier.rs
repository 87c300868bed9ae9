//! The handle of the archive store (the object tier of the archive): the object store
//! with the `[archive]` settings, shared by every source's shipper, scrub and readers,
//! and the requests (scrub now, a damaged object found) that reach a source's scrub loop
//! through it.

use std::collections::HashMap;
use std::sync::Arc;

use node::config::ArchiveSettings;
use objstore::codec;
use objstore::store::{Store, StoreError};

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
