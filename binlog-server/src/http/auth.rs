//! Who may call what: bearer tokens with roles, and the request checks every route
//! passes before its handler runs (MaxScale's REST API users with admin/basic roles are
//! the model; the roles here are finer).
//!
//! The tokens file's format and parser are [`node::tokens`]; here, the file is re-read
//! when its size or modification time changes (checked at most once per
//! [`RELOAD_CHECK`]): a token is added or revoked without a restart; a file that no
//! longer parses leaves the previous set in force (logged). Tokens are never logged; a
//! caller is logged by its name.
//!
//! # Roles
//!
//! | role | may |
//! |---|---|
//! | `read` | every GET (status, binlogs, lookups, backups, jobs, PITR jobs, reports, `/metrics`), and PITR plans |
//! | `operate` | `read`, and backups, file checks, scrubs, restarts, verifications, PITR into scratch instances |
//! | `admin` | `operate`, and PITR into an existing instance (`"url"`), retention, every DELETE |
//!
//! `/healthz` is open; `/metrics` is open with `[http] metrics_open = true`. Without a
//! tokens file every caller is `admin`, and the listener must be loopback (checked at
//! start).
//!
//! # The checks, in order ([`guard`])
//!
//! 1. `Host` is an IP literal, `localhost`, or one of `[http] hostnames` (else 403: a
//!    DNS-rebinding page names its own domain);
//! 2. an `Origin` header, when present, names this very host and port, and
//!    `Sec-Fetch-Site` is not `cross-site` (else 403: no cross-site request);
//! 3. the route's role ([`required_role`]) against the caller's token: no or unknown
//!    token 401 (with `WWW-Authenticate: Bearer`), too small a role 403; a token limited
//!    to some sources (`sources = [...]` on its line) reaching another source, or a
//!    route that spans every source, 403 ([`source_scope`]);
//! 4. POST, PUT, PATCH and DELETE carry `Content-Type: application/json`, even with an
//!    empty body (else 415): a browser cannot send that cross-site without a CORS
//!    preflight, which this API never answers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use thiserror::Error;

use super::forwarded;
use node::tokens::{Caller, Role, Tokens};
use tracing::warn;

/// How often a request may look whether the tokens file changed.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// The tokens file and what was last read from it.
struct Loaded {
    tokens: Tokens,
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

/// How callers are authenticated.
enum Mode {
    /// No tokens file: loopback only, everyone is admin.
    Open,
    /// Bearer tokens from this file.
    Tokens {
        path: PathBuf,
        loaded: Mutex<Loaded>,
    },
    /// Bearer tokens from `[http] tokens_env`, fixed for the process's life.
    Fixed(Tokens),
}

/// The request checks' settings (built from [`node::config::HttpSettings`]).
pub struct Guard {
    mode: Mode,
    metrics_open: bool,
    hostnames: Vec<String>,
    /// The fleet's node credential, which a call forwarded by another node carries
    /// (`super::forwarded`); `None`: forwarded calls are refused.
    node_credential: Option<node::config::NodeCredential>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Guard {
    /// The checks for a validated `[http]`, with the tokens validation read.
    pub fn new(http: &node::config::HttpSettings) -> Guard {
        let mode = match (&http.tokens, &http.tokens_file) {
            (None, _) => Mode::Open,
            (Some(t), None) => Mode::Fixed(t.clone()),
            (Some(t), Some(path)) => Mode::Tokens {
                loaded: Mutex::new(Loaded {
                    tokens: t.clone(),
                    // Unknown: the first look (a second on) compares with the file as
                    // it is then, so a change since validation is never missed.
                    stamp: None,
                    checked: Instant::now(),
                }),
                path: path.clone(),
            },
        };
        Guard {
            mode,
            metrics_open: http.metrics_open,
            hostnames: http.hostnames.clone(),
            node_credential: None,
        }
    }

    /// Accepts calls forwarded by the other nodes of a fleet that carry `credential`
    /// (`[node] credential_env`).
    pub fn with_node_credential(
        mut self,
        credential: Option<node::config::NodeCredential>,
    ) -> Guard {
        self.node_credential = credential;
        self
    }

    /// Whether callers need a token.
    pub fn authenticated(&self) -> bool {
        !matches!(self.mode, Mode::Open)
    }

    /// The caller a bearer token belongs to; the file is re-read first if it changed.
    fn caller(&self, token: &str) -> Option<Caller> {
        match &self.mode {
            Mode::Open => Some(Caller {
                name: "local".into(),
                role: Role::Admin,
                sources: None,
            }),
            Mode::Tokens { path, loaded } => {
                let mut l = node::util::lock(loaded);
                if l.checked.elapsed() >= RELOAD_CHECK {
                    l.checked = Instant::now();
                    let now = stamp(path);
                    if now != l.stamp {
                        match Tokens::load(path) {
                            Ok(t) => {
                                tracing::info!(path = %path.display(), tokens = t.len(), "tokens file re-read");
                                l.tokens = t;
                                l.stamp = now;
                            }
                            Err(e) => {
                                warn!(error = %e, "tokens file changed but cannot be used; the previous tokens stay in force");
                                l.stamp = now;
                            }
                        }
                    }
                }
                l.tokens.check(token)
            }
            Mode::Fixed(t) => t.check(token),
        }
    }
}

/// The role a route needs, by method and matched route pattern; `None`: open to all.
/// The one table of who may do what (the PITR handler asks [`Role::Admin`] on top for a
/// `"url"` destination).
pub fn required_role(method: &Method, route: &str, metrics_open: bool) -> Option<Role> {
    match (method.as_str(), route) {
        (_, "/healthz") => None,
        (_, "/metrics") if metrics_open => None,
        ("GET" | "HEAD", _) => Some(Role::Read),
        ("POST", "/v1/sources/{name}/pitr/plan") => Some(Role::Read),
        ("POST", "/v1/sources/{name}/backups/retention") => Some(Role::Admin),
        ("POST", _) => Some(Role::Operate),
        ("DELETE", _) => Some(Role::Admin),
        _ => Some(Role::Admin),
    }
}

/// Routes open to a token limited to some sources whose handler checks the source of
/// what it returns (the list shows the token's sources; a job of another source is
/// "not found").
const SCOPED_BY_HANDLER: [&str; 4] = [
    "/v1/sources",
    "/v1/pitr/{id}",
    "/v1/verifications/{id}",
    "/v1/jobs/{id}",
];

/// Why [`source_scope`] refuses a token limited to some sources (a 403).
#[derive(Debug, Error, PartialEq, Eq)]
enum OutOfScope {
    /// The route names a source the token may not use.
    #[error(
        "token {token:?} is limited to the sources {allowed:?}; {source_name:?} is not one of them"
    )]
    OtherSource {
        /// The token's name.
        token: String,
        /// Its sources.
        allowed: Vec<String>,
        /// The source the route names.
        source_name: String,
    },
    /// The route spans every source.
    #[error("token {token:?} is limited to the sources {allowed:?}; {route} spans every source")]
    AllSources {
        /// The token's name.
        token: String,
        /// Its sources.
        allowed: Vec<String>,
        /// The matched route pattern.
        route: String,
    },
}

/// Check 3b of the module doc: a token limited to some sources reaches the routes of its
/// sources (`/v1/sources/{name}/...`, `name` one of them) and [`SCOPED_BY_HANDLER`];
/// every other route spans all sources and is refused. `route` is the matched pattern,
/// `path` the request's path.
fn source_scope(route: &str, path: &str, caller: &Caller) -> Result<(), OutOfScope> {
    let Some(allowed) = &caller.sources else {
        return Ok(());
    };
    let pattern: Vec<&str> = route.split('/').collect();
    if let Some(i) = pattern.iter().position(|p| *p == "{name}") {
        let name = path.split('/').nth(i).unwrap_or("");
        if caller.may_use(name) {
            return Ok(());
        }
        return Err(OutOfScope::OtherSource {
            token: caller.name.clone(),
            allowed: allowed.clone(),
            source_name: name.to_string(),
        });
    }
    if SCOPED_BY_HANDLER.contains(&route) {
        return Ok(());
    }
    Err(OutOfScope::AllSources {
        token: caller.name.clone(),
        allowed: allowed.clone(),
        route: route.to_string(),
    })
}

/// A refusal with the API's JSON error body (a 401 also names the scheme).
pub(crate) fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = (status, Json(json!({ "error": message.into() }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"binlog-server\""),
        );
    }
    r
}

/// The host part of a `Host` header value (`[v6]:port`, `name:port`, `name`), lower case.
fn host_part(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a)
    };
    host.to_ascii_lowercase()
}

/// Why checks 1 and 2 of the module doc refused a request (each a 403).
#[derive(Debug, Error, PartialEq, Eq)]
enum NotThisSite {
    /// `Host` names something else (DNS rebinding).
    #[error(
        "Host {0:?} is not a name of this service (an IP address, localhost or [http] hostnames)"
    )]
    Host(String),
    /// `Origin` is another site.
    #[error("cross-origin request refused: Origin {origin:?} is not this service ({host})")]
    Origin {
        /// The request's Origin.
        origin: String,
        /// The request's Host.
        host: String,
    },
    /// `Sec-Fetch-Site: cross-site`.
    #[error("cross-site request refused (Sec-Fetch-Site: cross-site)")]
    CrossSite,
}

/// Checks 1 and 2 of the module doc.
fn check_host_and_origin(headers: &HeaderMap, hostnames: &[String]) -> Result<(), NotThisSite> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let name = host_part(host);
    let ip_literal = name.parse::<std::net::IpAddr>().is_ok();
    if !(ip_literal || name == "localhost" || hostnames.contains(&name)) {
        return Err(NotThisSite::Host(host.to_string()));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or("");
        if !authority.eq_ignore_ascii_case(host) {
            return Err(NotThisSite::Origin {
                origin: origin.to_string(),
                host: host.to_string(),
            });
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(NotThisSite::CrossSite);
    }
    Ok(())
}

/// Whether a request changes state (and so must carry `Content-Type: application/json`).
fn changes_state(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Check 3's caller from the `Authorization: Bearer` token; the refusal (401) without a
/// known one.
#[allow(clippy::result_large_err)]
fn token_caller(
    g: &Guard,
    headers: &HeaderMap,
    (method, route): (&Method, &str),
) -> Result<Caller, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let caller = match (&g.mode, token) {
        (Mode::Open, _) => g.caller(""),
        (Mode::Tokens { .. } | Mode::Fixed(_), None) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "this API needs a token: send `Authorization: Bearer <token>`",
            ))
        }
        (Mode::Tokens { .. } | Mode::Fixed(_), Some(t)) => g.caller(t),
    };
    caller.ok_or_else(|| {
        warn!(method = %method, route, "request with an unknown token refused");
        refuse(StatusCode::UNAUTHORIZED, "unknown or revoked token")
    })
}

/// Check 3's caller of a call another fleet node forwarded (`super::forwarded`) with
/// the node credential `presented`: it must match this node's (else 401), the route must be one an owner
/// runs (else 403); the caller is the one the forwarding node authenticated, with its
/// role, limited to the call's source.
#[allow(clippy::result_large_err)]
fn forwarded_caller(
    g: &Guard,
    headers: &HeaderMap,
    presented: &str,
    (method, route): (&Method, &str),
    path: &str,
) -> Result<Caller, Response> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let node = text(forwarded::NODE_HEADER).to_string();
    let Some(cred) = &g.node_credential else {
        warn!(node, method = %method, route, "forwarded call refused: this node has no node credential");
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "a call forwarded by another node, but this node has no [node] credential_env",
        ));
    };
    if !cred.matches(presented) {
        warn!(node, method = %method, route, "forwarded call with a wrong node credential refused");
        return Err(refuse(StatusCode::UNAUTHORIZED, "wrong node credential"));
    }
    if !forwarded::is_forwarded(method, route) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("{method} {route} is not a call one node forwards to another"),
        ));
    }
    let Ok(role) = text(forwarded::ROLE_HEADER).parse::<Role>() else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("forwarded call without a valid {}", forwarded::ROLE_HEADER),
        ));
    };
    let name = text(forwarded::CALLER_HEADER);
    let source = forwarded::source_of(path).to_string();
    tracing::info!(node, caller = name, role = %role, method = %method, path, "call forwarded by another node");
    Ok(Caller {
        name: format!("{name} (via {node})"),
        role,
        sources: Some(vec![source]),
    })
}

/// The middleware of every route (see the module doc for the checks and their order).
/// On success the request carries its [`Caller`].
pub async fn guard(State(g): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let method = req.method().clone();
    let Some(need) = required_role(&method, &route, g.metrics_open) else {
        return next.run(req).await;
    };
    if let Err(e) = check_host_and_origin(req.headers(), &g.hostnames) {
        return refuse(StatusCode::FORBIDDEN, e.to_string());
    }
    let caller = if let Some(presented) = forwarded::presented_credential(req.headers()) {
        match forwarded_caller(
            &g,
            req.headers(),
            presented,
            (&method, &route),
            req.uri().path(),
        ) {
            Ok(c) => c,
            Err(refused) => return refused,
        }
    } else {
        match token_caller(&g, req.headers(), (&method, &route)) {
            Ok(c) => c,
            Err(refused) => return refused,
        }
    };
    if caller.role < need {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "{method} {route} needs the {need} role; token {:?} has {}",
                caller.name, caller.role
            ),
        );
    }
    if let Err(e) = source_scope(&route, req.uri().path(), &caller) {
        return refuse(StatusCode::FORBIDDEN, e.to_string());
    }
    if changes_state(&method) && !is_json(req.headers()) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send `Content-Type: application/json` (an empty body is fine)",
        );
    }
    if changes_state(&method) {
        tracing::info!(caller = %caller.name, role = %caller.role, method = %method, path = %req.uri().path(), "API call");
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limited_token_reaches_only_its_sources() {
        let team = Caller {
            name: "team".into(),
            role: Role::Operate,
            sources: Some(vec!["orders".into()]),
        };
        let all = Caller {
            sources: None,
            ..team.clone()
        };
        let ok = |route: &str, path: &str, c: &Caller| source_scope(route, path, c).is_ok();
        assert!(ok("/v1/sources/{name}", "/v1/sources/orders", &team));
        assert!(ok(
            "/v1/sources/{name}/binlogs/{file}/check",
            "/v1/sources/orders/binlogs/b.000001/check",
            &team
        ));
        assert!(!ok(
            "/v1/sources/{name}/pitr",
            "/v1/sources/billing/pitr",
            &team
        ));
        assert!(!ok("/v1/sources/{name}", "/v1/sources/orders2", &team));
        for route in SCOPED_BY_HANDLER {
            assert!(ok(route, route, &team), "{route}");
        }
        let e = source_scope("/metrics", "/metrics", &team).unwrap_err();
        assert!(matches!(e, OutOfScope::AllSources { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("spans every source") && e.contains("orders"),
            "{e}"
        );
        assert!(!ok("/v1/verifications", "/v1/verifications", &team));
        assert!(ok("/metrics", "/metrics", &all));
        assert!(ok("/v1/sources/{name}", "/v1/sources/billing", &all));
    }

    #[test]
    fn roles_by_route() {
        let r = |m: Method, p: &str| required_role(&m, p, false);
        assert_eq!(r(Method::GET, "/healthz"), None);
        assert_eq!(r(Method::GET, "/metrics"), Some(Role::Read));
        assert_eq!(required_role(&Method::GET, "/metrics", true), None);
        assert_eq!(r(Method::GET, "/v1/sources"), Some(Role::Read));
        assert_eq!(
            r(Method::POST, "/v1/sources/{name}/pitr/plan"),
            Some(Role::Read)
        );
        assert_eq!(
            r(Method::POST, "/v1/sources/{name}/backups"),
            Some(Role::Operate)
        );
        assert_eq!(
            r(Method::POST, "/v1/sources/{name}/backups/retention"),
            Some(Role::Admin)
        );
        assert_eq!(r(Method::DELETE, "/v1/pitr/{id}"), Some(Role::Admin));
    }

    #[test]
    fn host_and_origin() {
        let h = |host: &str, origin: Option<&str>| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, host.parse().unwrap());
            if let Some(o) = origin {
                m.insert(header::ORIGIN, o.parse().unwrap());
            }
            check_host_and_origin(&m, &["binlog.example.com".into()])
        };
        assert!(h("127.0.0.1:7480", None).is_ok());
        assert!(h("[::1]:7480", None).is_ok());
        assert!(h("localhost:7480", None).is_ok());
        assert!(h("binlog.example.com", None).is_ok());
        assert!(matches!(
            h("evil.example.net:7480", None),
            Err(NotThisSite::Host(_))
        ));
        assert!(h("127.0.0.1:7480", Some("http://127.0.0.1:7480")).is_ok());
        assert!(matches!(
            h("127.0.0.1:7480", Some("https://evil.example.net")),
            Err(NotThisSite::Origin { .. })
        ));
        assert!(h("127.0.0.1:7480", Some("null")).is_err());
    }
}
