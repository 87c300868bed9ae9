//! The node-to-node side of the API's checks: the headers of a call one fleet node
//! forwards to a source's lease owner (`fleet::forward`), and the routes such a call may
//! reach. `auth::guard` accepts a forwarded call only with the fleet's node credential.

use axum::http::{header, HeaderMap, Method};

/// The `Authorization` scheme of a forwarded call: `Authorization: Node <credential>`,
/// the fleet's node credential (in `Authorization`, which HTTP clients' debug logs
/// redact, never a header of its own).
pub const NODE_SCHEME: &str = "Node ";
/// The forwarding node's id.
pub const NODE_HEADER: &str = "x-binlog-node";
/// The caller's name, as the forwarding node authenticated it.
pub const CALLER_HEADER: &str = "x-binlog-caller";
/// The caller's role.
pub const ROLE_HEADER: &str = "x-binlog-caller-role";
/// On an answer: the node that ran the call.
pub const FORWARDED_TO_HEADER: &str = "x-binlog-forwarded-to";

/// The routes whose work only the source's lease owner does: (method, route pattern).
pub const FORWARDED: [(&str, &str); 6] = [
    ("POST", "/v1/sources/{name}/backups"),
    ("POST", "/v1/sources/{name}/backups/retention"),
    ("POST", "/v1/sources/{name}/archive/scrub"),
    ("POST", "/v1/sources/{name}/binlogs/{file}/check"),
    ("POST", "/v1/sources/{name}/restart"),
    ("POST", "/v1/sources/{name}/verifications"),
];

/// Whether `(method, route)` is one of [`FORWARDED`].
pub fn is_forwarded(method: &Method, route: &str) -> bool {
    FORWARDED
        .iter()
        .any(|(m, r)| *m == method.as_str() && *r == route)
}

/// The node credential a call presents (`Authorization: Node <credential>`), if any.
pub fn presented_credential(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(NODE_SCHEME))
        .map(str::trim)
}

/// The source a [`FORWARDED`] route's `path` names (`/v1/sources/{name}/...`); `""`
/// for another path.
pub fn source_of(path: &str) -> &str {
    path.split('/').nth(3).unwrap_or("")
}
