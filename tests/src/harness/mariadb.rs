//! A throw-away MariaDB primary for the tests: [`MariaDbOptions`] and [`MariaDb`]
//! (install, start, SQL through the `mariadb` CLI, stop / `kill -9` / restart by PID,
//! table checksums, replication from another instance), the accounts it creates, its
//! timeouts, and [`sql_socket`] / [`checksums_socket`] for instances reached only by
//! their Unix socket.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::tools::{file_tail, free_port, is_root, kill9_child, require_tool, terminate_child};
use super::wait::wait_for;

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
    pub(crate) port: u16,
    mariadbd: PathBuf,
    pub(crate) client: PathBuf,
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
        // Each server has its own tmpdir: mariadbd deletes every `#sql*` file in its
        // tmpdir when it starts (sql/sql_base.cc `mysql_rm_tmp_tables`), which in a shared
        // /tmp removed the temporary tables of servers other tests were running (seen in
        // CI as a failed mariadb-install-db and a mydumper "Lost connection").
        let tmpdir = tmp.path().join("tmp");
        fs::create_dir_all(&tmpdir).with_context(|| format!("create {}", tmpdir.display()))?;
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
                .arg(format!("--tmpdir={}", tmpdir.display()))
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

    /// The value of the global status variable `name` (`SHOW GLOBAL STATUS LIKE
    /// 'name'`, e.g. `Rpl_semi_sync_master_status` -> `ON`); an error when the server has
    /// no such variable.
    pub fn status_var(&self, name: &str) -> Result<String> {
        let rows = self.sql_rows(&format!("SHOW GLOBAL STATUS LIKE '{name}'"))?;
        rows.first()
            .and_then(|r| r.get(1).cloned())
            .with_context(|| format!("status variable {name}"))
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

    pub(crate) fn client_command(&self, database: Option<&str>) -> Command {
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
            format!("--tmpdir={}", dir.join("tmp").display()),
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
        let tmpdir = self.tmp.path().join("tmp");
        fs::create_dir_all(&tmpdir).with_context(|| format!("create {}", tmpdir.display()))?;
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

// Data comparison and replicas (base-backup tests).

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

    /// The table checksums of schema `test` ([`MariaDb::table_checksums`]) and a time
    /// (unix seconds) right after them: returns once the wall clock is past that second,
    /// so the next transaction commits in a later one (a PITR target for "as it was").
    pub fn checkpoint(&self) -> Result<(u64, BTreeMap<String, String>)> {
        let sums = self.table_checksums(&["test"])?;
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
        };
        let t = now()?;
        while now()? <= t {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok((t, sums))
    }

    /// Waits until `@@gtid_binlog_pos` has not changed for `quiet` (a replica applied
    /// what it received from a primary that is gone), at most `timeout`.
    pub fn wait_gtid_settled(&self, quiet: Duration, timeout: Duration) -> Result<String> {
        let mut last = self.gtid_binlog_pos()?;
        let mut since = std::time::Instant::now();
        let deadline = std::time::Instant::now() + timeout;
        while since.elapsed() < quiet {
            if std::time::Instant::now() > deadline {
                bail!("@@gtid_binlog_pos still moving after {timeout:?} (at {last})");
            }
            std::thread::sleep(Duration::from_millis(200));
            let now = self.gtid_binlog_pos()?;
            if now != last {
                last = now;
                since = std::time::Instant::now();
            }
        }
        Ok(last)
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
