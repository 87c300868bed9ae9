//! The interface between the take orchestration (`take`) and each method (`physical`,
//! `logical`, `clone`): what a method is given ([`Run`]), what it hands back
//! ([`MethodOutput`]), the live [`Progress`] it reports to (shared with the API, and with
//! the methods' restores), and the helpers every method uses ([`Run::key`],
//! [`Run::mark_uploading`], [`Run::upload_dir`]).
//!
//! Dependencies point one way: `take` uses the methods and this module; the methods use
//! this module (and `sql`, `tool`, `objstore`); this module uses neither `take` nor a
//! method.

use crate::error::BaseError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use catalog::{BackupResult, Catalog};
use objstore::store::StoredObject;

use crate::config::SourceBackupSettings;
use crate::sql::ServerFacts;
use crate::tool::Tools;
use objstore::store::Store;

/// Live progress of a running base, shared with the API.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes uploaded (taking) or downloaded (restoring) so far.
    pub bytes: AtomicU64,
    /// What is happening now, e.g. "streaming mariabackup".
    pub phase: Mutex<String>,
}

impl Progress {
    /// Sets the phase text.
    pub fn set_phase(&self, p: &str) {
        if let Ok(mut g) = self.phase.lock() {
            *g = p.to_owned();
        }
    }

    /// The phase text.
    pub fn phase(&self) -> String {
        self.phase.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// What a method produced; `take` records it in the catalog row and the manifest.
#[derive(Debug, Default)]
pub(crate) struct MethodOutput {
    /// First line of the tool's `--version` (the clone method: the server's version).
    pub tool_version: Option<String>,
    /// The command line (or statement) that made the base, free of secrets.
    pub command: Option<String>,
    /// Every object uploaded, in order (`take` appends `manifest.json`).
    pub objects: Vec<StoredObject>,
    /// The consistency point and LSNs (`objects` is left empty: `take` fills it).
    pub result: BackupResult,
}

/// Everything a method needs while it runs, built by `take` once the server has been
/// read and the work directory exists. It lends the method the pieces of the service it
/// uses (catalog, store, tools, settings), not the service itself.
pub(crate) struct Run<'a> {
    /// The catalog; methods touch it only through [`Run::mark_uploading`].
    pub catalog: &'a Catalog,
    /// The object store every object of the base goes to (under [`Run::key`]).
    pub store: &'a Store,
    /// Where the tools are ([`Tools::find`]).
    pub tools: &'a Tools,
    /// The source's name: the first part of every key.
    pub source: &'a str,
    /// The source's backup settings; the methods read `threads`.
    pub settings: &'a SourceBackupSettings,
    /// The base id (the catalog row, the second part of every key).
    pub id: &'a str,
    /// `<staging_dir>/<id>/`: scratch space, removed by `take` whatever happens.
    pub workdir: PathBuf,
    /// The client defaults file (mode 0600) with the backup account, in `workdir`.
    pub defaults_file: PathBuf,
    /// What was read of the server before the method started.
    pub facts: ServerFacts,
    /// Where the method reports bytes and phase.
    pub progress: &'a Progress,
    /// Physical incremental: the parent's end LSN (`--incremental-lsn`).
    pub from_lsn: Option<u64>,
    /// Logical: the databases selected by the filter (never empty).
    pub databases: Vec<String>,
    /// The row has moved to UPLOADING (set by [`Run::mark_uploading`]; build it `false`).
    pub uploading: AtomicBool,
}

impl Run<'_> {
    /// DOING → UPLOADING once the tool has finished and only uploads remain (idempotent).
    ///
    /// # Errors
    ///
    /// [`BaseError::Catalog`].
    pub async fn mark_uploading(&self) -> Result<(), BaseError> {
        if self.uploading.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.catalog
            .set_uploading(self.id)
            .await
            .map_err(BaseError::catalog("record UPLOADING"))
    }

    /// `<source>/<id>/<name>`.
    pub fn key(&self, name: &str) -> String {
        format!("{}/{}/{}", self.source, self.id, name)
    }

    /// Uploads every file under `dir` (recursively) as `<prefix>/<relative path>`, in
    /// name order, counting the bytes in [`Run::progress`].
    ///
    /// # Errors
    ///
    /// The listing's error ([`BaseError::Io`]) or the store's.
    pub async fn upload_dir(
        &self,
        dir: &Path,
        prefix: &str,
    ) -> Result<Vec<StoredObject>, BaseError> {
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files).map_err(BaseError::io("list", dir))?;
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for rel in files {
            let key = format!("{prefix}/{rel}");
            let obj = self
                .store
                .put_file(&key, &dir.join(&rel), &self.progress.bytes)
                .await?;
            out.push(obj);
        }
        Ok(out)
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}
