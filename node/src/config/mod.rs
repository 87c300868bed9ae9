//! The TOML configuration of `binlog-server serve --config FILE`.
//!
//! ```toml
//! data_dir = "/var/lib/binlog-server"   # binlogs at <data_dir>/<source name>/<primary's file name>
//! [http]
//! listen = "127.0.0.1:7480"      # loopback only unless tokens_file is set
//! tokens_file = "/etc/binlog-server/tokens"   # bearer tokens with roles (binlog-server token add)
//! tokens_env = "BINLOG_SERVER_TOKENS"         # or: the same lines from this variable (";" separates)
//! tls_cert = "/etc/binlog-server/api.pem"     # with tls_key: HTTPS only
//! tls_key = "/etc/binlog-server/api.key"
//! hostnames = ["binlog.example.com"]          # Host names besides IPs and localhost
//! metrics_open = false           # /metrics without a token
//! max_connections = 256
//! header_timeout = "10s"
//! [catalog]
//! url = "sqlite:///var/lib/binlog-server/catalog.db"   # optional; default: <data_dir>/catalog.db
//! # url = "postgres://binlog@pg.example:5432/binlog?sslmode=verify-full"   # a fleet's catalog
//! # password_env = "BINLOG_CATALOG_PASSWORD"   # its password (never in url)
//! [node]                         # optional: one node of a fleet (with a postgres catalog)
//! id = "node-a"                  # unique in the fleet, stable across restarts
//! advertise = "https://10.0.0.7:7480"   # this node's API as the other nodes reach it
//! lease_ttl = "10s"              # a source's lease lasts this long unrenewed (renewed every third)
//! credential_env = "BINLOG_NODE_CREDENTIAL"  # the fleet's node credential (the same secret on
//!                                # every node, at least 32 characters): a manual base, retention,
//!                                # scrub, check, restart or verification asked of a node that does
//!                                # not hold the source's lease is forwarded to the owner with it
//! peer_ca = "/etc/binlog-server/fleet-ca.pem"  # trusted for the other nodes' https advertise URLs
//! [capture]                      # optional; defaults shown
//! fsync_interval = "500ms"       # while a backlog streams in: longest time bytes stay unsynced
//! heartbeat_period = "2s"        # asked of the primary; no packet for 3x this + 5 s = reconnect
//! poll_interval = "5s"           # SHOW BINARY LOGS / SHOW MASTER STATUS for lag and checks
//! reconnect_min_backoff = "200ms"
//! reconnect_max_backoff = "30s"
//! recheck_interval = "24h"       # SUCC files are re-verified this often ("0s" = never)
//! allow_no_checksum = false      # accept binlog_checksum=NONE primaries (nothing to verify)
//! [[source]]
//! name = "db1"
//! url = "mysql://repl:secret@127.0.0.1:3306"   # ?ssl-mode=REQUIRED|VERIFY_CA|VERIFY_IDENTITY&ssl-ca=/path
//! # urls = ["mysql://repl@db1a:3306", "mysql://repl@db1b:3306"]   # instead of url: the servers
//! #                              # a failover may promote; capture follows the writable one by GTID
//! failover_timeout = "30s"       # with urls: the primary gone this long (or read-only) = look for another
//! password_env = "DB1_PASSWORD"  # optional: take the password from this environment variable
//! server_id = 4242
//! start = "earliest"             # | "current" | { file = "mysql-bin.000042", pos = 4 }
//! archive_only = false           # true = serve and restore what is stored, no capture (old: capture = false)
//! semi_sync = false              # true = a semi-sync replica: each ack sent only after the fdatasync
//! [source.backup]                # optional: base backups, see snapshotter::config
//! method = "physical"
//! full_schedule = "0 2 * * *"
//! [source.replication]           # optional: this source's fake primary for real replicas
//! listen = "127.0.0.1:3307"
//! user = "repl"
//! password_env = "DB1_REPL_PASSWORD"   # or password = "..." (never empty)
//! tls_cert = "/etc/binlog-server/repl.pem"   # with tls_key: replicas need MASTER_SSL=1
//! tls_key = "/etc/binlog-server/repl.key"
//! allow_plaintext = false        # a non-loopback listen needs TLS or this
//! max_sessions = 64              # beyond: ERROR 1040
//! [source.verify]                # optional: weekly restore verification (times UTC)
//! day = "mon"
//! start = "01:00"
//! stop_at = "08:00"              # chain verification stops here if not caught up
//! keep_instance = false          # keep the scratch instance after the run
//! chain_timeout = "1h"           # without stop_at
//! url = "mysql://checker@db1:3306"   # data checks' account; default [source.backup] url
//! [pitr]                         # optional; defaults shown
//! work_dir = "<data_dir>/pitr"   # scratch instances
//! parallel_threads = 4           # slave_parallel_threads of the replaying replica
//! parallel_mode = "optimistic"
//! buffer_pool = "256M"
//! mariadbd_args = []
//! allowed_destinations = []      # existing instances a PITR may restore into: "10.0.0.0/8:3306", "db9.example.com:*"
//! allowed_datadir_roots = []     # where their datadirs may be (physical bases): "/var/lib/restore"
//! destination_ssl_ca = "/etc/ssl/restore-ca.pem"   # optional: ssl-ca of those connections
//! [backup]                       # optional: object store, staging dir, see snapshotter::config
//! store = "file:///var/lib/binlog-server/backups"
//! compression = "zstd"           # | "none"; encryption_key_file as in [archive]
//! [backup.tools]                 # optional: explicit tool paths
//! xtrabackup = "/opt/xtrabackup-8.0/bin/xtrabackup"
//! [archive]                      # optional: every binlog in object storage; defaults shown
//! enabled = true
//! store = "s3://bucket/prefix"   # default: the [backup] store (and its s3_* keys)
//! s3_endpoint = "http://127.0.0.1:9000"   # s3_region, s3_allow_http, retries as in [backup]
//! ship_interval = "1s"           # the ACTIVE file's new durable bytes go out at most this late
//! ship_bytes = 16777216          # ... or once this many are waiting, whichever first
//! compression = "zstd"           # | "none"
//! encryption_key_file = "/etc/binlog-server/archive.key"   # optional, see objstore::keyring
//! local_retention = "7d"         # optional: confirmed SUCC files older than this leave the local disk
//! local_bytes = 107374182400     # optional: ... and the oldest while a source's files hold more
//! min_free_bytes = 1073741824    # below this much free space: the cache, then confirmed files go
//! cache_dir = "<data_dir>/cache" # files read back from the store
//! cache_bytes = 8589934592
//! keep_days = 30                 # optional: archive retention (never what a restorable base needs)
//! scrub_interval = "7d"          # every object re-read and checked this often; "0s" = never
//! scrub_bytes_per_second = 16777216 # a scrub reads at most this fast (S3 egress); 0 = no limit
//! object_lock = "governance"     # optional, s3:// only: | "compliance"; the bucket needs Object
//!                                # Lock and a default rule of that mode, >= keep_days days
//! ```
//!
//! Every table refuses unknown keys; validation names the offending key. Passwords never
//! appear in `Debug` output, logs, the API or the catalog ([`SourceUrl::redacted`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

pub use mysql_wire::{SourceUrl, TlsMode};

mod destination;
pub use destination::DestinationRule;

/// The backup and restore tools' connection parameters ([`snapshotter::Endpoint`]) from
/// a source URL: TLS off for `disabled`/`preferred`, on without a CA for `required`, on
/// with the URL's `ssl-ca` for `verify_ca`/`verify_identity`.
pub fn tool_endpoint(u: &SourceUrl) -> snapshotter::Endpoint {
    snapshotter::Endpoint {
        host: u.host.clone(),
        port: u.port,
        user: u.user.clone(),
        password: u.password.clone(),
        tls: match u.tls {
            TlsMode::Disabled | TlsMode::Preferred => None,
            TlsMode::Required => Some(None),
            TlsMode::VerifyCa | TlsMode::VerifyIdentity => Some(u.ssl_ca.clone()),
        },
    }
}

pub mod schedule;
pub mod validate;

/// A configuration problem, with the key it concerns.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read config {path}: {source}")]
    Read {
        /// Config file path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type (the message names the key and line).
    #[error("config {path}: {message}")]
    Parse {
        /// Config file path.
        path: PathBuf,
        /// toml's message (includes the key and the line).
        message: String,
    },
    /// A value is present but unusable.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key, e.g. `source[1].name`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The value of environment variable `var` (a `password_env` key), or an error naming
/// `key` and the variable.
pub(crate) fn env_password(key: String, var: &str) -> Result<String, ConfigError> {
    std::env::var(var).map_err(|_| invalid(key, format!("environment variable {var} is not set")))
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Root of the archive: `<data_dir>/<source>/<binlog file>`.
    pub data_dir: PathBuf,
    /// HTTP API.
    #[serde(default)]
    pub http: HttpConfig,
    /// Metadata catalog.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// This node of a fleet; absent = a single node that owns every source.
    pub node: Option<NodeConfig>,
    /// Capture tuning shared by all sources.
    #[serde(default)]
    pub capture: CaptureConfig,
    /// Base backups: object store, staging directory, tool paths.
    #[serde(default)]
    pub backup: snapshotter::BackupConfig,
    /// The binlog archive in object storage.
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// The primaries to archive; at least one.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Point-in-time recovery: scratch instances and the replica that replays.
    #[serde(default)]
    pub pitr: PitrConfig,
}

/// `[archive]`: every binlog shipped to an object store (the `archive::ship` module).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Ship binlogs (default true).
    pub enabled: bool,
    /// `file:///abs/dir` or `s3://bucket/prefix`; default: the `[backup]` store, with its
    /// `s3_*` and `retries` keys.
    pub store: Option<String>,
    /// S3 endpoint of `store`.
    pub s3_endpoint: Option<String>,
    /// S3 region of `store` (default us-east-1).
    pub s3_region: Option<String>,
    /// Allow plain http to the endpoint.
    pub s3_allow_http: Option<bool>,
    /// Retries per S3 request.
    pub retries: Option<usize>,
    /// The ACTIVE file's new durable bytes are shipped at most this long after they
    /// became durable (100ms ..= 1h). Default 1s.
    #[serde(with = "humantime_serde")]
    pub ship_interval: Duration,
    /// ... or as soon as this many bytes wait, whichever first (64 KiB ..= 1 GiB; also
    /// the largest chunk object). Default 16 MiB.
    pub ship_bytes: u64,
    /// `"zstd"` (default) or `"none"`.
    pub compression: String,
    /// Key file that encrypts new objects and opens old ones (objstore::keyring);
    /// none: objects are not encrypted.
    pub encryption_key_file: Option<PathBuf>,
    /// SUCC files confirmed in the store whose last event is older than this are removed
    /// from the local disk (the two newest files never are); they are read back from the
    /// store when needed. None (default): every file stays local.
    #[serde(with = "humantime_serde")]
    pub local_retention: Option<Duration>,
    /// A byte budget for each source's local files: while they hold more, the oldest SUCC
    /// files confirmed in the store leave the local disk (the two newest never do),
    /// whatever their age. None (default): no budget.
    pub local_bytes: Option<u64>,
    /// Free space the file system of `data_dir` keeps: below it, the cache is emptied
    /// first, then SUCC files confirmed in the store leave the local disk oldest first
    /// (whatever `local_retention` says); when nothing is left to free, capture stops
    /// with the disk's error once the disk is full. Default 1 GiB; 0: off.
    pub min_free_bytes: u64,
    /// Where files read back from the store are kept. Default `<data_dir>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the cache directory holds (least recently used files go first; the
    /// file being fetched may exceed it). Default 8 GiB.
    pub cache_bytes: u64,
    /// Archive retention, applied after base retention: binlogs older than this many days
    /// **and** entirely before the oldest restorable base's position are deleted from the
    /// store, the local disk and the catalog. None (default): binlogs are kept forever.
    pub keep_days: Option<u32>,
    /// Every whole-file object of the store is read back and checked (SHA-256 of the
    /// stored bytes, its manifest) this often; a damaged one is replaced from the local
    /// copy or pulled again from the primary. `0s`: only on request (`POST
    /// /v1/sources/{name}/archive/scrub`). Default 7 days.
    #[serde(with = "humantime_serde")]
    pub scrub_interval: Duration,
    /// A scrub reads the store at most this many bytes a second, averaged over the
    /// scrub (each read is egress an S3 bill counts, and bandwidth capture shares).
    /// 0: no limit. Default 16 MiB/s (a 100 GiB archive in under 2 hours).
    pub scrub_bytes_per_second: u64,
    /// `"governance"` or `"compliance"`: an immutable archive (S3 Object Lock,
    /// objstore::lock). The `s3://` store's bucket must have Object Lock enabled and a
    /// default retention rule of this mode and at least `keep_days` days, checked at
    /// start; objects still kept near the end of their lock get a later date. None
    /// (default): objects are not locked.
    pub object_lock: Option<String>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: true,
            store: None,
            s3_endpoint: None,
            s3_region: None,
            s3_allow_http: None,
            retries: None,
            ship_interval: Duration::from_secs(1),
            ship_bytes: 16 * 1024 * 1024,
            compression: "zstd".into(),
            encryption_key_file: None,
            local_retention: None,
            local_bytes: None,
            min_free_bytes: 1 << 30,
            cache_dir: None,
            cache_bytes: 8 << 30,
            keep_days: None,
            scrub_interval: Duration::from_secs(7 * 86_400),
            scrub_bytes_per_second: 16 << 20,
            object_lock: None,
        }
    }
}

/// Validated `[archive]`.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    /// Shipping on.
    pub enabled: bool,
    /// The archive store.
    pub store: objstore::store::StoreOptions,
    /// See [`ArchiveConfig::ship_interval`].
    pub ship_interval: Duration,
    /// See [`ArchiveConfig::ship_bytes`], bytes.
    pub ship_bytes: u64,
    /// Compression of new objects.
    pub compression: objstore::codec::Compression,
    /// Keys (empty without a key file).
    pub keyring: std::sync::Arc<objstore::keyring::Keyring>,
    /// See [`ArchiveConfig::local_retention`].
    pub local_retention: Option<Duration>,
    /// See [`ArchiveConfig::local_bytes`], bytes.
    pub local_bytes: Option<u64>,
    /// See [`ArchiveConfig::min_free_bytes`], bytes (0: off).
    pub min_free_bytes: u64,
    /// Cache of files read back from the store (created).
    pub cache_dir: PathBuf,
    /// Its size bound, bytes.
    pub cache_bytes: u64,
    /// See [`ArchiveConfig::keep_days`].
    pub keep_days: Option<u32>,
    /// See [`ArchiveConfig::scrub_interval`]; zero: only on request.
    pub scrub_interval: Duration,
    /// See [`ArchiveConfig::scrub_bytes_per_second`]; 0: no limit.
    pub scrub_bytes_per_second: u64,
    /// See [`ArchiveConfig::object_lock`].
    pub object_lock: Option<objstore::lock::LockMode>,
}

/// `[pitr]`: how restored instances are run while they replay the archive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PitrConfig {
    /// Where scratch instances live: `<work_dir>/<job id>/{data,mysqld.sock,error.log}`.
    /// Default `<data_dir>/pitr`.
    pub work_dir: Option<PathBuf>,
    /// `slave_parallel_threads` of the replaying replica (0 = one SQL thread). Default 4.
    pub parallel_threads: u32,
    /// `slave_parallel_mode`: "optimistic" (default), "conservative", "aggressive",
    /// "minimal" or "none".
    pub parallel_mode: String,
    /// `innodb_buffer_pool_size` of scratch instances, e.g. "512M". Default "256M".
    pub buffer_pool: String,
    /// Further `mariadbd` arguments for scratch instances, appended last.
    pub mariadbd_args: Vec<String>,
    /// First server_id given to replaying instances (job n gets this + n); must differ
    /// from every server_id in the sources' binlogs. Default 3_000_000_000.
    pub server_id_base: u32,
    /// Existing instances a PITR may restore into, `HOST:PORT` rules (IP, network such
    /// as `10.0.0.0/8`, or host name; port or `*`): see [`DestinationRule`].
    /// Default empty: scratch instances only.
    pub allowed_destinations: Vec<String>,
    /// Directories below which a PITR's `datadir` may be (physical bases). Default
    /// empty: no datadir is accepted.
    pub allowed_datadir_roots: Vec<PathBuf>,
    /// CA file the connections to existing destinations verify against (`ssl-ca` of
    /// their URLs, which requests may not name).
    pub destination_ssl_ca: Option<PathBuf>,
}

impl Default for PitrConfig {
    fn default() -> Self {
        PitrConfig {
            work_dir: None,
            parallel_threads: 4,
            parallel_mode: "optimistic".into(),
            buffer_pool: "256M".into(),
            mariadbd_args: Vec::new(),
            server_id_base: 3_000_000_000,
            allowed_destinations: Vec::new(),
            allowed_datadir_roots: Vec::new(),
            destination_ssl_ca: None,
        }
    }
}

/// `[source.replication]`: this source's fake primary listener (real replicas replicate
/// from the archive with CHANGE MASTER TO ... MASTER_PORT = the port).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// host:port to listen on, e.g. "127.0.0.1:3307", or a bare port ("3307") for
    /// 127.0.0.1. A non-loopback address needs TLS or `allow_plaintext = true`.
    pub listen: String,
    /// Replication user name replicas log in with.
    pub user: String,
    /// Its password (or `password_env`).
    pub password: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// PEM certificate chain: replicas must connect with TLS (MASTER_SSL=1).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve a non-loopback `listen` without TLS (binlogs cross the network in clear).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Most sessions served at once (logged in or logging in); beyond, ERROR 1040.
    /// Default 64.
    pub max_sessions: Option<usize>,
}

/// `[source.verify]`: the weekly restore verification of this source (issue 5; see
/// the `verifier` crate for the rules). Times are UTC.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Run on schedule (default true when the table is present).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Weekday: "mon" .. "sun" (or the full name). Default "mon".
    #[serde(default)]
    pub day: Option<String>,
    /// Start time, "HH:MM" UTC. Default "01:00".
    #[serde(default)]
    pub start: Option<String>,
    /// Chain verification stops at this time of day (UTC) if not caught up by then.
    #[serde(default)]
    pub stop_at: Option<String>,
    /// Keep the scratch instance after the run (default false: removed).
    #[serde(default)]
    pub keep_instance: bool,
    /// Longest chain verification without `stop_at` (humantime). Default "1h".
    #[serde(default, with = "humantime_serde")]
    pub chain_timeout: Option<Duration>,
    /// Account for the data checks on the primary (SELECT on the checked tables);
    /// default `[source.backup] url`, else the source's `url`.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable with that account's password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// A validated `[source.verify]` (defaults when absent: no schedule, manual runs only).
#[derive(Clone, Debug)]
pub struct Verify {
    /// The weekly schedule; `None` without `[source.verify]`.
    pub schedule: Option<schedule::Schedule>,
    /// Keep scratch instances.
    pub keep_instance: bool,
    /// Longest chain verification without a `stop_at`.
    pub chain_timeout: Duration,
    /// The data-check account on the primary (`[source.verify] url`, else the base
    /// backups' account; use [`Source::check_url_now`], which follows a failover).
    pub check_url: SourceUrl,
    /// `[source.verify] url` was given.
    pub check_url_explicit: bool,
}

/// A validated `[source.replication]`.
#[derive(Clone)]
pub struct Replication {
    /// Listen address.
    pub listen: SocketAddr,
    /// The account.
    pub creds: Credentials,
    /// TLS, required of every replica when set.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Most sessions at once.
    pub max_sessions: usize,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} as {:?}", self.listen, self.creds)
    }
}

/// `[http]`: the API listener, its tokens and TLS, and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address of the HTTP API, default 127.0.0.1:7480. Without `tokens_file` it
    /// must be a loopback address.
    pub listen: String,
    /// Bearer tokens and their roles (see [`crate::tokens`] for the format; made by
    /// `binlog-server token add`). Without it the API is unauthenticated, loopback only.
    pub tokens_file: Option<PathBuf>,
    /// Or: the name of an environment variable holding the tokens file's text (lines
    /// separated by newlines or `;`), read once at start.
    pub tokens_env: Option<String>,
    /// `/metrics` without a token (default false: it takes the `read` role).
    pub metrics_open: bool,
    /// Host names clients use to reach the API (the `Host` header), besides IP
    /// literals and `localhost`; any other name is refused (DNS rebinding).
    pub hostnames: Vec<String>,
    /// PEM certificate chain: the API serves HTTPS only (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Most connections served at once; more are closed at once. Default 256.
    pub max_connections: usize,
    /// Longest time a client may take to send a request's headers (and the TLS
    /// handshake), default "10s".
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:7480".into(),
            tokens_file: None,
            tokens_env: None,
            metrics_open: false,
            hostnames: Vec::new(),
            tls_cert: None,
            tls_key: None,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// A validated `[http]`.
#[derive(Clone)]
pub struct HttpSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// The tokens file (re-read by the API when it changes).
    pub tokens_file: Option<PathBuf>,
    /// The tokens read at validation, from `tokens_file` or `tokens_env`; `None`: the
    /// API is unauthenticated (loopback only).
    pub tokens: Option<crate::tokens::Tokens>,
    /// See [`HttpConfig::metrics_open`].
    pub metrics_open: bool,
    /// See [`HttpConfig::hostnames`] (lower case).
    pub hostnames: Vec<String>,
    /// rustls configuration when `tls_cert`/`tls_key` are set.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// `tls_cert` (the CLI trusts it when it calls the service).
    pub tls_cert: Option<PathBuf>,
    /// See [`HttpConfig::max_connections`].
    pub max_connections: usize,
    /// See [`HttpConfig::header_timeout`].
    pub header_timeout: Duration,
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("listen", &self.listen)
            .field("tokens_file", &self.tokens_file)
            .field("tokens", &self.tokens)
            .field("metrics_open", &self.metrics_open)
            .field("hostnames", &self.hostnames)
            .field("tls", &self.tls.is_some())
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .finish()
    }
}

/// `[catalog]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// `sqlite:///abs/path.db` (one node; default `sqlite://<data_dir>/catalog.db`) or
    /// `postgres://user@host:5432/dbname` (a fleet's shared catalog).
    pub url: Option<String>,
    /// Environment variable holding the PostgreSQL password (never written in `url`).
    pub password_env: Option<String>,
}

/// `[node]`: this process as one node of a fleet sharing the catalog and the bucket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's id, unique in the fleet and stable across restarts: 1-64 characters
    /// from `A-Z a-z 0-9 _ - .`.
    pub id: String,
    /// The node's API URL as the other nodes reach it, `http(s)://host:port`.
    pub advertise: String,
    /// How long a lease lasts unrenewed (renewed every third of it); default 10 s, at
    /// least 3 s.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Environment variable holding the fleet's node credential: the secret a node
    /// sends when it forwards a call to another node, and checks on a forwarded call.
    /// Without it, such calls are refused (409, naming the owner).
    pub credential_env: Option<String>,
    /// PEM file of the certificates trusted for the other nodes' `https` advertise URLs
    /// (besides the public roots).
    pub peer_ca: Option<PathBuf>,
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

/// The validated `[node]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// The node's id.
    pub id: String,
    /// Its API URL for the other nodes.
    pub advertise: String,
    /// Lease time to live.
    pub lease_ttl: Duration,
    /// The fleet's node credential (`credential_env`), if set.
    pub credential: Option<NodeCredential>,
    /// `peer_ca`.
    pub peer_ca: Option<PathBuf>,
}

/// The fleet's node credential: a secret shared by the nodes, never shown by `Debug`
/// and compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCredential(String);

impl NodeCredential {
    /// A credential of `secret`.
    pub fn new(secret: String) -> NodeCredential {
        NodeCredential(secret)
    }

    /// The secret, to send.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `got` is the secret (constant time in its length, `subtle`, as the API
    /// tokens are compared).
    pub fn matches(&self, got: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.as_bytes().ct_eq(got.as_bytes()))
    }
}

impl std::fmt::Debug for NodeCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCredential(..)")
    }
}

/// The validated `[catalog]`: where the catalog is and the password to open it with.
/// `Debug` never shows the password.
#[derive(Clone)]
pub struct CatalogSettings {
    /// The catalog URL, without a password.
    pub url: String,
    /// The PostgreSQL password from `password_env`, if set.
    pub password: Option<String>,
}

impl CatalogSettings {
    /// Opens the catalog ([`catalog::Catalog::open_with_password`]).
    ///
    /// # Errors
    ///
    /// Those of [`catalog::Catalog::open_with_password`].
    pub async fn open(&self) -> Result<catalog::Catalog, catalog::CatalogError> {
        catalog::Catalog::open_with_password(&self.url, self.password.as_deref()).await
    }
}

impl Settings {
    /// Opens the catalog as this node: [`CatalogSettings::open`], then
    /// [`catalog::Catalog::with_node`] with `[node] id` (a single node is `""`), so the
    /// jobs it starts and sweeps are this node's.
    ///
    /// # Errors
    ///
    /// Those of [`catalog::Catalog::open_with_password`].
    pub async fn open_catalog(&self) -> Result<catalog::Catalog, catalog::CatalogError> {
        let catalog = self.catalog.open().await?;
        Ok(match &self.node {
            Some(n) => catalog.with_node(&n.id),
            None => catalog,
        })
    }
}

impl fmt::Debug for CatalogSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogSettings")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `[capture]`: durations are humantime strings ("50ms", "2s", "24h").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Longest time received bytes of the active file stay unsynced while a backlog
    /// streams in (catch-up: full 256 KiB batches, or events written on the primary more
    /// than 2 s ago). At the primary's tail (smaller batches of fresh events) each sync
    /// starts as soon as the one before it ends (group commit: one fdatasync covers what
    /// arrived meanwhile), and when the stream pauses for 2 ms the file is synced at
    /// once, so live data is durable within a few ms
    /// (docs/benchmarks.md, "Semi-sync and commit-to-durable latency"). Bytes not yet
    /// durable here are still on the primary and are fetched again after a crash.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// Heartbeat period asked of the primary (`@master_heartbeat_period`).
    #[serde(with = "humantime_serde")]
    pub heartbeat_period: Duration,
    /// How often the primary's binlog list and position are read (lag, size checks).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// First reconnect delay after a transient error; doubles up to the maximum.
    #[serde(with = "humantime_serde")]
    pub reconnect_min_backoff: Duration,
    /// Cap of the reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_max_backoff: Duration,
    /// How often SUCC files on this disk are checked again (CRC walk + SHA-256 against
    /// the recorded one); 0 disables. The local recheck; the archive store's read-back
    /// is `[archive] scrub_interval`. `scrub_interval` is accepted as its old name.
    #[serde(with = "humantime_serde", alias = "scrub_interval")]
    pub recheck_interval: Duration,
    /// Connect and query timeout towards primaries.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Accept primaries with `binlog_checksum=NONE` (their events cannot be verified).
    pub allow_no_checksum: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            fsync_interval: Duration::from_millis(500),
            heartbeat_period: Duration::from_secs(2),
            poll_interval: Duration::from_secs(5),
            reconnect_min_backoff: Duration::from_millis(200),
            reconnect_max_backoff: Duration::from_secs(30),
            recheck_interval: Duration::from_secs(24 * 3600),
            connect_timeout: Duration::from_secs(10),
            allow_no_checksum: false,
        }
    }
}

/// Where capture begins when the source's archive directory is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest binlog the primary still lists (SHOW BINARY LOGS), from position 4.
    Earliest,
    /// The primary's current binlog (SHOW MASTER STATUS), from position 4: files are
    /// always archived whole so they stay byte-identical.
    Current,
    /// A named file from position 4.
    File(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum StartRaw {
    Named(String),
    At(StartAtRaw),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartAtRaw {
    pub(crate) file: String,
    #[serde(default = "four")]
    pub(crate) pos: u64,
}

fn four() -> u64 {
    4
}

/// One `[[source]]` as written in the file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name; used as a directory name and in the API.
    pub name: String,
    /// `mysql://user:password@host:port` (`mariadb://` too), with optional
    /// `?ssl-mode=...&ssl-ca=...`. Exactly one of `url` and `urls`.
    #[serde(default)]
    pub url: Option<String>,
    /// The servers of a primary/replica group, in the order they are tried: capture
    /// follows whichever is the writable primary (failover follow). Exactly one of `url`
    /// and `urls`.
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    /// With `urls`: how long the current primary may be unreachable before another
    /// server is looked for (humantime, default "30s"). A primary that answers
    /// read-only is left at once.
    #[serde(default, with = "humantime_serde")]
    pub failover_timeout: Option<std::time::Duration>,
    /// Environment variable holding the password (overrides the URL's password).
    pub password_env: Option<String>,
    /// server_id this fake replica registers with; must differ from every real server's.
    pub server_id: u32,
    #[serde(default)]
    pub(crate) start: Option<StartRaw>,
    /// Base backups of this source (`[source.backup]`); defaults when absent.
    #[serde(default)]
    pub backup: Option<snapshotter::SourceBackupConfig>,
    /// true = archive only: nothing connects to the primary; what is stored is served,
    /// checked and restored (a decommissioned primary). Default false.
    #[serde(default)]
    pub archive_only: Option<bool>,
    /// The old name of `archive_only`, inverted (`capture = false` = `archive_only =
    /// true`); still accepted. "capture" is the `[capture]` table's word.
    #[serde(default)]
    pub capture: Option<bool>,
    /// true = capture as a semi-sync replica: the primary's commits wait for this
    /// archive's ack, sent only once their events are fdatasynced (RPO 0). Default false.
    #[serde(default)]
    pub semi_sync: bool,
    /// This source's fake primary listener (`[source.replication]`), optional.
    #[serde(default)]
    pub replication: Option<ReplicationConfig>,
    /// Weekly restore verification (`[source.verify]`), optional.
    #[serde(default)]
    pub verify: Option<VerifyConfig>,
}

fn yes() -> bool {
    true
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("url", &self.url.as_deref().map(redact_url_text))
            .field(
                "urls",
                &self
                    .urls
                    .as_ref()
                    .map(|v| v.iter().map(|u| redact_url_text(u)).collect::<Vec<_>>()),
            )
            .field("password_env", &self.password_env)
            .field("server_id", &self.server_id)
            .finish()
    }
}

fn redact_url_text(text: &str) -> String {
    match SourceUrl::parse(text) {
        Ok(u) => u.redacted(),
        Err(_) => "<unparseable URL>".into(),
    }
}

/// The one account a listener accepts.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password (never logged).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:***", self.user)
    }
}

/// A validated source, ready to run.
#[derive(Debug, Clone)]
pub struct Source {
    /// Unique name.
    pub name: String,
    /// Connection parameters (password resolved from `password_env` when set): the first
    /// of `servers`.
    pub url: SourceUrl,
    /// Every server capture may follow (`urls`; one entry for `url`), in config order,
    /// passwords resolved.
    pub servers: Vec<SourceUrl>,
    /// With more than one server: how long the primary may be unreachable before
    /// capture looks for the writable one among `servers` (default 30 s).
    pub failover_timeout: std::time::Duration,
    /// server_id of the fake replica.
    pub server_id: u32,
    /// Where capture begins when nothing is archived yet.
    pub start: StartAt,
    /// Base-backup settings (defaults when the file has no `[source.backup]`).
    pub backup: snapshotter::SourceBackupSettings,
    /// The account the backup tools connect with (`[source.backup] url`, else `url`).
    pub backup_url: SourceUrl,
    /// `[source.backup] url` was given (else bases follow the current server,
    /// [`Source::backup_url_now`]).
    pub backup_url_explicit: bool,
    /// Index in `servers` of the server capture follows now (failover follow), shared by
    /// every clone of this source (capture writes it, base backups read it).
    pub current_server: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// An archive-only source (`archive_only = true`): no capture task, nothing
    /// connects to the primary.
    pub archive_only: bool,
    /// Capture as a semi-sync replica (`semi_sync = true`).
    pub semi_sync: bool,
    /// Fake primary listener of this source.
    pub replication: Option<Replication>,
    /// Restore verification.
    pub verify: Verify,
}

impl Source {
    /// The account base backups connect with now: `[source.backup] url` when given, else
    /// the server capture follows now (after a failover, the new primary) with the
    /// backup account (the source's user, `[source.backup] password_env`'s password
    /// when set).
    pub fn backup_url_now(&self) -> SourceUrl {
        if self.backup_url_explicit {
            return self.backup_url.clone();
        }
        self.at_current_server(&self.backup_url)
    }

    /// `account` (user, password, TLS) at the address of the server capture follows now.
    fn at_current_server(&self, account: &SourceUrl) -> SourceUrl {
        let now = self.url_now();
        SourceUrl {
            host: now.host,
            port: now.port,
            ..account.clone()
        }
    }

    /// The server capture follows now (`servers[current_server]`: `url` until a
    /// failover), with the source's replication credentials.
    pub fn url_now(&self) -> SourceUrl {
        let i = self
            .current_server
            .load(std::sync::atomic::Ordering::Relaxed);
        self.servers
            .get(i)
            .cloned()
            .unwrap_or_else(|| self.url.clone())
    }

    /// The account restore verification's live phases connect with now: `[source.verify]
    /// url` or `[source.backup] url` when given, else the data-check account (the
    /// source's user, the backup or `[source.verify] password_env` password) at the
    /// server capture follows now ([`Source::url_now`]).
    pub fn check_url_now(&self) -> SourceUrl {
        if self.verify.check_url_explicit || self.backup_url_explicit {
            return self.verify.check_url.clone();
        }
        self.at_current_server(&self.verify.check_url)
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Archive root (exists and is writable).
    pub data_dir: PathBuf,
    /// HTTP listen address (= `http.listen`).
    pub http_listen: SocketAddr,
    /// `[http]`.
    pub http: HttpSettings,
    /// `[catalog]`: URL and password.
    pub catalog: CatalogSettings,
    /// `[node]`, when this process is a node of a fleet.
    pub node: Option<NodeSettings>,
    /// Capture tuning.
    pub capture: CaptureConfig,
    /// Object store and staging directory of base backups.
    pub store: snapshotter::StoreSettings,
    /// The binlog archive in object storage.
    pub archive: ArchiveSettings,
    /// Backup tool paths (`[backup.tools]`).
    pub tools: snapshotter::Tools,
    /// Sources in file order.
    pub sources: Vec<Source>,
    /// PITR settings (`work_dir` resolved).
    pub pitr: PitrConfig,
}

impl Config {
    /// Reads and parses a config file (syntax and unknown keys only; see
    /// [`Config::validate`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text.
    // The text is the product: a parser's message to the person who wrote the input
    // (config file, CLI flag or API field), shown as it is; no caller acts on it.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &Path) -> String {
        format!(
            "data_dir = {:?}\n[[source]]\nname = \"db1\"\nurl = \"mysql://repl:s3cret@127.0.0.1:3306\"\nserver_id = 4242\n",
            dir.display().to_string()
        )
    }

    #[test]
    fn archive_only_has_its_old_name_capture_and_refuses_both_contradicting() {
        let d = tempfile::tempdir().unwrap();
        let with = |extra: &str| format!("{}{extra}", base(d.path()));
        let only = |text: String| Config::parse(&text).unwrap().validate();
        assert!(!only(with("")).unwrap().sources[0].archive_only);
        assert!(only(with("archive_only = true\n")).unwrap().sources[0].archive_only);
        assert!(only(with("capture = false\n")).unwrap().sources[0].archive_only);
        assert!(
            !only(with("capture = true\narchive_only = false\n"))
                .unwrap()
                .sources[0]
                .archive_only
        );
        let e = only(with("capture = true\narchive_only = true\n")).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key, .. } if key.ends_with("archive_only")),
            "{e}"
        );
        let old = format!("{}[capture]\nscrub_interval = \"1h\"\n", base(d.path()));
        let s = Config::parse(&old).unwrap().validate().unwrap();
        assert_eq!(s.capture.recheck_interval, Duration::from_secs(3600));
    }

    #[test]
    fn object_lock_needs_an_s3_store_and_a_mode_and_turns_upload_checksums_on() {
        let d = tempfile::tempdir().unwrap();
        let with = |extra: &str| {
            Config::parse(&format!("{}{extra}", base(d.path())))
                .unwrap()
                .validate()
        };
        let s3 = "[backup]\nstore = \"s3://bk/pre\"\n[archive]\n";
        let s = with(&format!("{s3}object_lock = \"compliance\"\n")).unwrap();
        assert_eq!(
            s.archive.object_lock,
            Some(objstore::lock::LockMode::Compliance)
        );
        assert!(
            s.archive.store.checksums,
            "uploads to a locked bucket carry a checksum"
        );
        assert!(
            s.store.options.checksums,
            "bases in the same bucket too: {:?}",
            s.store.options
        );
        let plain = with(s3).unwrap();
        assert!(plain.archive.object_lock.is_none() && !plain.archive.store.checksums);
        for (bad, says) in [
            (format!("{s3}object_lock = \"forever\"\n"), "governance"),
            (
                "[archive]\nobject_lock = \"governance\"\n".to_string(),
                "s3://",
            ),
            (
                format!("{s3}object_lock = \"governance\"\nenabled = false\n"),
                "enabled",
            ),
        ] {
            match with(&bad).unwrap_err() {
                ConfigError::Invalid { key, message } => {
                    assert_eq!(key, "archive.object_lock", "{bad}");
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn the_catalog_is_sqlite_or_postgres_with_its_password_from_the_environment() {
        let d = tempfile::tempdir().unwrap();
        let with = |catalog: &str| {
            Config::parse(&format!("{}[catalog]\n{catalog}", base(d.path())))
                .unwrap()
                .validate()
        };
        let key_of = |e: ConfigError| match e {
            ConfigError::Invalid { key, message } => (key, message),
            other => panic!("{other}"),
        };
        let s = with("").unwrap();
        assert!(s.catalog.url.ends_with("/catalog.db") && s.catalog.password.is_none());

        let pg = with("url = \"postgres://binlog@127.0.0.1:5432/binlog\"\n").unwrap();
        assert_eq!(pg.catalog.url, "postgres://binlog@127.0.0.1:5432/binlog");
        assert_eq!(pg.catalog.password, None);

        std::env::set_var("BINLOG_SERVER_TEST_CATALOG_PW", "pg-s3cret");
        let pg = with(
            "url = \"postgresql://binlog@db:5432/b\"\npassword_env = \"BINLOG_SERVER_TEST_CATALOG_PW\"\n",
        )
        .unwrap();
        assert_eq!(pg.catalog.password.as_deref(), Some("pg-s3cret"));
        assert!(!format!("{:?}", pg.catalog).contains("pg-s3cret"));

        let (key, msg) = key_of(with("url = \"postgres://binlog:pw@db:5432/b\"\n").unwrap_err());
        assert_eq!(key, "catalog.url");
        assert!(
            msg.contains("password_env") && !msg.contains("pw@"),
            "{msg}"
        );
        for leaky in [
            "url = \"postgres://binlog@db:5432/b?sslmode=require&Password=pw\"\n",
            "url = \"postgres:binlog:pw@db/b\"\n",
        ] {
            let (key, msg) = key_of(with(leaky).unwrap_err());
            assert_eq!(key, "catalog.url", "{leaky}");
            assert!(!msg.contains("pw"), "{msg}");
        }
        let (key, msg) = key_of(with("password_env = \"X\"\n").unwrap_err());
        assert!(
            key == "catalog.password_env" && msg.contains("SQLite"),
            "{msg}"
        );
        let (key, msg) = key_of(
            with("url = \"postgres://b@db/b\"\npassword_env = \"BINLOG_SERVER_NO_SUCH_VAR\"\n")
                .unwrap_err(),
        );
        assert!(
            key == "catalog.password_env" && msg.contains("not set"),
            "{msg}"
        );
        let (key, _) = key_of(with("url = \"mysql://root@db/c\"\n").unwrap_err());
        assert_eq!(key, "catalog.url");
    }

    #[test]
    fn a_node_has_an_id_an_advertised_url_and_a_lease_ttl() {
        let d = tempfile::tempdir().unwrap();
        let with = |node: &str| {
            Config::parse(&format!("{}[node]\n{node}", base(d.path())))
                .unwrap()
                .validate()
        };
        assert_eq!(
            Config::parse(&base(d.path()))
                .unwrap()
                .validate()
                .unwrap()
                .node,
            None
        );
        let n = with("id = \"node-a\"\nadvertise = \"https://10.0.0.7:7480/\"\n")
            .unwrap()
            .node
            .unwrap();
        assert_eq!(
            n,
            NodeSettings {
                id: "node-a".into(),
                advertise: "https://10.0.0.7:7480".into(),
                lease_ttl: Duration::from_secs(10),
                credential: None,
                peer_ca: None,
            }
        );
        // The node credential: from the environment, long, and only with https.
        std::env::set_var("BLS_TEST_NODE_CRED_LONG", "k".repeat(40));
        std::env::set_var("BLS_TEST_NODE_CRED_SHORT", "short");
        let n = with(
            "id = \"a\"\nadvertise = \"https://h:1\"\ncredential_env = \"BLS_TEST_NODE_CRED_LONG\"\n",
        )
        .unwrap()
        .node
        .unwrap();
        let cred = n.credential.expect("a credential");
        assert!(cred.matches(&"k".repeat(40)) && !cred.matches("k"));
        assert_eq!(format!("{cred:?}"), "NodeCredential(..)", "never shown");
        for (text, key) in [
            (
                "id = \"a\"\nadvertise = \"https://h:1\"\ncredential_env = \"BLS_TEST_NODE_CRED_SHORT\"\n",
                "node.credential_env",
            ),
            (
                "id = \"a\"\nadvertise = \"https://h:1\"\ncredential_env = \"BLS_TEST_NODE_CRED_UNSET\"\n",
                "node.credential_env",
            ),
            (
                "id = \"a\"\nadvertise = \"http://h:1\"\ncredential_env = \"BLS_TEST_NODE_CRED_LONG\"\n",
                "node.advertise",
            ),
            (
                "id = \"a\"\nadvertise = \"https://h:1\"\npeer_ca = \"/nonexistent/ca.pem\"\n",
                "node.peer_ca",
            ),
        ] {
            match with(text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let n = with("id = \"b\"\nadvertise = \"http://[::1]:7481\"\nlease_ttl = \"4s\"\n")
            .unwrap()
            .node
            .unwrap();
        assert_eq!(n.lease_ttl, Duration::from_secs(4));
        for (text, key) in [
            ("id = \"\"\nadvertise = \"https://h:1\"\n", "node.id"),
            ("id = \"a/b\"\nadvertise = \"https://h:1\"\n", "node.id"),
            (
                "id = \"a\"\nadvertise = \"10.0.0.7:7480\"\n",
                "node.advertise",
            ),
            ("id = \"a\"\nadvertise = \"https://\"\n", "node.advertise"),
            (
                "id = \"a\"\nadvertise = \"https://h:1\"\nlease_ttl = \"1s\"\n",
                "node.lease_ttl",
            ),
            (
                "id = \"a\"\nadvertise = \"https://h:1\"\nlease_ttl = \"1h\"\n",
                "node.lease_ttl",
            ),
        ] {
            match with(text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(Config::parse(&format!("{}[node]\nid = \"a\"\n", base(d.path()))).is_err());
        let no_archive = Config::parse(&format!(
            "{}[archive]\nenabled = false\n[node]\nid = \"a\"\nadvertise = \"https://h:1\"\n",
            base(d.path())
        ))
        .unwrap()
        .validate();
        match no_archive {
            Err(ConfigError::Invalid { key, message }) => {
                assert!(
                    key == "node" && message.contains("[archive] enabled"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_api_off_loopback_needs_tokens_from_a_file_or_the_environment() {
        let d = tempfile::tempdir().unwrap();
        let open = format!("{}[http]\nlisten = \"0.0.0.0:7480\"\n", base(d.path()));
        let e = Config::parse(&open).unwrap().validate().unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key, .. } if key == "http.listen"),
            "{e}"
        );
        let line = crate::tokens::file_line(crate::tokens::Role::Read, "p", "bls_x");
        std::env::set_var("BINLOG_SERVER_TEST_TOKENS", format!("{line};"));
        let env = format!(
            "{}[http]\nlisten = \"0.0.0.0:7480\"\ntokens_env = \"BINLOG_SERVER_TEST_TOKENS\"\n",
            base(d.path())
        );
        let s = Config::parse(&env).unwrap().validate().unwrap();
        let t = s.http.tokens.expect("tokens from the environment");
        assert_eq!(
            t.check("bls_x").map(|c| c.role),
            Some(crate::tokens::Role::Read)
        );
        let missing = env.replace("BINLOG_SERVER_TEST_TOKENS", "BINLOG_SERVER_TEST_NO_SUCH");
        let e = Config::parse(&missing).unwrap().validate().unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key, .. } if key == "http.tokens_env"),
            "{e}"
        );
    }

    #[test]
    fn parses_the_documented_example() {
        let d = tempfile::tempdir().unwrap();
        let text = format!(
            "{}start = {{ file = \"mysql-bin.000042\", pos = 4 }}\n[http]\nlisten = \"127.0.0.1:7480\"\n[capture]\nfsync_interval = \"20ms\"\n",
            base(d.path())
        );
        let s = Config::parse(&text).unwrap().validate().unwrap();
        assert_eq!(s.sources[0].start, StartAt::File("mysql-bin.000042".into()));
        assert_eq!(s.sources[0].url.password.as_deref(), Some("s3cret"));
        assert_eq!(s.capture.fsync_interval, Duration::from_millis(20));
        assert!(s.catalog.url.starts_with("sqlite://"));
        let dbg = format!("{:?}", s);
        assert!(!dbg.contains("s3cret"), "password leaked in {dbg}");
    }

    #[test]
    fn unknown_key_is_named() {
        let d = tempfile::tempdir().unwrap();
        let text = format!("{}bogus = 1\n", base(d.path()));
        let e = Config::parse(&text).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn duplicate_names_refused() {
        let d = tempfile::tempdir().unwrap();
        let text = format!(
            "{}[[source]]\nname = \"db1\"\nurl = \"mysql://r@127.0.0.1:3307\"\nserver_id = 5\n",
            base(d.path())
        );
        let e = Config::parse(&text).unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("source[1].name"), "{e}");
    }

    #[test]
    fn unwritable_data_dir_refused() {
        let text = base(Path::new("/proc/binlog-server-cannot-exist"));
        let e = Config::parse(&text).unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("data_dir"), "{e}");
    }

    #[test]
    fn password_from_env() {
        let d = tempfile::tempdir().unwrap();
        std::env::set_var("BINLOG_SERVER_TEST_PW", "fromenv");
        let text = format!(
            "data_dir = {:?}\n[[source]]\nname = \"db1\"\nurl = \"mysql://repl@127.0.0.1\"\npassword_env = \"BINLOG_SERVER_TEST_PW\"\nserver_id = 9\n",
            d.path().display().to_string()
        );
        let s = Config::parse(&text).unwrap().validate().unwrap();
        assert_eq!(s.sources[0].url.password.as_deref(), Some("fromenv"));
        assert_eq!(s.sources[0].url.port, 3306);
        let text = text.replace("BINLOG_SERVER_TEST_PW", "BINLOG_SERVER_TEST_UNSET");
        let e = Config::parse(&text).unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("password_env"), "{e}");
    }

    #[test]
    fn url_forms() {
        let u = SourceUrl::parse(
            "mysql://a%40b:p%3Aw@db.example:3310?ssl-mode=verify_ca&ssl-ca=/x.pem",
        )
        .unwrap();
        assert_eq!(u.user, "a@b");
        assert_eq!(u.password.as_deref(), Some("p:w"));
        assert_eq!(u.port, 3310);
        assert_eq!(u.tls, TlsMode::VerifyCa);
        assert!(SourceUrl::parse("http://x@y").is_err());
        assert!(SourceUrl::parse("mysql://x@y?foo=1").is_err());
        assert!(!u.redacted().contains("p:w"));
    }

    #[test]
    fn a_source_lists_one_url_or_a_failover_group() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().display().to_string();
        let with = |src: &str| {
            Config::parse(&format!(
                "data_dir = {dir:?}\n[[source]]\nname = \"db1\"\nserver_id = 4242\n{src}"
            ))
            .unwrap()
            .validate()
        };
        let one = with("url = \"mysql://repl:pw@db1a:3306\"\n").unwrap();
        assert_eq!(one.sources[0].servers.len(), 1);
        assert_eq!(one.sources[0].failover_timeout, Duration::from_secs(30));
        std::env::set_var("BINLOG_SERVER_TEST_GROUP_PW", "fromenv");
        let group = with(
            "urls = [\"mysql://repl@db1a:3306\", \"mysql://repl@db1b:3307\"]\n\
             failover_timeout = \"5s\"\npassword_env = \"BINLOG_SERVER_TEST_GROUP_PW\"\n",
        )
        .unwrap();
        let s = &group.sources[0];
        assert_eq!(s.servers.len(), 2);
        assert_eq!(
            (s.servers[1].host.as_str(), s.servers[1].port),
            ("db1b", 3307)
        );
        assert!(s
            .servers
            .iter()
            .all(|u| u.password.as_deref() == Some("fromenv")));
        assert_eq!(s.url.redacted(), s.servers[0].redacted());
        assert_eq!(s.failover_timeout, Duration::from_secs(5));
        // Bases and verification's live phases follow the server capture follows now.
        s.current_server
            .store(1, std::sync::atomic::Ordering::Relaxed);
        for u in [s.url_now(), s.backup_url_now(), s.check_url_now()] {
            assert_eq!((u.host.as_str(), u.port), ("db1b", 3307));
        }
        std::env::set_var("BINLOG_SERVER_TEST_CHECK_PW", "checker");
        let pinned = with(
            "urls = [\"mysql://repl@db1a:3306\", \"mysql://repl@db1b:3307\"]\n\
             [source.verify]\npassword_env = \"BINLOG_SERVER_TEST_CHECK_PW\"\n",
        )
        .unwrap();
        let p = &pinned.sources[0];
        p.current_server
            .store(1, std::sync::atomic::Ordering::Relaxed);
        let c = p.check_url_now();
        assert_eq!(
            (c.host.as_str(), c.password.as_deref()),
            ("db1b", Some("checker"))
        );
        let explicit = with(
            "urls = [\"mysql://repl@db1a:3306\", \"mysql://repl@db1b:3307\"]\n\
             [source.verify]\nurl = \"mysql://check@dbcheck:3306\"\n",
        )
        .unwrap();
        let e = &explicit.sources[0];
        e.current_server
            .store(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(e.check_url_now().host, "dbcheck");
        // [source.backup] password_env without a URL: the backup password at the
        // current server, for bases and for the data checks alike.
        std::env::set_var("BINLOG_SERVER_TEST_BACKUP_PW", "backup-pw");
        let b = with(
            "urls = [\"mysql://repl@db1a:3306\", \"mysql://repl@db1b:3307\"]\n\
             [source.backup]\npassword_env = \"BINLOG_SERVER_TEST_BACKUP_PW\"\n",
        )
        .unwrap();
        let b = &b.sources[0];
        b.current_server
            .store(1, std::sync::atomic::Ordering::Relaxed);
        for u in [b.backup_url_now(), b.check_url_now()] {
            assert_eq!(
                (u.host.as_str(), u.password.as_deref()),
                ("db1b", Some("backup-pw"))
            );
        }
        let key_of = |e: ConfigError| match e {
            ConfigError::Invalid { key, message } => (key, message),
            other => panic!("{other}"),
        };
        for (bad, key) in [
            ("", "source[0].url"),
            ("urls = []\n", "source[0].urls"),
            (
                "url = \"mysql://r@a\"\nurls = [\"mysql://r@b\"]\n",
                "source[0].urls",
            ),
            (
                "urls = [\"mysql://r@a:1\", \"mysql://q@a:1\"]\n",
                "source[0].urls[1]",
            ),
            ("urls = [\"http://a\"]\n", "source[0].urls[0]"),
            (
                "url = \"mysql://r@a\"\nfailover_timeout = \"0s\"\n",
                "source[0].failover_timeout",
            ),
        ] {
            let (k, msg) = key_of(with(bad).unwrap_err());
            assert_eq!(k, key, "{bad:?}: {msg}");
        }
    }

    #[test]
    fn start_pos_must_be_4() {
        let d = tempfile::tempdir().unwrap();
        let text = format!(
            "{}start = {{ file = \"b.000001\", pos = 120 }}\n",
            base(d.path())
        );
        let e = Config::parse(&text).unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("start.pos"), "{e}");
    }
}
