//! The snapshotter's errors, one variant per cause with its data and its source kept:
//!
//! - [`ToolError`]: a backup tool (mariabackup, mydumper, mysqldump, myloader, mariadb,
//!   mbstream, ...) is missing, would not start, or exited with an error (its output's
//!   tail kept);
//! - [`BaseError`]: why a base could not be taken, restored or expired: a tool, a
//!   statement, the catalog, the store, the disk, or a reason the base or the server is
//!   unusable;
//! - [`DefaultsFileError`]: the client defaults file with the backup account was not
//!   written;
//! - `TakeError` (in `take`) wraps a [`BaseError`] with the id of the base row it left in
//!   ERROR.
//!
//! Every one is a definite stop of the base or restore it happened in: the base's row
//! goes to ERROR with the `Display` text as its `info`, and a retry is a new base or job
//! (the scheduler takes the next one on its schedule). The texts are what the catalog,
//! the API and the CLI show.

use std::path::PathBuf;
use std::process::ExitStatus;

use catalog::CatalogError;
use objstore::store::StoreError;

use crate::sql::{QueryError, SessionFailure};

/// Why a client defaults file was not written.
#[derive(Debug, thiserror::Error)]
pub enum DefaultsFileError {
    /// A value holds a control character (a newline decoded from `%0A`, say): refused,
    /// it would end its line of the file.
    #[error("the {0} value holds a control character; refused (it would end the line of the client's defaults file)")]
    ControlCharacter(&'static str),
    /// A path value is not UTF-8.
    #[error("the {0} path is not UTF-8")]
    NotUtf8(&'static str),
    /// Creating or writing the file failed.
    #[error("write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A backup tool failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// `[backup.tools]` names a path that is not an executable file.
    #[error("{name}: {} (from [backup.tools]) is not an executable file", .path.display())]
    NotExecutable {
        /// Tool name.
        name: String,
        /// The configured path.
        path: PathBuf,
    },
    /// Not one of the tools the snapshotter knows (`tool::TOOL_NAMES`).
    #[error("unknown tool {0:?}")]
    Unknown(String),
    /// The tool is not installed; install the package named.
    #[error(
        "{name} not found (looked for {looked} in PATH): install the {package} package \
         (bash scripts/setup.sh) or set its path in [backup.tools]"
    )]
    NotInstalled {
        /// Tool name.
        name: String,
        /// The executable names looked for, " / "-separated.
        looked: String,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// The process could not be started.
    #[error("could not start {}: {source}", .program.display())]
    Start {
        /// The executable.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The process was started without the pipe asked for.
    #[error("{}: no {pipe} pipe", .program.display())]
    NoPipe {
        /// The executable.
        program: PathBuf,
        /// "stdin" or "stdout".
        pipe: &'static str,
    },
    /// Waiting for the process failed.
    #[error("wait for {}: {source}", .program.display())]
    Wait {
        /// The executable.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The tool exited with an error; `output` is the tail of what it printed.
    #[error("{} exited with {status}:\n{output}", .program.display())]
    Exited {
        /// The executable.
        program: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// The last `tool::OUTPUT_TAIL` bytes of its stderr (and stdout).
        output: String,
    },
    /// A streamed tool (mariabackup, xtrabackup, mysqldump) exited with an error;
    /// `output` is the tail of its stderr.
    #[error("{name} failed ({status}):\n{output}")]
    Failed {
        /// The tool's name (or path).
        name: String,
        /// Its exit status.
        status: ExitStatus,
        /// The last `tool::OUTPUT_TAIL` bytes of its stderr.
        output: String,
    },
    /// Feeding the tool an object from the store failed (the tool was killed).
    #[error("read {key} from the store: {source}{}", said(.program, .output))]
    Feed {
        /// The object's key.
        key: String,
        /// The executable.
        program: PathBuf,
        /// What the tool printed before it was killed.
        output: String,
        /// The store's error.
        #[source]
        source: Box<StoreError>,
    },
}

/// "; <program> said:\n<output>", or "" when it said nothing.
fn said(program: &std::path::Path, output: &str) -> String {
    let t = output.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!("; {} said:\n{t}", program.display())
    }
}

/// Why a base could not be taken, restored or expired.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// A tool failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// A tool failed at one step, named by `what` (e.g. "prepare b-1").
    #[error("{what}: {source}")]
    ToolStep {
        /// The step.
        what: String,
        /// The tool's failure.
        #[source]
        source: ToolError,
    },
    /// A statement on the server failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The session to the server could not be opened.
    #[error("connect to {endpoint}: {source}")]
    Connect {
        /// Where (the endpoint's debug form; no password).
        endpoint: String,
        /// The client's error.
        #[source]
        source: SessionFailure,
    },
    /// The catalog failed.
    #[error("{what}: {source}")]
    Catalog {
        /// What was being recorded or read.
        what: String,
        /// The catalog's error.
        #[source]
        source: CatalogError,
    },
    /// The object store failed (boxed: the store's error is large).
    #[error(transparent)]
    Store(Box<StoreError>),
    /// The object store failed at one step, named by `what` (e.g. "upload the dump").
    #[error("{what}: {source}")]
    StoreStep {
        /// The step.
        what: String,
        /// The store's error.
        #[source]
        source: Box<StoreError>,
    },
    /// A local file or directory could not be created, read or listed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// "create", "read", "list", ...
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The client defaults file with the backup account could not be written.
    #[error(transparent)]
    DefaultsFile(#[from] DefaultsFileError),
    /// The manifest could not be serialised.
    #[error("manifest: {0}")]
    Manifest(#[source] serde_json::Error),
    /// A base to restore lacks an object its method needs.
    #[error("base {base} has no {object} object")]
    MissingObject {
        /// The base.
        base: String,
        /// The object's name (e.g. "backup.mbstream", "dump.sql").
        object: &'static str,
    },
    /// The base is not in the catalog.
    #[error("base {0} is not in the catalog")]
    NotInCatalog(String),
    /// The base's row disappeared between its completion and reading it back.
    #[error("the base vanished from the catalog")]
    Vanished,
    /// A base of the chain is not COMPLETED.
    #[error(
        "base {id} is {state}, not COMPLETED: it cannot be restored{}",
        .info.as_deref().map(|i| format!(" ({i})")).unwrap_or_default()
    )]
    NotCompleted {
        /// The base.
        id: String,
        /// Its state.
        state: catalog::BackupState,
        /// Its `info`, when it has one.
        info: Option<String>,
    },
    /// An incremental base has no parent recorded.
    #[error("incremental base {0} has no parent recorded")]
    NoParent(String),
    /// An incremental's parent is not in the catalog.
    #[error("parent base {parent} of {id} is not in the catalog")]
    ParentMissing {
        /// The parent's id.
        parent: String,
        /// The incremental.
        id: String,
    },
    /// The parent chain loops (or is longer than 10,000 bases).
    #[error("the parent chain of {0} does not end")]
    ChainDoesNotEnd(String),
    /// The chain to restore is empty.
    #[error("empty base chain")]
    EmptyChain,
    /// The datadir to restore into is not empty.
    #[error("target datadir {} is not empty", .0.display())]
    DatadirNotEmpty(PathBuf),
    /// The base, the request or the server cannot be used, for the reason given (a
    /// sentence for the DBA: what is wrong and what to change).
    #[error("{0}")]
    Unusable(String),
}

impl From<StoreError> for BaseError {
    fn from(e: StoreError) -> BaseError {
        BaseError::Store(Box::new(e))
    }
}

impl BaseError {
    /// An [`BaseError::Io`] for `what` on `path`, for `map_err`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> BaseError {
        let path = path.into();
        move |source| BaseError::Io { what, path, source }
    }

    /// A [`BaseError::Catalog`] for `what`, for `map_err`.
    pub(crate) fn catalog(what: impl Into<String>) -> impl FnOnce(CatalogError) -> BaseError {
        let what = what.into();
        move |source| BaseError::Catalog { what, source }
    }

    /// A [`BaseError::StoreStep`] for `what`, for `map_err`.
    pub(crate) fn store(what: impl Into<String>) -> impl FnOnce(StoreError) -> BaseError {
        let what = what.into();
        move |source| BaseError::StoreStep {
            what,
            source: Box::new(source),
        }
    }

    /// A [`BaseError::ToolStep`] for `what`, for `map_err`.
    pub(crate) fn tool(what: impl Into<String>) -> impl FnOnce(ToolError) -> BaseError {
        let what = what.into();
        move |source| BaseError::ToolStep { what, source }
    }
}
