//! Running one PITR job: restore the base into the job's instance (or the destination),
//! start it privately, set `gtid_slave_pos`, CHANGE MASTER to the job's own fake primary
//! listener, wait until the replica has applied the plan, then leave the instance
//! serving (or private) and record the end of the job (see the module doc of
//! [`super`]).

use node::util::lock;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog::BackupRow;
use mysql_wire::conn::{Conn, ResultSet};
use mysql_wire::quote;
use snapshotter::Endpoint;
use tracing::{info, warn};

use super::allow::Destination;
use super::job::{Job, JobReport, PitrService, Restored};
use super::planner::{gtid_reached, Plan};
use crate::fake_primary::{self, Credentials, Listener};
use crate::instance::{self, Instance, InstanceSpec};
use archive::local::binlog_order;
use binlog::Gtid;
use node::config::SourceUrl;

/// How long a restored instance may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// What the steps of one run share.
struct RunCtx<'a> {
    /// The job (report, progress, cancellation).
    job: &'a Arc<Job>,
    /// Its plan.
    plan: &'a Plan,
    /// The base chain, full base first.
    chain: &'a [BackupRow],
    /// The newest base of the chain (the plan's base).
    base: &'a BackupRow,
    /// The job's instance.
    spec: &'a InstanceSpec,
    /// The destination's administrator URL, for an existing destination.
    url: Option<&'a SourceUrl>,
    /// The service runs the instance (physical bases and scratch destinations); else the
    /// destination server at `url` is used as it runs.
    run_instance: bool,
    /// When the run started.
    t0: Instant,
}

impl PitrService {
    /// Runs the job to its end and records it: phase "done", or "failed" with the error;
    /// `finished_at`; the report saved. The body of the job's task.
    pub(super) async fn execute(self: Arc<Self>, job: Arc<Job>, dest: Destination, n: u32) {
        let r = self.run(&job, dest, n).await;
        {
            let mut rep = lock(&job.report);
            rep.finished_at = Some(catalog::unix_now());
            match r {
                Ok(()) => {
                    rep.phase = "done".into();
                    rep.step = String::new();
                }
                Err(e) => {
                    rep.phase = "failed".into();
                    rep.error = Some(e);
                }
            }
        }
        self.save(&job).await;
    }

    /// Prepares the job's directory and instance spec (job number `n` picks the
    /// server_id), runs the restore and replay, and cleans up: a finished instance is
    /// detached (its PID reported), a failed one stopped and a scratch directory removed.
    async fn run(&self, job: &Arc<Job>, dest: Destination, n: u32) -> Result<(), String> {
        let plan = lock(&job.report).plan.clone();
        let id = lock(&job.report).id.clone();
        let t0 = Instant::now();
        let chain = snapshotter::restore::chain(&self.catalog, &plan.base.id).await?;
        let base = chain.last().cloned().ok_or("empty base chain")?;
        // Tools::find looks in PATH, /usr/sbin and /usr/bin and names the package.
        let mariadbd = self.tools.find("mariadbd")?;
        let dir = self.work_dir.join(&id);
        let (port, datadir_override, url) = match &dest {
            Destination::Scratch => (instance::free_port()?, None, None),
            Destination::Existing { url, datadir } => {
                (url.port, datadir.clone(), Some(url.clone()))
            }
        };
        let spec = InstanceSpec {
            dir: dir.clone(),
            port,
            server_id: self.cfg.server_id_base.wrapping_add(n),
            pitr: self.cfg.clone(),
            mariadbd,
        };
        instance::prepare_dir(&dir)?;
        *lock(&job.instance_dir) = Some(dir.clone());
        if let Some(d) = &datadir_override {
            link_datadir(d, &spec)?;
        }
        let cx = RunCtx {
            job,
            plan: &plan,
            chain: &chain,
            base: &base,
            spec: &spec,
            url: url.as_ref(),
            run_instance: plan.base.method == "physical" || url.is_none(),
            t0,
        };
        let mut inst = None;
        match self.restore_and_replay(&cx, &mut inst).await {
            Ok(()) => {
                if let Some(inst) = inst {
                    let pid = inst.detach();
                    self.set(job, |r| {
                        if let Some(x) = r.restored.as_mut() {
                            x.pid = Some(pid);
                        }
                    });
                }
                info!(job = %id, "PITR done");
                Ok(())
            }
            Err(e) => {
                if let Some(inst) = inst {
                    let _ = inst.stop().await;
                }
                if datadir_override.is_none() && url.is_none() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                warn!(job = %id, error = %e, "PITR failed");
                Err(e)
            }
        }
    }

    /// The four steps; `inst` holds the instance the service runs at any moment, so that
    /// a failure stops it.
    async fn restore_and_replay(
        &self,
        cx: &RunCtx<'_>,
        inst: &mut Option<Instance>,
    ) -> Result<(), String> {
        // 1. The base.
        self.restore_base(cx, inst).await?;
        // 2. Connect and position.
        let mut conn = self.connect_and_position(cx).await?;
        // 3. Replay.
        let t1 = Instant::now();
        if cx.plan.transactions > 0 {
            self.replay(cx, &mut conn, t1).await?;
        }
        let replay_secs = t1.elapsed().as_secs_f64();
        // 4. Serve it.
        self.serve(cx, conn, inst, replay_secs).await
    }

    /// Restores the base: physical into the datadir and starts it privately; logical
    /// into a fresh private instance, or into the destination server as it runs.
    /// Records the restore time and bytes.
    async fn restore_base(
        &self,
        cx: &RunCtx<'_>,
        inst: &mut Option<Instance>,
    ) -> Result<(), String> {
        let (job, spec, base) = (cx.job, cx.spec, cx.base);
        let workdir = spec.dir.join("restore-work");
        let progress = job.progress.clone();
        let socket_ep = Endpoint {
            host: spec.socket().display().to_string(),
            port: 0,
            user: "root".into(),
            password: None,
            tls: None,
        };
        let failed = |e: String| format!("restore base {}: {e}", base.id);
        if cx.plan.base.method == "physical" {
            snapshotter::restore::restore_physical(
                &self.store,
                &self.tools,
                cx.chain,
                &spec.datadir(),
                &workdir,
                &progress,
            )
            .await
            .map_err(failed)?;
            let _ = std::fs::remove_dir_all(&workdir);
            self.set(job, |r| r.step = "starting the restored instance".into());
            *inst = Some(Instance::start(spec, true, START_TIMEOUT).await?);
        } else if cx.run_instance {
            self.set(job, |r| r.step = "creating an empty instance".into());
            let install = self.tools.find("mariadb-install-db")?;
            instance::install_db(&install, spec).await?;
            *inst = Some(Instance::start(spec, true, START_TIMEOUT).await?);
            snapshotter::restore::restore_logical(
                &self.store,
                &self.tools,
                base,
                &socket_ep,
                &workdir,
                4,
                &progress,
            )
            .await
            .map_err(failed)?;
        } else if let Some(u) = cx.url {
            snapshotter::restore::restore_logical(
                &self.store,
                &self.tools,
                base,
                &node::config::tool_endpoint(u),
                &workdir,
                4,
                &progress,
            )
            .await
            .map_err(failed)?;
        }
        let _ = std::fs::remove_dir_all(&workdir);
        if job.cancel.is_cancelled() {
            return Err("cancelled after the base was restored".into());
        }
        let restore_secs = cx.t0.elapsed().as_secs_f64();
        self.set(job, |r| {
            r.restore_seconds = Some(restore_secs);
            r.progress.base_bytes_restored = progress.bytes();
        });
        Ok(())
    }

    /// Logs in to the restored instance (through its socket when the service runs it),
    /// clears any replication set-up and sets `gtid_slave_pos` to the base's GTID.
    async fn connect_and_position(&self, cx: &RunCtx<'_>) -> Result<Conn, String> {
        let admin_url = match (cx.run_instance, cx.url) {
            (true, _) | (false, None) => instance::socket_url(&cx.spec.socket()),
            (false, Some(u)) => u.clone(),
        };
        let mut conn = instance::connect_admin(&admin_url)
            .await
            .map_err(|e| format!("connect to the restored instance: {e}"))?;
        if cx.run_instance {
            query(&mut conn, "FLUSH PRIVILEGES").await?;
        }
        query(&mut conn, "STOP SLAVE").await?;
        query(&mut conn, "RESET SLAVE ALL").await?;
        if let Some(g) = &cx.plan.base.gtid_pos {
            let sql = format!("SET GLOBAL gtid_slave_pos = {}", quote::literal(g));
            query(&mut conn, &sql).await?;
        }
        Ok(conn)
    }

    /// Replays the plan's range from the job's fake primary and waits until it is
    /// applied; then STOP SLAVE, RESET SLAVE ALL, and the progress set to the plan.
    async fn replay(&self, cx: &RunCtx<'_>, conn: &mut Conn, t1: Instant) -> Result<(), String> {
        let (job, plan) = (cx.job, cx.plan);
        self.set(job, |r| {
            r.phase = "replaying".into();
            r.step = "replica starting".into();
        });
        self.save(job).await;
        let listener = self.start_replica(plan, conn).await?;
        self.set(job, |r| r.step = "applying".into());
        self.wait_applied(cx, conn, &listener, t1).await?;
        query(conn, "STOP SLAVE").await?;
        query(conn, "RESET SLAVE ALL").await?;
        listener.stop();
        self.set(job, |r| {
            r.progress.transactions_applied = plan.transactions;
            r.progress.bytes_applied = plan.bytes;
            r.progress.eta_seconds = Some(0.0);
        });
        Ok(())
    }

    /// Starts a fake primary for the job (127.0.0.1, ephemeral port, one-time account,
    /// stop point = the plan's cut) and points the instance at it: CHANGE MASTER (by
    /// GTID when the base has one, else from the base's file and position) and START
    /// SLAVE. The listener's span nests under the job's.
    async fn start_replica(&self, plan: &Plan, conn: &mut Conn) -> Result<Listener, String> {
        let Some(archive) = self.archives.get(&plan.source).cloned() else {
            return Err(format!("source {} has no archive", plan.source));
        };
        let creds = Credentials {
            user: format!("pitr_{}", node::random::hex(4).map_err(|e| e.to_string())?),
            password: node::random::hex(16).map_err(|e| e.to_string())?,
        };
        let listener = fake_primary::spawn(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            archive,
            creds.clone(),
            Some(plan.stop.clone()),
            fake_primary::ListenerOptions::default(),
            &self.cancel,
        )
        .await
        .map_err(|e| e.to_string())?;
        let start = if plan.base.gtid_pos.is_some() {
            "MASTER_USE_GTID = slave_pos".to_string()
        } else {
            format!(
                "MASTER_LOG_FILE = {}, MASTER_LOG_POS = {}, MASTER_USE_GTID = no",
                quote::literal(&plan.base.binlog_file),
                plan.base.binlog_pos
            )
        };
        let sql = format!(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = {}, \
             MASTER_PASSWORD = {}, MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = 1, {start}",
            listener.addr.port(),
            quote::literal(&creds.user),
            quote::literal(&creds.password)
        );
        query(conn, &sql).await?;
        query(conn, "START SLAVE").await?;
        Ok(listener)
    }

    /// Polls the replica every 250 ms until it has applied the plan (the stop point or
    /// the plan's last GTID reached, the relay log drained, the fake primary at its stop
    /// point), updating the progress and saving the report every 10 s. Fails on a
    /// cancel, or when the replica's SQL or IO thread stopped with an error (the report
    /// gets the binlog position).
    async fn wait_applied(
        &self,
        cx: &RunCtx<'_>,
        conn: &mut Conn,
        listener: &Listener,
        t1: Instant,
    ) -> Result<(), String> {
        let job = cx.job;
        let mut last_save = Instant::now();
        loop {
            if job.cancel.is_cancelled() {
                let why = if self.cancel.is_cancelled() {
                    "binlog-server is stopping"
                } else {
                    "cancelled"
                };
                return Err(why.into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let st = query(conn, "SHOW SLAVE STATUS").await?;
            let gpos = query(conn, "SELECT @@GLOBAL.gtid_slave_pos AS p")
                .await?
                .get(0, "p")
                .unwrap_or_default()
                .to_string();
            if let Some((msg, pos)) = replica_failure(&st, listener) {
                self.set(job, |r| r.error_position = Some(pos));
                return Err(msg);
            }
            let reached = self.record_progress(cx, &st, &gpos, t1).await;
            if reached && listener.stats.reached_stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if last_save.elapsed() > Duration::from_secs(10) {
                self.save(job).await;
                last_save = Instant::now();
            }
        }
    }

    /// Updates the job's progress from one SHOW SLAVE STATUS (`st`) and `gtid_slave_pos`
    /// (`gpos`); true when the plan's end is applied and the replica is idle.
    async fn record_progress(
        &self,
        cx: &RunCtx<'_>,
        st: &ResultSet,
        gpos: &str,
        t1: Instant,
    ) -> bool {
        let plan = cx.plan;
        let use_gtid = plan.base.gtid_pos.is_some();
        let field = |c: &str| st.get(0, c).unwrap_or_default().to_string();
        let exec_file = field("Relay_Master_Log_File");
        let exec_pos: u64 = field("Exec_Master_Log_Pos").parse().unwrap_or(0);
        let applied_bytes = bytes_between(plan, &exec_file, exec_pos, self).await;
        let applied_txns = match (&plan.end_gtid, use_gtid) {
            (Some(end), true) => self.applied_by_gtid(plan, end, gpos).await,
            _ => 0,
        };
        let secs = t1.elapsed().as_secs_f64().max(0.001);
        let idle = field("Slave_SQL_Running_State").contains("has read all relay log")
            || (field("Master_Log_File") == exec_file
                && field("Read_Master_Log_Pos") == field("Exec_Master_Log_Pos"));
        let reached = match (&plan.end_gtid, use_gtid) {
            (Some(end), true) => gtid_reached(gpos, end),
            _ => exec_file == plan.stop.file && exec_pos >= plan.stop.pos,
        };
        self.set(cx.job, |r| {
            let p = &mut r.progress;
            p.bytes_applied = applied_bytes.min(plan.bytes);
            p.transactions_applied = applied_txns.min(plan.transactions);
            p.bytes_per_second = p.bytes_applied as f64 / secs;
            p.transactions_per_second = p.transactions_applied as f64 / secs;
            p.eta_seconds = (p.bytes_per_second > 0.0)
                .then(|| plan.bytes.saturating_sub(p.bytes_applied) as f64 / p.bytes_per_second);
            p.replica_position = Some(format!("{exec_file}:{exec_pos}"));
        });
        reached && idle
    }

    /// Leaves the instance as the job asked and records [`Restored`]: a private one
    /// running as it replayed, a scratch one restarted on 127.0.0.1:PORT, an existing
    /// server as it is.
    async fn serve(
        &self,
        cx: &RunCtx<'_>,
        mut conn: Conn,
        inst: &mut Option<Instance>,
        replay_secs: f64,
    ) -> Result<(), String> {
        let (job, spec) = (cx.job, cx.spec);
        let gpos = query(&mut conn, "SELECT @@GLOBAL.gtid_slave_pos AS p")
            .await?
            .get(0, "p")
            .map(str::to_string);
        let restored = if cx.run_instance && job.private {
            self.set(job, |r| r.step = String::new());
            Restored {
                address: String::new(),
                socket: Some(spec.socket().display().to_string()),
                datadir: Some(spec.datadir().display().to_string()),
                pid: inst.as_ref().map(|i| i.pid),
                gtid_slave_pos: gpos,
            }
        } else if cx.run_instance {
            self.set(job, |r| {
                r.step = "restarting the instance on its port".into()
            });
            let _ = conn.query("SHUTDOWN").await;
            drop(conn);
            if let Some(i) = inst.take() {
                i.stop().await?;
            }
            let i = Instance::start(spec, false, START_TIMEOUT).await?;
            let r = Restored {
                address: format!("127.0.0.1:{}", spec.port),
                socket: Some(spec.socket().display().to_string()),
                datadir: Some(spec.datadir().display().to_string()),
                pid: Some(i.pid),
                gtid_slave_pos: gpos,
            };
            *inst = Some(i);
            r
        } else {
            let u = cx.url.cloned();
            Restored {
                address: u
                    .map(|u| format!("{}:{}", u.host, u.port))
                    .unwrap_or_default(),
                socket: None,
                datadir: None,
                pid: None,
                gtid_slave_pos: gpos,
            }
        };
        self.set(job, |r: &mut JobReport| {
            r.replay_seconds = Some(replay_secs);
            r.restored = Some(restored);
        });
        Ok(())
    }

    /// Transactions of the plan applied once `gpos` holds the GTID (in `end`'s domain)
    /// of the index entry with that ordinal; 0 when it cannot be told.
    async fn applied_by_gtid(&self, plan: &Plan, end: &str, gpos: &str) -> u64 {
        let Ok(Gtid::MariaDb { domain, .. }) = end.parse::<Gtid>() else {
            return 0;
        };
        let cur = gpos
            .split(',')
            .filter_map(|p| p.trim().parse::<Gtid>().ok())
            .find(|g| matches!(g, Gtid::MariaDb { domain: d, .. } if *d == domain));
        let Some(cur) = cur else { return 0 };
        let (idx, src) = (self.index.clone(), plan.source.clone());
        let e = tokio::task::spawn_blocking(move || idx.find_gtid(&src, &cur)).await;
        match e {
            Ok(Ok(Some(e))) => (e.ordinal + 1).saturating_sub(plan.first_ordinal),
            _ => 0,
        }
    }
}

/// The caller's datadir `d` (created if needed) becomes the instance's: `<dir>/data` is a
/// symlink to it.
fn link_datadir(d: &Path, spec: &InstanceSpec) -> Result<(), String> {
    std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    std::os::unix::fs::symlink(d, spec.datadir())
        .map_err(|e| format!("link {} to {}: {e}", spec.datadir().display(), d.display()))
}

/// Runs `sql` on the restored instance; the error names the statement (password
/// redacted).
async fn query(conn: &mut Conn, sql: &str) -> Result<ResultSet, String> {
    conn.query(sql)
        .await
        .map_err(|e| format!("on the restored instance, {}: {e}", redact_sql(sql)))
}

/// The replica's failure in one SHOW SLAVE STATUS, as (message, "file:pos" in the
/// source's binlogs): the SQL thread stopped with an error, or the IO thread did (the
/// fake primary's own ERROR 1236 text when it refused to serve).
fn replica_failure(st: &ResultSet, listener: &Listener) -> Option<(String, String)> {
    let field = |c: &str| st.get(0, c).unwrap_or_default().to_string();
    let sql_errno = field("Last_SQL_Errno");
    if !sql_errno.is_empty() && sql_errno != "0" {
        let pos = format!(
            "{}:{}",
            field("Relay_Master_Log_File"),
            field("Exec_Master_Log_Pos").parse::<u64>().unwrap_or(0)
        );
        let msg = format!(
            "the replica's SQL thread stopped: error {sql_errno}: {}",
            field("Last_SQL_Error")
        );
        return Some((msg, pos));
    }
    let io_errno = field("Last_IO_Errno");
    // 1236 is the fake primary refusing to serve; any other error with the IO
    // thread stopped (not "Connecting", which retries) is definite too, e.g.
    // equal server ids or a refused account.
    let io_stopped = field("Slave_IO_Running") == "No" && !io_errno.is_empty() && io_errno != "0";
    if io_errno == "1236" || io_stopped {
        let served = lock(&listener.stats.last_error)
            .clone()
            .filter(|_| io_errno == "1236");
        let msg = format!(
            "the replica's IO thread stopped: {}",
            served.unwrap_or_else(|| format!("error {io_errno}: {}", field("Last_IO_Error")))
        );
        let pos = format!(
            "{}:{}",
            field("Master_Log_File"),
            field("Read_Master_Log_Pos")
        );
        return Some((msg, pos));
    }
    None
}

/// Binlog bytes of the plan applied when the replica has executed up to `file`:`pos`
/// (sizes from the catalog).
async fn bytes_between(plan: &Plan, file: &str, pos: u64, svc: &PitrService) -> u64 {
    let mut total = 0u64;
    let files = svc
        .catalog
        .list_files(&plan.source)
        .await
        .unwrap_or_default();
    for name in &plan.files {
        let size = files
            .iter()
            .find(|f| &f.name == name)
            .map(|f| f.size)
            .unwrap_or(0);
        let from = if *name == plan.base.binlog_file {
            plan.base.binlog_pos
        } else {
            0
        };
        if name == file {
            total += pos.saturating_sub(from);
            return total;
        }
        if binlog_order(name) > binlog_order(file) {
            return total;
        }
        total += size.saturating_sub(from);
    }
    total
}

/// `sql` cut before `MASTER_PASSWORD`, for error messages.
fn redact_sql(sql: &str) -> String {
    match sql.to_ascii_uppercase().find("MASTER_PASSWORD") {
        Some(i) => format!("{} MASTER_PASSWORD = '***' ...", &sql[..i]),
        None => sql.to_string(),
    }
}
