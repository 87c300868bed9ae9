//! [`Sandbox`]: the set-up the PITR and verifier tests and the demo share: one primary
//! MariaDB ([`MariaDb::start`]: accounts `repl` and `admin`, database `test`), a
//! binlog-server config written for it (its `[[source]]`s with `[source.backup]` /
//! `[source.verify]`, `[pitr]`, a `[backup]` store, as the builder says), and the running
//! `binlog-server serve`, caught up with the primary. Built by [`SandboxBuilder`]; its
//! base backups through the API with [`Sandbox::take_base`]. [`PitrJobs`] deletes the
//! PITR jobs (and so their restored instances) a test started, also when it fails.
//!
//! Layout of the sandbox's directory ([`Sandbox::dir`]): `binlog-server.toml`,
//! `server.log`, `data/` (the server's `data_dir`: `data/<source>/` the archive,
//! `data/pitr/` the scratch instances) and, with [`SandboxBuilder::local_base_store`],
//! `bases/` (the base store). A temporary directory unless [`SandboxBuilder::dir`] names
//! one; dropped after the server and the primary have been stopped by PID.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::config::{source_table, write_config_sources, SourceSpec};
use super::mariadb::{MariaDb, MariaDbOptions};
use super::server::{ApiAccess, ServerProcess};
use super::tools::{free_port, toml_string};
use super::wait::{wait_caught_up, wait_for};

/// How long [`Sandbox::wait_caught_up`] (and the start, unless told not to) waits for
/// each source to reach the primary's position.
pub const CAUGHT_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Sandbox::wait_base`] waits for a base job to finish.
pub const BASE_TIMEOUT: Duration = Duration::from_secs(180);

/// A `[source.backup]` table: `url` is the primary's [`MariaDb::admin_url`], then
/// `method` and, when given, `logical_tool` and `databases`.
#[derive(Clone, Debug)]
pub struct SourceBackup {
    method: String,
    logical_tool: Option<String>,
    databases: Option<String>,
}

impl SourceBackup {
    /// `method = "physical"`.
    pub fn physical() -> SourceBackup {
        SourceBackup::method("physical")
    }

    /// `method = "logical"`.
    pub fn logical() -> SourceBackup {
        SourceBackup::method("logical")
    }

    /// `method = <method>`.
    pub fn method(method: &str) -> SourceBackup {
        SourceBackup {
            method: method.to_string(),
            logical_tool: None,
            databases: None,
        }
    }

    /// `logical_tool = <tool>` (e.g. `mydumper`).
    pub fn logical_tool(mut self, tool: &str) -> SourceBackup {
        self.logical_tool = Some(tool.to_string());
        self
    }

    /// `databases = <pattern>` (e.g. `app`, `%`).
    pub fn databases(mut self, databases: &str) -> SourceBackup {
        self.databases = Some(databases.to_string());
        self
    }

    fn toml(&self, url: &str) -> String {
        let mut t = format!(
            "[source.backup]\nurl = {}\nmethod = {}\n",
            toml_string(url),
            toml_string(&self.method)
        );
        if let Some(tool) = &self.logical_tool {
            t.push_str(&format!("logical_tool = {}\n", toml_string(tool)));
        }
        if let Some(d) = &self.databases {
            t.push_str(&format!("databases = {}\n", toml_string(d)));
        }
        t
    }
}

type Setup = Box<dyn FnOnce(&MariaDb) -> Result<()>>;

/// Builds a [`Sandbox`]; see [`Sandbox::builder`] for the defaults.
pub struct SandboxBuilder {
    server_bin: PathBuf,
    primary: MariaDbOptions,
    sources: Vec<(String, u32)>,
    extra: String,
    pitr_parallel_threads: Option<u32>,
    replication_extra: String,
    local_store: bool,
    /// More key lines of every `[[source]]` table (e.g. `semi_sync = true`).
    source_extra: String,
    /// More key lines of the local store's `[backup]` table.
    backup_extra: String,
    backup: Option<SourceBackup>,
    verify: Option<String>,
    replication: Option<u16>,
    dir: Option<PathBuf>,
    wait_at_start: bool,
    secure_api: bool,
    setup: Vec<Setup>,
}

impl std::fmt::Debug for SandboxBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxBuilder")
            .field("server_bin", &self.server_bin)
            .field("primary", &self.primary)
            .field("sources", &self.sources)
            .field("extra", &self.extra)
            .field("pitr_parallel_threads", &self.pitr_parallel_threads)
            .field("local_store", &self.local_store)
            .field("backup", &self.backup)
            .field("verify", &self.verify)
            .field("replication", &self.replication)
            .field("dir", &self.dir)
            .field("wait_at_start", &self.wait_at_start)
            .field("setup", &self.setup.len())
            .finish()
    }
}

impl SandboxBuilder {
    /// Key lines added to every `[[source]]` table (before its sub-tables), e.g.
    /// `"semi_sync = true\n"`.
    pub fn source_toml(mut self, lines: &str) -> SandboxBuilder {
        self.source_extra.push_str(lines);
        self
    }

    /// Options of the primary (default [`MariaDbOptions::default`]).
    pub fn primary_options(mut self, opts: MariaDbOptions) -> SandboxBuilder {
        self.primary = opts;
        self
    }

    /// The first (main) source: its name and the server_id its fake replica registers
    /// with (default `db1`, 4242).
    pub fn source(mut self, name: &str, server_id: u32) -> SandboxBuilder {
        self.sources[0] = (name.to_string(), server_id);
        self
    }

    /// One more source on the same primary, with the same `[source.backup]` and
    /// `[source.verify]` tables as the first; `server_id` must differ from the others'.
    pub fn also_source(mut self, name: &str, server_id: u32) -> SandboxBuilder {
        self.sources.push((name.to_string(), server_id));
        self
    }

    /// Top-level TOML text placed before the first table (it may hold its own tables,
    /// e.g. `[capture]`), as `extra` of [`write_config_sources`](crate::write_config_sources).
    pub fn extra_toml(mut self, text: &str) -> SandboxBuilder {
        self.extra.push_str(text);
        self
    }

    /// `[source.replication]` of the first source: its fake primary on 127.0.0.1:`port`,
    /// account [`REPL_USER`](crate::REPL_USER) / [`REPL_PASSWORD`](crate::REPL_PASSWORD)
    /// (the primary's own replication account, so that a client's command line is the
    /// same for both).
    pub fn source_replication(mut self, port: u16) -> SandboxBuilder {
        self.replication = Some(port);
        self
    }

    /// The API over HTTPS with a token: a self-signed certificate (`binlog-server tls
    /// self-signed`) and an admin token (`binlog-server token add`) in the sandbox
    /// directory, `[http] tokens_file`/`tls_cert`/`tls_key` in the config; the server
    /// helpers and [`Sandbox::api_access`] use them.
    pub fn secure_api(mut self) -> SandboxBuilder {
        self.secure_api = true;
        self
    }

    /// More `[source.replication]` lines (e.g. `tls_cert = ...`), with
    /// [`SandboxBuilder::source_replication`].
    pub fn replication_toml(mut self, lines: &str) -> SandboxBuilder {
        self.replication_extra.push_str(lines);
        self
    }

    /// `[pitr] parallel_threads = <n>` (the `[pitr]` table always allows loopback
    /// destinations and datadirs below the sandbox directory).
    pub fn pitr_parallel_threads(mut self, n: u32) -> SandboxBuilder {
        self.pitr_parallel_threads = Some(n);
        self
    }

    /// `[backup] store = "file://<dir>/bases"`: the base store in the sandbox's directory
    /// ([`Sandbox::bases_dir`]).
    pub fn local_base_store(mut self) -> SandboxBuilder {
        self.local_store = true;
        self
    }

    /// More key lines for the local store's `[backup]` table (with
    /// [`SandboxBuilder::local_base_store`]), e.g. `encryption_key_file = "..."\n`.
    pub fn backup_toml(mut self, lines: &str) -> SandboxBuilder {
        self.backup_extra.push_str(lines);
        self
    }

    /// Every source's `[source.backup]` table (url: the primary's admin account).
    pub fn source_backup(mut self, backup: SourceBackup) -> SandboxBuilder {
        self.backup = Some(backup);
        self
    }

    /// Every source's `[source.verify]` table: `body` is its key lines, e.g.
    /// `day = "sun"\nstart = "03:00"`.
    pub fn source_verify(mut self, body: &str) -> SandboxBuilder {
        self.verify = Some(body.to_string());
        self
    }

    /// Puts config, log, data and bases in `dir` (created if missing, kept afterwards)
    /// instead of a temporary directory.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> SandboxBuilder {
        self.dir = Some(dir.into());
        self
    }

    /// Whether [`SandboxPrimary::start_server`] waits until every source has caught up
    /// with the primary (default true; [`CAUGHT_UP_TIMEOUT`]).
    pub fn wait_caught_up_at_start(mut self, wait: bool) -> SandboxBuilder {
        self.wait_at_start = wait;
        self
    }

    /// Runs `f` on the primary once it has started, before the config is written and
    /// the server starts (schema, seed rows, a first batch of writes). In call order.
    pub fn setup(mut self, f: impl FnOnce(&MariaDb) -> Result<()> + 'static) -> SandboxBuilder {
        self.setup.push(Box::new(f));
        self
    }

    /// Starts the primary, runs the [`SandboxBuilder::setup`] steps and writes the
    /// config; the server is started by [`SandboxPrimary::start_server`].
    pub fn start_primary(self) -> Result<SandboxPrimary> {
        let dir = match &self.dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
                SandboxDir::Kept(d.clone())
            }
            None => SandboxDir::Temp(tempfile::tempdir().context("create the sandbox directory")?),
        };
        let primary = MariaDb::start(self.primary.clone())?;
        for f in self.setup {
            f(&primary).context("sandbox set-up on the primary")?;
        }
        let http = format!("127.0.0.1:{}", free_port());
        let bases = self.local_store.then(|| dir.path().join("bases"));
        let mut extra = self.extra.clone();
        // Tests restore into instances they start on loopback, datadirs below the
        // sandbox directory.
        extra.push_str(&format!(
            "[pitr]\nallowed_destinations = [\"127.0.0.1:*\"]\nallowed_datadir_roots = [{}]\n",
            toml_string(&dir.path().display().to_string())
        ));
        if let Some(n) = self.pitr_parallel_threads {
            extra.push_str(&format!("parallel_threads = {n}\n"));
        }
        if let Some(b) = &bases {
            extra.push_str(&format!(
                "[backup]\nstore = {}\n{}",
                toml_string(&format!("file://{}", b.display())),
                self.backup_extra
            ));
        }
        let config = write_config_sources(dir.path(), &http, &[], &extra)?;
        let mut text = std::fs::read_to_string(&config)
            .with_context(|| format!("read {}", config.display()))?;
        for (name, server_id) in &self.sources {
            text.push_str(&source_table(&SourceSpec {
                name: name.clone(),
                url: primary.repl_url(),
                server_id: *server_id,
                start: "\"earliest\"".to_string(),
            }));
            text.push_str(&self.source_extra);
            if let Some(b) = &self.backup {
                text.push_str(&b.toml(&primary.admin_url()));
            }
            if let Some(v) = &self.verify {
                text.push_str(&format!("[source.verify]\n{}\n", v.trim()));
            }
            if let Some(port) = self.replication.filter(|_| *name == self.sources[0].0) {
                text.push_str(&format!(
                    "[source.replication]\nlisten = \"127.0.0.1:{port}\"\nuser = {}\npassword = {}\n",
                    toml_string(crate::REPL_USER),
                    toml_string(crate::REPL_PASSWORD)
                ));
                text.push_str(&self.replication_extra);
            }
        }
        let (http, access) = if self.secure_api {
            let (lines, access) = secure_api_files(&self.server_bin, dir.path())?;
            let listen_line = format!("\n[http]\nlisten = {}\n", toml_string(&http));
            text = text.replacen(&listen_line, &format!("{listen_line}{lines}"), 1);
            (format!("https://{http}"), access)
        } else {
            (http, ApiAccess::default())
        };
        std::fs::write(&config, text).with_context(|| format!("write {}", config.display()))?;
        Ok(SandboxPrimary {
            primary,
            server_bin: self.server_bin,
            config,
            http,
            access,
            sources: self.sources.into_iter().map(|(n, _)| n).collect(),
            bases,
            wait_at_start: self.wait_at_start,
            dir,
        })
    }

    /// [`SandboxBuilder::start_primary`], then [`SandboxPrimary::start_server`].
    pub fn start(self) -> Result<Sandbox> {
        self.start_primary()?.start_server()
    }
}

enum SandboxDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl SandboxDir {
    fn path(&self) -> &Path {
        match self {
            SandboxDir::Temp(t) => t.path(),
            SandboxDir::Kept(p) => p,
        }
    }
}

/// A sandbox whose primary runs and whose config is written, before its server starts
/// (for callers that do something in between, like the demo's write load).
pub struct SandboxPrimary {
    primary: MariaDb,
    server_bin: PathBuf,
    config: PathBuf,
    http: String,
    access: ApiAccess,
    sources: Vec<String>,
    bases: Option<PathBuf>,
    wait_at_start: bool,
    // Declared last: removed after the primary has been stopped.
    dir: SandboxDir,
}

impl std::fmt::Debug for SandboxPrimary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxPrimary")
            .field("primary", &self.primary)
            .field("config", &self.config)
            .field("http", &self.http)
            .finish()
    }
}

impl SandboxPrimary {
    /// The primary.
    pub fn primary(&self) -> &MariaDb {
        &self.primary
    }

    /// The config file written for it.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The sandbox's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `binlog-server serve` on the config and, unless told otherwise, waits until
    /// every source has caught up with the primary.
    pub fn start_server(self) -> Result<Sandbox> {
        let server = ServerProcess::start_with(
            &self.server_bin,
            &self.config,
            &self.http,
            self.access.clone(),
        )?;
        let sb = Sandbox {
            server,
            primary: self.primary,
            config: self.config,
            http: self.http,
            access: self.access,
            sources: self.sources,
            bases: self.bases,
            dir: self.dir,
        };
        if self.wait_at_start {
            sb.wait_caught_up()?;
        }
        Ok(sb)
    }
}

/// A finished base job: its id (also the base's id) and `GET /v1/jobs/<id>`.
#[derive(Clone, Debug)]
pub struct BaseJob {
    /// Job and base id.
    pub id: String,
    /// The job as the API shows it (state `completed`).
    pub job: Value,
}

/// One primary MariaDB, a config written for it and the running binlog-server (see the
/// module docs of `harness/sandbox.rs` for the layout). Dropping it stops the server,
/// then the primary (by PID), then removes the temporary directory.
pub struct Sandbox {
    server: ServerProcess,
    primary: MariaDb,
    config: PathBuf,
    http: String,
    access: ApiAccess,
    sources: Vec<String>,
    bases: Option<PathBuf>,
    // Declared last: removed after the server and the primary have been stopped.
    dir: SandboxDir,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("server", &self.server)
            .field("primary", &self.primary)
            .field("config", &self.config)
            .field("sources", &self.sources)
            .finish()
    }
}

impl Sandbox {
    /// A builder for a sandbox running `server_bin` (usually
    /// `env!("CARGO_BIN_EXE_binlog-server-under-test")`). Defaults: a primary with
    /// [`MariaDbOptions::default`], one source `db1` (server_id 4242, start `earliest`),
    /// no `[pitr]`, `[backup]`, `[source.backup]` or `[source.verify]`, a temporary
    /// directory, and a start that waits until the source has caught up.
    pub fn builder(server_bin: impl Into<PathBuf>) -> SandboxBuilder {
        SandboxBuilder {
            server_bin: server_bin.into(),
            primary: MariaDbOptions::default(),
            sources: vec![("db1".to_string(), 4242)],
            extra: String::new(),
            pitr_parallel_threads: None,
            replication_extra: String::new(),
            local_store: false,
            source_extra: String::new(),
            backup_extra: String::new(),
            backup: None,
            verify: None,
            replication: None,
            dir: None,
            wait_at_start: true,
            secure_api: false,
            setup: Vec::new(),
        }
    }

    /// The primary.
    pub fn primary(&self) -> &MariaDb {
        &self.primary
    }

    /// The primary, for stop / restart / kill9.
    pub fn primary_mut(&mut self) -> &mut MariaDb {
        &mut self.primary
    }

    /// The binlog-server process.
    pub fn server(&self) -> &ServerProcess {
        &self.server
    }

    /// The binlog-server process, for stop / kill9.
    pub fn server_mut(&mut self) -> &mut ServerProcess {
        &mut self.server
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The `[http] listen` address, `127.0.0.1:<port>`.
    pub fn http_addr(&self) -> &str {
        &self.http
    }

    /// The token and certificate of a [`SandboxBuilder::secure_api`] sandbox (empty
    /// otherwise), for [`ServerProcess::start_with`] and the CLI's environment.
    pub fn api_access(&self) -> &ApiAccess {
        &self.access
    }

    /// The sandbox's directory (config, server log, data, bases).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's `data_dir` (`<dir>/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// Where the server archives `source`'s binlogs (`<data_dir>/<source>`).
    pub fn archive_dir(&self, source: &str) -> PathBuf {
        self.data_dir().join(source)
    }

    /// The default `[pitr] work_dir`, holding the scratch instances
    /// (`<data_dir>/pitr`).
    pub fn pitr_dir(&self) -> PathBuf {
        self.data_dir().join("pitr")
    }

    /// The local base store, with [`SandboxBuilder::local_base_store`].
    pub fn bases_dir(&self) -> Option<&Path> {
        self.bases.as_deref()
    }

    /// The first source's name.
    pub fn source(&self) -> &str {
        &self.sources[0]
    }

    /// Every source's name, in config order.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Waits (at most [`CAUGHT_UP_TIMEOUT`] each) until every source's durable position
    /// is the primary's current one.
    pub fn wait_caught_up(&self) -> Result<()> {
        for s in &self.sources {
            wait_caught_up(&self.server, &self.primary, s, CAUGHT_UP_TIMEOUT)?;
        }
        Ok(())
    }

    /// `POST /v1/sources/<source>/backups {}`: the job id. An error unless the answer is
    /// 202 with a `job_id`.
    pub fn start_base(&self, source: &str) -> Result<String> {
        let (code, r) = self
            .server
            .post_json(&format!("/v1/sources/{source}/backups"), &json!({}))?;
        if code != 202 {
            bail!("POST /v1/sources/{source}/backups: status {code}, expected 202: {r:#}");
        }
        Ok(r["job_id"]
            .as_str()
            .with_context(|| format!("no job_id in {r:#}"))?
            .to_string())
    }

    /// Waits (at most [`BASE_TIMEOUT`]) until base job `id` is no longer running; an
    /// error (with the job) unless it `completed`.
    pub fn wait_base(&self, id: &str) -> Result<BaseJob> {
        let job = wait_for(&format!("base job {id}"), BASE_TIMEOUT, || {
            let j = self.server.get_json(&format!("/v1/jobs/{id}"))?;
            Ok((j["state"] != "running").then_some(j))
        })?;
        if job["state"] != "completed" {
            bail!(
                "base job {id} ended {}, expected completed: {job:#}",
                job["state"]
            );
        }
        Ok(BaseJob {
            id: id.to_string(),
            job,
        })
    }

    /// A base of `source` through the API: [`Sandbox::start_base`] then
    /// [`Sandbox::wait_base`].
    pub fn take_base(&self, source: &str) -> Result<BaseJob> {
        let id = self.start_base(source)?;
        self.wait_base(&id)
    }
}

/// PITR jobs a test started: [`PitrJobs::delete`] deletes one (`DELETE /v1/pitr/<id>`,
/// which stops and removes the instance the job restored); the ones not deleted yet are
/// deleted when the value drops, so that a failing test leaves no restored instance
/// running for the next one.
pub struct PitrJobs<'a> {
    server: &'a ServerProcess,
    ids: Vec<String>,
}

impl std::fmt::Debug for PitrJobs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PitrJobs").field("ids", &self.ids).finish()
    }
}

impl<'a> PitrJobs<'a> {
    /// No jobs yet, on `server`.
    pub fn new(server: &'a ServerProcess) -> PitrJobs<'a> {
        PitrJobs {
            server,
            ids: Vec::new(),
        }
    }

    /// The server the jobs run on.
    pub fn server(&self) -> &'a ServerProcess {
        self.server
    }

    /// Records a job to delete at the latest when this drops.
    pub fn add(&mut self, id: &str) {
        self.ids.push(id.to_string());
    }

    /// `DELETE /v1/pitr/<id>` now: status and body (non-2xx is not an error here).
    pub fn delete(&mut self, id: &str) -> Result<(u16, Value)> {
        self.ids.retain(|i| i != id);
        self.server.delete(&format!("/v1/pitr/{id}"))
    }
}

impl Drop for PitrJobs<'_> {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            match self.server.delete(&format!("/v1/pitr/{id}")) {
                Ok((code, _)) if (200..300).contains(&code) || code == 404 => {}
                Ok((code, v)) => eprintln!("harness: DELETE /v1/pitr/{id}: {code} {v}"),
                Err(e) => eprintln!("harness: DELETE /v1/pitr/{id}: {e:#}"),
            }
        }
    }
}

/// `<server_bin> <args>`: its stdout, trimmed; an error with its stderr when it fails.
fn run_server_cli(server_bin: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(server_bin)
        .args(args)
        .output()
        .with_context(|| format!("run {}", server_bin.display()))?;
    if !out.status.success() {
        bail!(
            "binlog-server {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn utf8(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// A self-signed certificate and key (`cert.pem`, `key.pem` in `dir`) made by
/// `binlog-server tls self-signed`.
pub fn tls_self_signed(server_bin: &Path, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    run_server_cli(
        server_bin,
        &[
            "tls",
            "self-signed",
            "--cert",
            utf8(&cert)?,
            "--key",
            utf8(&key)?,
        ],
    )?;
    Ok((cert, key))
}

/// A new API token of `role` for `name`, appended to `file` by `binlog-server token add`.
pub fn add_api_token(server_bin: &Path, file: &Path, name: &str, role: &str) -> Result<String> {
    run_server_cli(
        server_bin,
        &[
            "token",
            "add",
            "--file",
            utf8(file)?,
            "--name",
            name,
            "--role",
            role,
        ],
    )
}

/// The certificate, key and tokens file of a secured API in `dir`: the `[http]` lines and
/// the access (an admin token).
fn secure_api_files(server_bin: &Path, dir: &Path) -> Result<(String, ApiAccess)> {
    let (cert, key) = tls_self_signed(server_bin, dir)?;
    let tokens = dir.join("tokens");
    let token = add_api_token(server_bin, &tokens, "sandbox-admin", "admin")?;
    let lines = format!(
        "tokens_file = {}\ntls_cert = {}\ntls_key = {}\n",
        toml_string(utf8(&tokens)?),
        toml_string(utf8(&cert)?),
        toml_string(utf8(&key)?)
    );
    Ok((
        lines,
        ApiAccess {
            token: Some(token),
            ca_cert: Some(cert),
        },
    ))
}
