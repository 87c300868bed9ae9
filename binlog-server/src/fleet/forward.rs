//! One job, one runner: a manual request for a job that only a source's lease owner
//! runs (a base, retention, a scrub, a file check, a restart, a verification), asked of
//! a fleet node that does not hold the lease, is forwarded to the owner.
//!
//! # The protocol (node to node, over TLS)
//!
//! The node that got the call checks the caller's token and role as for any call
//! (`http::auth::guard`), finds the owner (the catalog's lease row and the owner's
//! `[node] advertise` URL), and sends it the same method, path, query and body with:
//!
//! | header | value |
//! |---|---|
//! | `Authorization: Node <credential>` | the fleet's node credential (`[node] credential_env`), never a user's token |
//! | `x-binlog-node` | the forwarding node's id |
//! | `x-binlog-caller`, `x-binlog-caller-role` | the caller's name and role, as the first node checked them |
//!
//! The owner accepts a forwarded call only with the right credential (compared in
//! constant time; else 401) and only on a route of [`FORWARDED`](crate::http::forwarded::FORWARDED); it acts for the
//! caller with that role, limited to the call's source, and logs both the node and the
//! caller, as the first node does. A forwarded call that reaches a node which does not
//! hold the lease either (it moved meanwhile) is refused with 409, never forwarded again.
//! The owner's answer (status and JSON body) goes back to the caller, with
//! `x-binlog-forwarded-to` naming the owner.
//!
//! Without a credential on this node, or while no node holds the lease, the call is
//! refused (409 naming the owner and its URL, or 503: retry) instead of running here.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tracing::{info, warn};

use super::lease::LeaseHandle;
use crate::http::auth::refuse;
use crate::http::forwarded::{
    is_forwarded, source_of, CALLER_HEADER, FORWARDED_TO_HEADER, NODE_HEADER, NODE_SCHEME,
    ROLE_HEADER,
};
use node::config::{NodeCredential, NodeSettings};
use node::tokens::Caller;

/// How long a forwarded call may take (a base's start answers at once: the job runs on).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// This node's side of forwarding: its id, the credential, and the HTTPS client that
/// trusts the other nodes.
pub struct Forwarder {
    node: String,
    credential: Option<NodeCredential>,
    agent: ureq::Agent,
    /// The catalog: who holds a lease, and where that node is.
    catalog: Arc<catalog::Catalog>,
    /// This node's leases.
    leases: LeaseHandle,
}

/// Why a [`Forwarder`] cannot be built (a definite stop at start: fix `[node]`).
#[derive(Debug, thiserror::Error)]
pub enum ForwarderError {
    /// `[node] peer_ca` cannot be used.
    #[error("[node] peer_ca: {0}")]
    PeerCa(#[source] node::cli::CliError),
}

impl Forwarder {
    /// The forwarder of a validated `[node]`, calling the other nodes with `tls` (from
    /// [`node::cli::client_tls`] with `peer_ca`, built at start so that a bad file stops
    /// the start: [`ForwarderError`]), over `catalog`, for the node whose leases
    /// `leases` holds.
    pub fn new(
        n: &NodeSettings,
        tls: rustls::ClientConfig,
        catalog: Arc<catalog::Catalog>,
        leases: LeaseHandle,
    ) -> Forwarder {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(FORWARD_TIMEOUT)
            // A redirect would carry the credential elsewhere (and turn a POST into a GET).
            .redirects(0)
            .tls_config(Arc::new(tls))
            .build();
        Forwarder {
            node: n.id.clone(),
            credential: n.credential.clone(),
            agent,
            catalog,
            leases,
        }
    }
}

/// The middleware of every route, after the guard: a call of [`FORWARDED`](crate::http::forwarded::FORWARDED) for a
/// source this fleet node does not hold goes to the owner (module docs); every other
/// call runs here.
pub async fn forward(State(fwd): State<Arc<Forwarder>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    if !is_forwarded(req.method(), &route) {
        return next.run(req).await;
    }
    let source = source_of(req.uri().path()).to_string();
    if fwd.leases.held().contains_key(&source) {
        return next.run(req).await;
    }
    if let Some(from) = req.headers().get(NODE_HEADER) {
        let from = from.to_str().unwrap_or("?");
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "node {from} forwarded this call for {source:?}, but this node ({}) does not \
                 hold its lease either (it moved): retry",
                fwd.node
            ),
        );
    }
    let (owner, url) = match owner_of(&fwd.catalog, &source).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(cred) = &fwd.credential else {
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "{source:?} is captured by node {owner} ({url}); this node has no [node] \
                 credential_env to forward the call: ask {owner}"
            ),
        );
    };
    send(&fwd, cred, (&owner, &url), req).await
}

/// The live owner of `source`'s lease and its advertise URL; else the refusal to send.
async fn owner_of(catalog: &catalog::Catalog, source: &str) -> Result<(String, String), Response> {
    let unavailable = |e: catalog::CatalogError| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the catalog does not answer, so the owner of {source:?} is unknown: {e}; retry"
            ),
        )
    };
    let (now, rows) = catalog.list_leases().await.map_err(unavailable)?;
    let owner = rows
        .iter()
        .find(|l| l.source == source)
        .and_then(|l| l.live_owner(now))
        .map(str::to_string);
    let Some(owner) = owner else {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no node holds the lease of {source:?} now (a takeover is under way): retry in a few seconds"),
        ));
    };
    let (_, nodes) = catalog.list_nodes().await.map_err(unavailable)?;
    match nodes.into_iter().find(|n| n.id == owner) {
        Some(n) => Ok((owner, n.advertise)),
        None => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("node {owner} holds the lease of {source:?} but has no row in the catalog's nodes: retry"),
        )),
    }
}

/// Sends `req` to `owner` at `url` as a forwarded call; its answer, or 502.
async fn send(
    fwd: &Forwarder,
    cred: &NodeCredential,
    (owner, url): (&str, &str),
    req: Request,
) -> Response {
    // The guard runs first and always names the caller; without one, nothing is sent.
    let Some((name, role)) = req
        .extensions()
        .get::<Caller>()
        .map(|c| (c.name.clone(), c.role.to_string()))
    else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no authenticated caller to forward the call for",
        );
    };
    if !url.starts_with("https://") {
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "node {owner} holds the lease but advertises {url}: the node credential goes \
                 only over https; ask {owner}"
            ),
        );
    }
    let method = req.method().as_str().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let body = match axum::body::to_bytes(req.into_body(), crate::http::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    info!(caller = %name, role = %role, owner, url, method = %method, path = %path, "forwarding the call to the source's lease owner");
    let target = format!("{url}{path}");
    let request = fwd
        .agent
        .request(&method, &target)
        .set("Content-Type", "application/json")
        .set("Authorization", &format!("{NODE_SCHEME}{}", cred.secret()))
        .set(NODE_HEADER, &fwd.node)
        .set(CALLER_HEADER, &name)
        .set(ROLE_HEADER, &role);
    let answer = tokio::task::spawn_blocking(move || {
        let resp = match request.send_bytes(&body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        resp.into_string()
            .map(|text| (status, text))
            .map_err(|e| e.to_string())
    })
    .await;
    let (status, text) = match answer {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            warn!(owner, url, error = %e, "forwarding to the owner failed");
            return refuse(
                StatusCode::BAD_GATEWAY,
                format!("forwarding to node {owner} at {url} failed: {e}; retry"),
            );
        }
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(owner) {
        r.headers_mut().insert(FORWARDED_TO_HEADER, v);
    }
    r
}
