//! Validation of the TOML file into [`Settings`]: one function per table, each naming
//! the offending key in its error ([`ConfigError::Invalid`]), then the checks across
//! sources (unique listen ports, unique server_ids per primary).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::schedule;
use super::{
    env_password, invalid, ArchiveConfig, ArchiveSettings, CaptureConfig, CatalogConfig,
    CatalogSettings, Config, ConfigError, HttpConfig, HttpSettings, NodeConfig, NodeCredential,
    NodeSettings, PitrConfig, Replication, ReplicationConfig, Settings, Source, SourceConfig,
    SourceUrl, StartAt, StartRaw, Verify, VerifyConfig,
};

impl Config {
    /// Checks every value, resolves passwords from the environment, and creates
    /// `data_dir` if needed (refusing one that cannot be written). One function per
    /// table does the work (this module).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the first offending key.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        settings(self)
    }
}

/// The whole file: `[http]`, `data_dir`, `[catalog]`, `[capture]`, every `[[source]]`,
/// `[backup]`, `[pitr]`.
pub(crate) fn settings(c: Config) -> Result<Settings, ConfigError> {
    let http = http(&c.http)?;
    let http_listen = http.listen;
    let data_dir = data_dir(&c.data_dir)?;
    let catalog = catalog(&c.catalog, &data_dir)?;
    let node = c.node.as_ref().map(node).transpose()?;
    capture(&c.capture)?;
    if c.sources.is_empty() {
        return Err(invalid(
            "source",
            "no [[source]] configured: add at least one primary to archive",
        ));
    }
    let mut names = HashSet::new();
    let mut sources = Vec::new();
    for (i, s) in c.sources.into_iter().enumerate() {
        source_name(&format!("source[{i}].name"), &s.name)?;
        if !names.insert(s.name.clone()) {
            return Err(invalid(
                format!("source[{i}].name"),
                format!("duplicate source name {:?}", s.name),
            ));
        }
        sources.push(source(i, s)?);
    }
    unique_listens(&sources, http_listen)?;
    unique_server_ids(&sources)?;
    let mut store = c
        .backup
        .validate(&data_dir)
        .map_err(|(k, m)| invalid(k, m))?;
    let tools = backup_tools(&c.backup)?;
    let pitr = pitr(c.pitr, &data_dir)?;
    let archive = archive(&c.archive, &store.options, &data_dir)?;
    if archive.object_lock.is_some() && store.options.same_bucket(&archive.store) {
        // Bases share the locked bucket: their uploads need the checksum too.
        store.options.checksums = true;
    }
    if node.is_some() && !archive.enabled {
        return Err(invalid(
            "node",
            "a fleet node needs the archive store: a node that takes a source over resumes              from what the store holds (set [archive] enabled = true, with a store every              node reaches)",
        ));
    }
    Ok(Settings {
        archive,
        pitr,
        data_dir,
        http_listen,
        http,
        catalog,
        node,
        capture: c.capture,
        store,
        tools,
        sources,
    })
}

/// `[archive]`: its store (default: the base-backup store `backup`), shipping bounds,
/// compression and key file.
fn archive(
    a: &ArchiveConfig,
    backup: &objstore::store::StoreOptions,
    data_dir: &Path,
) -> Result<ArchiveSettings, ConfigError> {
    let store = archive_store(a, backup)?;
    if a.ship_interval < Duration::from_millis(100) || a.ship_interval > Duration::from_secs(3600) {
        return Err(invalid(
            "archive.ship_interval",
            "must be between 100ms and 1h",
        ));
    }
    if !(64 * 1024..=1024 * 1024 * 1024).contains(&a.ship_bytes) {
        return Err(invalid(
            "archive.ship_bytes",
            "must be between 65536 (64 KiB) and 1073741824 (1 GiB)",
        ));
    }
    let compression = match a.compression.as_str() {
        "zstd" => objstore::codec::Compression::Zstd,
        "none" => objstore::codec::Compression::None,
        other => {
            return Err(invalid(
                "archive.compression",
                format!("{other:?}: use \"zstd\" or \"none\""),
            ))
        }
    };
    let keyring = match &a.encryption_key_file {
        None => objstore::keyring::Keyring::none(),
        Some(p) => objstore::keyring::Keyring::load(p)
            .map_err(|e| invalid("archive.encryption_key_file", e.to_string()))?,
    };
    let cache_dir = a
        .cache_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("cache"));
    std::fs::create_dir_all(&cache_dir).map_err(|e| {
        invalid(
            "archive.cache_dir",
            format!("cannot create {}: {e}", cache_dir.display()),
        )
    })?;
    archive_needs_enabled(a)?;
    let object_lock = object_lock(a, &store.url)?;
    let store = objstore::store::StoreOptions {
        checksums: object_lock.is_some(),
        ..store
    };
    Ok(ArchiveSettings {
        object_lock,
        keep_days: a.keep_days,
        scrub_interval: a.scrub_interval,
        scrub_bytes_per_second: a.scrub_bytes_per_second,
        local_retention: a.local_retention,
        local_bytes: a.local_bytes,
        min_free_bytes: a.min_free_bytes,
        cache_dir,
        cache_bytes: a.cache_bytes,
        enabled: a.enabled,
        store,
        ship_interval: a.ship_interval,
        ship_bytes: a.ship_bytes,
        compression,
        keyring: std::sync::Arc::new(keyring),
    })
}

/// `[archive] store` and its S3 options (without `store`, the `[backup]` store is used
/// and the S3 options must not be set).
fn archive_store(
    a: &ArchiveConfig,
    backup: &objstore::store::StoreOptions,
) -> Result<objstore::store::StoreOptions, ConfigError> {
    let store = match &a.store {
        None => objstore::store::StoreOptions {
            retries: a.retries.unwrap_or(backup.retries),
            ..backup.clone()
        },
        Some(url) => {
            objstore::store::check_url(url, "archive.store").map_err(|(k, m)| invalid(k, m))?;
            objstore::store::StoreOptions {
                checksums: false,
                url: url.clone(),
                s3_endpoint: a.s3_endpoint.clone(),
                s3_region: a.s3_region.clone().unwrap_or_else(|| "us-east-1".into()),
                s3_allow_http: a.s3_allow_http.unwrap_or(false),
                part_size: backup.part_size,
                upload_concurrency: backup.upload_concurrency,
                retries: a.retries.unwrap_or(10),
            }
        }
    };
    if a.store.is_none()
        && (a.s3_endpoint.is_some() || a.s3_region.is_some() || a.s3_allow_http.is_some())
    {
        return Err(invalid(
            "archive.s3_endpoint",
            "s3_endpoint, s3_region and s3_allow_http belong with archive.store (without it the [backup] store and its keys are used)",
        ));
    }
    Ok(store)
}

/// `[archive] object_lock`: a mode, only for an `s3://` archive store that is written.
fn object_lock(
    a: &ArchiveConfig,
    url: &str,
) -> Result<Option<objstore::lock::LockMode>, ConfigError> {
    let Some(mode) = &a.object_lock else {
        return Ok(None);
    };
    let mode = match mode.as_str() {
        "governance" => objstore::lock::LockMode::Governance,
        "compliance" => objstore::lock::LockMode::Compliance,
        other => {
            return Err(invalid(
                "archive.object_lock",
                format!("{other:?}: use \"governance\" or \"compliance\""),
            ))
        }
    };
    if !url.starts_with("s3://") {
        return Err(invalid(
            "archive.object_lock",
            format!("needs an s3:// archive store (S3 Object Lock), not {url:?}"),
        ));
    }
    if !a.enabled {
        return Err(invalid(
            "archive.object_lock",
            "needs enabled = true: only shipped objects are locked",
        ));
    }
    Ok(Some(mode))
}

/// The `[archive]` settings that only make sense with `enabled = true`, and the cache's
/// minimum size.
fn archive_needs_enabled(a: &ArchiveConfig) -> Result<(), ConfigError> {
    if a.local_retention.is_some() && !a.enabled {
        return Err(invalid(
            "archive.local_retention",
            "needs enabled = true: files only leave the local disk once they are in the store",
        ));
    }
    if a.local_bytes.is_some() && !a.enabled {
        return Err(invalid(
            "archive.local_bytes",
            "needs enabled = true: files only leave the local disk once they are in the store",
        ));
    }
    if a.cache_bytes < 64 << 20 {
        return Err(invalid(
            "archive.cache_bytes",
            "must be at least 67108864 (64 MiB)",
        ));
    }
    if a.keep_days.is_some() && !a.enabled {
        return Err(invalid(
            "archive.keep_days",
            "needs enabled = true (archive retention deletes from the archive store)",
        ));
    }
    Ok(())
}

/// `[http]`: the listen address; a non-loopback one needs `tokens_file`; the tokens file
/// must load; `tls_cert` and `tls_key` come together and must form a usable pair.
fn http(h: &HttpConfig) -> Result<HttpSettings, ConfigError> {
    let listen: SocketAddr = h.listen.parse().map_err(|e| {
        invalid(
            "http.listen",
            format!("{:?} is not host:port ({e})", h.listen),
        )
    })?;
    let tokens = match (&h.tokens_file, &h.tokens_env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "http.tokens_env",
                "give tokens_file or tokens_env, not both",
            ))
        }
        (Some(path), None) => Some(
            crate::tokens::Tokens::load(path)
                .map_err(|e| invalid("http.tokens_file", e.to_string()))?,
        ),
        (None, Some(var)) => {
            let text = std::env::var(var).map_err(|_| {
                invalid(
                    "http.tokens_env",
                    format!("environment variable {var} is not set"),
                )
            })?;
            Some(
                crate::tokens::Tokens::parse(&text.replace(';', "\n"))
                    .map_err(|e| invalid("http.tokens_env", format!("{var}: {e}")))?,
            )
        }
        (None, None) if !listen.ip().is_loopback() => {
            return Err(invalid(
                "http.listen",
                format!(
                    "{listen} is not a loopback address and there is no http.tokens_file: \
                     an unauthenticated API is served on loopback only (make tokens with \
                     `binlog-server token add`)"
                ),
            ))
        }
        (None, None) => None,
    };
    let tls = match (&h.tls_cert, &h.tls_key) {
        (Some(c), Some(k)) => Some(
            mysql_wire::tls::server_config(c, k)
                .map_err(|e| invalid("http.tls_cert", e.to_string()))?,
        ),
        (None, None) => None,
        (Some(_), None) => return Err(invalid("http.tls_key", "tls_cert needs tls_key")),
        (None, Some(_)) => return Err(invalid("http.tls_cert", "tls_key needs tls_cert")),
    };
    if h.max_connections == 0 {
        return Err(invalid("http.max_connections", "must be at least 1"));
    }
    if h.header_timeout.is_zero() {
        return Err(invalid("http.header_timeout", "must be greater than 0"));
    }
    let mut hostnames = Vec::new();
    for (i, n) in h.hostnames.iter().enumerate() {
        let n = n.trim().to_ascii_lowercase();
        if n.is_empty() || n.contains([':', '/', ' ']) {
            return Err(invalid(
                format!("http.hostnames[{i}]"),
                format!("{n:?} is not a host name (no port, no scheme)"),
            ));
        }
        hostnames.push(n);
    }
    Ok(HttpSettings {
        listen,
        tokens_file: h.tokens_file.clone(),
        tokens,
        metrics_open: h.metrics_open,
        hostnames,
        tls,
        tls_cert: h.tls_cert.clone(),
        max_connections: h.max_connections,
        header_timeout: h.header_timeout,
    })
}

/// `data_dir`: created if missing, refused when not writable; returned canonical.
fn data_dir(dir: &Path) -> Result<PathBuf, ConfigError> {
    if dir.as_os_str().is_empty() {
        return Err(invalid("data_dir", "must not be empty"));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| invalid("data_dir", format!("cannot create {}: {e}", dir.display())))?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"probe").map_err(|e| {
        invalid(
            "data_dir",
            format!("{} is not writable: {e}", dir.display()),
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    dir.canonicalize()
        .map_err(|e| invalid("data_dir", format!("{}: {e}", dir.display())))
}

/// `[capture]`: durations non-zero, the heartbeat within what the protocol carries, the
/// backoff range in order.
fn capture(c: &CaptureConfig) -> Result<(), ConfigError> {
    for (k, d) in [
        ("capture.fsync_interval", c.fsync_interval),
        ("capture.heartbeat_period", c.heartbeat_period),
        ("capture.poll_interval", c.poll_interval),
        ("capture.reconnect_min_backoff", c.reconnect_min_backoff),
        ("capture.reconnect_max_backoff", c.reconnect_max_backoff),
        ("capture.connect_timeout", c.connect_timeout),
    ] {
        if d.is_zero() {
            return Err(invalid(k, "must be greater than 0"));
        }
    }
    if c.heartbeat_period > Duration::from_secs(4_000_000) {
        return Err(invalid(
            "capture.heartbeat_period",
            "must be at most 4000000s",
        ));
    }
    if c.reconnect_min_backoff > c.reconnect_max_backoff {
        return Err(invalid(
            "capture.reconnect_min_backoff",
            "must not exceed capture.reconnect_max_backoff",
        ));
    }
    Ok(())
}

/// One `[[source]]` (the `i`-th) with its `[source.backup]`, `[source.replication]` and
/// `[source.verify]` tables.
fn source(i: usize, s: SourceConfig) -> Result<Source, ConfigError> {
    let key = |k: &str| format!("source[{i}].{k}");
    let mut servers = servers(&key, &s)?;
    if let Some(var) = &s.password_env {
        let pw = env_password(key("password_env"), var)?;
        for u in &mut servers {
            u.password = Some(pw.clone());
        }
    }
    let url = servers[0].clone();
    let failover_timeout = s.failover_timeout.unwrap_or(Duration::from_secs(30));
    if failover_timeout.is_zero() {
        return Err(invalid(
            key("failover_timeout"),
            "must be positive (\"30s\" is the default)",
        ));
    }
    if s.server_id == 0 {
        return Err(invalid(
            key("server_id"),
            "must be non-zero (a primary refuses replicas with server_id 0)",
        ));
    }
    let start = start(&key("start"), s.start)?;
    let bcfg = s.backup.clone().unwrap_or_default();
    let backup = bcfg
        .validate(&key("backup"))
        .map_err(|(k, m)| invalid(k, m))?;
    let mut backup_url = match &bcfg.url {
        Some(u) => SourceUrl::parse(u).map_err(|m| invalid(key("backup.url"), m))?,
        None => url.clone(),
    };
    if let Some(var) = &bcfg.password_env {
        backup_url.password = Some(env_password(key("backup.password_env"), var)?);
    }
    let replication = s
        .replication
        .as_ref()
        .map(|r| replication(&key("replication"), r))
        .transpose()?;
    let verify = verify(&key("verify"), s.verify.as_ref(), &backup_url)?;
    let archive_only = match (s.archive_only, s.capture) {
        (Some(a), Some(c)) if a == c => {
            return Err(invalid(
                key("archive_only"),
                "contradicts `capture` (its old, inverted name): keep only archive_only",
            ))
        }
        (Some(a), _) => a,
        (None, c) => !c.unwrap_or(true),
    };
    Ok(Source {
        name: s.name,
        url,
        servers,
        failover_timeout,
        server_id: s.server_id,
        start,
        backup,
        backup_url_explicit: bcfg.url.is_some(),
        backup_url,
        current_server: Default::default(),
        archive_only,
        semi_sync: s.semi_sync,
        replication,
        verify,
    })
}

/// `url` or `urls` (exactly one; `urls` non-empty, no server twice), parsed.
fn servers(key: &dyn Fn(&str) -> String, s: &SourceConfig) -> Result<Vec<SourceUrl>, ConfigError> {
    match (&s.url, &s.urls) {
        (Some(u), None) => Ok(vec![
            SourceUrl::parse(u).map_err(|m| invalid(key("url"), m))?
        ]),
        (None, Some(v)) if !v.is_empty() => {
            let mut out: Vec<SourceUrl> = Vec::new();
            for (j, u) in v.iter().enumerate() {
                let u = SourceUrl::parse(u).map_err(|m| invalid(key(&format!("urls[{j}]")), m))?;
                if out.iter().any(|o| o.host == u.host && o.port == u.port) {
                    return Err(invalid(
                        key(&format!("urls[{j}]")),
                        format!("{}:{} is listed twice", u.host, u.port),
                    ));
                }
                out.push(u);
            }
            Ok(out)
        }
        (None, Some(_)) => Err(invalid(key("urls"), "must list at least one server")),
        (None, None) => Err(invalid(
            key("url"),
            "missing: give `url` (one server) or `urls` (a failover group)",
        )),
        (Some(_), Some(_)) => Err(invalid(
            key("urls"),
            "give either `url` or `urls`, not both",
        )),
    }
}

/// A source name: 1-64 characters from A-Z a-z 0-9 _ - ., not starting with `.` (it
/// names a directory and appears in URLs).
fn source_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{name:?}: use 1-64 characters from A-Z a-z 0-9 _ - . (not starting with .)"),
        ))
    }
}

/// `start`: "earliest" (default), "current", or `{ file, pos = 4 }`.
fn start(key: &str, raw: Option<StartRaw>) -> Result<StartAt, ConfigError> {
    match raw {
        None => Ok(StartAt::Earliest),
        Some(StartRaw::Named(n)) => match n.as_str() {
            "earliest" => Ok(StartAt::Earliest),
            "current" => Ok(StartAt::Current),
            other => Err(invalid(
                key,
                format!(
                    "{other:?}: use \"earliest\", \"current\" or \
                     {{ file = \"mysql-bin.000042\", pos = 4 }}"
                ),
            )),
        },
        Some(StartRaw::At(a)) => {
            if a.pos != 4 {
                return Err(invalid(
                    format!("{key}.pos"),
                    "must be 4: files are archived whole, from their first \
                     event, so they stay byte-identical to the primary's",
                ));
            }
            if a.file.is_empty() || a.file.contains('/') || a.file.starts_with('.') {
                return Err(invalid(
                    format!("{key}.file"),
                    format!("{:?} is not a binlog file name", a.file),
                ));
            }
            Ok(StartAt::File(a.file))
        }
    }
}

/// `[source.replication]`: the fake primary's listen address and its one account.
fn replication(key: &str, r: &ReplicationConfig) -> Result<Replication, ConfigError> {
    let text = if r.listen.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{}", r.listen)
    } else {
        r.listen.clone()
    };
    let listen: SocketAddr = text.parse().map_err(|e| {
        invalid(
            format!("{key}.listen"),
            format!("{:?} is not host:port or a port ({e})", r.listen),
        )
    })?;
    let password = match (&r.password, &r.password_env) {
        (_, Some(var)) => env_password(format!("{key}.password_env"), var)?,
        (Some(p), None) => p.clone(),
        (None, None) => return Err(invalid(
            format!("{key}.password"),
            "set password or password_env: the fake primary does not accept replicas without one",
        )),
    };
    if password.is_empty() {
        return Err(invalid(
            format!("{key}.password"),
            "is empty: an empty password lets anyone replicate the archive",
        ));
    }
    if r.user.is_empty() {
        return Err(invalid(format!("{key}.user"), "must not be empty"));
    }
    let tls = match (&r.tls_cert, &r.tls_key) {
        (Some(c), Some(k)) => Some(
            mysql_wire::tls::server_config(c, k)
                .map_err(|e| invalid(format!("{key}.tls_cert"), e.to_string()))?,
        ),
        (None, None) => None,
        (Some(_), None) => return Err(invalid(format!("{key}.tls_key"), "tls_cert needs tls_key")),
        (None, Some(_)) => {
            return Err(invalid(format!("{key}.tls_cert"), "tls_key needs tls_cert"))
        }
    };
    if tls.is_none() && !listen.ip().is_loopback() && !r.allow_plaintext {
        return Err(invalid(
            format!("{key}.listen"),
            format!(
                "{listen} is not a loopback address: set tls_cert and tls_key, or \
                 allow_plaintext = true to send binlogs over the network in clear"
            ),
        ));
    }
    let max_sessions = r.max_sessions.unwrap_or(64);
    if max_sessions == 0 {
        return Err(invalid(format!("{key}.max_sessions"), "must be at least 1"));
    }
    Ok(Replication {
        listen,
        creds: super::Credentials {
            user: r.user.clone(),
            password,
        },
        tls,
        max_sessions,
    })
}

/// `[source.verify]`: the weekly schedule, the chain timeout, and the data checks'
/// account (default: the backup account `backup_url`).
fn verify(
    key: &str,
    v: Option<&VerifyConfig>,
    backup_url: &SourceUrl,
) -> Result<Verify, ConfigError> {
    let k = |name: &str| format!("{key}.{name}");
    let schedule = match v {
        None => None,
        Some(v) => Some(schedule::Schedule {
            enabled: v.enabled,
            day: schedule::parse_day(v.day.as_deref().unwrap_or("mon"))
                .map_err(|m| invalid(k("day"), m))?,
            start: schedule::parse_time_of_day(v.start.as_deref().unwrap_or("01:00"))
                .map_err(|m| invalid(k("start"), m))?,
            stop_at: v
                .stop_at
                .as_deref()
                .map(schedule::parse_time_of_day)
                .transpose()
                .map_err(|m| invalid(k("stop_at"), m))?,
            keep_instance: v.keep_instance,
        }),
    };
    let mut check_url = match v.and_then(|v| v.url.as_ref()) {
        Some(u) => SourceUrl::parse(u).map_err(|m| invalid(k("url"), m))?,
        None => backup_url.clone(),
    };
    if let Some(var) = v.and_then(|v| v.password_env.as_ref()) {
        check_url.password = Some(env_password(k("password_env"), var)?);
    }
    let chain_timeout = v
        .and_then(|v| v.chain_timeout)
        .unwrap_or(Duration::from_secs(3600));
    if chain_timeout.is_zero() {
        return Err(invalid(k("chain_timeout"), "must be more than 0s"));
    }
    Ok(Verify {
        schedule,
        keep_instance: v.is_some_and(|v| v.keep_instance),
        chain_timeout,
        check_url,
        check_url_explicit: v.is_some_and(|v| v.url.is_some()),
    })
}

/// Each fake primary needs its own port, distinct from the HTTP API's.
fn unique_listens(sources: &[Source], http_listen: SocketAddr) -> Result<(), ConfigError> {
    let mut listens = HashSet::from([http_listen]);
    for s in sources {
        if let Some(r) = &s.replication {
            if !listens.insert(r.listen) || (r.listen.port() == 0) {
                return Err(invalid(
                    format!("source {}: replication.listen", s.name),
                    format!("{} is used twice (or port 0): each source's fake primary needs its own port", r.listen),
                ));
            }
        }
    }
    Ok(())
}

/// Two sources registering the same server_id with one primary would disconnect each
/// other.
fn unique_server_ids(sources: &[Source]) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    for s in sources {
        for u in &s.servers {
            if !ids.insert((u.host.clone(), u.port, s.server_id)) {
                return Err(invalid(
                    "source.server_id",
                    format!(
                        "two sources register server_id {} with {}:{}: the primary would \
                         disconnect one of them",
                        s.server_id, u.host, u.port
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `[backup.tools]`: known tool names with absolute paths.
fn backup_tools(b: &snapshotter::BackupConfig) -> Result<snapshotter::Tools, ConfigError> {
    for (name, path) in &b.tools {
        if !snapshotter::tool::TOOL_NAMES.contains(&name.as_str()) {
            return Err(invalid(
                format!("backup.tools.{name}"),
                format!(
                    "unknown tool; known: {}",
                    snapshotter::tool::TOOL_NAMES.join(", ")
                ),
            ));
        }
        if !path.is_absolute() {
            return Err(invalid(
                format!("backup.tools.{name}"),
                "must be an absolute path",
            ));
        }
    }
    Ok(snapshotter::Tools {
        paths: b.tools.clone(),
    })
}

/// `[pitr]`: a parallel mode MariaDB knows, at most 256 applier threads; `work_dir`
/// defaults to `<data_dir>/pitr`.
fn pitr(mut p: PitrConfig, data_dir: &Path) -> Result<PitrConfig, ConfigError> {
    if ![
        "optimistic",
        "conservative",
        "aggressive",
        "minimal",
        "none",
    ]
    .contains(&p.parallel_mode.as_str())
    {
        return Err(invalid(
            "pitr.parallel_mode",
            format!(
                "{:?}: use optimistic, conservative, aggressive, minimal or none",
                p.parallel_mode
            ),
        ));
    }
    if p.parallel_threads > 256 {
        return Err(invalid("pitr.parallel_threads", "must be at most 256"));
    }
    for (i, r) in p.allowed_destinations.iter().enumerate() {
        r.parse::<super::DestinationRule>()
            .map_err(|m| invalid(format!("pitr.allowed_destinations[{i}]"), m))?;
    }
    for (i, r) in p.allowed_datadir_roots.iter().enumerate() {
        if !r.is_absolute() || !r.is_dir() {
            return Err(invalid(
                format!("pitr.allowed_datadir_roots[{i}]"),
                format!("{} must be an existing absolute directory", r.display()),
            ));
        }
    }
    if let Some(ca) = &p.destination_ssl_ca {
        if !ca.is_file() {
            return Err(invalid(
                "pitr.destination_ssl_ca",
                format!("{} is not a file", ca.display()),
            ));
        }
    }
    p.work_dir = Some(p.work_dir.unwrap_or_else(|| data_dir.join("pitr")));
    Ok(p)
}

/// `[catalog]`: an `sqlite:` URL (default `<data_dir>/catalog.db`) or a `postgres:` URL
/// whose password, if any, comes from `password_env`.
fn catalog(c: &CatalogConfig, data_dir: &Path) -> Result<CatalogSettings, ConfigError> {
    let url = c
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("catalog.db").display()));
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    let postgres = match scheme.as_deref() {
        Some("sqlite") => false,
        Some("postgres" | "postgresql") => true,
        _ => {
            return Err(invalid(
                "catalog.url",
                "expected sqlite:///abs/path/catalog.db (one node) or \
                 postgres://user@host:5432/dbname (a fleet)",
            ))
        }
    };
    if postgres && !url.contains("://") {
        return Err(invalid(
            "catalog.url",
            "expected postgres://user@host:5432/dbname (with //host)",
        ));
    }
    if postgres && url_has_password(&url) {
        return Err(invalid(
            "catalog.url",
            "the URL holds a password: remove it and name an environment variable holding it \
             in catalog.password_env",
        ));
    }
    let password = match &c.password_env {
        Some(_) if !postgres => {
            return Err(invalid(
                "catalog.password_env",
                "an SQLite catalog takes no password; password_env is for a postgres:// url",
            ))
        }
        Some(var) => Some(env_password("catalog.password_env".into(), var)?),
        None => None,
    };
    Ok(CatalogSettings { url, password })
}

/// Whether a `scheme://user:password@host/db?...` URL carries a password: a `:` in the
/// part before the last `@` of its authority, or a `password=` query parameter (which
/// the PostgreSQL driver takes too).
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let in_userinfo = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    let in_query = rest.split_once('?').is_some_and(|(_, q)| {
        q.split('&').any(|p| {
            p.split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("password"))
        })
    });
    in_userinfo || in_query
}

/// Shortest `[node] lease_ttl`: renewals every third of it must fit a slow statement.
const MIN_LEASE_TTL: Duration = Duration::from_secs(3);

/// Longest `[node] lease_ttl`: a dead node's sources wait this long for a new owner.
const MAX_LEASE_TTL: Duration = Duration::from_secs(600);

/// `[node]`: an id like a source name, an http(s) advertise URL, a lease_ttl in range.
fn node(n: &NodeConfig) -> Result<NodeSettings, ConfigError> {
    source_name("node.id", &n.id)?;
    let scheme_ok = n.advertise.starts_with("https://") || n.advertise.starts_with("http://");
    let host = n
        .advertise
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    if !scheme_ok || host.is_empty() {
        return Err(invalid(
            "node.advertise",
            format!(
                "{:?}: expected this node's API URL as the other nodes reach it, e.g. \
                 https://10.0.0.7:7480",
                n.advertise
            ),
        ));
    }
    if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&n.lease_ttl) {
        return Err(invalid(
            "node.lease_ttl",
            format!(
                "{:?}: use 3s to 10m (a dead node's sources wait this long for a new owner)",
                n.lease_ttl
            ),
        ));
    }
    let credential = match &n.credential_env {
        Some(var) => Some(node_credential(var, &n.advertise)?),
        None => None,
    };
    if let Some(ca) = &n.peer_ca {
        if !ca.is_file() {
            return Err(invalid(
                "node.peer_ca",
                format!("{}: not a readable file", ca.display()),
            ));
        }
    }
    Ok(NodeSettings {
        id: n.id.clone(),
        advertise: n.advertise.trim_end_matches('/').to_owned(),
        lease_ttl: n.lease_ttl,
        credential,
        peer_ca: n.peer_ca.clone(),
    })
}

/// Shortest node credential: a random secret, not a password.
const MIN_CREDENTIAL: usize = 32;

/// `[node] credential_env`: the secret from the environment, long enough, and an https
/// advertise URL (a node sends it to the others only over TLS).
fn node_credential(var: &str, advertise: &str) -> Result<NodeCredential, ConfigError> {
    let secret = super::env_password("node.credential_env".into(), var)?;
    if secret.trim().len() < MIN_CREDENTIAL {
        return Err(invalid(
            "node.credential_env",
            format!(
                "the credential in {var} is shorter than {MIN_CREDENTIAL} characters: use a \
                 random secret (e.g. `openssl rand -hex 32`), the same on every node"
            ),
        ));
    }
    if !advertise.starts_with("https://") {
        return Err(invalid(
            "node.advertise",
            format!(
                "{advertise:?}: with a node credential the nodes call each other over TLS: \
                 use an https URL (and [http] tls_cert, tls_key)"
            ),
        ));
    }
    Ok(NodeCredential::new(secret.trim().to_owned()))
}
