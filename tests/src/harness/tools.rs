//! Small free-standing helpers: finding external tools ([`require_tool`],
//! [`find_tool`]), a free loopback port, file hashing and tails, the shared binlog corpus
//! directory, TOML quoting, and stopping child processes by PID (SIGTERM, a bounded wait,
//! then SIGKILL), which `mariadb.rs` and `server.rs` use.

use std::fs::{self, File};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The command that installs every external tool the tests need.
pub const SETUP_HINT: &str =
    "run `bash scripts/setup.sh` (installs mariadb-server mariadb-client mariadb-backup mydumper, \
     postgresql, and moto[server] for the S3 tests)";

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

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago, for a server a test is
/// about to start.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`, 32768 and
/// up by default), so that no outgoing connection of another test takes the port
/// between this check and the server's bind (ports from `bind(0)` are ephemeral ones,
/// and did collide); each is handed out once per process, from a start that depends on
/// the process id. Falls back to `bind(0)` when the range is unusually low.
///
/// # Panics
/// When binding 127.0.0.1:0 fails, which means the machine has no usable loopback.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(LOW);
    if span >= 1_000 {
        let seed = std::process::id() % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Ok(port) = u16::try_from(LOW + (seed + n) % span) else {
                continue;
            };
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
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
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) -> Result<()> {
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
pub(crate) fn terminate_child(
    child: &mut Child,
    timeout: Duration,
    what: &str,
) -> Result<ExitStatus> {
    stop_child_with(child, libc::SIGTERM, timeout, what)
}

/// Stops a child by its PID with `signal` (the server's own shutdown signal, e.g.
/// SIGINT for PostgreSQL's fast shutdown), waits up to `timeout`, then SIGKILL and reap.
/// Returns the exit status.
pub(crate) fn stop_child_with(
    child: &mut Child,
    signal: libc::c_int,
    timeout: Duration,
    what: &str,
) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait().with_context(|| format!("poll {what}"))? {
        return Ok(status);
    }
    send_signal(child.id(), signal).with_context(|| format!("signal {signal} to {what}"))?;
    let deadline = Instant::now() + timeout;
    // At most timeout / 50 ms polls.
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().with_context(|| format!("poll {what}"))? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "harness: {what} (pid {}) still running {} s after signal {signal}: SIGKILL",
        child.id(),
        timeout.as_secs()
    );
    kill9_child(child, what)
}

/// SIGKILL a child by its PID and reap it.
pub(crate) fn kill9_child(child: &mut Child, what: &str) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait().with_context(|| format!("poll {what}"))? {
        return Ok(status);
    }
    send_signal(child.id(), libc::SIGKILL).with_context(|| format!("SIGKILL {what}"))?;
    child.wait().with_context(|| format!("wait for {what}"))
}

pub(crate) fn is_root() -> bool {
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

/// Runs `cmd` (stdin closed, stderr captured; stdout as the caller set it) and waits for
/// it at most `timeout`, killing it then. Errors: it cannot start, it exits non-zero
/// (with its stderr), or it did not end in time; `what` names it in the message.
pub fn run_bounded(cmd: &mut std::process::Command, timeout: Duration, what: &str) -> Result<()> {
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("start {what}"))?;
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{what} did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        anyhow::bail!("{what} failed ({status}): {err}");
    }
    Ok(())
}

/// `mariadb-binlog --read-from-remote-server --raw --to-last-log` from `first` on
/// 127.0.0.1:`port` as [`REPL_USER`](crate::REPL_USER), into the directory `out`
/// (created), with `extra` options; at most `timeout` (it must end by itself).
pub fn mariadb_binlog_raw(
    port: u16,
    first: &str,
    out: &Path,
    extra: &[String],
    timeout: Duration,
) -> Result<()> {
    fs::create_dir_all(out)?;
    let mut cmd = mariadb_binlog_remote_raw(port, "--to-last-log", out);
    cmd.args(extra)
        .arg(first)
        .stdout(std::process::Stdio::null());
    run_bounded(
        &mut cmd,
        timeout,
        &format!("mariadb-binlog --raw --to-last-log against port {port}"),
    )
}

/// A `mariadb-binlog --read-from-remote-server --raw --stop-never` client of the server
/// on 127.0.0.1:`port` from binlog `first`, writing into `out` (it never ends by itself),
/// as the replication user; killed (by its PID) when the guard drops.
///
/// # Errors
///
/// The tool cannot be started.
pub fn spawn_mariadb_binlog_follow(port: u16, first: &str, out: &Path) -> Result<KillOnDrop> {
    let child = mariadb_binlog_remote_raw(port, "--stop-never", out)
        .arg(first)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    Ok(KillOnDrop(child))
}

/// `mariadb-binlog --read-from-remote-server --raw <until>` against 127.0.0.1:`port` as
/// the replication user, writing into the directory `out` (the binlog to start from
/// still to be added).
fn mariadb_binlog_remote_raw(port: u16, until: &str, out: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(require_tool("mariadb-binlog"));
    cmd.args([
        "--read-from-remote-server",
        "--host=127.0.0.1",
        &format!("--port={port}"),
        &format!("--user={}", crate::REPL_USER),
        &format!("--password={}", crate::REPL_PASSWORD),
        "--raw",
        until,
        &format!("--result-file={}/", out.display()),
    ]);
    cmd
}

/// A child process killed (by its PID) and reaped when this drops.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `binlog-server` binary next to the running executable (a bench or the demo, built
/// in the same target directory). `built_by` names the script that builds both, for the
/// error.
///
/// # Errors
///
/// The binary is missing: the message says to build it first.
pub fn server_binary(built_by: &str) -> Result<PathBuf> {
    let bin = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("binlog-server");
    if !bin.exists() {
        anyhow::bail!(
            "{} is missing: run `cargo build -p binlog-server` first ({built_by} does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A number field of `/proc/PID/status` (`"Threads:"`, `"VmRSS:"` in KiB), 0 when the
/// process or the field is not there.
pub fn proc_status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
