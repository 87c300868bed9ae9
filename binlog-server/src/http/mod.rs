//! The HTTP listener of the API: plain or TLS (rustls), with the limits a public
//! listener needs, and the request checks of [`auth`].
//!
//! Each accepted connection takes one of `[http] max_connections` permits; without a
//! free permit it is closed at once (a slowloris cannot starve the file descriptors the
//! capture needs). The TLS handshake and every request's headers must arrive within
//! `[http] header_timeout`, or the connection is closed. Connections are HTTP/1.1 with
//! keep-alive; on shutdown each finishes its current request (5 s at most).
//!
//! Every error answer is JSON `{"error": "..."}`: [`json_errors`] rewrites the plain-text
//! rejections axum and hyper produce (400, 404, 405, 413, 415, 422) into that shape, and
//! [`JsonBody`] is the one body extractor (an empty body is the type's default).

pub mod auth;
pub mod forwarded;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use node::config::HttpSettings;

/// Largest request body accepted, bytes (every body here is a small JSON object).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How long a connection may finish its request once shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `cancel` fires (see the module doc for the limits).
/// Accept errors (EMFILE and the like) are logged and retried after 50 ms: they never end
/// the listener.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    http: &HttpSettings,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(http.max_connections));
    let tls = http.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let header_timeout = http.header_timeout;
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "HTTP connection refused: max_connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let io = match tls {
                None => tokio_util::either::Either::Left(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => tokio_util::either::Either::Right(s),
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = req.map(Body::new);
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    app.clone().oneshot(req)
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                }
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(DRAIN * 2, tracker.wait()).await;
    Ok(())
}

/// Rewrites an error answer that is not JSON into `{"error": "<its text or reason>"}`
/// (axum's and hyper's own rejections are plain text or empty).
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string(),
    };
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{text}: see the README's API section for the methods of this path")
        }
        _ => text,
    };
    let body = serde_json::to_vec(&json!({ "error": message })).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// A JSON request body: an empty body is `T::default()`, anything else must parse as
/// `T` (400 for bad JSON, 422 for the wrong shape, 413 beyond [`MAX_BODY_BYTES`]; the
/// `Content-Type` is checked before, by [`auth::guard`]).
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(T::default()));
        }
        let err =
            |status: StatusCode, m: String| (status, Json(json!({ "error": m }))).into_response();
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match T::deserialize(&mut de).and_then(|v| de.end().map(|()| v)) {
            Ok(v) => Ok(JsonBody(v)),
            Err(e) if e.is_data() => Err(err(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("request body: {e}"),
            )),
            Err(e) => Err(err(
                StatusCode::BAD_REQUEST,
                format!("request body is not JSON: {e}"),
            )),
        }
    }
}
