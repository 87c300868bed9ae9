//! The poller of a source: SHOW BINARY LOGS and SHOW MASTER STATUS on one connection,
//! kept in the [`PrimaryView`] the checker reads, and the lag (bytes, seconds) for the
//! status and the metrics.

use node::util::lock;

use std::sync::Arc;
use std::time::Instant;
use tracing::warn;

use super::context::SourceCtx;
use super::session;
use node::status::PrimaryView;
use node::status::{Metrics, StatusCell};

/// Polls SHOW BINARY LOGS and SHOW MASTER STATUS every `poll_interval`, keeping one
/// connection open; updates the lag in the status and the metrics. Cancellation-safe.
pub async fn poll_primary(ctx: SourceCtx, view: Arc<std::sync::Mutex<PrimaryView>>) {
    let ctx_upstream = ctx.clone();
    let SourceCtx {
        shared,
        source,
        status,
        cancel,
        ..
    } = ctx;
    let label = Metrics::label(&source.name);
    let mut session: Option<session::Session> = None;
    // The upstream generation the session was opened for.
    let mut session_gen = 0;
    loop {
        super::failover::retry_timeline_records(&ctx_upstream);
        let (generation, follows) = {
            let up = lock(&ctx_upstream.upstream);
            (up.generation, up.follows())
        };
        if generation != session_gen {
            // Capture switched servers: poll the new one.
            session = None;
            session_gen = generation;
        }
        if session.is_none() {
            let url = super::failover::current_url(&ctx_upstream);
            session = tokio::select! {
                _ = cancel.cancelled() => return,
                r = session::connect(&source, &url, &shared.capture) => r.ok(),
            };
        }
        if let Some(s) = session.as_mut() {
            let r = async {
                let logs = session::show_binary_logs(&mut s.conn).await?;
                let cur = session::show_master_status(&mut s.conn).await?;
                Ok::<_, mysql_wire::conn::ConnError>((logs, cur))
            }
            .await;
            // Only the timeline's own server speaks for it: another server at the address
            // (before capture switched), or a switch during the queries, publishes nothing
            // (its file names would be taken for the timeline's).
            let (timeline, same) = {
                let up = lock(&ctx_upstream.upstream);
                let same = up.generation == session_gen
                    && up.server_id.is_none_or(|id| id == s.primary_server_id);
                (up.timeline, same)
            };
            match r {
                // Reconnect at the next poll, to the current server.
                Ok(_) if !same => session = None,
                Ok((logs, cur)) => {
                    // By stored names (the current server's timeline), like the archive's.
                    let logs: Vec<(String, u64)> = logs
                        .into_iter()
                        .map(|(n, s)| (binlog::timeline_name(timeline, &n), s))
                        .collect();
                    let cur = cur.map(|(n, p)| (binlog::timeline_name(timeline, &n), p));
                    let (behind, secs) = lag(&status, &logs);
                    {
                        let mut st = status.lock();
                        st.primary_file = cur.as_ref().map(|c| c.0.clone());
                        st.primary_pos = cur.as_ref().map(|c| c.1);
                        st.bytes_behind = behind;
                        st.seconds_behind = secs;
                    }
                    if let Some(b) = behind {
                        shared
                            .metrics
                            .lag_bytes
                            .get_or_create(&label)
                            .set(i64::try_from(b).unwrap_or(i64::MAX));
                    }
                    if let Some(s) = secs {
                        shared
                            .metrics
                            .lag_seconds
                            .get_or_create(&label)
                            .set(i64::try_from(s).unwrap_or(i64::MAX));
                    }
                    let mut v = lock(&view);
                    v.timeline = timeline;
                    v.binlogs = logs;
                    v.current = cur;
                    v.at = Some(Instant::now());
                }
                Err(e) => {
                    warn!(source = %source.name, error = %e, "polling the primary failed");
                    session = None;
                }
            }
        }
        if let (true, Some(s)) = (follows, session.as_mut()) {
            // A switchover demotes the primary without closing its stream.
            match s.conn.query_value("SELECT @@GLOBAL.read_only").await {
                Ok(Some(v)) if v == "1" || v.eq_ignore_ascii_case("ON") => {
                    lock(&ctx_upstream.upstream).demoted.notify_waiters();
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(source = %source.name, error = %e, "reading the primary's read_only failed");
                    session = None;
                }
            }
        }
        if let (true, Some(s)) = (source.semi_sync, session.as_mut()) {
            if let Err(e) = poll_semi_sync(s, &status, &shared.metrics, &label).await {
                warn!(source = %source.name, error = %e, "reading the primary's semi-sync status failed");
                session = None;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(shared.capture.poll_interval) => {}
        }
    }
}

/// The primary's semi-sync status variables (MariaDB and MySQL's old names, MySQL
/// 8.0.26+'s `source` names) into the status and the metrics; a change from ON to OFF
/// is a fallback to async, counted.
async fn poll_semi_sync(
    s: &mut session::Session,
    status: &StatusCell,
    metrics: &Metrics,
    label: &node::status::SourceLabel,
) -> Result<(), mysql_wire::conn::ConnError> {
    let rs = s
        .conn
        .query(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status', \
             'Rpl_semi_sync_master_yes_tx', 'Rpl_semi_sync_master_no_tx', \
             'Rpl_semi_sync_source_status', 'Rpl_semi_sync_source_yes_tx', \
             'Rpl_semi_sync_source_no_tx')",
        )
        .await?;
    let mut on = None;
    let (mut yes, mut no) = (None, None);
    for row in &rs.rows {
        let (Some(Some(name)), Some(Some(value))) = (row.first(), row.get(1)) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if name.ends_with("_status") {
            on = Some(value.eq_ignore_ascii_case("ON"));
        } else if name.ends_with("_yes_tx") {
            yes = value.parse().ok();
        } else if name.ends_with("_no_tx") {
            no = value.parse().ok();
        }
    }
    let mut st = status.lock();
    let view = st.semi_sync.get_or_insert_with(Default::default);
    if view.primary_semi_sync == Some(true) && on == Some(false) {
        view.fallbacks += 1;
        view.last_fallback_at = Some(catalog::unix_now());
        metrics.semi_sync_fallbacks.get_or_create(label).inc();
    }
    view.primary_semi_sync = on;
    view.primary_yes_tx = yes;
    view.primary_no_tx = no;
    if let Some(on) = on {
        metrics
            .semi_sync_primary_on
            .get_or_create(label)
            .set(i64::from(on));
    }
    Ok(())
}

/// Bytes and seconds behind, from the primary's list and our durable position.
pub(crate) fn lag(status: &StatusCell, logs: &[(String, u64)]) -> (Option<u64>, Option<u64>) {
    let st = status.lock();
    let (Some(file), Some(pos)) = (st.durable_file.clone(), st.durable_pos) else {
        // Nothing archived yet: everything the primary lists is still to come.
        return (Some(logs.iter().map(|(_, s)| s).sum()), None);
    };
    let mut behind = 0u64;
    let mut seen = false;
    for (name, size) in logs {
        if *name == file {
            seen = true;
            behind += size.saturating_sub(pos);
        } else if seen || binlog::binlog_order(name) > binlog::binlog_order(&file) {
            behind += size;
        }
    }
    let secs = if behind == 0 {
        Some(0)
    } else {
        st.last_event_time.map(|t| {
            let now = catalog::unix_now();
            u64::try_from(now - i64::from(t)).unwrap_or(0)
        })
    };
    (Some(behind), secs)
}
