//! Test harness for binlog-server's end-to-end tests.
//!
//! It provides what the integration tests in `tests/tests/*.rs` need to exercise the
//! real components, never mocks of them:
//!
//! - [`MariaDb`]: a throw-away MariaDB 10.11 primary (`mariadb-install-db` + `mariadbd`)
//!   in a temporary directory on a free loopback port, with binary logging, GTID strict
//!   mode and a replication user `repl`/`replpass`; SQL through the `mariadb` CLI;
//!   stop / `kill -9` / restart by PID.
//! - [`WriteLoad`]: a background write load (INSERT / UPDATE / DELETE transactions) fed
//!   to a long-running `mariadb` CLI child.
//! - [`ServerProcess`]: the binlog-server daemon as a real child process, with small
//!   HTTP helpers for its API.
//! - Helpers: [`require_tool`], [`free_port`], [`sha256_file`], [`corpus_dir`],
//!   [`wait_for`], [`write_config`].
//!
//! Every process the harness starts is stopped by its PID (SIGTERM, a bounded wait, then
//! SIGKILL), also from `Drop`; nothing is ever killed by name. All network traffic stays
//! on 127.0.0.1.
//!
//! Running the tests needs MariaDB 10.11 (`mariadbd`, `mariadb`, `mariadb-install-db`,
//! `mariadb-binlog`, `mariadb-backup`, `mydumper`), installed by `bash scripts/setup.sh`.
//! Tests never skip: a missing tool is a panic naming that command. Run them with
//!
//! ```text
//! bash scripts/setup.sh
//! cargo test -p binlog-tests
//! ```

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// The command that installs every external tool the tests need.
pub const SETUP_HINT: &str =
    "run `bash scripts/setup.sh` (installs mariadb-server mariadb-client mariadb-backup mydumper, \
     and moto[server] for the S3 tests)";

/// User name of the replication account [`MariaDb::start`] creates.
pub const REPL_USER: &str = "repl";
/// Password of the replication account [`MariaDb::start`] creates.
pub const REPL_PASSWORD: &str = "replpass";
/// User name of the administrative TCP account [`MariaDb::start`] creates.
pub const ADMIN_USER: &str = "admin";
/// Password of the administrative TCP account [`MariaDb::start`] creates.
pub const ADMIN_PASSWORD: &str = "adminpass";

/// How long [`MariaDb::start`] / [`MariaDb::restart`] wait for the server to answer.
pub const MARIADB_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`MariaDb::stop`] waits after SIGTERM before it sends SIGKILL.
pub const MARIADB_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`ServerProcess::start`] waits for `GET /healthz` to answer 200.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`ServerProcess::stop`] waits after SIGTERM before it sends SIGKILL.
pub const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// Finds an external tool on `PATH`, then in `/usr/sbin`, `/usr/bin` and
/// `/usr/local/bin`.
///
/// # Panics
/// When the tool is nowhere to be found, with a message naming `bash scripts/setup.sh`.
pub fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| panic!("{name} not found: {SETUP_HINT}"))
}

/// Like [`require_tool`] but returns `None` instead of panicking.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read the
/// port, drop the listener). Another process may take it before the caller binds it.
///
/// # Panics
/// When binding 127.0.0.1:0 fails, which means the machine has no usable loopback.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// SHA-256 of a file's contents, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Directory of the shared corpus of real binlog files (MySQL 8, MariaDB, ...):
/// `$BINLOG_CORPUS_DIR` when set, else `<workspace>/../shared/fixtures/binlogs`.
///
/// # Panics
/// When the directory does not exist, with a message saying where it was looked for.
pub fn corpus_dir() -> PathBuf {
    let (dir, origin) = match std::env::var_os("BINLOG_CORPUS_DIR") {
        Some(d) => (PathBuf::from(d), "from $BINLOG_CORPUS_DIR"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/binlogs"),
            "default <workspace>/../shared/fixtures/binlogs",
        ),
    };
    if !dir.is_dir() {
        panic!(
            "binlog corpus directory {} ({origin}) does not exist: set BINLOG_CORPUS_DIR to \
             the directory holding the fixture binlogs",
            dir.display()
        );
    }
    dir.canonicalize().unwrap_or(dir)
}

/// Polls `f` every 100 ms until it returns `Ok(Some(v))` or `timeout` passes.
///
/// `f` is always called at least once. The error on timeout names `what`, the time
/// waited, and the last `Err` (or that the last answer was `None`).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    const INTERVAL: Duration = Duration::from_millis(100);
    let start = Instant::now();
    // Bounded in time and, as a second guard, in count.
    let max_polls = timeout.as_millis() / INTERVAL.as_millis() + 2;
    let mut last: String;
    let mut polls = 0u128;
    loop {
        polls += 1;
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => last = "not yet (last answer: None)".to_string(),
            Err(e) => last = format!("last error: {e:#}"),
        }
        if start.elapsed() >= timeout || polls >= max_polls {
            bail!(
                "timed out after {:.1} s waiting for {what}: {last}",
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(INTERVAL);
    }
}

/// Last `lines` lines of a text file; an explanation instead when it cannot be read.
pub fn file_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Sends `signal` to `pid`. `ESRCH` (no such process) is not an error.
fn send_signal(pid: u32, signal: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is that of a child we
    // spawned and have not reaped yet, so it cannot have been reused by another process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err).with_context(|| format!("kill({pid}, {signal})"));
        }
    }
    Ok(())
}

/// Stops a child by its PID: SIGTERM, wait up to `timeout`, then SIGKILL and reap.
/// Returns the exit status.
fn terminate_child(child: &mut Child, timeout: Duration, what: &str) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait().with_context(|| format!("poll {what}"))? {
        return Ok(status);
    }
    send_signal(child.id(), libc::SIGTERM).with_context(|| format!("SIGTERM {what}"))?;
    let deadline = Instant::now() + timeout;
    // At most timeout / 50 ms polls.
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().with_context(|| format!("poll {what}"))? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "harness: {what} (pid {}) still running {} s after SIGTERM: SIGKILL",
        child.id(),
        timeout.as_secs()
    );
    kill9_child(child, what)
}

/// SIGKILL a child by its PID and reap it.
fn kill9_child(child: &mut Child, what: &str) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait().with_context(|| format!("poll {what}"))? {
        return Ok(status);
    }
    send_signal(child.id(), libc::SIGKILL).with_context(|| format!("SIGKILL {what}"))?;
    child.wait().with_context(|| format!("wait for {what}"))
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Quotes a string as a TOML basic string.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------------------

/// Settings of a [`MariaDb`] started by the harness.
#[derive(Clone, Debug)]
pub struct MariaDbOptions {
    /// `--server-id` (default 1).
    pub server_id: u32,
    /// `--gtid-domain-id` (default 0).
    pub gtid_domain_id: u32,
    /// `--max-binlog-size` in bytes (default 256 KiB). mariadbd clamps it to at least
    /// 4096 and rounds it down to a multiple of 4096; a file still grows past it when a
    /// single transaction is larger (transactions are never split across files).
    pub max_binlog_size: u64,
    /// `--binlog-checksum` (default `CRC32`; `NONE` is the other useful value).
    pub binlog_checksum: String,
    /// `--binlog-format` (default `ROW`).
    pub binlog_format: String,
    /// Further `mariadbd` arguments, appended last (so they override the above).
    pub extra_args: Vec<String>,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        MariaDbOptions {
            server_id: 1,
            gtid_domain_id: 0,
            max_binlog_size: 256 * 1024,
            binlog_checksum: "CRC32".to_string(),
            binlog_format: "ROW".to_string(),
            extra_args: Vec::new(),
        }
    }
}

/// A MariaDB server started by the harness in its own temporary directory, listening on
/// 127.0.0.1 on a free port and on a Unix socket in that directory.
///
/// Layout of the temporary directory: `data/` (datadir, binlogs `data/mysql-bin.NNNNNN`
/// and `data/mysql-bin.index`), `mysqld.sock`, `mysqld.pid`, `error.log`,
/// `install-db.log`. The directory is removed when the value is dropped, after the
/// server has been stopped.
pub struct MariaDb {
    opts: MariaDbOptions,
    port: u16,
    mariadbd: PathBuf,
    client: PathBuf,
    datadir: PathBuf,
    child: Mutex<Option<Child>>,
    // Declared last: dropped after the server has been stopped in `Drop`.
    tmp: tempfile::TempDir,
}

impl std::fmt::Debug for MariaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MariaDb")
            .field("dir", &self.tmp.path())
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("opts", &self.opts)
            .finish()
    }
}

impl MariaDb {
    /// Initialises a fresh datadir with `mariadb-install-db`, starts `mariadbd` on it,
    /// waits until it answers (60 s at most; the error includes the tail of
    /// `error.log`), then creates the replication user `repl`@`127.0.0.1` and
    /// `repl`@`%` (password `replpass`; REPLICATION SLAVE, REPLICATION CLIENT, BINLOG
    /// MONITOR, SELECT on `*.*`), the administrative account `admin`@`127.0.0.1`
    /// (password `adminpass`, all privileges) and the database `test`.
    pub fn start(opts: MariaDbOptions) -> Result<MariaDb> {
        let mariadbd = require_tool("mariadbd");
        let client = require_tool("mariadb");
        let install_db = require_tool("mariadb-install-db");
        let tmp = tempfile::Builder::new()
            .prefix("mariadb-")
            .tempdir()
            .context("create temporary directory for mariadbd")?;
        let datadir = tmp.path().join("data");
        let install_log_path = tmp.path().join("install-db.log");
        // mariadb-install-db has been seen to fail now and then when several run at once
        // (parallel tests); it is retried on a fresh datadir, and a final failure shows
        // its log.
        const INSTALL_ATTEMPTS: usize = 3;
        for attempt in 1..=INSTALL_ATTEMPTS {
            let _ = fs::remove_dir_all(&datadir);
            let install_log = File::create(&install_log_path)
                .with_context(|| format!("create {}", install_log_path.display()))?;
            let mut cmd = Command::new(&install_db);
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", datadir.display()))
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db");
            if is_root() {
                cmd.arg("--user=root");
            }
            let status = cmd
                .stdin(Stdio::null())
                .stdout(
                    install_log
                        .try_clone()
                        .context("duplicate install-db log handle")?,
                )
                .stderr(install_log)
                .status()
                .with_context(|| format!("run {}", install_db.display()))?;
            if status.success() {
                break;
            }
            let tail = file_tail(&install_log_path, 60);
            if attempt == INSTALL_ATTEMPTS {
                bail!(
                    "mariadb-install-db failed {INSTALL_ATTEMPTS} times ({status}); tail of {}:\n{tail}",
                    install_log_path.display(),
                );
            }
            eprintln!("harness: mariadb-install-db failed ({status}), retrying; log tail:\n{tail}");
            std::thread::sleep(Duration::from_millis(500 * attempt as u64));
        }

        let db = MariaDb::spawn_on(opts, mariadbd, client, datadir, tmp)?;
        db.sql(&format!(
            "CREATE USER IF NOT EXISTS '{u}'@'127.0.0.1' IDENTIFIED BY '{p}';\n\
             CREATE USER IF NOT EXISTS '{u}'@'%' IDENTIFIED BY '{p}';\n\
             GRANT REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR, SELECT ON *.* TO '{u}'@'127.0.0.1';\n\
             GRANT REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR, SELECT ON *.* TO '{u}'@'%';\n\
             CREATE USER IF NOT EXISTS '{a}'@'127.0.0.1' IDENTIFIED BY '{ap}';\n\
             GRANT ALL PRIVILEGES ON *.* TO '{a}'@'127.0.0.1' WITH GRANT OPTION;\n\
             CREATE DATABASE IF NOT EXISTS test;\n",
            u = REPL_USER,
            p = REPL_PASSWORD,
            a = ADMIN_USER,
            ap = ADMIN_PASSWORD
        ))
        .context("create replication user and database test")?;
        Ok(db)
    }

    /// Starts `mariadbd` on a datadir that `fill` populates (for example a restored base):
    /// no `mariadb-install-db`, no users created (they come with the data). `fill` gets
    /// the datadir path (absent; it may create it). Same layout, options and clean-up as
    /// [`MariaDb::start`].
    pub fn start_on_datadir(
        opts: MariaDbOptions,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<MariaDb> {
        let mariadbd = require_tool("mariadbd");
        let client = require_tool("mariadb");
        let tmp = tempfile::Builder::new()
            .prefix("mariadb-restored-")
            .tempdir()
            .context("create temporary directory for mariadbd")?;
        let datadir = tmp.path().join("data");
        fill(&datadir).context("fill the datadir")?;
        if !datadir.is_dir() {
            bail!("the datadir {} was not created", datadir.display());
        }
        MariaDb::spawn_on(opts, mariadbd, client, datadir, tmp)
    }

    fn spawn_on(
        opts: MariaDbOptions,
        mariadbd: PathBuf,
        client: PathBuf,
        datadir: PathBuf,
        tmp: tempfile::TempDir,
    ) -> Result<MariaDb> {
        let mut db = MariaDb {
            opts,
            port: 0,
            mariadbd,
            client,
            datadir,
            child: Mutex::new(None),
            tmp,
        };
        // The port is free when chosen but another process may take it before mariadbd
        // binds it: retry a few times with a new port in that case.
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            db.port = free_port();
            match db.spawn_and_wait() {
                Ok(()) => break,
                Err(e)
                    if attempt < ATTEMPTS
                        && db.error_log_tail(50).contains("Address already in use") =>
                {
                    eprintln!(
                        "harness: mariadbd could not bind port {}, retrying: {e:#}",
                        db.port
                    );
                    // Start the next attempt with a fresh error log.
                    let _ = fs::remove_file(db.error_log_path());
                }
                Err(e) => return Err(e),
            }
        }

        Ok(db)
    }

    /// The options the server was started with.
    pub fn options(&self) -> &MariaDbOptions {
        &self.opts
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PID of the running `mariadbd`, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.lock_child().as_ref().map(|c| c.id())
    }

    /// The temporary directory holding datadir, socket and logs.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The data directory (`<tmp>/data`), which also holds the binlogs.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// Path of a binlog file by its name as SHOW BINARY LOGS lists it
    /// (e.g. `mysql-bin.000001`).
    pub fn binlog_path(&self, file_name: &str) -> PathBuf {
        self.datadir().join(file_name)
    }

    /// Path of the Unix socket.
    pub fn socket_path(&self) -> PathBuf {
        self.tmp.path().join("mysqld.sock")
    }

    /// Path of mariadbd's error log.
    pub fn error_log_path(&self) -> PathBuf {
        self.tmp.path().join("error.log")
    }

    /// Last `lines` lines of mariadbd's error log.
    pub fn error_log_tail(&self, lines: usize) -> String {
        file_tail(&self.error_log_path(), lines)
    }

    /// `mysql://repl:replpass@127.0.0.1:<port>`: the URL a fake replica connects with.
    pub fn repl_url(&self) -> String {
        format!(
            "mysql://{REPL_USER}:{REPL_PASSWORD}@127.0.0.1:{}",
            self.port
        )
    }

    /// `mysql://admin:adminpass@127.0.0.1:<port>`: an account with ALL PRIVILEGES WITH
    /// GRANT OPTION over TCP, for components that administer the server (for example a
    /// PITR target that must be told to replicate). Tests themselves use [`MariaDb::sql`].
    pub fn admin_url(&self) -> String {
        format!(
            "mysql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{}",
            self.port
        )
    }

    /// Runs SQL with the `mariadb` CLI as root over the Unix socket (`-N -B`, statements
    /// on stdin) and returns its stdout. The error includes the CLI's stderr.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let mut child = self
            .client_command(None)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", self.client.display()))?;
        let mut stdin = child.stdin.take().context("mariadb CLI stdin")?;
        let input = sql.to_string();
        // Write from another thread so a large result cannot deadlock against the input.
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            stdin.write_all(input.as_bytes())?;
            stdin.write_all(b"\n")
        });
        let out = child
            .wait_with_output()
            .context("wait for the mariadb CLI")?;
        let write_result = writer
            .join()
            .map_err(|_| anyhow!("mariadb CLI stdin writer panicked"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "mariadb CLI failed ({}) on port {}: {}\nSQL: {}",
                out.status,
                self.port,
                stderr.trim(),
                abbreviate(sql, 2000)
            );
        }
        write_result.context("write SQL to the mariadb CLI")?;
        String::from_utf8(out.stdout).context("mariadb CLI output is not UTF-8")
    }

    /// Like [`MariaDb::sql`], split into rows (lines) of tab-separated columns. NULL
    /// appears as the string `NULL`; with `-B` tabs, newlines and backslashes inside
    /// values are escaped as `\t`, `\n`, `\\`.
    pub fn sql_rows(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        Ok(self
            .sql(sql)?
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect())
    }

    /// Runs a query expected to return exactly one value.
    pub fn sql_value(&self, sql: &str) -> Result<String> {
        let rows = self.sql_rows(sql)?;
        match rows.as_slice() {
            [row] if row.len() == 1 => Ok(row[0].clone()),
            _ => bail!("expected one value from {sql:?}, got {rows:?}"),
        }
    }

    /// `SHOW BINARY LOGS`: (file name, size in bytes), oldest first.
    pub fn binlog_files(&self) -> Result<Vec<(String, u64)>> {
        self.sql_rows("SHOW BINARY LOGS")?
            .into_iter()
            .map(|row| match row.as_slice() {
                [name, size, ..] => Ok((
                    name.clone(),
                    size.parse::<u64>()
                        .with_context(|| format!("SHOW BINARY LOGS size {size:?}"))?,
                )),
                _ => bail!("unexpected SHOW BINARY LOGS row {row:?}"),
            })
            .collect()
    }

    /// `SHOW MASTER STATUS`: (current file, position).
    pub fn master_status(&self) -> Result<(String, u64)> {
        let rows = self.sql_rows("SHOW MASTER STATUS")?;
        match rows.first().map(Vec::as_slice) {
            Some([file, pos, ..]) => Ok((
                file.clone(),
                pos.parse()
                    .with_context(|| format!("SHOW MASTER STATUS position {pos:?}"))?,
            )),
            _ => bail!("unexpected SHOW MASTER STATUS output {rows:?}"),
        }
    }

    /// `@@global.gtid_binlog_pos`, e.g. `0-1-207` (empty before the first transaction).
    pub fn gtid_binlog_pos(&self) -> Result<String> {
        Ok(self
            .sql("SELECT @@global.gtid_binlog_pos")?
            .trim()
            .to_string())
    }

    /// `FLUSH BINARY LOGS`: closes the current binlog (ROTATE) and opens the next.
    pub fn flush_binary_logs(&self) -> Result<()> {
        self.sql("FLUSH BINARY LOGS").map(|_| ())
    }

    /// Stops mariadbd: SIGTERM by PID, waits up to 60 s, SIGKILL after that. A clean
    /// shutdown ends the active binlog with BINLOG_CHECKPOINT and STOP events. Does
    /// nothing when the server is not running.
    pub fn stop(&mut self) -> Result<()> {
        let mut guard = self.lock_child();
        if let Some(mut child) = guard.take() {
            let status = terminate_child(&mut child, MARIADB_STOP_TIMEOUT, "mariadbd")?;
            if !status.success() {
                eprintln!(
                    "harness: mariadbd on port {} exited with {status}",
                    self.port
                );
            }
        }
        Ok(())
    }

    /// Kills mariadbd with SIGKILL (a crash: the active binlog keeps no STOP event and
    /// InnoDB recovers on the next start). Does nothing when the server is not running.
    pub fn kill9(&mut self) -> Result<()> {
        let mut guard = self.lock_child();
        if let Some(mut child) = guard.take() {
            kill9_child(&mut child, "mariadbd")?;
        }
        Ok(())
    }

    /// Stops the server if it runs, then starts it again on the same datadir and port
    /// and waits until it answers. mariadbd opens a new binlog file on every start.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn_and_wait()
    }

    /// Whether the mariadbd child is alive (started and not exited).
    pub fn is_running(&self) -> bool {
        let mut guard = self.lock_child();
        match guard.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves the Option intact; keep using it.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn client_command(&self, database: Option<&str>) -> Command {
        let mut cmd = Command::new(&self.client);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg("--user=root")
            .arg("--batch")
            .arg("--skip-column-names");
        if let Some(db) = database {
            cmd.arg(format!("--database={db}"));
        }
        cmd
    }

    fn mariadbd_args(&self) -> Vec<String> {
        let dir = self.tmp.path();
        let o = &self.opts;
        let mut args = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", dir.join("data").display()),
            format!("--socket={}", self.socket_path().display()),
            format!("--port={}", self.port),
            "--bind-address=127.0.0.1".to_string(),
            format!("--pid-file={}", dir.join("mysqld.pid").display()),
            format!("--log-error={}", self.error_log_path().display()),
            format!("--log-bin={}", dir.join("data").join("mysql-bin").display()),
            format!("--server-id={}", o.server_id),
            format!("--gtid-domain-id={}", o.gtid_domain_id),
            format!("--binlog-format={}", o.binlog_format),
            format!("--binlog-checksum={}", o.binlog_checksum),
            "--gtid-strict-mode=1".to_string(),
            format!("--max-binlog-size={}", o.max_binlog_size),
            "--skip-name-resolve".to_string(),
            "--innodb-buffer-pool-size=128M".to_string(),
            "--innodb-flush-log-at-trx-commit=2".to_string(),
            "--sync-binlog=0".to_string(),
            "--log-slave-updates".to_string(),
        ];
        if is_root() {
            args.push("--user=root".to_string());
        }
        args.extend(o.extra_args.iter().cloned());
        args
    }

    /// Spawns mariadbd and waits until `SELECT 1` works over the socket.
    fn spawn_and_wait(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("mariadbd on port {} is already running", self.port);
        }
        let args = self.mariadbd_args();
        let child = Command::new(&self.mariadbd)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", self.mariadbd.display()))?;
        *self.lock_child() = Some(child);

        let started = Instant::now();
        let ready = self.wait_ready();
        match ready {
            Ok(()) => {
                eprintln!(
                    "harness: mariadbd pid {:?} ready on 127.0.0.1:{} after {:.1} s ({})",
                    self.pid(),
                    self.port,
                    started.elapsed().as_secs_f64(),
                    self.tmp.path().display()
                );
                Ok(())
            }
            Err(e) => {
                let tail = self.error_log_tail(40);
                // Whatever state it is in, do not leave it behind.
                let _ = self.kill9();
                Err(e.context(format!(
                    "mariadbd did not start on port {}; tail of {}:\n{tail}",
                    self.port,
                    self.error_log_path().display()
                )))
            }
        }
    }
}

impl MariaDb {
    /// Polls `SELECT 1` over the socket every 100 ms for at most
    /// [`MARIADB_START_TIMEOUT`]; fails at once when mariadbd exits.
    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + MARIADB_START_TIMEOUT;
        let max_polls = MARIADB_START_TIMEOUT.as_millis() / 100 + 1;
        let mut last = String::from("never polled");
        for _ in 0..max_polls {
            if let Some(child) = self.lock_child().as_mut() {
                if let Some(status) = child.try_wait().context("poll mariadbd")? {
                    bail!("mariadbd exited during start-up: {status}");
                }
            } else {
                bail!("mariadbd is not running");
            }
            let out = self
                .client_command(None)
                .arg("--execute=SELECT 1")
                .stdin(Stdio::null())
                .output()
                .context("run the mariadb CLI")?;
            if out.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "mariadbd did not answer within {} s; last client error: {last}",
            MARIADB_START_TIMEOUT.as_secs()
        )
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "harness: stopping mariadbd on port {} failed: {e:#}",
                self.port
            );
            let _ = self.kill9();
        }
    }
}

fn abbreviate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

// ---------------------------------------------------------------------------------------
// Write load
// ---------------------------------------------------------------------------------------

/// Shape and bounds of a [`WriteLoad`].
#[derive(Clone, Debug)]
pub struct WriteLoadOptions {
    /// Number of tables `test.load_t1 .. test.load_t<tables>` (default 3, at least 1).
    pub tables: usize,
    /// Stop after this many transactions (default 1,000,000).
    pub max_txns: u64,
    /// Stop after this much time (default 120 s).
    pub max_duration: Duration,
    /// Size of each row's payload in bytes (default 200).
    pub row_bytes: usize,
    /// INSERTs per transaction (default 3).
    pub rows_per_txn: usize,
}

impl Default for WriteLoadOptions {
    fn default() -> Self {
        WriteLoadOptions {
            tables: 3,
            max_txns: 1_000_000,
            max_duration: Duration::from_secs(120),
            row_bytes: 200,
            rows_per_txn: 3,
        }
    }
}

/// A background write load on a [`MariaDb`]: a thread feeds transactions to one
/// long-running `mariadb` CLI child (database `test`) through its stdin.
///
/// Each transaction is `BEGIN`, `rows_per_txn` INSERTs into one table (round robin), on
/// every second transaction an UPDATE and on every fifth a DELETE of an earlier row,
/// then `COMMIT`. The CLI stops at the first SQL error, which [`WriteLoad::stop`] and
/// [`WriteLoad::wait`] report with its stderr.
pub struct WriteLoad {
    stop_flag: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<()>>>,
    child: Option<Child>,
    port: u16,
}

impl WriteLoad {
    /// Creates test.load_t{1..tables} (id BIGINT AUTO_INCREMENT PK, k INT, payload
    /// LONGBLOB, updated TIMESTAMP) if missing, then starts the background thread, which
    /// runs until [`WriteLoad::stop`] or the bounds in `opts`. Transactions are counted
    /// when written to the CLI's stdin.
    pub fn start(db: &MariaDb, opts: WriteLoadOptions) -> Result<WriteLoad> {
        if opts.tables == 0 {
            bail!("WriteLoadOptions::tables must be at least 1");
        }
        let mut ddl = String::new();
        for t in 1..=opts.tables {
            ddl.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS test.load_t{t} (\
                 id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
                 k INT NOT NULL, \
                 payload LONGBLOB, \
                 updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP\
                 ) ENGINE=InnoDB;\n"
            ));
        }
        db.sql(&ddl).context("create the write-load tables")?;
        // Rows already present: UPDATE/DELETE target ids above them (a missing id simply
        // matches no row).
        let mut base_ids = Vec::with_capacity(opts.tables);
        for t in 1..=opts.tables {
            let v = db.sql_value(&format!("SELECT COALESCE(MAX(id), 0) FROM test.load_t{t}"))?;
            base_ids.push(
                v.parse::<u64>()
                    .with_context(|| format!("MAX(id) of load_t{t}: {v:?}"))?,
            );
        }

        let mut child = db
            .client_command(Some("test"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {} for the write load", db.client.display()))?;
        let stdin = child.stdin.take().context("write-load CLI stdin")?;
        let stop_flag = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop_flag = Arc::clone(&stop_flag);
            let written = Arc::clone(&written);
            std::thread::Builder::new()
                .name(format!("write-load-{}", db.port))
                .spawn(move || feed_load(stdin, opts, base_ids, &stop_flag, &written))
                .context("spawn the write-load thread")?
        };
        Ok(WriteLoad {
            stop_flag,
            written,
            thread: Some(thread),
            child: Some(child),
            port: db.port,
        })
    }

    /// Transactions written to the CLI so far (committed a moment later).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Whether the feeding thread has finished (bounds reached, stopped, or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops feeding now, closes the CLI's stdin, waits for the CLI to commit what it
    /// was given and exit, and returns the number of transactions committed. An error
    /// when the CLI failed (its stderr is included).
    pub fn stop(mut self) -> Result<u64> {
        self.stop_flag.store(true, Ordering::SeqCst);
        self.finish()
    }

    /// Waits until the load reaches its bounds (`max_txns` or `max_duration`), then
    /// finishes like [`WriteLoad::stop`].
    pub fn wait(mut self) -> Result<u64> {
        self.finish()
    }

    fn finish(&mut self) -> Result<u64> {
        let feed_result = match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("write-load thread panicked"))?,
            None => Ok(()),
        };
        let mut child = self.child.take().context("write load already finished")?;
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            // The CLI's stdin is closed: it exits after the last statement, which ends
            // this read.
            err.read_to_string(&mut stderr)
                .context("read the write-load CLI's stderr")?;
        }
        let status = child.wait().context("wait for the write-load CLI")?;
        let written = self.written.load(Ordering::SeqCst);
        if !status.success() {
            bail!(
                "write-load mariadb CLI on port {} failed ({status}) after {written} \
                 transactions were sent: {}",
                self.port,
                stderr.trim()
            );
        }
        feed_result.with_context(|| {
            format!(
                "write-load feeding failed after {written} transactions; CLI stderr: {}",
                stderr.trim()
            )
        })?;
        Ok(written)
    }
}

impl Drop for WriteLoad {
    fn drop(&mut self) {
        self.stop_flag.store(true, Ordering::SeqCst);
        if self.child.is_some() {
            if let Err(e) = self.finish() {
                eprintln!("harness: write load ended with an error: {e:#}");
            }
        }
    }
}

/// xorshift64*: a small deterministic generator for payloads and ids.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn payload(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

fn feed_load(
    stdin: ChildStdin,
    opts: WriteLoadOptions,
    base_ids: Vec<u64>,
    stop_flag: &AtomicBool,
    written: &AtomicU64,
) -> Result<()> {
    let mut stdin = std::io::BufWriter::new(stdin);
    let deadline = Instant::now() + opts.max_duration;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut inserted = vec![0u64; opts.tables];
    let mut txn = String::new();
    for n in 0..opts.max_txns {
        if stop_flag.load(Ordering::SeqCst) || Instant::now() >= deadline {
            break;
        }
        txn.clear();
        txn.push_str("BEGIN;\n");
        let t = (n % opts.tables as u64) as usize;
        for _ in 0..opts.rows_per_txn {
            let k = rng.next() % 1_000_000;
            txn.push_str(&format!(
                "INSERT INTO load_t{} (k, payload) VALUES ({k}, '{}');\n",
                t + 1,
                rng.payload(opts.row_bytes)
            ));
            inserted[t] += 1;
        }
        if n % 2 == 1 && inserted[t] > 0 {
            let id = base_ids[t] + 1 + rng.next() % inserted[t];
            txn.push_str(&format!(
                "UPDATE load_t{} SET k = k + 1, payload = '{}' WHERE id = {id};\n",
                t + 1,
                rng.payload(opts.row_bytes)
            ));
        }
        if n % 5 == 4 && inserted[t] > 0 {
            let id = base_ids[t] + 1 + rng.next() % inserted[t];
            txn.push_str(&format!("DELETE FROM load_t{} WHERE id = {id};\n", t + 1));
        }
        txn.push_str("COMMIT;\n");
        stdin
            .write_all(txn.as_bytes())
            .and_then(|()| stdin.flush())
            .context("write a transaction to the mariadb CLI")?;
        written.fetch_add(1, Ordering::SeqCst);
    }
    // Dropping the writer closes the pipe: the CLI finishes and exits.
    stdin.flush().context("flush the mariadb CLI's stdin")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// binlog-server as a child process
// ---------------------------------------------------------------------------------------

/// The binlog-server daemon as a real child process (`<bin> serve --config <config>`).
///
/// Its stdout and stderr are appended to `<config dir>/server.log`. `RUST_LOG` defaults
/// to `info` and `RUST_BACKTRACE` to `1` unless set in the test's environment.
pub struct ServerProcess {
    child: Option<Child>,
    base_url: String,
    log_path: PathBuf,
    agent: ureq::Agent,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("pid", &self.pid())
            .field("base_url", &self.base_url)
            .field("log_path", &self.log_path)
            .finish()
    }
}

impl ServerProcess {
    /// Starts `<bin> serve --config <config>` and waits until `GET /healthz` answers
    /// 200 (30 s at most; the error includes the tail of the log). `bin` is usually
    /// `env!("CARGO_BIN_EXE_binlog-server-under-test")`; `http_addr` is the `[http]
    /// listen` address of the config, e.g. `127.0.0.1:8080`.
    pub fn start(bin: &Path, config: &Path, http_addr: &str) -> Result<ServerProcess> {
        if !is_executable(bin) {
            bail!(
                "binlog-server binary {} is missing or not executable",
                bin.display()
            );
        }
        let config_dir = config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let log_path = config_dir.join("server.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicate server log handle")?)
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let base_url = if http_addr.starts_with("http://") || http_addr.starts_with("https://") {
            http_addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{http_addr}")
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build();
        let mut server = ServerProcess {
            child: Some(child),
            base_url,
            log_path,
            agent,
        };
        if let Err(e) = server.wait_healthy() {
            let tail = server.log_tail(60);
            let _ = server.kill9();
            return Err(e.context(format!(
                "binlog-server did not become healthy at {}; tail of {}:\n{tail}",
                server.base_url,
                server.log_path.display()
            )));
        }
        Ok(server)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        let max_polls = SERVER_START_TIMEOUT.as_millis() / 100 + 1;
        let url = self.url("/healthz");
        let probe = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        let mut last = String::from("never polled");
        for _ in 0..max_polls {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("poll binlog-server")? {
                    bail!("binlog-server exited during start-up: {status}");
                }
            }
            match probe.get(&url).call() {
                Ok(resp) if resp.status() == 200 => return Ok(()),
                Ok(resp) => last = format!("status {}", resp.status()),
                Err(ureq::Error::Status(code, resp)) => {
                    last = format!("status {code}: {}", resp.into_string().unwrap_or_default())
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "GET {url} did not answer 200 within {} s; last: {last}",
            SERVER_START_TIMEOUT.as_secs()
        )
    }

    /// `http://<http_addr>`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Path of the server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// PID of the running server, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the server process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.base_url)
        } else {
            format!("{}/{path}", self.base_url)
        }
    }

    /// GET `path`, expecting 2xx and a JSON body. The error on any other status
    /// includes the body.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let (status, body) = self.get_text(path)?;
        if !(200..300).contains(&status) {
            bail!("GET {path}: status {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path}: body is not JSON: {body}"))
    }

    /// GET `path`: status and body as text. A non-2xx status is not an error here.
    pub fn get_text(&self, path: &str) -> Result<(u16, String)> {
        let url = self.url(path);
        let resp = match self.agent.get(&url).call() {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => {
                return Err(anyhow!(e))
                    .with_context(|| format!("GET {url}; log tail:\n{}", self.log_tail(20)))
            }
        };
        let status = resp.status();
        let body = resp
            .into_string()
            .with_context(|| format!("GET {url}: read the body"))?;
        Ok((status, body))
    }

    /// POST `body` as JSON to `path`: status and the response body (JSON; a non-JSON
    /// body is returned as a JSON string, an empty one as null). A non-2xx status is not
    /// an error here.
    pub fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value)> {
        let url = self.url(path);
        let resp = match self.agent.post(&url).send_json(body) {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => {
                return Err(anyhow!(e))
                    .with_context(|| format!("POST {url}; log tail:\n{}", self.log_tail(20)))
            }
        };
        let status = resp.status();
        let text = resp
            .into_string()
            .with_context(|| format!("POST {url}: read the body"))?;
        let value = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        Ok((status, value))
    }

    /// DELETE `path`: status and the JSON body (non-2xx is not an error here).
    pub fn delete(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        let url = self.url(path);
        let resp = match self.agent.delete(&url).call() {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => return Err(anyhow!(e)).with_context(|| format!("DELETE {url}")),
        };
        let status = resp.status();
        let text = resp
            .into_string()
            .with_context(|| format!("DELETE {url}: read the body"))?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        ))
    }

    /// Kills the server with SIGKILL (a crash) and reaps it.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            kill9_child(&mut child, "binlog-server")?;
        }
        Ok(())
    }

    /// Stops the server: SIGTERM, waits up to 30 s, then SIGKILL. Returns an error when
    /// it needed SIGKILL or exited with a failure status after SIGTERM.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let status = terminate_child(&mut child, SERVER_STOP_TIMEOUT, "binlog-server")?;
            if !status.success() {
                bail!(
                    "binlog-server exited with {status} after SIGTERM; log tail:\n{}",
                    self.log_tail(30)
                );
            }
        }
        Ok(())
    }

    /// Last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path, lines)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = terminate_child(&mut child, SERVER_STOP_TIMEOUT, "binlog-server") {
                eprintln!("harness: stopping binlog-server failed: {e:#}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------------------

/// One `[[source]]` of a binlog-server config, for [`write_config_sources`].
#[derive(Clone, Debug)]
pub struct SourceSpec {
    /// Source name (also the directory name under `data_dir`).
    pub name: String,
    /// Primary URL, e.g. [`MariaDb::repl_url`].
    pub url: String,
    /// server_id the fake replica registers with (must differ from the primary's).
    pub server_id: u32,
    /// `start` as TOML value text, e.g. `"\"earliest\""`.
    pub start: String,
}

/// Writes `<dir>/binlog-server.toml` with `data_dir = "<dir>/data"`, `extra` (top-level
/// TOML text, placed before the first table so that its keys stay top-level; it may
/// also hold its own tables), `[http] listen = http_addr`, and one `[[source]]` per
/// (name, url, server_id) with `start = "earliest"`. Returns the file's path.
pub fn write_config(
    dir: &Path,
    http_addr: &str,
    sources: &[(&str, &str, u32)],
    extra: &str,
) -> Result<PathBuf> {
    let specs: Vec<SourceSpec> = sources
        .iter()
        .map(|(name, url, server_id)| SourceSpec {
            name: name.to_string(),
            url: url.to_string(),
            server_id: *server_id,
            start: "\"earliest\"".to_string(),
        })
        .collect();
    write_config_sources(dir, http_addr, &specs, extra)
}

/// Like [`write_config`], with each source's `start` given as TOML value text.
pub fn write_config_sources(
    dir: &Path,
    http_addr: &str,
    sources: &[SourceSpec],
    extra: &str,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let data_dir = dir.join("data");
    let data_dir = data_dir
        .to_str()
        .with_context(|| format!("data dir {} is not UTF-8", data_dir.display()))?;
    let mut text = format!("data_dir = {}\n", toml_string(data_dir));
    if !extra.trim().is_empty() {
        text.push('\n');
        text.push_str(extra.trim_end());
        text.push('\n');
    }
    text.push_str(&format!("\n[http]\nlisten = {}\n", toml_string(http_addr)));
    for s in sources {
        text.push_str(&format!(
            "\n[[source]]\nname = {}\nurl = {}\nserver_id = {}\nstart = {}\n",
            toml_string(&s.name),
            toml_string(&s.url),
            s.server_id,
            s.start.trim()
        ));
    }
    let path = dir.join("binlog-server.toml");
    fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Reads a file line by line (for logs): the lines that contain `needle`.
pub fn grep_file(path: &Path, needle: &str) -> Result<Vec<String>> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("read {}", path.display()))?;
        if line.contains(needle) {
            out.push(line);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Capture assertions shared by the end-to-end tests.

/// File offset of the low byte of the first FORMAT_DESCRIPTION's flags: the
/// LOG_EVENT_BINLOG_IN_USE_F bit the primary sets in its active (or crash-closed) file
/// and clears in the copy it streams.
pub const IN_USE_FLAG_OFFSET: usize = 4 + 17;

/// Waits until the source's durable position equals the primary's current position
/// (SHOW MASTER STATUS), i.e. the archive has caught up.
pub fn wait_caught_up(
    server: &ServerProcess,
    db: &MariaDb,
    source: &str,
    timeout: Duration,
) -> Result<()> {
    wait_for(&format!("source {source} to catch up"), timeout, || {
        let (file, pos) = db.master_status()?;
        let s = server.get_json(&format!("/v1/sources/{source}"))?;
        let ok = s["durable_file"].as_str() == Some(file.as_str())
            && s["durable_pos"].as_u64() == Some(pos);
        if ok {
            Ok(Some(()))
        } else {
            Err(anyhow!(
                "primary at {file}:{pos}, archive at {}:{} (state {}, last_error {})",
                s["durable_file"],
                s["durable_pos"],
                s["state"],
                s["last_error"]
            ))
        }
    })
}

/// Compares the archive with the primary's binlogs: every closed primary file (all but
/// the last listed) must have the same SHA-256 as the stored one; the primary's active
/// file must start with the stored file's bytes (the IN_USE flag byte excepted).
/// Returns the number of closed files compared.
pub fn assert_archive_identical(db: &MariaDb, archive: &Path) -> Result<usize> {
    let files = db.binlog_files()?;
    let Some(((active, _), closed)) = files.split_last() else {
        bail!("the primary lists no binlogs");
    };
    for (name, _) in closed {
        let ours = archive.join(name);
        let theirs = db.binlog_path(name);
        let a = sha256_file(&ours).with_context(|| format!("archived {name}"))?;
        let b = sha256_file(&theirs).with_context(|| format!("primary's {name}"))?;
        if a != b {
            let x = fs::read(&ours)?;
            let y = fs::read(&theirs)?;
            let first = x.iter().zip(y.iter()).position(|(p, q)| p != q);
            bail!(
                "{name} differs: archive {} bytes sha {a}, primary {} bytes sha {b}, first difference at {first:?}",
                x.len(),
                y.len()
            );
        }
    }
    let ours =
        fs::read(archive.join(active)).with_context(|| format!("archived active {active}"))?;
    let mut theirs = fs::read(db.binlog_path(active))?;
    if ours.len() > theirs.len() {
        bail!(
            "archived {active} ({} bytes) is longer than the primary's ({})",
            ours.len(),
            theirs.len()
        );
    }
    theirs.truncate(ours.len());
    let mut ours = ours;
    for v in [&mut ours, &mut theirs] {
        if let Some(b) = v.get_mut(IN_USE_FLAG_OFFSET) {
            *b &= !1;
        }
    }
    if ours != theirs {
        let first = ours.iter().zip(theirs.iter()).position(|(p, q)| p != q);
        bail!("archived active {active} is not a prefix of the primary's: first difference at {first:?}");
    }
    Ok(closed.len())
}

/// Waits until every binlog of `source` except the ACTIVE one is SUCC; fails early when
/// one is FAIL for longer than `timeout` allows (the error shows its info).
pub fn wait_all_succ(
    server: &ServerProcess,
    source: &str,
    timeout: Duration,
) -> Result<serde_json::Value> {
    wait_for(
        &format!("all closed binlogs of {source} to be SUCC"),
        timeout,
        || {
            let v = server.get_json(&format!("/v1/sources/{source}/binlogs"))?;
            let files = v["files"].as_array().cloned().unwrap_or_default();
            // Only the newest file may be ACTIVE; every other one must have been checked.
            let last = files.len().saturating_sub(1);
            let pending: Vec<String> = files
                .iter()
                .enumerate()
                .filter(|(i, f)| f["state"] != "SUCC" && !(f["state"] == "ACTIVE" && *i == last))
                .map(|(_, f)| format!("{} {} {}", f["name"], f["state"], f["info"]))
                .collect();
            if pending.is_empty() && !files.is_empty() {
                Ok(Some(v))
            } else {
                Err(anyhow!("not yet SUCC: {pending:?}"))
            }
        },
    )
}

// ---------------------------------------------------------------------------------------
// Data comparison and replicas (base-backup tests)
// ---------------------------------------------------------------------------------------

impl MariaDb {
    /// `CHECKSUM TABLE` of every base table in `databases`, keyed `db.table`.
    pub fn table_checksums(
        &self,
        databases: &[&str],
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let list = databases
            .iter()
            .map(|d| format!("'{}'", d.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(",");
        let tables = self.sql_rows(&format!(
            "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables \
             WHERE table_schema IN ({list}) AND table_type = 'BASE TABLE' ORDER BY 1"
        ))?;
        let mut out = std::collections::BTreeMap::new();
        if tables.is_empty() {
            return Ok(out);
        }
        let names: Vec<String> = tables
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect();
        for row in self.sql_rows(&format!("CHECKSUM TABLE {}", names.join(", ")))? {
            if let [t, c] = row.as_slice() {
                out.insert(t.clone(), c.clone());
            }
        }
        Ok(out)
    }

    /// Makes this server a replica of `primary` by GTID (`master_use_gtid=slave_pos`,
    /// user `repl`) and starts it.
    pub fn replicate_from(&self, primary: &MariaDb) -> Result<()> {
        self.sql(&format!(
            "CHANGE MASTER TO master_host='127.0.0.1', master_port={}, master_user='{REPL_USER}', \
             master_password='{REPL_PASSWORD}', master_use_gtid=slave_pos; START SLAVE;",
            primary.port()
        ))?;
        Ok(())
    }

    /// Stops replication, then replicates until exactly `gtid_pos` (`START SLAVE UNTIL
    /// master_gtid_pos`) and waits (at most `timeout`) until `@@gtid_slave_pos` equals it.
    /// The replica must be behind `gtid_pos`.
    pub fn replicate_until(&self, gtid_pos: &str, timeout: Duration) -> Result<()> {
        self.sql(&format!(
            "STOP SLAVE; START SLAVE UNTIL master_gtid_pos = '{gtid_pos}';"
        ))?;
        wait_for(&format!("replica reaches {gtid_pos}"), timeout, || {
            let pos = self.sql_value("SELECT @@gtid_slave_pos")?;
            Ok((pos == gtid_pos).then_some(()))
        })
        .with_context(|| {
            format!(
                "replica status:\n{}",
                self.sql("SHOW SLAVE STATUS\\G").unwrap_or_default()
            )
        })
    }
}

/// Runs `snapshotter <args>` (the binary under test) and returns (exit code, stdout,
/// stderr). `envs` are added to its environment.
pub fn run_snapshotter(
    bin: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<(i32, String, String)> {
    let out = Command::new(bin)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", bin.display()))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs `sql` with the `mariadb` CLI over a Unix socket as root (a restored or private
/// instance), in batch mode; returns rows of tab-separated columns.
pub fn sql_socket(socket: &str, sql: &str) -> Result<Vec<Vec<String>>> {
    let out = Command::new(require_tool("mariadb"))
        .args([
            "--no-defaults",
            &format!("--socket={socket}"),
            "--user=root",
            "--batch",
            "--skip-column-names",
            "-e",
            sql,
        ])
        .output()?;
    if !out.status.success() {
        bail!("{sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// `CHECKSUM TABLE` of every base table of schema `test` over a Unix socket as root:
/// `` `db`.`table` `` → checksum.
pub fn checksums_socket(socket: &str) -> Result<BTreeMap<String, String>> {
    let tables = sql_socket(
        socket,
        "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables \
         WHERE table_schema = 'test' AND table_type = 'BASE TABLE' ORDER BY 1",
    )?;
    let names: Vec<String> = tables
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect();
    let mut out = BTreeMap::new();
    for row in sql_socket(socket, &format!("CHECKSUM TABLE {}", names.join(", ")))? {
        if let [t, c] = row.as_slice() {
            out.insert(t.clone(), c.clone());
        }
    }
    Ok(out)
}
