//! Gaps: after ERROR 1236, telling a purge on the primary (a hole in the archive, recorded
//! in the catalog) from a refused position (no gap).

use super::context::SourceCtx;
use super::session;
use archive::local::LocalFiles;

/// After ERROR 1236: when the binlog capture asked for is no longer on the primary,
/// records the hole (from the archive's last file to the primary's oldest) in the
/// catalog. When the primary still lists it, 1236 meant something else (a position past
/// the primary's end: after a crash with sync_binlog=0 a primary can lose a binlog tail
/// the archive already holds; or an event over max_allowed_packet), and no gap is
/// recorded. Returns an explanation to add to the error.
pub(crate) async fn record_gap(
    ctx: &SourceCtx,
    store: &LocalFiles,
    name: &str,
    requested: Option<&str>,
    msg: &str,
) -> Option<String> {
    let last = store
        .list()
        .ok()
        .and_then(|v| v.last().map(|(n, _)| n.clone()));
    let (shared, source) = (&ctx.shared, &ctx.source);
    let (url, timeline) = {
        let up = node::util::lock(&ctx.upstream);
        (up.url(), up.timeline)
    };
    // By stored names, like the archive's.
    let listed = match session::connect(source, &url, &shared.capture).await {
        Ok(mut s) => session::show_binary_logs(&mut s.conn).await.ok().map(|v| {
            v.into_iter()
                .map(|(n, size)| (binlog::timeline_name(timeline, &n), size))
                .collect::<Vec<_>>()
        }),
        Err(_) => None,
    };
    let Some(listed) = listed else {
        return Some("could not list the primary's binlogs to tell whether this is a gap".into());
    };
    if let Some(req) = requested {
        if listed.iter().any(|(n, _)| n == req) {
            return Some(format!(
                "{req} is still on the primary, so this is no purge and no gap was recorded: \
                 the primary refused the position (is its copy shorter than the archive's, \
                 e.g. after a crash with sync_binlog=0?)"
            ));
        }
    }
    let first = listed.first().map(|(n, _)| n.clone());
    let reason = format!(
        "the primary no longer has the binlogs after {} (its oldest is {}): {msg}",
        last.as_deref().unwrap_or("the start"),
        first.as_deref().unwrap_or("unknown")
    );
    let _ = shared
        .catalog
        .record_gap(name, last.as_deref(), first.as_deref(), &reason)
        .await;
    Some(format!(
        "gap recorded: binlogs between {} and {} are missing from the archive; take a new base \
         backup, then POST /v1/sources/{name}/restart with {{\"accept_gap\": true}}",
        last.as_deref().unwrap_or("the start"),
        first.as_deref().unwrap_or("the primary's oldest")
    ))
}
