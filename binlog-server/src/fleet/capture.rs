//! Capture driven by leases: on a fleet node (`[node]`), a source is captured only while
//! this node holds its lease, and each tenure starts from what the archive store holds.
//!
//! ```text
//!  LeaseKeeper --LeaseEvent--> route() --Tenure--> FleetSource::run (one per source)
//!                                                   standby
//!                                                   -> Acquired: take over from the store
//!                                                      (archive::takeover, fenced by epoch)
//!                                                   -> capture + shipper under the epoch
//!                                                   -> the tenure's token is cancelled:
//!                                                      both stop; standby again
//! ```
//!
//! Every task of a tenure runs under a token that the tenure's end cancels (lost,
//! expired by the node's own clock, released, or shut-down), so a node stops writing
//! for a source before its lease can expire. Writes to the shared catalog check
//! [`Tenure::may_write`] right before they go out; the archive store's keys and the
//! rows that make an object canonical carry the epoch and are fenced in the catalog.
//!
//! The takeover time is counted from the previous owner's last renewal (it died after
//! it) to the first event streamed under the new tenure, on the database's clock for
//! the start and this node's monotonic clock since the acquisition; it is published in
//! the source's status (`takeover`) and as `binlog_server_takeover_seconds`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog::CatalogError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use super::lease::{LeaseEvent, LeaseHandle, Tenure};
use crate::source::context::{Shared, SourceCtx};
use crate::source::supervise::{capture, SourceInbox};
use archive::cache::{ArchiveReader, Evicted};
use archive::follow::IndexWriter;
use archive::rebuild::RebuildError;
use archive::takeover::{take_over, TakeoverCtx, TakeoverReport};
use archive::tier::ArchiveTier;
use node::config::Source;
use node::status::{CaptureState, EndLabel, Metrics, PrimaryView, StatusCell, TakeoverView};

/// Longest wait between two attempts at a takeover that failed (store unreachable).
const MAX_TAKEOVER_BACKOFF: Duration = Duration::from_secs(30);

/// Attempts at a takeover in one tenure before the node gives the lease up, so that
/// another node may try (a local disk that fails, say).
const TAKEOVER_ATTEMPTS: u32 = 3;

/// How often the takeover timer looks whether capture streams again.
const STREAMING_POLL: Duration = Duration::from_millis(50);

/// Hands each [`LeaseEvent::Acquired`] tenure to its source's task and counts the ends
/// by reason. Ends when the keeper is gone.
pub fn route(
    mut events: mpsc::UnboundedReceiver<LeaseEvent>,
    routes: BTreeMap<String, mpsc::UnboundedSender<Tenure>>,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            match e {
                LeaseEvent::Acquired(t) => match routes.get(&t.source) {
                    Some(tx) => {
                        let _ = tx.send(t);
                    }
                    None => {
                        warn!(source = %t.source, "a lease for a source this node does not configure")
                    }
                },
                LeaseEvent::Ended { source, epoch, why } => {
                    info!(
                        source,
                        epoch,
                        why = why.as_str(),
                        "tenure ended; the source stops here"
                    );
                    metrics
                        .tenures_ended
                        .get_or_create(&EndLabel {
                            source,
                            reason: why.as_str().to_string(),
                        })
                        .inc();
                }
            }
        }
    })
}

/// One source of a fleet node, across its tenures.
pub struct FleetSource {
    /// The process-wide services.
    pub shared: Shared,
    /// The source's settings.
    pub source: Source,
    /// Its live status (kept across tenures; the API holds it).
    pub status: StatusCell,
    /// What its capture receives from the API.
    pub inbox: SourceInbox,
    /// The primary's binlog list (the shipper reads it).
    pub primary: Arc<std::sync::Mutex<PrimaryView>>,
    /// The archive store (a fleet node always has one).
    pub tier: Arc<ArchiveTier>,
    /// The reader of files only in the store.
    pub reader: Arc<ArchiveReader>,
    /// The source's files only in the store (shared with the fake primary).
    pub evicted: Evicted,
    /// The node's lease keeper: a tenure this node cannot use is given back.
    pub leases: LeaseHandle,
    /// Who writes the source's index on this node: a tenure holds it from its takeover
    /// to its end; between tenures a restore asked of this node follows the store.
    pub writer: Arc<IndexWriter>,
}

impl FleetSource {
    /// Waits for tenures of the source and runs each (take over, capture, ship) until it
    /// ends; the source is on standby in between. Ends on `cancel`.
    pub async fn run(
        mut self,
        mut tenures: mpsc::UnboundedReceiver<Tenure>,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            self.standby();
            let tenure = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                t = tenures.recv() => match t {
                    Some(t) => t,
                    None => return Ok(()),
                },
            };
            if !tenure.may_write() {
                continue;
            }
            let span = tracing::info_span!("tenure", epoch = tenure.epoch);
            self.tenure(tenure, &cancel).instrument(span).await;
        }
    }

    /// Shows the source as not captured here.
    fn standby(&self) {
        let mut s = self.status.lock();
        s.state = CaptureState::Standby;
        s.bytes_behind = None;
        s.seconds_behind = None;
    }

    /// One tenure: take over from the store, then capture and ship under its epoch
    /// until its token is cancelled.
    async fn tenure(&mut self, tenure: Tenure, cancel: &CancellationToken) {
        let acquired = Instant::now();
        let token = cancel.child_token();
        {
            let (end, t) = (tenure.token.clone(), token.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = end.cancelled() => t.cancel(),
                    _ = t.cancelled() => {}
                }
            });
        }
        {
            let mut s = self.status.lock();
            s.state = CaptureState::Starting;
            s.last_error = None;
        }
        // A follow from the store stops after its current file; the index is the
        // tenure's until it ends.
        let _index = self.writer.capture().await;
        let Some(report) = self.take_over(&tenure, &token).await else {
            token.cancel();
            return;
        };
        self.publish_takeover(&tenure, &report);
        // Every catalog write of the tenure's tasks is fenced by its epoch.
        let mut shared = self.shared.clone();
        shared.catalog = Arc::new(self.shared.catalog.fenced(&self.source.name, tenure.epoch));
        let shipper = archive::ship::spawn(
            archive::ship::ShipperCtx {
                source: self.source.name.clone(),
                dir: self.shared.data_dir.join(&self.source.name),
                catalog: shared.catalog.clone(),
                tier: self.tier.clone(),
                status: self.status.clone(),
                metrics: self.shared.metrics.clone(),
                evicted: self.evicted.clone(),
                primary: self.primary.clone(),
                epoch: tenure.epoch,
            },
            token.child_token(),
        );
        tokio::spawn(time_takeover(
            self.status.clone(),
            self.shared.metrics.clone(),
            tenure.clone(),
            acquired,
            token.clone(),
        ));
        let epoch = tenure.epoch;
        let stale = self.inbox.forget_commands();
        if stale > 0 {
            info!(source = %self.source.name, stale, "dropped restart requests made while this node did not capture the source");
        }
        let ctx = SourceCtx {
            shared,
            source: self.source.clone(),
            status: self.status.clone(),
            cancel: token.clone(),
            tenure: Some(tenure),
            upstream: crate::source::context::Upstream::cell(&self.source),
        };
        self.capture_in_tenure(&ctx, epoch).await;
        token.cancel();
        let _ = shipper.await;
    }

    /// Runs the capture of the tenure until its token is cancelled. A capture that
    /// cannot start because the catalog failed is started again after a backoff, up to
    /// [`TAKEOVER_ATTEMPTS`] times; one refused by the fence ends the tenure here; any
    /// other failure (the local disk, the store's recovery) gives the lease up for
    /// another node, as do repeated catalog failures.
    async fn capture_in_tenure(&mut self, ctx: &SourceCtx, epoch: i64) {
        let name = self.source.name.clone();
        let mut backoff = Duration::from_secs(1);
        for attempt in 1..=TAKEOVER_ATTEMPTS {
            let Err(e) = capture(ctx, &mut self.inbox).await else {
                return;
            };
            let catalog_error = e.chain().find_map(|c| c.downcast_ref::<CatalogError>());
            match catalog_error {
                Some(CatalogError::Fenced { .. }) => {
                    warn!(source = %name, epoch, "the lease was gone when capture started; not capturing");
                    return;
                }
                Some(_) if attempt < TAKEOVER_ATTEMPTS => {
                    warn!(source = %name, error = %format!("{e:#}"), ?backoff, "capture could not start (the catalog); trying again");
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff *= 2;
                }
                _ => {
                    warn!(source = %name, error = %format!("{e:#}"),
                        "capture could not start here; giving the lease up for another node");
                    self.leases.give_up(&name, epoch);
                    return;
                }
            }
        }
    }

    /// Runs the takeover, again after a backoff while it fails (the store, the disk), up
    /// to [`TAKEOVER_ATTEMPTS`] times, then gives the lease up; `None` when it did, when
    /// the tenure ended first, or when the lease was found gone (fenced).
    async fn take_over(
        &self,
        tenure: &Tenure,
        token: &CancellationToken,
    ) -> Option<TakeoverReport> {
        let name = &self.source.name;
        let mut backoff = Duration::from_secs(1);
        for attempt in 1.. {
            if !tenure.may_write() {
                return None;
            }
            if attempt > TAKEOVER_ATTEMPTS {
                warn!(source = %name, epoch = tenure.epoch, "the takeover keeps failing here; giving the lease up for another node");
                self.leases.give_up(name, tenure.epoch);
                return None;
            }
            let ctx = TakeoverCtx {
                catalog: &self.shared.catalog,
                index: &self.shared.index,
                tier: &self.tier,
                reader: &self.reader,
                data_dir: &self.shared.data_dir,
                source: name,
                epoch: tenure.epoch,
                evicted: &self.evicted,
            };
            let err = match take_over(&ctx).await {
                Ok(r) => return Some(r),
                Err(e) => e,
            };
            if let RebuildError::Catalog(CatalogError::Fenced { .. }) = err {
                warn!(source = %name, epoch = tenure.epoch, "the lease was gone before the takeover finished; not capturing");
                return None;
            }
            let msg = format!(
                "takeover from the archive store failed (attempt {attempt} of \
                 {TAKEOVER_ATTEMPTS}): {:#}",
                anyhow::Error::from(err)
            );
            warn!(source = %name, error = %msg, ?backoff, "takeover failed");
            self.status.lock().last_error = Some(msg);
            tokio::select! {
                _ = token.cancelled() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_TAKEOVER_BACKOFF);
        }
        None
    }

    /// Records the takeover in the status (its time once streaming) and counts it.
    fn publish_takeover(&self, tenure: &Tenure, report: &TakeoverReport) {
        let g = &tenure.granted;
        let view = TakeoverView {
            epoch: tenure.epoch,
            previous_owner: g.previous_owner.clone(),
            seconds: None,
            acquired_at: g.renewed_ms / 1000,
            summary: report.summary(),
        };
        self.status.note(format!(
            "lease acquired under epoch {} (previous owner {}): {}",
            tenure.epoch,
            g.previous_owner.as_deref().unwrap_or("none"),
            view.summary
        ));
        self.status.lock().takeover = Some(view);
        self.shared
            .metrics
            .takeovers
            .get_or_create(&Metrics::label(&self.source.name))
            .inc();
    }
}

/// Waits until capture streams under `tenure` (or the tenure ends), then publishes the
/// takeover's time: the previous owner's last renewal to now.
async fn time_takeover(
    status: StatusCell,
    metrics: Arc<Metrics>,
    tenure: Tenure,
    acquired: Instant,
    token: CancellationToken,
) {
    loop {
        if status.lock().state == CaptureState::Streaming {
            break;
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(STREAMING_POLL) => {}
        }
    }
    let g = &tenure.granted;
    let Some(prev) = g.previous_renewed_ms.filter(|_| g.previous_owner.is_some()) else {
        return;
    };
    let secs = (g.renewed_ms - prev).max(0) as f64 / 1000.0 + acquired.elapsed().as_secs_f64();
    info!(source = %tenure.source, epoch = tenure.epoch, seconds = secs,
        previous_owner = ?g.previous_owner, "streaming again after the takeover");
    if let Some(t) = status.lock().takeover.as_mut() {
        if t.epoch == tenure.epoch {
            t.seconds = Some(secs);
        }
    }
    metrics
        .takeover_seconds
        .get_or_create(&Metrics::label(&tenure.source))
        .set(secs);
}
