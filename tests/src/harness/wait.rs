//! Waiting on conditions: the generic poller [`wait_for`] and the waits built on it
//! that the end-to-end tests share ([`wait_caught_up`]: the archive has reached the
//! primary's position; [`wait_all_succ`]: every closed binlog has been checked SUCC).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::mariadb::MariaDb;
use super::server::ServerProcess;

/// Polls `f` every 100 ms until it returns `Ok(Some(v))` or `timeout` passes.
///
/// `f` is always called at least once. The error on timeout names `what`, the time
/// waited, and the last `Err` (or that the last answer was `None`).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    const INTERVAL: Duration = Duration::from_millis(100);
    let start = Instant::now();
    // Bounded in time and, as a second guard, in count.
    let max_polls = timeout.as_millis() / INTERVAL.as_millis() + 2;
    let mut last: String;
    let mut polls = 0u128;
    loop {
        polls += 1;
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => last = "not yet (last answer: None)".to_string(),
            Err(e) => last = format!("last error: {e:#}"),
        }
        if start.elapsed() >= timeout || polls >= max_polls {
            bail!(
                "timed out after {:.1} s waiting for {what}: {last}",
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(INTERVAL);
    }
}

/// Waits until the source's durable position equals the primary's current position
/// (SHOW MASTER STATUS), i.e. the archive has caught up.
pub fn wait_caught_up(
    server: &ServerProcess,
    db: &MariaDb,
    source: &str,
    timeout: Duration,
) -> Result<()> {
    wait_for(&format!("source {source} to catch up"), timeout, || {
        let (file, pos) = db.master_status()?;
        let s = server.get_json(&format!("/v1/sources/{source}"))?;
        let ok = s["durable_file"].as_str() == Some(file.as_str())
            && s["durable_pos"].as_u64() == Some(pos);
        if ok {
            Ok(Some(()))
        } else {
            Err(anyhow!(
                "primary at {file}:{pos}, archive at {}:{} (state {}, last_error {})",
                s["durable_file"],
                s["durable_pos"],
                s["state"],
                s["last_error"]
            ))
        }
    })
}

/// Waits until every binlog of `source` except the ACTIVE one is SUCC; fails early when
/// one is FAIL for longer than `timeout` allows (the error shows its info).
pub fn wait_all_succ(
    server: &ServerProcess,
    source: &str,
    timeout: Duration,
) -> Result<serde_json::Value> {
    wait_for(
        &format!("all closed binlogs of {source} to be SUCC"),
        timeout,
        || {
            let v = server.get_json(&format!("/v1/sources/{source}/binlogs"))?;
            let files = v["files"].as_array().cloned().unwrap_or_default();
            // Only the newest file may be ACTIVE; every other one must have been checked.
            let last = files.len().saturating_sub(1);
            let pending: Vec<String> = files
                .iter()
                .enumerate()
                .filter(|(i, f)| f["state"] != "SUCC" && !(f["state"] == "ACTIVE" && *i == last))
                .map(|(_, f)| format!("{} {} {}", f["name"], f["state"], f["info"]))
                .collect();
            if pending.is_empty() && !files.is_empty() {
                Ok(Some(v))
            } else {
                Err(anyhow!("not yet SUCC: {pending:?}"))
            }
        },
    )
}
