//! The HTTP API (axum). Every error is JSON `{"error": "..."}` with a fitting status.
//! Every route passes [`crate::http::auth::guard`] first (Host/Origin, token and role,
//! `Content-Type: application/json` on POST and DELETE); the role each needs is in
//! [`crate::http::auth::required_role`] and the README's API section.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/healthz` | `{"status":"ok"}` |
//! | GET | `/metrics` | Prometheus text |
//! | GET | `/v1/sources` | array of source status objects |
//! | GET | `/v1/sources/{name}` | one source status |
//! | GET | `/v1/sources/{name}/binlogs` | `{"source", "files": [...], "gaps": [...]}`; each file with `location` (`local`, `store`, `both`) and `archive` (`object_key`, `codec`, `stored_bytes`, `chunks`, `chunk_bytes`) |
//! | GET | `/v1/sources/{name}/timelines` | `{"source", "timelines": [...]}`: each server capture followed, oldest first: `timeline`, `server_id`, `server_url`, `started_at`, `switch_gtid`, `first_file`, `reason`, `divergent` |
//! | POST | `/v1/sources/{name}/restart` | body `{"accept_gap": bool}` (optional); 202 |
//! | POST | `/v1/sources/{name}/binlogs/{file}/check` | 202; the file is verified again |
//! | POST | `/v1/sources/{name}/archive/scrub` | 202; every object of the source in the archive store is read back and checked, damaged ones replaced; the report shows as `archive.last_scrub` in the source's status; 409 without `[archive]` |
//! | GET | `/v1/sources/{name}/lookup?time=RFC3339` or `?gtid=D-S-N` / `?gtid=uuid:n` | index entry |
//! | GET | `/v1/sources/{name}/backups` | `{"source", "oldest_restorable", "backups": [...]}` |
//! | POST | `/v1/sources/{name}/backups` | body `{"method": "physical"\|"logical"\|"clone", "incremental": bool}` (optional); 202 `{"job_id", "backup_id"}`; 409 if one is running |
//! | POST | `/v1/sources/{name}/backups/retention` | applies retention now; the report |
//! | GET | `/v1/jobs/{id}` | job state, phase, `bytes_done`, the base when finished |
//! | POST | `/v1/sources/{name}/pitr/plan` | body `{"target_time": "2026-11-21T14:03:27Z"}` or `{"target_gtid": "0-1-1234"}` (optional `"base_id"`); the plan, or 422 with the reason |
//! | POST | `/v1/sources/{name}/pitr` | the same plus `"scratch": true` or `"url"` (+ `"datadir"` for physical bases); 202 with the job report |
//! | GET | `/v1/pitr/{id}` | phase, progress (transactions and bytes applied of planned, rate, ETA), the restored instance when done, the error and file:pos on failure |
//! | DELETE | `/v1/pitr/{id}` | stops the restored instance the service runs and removes its scratch directory |
//! | POST | `/v1/sources/{name}/verifications` | body `{"keep_instance": bool}` (optional); starts a restore verification now; 202 with the report; 409 while one runs |
//! | GET | `/v1/verifications?source=NAME&days=N` | reports of the last N days (default 30), newest first |
//! | GET | `/v1/verifications/{id}` | one run's report (JSON); `/v1/verifications/{id}.html`: the same as a page |
//! | GET | `/v1/verifications/summary.html` | weekly summary page across sources (JSON: `/v1/verifications/summary`) |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use catalog::Catalog;
use serde::Deserialize;
use serde_json::json;

use crate::http::JsonBody;
use crate::source::context::{SourceCommand, SourceRuntime};
use archive::index::Index;
use binlog::Gtid;
use node::status::Metrics;
use node::tokens::{Caller, Role};

/// What the handlers share.
pub struct ApiState {
    /// Running sources by name.
    pub sources: BTreeMap<String, SourceRuntime>,
    /// Catalog.
    pub catalog: Arc<Catalog>,
    /// Index.
    pub index: Arc<Index>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Base backups.
    pub backups: Arc<crate::backups::BackupService>,
    /// PITR jobs.
    pub pitr: Arc<replay::pitr::PitrService>,
    /// Restore verifications.
    pub verify: Arc<verifier::runner::VerifyService>,
    /// Archive root (`<data_dir>/<source>/<file>`).
    pub data_dir: std::path::PathBuf,
    /// The archive store, when `[archive]` is enabled.
    pub archive: Option<Arc<archive::tier::ArchiveTier>>,
    /// A node whose last heartbeat is older than this is shown as not alive
    /// (`[node] lease_ttl`, or its default without `[node]`).
    pub node_alive_within: std::time::Duration,
    /// This fleet node's lease keeper (`None` on a single node).
    pub leases: Option<crate::fleet::lease::LeaseHandle>,
}

/// A JSON error answer.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn not_found(what: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, what)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Builds the router: the routes below, each behind `guard` and, on a fleet node,
/// `forward` (an owner job sent to the source's lease owner), every error as JSON.
pub fn router(
    state: Arc<ApiState>,
    guard: Arc<crate::http::auth::Guard>,
    forward: Option<Arc<crate::fleet::forward::Forwarder>>,
) -> Router {
    let routes = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/v1/sources", get(list_sources))
        .route("/v1/sources/{name}", get(get_source))
        .route("/v1/sources/{name}/binlogs", get(list_binlogs))
        .route("/v1/sources/{name}/timelines", get(list_timelines))
        .route("/v1/sources/{name}/restart", post(restart))
        .route("/v1/sources/{name}/binlogs/{file}/check", post(check_file))
        .route("/v1/sources/{name}/archive/scrub", post(scrub_archive))
        .route("/v1/sources/{name}/lookup", get(lookup))
        .route(
            "/v1/sources/{name}/backups",
            get(list_backups).post(start_backup),
        )
        .route("/v1/sources/{name}/backups/retention", post(run_retention))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/sources/{name}/pitr/plan", post(pitr_plan))
        .route("/v1/sources/{name}/pitr", post(pitr_start))
        .route("/v1/pitr/{id}", get(pitr_get).delete(pitr_remove))
        .route("/v1/sources/{name}/verifications", post(verify_start))
        .route("/v1/verifications", get(verify_list))
        .route("/v1/verifications/{id}", get(verify_get))
        .route("/v1/nodes", get(list_nodes));
    let routes = match forward {
        Some(f) => routes.route_layer(axum::middleware::from_fn_with_state(
            f,
            crate::fleet::forward::forward,
        )),
        None => routes,
    };
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            crate::http::auth::guard,
        ))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; see the README's API section".into(),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::http::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::map_response(crate::http::json_errors))
        .with_state(state)
}

async fn metrics(State(st): State<Arc<ApiState>>) -> impl IntoResponse {
    let calls = i64::try_from(st.catalog.calls()).unwrap_or(i64::MAX);
    st.metrics.catalog_calls.set(calls);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.encode(),
    )
}

fn source<'a>(st: &'a ApiState, name: &str) -> Result<&'a SourceRuntime, ApiError> {
    st.sources
        .get(name)
        .ok_or_else(|| not_found(format!("no source named {name:?}")))
}

/// The status with the lag recomputed from the last poll of the primary and the current
/// durable position (the poll's own figure is as old as the poll).
fn status_now(s: &SourceRuntime) -> node::status::SourceStatus {
    let binlogs = s
        .primary
        .lock()
        .map(|v| v.binlogs.clone())
        .unwrap_or_default();
    let mut snap = s.status.snapshot();
    if !binlogs.is_empty() {
        let (bytes, secs) = crate::source::poll::lag(&s.status, &binlogs);
        snap.bytes_behind = bytes;
        snap.seconds_behind = secs;
    }
    snap
}

async fn list_sources(
    State(st): State<Arc<ApiState>>,
    caller: Option<Extension<Caller>>,
) -> Result<impl IntoResponse, ApiError> {
    let leases = Leases::read(&st).await;
    let v: Vec<_> = st
        .sources
        .values()
        .filter(|s| may_use(&caller, &s.name))
        .map(|s| leases.with_lease(status_now(s)))
        .collect();
    Ok(Json(v))
}

/// How long an answer waits for the catalog's leases before it answers without them.
const LEASES_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The leases of the catalog as read once for an answer: each source's status gets a
/// `lease` field (owner while live, epoch, ms left, and `held_here`: the epoch this node
/// holds and may write under now, by its own clock, else `null`; `null` without a lease
/// row).
///
/// When the catalog does not answer (PostgreSQL down), the answer still comes, from
/// this node alone: `lease` is `{"held_here": ..., "catalog_error": "..."}` on a fleet
/// node and `null` on a single node.
struct Leases {
    now: i64,
    rows: Vec<catalog::LeaseRow>,
    held: Option<BTreeMap<String, i64>>,
    catalog_error: Option<String>,
}

impl Leases {
    async fn read(st: &ApiState) -> Leases {
        let held = st.leases.as_ref().map(|h| h.held());
        // Bounded: with the catalog down, the pool would wait for its acquire timeout.
        let read = tokio::time::timeout(LEASES_READ_TIMEOUT, st.catalog.list_leases()).await;
        let (now, rows, catalog_error) = match read {
            Ok(Ok((now, rows))) => (now, rows, None),
            Ok(Err(e)) => (0, Vec::new(), Some(e.to_string())),
            Err(_) => (
                0,
                Vec::new(),
                Some(format!(
                    "the catalog did not answer within {LEASES_READ_TIMEOUT:?}"
                )),
            ),
        };
        Leases {
            now,
            rows,
            held,
            catalog_error,
        }
    }

    fn with_lease(&self, status: node::status::SourceStatus) -> WithLease {
        let held_here = self.held.as_ref().and_then(|h| h.get(&status.name));
        let lease = match (&self.catalog_error, &self.held) {
            (Some(e), Some(_)) => Some(json!({ "held_here": held_here, "catalog_error": e })),
            (Some(_), None) => None,
            (None, _) => self.rows.iter().find(|l| l.source == status.name).map(|l| {
                json!({
                    "owner": l.live_owner(self.now),
                    "epoch": l.epoch,
                    "live": l.is_live(self.now),
                    "expires_in_ms": l.expires_in_ms(self.now),
                    "held_here": held_here,
                })
            }),
        };
        WithLease { status, lease }
    }
}

/// A source's status with its `lease` beside the status's own fields.
#[derive(serde::Serialize)]
struct WithLease {
    #[serde(flatten)]
    status: node::status::SourceStatus,
    lease: Option<serde_json::Value>,
}

/// Whether the caller may see `source` (a token limited to other sources may not).
fn may_use(caller: &Option<Extension<Caller>>, source: &str) -> bool {
    caller.as_ref().is_none_or(|Extension(c)| c.may_use(source))
}

async fn get_source(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let status = status_now(source(&st, &name)?);
    Ok(Json(Leases::read(&st).await.with_lease(status)))
}

async fn list_binlogs(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    source(&st, &name)?;
    let files = st.catalog.list_files(&name).await.map_err(internal)?;
    let gaps = st.catalog.list_gaps(&name).await.map_err(internal)?;
    let objects = st
        .catalog
        .list_archive_objects(&name)
        .await
        .map_err(internal)?;
    let dir = st.data_dir.join(&name);
    let files: Vec<serde_json::Value> = files
        .into_iter()
        .map(|f| {
            let whole = objects
                .iter()
                .find(|o| o.file == f.name && o.kind == catalog::ArchiveKind::File);
            let chunks: Vec<&catalog::ArchiveObjectRow> = objects
                .iter()
                .filter(|o| o.file == f.name && o.kind == catalog::ArchiveKind::Chunk)
                .collect();
            let local = dir.join(&f.name).exists();
            let location = match (local, whole.is_some()) {
                (true, true) => "both",
                (true, false) => "local",
                (false, true) => "store",
                (false, false) => "missing",
            };
            let mut v = serde_json::to_value(&f).unwrap_or_default();
            v["location"] = location.into();
            v["archive"] = json!({
                "object_key": whole.map(|o| o.object_key.clone()),
                "codec": whole.map(|o| o.codec.clone()),
                "stored_bytes": whole.map(|o| o.stored_bytes),
                "chunks": chunks.len(),
                "chunk_bytes": chunks.iter().map(|c| c.end_offset - c.start_offset).sum::<u64>(),
            });
            v
        })
        .collect();
    Ok(Json(
        json!({ "source": name, "files": files, "gaps": gaps }),
    ))
}

/// The source's timelines (`catalog::timelines`): the servers capture followed.
async fn list_timelines(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    source(&st, &name)?;
    let timelines = st.catalog.list_timelines(&name).await.map_err(internal)?;
    Ok(Json(json!({ "source": name, "timelines": timelines })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartBody {
    #[serde(default)]
    accept_gap: bool,
}

async fn restart(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RestartBody>,
) -> Result<impl IntoResponse, ApiError> {
    let s = source(&st, &name)?;
    let accept_gap = body.accept_gap;
    if s.status.snapshot().state != node::status::CaptureState::Failed {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("source {name:?} is not failed: nothing to restart"),
        ));
    }
    s.commands
        .try_send(SourceCommand::Restart { accept_gap })
        .map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "a restart is already pending; try again".into(),
            ),
            tokio::sync::mpsc::error::TrySendError::Closed(_) => ApiError(
                StatusCode::CONFLICT,
                "the source could not start (see last_error); fix that and restart binlog-server"
                    .into(),
            ),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"source": name, "restart": true, "accept_gap": accept_gap})),
    ))
}

async fn check_file(
    State(st): State<Arc<ApiState>>,
    Path((name, file)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let s = source(&st, &name)?;
    if st
        .catalog
        .get_file(&name, &file)
        .await
        .map_err(internal)?
        .is_none()
    {
        return Err(not_found(format!("source {name:?} has no binlog {file:?}")));
    }
    s.checks.try_send(file.clone()).map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the source is busy; try again".into(),
        )
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"source": name, "file": file, "check": "queued"})),
    ))
}

async fn scrub_archive(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    source(&st, &name)?;
    let Some(tier) = &st.archive else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "[archive] is not enabled: there is no archive store to scrub".into(),
        ));
    };
    tier.request_scrub(&name);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"source": name, "scrub": "queued"})),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupQuery {
    time: Option<String>,
    gtid: Option<String>,
}

async fn lookup(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    q: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    source(&st, &name)?;
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let index = st.index.clone();
    match (q.time, q.gtid) {
        (Some(t), None) => {
            let ts =
                time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| {
                        ApiError(
                            StatusCode::BAD_REQUEST,
                            format!("time {t:?} is not RFC 3339 (e.g. 2026-11-21T14:03:27Z): {e}"),
                        )
                    })?;
            let secs = u32::try_from(ts.unix_timestamp()).map_err(|_| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("time {t:?} is outside the binlog timestamp range"),
                )
            })?;
            let n = name.clone();
            let e = tokio::task::spawn_blocking(move || index.first_after_time(&n, secs))
                .await
                .map_err(internal)?
                .map_err(internal)?;
            Ok(Json(json!({ "source": name, "time": t, "first_after": e })))
        }
        (None, Some(g)) => {
            let gtid: Gtid = g
                .parse()
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("gtid {g:?}: {e}")))?;
            let n = name.clone();
            let e = tokio::task::spawn_blocking(move || index.find_gtid(&n, &gtid))
                .await
                .map_err(internal)?
                .map_err(internal)?;
            match e {
                Some(e) => Ok(Json(json!({ "source": name, "gtid": g, "transaction": e }))),
                None => Err(not_found(format!(
                    "GTID {g} is not in the archive of {name}"
                ))),
            }
        }
        _ => Err(ApiError(
            StatusCode::BAD_REQUEST,
            "give exactly one of time=RFC3339 or gtid=...".into(),
        )),
    }
}

async fn list_backups(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if st.backups.source(&name).is_none() {
        return Err(not_found(format!("no source named {name:?}")));
    }
    let (rows, oldest) = st.backups.list(&name).await.map_err(internal)?;
    Ok(Json(json!({
        "source": name,
        "oldest_restorable": oldest,
        "backups": rows,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    method: Option<String>,
    #[serde(default)]
    incremental: bool,
}

async fn start_backup(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<BackupBody>,
) -> Result<impl IntoResponse, ApiError> {
    let method = body
        .method
        .as_deref()
        .map(str::parse::<snapshotter::Method>)
        .transpose()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    use crate::backups::StartError;
    match st.backups.start(&name, method, body.incremental) {
        Ok(id) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"job_id": id, "backup_id": id})),
        )),
        Err(e @ StartError::UnknownSource(_)) => Err(not_found(e.to_string())),
        Err(e @ StartError::Busy(..)) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
        Err(e @ StartError::Invalid(_)) => Err(ApiError(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e @ StartError::NotOwner(_)) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
    }
}

async fn run_retention(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let r = st.backups.retention(&name).await.map_err(|e| match e {
        crate::backups::RetentionFailed::UnknownSource(_) => not_found(e.to_string()),
        crate::backups::RetentionFailed::NotOwner(_) => {
            ApiError(StatusCode::CONFLICT, e.to_string())
        }
        e => internal(e),
    })?;
    Ok(Json(r))
}

async fn get_job(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
) -> Result<impl IntoResponse, ApiError> {
    match st.backups.job(&id).await.map_err(internal)? {
        Some(j) if may_use(&caller, &j.source) => Ok(Json(j)),
        _ => Err(not_found(format!("no job {id:?}"))),
    }
}

/// Body of the PITR endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PitrBody {
    /// Target time (RFC 3339, or "YYYY-MM-DD HH:MM:SS" in UTC).
    pub target_time: Option<String>,
    /// Target GTID.
    pub target_gtid: Option<String>,
    /// Restore into a scratch instance the service starts.
    #[serde(default)]
    pub scratch: bool,
    /// Or into an existing instance: its administrator URL.
    pub url: Option<String>,
    /// The existing instance's (empty) datadir, for physical bases.
    pub datadir: Option<String>,
    /// Use this base instead of the newest one before the target.
    pub base_id: Option<String>,
}

/// The HTTP status of a PITR error: 400 bad request, 403 a destination not allowed, 404
/// unknown source or job, 422 for every reason the archive has no plan, 503 when a node
/// that does not capture the source cannot read its archive from the store, 500
/// internal. The one place it is chosen.
fn plan_error_status(e: &replay::pitr::PlanError) -> StatusCode {
    use replay::pitr::PlanError as P;
    match e {
        P::BadRequest(_) => StatusCode::BAD_REQUEST,
        P::NotFound(_) => StatusCode::NOT_FOUND,
        P::Forbidden(_) => StatusCode::FORBIDDEN,
        P::TargetInFuture { .. }
        | P::NothingArchived { .. }
        | P::BeyondArchiveEnd { .. }
        | P::GtidNotArchived { .. }
        | P::BaseNotUsable { .. }
        | P::NoBase { .. }
        | P::BaseChain { .. }
        | P::BaseFileNotArchived { .. }
        | P::BasePositionNotArchived { .. }
        | P::FileNotListed { .. }
        | P::SequenceHole { .. }
        | P::RecordedGap { .. }
        | P::DivergentSwitch { .. }
        | P::SwitchNotIndexed { .. }
        | P::FileFailed { .. }
        | P::FileNotIndexed { .. }
        | P::FileMissing { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        P::StoreUnreadable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        P::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn pitr_err(e: replay::pitr::PlanError) -> ApiError {
    ApiError(plan_error_status(&e), e.to_string())
}

fn pitr_target(b: &PitrBody) -> Result<replay::pitr::Target, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    match (&b.target_time, &b.target_gtid) {
        (Some(t), None) => replay::pitr::parse_time(t)
            .map(replay::pitr::Target::Time)
            .map_err(bad),
        (None, Some(g)) => g
            .trim()
            .parse::<Gtid>()
            .map(replay::pitr::Target::Gtid)
            .map_err(|_| bad(format!("target_gtid {g:?} is not a GTID (D-S-N or uuid:n)"))),
        _ => Err(bad("give exactly one of target_time and target_gtid".into())),
    }
}

async fn pitr_plan(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PitrBody>,
) -> Result<impl IntoResponse, ApiError> {
    let target = pitr_target(&body)?;
    let plan = st
        .pitr
        .plan(&name, &target, body.base_id.as_deref())
        .await
        .map_err(pitr_err)?;
    Ok(Json(plan))
}

async fn pitr_start(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    JsonBody(body): JsonBody<PitrBody>,
) -> Result<impl IntoResponse, ApiError> {
    let target = pitr_target(&body)?;
    if body.url.is_some() {
        let role = caller.map(|Extension(c)| c.role).unwrap_or(Role::Read);
        if role < Role::Admin {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("a PITR into an existing instance (\"url\") needs the admin role; this token has {role}"),
            ));
        }
    }
    let dest = match (body.scratch, &body.url) {
        (true, None) => replay::pitr::Destination::Scratch,
        (false, Some(u)) => {
            let url = node::config::SourceUrl::parse(u)
                .map_err(|m| ApiError(StatusCode::BAD_REQUEST, format!("url: {m}")))?;
            if url.ssl_ca.is_some() {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "url: ssl-ca is not taken from a request; set [pitr] destination_ssl_ca"
                        .into(),
                ));
            }
            replay::pitr::Destination::Existing {
                url,
                datadir: body.datadir.as_ref().map(std::path::PathBuf::from),
            }
        }
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give a destination: \"scratch\": true, or \"url\" (and \"datadir\" for a physical base)".into(),
            ))
        }
    };
    let rep = st
        .pitr
        .start(&name, &target, body.base_id.as_deref(), dest)
        .await
        .map_err(pitr_err)?;
    Ok((StatusCode::ACCEPTED, Json(rep)))
}

async fn pitr_get(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
) -> Result<impl IntoResponse, ApiError> {
    let report = st.pitr.get(&id).await.map_err(pitr_err)?;
    pitr_visible(&report, &caller, &id)?;
    Ok(Json(report))
}

async fn pitr_remove(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
) -> Result<impl IntoResponse, ApiError> {
    if caller.as_ref().is_some_and(|Extension(c)| c.is_limited()) {
        let report = st.pitr.get(&id).await.map_err(pitr_err)?;
        pitr_visible(&report, &caller, &id)?;
    }
    Ok(Json(st.pitr.remove(&id).await.map_err(pitr_err)?))
}

/// A PITR job of a source the caller may not use is "not found" to it.
fn pitr_visible(
    report: &serde_json::Value,
    caller: &Option<Extension<Caller>>,
    id: &str,
) -> Result<(), ApiError> {
    let source = report["source"].as_str().unwrap_or("");
    if may_use(caller, source) {
        Ok(())
    } else {
        Err(not_found(format!("no PITR job {id:?}")))
    }
}

/// `GET /v1/nodes`: the fleet as the shared catalog holds it. Every node (advertised
/// URL, start, last heartbeat and its age in ms, alive = a heartbeat within a lease
/// time, draining, the sources whose live lease it holds) and every source's lease
/// (owner, epoch, ms left, previous owner); times in ms on the catalog's clock, which
/// `now_ms` gives. A single node without `[node]` shows no node and no lease.
async fn list_nodes(State(st): State<Arc<ApiState>>) -> Result<impl IntoResponse, ApiError> {
    let (now, nodes) = st.catalog.list_nodes().await.map_err(internal)?;
    let (_, leases) = st.catalog.list_leases().await.map_err(internal)?;
    let nodes: Vec<serde_json::Value> = nodes
        .iter()
        .map(|n| {
            let held: Vec<&str> = leases
                .iter()
                .filter(|l| l.is_held_by(&n.id, now))
                .map(|l| l.source.as_str())
                .collect();
            json!({
                "id": n.id,
                "advertise": n.advertise,
                "started_ms": n.started_ms,
                "heartbeat_ms": n.heartbeat_ms,
                "heartbeat_age_ms": now.saturating_sub(n.heartbeat_ms),
                "alive": n.is_alive(now, st.node_alive_within),
                "draining": n.is_draining(),
                "leases": held,
            })
        })
        .collect();
    let leases: Vec<serde_json::Value> = leases
        .iter()
        .map(|l| {
            json!({
                "source": l.source,
                "owner": l.live_owner(now),
                "epoch": l.epoch,
                "live": l.is_live(now),
                "expires_in_ms": l.expires_in_ms(now),
                "previous_owner": l.previous_owner,
            })
        })
        .collect();
    Ok(Json(
        json!({ "now_ms": now, "nodes": nodes, "leases": leases }),
    ))
}

/// The HTTP status of each [`VerifyError`](verifier::runner::VerifyError): the one
/// place it is chosen.
fn verify_error_status(e: &verifier::runner::VerifyError) -> StatusCode {
    use verifier::runner::VerifyError as V;
    match e {
        V::NotFound(_) => StatusCode::NOT_FOUND,
        V::Busy(_) => StatusCode::CONFLICT,
        V::Catalog(_) | V::Report(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn verify_err(e: verifier::runner::VerifyError) -> ApiError {
    ApiError(verify_error_status(&e), e.to_string())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    keep_instance: Option<bool>,
}

async fn verify_start(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<VerifyBody>,
) -> Result<impl IntoResponse, ApiError> {
    let r = st
        .verify
        .start(&name, body.keep_instance)
        .await
        .map_err(verify_err)?;
    Ok((StatusCode::ACCEPTED, Json(r)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    source: Option<String>,
    days: Option<u32>,
}

async fn verify_list(
    State(st): State<Arc<ApiState>>,
    q: Result<Query<VerifyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let days = i64::from(q.days.unwrap_or(30).min(3660));
    let since = catalog::unix_now() - days * 86_400;
    let runs = st
        .verify
        .list(q.source.as_deref(), since, 1000)
        .await
        .map_err(verify_err)?;
    Ok(Json(json!({ "verifications": runs })))
}

async fn verify_get(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
) -> Result<Response, ApiError> {
    let now = catalog::unix_now();
    let limited = caller.as_ref().is_some_and(|Extension(c)| c.is_limited());
    if limited && (id == "summary" || id == "summary.html") {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "the verification summary spans every source; this token is limited to some".into(),
        ));
    }
    let visible = |r: &verifier::report::Report| {
        if may_use(&caller, &r.source) {
            Ok(())
        } else {
            Err(not_found(format!("no verification {id:?}")))
        }
    };
    let html =
        |page: String| ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    if id == "summary" || id == "summary.html" {
        let since = now - verifier::schedule::WEEK_SECS;
        let runs = st
            .verify
            .list(None, since, 1000)
            .await
            .map_err(verify_err)?;
        if id == "summary" {
            return Ok(Json(json!({ "since": since, "sources": st.verify.source_names(), "verifications": runs })).into_response());
        }
        return Ok(html(verifier::html::summary_page(
            &runs,
            &st.verify.source_names(),
            now,
        )));
    }
    if let Some(id) = id.strip_suffix(".html") {
        let r = st.verify.get(id).await.map_err(verify_err)?;
        visible(&r)?;
        return Ok(html(verifier::html::report_page(&r, now)));
    }
    let r = st.verify.get(&id).await.map_err(verify_err)?;
    visible(&r)?;
    Ok(Json(r).into_response())
}
