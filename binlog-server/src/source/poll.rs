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
    let SourceCtx {
        shared,
        source,
        status,
        cancel,
        ..
    } = ctx;
    let label = Metrics::label(&source.name);
    let mut session: Option<session::Session> = None;
    loop {
        if session.is_none() {
            session = tokio::select! {
                _ = cancel.cancelled() => return,
                r = session::connect(&source, &shared.capture) => r.ok(),
            };
        }
        if let Some(s) = session.as_mut() {
            let r = async {
                let logs = session::show_binary_logs(&mut s.conn).await?;
                let cur = session::show_master_status(&mut s.conn).await?;
                Ok::<_, mysql_wire::conn::ConnError>((logs, cur))
            }
            .await;
            match r {
                Ok((logs, cur)) => {
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
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(shared.capture.poll_interval) => {}
        }
    }
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
