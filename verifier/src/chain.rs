//! Phase 3 of a run, chain verification: the replayed scratch instance replicates from
//! the live primary by GTID (`MASTER_USE_GTID = slave_pos`) until it has caught up with
//! the primary's position read when the chain started. Passing it fixes the RTO.

use std::time::{Duration, Instant};

use mysql_wire::conn::Conn;
use mysql_wire::quote;

use crate::phase::{Fail, RunCtx, CHAIN, DATA, STOPPED};
use crate::report::Outcome;
use crate::runner::position_reached;
use crate::sql::{q, value, SlaveStatus};
use node::config::{SourceUrl, TlsMode};
use replay::instance;

/// The chain caught up.
struct Chained {
    /// The phase's detail for the report.
    detail: String,
    /// The session on the primary, kept for the data checks.
    primary: Conn,
}

impl RunCtx<'_> {
    /// Phase 3 on `replica` (the scratch instance), timed from `t`, with its outcome and
    /// the RTO written into the report. Returns the session on the primary when the
    /// chain caught up and the data checks follow; `None` when they do not (skipped,
    /// failed or cancelled).
    pub(super) async fn chain_phase(&self, replica: &mut Conn, t: Instant) -> Option<Conn> {
        match self.chain(replica, t).await {
            Ok(Some(Chained { detail, primary })) => {
                let rto = self.t0.elapsed().as_secs_f64();
                self.pass(CHAIN, t, detail);
                self.set(|r| r.rto_seconds = Some(rto));
                Some(primary)
            }
            Ok(None) => {
                // Skipped (MySQL primary, archive-only source): the RTO is the replayed
                // instance.
                let rto = self.t0.elapsed().as_secs_f64();
                self.set(|r| r.rto_seconds = Some(rto));
                None
            }
            Err(f) => {
                if self.cancel.is_cancelled() {
                    self.cancelled(f.error);
                } else {
                    self.fail(CHAIN, t, f);
                }
                None
            }
        }
    }

    /// Phase 3. `Ok(Some(_))` caught up; `Ok(None)` skipped (MySQL primary,
    /// archive-only source), the report's phases 3 and 4 saying why.
    async fn chain(&self, replica: &mut Conn, t: Instant) -> Result<Option<Chained>, Fail> {
        let source = self.source;
        if source.archive_only {
            self.skip_live_phases(
                "skipped: an archive-only source (archive_only = true) has no live primary to chain to",
            );
            return Ok(None);
        }
        self.begin(CHAIN);
        // After a failover, the server capture follows now.
        let check_url = source.check_url_now();
        let mut primary = instance::connect_admin(&check_url)
            .await
            .map_err(|e| format!("connect to the primary {}: {e}", check_url.redacted()))?;
        if !binlog::is_mariadb_version(primary.server_version()) {
            self.skip_live_phases(&format!(
                "skipped: the primary runs {} (MySQL); a MariaDB scratch instance cannot chain to it",
                primary.server_version()
            ));
            return Ok(None);
        }
        let sql = change_master_sql(&source.url_now());
        q(replica, &sql, "CHANGE MASTER TO the primary").await?;
        q(replica, "START SLAVE", "START SLAVE").await?;
        let target = value(&mut primary, "SELECT @@GLOBAL.gtid_binlog_pos").await?;
        let detail = self.wait_caught_up(replica, &target, t).await?;
        Ok(Some(Chained { detail, primary }))
    }

    /// Phases 3 and 4 do not apply, for reason `why`.
    fn skip_live_phases(&self, why: &str) {
        for name in [CHAIN, DATA] {
            self.phase(name, |p| {
                p.outcome = Outcome::Skipped;
                p.detail = why.to_string();
            });
        }
    }

    /// Waits until `replica`'s `gtid_slave_pos` reaches `target` with
    /// `Seconds_Behind_Master` 0 (returns the phase's detail), or fails: a replication
    /// thread stopped on an error, `stop_at` or `chain_timeout` (counted from `t`)
    /// passed, or the run was cancelled.
    async fn wait_caught_up(
        &self,
        replica: &mut Conn,
        target: &str,
        t: Instant,
    ) -> Result<String, Fail> {
        let limit = match self.deadline {
            Some(d) => (d - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => self.source.verify.chain_timeout,
        };
        loop {
            if self.cancel.is_cancelled() {
                return Err(STOPPED.to_string().into());
            }
            let st = SlaveStatus::read(replica).await?;
            if let Some(f) = stopped_thread(&st) {
                return Err(f);
            }
            let gpos = value(replica, "SELECT @@GLOBAL.gtid_slave_pos").await?;
            if position_reached(&gpos, target) && st.get("Seconds_Behind_Master") == "0" {
                return Ok(format!(
                    "chained to the primary by GTID and caught up: gtid_slave_pos {gpos} reached the primary's {target} (read when the chain started)"
                ));
            }
            if t.elapsed() >= limit {
                let by = match self.deadline {
                    Some(d) => format!("stop_at {d}"),
                    None => format!("chain_timeout ({} s)", limit.as_secs()),
                };
                return Err(Fail {
                    error: format!(
                        "not caught up with the primary by {by}: gtid_slave_pos {gpos}, primary at {target}, Seconds_Behind_Master {}",
                        st.get("Seconds_Behind_Master")
                    ),
                    position: Some(st.position()),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `CHANGE MASTER TO` the primary at `u`, by GTID, over TLS unless it is disabled.
fn change_master_sql(u: &SourceUrl) -> String {
    let ssl = if u.tls == TlsMode::Disabled {
        ""
    } else {
        ", MASTER_SSL = 1"
    };
    format!(
        "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, MASTER_PASSWORD = {}, \
         MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = 1{ssl}",
        quote::literal(&u.host),
        u.port,
        quote::literal(&u.user),
        quote::literal(u.password.as_deref().unwrap_or(""))
    )
}

/// The replication thread that stopped on an error, as the phase's failure. An IO
/// thread still "Connecting" retries by itself (the primary may be restarting); stopped
/// with an error, it is definite.
fn stopped_thread(st: &SlaveStatus) -> Option<Fail> {
    let threads = [
        (
            "Last_SQL_Errno",
            "Last_SQL_Error",
            "SQL",
            "Slave_SQL_Running",
        ),
        ("Last_IO_Errno", "Last_IO_Error", "IO", "Slave_IO_Running"),
    ];
    threads.into_iter().find_map(|(errno, err, what, running)| {
        let n = st.get(errno);
        (!n.is_empty() && n != "0" && st.get(running) == "No").then(|| Fail {
            error: format!(
                "the replica's {what} thread stopped on the primary's stream: error {n}: {}",
                st.get(err)
            ),
            position: Some(st.position()),
        })
    })
}
