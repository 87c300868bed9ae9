//! Scratch MariaDB instances that PITR (and later the verifier) restore into and run.
//!
//! # Layout
//!
//! `<dir>/data` (datadir), `<dir>/mysqld.sock`, `<dir>/mysqld.pid`, `<dir>/error.log`,
//! `<dir>/tmp` (the instance's own `--tmpdir`: mariadbd deletes every `#sql*` file in its
//! tmpdir when it starts (sql/sql_base.cc `mysql_rm_tmp_tables`), so a shared `/tmp`
//! would let a starting scratch server remove the temporary tables of any other server on
//! the host).
//! `<dir>` is created 0700: the socket of a private instance accepts anyone who can
//! reach it.
//!
//! # Two ways to run
//!
//! - **private**: `--skip-grant-tables --skip-networking`: reachable only through the
//!   socket in `<dir>`, where the service logs in without knowing the restored server's
//!   accounts (a physical base carries the primary's `mysql.*`). The service then runs
//!   `FLUSH PRIVILEGES`, which turns the grant tables on for every later login, so the
//!   replication applier can replay `GRANT`/`CREATE USER` statements.
//! - **serving**: a normal start on `127.0.0.1:<port>` with the restored accounts, the
//!   state a finished PITR leaves the instance in.
//!
//! Both run without a binlog, with `--skip-slave-start`, and with the parallel applier
//! settings from `[pitr]`. Processes are stopped by PID (SIGTERM, then SIGKILL after
//! 120 s). Nothing here is durable state: a service crash leaves the process running; its
//! PID is in the PITR report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_wire::conn::{Conn, ConnError, ConnectOptions};
use node::config::{PitrConfig, SourceUrl, TlsMode};
use thiserror::Error;

/// Why a scratch instance could not be prepared, started or stopped. None is retried
/// here: the PITR job that met it fails with it (the texts name the path, the exit
/// status and the error log's tail, for the operator).
#[derive(Debug, Error)]
pub enum InstanceError {
    /// A file-system step (`what`: "create", "chmod 0700", "run", "start") failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// The step.
        what: &'static str,
        /// The directory or program.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No port could be bound on 127.0.0.1.
    #[error("find a free port: {0}")]
    NoFreePort(#[source] std::io::Error),
    /// `mariadb-install-db` exited with an error; its output's tail (≤ 4000 bytes).
    #[error("mariadb-install-db failed ({status}): {output}")]
    InstallDb {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its stderr and stdout.
        output: String,
    },
    /// mariadbd exited before it accepted connections.
    #[error("mariadbd exited at start ({status}); error log {}:\n{tail}", log.display())]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The error log.
        log: PathBuf,
        /// The error log's last lines written by this start (≤ 30).
        tail: String,
    },
    /// mariadbd did not accept connections in time (it was killed).
    #[error("mariadbd did not accept connections within {timeout:?}; error log:\n{tail}")]
    NoAnswer {
        /// The time it had.
        timeout: Duration,
        /// The error log's last lines written by this start (≤ 30).
        tail: String,
    },
    /// A PID that is not a process id.
    #[error("bad pid {0}")]
    BadPid(u32),
    /// SIGTERM could not be sent (other than "no such process").
    #[error("signal mariadbd {pid}: {source}")]
    Signal {
        /// The process.
        pid: u32,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the stopped process failed.
    #[error("wait for mariadbd {pid}: {source}")]
    Wait {
        /// The process.
        pid: u32,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// `root` over the Unix socket `socket`, no password: how the service reaches the
/// instances it runs (privately with skip-grant-tables, or as root@localhost).
pub fn socket_url(socket: &Path) -> SourceUrl {
    SourceUrl {
        host: socket.display().to_string(),
        port: 0,
        user: "root".into(),
        password: None,
        tls: TlsMode::Disabled,
        ssl_ca: None,
    }
}

/// An administrative session for restore and replication set-up: 30 s to connect,
/// up to an hour per statement (a long CHECK TABLE or checksum).
///
/// # Errors
///
/// The [`ConnError`] (the server's ERR packet, TLS, authentication, I/O): the callers
/// fail their phase or job with it.
pub async fn connect_admin(url: &SourceUrl) -> Result<Conn, ConnError> {
    Conn::connect(&ConnectOptions {
        url: url.clone(),
        connect_timeout: Duration::from_secs(30),
        query_timeout: Duration::from_secs(3600),
    })
    .await
}

/// How an instance is started.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Instance directory (see the module doc).
    pub dir: PathBuf,
    /// TCP port when serving.
    pub port: u16,
    /// server_id; must differ from the server_ids in the replayed binlogs.
    pub server_id: u32,
    /// `[pitr]` settings (parallel applier, buffer pool, extra arguments).
    pub pitr: PitrConfig,
    /// The mariadbd program.
    pub mariadbd: PathBuf,
}

impl InstanceSpec {
    /// `<dir>/data`.
    pub fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `<dir>/mysqld.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// `<dir>/error.log`.
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// `<dir>/tmp`: the instance's private `--tmpdir` (see the module doc).
    pub fn tmpdir(&self) -> PathBuf {
        self.dir.join("tmp")
    }
}

/// A running mariadbd.
pub struct Instance {
    /// How it was started.
    pub spec: InstanceSpec,
    /// Process id.
    pub pid: u32,
    child: tokio::process::Child,
}

/// Whether mariadbd must be told `--user=root` (it refuses to run as root otherwise).
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A port that was free a moment ago on 127.0.0.1.
///
/// # Errors
///
/// When no port can be bound.
pub fn free_port() -> Result<u16, InstanceError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(InstanceError::NoFreePort)?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(InstanceError::NoFreePort)
}

/// The last `n` lines of a file ("" when unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Creates `<dir>` (0700) and an empty system schema in `<dir>/data` with
/// `mariadb-install-db` (for logical bases, which need a running server to load into).
///
/// # Errors
///
/// The tool's failure with its output tail.
pub async fn install_db(install_db: &Path, spec: &InstanceSpec) -> Result<(), InstanceError> {
    prepare_dir(&spec.dir)?;
    prepare_dir(&spec.tmpdir())?;
    let mut cmd = tokio::process::Command::new(install_db);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", spec.datadir().display()))
        .arg(format!("--tmpdir={}", spec.tmpdir().display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db");
    if is_root() {
        cmd.arg("--user=root");
    }
    let out = cmd.output().await.map_err(|source| InstanceError::Io {
        what: "run",
        path: install_db.to_path_buf(),
        source,
    })?;
    if !out.status.success() {
        let mut msg = String::from_utf8_lossy(&out.stderr).into_owned();
        msg.push_str(&String::from_utf8_lossy(&out.stdout));
        return Err(InstanceError::InstallDb {
            status: out.status,
            output: last_bytes(&msg, 4000).to_owned(),
        });
    }
    Ok(())
}

/// The end of `s`, at most `max` bytes, starting on a character boundary (a tool's
/// output decoded lossily holds 3-byte U+FFFD characters: a byte offset may fall inside
/// one).
fn last_bytes(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s.get(start..).unwrap_or_default()
}

/// Creates `dir` with mode 0700.
///
/// # Errors
///
/// The I/O error with the path.
pub fn prepare_dir(dir: &Path) -> Result<(), InstanceError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what| {
        move |source| InstanceError::Io {
            what,
            path: dir.to_path_buf(),
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("create"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io("chmod 0700"))
}

impl Instance {
    /// Starts mariadbd on `spec`'s datadir, private (socket only, no grant checks) or
    /// serving (127.0.0.1:port, normal logins), and waits up to `timeout` until its socket
    /// accepts connections.
    ///
    /// # Errors
    ///
    /// When mariadbd exits or does not answer in time; the message has the error log's
    /// tail.
    pub async fn start(
        spec: &InstanceSpec,
        private: bool,
        timeout: Duration,
    ) -> Result<Instance, InstanceError> {
        prepare_dir(&spec.tmpdir())?;
        let p = &spec.pitr;
        let mut args = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", spec.datadir().display()),
            format!("--socket={}", spec.socket().display()),
            format!("--pid-file={}", spec.dir.join("mysqld.pid").display()),
            format!("--log-error={}", spec.error_log().display()),
            format!("--tmpdir={}", spec.tmpdir().display()),
            format!("--server-id={}", spec.server_id),
            format!("--relay-log={}", spec.datadir().join("relay-bin").display()),
            "--skip-slave-start".into(),
            "--skip-name-resolve".into(),
            format!("--innodb-buffer-pool-size={}", p.buffer_pool),
            "--innodb-flush-log-at-trx-commit=2".into(),
            format!("--slave-parallel-threads={}", p.parallel_threads),
            format!("--slave-parallel-mode={}", p.parallel_mode),
        ];
        if private {
            args.push("--skip-grant-tables".into());
            args.push("--skip-networking".into());
        } else {
            args.push(format!("--port={}", spec.port));
            args.push("--bind-address=127.0.0.1".into());
        }
        if is_root() {
            args.push("--user=root".into());
        }
        args.extend(p.mariadbd_args.iter().cloned());
        let _ = std::fs::remove_file(spec.socket());
        let log_start = std::fs::metadata(spec.error_log())
            .map(|m| m.len())
            .unwrap_or(0);
        let mut child = tokio::process::Command::new(&spec.mariadbd)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|source| InstanceError::Io {
                what: "start",
                path: spec.mariadbd.clone(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(InstanceError::Exited {
                    status,
                    log: spec.error_log(),
                    tail: log_since(&spec.error_log(), log_start),
                });
            }
            if tokio::net::UnixStream::connect(spec.socket()).await.is_ok() {
                return Ok(Instance {
                    spec: spec.clone(),
                    pid,
                    child,
                });
            }
            if t0.elapsed() > timeout {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(InstanceError::NoAnswer {
                    timeout,
                    tail: log_since(&spec.error_log(), log_start),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after 120 s.
    ///
    /// # Errors
    ///
    /// When it cannot be signalled or waited for.
    pub async fn stop(mut self) -> Result<(), InstanceError> {
        stop_pid(self.pid)?;
        let pid = self.pid;
        let waited = match tokio::time::timeout(Duration::from_secs(120), self.child.wait()).await {
            Ok(r) => r,
            Err(_) => {
                let _ = self.child.start_kill();
                self.child.wait().await
            }
        };
        waited
            .map(|_| ())
            .map_err(|source| InstanceError::Wait { pid, source })
    }

    /// Leaves the process running (its PID is reported) and forgets it.
    pub fn detach(self) -> u32 {
        self.pid
    }
}

/// Sends SIGTERM to `pid`.
///
/// # Errors
///
/// When the signal cannot be sent (other than "no such process").
pub fn stop_pid(pid: u32) -> Result<(), InstanceError> {
    if pid == 0 {
        return Ok(());
    }
    let pid_t = libc::pid_t::try_from(pid).map_err(|_| InstanceError::BadPid(pid))?;
    // SAFETY: kill has no memory preconditions; pid was checked to be a positive pid_t.
    let r = unsafe { libc::kill(pid_t, libc::SIGTERM) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(InstanceError::Signal { pid, source: e });
        }
    }
    Ok(())
}

/// True while a process with `pid` runs `mariadbd` on `datadir` (checked in
/// `/proc/<pid>/cmdline`, so a reused PID is never signalled).
pub fn is_our_mariadbd(pid: u32, datadir: &Path) -> bool {
    let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = format!("--datadir={}", datadir.display());
    cmd.split(|&b| b == 0).any(|a| a == want.as_bytes())
}

fn log_since(path: &Path, from: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let mut v = Vec::new();
        let _ = f.take(64 * 1024).read_to_end(&mut v);
        s = String::from_utf8_lossy(&v).into_owned();
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_lossily_decoded_message_is_cut_on_a_character_boundary() {
        let bad = String::from_utf8_lossy(&[b'a', 0xff, 0xfe, b'b']).into_owned();
        assert_eq!(bad, "a\u{fffd}\u{fffd}b");
        for max in 0..=bad.len() + 1 {
            let t = last_bytes(&bad, max);
            assert!(bad.ends_with(t) && t.len() <= max, "{max}: {t:?}");
        }
        assert_eq!(
            last_bytes(&bad, 2),
            "b",
            "a cut inside U+FFFD moves forward"
        );
    }
}
