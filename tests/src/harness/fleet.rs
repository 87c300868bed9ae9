//! A fleet of binlog-server nodes as processes on one PostgreSQL catalog and one
//! bucket of the S3-compatible server, for the fleet's process tests and the fleet
//! demo: [`Services`] (the two servers), [`FleetNode`] (one node's config and process)
//! and the waits and API calls they share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::config::{write_config_sources, SourceSpec};
use super::mariadb::{checksums_socket, MariaDb};
use super::postgres::Postgres;
use super::s3::{Moto, S3_TEST_ENV};
use super::sandbox::PitrJobs;
use super::server::{ApiAccess, ServerProcess};
use super::tools::{free_port, sha256_file, toml_string};
use super::wait::wait_for;

/// The `[capture]` settings of a fleet node: short intervals, so that state changes
/// show within a second.
pub const FLEET_CAPTURE: &str = "[capture]\nfsync_interval = \"20ms\"\nheartbeat_period = \"1s\"\npoll_interval = \"500ms\"\nreconnect_min_backoff = \"100ms\"\nreconnect_max_backoff = \"1s\"\n";

/// One fleet node as a process: its own data_dir and API, the shared catalog and bucket.
pub struct FleetNode {
    /// The node's id (`[node] id`).
    pub id: String,
    /// Its API address, `127.0.0.1:PORT`.
    pub http: String,
    /// Its directory (config, `data/`), removed on drop.
    pub dir: tempfile::TempDir,
    /// Its config file.
    pub cfg: PathBuf,
    /// The binlog-server binary it runs.
    bin: PathBuf,
    /// Its API's certificate once [`FleetNode::secure`] made it https.
    ca: Option<PathBuf>,
}

impl FleetNode {
    /// Writes the config of node `id` over the sources `specs`: the catalog
    /// `catalog_url`, the bucket `s3://fleet/arch` at `endpoint`, leases of `ttl` (TOML
    /// duration text).
    ///
    /// # Errors
    ///
    /// Writing the config fails.
    pub fn with_ttl(
        bin: &Path,
        id: &str,
        specs: &[SourceSpec],
        catalog_url: &str,
        endpoint: &str,
        ttl: &str,
    ) -> Result<FleetNode> {
        let dir = tempfile::tempdir()?;
        let http = format!("127.0.0.1:{}", free_port());
        let extra = format!(
            "{FLEET_CAPTURE}[catalog]\nurl = {}\n[archive]\nstore = \"s3://fleet/arch\"\n\
             s3_endpoint = {}\ns3_allow_http = true\nship_interval = \"200ms\"\n\
             [node]\nid = {}\nadvertise = {}\nlease_ttl = {}\n",
            toml_string(catalog_url),
            toml_string(endpoint),
            toml_string(id),
            toml_string(&format!("http://{http}")),
            toml_string(ttl),
        );
        let cfg = write_config_sources(dir.path(), &http, specs, &extra)?;
        Ok(FleetNode {
            id: id.to_string(),
            http,
            dir,
            cfg,
            bin: bin.to_path_buf(),
            ca: None,
        })
    }

    /// Makes the node's API https with `cert` and `key` (the same self-signed
    /// certificate for every node, trusted as `[node] peer_ca`), advertised as such, with
    /// the fleet's node credential from the environment variable `credential_env`.
    ///
    /// # Errors
    ///
    /// Reading or writing the config fails, or it lacks the `[node]` and `[http]` tables.
    pub fn secure(&mut self, cert: &Path, key: &Path, credential_env: &str) -> Result<()> {
        let cert_s = cert.to_str().context("certificate path is not UTF-8")?;
        let key_s = key.to_str().context("key path is not UTF-8")?;
        let mut cfg = std::fs::read_to_string(&self.cfg)?;
        let node = format!(
            "[node]\ncredential_env = {}\npeer_ca = {}\n",
            toml_string(credential_env),
            toml_string(cert_s)
        );
        let http = format!("\n[http]\nlisten = {}\n", toml_string(&self.http));
        anyhow::ensure!(
            cfg.contains("[node]\n") && cfg.contains(&http),
            "the config lacks [node] or [http]"
        );
        cfg = cfg
            .replacen("[node]\n", &node, 1)
            .replacen(
                &http,
                &format!(
                    "{http}tls_cert = {}\ntls_key = {}\n",
                    toml_string(cert_s),
                    toml_string(key_s)
                ),
                1,
            )
            .replacen(
                &format!(
                    "advertise = {}",
                    toml_string(&format!("http://{}", self.http))
                ),
                &format!(
                    "advertise = {}",
                    toml_string(&format!("https://{}", self.http))
                ),
                1,
            );
        std::fs::write(&self.cfg, cfg)?;
        self.ca = Some(cert.to_path_buf());
        Ok(())
    }

    /// Starts the node (its API answering).
    ///
    /// # Errors
    ///
    /// The process does not start or its API does not answer in time.
    pub fn start(&self) -> Result<ServerProcess> {
        match &self.ca {
            None => ServerProcess::start(&self.bin, &self.cfg, &self.http),
            Some(ca) => ServerProcess::start_with(
                &self.bin,
                &self.cfg,
                &format!("https://{}", self.http),
                ApiAccess {
                    token: None,
                    ca_cert: Some(ca.clone()),
                },
            ),
        }
    }

    /// Appends TOML `text` to the node's config (tables of the last source, or
    /// top-level tables).
    ///
    /// # Errors
    ///
    /// Reading or writing the file fails.
    pub fn append_config(&self, text: &str) -> Result<()> {
        let mut cfg = std::fs::read_to_string(&self.cfg)?;
        cfg.push_str(text);
        std::fs::write(&self.cfg, cfg)?;
        Ok(())
    }

    /// Rewrites the node's config file with `f` (given its text, it returns the new one).
    ///
    /// # Errors
    ///
    /// Reading or writing the file fails, or `f`'s error.
    pub fn edit_config(&self, f: impl FnOnce(String) -> Result<String>) -> Result<()> {
        let cfg = std::fs::read_to_string(&self.cfg)?;
        std::fs::write(&self.cfg, f(cfg)?)?;
        Ok(())
    }

    /// The source's directory on this node.
    pub fn source_dir(&self, source: &str) -> PathBuf {
        self.dir.path().join("data").join(source)
    }
}

/// What the process tests of a fleet share: a PostgreSQL catalog (database `fleet`)
/// and the S3-compatible server (bucket `fleet`), with its credentials in the
/// environment.
pub struct Services {
    /// The catalog's server (database `fleet`).
    pub pg: Postgres,
    /// The S3-compatible server (bucket `fleet`).
    pub moto: Moto,
    /// The binlog-server binary the nodes run.
    bin: PathBuf,
}

impl Services {
    /// Starts both servers, creates the database and the bucket, sets the S3
    /// credentials in this process's environment (the nodes inherit them); the nodes
    /// run `bin`.
    ///
    /// # Errors
    ///
    /// A server does not start (the message names the setup command when a tool is
    /// missing).
    pub fn start(bin: &Path) -> Result<Services> {
        let pg = Postgres::start()?;
        pg.sql("CREATE DATABASE fleet")?;
        let moto = Moto::start()?;
        moto.create_bucket("fleet")?;
        for (k, v) in S3_TEST_ENV {
            std::env::set_var(k, v);
        }
        Ok(Services {
            pg,
            moto,
            bin: bin.to_path_buf(),
        })
    }

    /// Node `id` over `specs` with `lease_ttl` (TOML duration text).
    ///
    /// # Errors
    ///
    /// Writing the config fails.
    pub fn node(&self, id: &str, specs: &[SourceSpec], ttl: &str) -> Result<FleetNode> {
        FleetNode::with_ttl(
            &self.bin,
            id,
            specs,
            &self.pg.url_for("fleet"),
            &self.moto.endpoint(),
            ttl,
        )
    }
}

/// Waits until `server` streams `source` as the lease's owner; returns its status.
///
/// # Errors
///
/// Not so within `timeout` (the last state, lease and error).
pub fn wait_streaming_owner(
    server: &ServerProcess,
    node: &str,
    source: &str,
    timeout: Duration,
) -> Result<serde_json::Value> {
    wait_for(&format!("{node} to stream {source}"), timeout, || {
        let s = server.get_json(&format!("/v1/sources/{source}"))?;
        if s["state"] == "streaming" && s["lease"]["owner"] == node {
            Ok(Some(s))
        } else {
            Err(anyhow::anyhow!(
                "state {}, lease {}, last_error {}",
                s["state"],
                s["lease"],
                s["last_error"]
            ))
        }
    })
}

/// A base of `source` on `server` through the API; its id.
///
/// # Errors
///
/// The request is refused or the base does not complete.
pub fn take_base(server: &ServerProcess, source: &str) -> Result<String> {
    let (code, r) = server.post_json(
        &format!("/v1/sources/{source}/backups"),
        &serde_json::json!({}),
    )?;
    anyhow::ensure!(code == 202, "POST backups: {code} {r:#}");
    let id = r["job_id"].as_str().context("job_id")?.to_string();
    let job = wait_for(&format!("base job {id}"), Duration::from_secs(300), || {
        let j = server.get_json(&format!("/v1/jobs/{id}"))?;
        Ok((j["state"] != "running").then_some(j))
    })?;
    anyhow::ensure!(job["state"] == "completed", "base job: {job:#}");
    Ok(job["backup_id"].as_str().unwrap_or(&id).to_string())
}

/// Restores `source` on `server` to `time` in a scratch instance; the restored `test`
/// tables' checksums and the job's report. The instance is removed before it returns.
///
/// # Errors
///
/// The request is refused, the job fails, or the checksums cannot be read.
pub fn restore_at(
    server: &ServerProcess,
    source: &str,
    time: u64,
) -> Result<(BTreeMap<String, String>, serde_json::Value)> {
    let mut jobs = PitrJobs::new(server);
    let body = serde_json::json!({ "target_time": format!("@{time}"), "scratch": true });
    let (code, v) = server.post_json(&format!("/v1/sources/{source}/pitr"), &body)?;
    anyhow::ensure!(code == 202, "POST pitr: {code} {v:#}");
    let id = v["id"].as_str().context("job id")?.to_string();
    jobs.add(&id);
    let j = wait_for(&format!("PITR job {id}"), Duration::from_secs(300), || {
        let j = server.get_json(&format!("/v1/pitr/{id}"))?;
        let p = j["phase"].as_str().unwrap_or_default().to_string();
        Ok((p == "done" || p == "failed").then_some(j))
    })?;
    anyhow::ensure!(j["phase"] == "done", "PITR job: {j:#}");
    let socket = j["restored"]["socket"].as_str().context("socket")?;
    let sums = checksums_socket(socket)?;
    let (code, v) = jobs.delete(&id)?;
    anyhow::ensure!(code == 200, "DELETE pitr: {code} {v:#}");
    Ok((sums, j))
}

/// Nodes `node-a` and `node-b` over `specs`, whose one source is `db`'s, with bases in
/// the bucket (`s3://fleet/bases`): `backup` is the `[source.backup]` lines after its
/// url, `more` any tables of the source after it. Leases of 3 s.
///
/// # Errors
///
/// Writing a config fails.
pub fn nodes_with_bases(
    svc: &Services,
    db: &MariaDb,
    specs: &[SourceSpec],
    backup: &str,
    more: &str,
) -> Result<Vec<FleetNode>> {
    fleet_with_bases(svc, db, &["node-a", "node-b"], "3s", specs, (backup, more))
}

/// [`nodes_with_bases`] with the nodes `ids` and leases of `ttl` (TOML duration text).
///
/// # Errors
///
/// Writing a config fails.
pub fn fleet_with_bases(
    svc: &Services,
    db: &MariaDb,
    ids: &[&str],
    ttl: &str,
    specs: &[SourceSpec],
    (backup, more): (&str, &str),
) -> Result<Vec<FleetNode>> {
    let tables = format!(
        "\n[source.backup]\nurl = {}\n{backup}{more}\
         \n[backup]\nstore = \"s3://fleet/bases\"\ns3_endpoint = {}\ns3_allow_http = true\n",
        toml_string(&db.admin_url()),
        toml_string(&svc.moto.endpoint()),
    );
    ids.iter()
        .map(|id| {
            let n = svc.node(id, specs, ttl)?;
            n.append_config(&tables)?;
            Ok(n)
        })
        .collect()
}

/// Every closed binlog of the primary is SUCC in the fleet's catalog (database `fleet`) with the primary's
/// SHA-256, and held whole in the store with that plaintext SHA-256; returns how many.
///
/// # Errors
///
/// A closed file without its SUCC row, or with another SHA-256 (named).
pub fn assert_catalog_and_store_identical(
    pg: &Postgres,
    db: &MariaDb,
    source: &str,
) -> Result<usize> {
    assert_timeline_identical(pg, db, source, 1, None)
}

/// [`assert_catalog_and_store_identical`] for the primary `db` of `timeline`: its closed
/// binlogs from `first` on (all when `None`), under their stored names (`tl<N>/<name>`
/// for N >= 2); returns how many.
///
/// # Errors
///
/// A closed file without its SUCC row, or with another SHA-256 (named).
pub fn assert_timeline_identical(
    pg: &Postgres,
    db: &MariaDb,
    source: &str,
    timeline: u32,
    first: Option<&str>,
) -> Result<usize> {
    let files = db.binlog_files()?;
    let (_, closed) = files.split_last().context("the primary lists no binlogs")?;
    let from = first.and_then(binlog::binlog_seq).unwrap_or(0);
    let closed: Vec<&(String, u64)> = closed
        .iter()
        .filter(|(n, _)| binlog::binlog_seq(n).unwrap_or(0) >= from)
        .collect();
    let rows = pg.sql_in(
        "fleet",
        &format!(
            "SELECT f.name, f.state, f.sha256, o.sha256 FROM binlog_files f LEFT JOIN \
             archive_objects o ON o.source = f.source AND o.file = f.name AND o.kind = 'file' \
             AND o.deleted_at IS NULL WHERE f.source = '{source}' ORDER BY f.seq, f.name"
        ),
    )?;
    let by_name: BTreeMap<&str, Vec<&str>> = rows
        .lines()
        .filter_map(|l| {
            let v: Vec<&str> = l.split('|').collect();
            v.first().map(|n| (*n, v.clone()))
        })
        .collect();
    for (wire, _) in &closed {
        let want = sha256_file(&db.binlog_path(wire))?;
        let name = binlog::timeline_name(timeline, wire);
        let row = by_name
            .get(name.as_str())
            .with_context(|| format!("{name}: no catalog row (rows: {rows})"))?;
        anyhow::ensure!(
            row.get(1) == Some(&"SUCC") && row.get(2) == Some(&want.as_str()),
            "{name}: row {row:?}, the primary's SHA-256 {want}"
        );
        anyhow::ensure!(
            row.get(3) == Some(&want.as_str()),
            "{name}: the store's whole object has SHA-256 {:?}, the primary's {want}",
            row.get(3)
        );
    }
    Ok(closed.len())
}

/// Waits until the catalog and the store hold every closed binlog of the primary
/// ([`assert_catalog_and_store_identical`]).
///
/// # Errors
///
/// Not so within `timeout` (the last difference).
pub fn wait_catalog_and_store_identical(
    pg: &Postgres,
    db: &MariaDb,
    source: &str,
    timeout: Duration,
) -> Result<usize> {
    wait_for(
        "every closed binlog SUCC and whole in the store",
        timeout,
        || assert_catalog_and_store_identical(pg, db, source).map(Some),
    )
}
