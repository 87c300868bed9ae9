//! The commands under test as child processes: [`ServerProcess`] (the binlog-server
//! daemon, with small HTTP helpers for its API, and its timeouts) and
//! [`run_snapshotter`] (one run of the snapshotter command).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::tools::{file_tail, is_executable, kill9_child, terminate_child};

/// How long [`ServerProcess::start`] waits for `GET /healthz` to answer 200.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`ServerProcess::stop`] waits after SIGTERM before it sends SIGKILL.
pub const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The binlog-server daemon as a real child process (`<bin> serve --config <config>`).
///
/// Its stdout and stderr are appended to `<config dir>/server.log`. `RUST_LOG` defaults
/// to `info` and `RUST_BACKTRACE` to `1` unless set in the test's environment.
pub struct ServerProcess {
    child: Option<Child>,
    base_url: String,
    log_path: PathBuf,
    agent: ureq::Agent,
    token: Option<String>,
}

/// How a test reaches a secured API: the bearer token its requests carry and the
/// certificate (PEM) an `https://` base URL is verified against.
#[derive(Debug, Clone, Default)]
pub struct ApiAccess {
    /// `Authorization: Bearer <token>` on every request but `/healthz`.
    pub token: Option<String>,
    /// The server's self-signed certificate, trusted for `https://`.
    pub ca_cert: Option<PathBuf>,
}

/// A ureq agent whose TLS trusts `ca` (a PEM file) only.
pub fn agent_trusting(ca: &Path, timeout: Duration) -> Result<ureq::Agent> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("read {}", ca.display()))?
    {
        roots.add(c.with_context(|| format!("parse {}", ca.display()))?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(timeout)
        .tls_config(std::sync::Arc::new(config))
        .build())
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
        ServerProcess::start_with(bin, config, http_addr, ApiAccess::default())
    }

    /// As [`ServerProcess::start`], for an API with tokens and/or TLS: `http_addr` may
    /// be a full `https://host:port` base URL.
    pub fn start_with(
        bin: &Path,
        config: &Path,
        http_addr: &str,
        access: ApiAccess,
    ) -> Result<ServerProcess> {
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
        let agent = match &access.ca_cert {
            Some(ca) => agent_trusting(ca, Duration::from_secs(120))?,
            None => ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
                .build(),
        };
        let mut server = ServerProcess {
            child: Some(child),
            base_url,
            log_path,
            agent,
            token: access.token,
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
        let probe = self.agent.clone();
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

    /// A request with the token (if any) and `Content-Type: application/json`.
    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let r = self
            .agent
            .request(method, url)
            .set("Content-Type", "application/json");
        match &self.token {
            Some(t) => r.set("Authorization", &format!("Bearer {t}")),
            None => r,
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
        let resp = match self.request("GET", &url).call() {
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
        let resp = match self.request("POST", &url).send_json(body) {
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
        let resp = match self.request("DELETE", &url).call() {
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

    /// Freezes the server with SIGSTOP (a process paused, as by a long GC-like stall or
    /// a VM pause): its sockets stay open and nothing runs. [`ServerProcess::resume`]
    /// undoes it (and dropping the handle does).
    pub fn pause(&self) -> Result<()> {
        match self.pid() {
            Some(pid) => super::tools::send_signal(pid, libc::SIGSTOP),
            None => bail!("binlog-server is not running"),
        }
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        match self.pid() {
            Some(pid) => super::tools::send_signal(pid, libc::SIGCONT),
            None => bail!("binlog-server is not running"),
        }
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
        // A paused server would not see SIGTERM until it goes on.
        let _ = self.resume();
        if let Some(mut child) = self.child.take() {
            if let Err(e) = terminate_child(&mut child, SERVER_STOP_TIMEOUT, "binlog-server") {
                eprintln!("harness: stopping binlog-server failed: {e:#}");
            }
        }
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
