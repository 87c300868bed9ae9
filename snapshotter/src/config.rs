//! The base-backup parts of the shared TOML configuration (the file of
//! `binlog-server serve --config FILE`), parsed here and embedded by binlog-server's
//! config:
//!
//! ```toml
//! [backup]                                  # optional; defaults shown
//! store = "file:///<data_dir>/backups"      # or "s3://bucket/prefix"
//! s3_endpoint = "http://127.0.0.1:9000"     # MinIO/Ceph/moto; omit for AWS
//! s3_region = "us-east-1"
//! s3_allow_http = false                     # true for a plain-http endpoint
//! staging_dir = "<data_dir>/staging"        # logical dumps before upload, restore work
//! part_size = 8388608                       # multipart part size, bytes (>= 5 MiB)
//! upload_concurrency = 2                    # parts in flight per object
//! retries = 10                              # per-request retries (S3) with backoff
//! [backup.tools]                            # optional explicit paths
//! xtrabackup = "/opt/xtrabackup-8.0/bin/xtrabackup"
//!
//! [[source]]
//! name = "db1"
//! # ...
//! [source.backup]
//! url = "mysql://backup:secret@127.0.0.1:3306"  # default: the source's url
//! password_env = "DB1_BACKUP_PASSWORD"
//! method = "physical"                       # physical | logical | clone
//! logical_tool = "mydumper"                 # mydumper | mysqldump (default: mydumper if installed)
//! databases = "%"                           # logical: "%", "fan,bo,union_log_%", "!fan,!bo"
//! full_schedule = "0 2 * * *"               # cron (5 fields, or 6 with seconds), UTC
//! incremental_schedule = "0 * * * *"        # physical only
//! replica_only = false                      # skip (and record why) when read_only=OFF
//! keep_days = 7                             # retention: drop bases older than this...
//! keep_min = 2                              # ...but always keep the newest this many
//! threads = 2                               # --parallel / --threads of the tool
//! ```
//!
//! S3 credentials come from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`), never from the file.

use std::path::{Path, PathBuf};

use objstore::store::StoreOptions;
use serde::Deserialize;

use crate::dbfilter::DbFilter;
use crate::schedule::Schedule;

/// `[backup]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Object store URL: `file:///abs/dir` or `s3://bucket[/prefix]`.
    pub store: Option<String>,
    /// S3 endpoint for S3-compatible servers (MinIO, Ceph, moto).
    pub s3_endpoint: Option<String>,
    /// S3 region (default `us-east-1`).
    pub s3_region: Option<String>,
    /// Allow `http://` endpoints.
    pub s3_allow_http: bool,
    /// Local working directory: logical dumps before upload, metadata, restore work.
    pub staging_dir: Option<PathBuf>,
    /// Multipart part size in bytes; memory per upload is about
    /// `part_size * (upload_concurrency + 1)`.
    pub part_size: u64,
    /// Parts uploaded at once per object.
    pub upload_concurrency: usize,
    /// Retries per S3 request (exponential backoff from 100 ms, capped at 15 s).
    pub retries: usize,
    /// Explicit tool paths (`[backup.tools]`, e.g. `xtrabackup = "/opt/.../xtrabackup"`);
    /// names from [`crate::tool::TOOL_NAMES`].
    pub tools: std::collections::BTreeMap<String, PathBuf>,
    /// Compression of new base objects: `"zstd"` (default) or `"none"` (objstore::codec;
    /// an encoded object's key ends in `.zstd.bsrv` and the like). Manifests stay plain.
    pub compression: String,
    /// Key file that encrypts new base objects and opens old ones (objstore::keyring,
    /// the same format as `[archive] encryption_key_file`); none: not encrypted.
    pub encryption_key_file: Option<PathBuf>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            store: None,
            s3_endpoint: None,
            s3_region: None,
            s3_allow_http: false,
            staging_dir: None,
            part_size: 8 * 1024 * 1024,
            upload_concurrency: 2,
            retries: 10,
            tools: Default::default(),
            compression: "zstd".into(),
            encryption_key_file: None,
        }
    }
}

/// Validated `[backup]`.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// The object store of bases.
    pub options: StoreOptions,
    /// Staging directory (created).
    pub staging_dir: PathBuf,
    /// Compression of new base objects.
    pub compression: objstore::codec::Compression,
    /// Keys of base objects (empty without a key file).
    pub keyring: std::sync::Arc<objstore::keyring::Keyring>,
}

impl StoreSettings {
    /// Opens the base store with its codec (new objects encoded, old ones opened).
    ///
    /// # Errors
    ///
    /// [`objstore::store::StoreError::Open`].
    pub fn open(&self) -> Result<objstore::store::Store, objstore::store::StoreError> {
        Ok(objstore::store::Store::open(&self.options)?
            .with_codec(self.compression, self.keyring.clone()))
    }
}

impl BackupConfig {
    /// Checks values and fills defaults from `data_dir`. Errors are `(key, message)`.
    pub fn validate(&self, data_dir: &Path) -> Result<StoreSettings, (String, String)> {
        let url = match &self.store {
            Some(u) => u.clone(),
            None => format!("file://{}", data_dir.join("backups").display()),
        };
        objstore::store::check_url(&url, "backup.store")?;
        if self.part_size < 5 * 1024 * 1024 || self.part_size > 1024 * 1024 * 1024 {
            return Err((
                "backup.part_size".into(),
                format!(
                    "{} bytes: must be between 5 MiB (S3's minimum part) and 1 GiB",
                    self.part_size
                ),
            ));
        }
        if !(1..=16).contains(&self.upload_concurrency) {
            return Err((
                "backup.upload_concurrency".into(),
                "must be between 1 and 16".into(),
            ));
        }
        let staging_dir = self
            .staging_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("staging"));
        std::fs::create_dir_all(&staging_dir).map_err(|e| {
            (
                "backup.staging_dir".into(),
                format!("cannot create {}: {e}", staging_dir.display()),
            )
        })?;
        let compression = match self.compression.as_str() {
            "zstd" => objstore::codec::Compression::Zstd,
            "none" => objstore::codec::Compression::None,
            other => {
                return Err((
                    "backup.compression".into(),
                    format!("{other:?}: use \"zstd\" or \"none\""),
                ))
            }
        };
        let keyring = match &self.encryption_key_file {
            None => objstore::keyring::Keyring::none(),
            Some(p) => objstore::keyring::Keyring::load(p)
                .map_err(|e| ("backup.encryption_key_file".to_string(), e.to_string()))?,
        };
        Ok(StoreSettings {
            compression,
            keyring: std::sync::Arc::new(keyring),
            options: StoreOptions {
                url,
                s3_endpoint: self.s3_endpoint.clone(),
                s3_region: self.s3_region.clone().unwrap_or_else(|| "us-east-1".into()),
                s3_allow_http: self.s3_allow_http,
                part_size: self.part_size as usize,
                upload_concurrency: self.upload_concurrency,
                retries: self.retries,
                checksums: false,
            },
            staging_dir,
        })
    }
}

/// How a base is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// mariabackup (MariaDB) / xtrabackup (MySQL, Percona), streamed.
    Physical,
    /// mydumper / mysqldump.
    Logical,
    /// MySQL 8.0.17+ clone plugin (`CLONE LOCAL DATA DIRECTORY`).
    Clone,
}

impl Method {
    /// `"physical"`, `"logical"` or `"clone"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Physical => "physical",
            Method::Logical => "logical",
            Method::Clone => "clone",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    // The text is the product: a parser's message to the person who wrote the input
    // (config file, CLI flag or API field), shown as it is; no caller acts on it.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "physical" => Ok(Method::Physical),
            "logical" => Ok(Method::Logical),
            "clone" => Ok(Method::Clone),
            o => Err(format!("method {o:?}: use physical, logical or clone")),
        }
    }
}

/// Logical dump tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogicalTool {
    /// mydumper/myloader, consistent snapshot, several threads.
    Mydumper,
    /// mysqldump/mariadb-dump `--single-transaction`, one stream.
    Mysqldump,
}

fn default_databases() -> String {
    "%".into()
}
fn default_keep_days() -> u32 {
    7
}
fn default_keep_min() -> u32 {
    2
}
fn default_threads() -> u32 {
    2
}

/// `[source.backup]` as written.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceBackupConfig {
    /// Account with backup privileges (default: the source's replication URL).
    pub url: Option<String>,
    /// Environment variable with that account's password.
    pub password_env: Option<String>,
    /// Method of scheduled and default one-off bases.
    #[serde(default = "default_method")]
    pub method: Method,
    /// Logical tool; default mydumper when installed, else mysqldump.
    pub logical_tool: Option<LogicalTool>,
    /// Database filter for logical bases (seed 004's db_list).
    #[serde(default = "default_databases")]
    pub databases: String,
    /// Cron expression of full bases (UTC).
    pub full_schedule: Option<String>,
    /// Cron expression of incremental bases (physical only, UTC).
    pub incremental_schedule: Option<String>,
    /// Skip when the target is a primary (`read_only=OFF`).
    #[serde(default)]
    pub replica_only: bool,
    /// Retention: bases older than this many days may be dropped.
    #[serde(default = "default_keep_days")]
    pub keep_days: u32,
    /// Retention: the newest this many COMPLETED full bases (and their incrementals) are
    /// always kept.
    #[serde(default = "default_keep_min")]
    pub keep_min: u32,
    /// Tool parallelism.
    #[serde(default = "default_threads")]
    pub threads: u32,
}

fn default_method() -> Method {
    Method::Physical
}

impl std::fmt::Debug for SourceBackupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceBackupConfig")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("method", &self.method)
            .field("databases", &self.databases)
            .finish_non_exhaustive()
    }
}

impl Default for SourceBackupConfig {
    fn default() -> Self {
        SourceBackupConfig {
            url: None,
            password_env: None,
            method: Method::Physical,
            logical_tool: None,
            databases: default_databases(),
            full_schedule: None,
            incremental_schedule: None,
            replica_only: false,
            keep_days: default_keep_days(),
            keep_min: default_keep_min(),
            threads: default_threads(),
        }
    }
}

/// Validated per-source backup settings (the connection is resolved by the caller).
#[derive(Debug, Clone)]
pub struct SourceBackupSettings {
    /// Default method.
    pub method: Method,
    /// Logical tool (`None`: mydumper if installed, else mysqldump).
    pub logical_tool: Option<LogicalTool>,
    /// Database filter.
    pub databases: DbFilter,
    /// Full-base schedule.
    pub full_schedule: Option<Schedule>,
    /// Incremental schedule.
    pub incremental_schedule: Option<Schedule>,
    /// Replica-only.
    pub replica_only: bool,
    /// Retention days.
    pub keep_days: u32,
    /// Retention minimum.
    pub keep_min: u32,
    /// Tool threads.
    pub threads: u32,
}

impl SourceBackupConfig {
    /// Checks values; `key` is the dotted prefix (e.g. `source[0].backup`). Errors are
    /// `(key, message)`.
    pub fn validate(&self, key: &str) -> Result<SourceBackupSettings, (String, String)> {
        let databases =
            DbFilter::parse(&self.databases).map_err(|m| (format!("{key}.databases"), m))?;
        let sched = |k: &str, v: &Option<String>| {
            v.as_deref()
                .map(Schedule::parse)
                .transpose()
                .map_err(|m| (format!("{key}.{k}"), m))
        };
        let full_schedule = sched("full_schedule", &self.full_schedule)?;
        let incremental_schedule = sched("incremental_schedule", &self.incremental_schedule)?;
        if incremental_schedule.is_some() && self.method != Method::Physical {
            return Err((
                format!("{key}.incremental_schedule"),
                "incremental bases exist only for method = \"physical\"".into(),
            ));
        }
        if self.keep_min == 0 {
            return Err((
                format!("{key}.keep_min"),
                "must be at least 1: retention never deletes the newest base".into(),
            ));
        }
        if !(1..=64).contains(&self.threads) {
            return Err((format!("{key}.threads"), "must be between 1 and 64".into()));
        }
        Ok(SourceBackupSettings {
            method: self.method,
            logical_tool: self.logical_tool,
            databases,
            full_schedule,
            incremental_schedule,
            replica_only: self.replica_only,
            keep_days: self.keep_days,
            keep_min: self.keep_min,
            threads: self.threads,
        })
    }
}
