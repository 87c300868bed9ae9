//! Running one PITR job: restore the base into the job's instance (or the destination),
//! start it privately, set `gtid_slave_pos`, CHANGE MASTER to the job's own fake primary
//! listener, wait until the replica has applied the plan, then leave the instance
//! serving (or private) and record the end of the job (see the module doc of
//! [`super`]). A run is a [`Run`]: the job, its plan and instance, and what it needs of
//! the service ([`RunDeps`], handed over by `job.rs` when the job starts; the runner
//! never calls back into the registry); a failed step is a [`RunError`].

use node::util::lock;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog::BackupRow;
use mysql_wire::conn::{Conn, ResultSet};
use mysql_wire::errcode::ER_MASTER_FATAL_ERROR_READING_BINLOG;
use mysql_wire::quote;
use snapshotter::Endpoint;
use tracing::{info, warn};

use super::allow::Destination;
use super::error::RunError;
use super::planner::{gtid_reached, Plan};
use super::report::{Job, JobReport, Restored};
use crate::fake_primary::{self, Credentials, Listener};
use crate::instance::{self, Instance, InstanceSpec};
use binlog::binlog_order;
use binlog::Gtid;
use node::config::SourceUrl;

/// How long a restored instance may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// What a job's run needs of the PITR service: the catalog (chain, sizes, the saved
/// report), the index, the archives its fake primary serves, the base store, the
/// tools, `[pitr]`, the work directory and the service's cancellation.
pub(super) struct RunDeps {
    pub(super) catalog: Arc<catalog::Catalog>,
    pub(super) index: Arc<archive::index::Index>,
    pub(super) archives: std::collections::BTreeMap<String, Arc<crate::fake_primary::Archive>>,
    pub(super) store: Arc<objstore::store::Store>,
    pub(super) tools: snapshotter::Tools,
    pub(super) cfg: node::config::PitrConfig,
    pub(super) work_dir: std::path::PathBuf,
    pub(super) cancel: tokio_util::sync::CancellationToken,
}

/// One job's run: what its steps share.
struct Run<'a> {
    /// What the run needs of the service (catalog, store, tools, archives, settings).
    svc: &'a RunDeps,
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

/// Runs the job to its end and records it: phase "done", or "failed" with the error
/// (its text and its kind, [`RunError::kind`]); `finished_at`; the report saved. The
/// body of the job's task.
pub(super) async fn execute(svc: RunDeps, job: Arc<Job>, dest: Destination, n: u32) {
    let r = run(&svc, &job, dest, n).await;
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
                rep.error = Some(e.to_string());
                rep.error_kind = Some(e.kind().to_string());
            }
        }
    }
    job.save(&svc.catalog).await;
}

/// Prepares the job's directory and instance spec (job number `n` picks the server_id),
/// runs the restore and replay, and cleans up: a finished instance is detached (its PID
/// reported), a failed one stopped and a scratch directory removed.
async fn run(svc: &RunDeps, job: &Arc<Job>, dest: Destination, n: u32) -> Result<(), RunError> {
    let plan = lock(&job.report).plan.clone();
    let id = lock(&job.report).id.clone();
    let t0 = Instant::now();
    let chain = snapshotter::restore::chain(&svc.catalog, &plan.base.id)
        .await
        .map_err(|e| RunError::BaseChain(Box::new(e)))?;
    let base = chain.last().cloned().ok_or(RunError::EmptyChain)?;
    // Tools::find looks in PATH, /usr/sbin and /usr/bin and names the package.
    let mariadbd = svc.tools.find("mariadbd").map_err(RunError::Tool)?;
    let dir = svc.work_dir.join(&id);
    let (port, datadir_override, url) = match &dest {
        Destination::Scratch => (instance::free_port()?, None, None),
        Destination::Existing { url, datadir } => (url.port, datadir.clone(), Some(url.clone())),
    };
    let spec = InstanceSpec {
        dir: dir.clone(),
        port,
        server_id: svc.cfg.server_id_base.wrapping_add(n),
        pitr: svc.cfg.clone(),
        mariadbd,
    };
    instance::prepare_dir(&dir)?;
    *lock(&job.instance_dir) = Some(dir.clone());
    if let Some(d) = &datadir_override {
        link_datadir(d, &spec)?;
    }
    let run = Run {
        svc,
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
    match run.restore_and_replay(&mut inst).await {
        Ok(()) => {
            if let Some(inst) = inst {
                let pid = inst.detach();
                job.set(|r| {
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
            warn!(job = %id, error = %e, kind = e.kind(), "PITR failed");
            Err(e)
        }
    }
}

impl Run<'_> {
    /// Sets fields of the job's report.
    fn set(&self, f: impl FnOnce(&mut JobReport)) {
        self.job.set(f);
    }

    /// The four steps; `inst` holds the instance the service runs at any moment, so that
    /// a failure stops it.
    async fn restore_and_replay(&self, inst: &mut Option<Instance>) -> Result<(), RunError> {
        // 1. The base.
        self.restore_base(inst).await?;
        // 2. Connect and position.
        let mut conn = self.connect_and_position().await?;
        // 3. Replay.
        let t1 = Instant::now();
        if self.plan.transactions > 0 {
            self.replay(&mut conn, t1).await?;
        }
        let replay_secs = t1.elapsed().as_secs_f64();
        // 4. Serve it.
        self.serve(conn, inst, replay_secs).await
    }

    /// Restores the base: physical into the datadir and starts it privately; logical
    /// into a fresh private instance, or into the destination server as it runs.
    /// Records the restore time and bytes.
    async fn restore_base(&self, inst: &mut Option<Instance>) -> Result<(), RunError> {
        let (job, spec, base, svc) = (self.job, self.spec, self.base, self.svc);
        let workdir = spec.dir.join("restore-work");
        let progress = job.progress.clone();
        let failed = |source| RunError::Restore {
            base: base.id.clone(),
            source: Box::new(source),
        };
        if self.plan.base.method == "physical" {
            snapshotter::restore::restore_physical(
                &svc.store,
                &svc.tools,
                self.chain,
                &spec.datadir(),
                &workdir,
                &progress,
            )
            .await
            .map_err(failed)?;
            let _ = std::fs::remove_dir_all(&workdir);
            self.set(|r| r.step = "starting the restored instance".into());
            *inst = Some(Instance::start(spec, true, START_TIMEOUT).await?);
        } else {
            let endpoint = match self.url {
                Some(u) if !self.run_instance => node::config::tool_endpoint(u),
                _ => {
                    self.set(|r| r.step = "creating an empty instance".into());
                    let install = svc
                        .tools
                        .find("mariadb-install-db")
                        .map_err(RunError::Tool)?;
                    instance::install_db(&install, spec).await?;
                    *inst = Some(Instance::start(spec, true, START_TIMEOUT).await?);
                    socket_endpoint(spec)
                }
            };
            snapshotter::restore::restore_logical(
                &svc.store, &svc.tools, base, &endpoint, &workdir, 4, &progress,
            )
            .await
            .map_err(failed)?;
        }
        let _ = std::fs::remove_dir_all(&workdir);
        if job.cancel.is_cancelled() {
            return Err(RunError::CancelledAfterBase);
        }
        let restore_secs = self.t0.elapsed().as_secs_f64();
        self.set(|r| {
            r.restore_seconds = Some(restore_secs);
            r.progress.base_bytes_restored = progress.bytes();
        });
        Ok(())
    }

    /// Logs in to the restored instance (through its socket when the service runs it),
    /// clears any replication set-up and sets `gtid_slave_pos` to the base's GTID.
    async fn connect_and_position(&self) -> Result<Conn, RunError> {
        let admin_url = match (self.run_instance, self.url) {
            (true, _) | (false, None) => instance::socket_url(&self.spec.socket()),
            (false, Some(u)) => u.clone(),
        };
        let mut conn = instance::connect_admin(&admin_url)
            .await
            .map_err(RunError::Connect)?;
        if self.run_instance {
            query(&mut conn, "FLUSH PRIVILEGES").await?;
        }
        query(&mut conn, "STOP SLAVE").await?;
        query(&mut conn, "RESET SLAVE ALL").await?;
        if let Some(g) = &self.plan.base.gtid_pos {
            let sql = format!("SET GLOBAL gtid_slave_pos = {}", quote::literal(g));
            query(&mut conn, &sql).await?;
        }
        Ok(conn)
    }

    /// Replays the plan's range from the job's fake primary and waits until it is
    /// applied; then STOP SLAVE, RESET SLAVE ALL, and the progress set to the plan.
    async fn replay(&self, conn: &mut Conn, t1: Instant) -> Result<(), RunError> {
        let plan = self.plan;
        self.set(|r| {
            r.phase = "replaying".into();
            r.step = "replica starting".into();
        });
        self.job.save(&self.svc.catalog).await;
        let listener = self.start_replica(conn).await?;
        self.set(|r| r.step = "applying".into());
        self.wait_applied(conn, &listener, t1).await?;
        query(conn, "STOP SLAVE").await?;
        query(conn, "RESET SLAVE ALL").await?;
        listener.stop();
        self.set(|r| {
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
    async fn start_replica(&self, conn: &mut Conn) -> Result<Listener, RunError> {
        let plan = self.plan;
        let Some(archive) = self.svc.archives.get(&plan.source).cloned() else {
            return Err(RunError::NoArchive {
                source_name: plan.source.clone(),
            });
        };
        let creds = Credentials {
            user: format!("pitr_{}", node::random::hex(4)?),
            password: node::random::hex(16)?,
        };
        let listener = fake_primary::spawn(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            archive,
            creds.clone(),
            Some(plan.stop.clone()),
            fake_primary::ListenerOptions::default(),
            &self.svc.cancel,
        )
        .await?;
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
        conn: &mut Conn,
        listener: &Listener,
        t1: Instant,
    ) -> Result<(), RunError> {
        let job = self.job;
        let mut last_save = Instant::now();
        loop {
            if job.cancel.is_cancelled() {
                return Err(if self.svc.cancel.is_cancelled() {
                    RunError::Stopping
                } else {
                    RunError::Cancelled
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let st = query(conn, "SHOW SLAVE STATUS").await?;
            let gpos = query(conn, "SELECT @@GLOBAL.gtid_slave_pos AS p")
                .await?
                .get(0, "p")
                .unwrap_or_default()
                .to_string();
            if let Some(e) = replica_failure(&st, listener) {
                if let Some(pos) = e.position() {
                    self.set(|r| r.error_position = Some(pos.to_string()));
                }
                return Err(e);
            }
            let reached = self.record_progress(&st, &gpos, t1).await;
            if reached && listener.stats.reached_stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if last_save.elapsed() > Duration::from_secs(10) {
                job.save(&self.svc.catalog).await;
                last_save = Instant::now();
            }
        }
    }

    /// Updates the job's progress from one SHOW SLAVE STATUS (`st`) and `gtid_slave_pos`
    /// (`gpos`); true when the plan's end is applied and the replica is idle.
    async fn record_progress(&self, st: &ResultSet, gpos: &str, t1: Instant) -> bool {
        let plan = self.plan;
        let use_gtid = plan.base.gtid_pos.is_some();
        let field = |c: &str| st.get(0, c).unwrap_or_default().to_string();
        let exec_file = field("Relay_Master_Log_File");
        let exec_pos: u64 = field("Exec_Master_Log_Pos").parse().unwrap_or(0);
        let applied_bytes = bytes_between(plan, &exec_file, exec_pos, self.svc).await;
        let applied_txns = match (&plan.end_gtid, use_gtid) {
            (Some(end), true) => applied_by_gtid(self.svc, plan, end, gpos).await,
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
        self.set(|r| {
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
        mut conn: Conn,
        inst: &mut Option<Instance>,
        replay_secs: f64,
    ) -> Result<(), RunError> {
        let spec = self.spec;
        let gpos = query(&mut conn, "SELECT @@GLOBAL.gtid_slave_pos AS p")
            .await?
            .get(0, "p")
            .map(str::to_string);
        let restored = if self.run_instance && self.job.private {
            self.set(|r| r.step = String::new());
            Restored {
                address: String::new(),
                socket: Some(spec.socket().display().to_string()),
                datadir: Some(spec.datadir().display().to_string()),
                pid: inst.as_ref().map(|i| i.pid),
                gtid_slave_pos: gpos,
            }
        } else if self.run_instance {
            self.set(|r| r.step = "restarting the instance on its port".into());
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
            Restored {
                address: self
                    .url
                    .map(|u| format!("{}:{}", u.host, u.port))
                    .unwrap_or_default(),
                socket: None,
                datadir: None,
                pid: None,
                gtid_slave_pos: gpos,
            }
        };
        self.set(|r: &mut JobReport| {
            r.replay_seconds = Some(replay_secs);
            r.restored = Some(restored);
        });
        Ok(())
    }
}

/// root over the socket of the instance the service runs: where a logical base is
/// loaded.
fn socket_endpoint(spec: &InstanceSpec) -> Endpoint {
    Endpoint {
        host: spec.socket().display().to_string(),
        port: 0,
        user: "root".into(),
        password: None,
        tls: None,
    }
}

/// Transactions of the plan applied once `gpos` holds the GTID (in `end`'s domain)
/// of the index entry with that ordinal; 0 when it cannot be told.
async fn applied_by_gtid(svc: &RunDeps, plan: &Plan, end: &str, gpos: &str) -> u64 {
    let Ok(Gtid::MariaDb { domain, .. }) = end.parse::<Gtid>() else {
        return 0;
    };
    let cur = gpos
        .split(',')
        .filter_map(|p| p.trim().parse::<Gtid>().ok())
        .find(|g| matches!(g, Gtid::MariaDb { domain: d, .. } if *d == domain));
    let Some(cur) = cur else { return 0 };
    let (idx, src) = (svc.index.clone(), plan.source.clone());
    let e = tokio::task::spawn_blocking(move || idx.find_gtid(&src, &cur)).await;
    match e {
        Ok(Ok(Some(e))) => (e.ordinal + 1).saturating_sub(plan.first_ordinal),
        _ => 0,
    }
}

/// The caller's datadir `d` (created if needed) becomes the instance's: `<dir>/data` is a
/// symlink to it.
fn link_datadir(d: &Path, spec: &InstanceSpec) -> Result<(), RunError> {
    std::fs::create_dir_all(d).map_err(|source| RunError::CreateDatadir {
        path: d.to_path_buf(),
        source,
    })?;
    std::os::unix::fs::symlink(d, spec.datadir()).map_err(|source| RunError::LinkDatadir {
        link: spec.datadir(),
        target: d.to_path_buf(),
        source,
    })
}

/// Runs `sql` on the restored instance; the error names the statement (password
/// redacted).
async fn query(conn: &mut Conn, sql: &str) -> Result<ResultSet, RunError> {
    conn.query(sql).await.map_err(|source| RunError::Query {
        sql: redact_sql(sql),
        source,
    })
}

/// The replica's failure in one SHOW SLAVE STATUS: the SQL thread stopped with an
/// error, or the IO thread did (the fake primary's own ERROR 1236 text when it refused
/// to serve); each with its "file:pos" in the source's binlogs.
fn replica_failure(st: &ResultSet, listener: &Listener) -> Option<RunError> {
    let field = |c: &str| st.get(0, c).unwrap_or_default().to_string();
    let code = |c: &str| field(c).parse::<u16>().unwrap_or(0);
    let sql_errno = code("Last_SQL_Errno");
    if sql_errno != 0 {
        return Some(RunError::ReplicaSqlStopped {
            code: sql_errno,
            message: field("Last_SQL_Error"),
            position: format!(
                "{}:{}",
                field("Relay_Master_Log_File"),
                field("Exec_Master_Log_Pos").parse::<u64>().unwrap_or(0)
            ),
        });
    }
    let io_errno = code("Last_IO_Errno");
    // 1236 is the fake primary refusing to serve; any other error with the IO
    // thread stopped (not "Connecting", which retries) is definite too, e.g.
    // equal server ids or a refused account.
    let refused = io_errno == ER_MASTER_FATAL_ERROR_READING_BINLOG;
    let io_stopped = field("Slave_IO_Running") == "No" && io_errno != 0;
    if !refused && !io_stopped {
        return None;
    }
    let position = format!(
        "{}:{}",
        field("Master_Log_File"),
        field("Read_Master_Log_Pos")
    );
    let served = lock(&listener.stats.last_error).clone().filter(|_| refused);
    Some(match served {
        Some(message) => RunError::Refused { message, position },
        None => RunError::ReplicaIoStopped {
            code: io_errno,
            message: field("Last_IO_Error"),
            position,
        },
    })
}

/// Binlog bytes of the plan applied when the replica has executed up to `file`:`pos`
/// (sizes from the catalog).
async fn bytes_between(plan: &Plan, file: &str, pos: u64, svc: &RunDeps) -> u64 {
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
