//! `binlog-server serve`: opens the catalog and the index, rebuilds from the archive
//! store any source whose local archive was lost (`archive::rebuild`), starts one
//! capture task per source, its shipper and the HTTP API, and supervises them until
//! SIGINT/SIGTERM.
//!
//! On a fleet node (`[node]`) no source is captured at start: the lease keeper
//! (`fleet::lease`) acquires this node's share of the leases, and each source's task
//! takes the source over from the archive store and captures and ships it only during
//! the node's tenures (`fleet::capture`).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, Instrument};

use crate::api::{self, ApiState};
use crate::fleet::capture::FleetSource;
use crate::source::context::{Shared, SourceCtx, SourceRuntime};
use crate::source::supervise::{capture, source_handles};
use archive::index::Index;
use node::config::Settings;
use node::status::{Metrics, StatusCell};
use replay::fake_primary::{self, Archive};
use replay::pitr::{PitrDeps, PitrService};

/// Runs the daemon until `cancel` fires. Returns an error when start-up fails (catalog,
/// index, HTTP listener) or when a source task dies unexpectedly: the process then exits
/// non-zero rather than limping on without that source.
pub async fn run(settings: Settings, cancel: CancellationToken) -> anyhow::Result<()> {
    let (catalog, index) = open_catalog_and_index(&settings).await?;
    let metrics = Arc::new(Metrics::new());
    // What can fail at start goes before the lease keeper, which takes leases at once
    // (a node that then exits on an error would leave them to expire).
    let tier = open_tier(&settings).await?;
    let shared = Shared {
        catalog: catalog.clone(),
        index: index.clone(),
        metrics: metrics.clone(),
        capture: settings.capture.clone(),
        data_dir: settings.data_dir.clone(),
        pools: Arc::new(
            crate::source::pool::IoPools::start().context("start the writer and syncer threads")?,
        ),
        archive_store: tier.as_ref().map(|t| t.store.clone()),
    };
    let archive_lock = tier
        .as_ref()
        .and_then(|t| t.store.locking().map(|(_, r)| r));
    let backups =
        crate::backups::BackupService::open(&settings, catalog.clone(), true, archive_lock).await?;
    let (listener, guard) = bind_http(&settings).await?;
    // The TLS client a fleet node forwards owner jobs with (`[node] peer_ca`).
    let peer_tls =
        match &settings.node {
            Some(n) => Some(node::cli::peer_tls(n.peer_ca.as_deref()).map_err(|e| {
                anyhow::Error::new(crate::fleet::forward::ForwarderError::PeerCa(e))
            })?),
            None => None,
        };
    let reader = tier.clone().map(|t| {
        Arc::new(archive::cache::ArchiveReader::with_catalog(
            t,
            catalog.clone(),
        ))
    });
    let rebuilt = rebuild_at_start(&settings, &catalog, &index, &tier, &reader).await?;
    let keeper = settings
        .node
        .as_ref()
        .map(|n| start_keeper(&settings, n, &shared, &cancel));
    let owners = ownership(keeper.as_ref());
    backups.spawn_schedulers(owners.clone(), cancel.child_token());
    let mut started = start_sources(
        &settings,
        &shared,
        (tier.as_ref(), reader),
        keeper,
        &rebuilt,
        &cancel,
    )
    .await?;
    if let (Some(tier), None) = (&tier, &settings.node) {
        spawn_shippers(&settings, &shared, tier, &mut started, &cancel);
    }
    let (pitr, verify) = open_restore_services(&settings, &shared, &mut started, &cancel).await?;
    verify.spawn_schedulers(owners);
    let state = Arc::new(ApiState {
        data_dir: settings.data_dir.clone(),
        sources: std::mem::take(&mut started.runtimes),
        catalog,
        index,
        metrics,
        backups,
        pitr,
        verify,
        archive: tier,
        node_alive_within: settings
            .node
            .as_ref()
            .map_or(std::time::Duration::from_secs(10), |n| n.lease_ttl),
        leases: started.leases.take(),
    });
    let forward = match (&settings.node, peer_tls, &state.leases) {
        (Some(n), Some(tls), Some(leases)) => Some(Arc::new(
            crate::fleet::forward::Forwarder::new(n, tls, state.catalog.clone(), leases.clone()),
        )),
        _ => None,
    };
    let app = api::router(state, guard, forward);
    let http_cancel = cancel.clone();
    let http_settings = settings.http.clone();
    let http = tokio::spawn(
        async move { crate::http::serve(listener, app, &http_settings, http_cancel).await }
            .instrument(tracing::info_span!("http")),
    );
    let result = supervise(started.tasks, http, &cancel).await;
    drop(started.listeners);
    result
}

/// The PITR and verification services, over the sources' archives and statuses.
async fn open_restore_services(
    settings: &Settings,
    shared: &Shared,
    started: &mut Started,
    cancel: &CancellationToken,
) -> anyhow::Result<(Arc<PitrService>, Arc<verifier::runner::VerifyService>)> {
    let (catalog, index, metrics) = (&shared.catalog, &shared.index, &shared.metrics);
    let pitr = PitrService::open(PitrDeps {
        catalog: catalog.clone(),
        index: index.clone(),
        archives: std::mem::take(&mut started.archives),
        statuses: std::mem::take(&mut started.statuses),
        store: &settings.store,
        tools: settings.tools.clone(),
        cfg: settings.pitr.clone(),
        cancel: cancel.child_token(),
    })
    .await
    .context("start the PITR service")?;
    let verify = verifier::runner::VerifyService::open(
        catalog.clone(),
        index.clone(),
        pitr.clone(),
        metrics.clone(),
        &settings.sources,
        cancel.child_token(),
    )
    .await
    .context("start the verification service")?;
    Ok((pitr, verify))
}

/// Opens the catalog (`[catalog] url`) and the index (`<data_dir>/index.rocksdb`).
async fn open_catalog_and_index(
    settings: &Settings,
) -> anyhow::Result<(Arc<catalog::Catalog>, Arc<Index>)> {
    let catalog = Arc::new(
        settings
            .open_catalog()
            .await
            .context("open the catalog ([catalog] url)")?,
    );
    let index_path = settings.data_dir.join("index.rocksdb");
    let index = Arc::new(
        Index::open(&index_path)
            .with_context(|| format!("open the index at {}", index_path.display()))?,
    );
    Ok((catalog, index))
}

/// Rebuilds from the archive store every source of a single node whose local archive
/// was lost (`archive::rebuild`); returns each rebuilt source's summary. A fleet node
/// takes each source over from the store when it acquires the lease instead
/// (`archive::takeover`).
async fn rebuild_at_start(
    settings: &Settings,
    catalog: &Arc<catalog::Catalog>,
    index: &Arc<Index>,
    tier: &Option<Arc<archive::tier::ArchiveTier>>,
    reader: &Option<Arc<archive::cache::ArchiveReader>>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let (Some(t), Some(r), None) = (tier, reader, &settings.node) else {
        return Ok(BTreeMap::new());
    };
    Ok(
        archive::rebuild::rebuild_lost(settings, catalog, index, t, r, None)
            .await?
            .into_iter()
            .filter_map(|(name, r)| r.map(|r| (name, r.summary())))
            .collect(),
    )
}

/// Binds the API's address (`[http] listen`) and builds its token guard; says whether
/// the API is authenticated. Errors: the bind error, with the address.
async fn bind_http(
    settings: &Settings,
) -> anyhow::Result<(tokio::net::TcpListener, Arc<crate::http::auth::Guard>)> {
    let listener = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .with_context(|| format!("listen on {} ([http] listen)", settings.http_listen))?;
    let guard = Arc::new(
        crate::http::auth::Guard::new(&settings.http)
            .with_node_credential(settings.node.as_ref().and_then(|n| n.credential.clone())),
    );
    let scheme = if settings.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    if guard.authenticated() {
        info!(addr = %settings.http_listen, scheme, "HTTP API listening; bearer tokens required");
    } else {
        tracing::warn!(addr = %settings.http_listen, scheme,
            "HTTP API listening UNAUTHENTICATED (no [http] tokens_file): every local user and process can call every endpoint");
    }
    Ok((listener, guard))
}

/// Opens the archive store when `[archive] enabled`, and empties the cache of files read
/// back from it (cached copies are not fsynced: after a crash one could be torn).
async fn open_tier(settings: &Settings) -> anyhow::Result<Option<Arc<archive::tier::ArchiveTier>>> {
    if !settings.archive.enabled {
        return Ok(None);
    }
    let tier = Arc::new(
        archive::tier::ArchiveTier::open_checked(settings.archive.clone())
            .await
            .context("open the archive store ([archive] store)")?,
    );
    let freed = archive::cache::empty_at_start(&tier.settings.cache_dir);
    if freed > 0 {
        info!(
            freed,
            "emptied the cache of files read back from the archive store"
        );
    }
    Ok(Some(tier))
}

/// Starts one shipping task per source on a single node, supervised with the source
/// tasks (a fleet node ships each source under its tenures instead).
fn spawn_shippers(
    settings: &Settings,
    shared: &Shared,
    tier: &Arc<archive::tier::ArchiveTier>,
    started: &mut Started,
    cancel: &CancellationToken,
) {
    info!(store = %tier.store.url(), codec = tier.codec(), "shipping binlogs to the archive store");
    for (name, rt) in &started.runtimes {
        let evicted = started
            .archives
            .get(name)
            .map(|a| a.evicted.clone())
            .unwrap_or_default();
        let h = archive::ship::spawn(
            archive::ship::ShipperCtx {
                source: name.clone(),
                dir: settings.data_dir.join(name),
                catalog: shared.catalog.clone(),
                tier: tier.clone(),
                status: rt.status.clone(),
                metrics: shared.metrics.clone(),
                evicted,
                primary: rt.primary.clone(),
                // A single node writes as the one owner, under epoch 0.
                epoch: 0,
            },
            cancel.child_token(),
        );
        let n = format!("{name} (archive shipping)");
        started
            .tasks
            .spawn(async move { (n, h.await.map(|()| Ok(()))) });
    }
}

/// The source tasks and what the other services need of them.
struct Started {
    /// Each source's runtime handles, by name (for the API).
    runtimes: BTreeMap<String, SourceRuntime>,
    /// Each source's archive, by name (for PITR).
    archives: BTreeMap<String, Arc<Archive>>,
    /// Each source's live status, by name (for PITR).
    statuses: BTreeMap<String, StatusCell>,
    /// The fake primaries of `[source.replication]`; dropping one stops it.
    listeners: Vec<fake_primary::Listener>,
    /// The supervised source tasks: (name, result).
    tasks: SourceTasks,
    /// The lease keeper's handle on a fleet node (for the API).
    leases: Option<crate::fleet::lease::LeaseHandle>,
}

/// The supervised source tasks, each ending with its name and its result.
type SourceTasks = JoinSet<(String, Result<anyhow::Result<()>, tokio::task::JoinError>)>;

/// Starts every source's capture task and its `[source.replication]` fake primary. On
/// a fleet node (`[node]`) each source's task waits for the node's tenures of its lease
/// (`fleet::capture`), and the lease keeper runs with the source tasks.
async fn start_sources(
    settings: &Settings,
    shared: &Shared,
    (tier, reader): (
        Option<&Arc<archive::tier::ArchiveTier>>,
        Option<Arc<archive::cache::ArchiveReader>>,
    ),
    keeper: Option<Keeper>,
    rebuilt: &BTreeMap<String, String>,
    cancel: &CancellationToken,
) -> anyhow::Result<Started> {
    let mut started = Started {
        runtimes: BTreeMap::new(),
        archives: BTreeMap::new(),
        statuses: BTreeMap::new(),
        listeners: Vec::new(),
        tasks: JoinSet::new(),
        leases: None,
    };
    let fleet = match (keeper, tier, &reader) {
        (Some(k), Some(t), Some(r)) => Some((k, t.clone(), r.clone())),
        _ => None,
    };
    let mut routes = BTreeMap::new();
    for source in settings.sources.iter().cloned() {
        let name = source.name.clone();
        let (rt, inbox) = source_handles(&source);
        if let Some(summary) = rebuilt.get(&name) {
            rt.status.note(summary.clone());
        }
        let evicted = evicted_files(shared, settings, &name, reader.is_some()).await;
        let writer = Arc::new(archive::follow::IndexWriter::default());
        let archive = Arc::new(Archive {
            evicted: evicted.clone(),
            reader: reader.clone(),
            source: name.clone(),
            dir: settings.data_dir.join(&name),
            status: (!source.archive_only).then(|| rt.status.clone()),
            catalog: shared.catalog.clone(),
            index: shared.index.clone(),
            checks: Some(rt.checks.clone()),
            writer: writer.clone(),
            view_end: None,
        });
        if let Some(l) = replication_listener(&source, &archive, cancel).await? {
            started.listeners.push(l);
        }
        let task = match &fleet {
            Some((keeper, tier, reader)) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                routes.insert(name.clone(), tx);
                let fs = FleetSource {
                    shared: shared.clone(),
                    source,
                    status: rt.status.clone(),
                    inbox,
                    primary: rt.primary.clone(),
                    tier: tier.clone(),
                    reader: reader.clone(),
                    evicted,
                    leases: keeper.handle.clone(),
                    writer,
                };
                spawn_fleet_source(fs, rx, cancel)
            }
            None => spawn_capture(shared, source, &rt, inbox, cancel),
        };
        started.statuses.insert(name.clone(), rt.status.clone());
        started.archives.insert(name.clone(), archive);
        started.runtimes.insert(name.clone(), rt);
        started.tasks.spawn(async move { (name, task.await) });
    }
    if let Some((keeper, _, _)) = fleet {
        supervise_keeper(keeper, routes, shared, &mut started);
    }
    Ok(started)
}

/// A single node's capture of `source`, until `cancel`.
fn spawn_capture(
    shared: &Shared,
    source: node::config::Source,
    rt: &SourceRuntime,
    mut inbox: crate::source::supervise::SourceInbox,
    cancel: &CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let span = tracing::info_span!("source", source = %source.name);
    let upstream = crate::source::context::Upstream::cell(&source);
    let ctx = SourceCtx {
        shared: shared.clone(),
        source,
        status: rt.status.clone(),
        cancel: cancel.child_token(),
        tenure: None,
        upstream,
    };
    tokio::spawn(async move { capture(&ctx, &mut inbox).await }.instrument(span))
}

/// A fleet node's task for one source: its tenures, until `cancel`.
fn spawn_fleet_source(
    fs: FleetSource,
    tenures: tokio::sync::mpsc::UnboundedReceiver<crate::fleet::lease::Tenure>,
    cancel: &CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let span = tracing::info_span!("source", source = %fs.source.name);
    tokio::spawn(fs.run(tenures, cancel.child_token()).instrument(span))
}

/// The `[source.replication]` fake primary of `source` over `archive`, when configured.
async fn replication_listener(
    source: &node::config::Source,
    archive: &Arc<Archive>,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<fake_primary::Listener>> {
    let Some(r) = source.replication.clone() else {
        return Ok(None);
    };
    let listener = fake_primary::spawn(
        r.listen,
        archive.clone(),
        r.creds,
        None,
        fake_primary::ListenerOptions {
            tls: r.tls,
            max_sessions: r.max_sessions,
        },
        cancel,
    )
    .await
    .with_context(|| format!("source {}: [source.replication] listen", source.name))?;
    Ok(Some(listener))
}

/// Files the store holds whole and the disk no longer does (when the store is on).
async fn evicted_files(
    shared: &Shared,
    settings: &Settings,
    name: &str,
    tiered: bool,
) -> archive::cache::Evicted {
    let evicted = archive::cache::Evicted::default();
    if tiered {
        let dir = settings.data_dir.join(name);
        for o in shared
            .catalog
            .list_archive_objects(name)
            .await
            .unwrap_or_default()
        {
            if o.kind == catalog::ArchiveKind::File && !dir.join(&o.file).exists() {
                evicted.insert(&o.file, o.end_offset);
            }
        }
    }
    evicted
}

/// A fleet node's running lease keeper, before its tenures are routed.
struct Keeper {
    handle: crate::fleet::lease::LeaseHandle,
    events: tokio::sync::mpsc::UnboundedReceiver<crate::fleet::lease::LeaseEvent>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the lease keeper of `[node]` over every configured source (its events wait
/// until [`supervise_keeper`] routes them, once the source tasks exist).
fn start_keeper(
    settings: &Settings,
    node: &node::config::NodeSettings,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Keeper {
    use crate::fleet::lease::{LeaseKeeper, LeaseOptions};
    info!(node = %node.id, lease_ttl = ?node.lease_ttl, sources = settings.sources.len(),
        "fleet node: each source is captured here only while this node holds its lease");
    let (handle, events, task) = LeaseKeeper::spawn(
        shared.catalog.clone(),
        settings.sources.iter().map(|s| s.name.clone()).collect(),
        LeaseOptions::new(&node.id, &node.advertise, node.lease_ttl),
        cancel.child_token(),
    );
    Keeper {
        handle,
        events,
        task,
    }
}

/// Where scheduled jobs run: everywhere on a single node; on a fleet node, for the
/// sources whose lease this node holds when a job is due.
fn ownership(keeper: Option<&Keeper>) -> node::status::Ownership {
    match keeper {
        None => node::status::Ownership::everywhere(),
        Some(k) => {
            let handle = k.handle.clone();
            node::status::Ownership::new(move |source| handle.held().get(source).copied())
        }
    }
}

/// Routes the keeper's tenures to the source tasks; the keeper and the router are
/// supervised with them (the keeper releases its leases at shut-down).
fn supervise_keeper(
    keeper: Keeper,
    routes: BTreeMap<String, tokio::sync::mpsc::UnboundedSender<crate::fleet::lease::Tenure>>,
    shared: &Shared,
    started: &mut Started,
) {
    started.leases = Some(keeper.handle);
    let router = crate::fleet::capture::route(keeper.events, routes, shared.metrics.clone());
    let task = keeper.task;
    started.tasks.spawn(async move {
        let r = task.await.map(|()| Ok(()));
        let _ = router.await;
        ("lease keeper".to_string(), r)
    });
}

/// Waits for shut-down, the HTTP server's end, or a source task's unexpected end (a
/// source that could not start is failed in the API and the catalog, and the others go
/// on); then stops everything and waits for the tasks.
async fn supervise(
    mut tasks: SourceTasks,
    mut http: tokio::task::JoinHandle<std::io::Result<()>>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut failure = None;
    let mut http_done = false;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = &mut http => {
                http_done = true;
                if !cancel.is_cancelled() {
                    failure = Some(anyhow::anyhow!("the HTTP server stopped: {r:?}"));
                }
                break;
            }
            Some(done) = tasks.join_next() => {
                match done {
                    Ok((name, Ok(Ok(())))) if cancel.is_cancelled() => { let _ = name; }
                    Ok((name, Ok(Ok(())))) => { failure = Some(anyhow::anyhow!("source {name} stopped unexpectedly")); break; }
                    Ok((name, Ok(Err(e)))) => { error!(source = %name, error = %format!("{e:#}"), "source failed"); }
                    Ok((name, Err(e))) => { failure = Some(anyhow::anyhow!("source {name} panicked: {e}")); break; }
                    Err(e) => { failure = Some(anyhow::anyhow!("a source task failed: {e}")); break; }
                }
            }
        }
    }
    cancel.cancel();
    while let Some(r) = tasks.join_next().await {
        if let Ok((name, Ok(Err(e)))) = r {
            error!(source = %name, error = %format!("{e:#}"), "source ended with an error");
        }
    }
    if !http_done {
        let _ = http.await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
