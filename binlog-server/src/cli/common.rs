//! What every sub-command shares: tracing set-up, config loading, the runtime, and the
//! one HTTP call to the running service with its error printing.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

/// Logs to stderr; `BINLOG_SERVER_LOG` overrides `default` (e.g. "info").
pub(crate) fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BINLOG_SERVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Loads and validates the config; on error prints `<prog>: <error>` and gives exit
/// code 2.
pub(crate) fn load_settings(
    prog: &str,
    config: &Path,
) -> Result<crate::config::Settings, ExitCode> {
    Config::load(config)
        .and_then(|c| c.validate())
        .map_err(|e| {
            eprintln!("{prog}: {e}");
            ExitCode::from(2)
        })
}

/// A multi-threaded tokio runtime; on error prints it and gives exit code 1.
pub(crate) fn runtime(prog: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{prog}: start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// `http://LISTEN` of the service that `config` configures (its `[http] listen`).
pub(crate) fn api_base(config: &Path) -> Result<String, ExitCode> {
    let s = load_settings("binlog-server", config)?;
    Ok(format!("http://{}", s.http_listen))
}

/// One HTTP request to the service with an optional JSON body: `(status, body)`, the
/// body parsed as JSON or kept as a JSON string. Errors: the service cannot be reached
/// (the message says to check that `serve` runs with this config).
pub(crate) fn call(method: &str, url: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let req = agent.request(method, url);
    let r = match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => {
            return Err(format!(
                "{method} {url}: {e} (is `binlog-server serve` running with this config?)"
            ))
        }
    };
    let code = resp.status();
    let text = resp.into_string().map_err(|e| format!("{url}: {e}"))?;
    Ok((
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Prints the service's refusal as `<prog>: <error> (HTTP <code>)` and gives the exit
/// code: `on_422` for 422 (no plan, no base), 2 for other 4xx (bad usage, 409), 1 for 5xx.
pub(crate) fn refused(prog: &str, code: u16, v: &Value, on_422: u8) -> ExitCode {
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
pub(crate) struct Client {
    /// "binlog-server" or "verifier".
    pub prog: &'static str,
    /// Exit code for HTTP 422.
    pub on_422: u8,
}

impl Client {
    /// `method url` with an optional JSON body: the answer's body for a 2xx status.
    /// Otherwise the error is printed and `Err` carries the exit code (1 when the service
    /// cannot be reached, else as [`refused`]).
    pub(crate) fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ExitCode> {
        match call(method, url, body) {
            Ok((code, v)) if (200..300).contains(&code) => Ok(v),
            Ok((code, v)) => Err(refused(self.prog, code, &v, self.on_422)),
            Err(e) => {
                eprintln!("{}: {e}", self.prog);
                Err(ExitCode::FAILURE)
            }
        }
    }
}
