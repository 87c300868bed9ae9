//! What every sub-command shares: tracing set-up, config loading, the runtime, and the
//! one HTTP call to the running service with its error printing.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

/// Logs to stderr; `BINLOG_SERVER_LOG` overrides `default` (e.g. "info").
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BINLOG_SERVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Loads and validates the config; on error prints `<prog>: <error>` and gives exit
/// code 2.
pub fn load_settings(prog: &str, config: &Path) -> Result<crate::config::Settings, ExitCode> {
    Config::load(config)
        .and_then(|c| c.validate())
        .map_err(|e| {
            eprintln!("{prog}: {e}");
            ExitCode::from(2)
        })
}

/// Most threads the runtime runs blocking work on (file reads and writes of the
/// archive, index lookups, dump steps); more queue. A bound, so the process's thread
/// count stays flat however many sources and replicas it serves.
pub const MAX_BLOCKING_THREADS: usize = 64;

/// A multi-threaded tokio runtime ([`MAX_BLOCKING_THREADS`]; an idle blocking thread
/// ends after 5 s); on error prints it and gives exit code 1.
pub fn runtime(prog: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| {
            eprintln!("{prog}: start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Environment variable with the API token the commands send (`Authorization: Bearer`).
pub const TOKEN_ENV: &str = "BINLOG_SERVER_TOKEN";
/// Environment variable naming a file that holds the token (first line), instead.
pub const TOKEN_FILE_ENV: &str = "BINLOG_SERVER_TOKEN_FILE";

/// How the commands reach the running service: its base URL (`http://LISTEN`, or
/// `https://` when `[http] tls_cert` is set: that certificate is trusted besides the
/// Mozilla roots), the token from [`TOKEN_ENV`] or [`TOKEN_FILE_ENV`], and the agent.
/// `Display` prints the base URL.
pub struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

/// The rustls client configuration that trusts `cert` (a PEM file) and the Mozilla roots.
fn trusting(cert: &Path) -> Result<rustls::ClientConfig, CliError> {
    client_tls(Some(cert))
}

/// A TLS client configuration trusting the public roots and, when given, the PEM
/// certificates in `extra` (a self-signed `[http] tls_cert`, a fleet's `[node]
/// peer_ca`).
///
/// # Errors
///
/// [`CliError::Pem`] or [`CliError::Trust`]: `extra` cannot be read or holds an unusable
/// certificate; [`CliError::Tls`]: no protocol version is available.
pub fn client_tls(extra: Option<&Path>) -> Result<rustls::ClientConfig, CliError> {
    tls_trusting(true, extra)
}

/// The TLS client configuration of node-to-node calls: trusting only the PEM
/// certificates in `peer_ca` when it is set (a fleet's own CA: no public certificate of
/// another host then passes), else the public roots.
///
/// # Errors
///
/// Those of [`client_tls`].
pub fn peer_tls(peer_ca: Option<&Path>) -> Result<rustls::ClientConfig, CliError> {
    tls_trusting(peer_ca.is_none(), peer_ca)
}

fn tls_trusting(public: bool, extra: Option<&Path>) -> Result<rustls::ClientConfig, CliError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if public {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(cert) = extra {
        let pem = |what: &'static str| {
            move |source| CliError::Pem {
                what,
                path: cert.to_owned(),
                source,
            }
        };
        for c in rustls_pki_types::CertificateDer::pem_file_iter(cert).map_err(pem("read"))? {
            let c = c.map_err(pem("parse"))?;
            roots.add(c).map_err(|source| CliError::Trust {
                path: cert.to_owned(),
                source,
            })?;
        }
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(CliError::Tls)
    .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// Why a command could not talk to the service; it prints this and exits.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The service's certificate (`[http] tls_cert`) cannot be read or parsed.
    #[error("{what} {}: {source}", .path.display())]
    Pem {
        /// "read" or "parse".
        what: &'static str,
        /// The PEM file.
        path: std::path::PathBuf,
        /// The PEM reader's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate cannot be trusted (not a usable CA or leaf).
    #[error("trust {}: {source}", .path.display())]
    Trust {
        /// The PEM file.
        path: std::path::PathBuf,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the protocol versions.
    #[error("{0}")]
    Tls(#[source] rustls::Error),
    /// The token file ([`TOKEN_FILE_ENV`]) cannot be read.
    #[error("{TOKEN_FILE_ENV}={}: {source}", .path.display())]
    TokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The service cannot be reached; check that `serve` runs with this config.
    #[error("{method} {url}: {source} (is `binlog-server serve` running with this config?)")]
    Unreachable {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// The HTTP client's error (boxed: it is large).
        #[source]
        source: Box<ureq::Error>,
    },
    /// The answer's body could not be read.
    #[error("{url}: {source}")]
    Body {
        /// The URL.
        url: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The token the commands send: [`TOKEN_ENV`], else the first line of [`TOKEN_FILE_ENV`].
fn token_from_env() -> Result<Option<String>, CliError> {
    if let Ok(t) = std::env::var(TOKEN_ENV) {
        return Ok(Some(t.trim().to_string()));
    }
    match std::env::var_os(TOKEN_FILE_ENV) {
        None => Ok(None),
        Some(p) => std::fs::read_to_string(&p)
            .map(|t| t.lines().next().map(|l| l.trim().to_string()))
            .map_err(|source| CliError::TokenFile {
                path: p.into(),
                source,
            }),
    }
}

/// The service that `config` configures (its `[http]` table); see [`Api`].
pub fn api_base(config: &Path) -> Result<Api, ExitCode> {
    let s = load_settings("binlog-server", config)?;
    let fail = |m: String| {
        eprintln!("binlog-server: {m}");
        ExitCode::from(2)
    };
    let token = token_from_env().map_err(|e| fail(e.to_string()))?;
    if s.http.tokens.is_some() && token.is_none() {
        return Err(fail(format!(
            "the service needs an API token: set {TOKEN_ENV} (or {TOKEN_FILE_ENV})"
        )));
    }
    let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60));
    let scheme = match &s.http.tls_cert {
        Some(cert) => {
            let tls = trusting(cert).map_err(|e| fail(e.to_string()))?;
            agent = agent.tls_config(std::sync::Arc::new(tls));
            "https"
        }
        None => "http",
    };
    // A wildcard listen is reached on loopback (where the certificate names 127.0.0.1).
    let mut addr = s.http_listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(Api {
        base: format!("{scheme}://{addr}"),
        token,
        agent: agent.build(),
    })
}

/// One HTTP request to the service with an optional JSON body: `(status, body)`, the
/// body parsed as JSON or kept as a JSON string. Every request carries `Content-Type:
/// application/json` (the service requires it of POST and DELETE). Errors: the service
/// cannot be reached ([`CliError::Unreachable`]), or its answer cannot be read.
pub fn call(
    api: &Api,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), CliError> {
    let mut req = api
        .agent
        .request(method, url)
        .set("Content-Type", "application/json");
    if let Some(t) = &api.token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let r = match body {
        Some(b) => req.send_json(b.clone()),
        None if method == "GET" => req.call(),
        None => req.send_string(""),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => {
            return Err(CliError::Unreachable {
                method: method.to_owned(),
                url: url.to_owned(),
                source: Box::new(e),
            })
        }
    };
    let code = resp.status();
    let text = resp.into_string().map_err(|source| CliError::Body {
        url: url.to_owned(),
        source,
    })?;
    Ok((
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Prints the service's refusal as `<prog>: <error> (HTTP <code>)` and gives the exit
/// code: `on_422` for 422 (no plan, no base), 2 for other 4xx (bad usage, 409), 1 for 5xx.
pub fn refused(prog: &str, code: u16, v: &Value, on_422: u8) -> ExitCode {
    eprintln!(
        "{prog}: {} (HTTP {code})",
        v["error"].as_str().unwrap_or("request refused")
    );
    if code == 422 {
        ExitCode::from(on_422)
    } else if code < 500 {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// One command's way of talking to the service: its name (the prefix of its error lines)
/// and its exit code for 422 (see [`refused`]).
pub struct Client {
    /// "binlog-server" or "verifier".
    pub prog: &'static str,
    /// Exit code for HTTP 422.
    pub on_422: u8,
}

impl Client {
    /// `method url` with an optional JSON body: the answer's body for a 2xx status.
    /// Otherwise the error is printed and `Err` carries the exit code (1 when the service
    /// cannot be reached, else as [`refused`]).
    pub fn request(
        &self,
        api: &Api,
        method: &str,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ExitCode> {
        match call(api, method, url, body) {
            Ok((code, v)) if (200..300).contains(&code) => Ok(v),
            Ok((code, v)) => Err(refused(self.prog, code, &v, self.on_422)),
            Err(e) => {
                eprintln!("{}: {e}", self.prog);
                Err(ExitCode::FAILURE)
            }
        }
    }
}
