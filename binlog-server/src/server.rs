//! `binlog-server serve`: opens the catalog and the index, starts one capture task per
//! source and the HTTP API, and supervises them until SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, Instrument};

use crate::api::{self, ApiState};
use crate::archive::index::Index;
use crate::config::Settings;
use crate::replay::fake_primary::{self, Archive};
use crate::replay::pitr::{PitrDeps, PitrService};
use crate::source::context::Shared;
use crate::source::supervise::spawn_source;
use crate::status::Metrics;

/// Runs the daemon until `cancel` fires. Returns an error when start-up fails (catalog,
/// index, HTTP listener) or when a source task dies unexpectedly: the process then exits
/// non-zero rather than limping on without that source.
pub async fn run(settings: Settings, cancel: CancellationToken) -> anyhow::Result<()> {
    let catalog = Arc::new(
        catalog::Catalog::open(&settings.catalog_url)
            .await
            .context("open the catalog ([catalog] url)")?,
    );
    let index_path = settings.data_dir.join("index.rocksdb");
    let index = Arc::new(
        Index::open(&index_path)
            .with_context(|| format!("open the index at {}", index_path.display()))?,
    );
    let metrics = Arc::new(Metrics::new());
    let backups = crate::backups::BackupService::open(&settings, catalog.clone(), true).await?;
    backups.spawn_schedulers(cancel.child_token());
    let shared = Shared {
        catalog: catalog.clone(),
        index: index.clone(),
        metrics: metrics.clone(),
        capture: settings.capture.clone(),
        data_dir: settings.data_dir.clone(),
    };
    let listener = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .with_context(|| format!("listen on {} ([http] listen)", settings.http_listen))?;
    info!(addr = %settings.http_listen, "HTTP API listening");

    let mut sources = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut archives = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    let mut listeners = Vec::new();
    for src in settings.sources.iter().cloned() {
        let name = src.name.clone();
        let capture = src.capture;
        let replication = src.replication.clone();
        let (rt, handle) = spawn_source(shared.clone(), src, cancel.child_token());
        let archive = Arc::new(Archive {
            source: name.clone(),
            dir: settings.data_dir.join(&name),
            status: capture.then(|| rt.status.clone()),
            catalog: catalog.clone(),
            index: index.clone(),
            checks: Some(rt.checks.clone()),
        });
        if let Some(r) = replication {
            listeners.push(
                fake_primary::spawn(r.listen, archive.clone(), r.creds, None, &cancel)
                    .await
                    .with_context(|| format!("source {name}: [source.replication] listen"))?,
            );
        }
        statuses.insert(name.clone(), rt.status.clone());
        archives.insert(name.clone(), archive);
        sources.insert(name.clone(), rt);
        tasks.spawn(async move { (name, handle.await) });
    }
    let pitr = PitrService::open(PitrDeps {
        catalog: catalog.clone(),
        index: index.clone(),
        archives,
        statuses,
        store: &settings.store,
        tools: settings.tools.clone(),
        cfg: settings.pitr.clone(),
        cancel: cancel.child_token(),
    })
    .await
    .context("start the PITR service")?;
    let verify = crate::verify::runner::VerifyService::open(
        catalog.clone(),
        index.clone(),
        pitr.clone(),
        metrics.clone(),
        &settings.sources,
        cancel.child_token(),
    )
    .await
    .context("start the verification service")?;
    verify.spawn_schedulers();
    let state = Arc::new(ApiState {
        sources,
        catalog,
        index,
        metrics,
        backups,
        pitr,
        verify,
    });
    let app = api::router(state);
    let http_cancel = cancel.clone();
    let mut http = tokio::spawn(
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { http_cancel.cancelled().await })
                .await
        }
        .instrument(tracing::info_span!("http")),
    );

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
                    // A source that could not start (its store or index) is failed in
                    // the API and the catalog; the other sources go on.
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
    drop(listeners);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
