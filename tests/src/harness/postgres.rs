//! A throw-away PostgreSQL server for the fleet's catalog tests ([`Postgres`]): Debian's
//! `initdb` and `postgres` (package `postgresql`, installed by `scripts/setup.sh`) on a
//! fresh data directory in a temp dir, listening on a free 127.0.0.1 port and a socket in
//! that dir, trust authentication for the one superuser `binlog`, stopped by its PID.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, `initdb` and `postgres`
//! run as the unprivileged `postgres` user (created by Debian's package), which then owns
//! the temp dir. The server runs in the foreground as our child (not `pg_ctl start`,
//! which would daemonize it), so it is stopped by its PID like every other process the
//! harness starts: SIGINT (PostgreSQL's "fast" shutdown), a bounded wait, then SIGKILL.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::tools::{file_tail, free_port, is_root, kill9_child, run_bounded, stop_child_with};
use super::wait::wait_for;

/// How long the server may take to accept connections.
const PG_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The superuser the harness creates (trust authentication, no password).
pub const PG_USER: &str = "binlog";

/// A running PostgreSQL server of the harness.
pub struct Postgres {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The directory holding its data directory (`data/`), socket and log.
    dir: PathBuf,
    psql: PathBuf,
    postgres: PathBuf,
    run_as: Option<(u32, u32)>,
    // Declared last: removed after the server was stopped in `Drop`.
    _tmp: tempfile::TempDir,
}

/// Debian's PostgreSQL binary `name`: on `PATH`, else in the newest
/// `/usr/lib/postgresql/<version>/bin`.
///
/// # Panics
/// When it is nowhere, naming `bash scripts/setup.sh`.
pub fn require_pg_tool(name: &str) -> PathBuf {
    if let Some(p) = super::tools::find_tool(name) {
        return p;
    }
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|v| v.join("bin").join(name))
        .find(|p| super::tools::is_executable(p))
        .unwrap_or_else(|| {
            panic!("{name} not found: run `bash scripts/setup.sh` (installs postgresql)")
        })
}

impl Postgres {
    /// Initialises a data directory and starts the server; waits until `SELECT 1`
    /// answers over TCP (60 s at most; the error has the tail of the server's log).
    pub fn start() -> Result<Postgres> {
        let initdb = require_pg_tool("initdb");
        let postgres = require_pg_tool("postgres");
        let psql = require_pg_tool("psql");
        let tmp = tempfile::Builder::new()
            .prefix("postgres-")
            .tempdir()
            .context("create a temporary directory for PostgreSQL")?;
        let dir = tmp.path().to_path_buf();
        let run_as = unprivileged_user()?;
        if let Some((uid, gid)) = run_as {
            chown(&dir, uid, gid)?;
        }
        let mut init = Command::new(&initdb);
        init.args([
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "-U",
            PG_USER,
        ])
        .arg("-D")
        .arg(dir.join("data"))
        .stdout(Stdio::null());
        as_user(&mut init, run_as);
        run_bounded(&mut init, Duration::from_secs(120), "initdb")?;
        let port = free_port();
        let child = spawn_postgres(&postgres, &dir, port, run_as)?;
        let mut pg = Postgres {
            child: Some(child),
            port,
            dir,
            psql,
            postgres,
            run_as,
            _tmp: tmp,
        };
        if let Err(e) = pg.wait_ready() {
            let tail = file_tail(&pg.dir.join("postgres.log"), 30);
            let _ = pg.kill9();
            return Err(e.context(format!("PostgreSQL did not start; its log:\n{tail}")));
        }
        eprintln!(
            "harness: postgres pid {:?} ready on 127.0.0.1:{port} ({})",
            pg.pid(),
            pg.dir.display()
        );
        Ok(pg)
    }

    /// `postgres://binlog@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// `postgres://binlog@127.0.0.1:<port>/<database>` (create it first, e.g. with
    /// [`sql`](Postgres::sql)`("CREATE DATABASE ...")`).
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs `sql` with psql over TCP in the `postgres` database; returns its unaligned,
    /// tuples-only output, one line per row, fields separated by `|`.
    pub fn sql(&self, sql: &str) -> Result<String> {
        self.sql_in("postgres", sql)
    }

    /// [`sql`](Postgres::sql) in `database`.
    pub fn sql_in(&self, database: &str, sql: &str) -> Result<String> {
        let out = Command::new(&self.psql)
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url_for(database),
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .context("run psql")?;
        if !out.status.success() {
            bail!(
                "psql {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn wait_ready(&mut self) -> Result<()> {
        wait_for("PostgreSQL answers SELECT 1", PG_START_TIMEOUT, || {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait().context("poll postgres")? {
                    bail!("postgres exited at start ({status})");
                }
            }
            Ok(self.sql("SELECT 1").ok().filter(|v| v == "1").map(|_| ()))
        })
    }

    /// Stops the server by its PID: SIGINT (fast shutdown), at most 30 s, then SIGKILL.
    pub fn stop(&mut self) -> Result<()> {
        match self.child.take() {
            Some(mut c) => {
                stop_child_with(&mut c, libc::SIGINT, Duration::from_secs(30), "postgres")
                    .map(|_| ())
            }
            None => Ok(()),
        }
    }

    /// Starts the server again on the same data directory and port after
    /// [`stop`](Postgres::stop) or [`kill9`](Postgres::kill9) (a catalog outage that
    /// ends); waits until it answers.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.child = Some(spawn_postgres(
            &self.postgres,
            &self.dir,
            self.port,
            self.run_as,
        )?);
        if let Err(e) = self.wait_ready() {
            let tail = file_tail(&self.dir.join("postgres.log"), 30);
            return Err(e.context(format!("PostgreSQL did not start again; its log:\n{tail}")));
        }
        Ok(())
    }

    /// SIGKILL of the server (a crash of the catalog).
    pub fn kill9(&mut self) -> Result<()> {
        match self.child.take() {
            Some(mut c) => kill9_child(&mut c, "postgres").map(|_| ()),
            None => Ok(()),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "harness: stopping postgres on port {} failed: {e:#}",
                self.port
            );
            let _ = self.kill9();
        }
    }
}

/// Starts `postgres` on `<dir>/data`, port `port` on 127.0.0.1 and a socket in `dir`,
/// logging to `<dir>/postgres.log` (appended), as `run_as` when given.
fn spawn_postgres(
    postgres: &Path,
    dir: &Path,
    port: u16,
    run_as: Option<(u32, u32)>,
) -> Result<Child> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("postgres.log"))
        .context("open postgres.log")?;
    if let Some((uid, gid)) = run_as {
        chown(&dir.join("postgres.log"), uid, gid)?;
    }
    let mut cmd = Command::new(postgres);
    cmd.arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-k")
        .arg(dir)
        .args(["-c", "fsync=off", "-c", "max_connections=200"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicate the log handle")?)
        .stderr(log);
    as_user(&mut cmd, run_as);
    cmd.spawn()
        .with_context(|| format!("start {}", postgres.display()))
}

/// The (uid, gid) of the `postgres` user when the tests run as root (PostgreSQL refuses
/// root); `None` otherwise: the server runs as the tests' own user.
fn unprivileged_user() -> Result<Option<(u32, u32)>> {
    if !is_root() {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").context("user name")?;
    // SAFETY: getpwnam(3) with a valid NUL-terminated name; the result is read at once,
    // before any other call that could overwrite its static storage.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!(
            "running as root, but there is no `postgres` user to run PostgreSQL as: run \
             `bash scripts/setup.sh` (installs postgresql, which creates it)"
        );
    }
    // SAFETY: pw is non-null and points to getpwnam's passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

/// Runs `cmd` as `user` (uid, gid) when given.
fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {} to the postgres user", path.display()))
}
