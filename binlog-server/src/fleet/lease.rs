//! The lease keeper of one node: which sources this node owns, under which epoch, and
//! the moment it must stop writing for each.
//!
//! One task per node ([`LeaseKeeper::spawn`]) runs a round every third of `lease_ttl`:
//!
//! 1. **Renew** every tenure it holds, all at once. A refused renewal (the tenure is
//!    over: another node took the lease after it expired) ends the tenure at once; a
//!    tenure that ended by the local deadline is released in the catalog, so that the
//!    others need not wait for its expiry.
//! 2. **Heartbeat**: the node's row in `nodes` (which also says whether the node is being
//!    drained).
//! 3. **Rebalance**: while other live nodes exist, a node holds at most its share,
//!    `ceil(sources / live nodes)`; the excess is released. A draining node releases
//!    everything and takes nothing.
//! 4. **Acquire** free or expired leases up to the share, trying sources in an order
//!    rotated by the node id, so that nodes do not all race for the same one.
//!
//! After an outage of the catalog every heartbeat is stale: for a lease time once it
//! answers again, nodes heard from in the last [`SETTLE_WINDOW_TTLS`] lease times still
//! count for the share, so that the first node back does not take every lease only to
//! hand half of them over a round later.
//!
//! Between rounds it takes tenures handed back ([`LeaseHandle::give_up`]: this node
//! cannot capture the source now): the lease is released at once and the source is not
//! acquired here again for [`GIVE_UP_COOLDOWN_TTLS`] lease times.
//!
//! # Stopping before the lease can expire
//!
//! The database's expiry of a tenure is `ttl` after the statement ran there; the node
//! takes its own deadline as `ttl - margin` after it *sent* the statement, on its
//! monotonic clock, which is earlier. A watchdog task per tenure cancels the tenure's
//! token at that deadline unless a renewal moved it: a node cut off from the catalog,
//! or stuck in a slow statement, stops writing on time with no statement at all. Every
//! catalog call of a round is bounded by a third of the ttl as well.
//!
//! # What a consumer gets
//!
//! A [`LeaseEvent::Acquired`] with a [`Tenure`]: the source, the epoch that fences its
//! writes, and a token that is cancelled when the tenure ends (lost, locally expired,
//! released, or the keeper shut down), followed by a [`LeaseEvent::Ended`] saying why.
//! On shut-down the keeper releases what it holds, so the other nodes need not wait for
//! the expiry. A crash leaves the leases to expire.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catalog::{Catalog, CatalogError, Granted};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How a node keeps its leases.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// This node's id (`[node] id`).
    pub node: String,
    /// Its API URL for the other nodes (`[node] advertise`).
    pub advertise: String,
    /// Lease time to live (`[node] lease_ttl`); renewed every third of it.
    pub ttl: Duration,
    /// How much earlier than the database's expiry the node stops writing, on its own
    /// clock: covers clock-rate drift and the time between the statement's arrival and
    /// its run. [`LeaseOptions::new`] takes a fifth of the ttl.
    pub margin: Duration,
}

impl LeaseOptions {
    /// Options with the default margin (a fifth of `ttl`).
    pub fn new(node: impl Into<String>, advertise: impl Into<String>, ttl: Duration) -> Self {
        LeaseOptions {
            node: node.into(),
            advertise: advertise.into(),
            ttl,
            margin: ttl / 5,
        }
    }

    /// The period of the keeper's rounds: a third of the ttl.
    pub fn round(&self) -> Duration {
        self.ttl / 3
    }

    /// A node whose last heartbeat is older than this is not counted as alive: a ttl, or
    /// three missed rounds, so that the share of the others grows as soon as a dead
    /// node's leases expire.
    fn alive_within(&self) -> Duration {
        self.ttl
    }
}

/// One tenure of a source held by this node.
#[derive(Debug, Clone)]
pub struct Tenure {
    /// The source.
    pub source: String,
    /// The epoch that fences every write of this tenure.
    pub epoch: i64,
    /// Cancelled when the tenure ends; every writer of the source stops with it.
    pub token: CancellationToken,
    /// The lease as the acquisition recorded it: the database's time of the
    /// acquisition and the previous owner with its last renewal (the takeover time).
    pub granted: Granted,
    /// The local deadline, moved by each renewal.
    deadline: watch::Receiver<Instant>,
}

impl Tenure {
    /// Whether a write under this tenure may go out now: the token is not cancelled
    /// **and** the local deadline has not passed. Writers ask this right before each
    /// write, so that a task that runs after a pause, before the watchdog had its turn,
    /// still stops.
    pub fn may_write(&self) -> bool {
        !self.token.is_cancelled() && Instant::now() < *self.deadline.borrow()
    }
}

/// Why a tenure ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A renewal was refused: another node holds the lease now.
    Lost,
    /// No renewal succeeded before the node's own deadline (catalog unreachable or
    /// slow); the lease may still be free to take again.
    Expired,
    /// Released by this node: rebalancing, drain or shut-down.
    Released,
}

impl EndReason {
    /// `"lost"`, `"expired"` or `"released"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Lost => "lost",
            EndReason::Expired => "expired",
            EndReason::Released => "released",
        }
    }
}

/// What the keeper tells its consumer.
#[derive(Debug, Clone)]
pub enum LeaseEvent {
    /// This node now owns the source under `tenure.epoch`.
    Acquired(Tenure),
    /// The tenure `epoch` of `source` is over; its token is already cancelled.
    Ended {
        /// The source.
        source: String,
        /// The tenure's epoch.
        epoch: i64,
        /// Why.
        why: EndReason,
    },
}

/// A tenure as the keeper tracks it.
struct Held {
    tenure: Tenure,
    /// The local deadline; the watchdog reads it.
    deadline: watch::Sender<Instant>,
}

/// What the keeper holds, shared with [`LeaseHandle`]: source -> (epoch, token).
type HeldMap = Arc<Mutex<BTreeMap<String, (i64, CancellationToken)>>>;

/// A handle on a running keeper.
#[derive(Clone)]
pub struct LeaseHandle {
    held: HeldMap,
    give_ups: mpsc::UnboundedSender<(String, i64)>,
}

impl LeaseHandle {
    /// The sources this node may write for now, with their epochs: its tenures whose
    /// token is not cancelled (a tenure past its local deadline is not listed, even
    /// before the keeper's next round forgets it).
    pub fn held(&self) -> BTreeMap<String, i64> {
        self.held
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, (_, t))| !t.is_cancelled())
                    .map(|(s, (e, _))| (s.clone(), *e))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Hands tenure `epoch` of `source` back: this node cannot capture it (a takeover
    /// that keeps failing, a capture that could not start). The keeper releases the
    /// lease at once, so another node may take it, and takes it again itself only after
    /// three lease times ([`GIVE_UP_COOLDOWN_TTLS`]).
    pub fn give_up(&self, source: &str, epoch: i64) {
        let _ = self.give_ups.send((source.to_string(), epoch));
    }
}

/// For a lease time after the catalog is reachable again, a node whose heartbeat is
/// at most this many lease times old still counts as alive for the share.
pub const SETTLE_WINDOW_TTLS: u32 = 10;

/// A source this node gave up is not acquired by it again for this many lease times.
pub const GIVE_UP_COOLDOWN_TTLS: u32 = 3;

/// The lease keeper of one node (module docs).
pub struct LeaseKeeper {
    catalog: Arc<Catalog>,
    sources: Vec<String>,
    opts: LeaseOptions,
    held: BTreeMap<String, Held>,
    shared: HeldMap,
    events: mpsc::UnboundedSender<LeaseEvent>,
    started: bool,
    /// After a round that could not reach the catalog: until when nodes are counted as
    /// alive by a longer window ([`SETTLE_WINDOW_TTLS`]), since every heartbeat went
    /// stale in the outage; otherwise the first node back would take every lease and
    /// hand half of them over again a round later.
    settle_until: Option<Instant>,
    /// Whether the last round reached the catalog.
    reached: bool,
    /// Tenures handed back by the node ([`LeaseHandle::give_up`]).
    give_ups: mpsc::UnboundedReceiver<(String, i64)>,
    /// Sources given up, not to be acquired again before the instant.
    cooldown: BTreeMap<String, Instant>,
}

impl LeaseKeeper {
    /// Starts the keeper of `opts.node` over `sources` (every node of a fleet lists the
    /// same ones). Its events arrive on the returned receiver; it stops, releasing its
    /// leases, when `cancel` is cancelled.
    pub fn spawn(
        catalog: Arc<Catalog>,
        sources: Vec<String>,
        opts: LeaseOptions,
        cancel: CancellationToken,
    ) -> (
        LeaseHandle,
        mpsc::UnboundedReceiver<LeaseEvent>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (give_tx, give_rx) = mpsc::unbounded_channel();
        let shared: HeldMap = Arc::default();
        let keeper = LeaseKeeper {
            catalog,
            sources,
            opts,
            held: BTreeMap::new(),
            shared: shared.clone(),
            events: tx,
            started: false,
            settle_until: None,
            reached: true,
            give_ups: give_rx,
            cooldown: BTreeMap::new(),
        };
        let task = tokio::spawn(keeper.run(cancel));
        let handle = LeaseHandle {
            held: shared,
            give_ups: give_tx,
        };
        (handle, rx, task)
    }

    async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.opts.round());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let given_up = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => None,
                // Disabled once every handle is gone (no busy loop on a closed channel).
                Some(g) = self.give_ups.recv() => Some(g),
            };
            match given_up {
                Some((source, epoch)) => self.give_up(&source, epoch).await,
                None => self.round().await,
            }
        }
        self.release_all().await;
    }

    /// Releases tenure `epoch` of `source` when it is still the one held, and keeps the
    /// source from being acquired here for a while.
    async fn give_up(&mut self, source: &str, epoch: i64) {
        if self.held.get(source).map(|h| h.tenure.epoch) != Some(epoch) {
            return;
        }
        warn!(source, epoch, node = %self.opts.node, "giving the source's lease up: this node cannot capture it now");
        self.release(source).await;
        self.cooldown.insert(
            source.to_string(),
            Instant::now() + self.opts.ttl * GIVE_UP_COOLDOWN_TTLS,
        );
    }

    /// One round: renew, heartbeat, rebalance, acquire (module docs). Renewals go first
    /// and all at once, so a slow heartbeat or a slow renewal of one source never makes
    /// another miss its deadline.
    async fn round(&mut self) {
        self.renew_all().await;
        let draining = match self.bounded(self.heartbeat()).await {
            Some(Ok(row)) => {
                self.started = true;
                if !self.reached {
                    self.settle_until = Some(Instant::now() + self.opts.ttl);
                }
                self.reached = true;
                row.is_draining()
            }
            Some(Err(e)) => {
                warn!(node = %self.opts.node, error = %e, "heartbeat failed; keeping leases until their deadline");
                self.reached = false;
                return;
            }
            None => {
                warn!(node = %self.opts.node, "heartbeat timed out; keeping leases until their deadline");
                self.reached = false;
                return;
            }
        };
        let Some(share) = self.share(draining).await else {
            return;
        };
        self.release_over(share).await;
        self.acquire_up_to(share).await;
    }

    /// Frees in the catalog the tenures that ended by the local deadline (their rows
    /// may still look live for the margin), so another node need not wait for the
    /// expiry. Best effort: a failure leaves the lease to expire.
    async fn release_expired(&self, expired: Vec<(String, i64)>) {
        for (source, epoch) in expired {
            let released = self
                .bounded(self.catalog.release_lease(&source, &self.opts.node, epoch))
                .await;
            if let Some(Err(e)) = released {
                warn!(source, epoch, error = %e, "release of an expired tenure failed; it expires by itself");
            }
        }
    }

    async fn heartbeat(&self) -> Result<catalog::NodeRow, CatalogError> {
        self.catalog
            .node_heartbeat(&self.opts.node, &self.opts.advertise, !self.started)
            .await
    }

    /// Runs `f` for at most a round; `None` when it took longer.
    async fn bounded<T>(&self, f: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::time::timeout(self.opts.round(), f).await.ok()
    }

    /// Drops the tenures whose watchdog fired (the token is cancelled); returns them as
    /// (source, epoch).
    fn forget_expired(&mut self) -> Vec<(String, i64)> {
        let expired: Vec<(String, i64)> = self
            .held
            .iter()
            .filter(|(_, h)| h.tenure.token.is_cancelled())
            .map(|(s, h)| (s.clone(), h.tenure.epoch))
            .collect();
        for (source, _) in &expired {
            self.end(source, EndReason::Expired);
        }
        expired
    }

    /// Renews every tenure at once, each statement bounded by a round; the tenures that
    /// ended by the local deadline, before or during the renewals, are released.
    async fn renew_all(&mut self) {
        let mut ended = self.forget_expired();
        let tenures: Vec<(String, i64)> = self
            .held
            .iter()
            .map(|(s, h)| (s.clone(), h.tenure.epoch))
            .collect();
        let renewals = tenures.iter().map(|(source, epoch)| {
            let sent = Instant::now();
            let call = self.bounded(self.catalog.renew_lease(
                source,
                &self.opts.node,
                *epoch,
                self.opts.ttl,
            ));
            async move { (sent, call.await) }
        });
        let results = futures::future::join_all(renewals).await;
        for ((source, epoch), (sent, result)) in tenures.into_iter().zip(results) {
            match result {
                Some(Ok(Some(_))) => {
                    if let Some(h) = self.held.get(&source) {
                        if !h.tenure.token.is_cancelled() {
                            let _ = h.deadline.send(self.deadline_from(sent));
                        }
                    }
                }
                Some(Ok(None)) => {
                    warn!(source, node = %self.opts.node, epoch, "lease lost: another node owns the source now; stopping it");
                    self.end(&source, EndReason::Lost);
                }
                Some(Err(e)) => {
                    warn!(source, epoch, error = %e, "lease renewal failed; the source stops at its deadline unless a renewal succeeds");
                }
                None => {
                    warn!(source, epoch, "lease renewal timed out");
                }
            }
        }
        ended.extend(self.forget_expired());
        self.release_expired(ended).await;
    }

    /// This node's share of the sources, or `None` when the catalog did not answer. A
    /// draining node's share is 0.
    async fn share(&self, draining: bool) -> Option<usize> {
        if draining {
            return Some(0);
        }
        let settling = self.settle_until.is_some_and(|t| Instant::now() < t);
        let window = if settling {
            self.opts.alive_within() * SETTLE_WINDOW_TTLS
        } else {
            self.opts.alive_within()
        };
        let (now, nodes) = match self.bounded(self.catalog.list_nodes()).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                warn!(error = %e, "cannot list the nodes; taking no lease this round");
                return None;
            }
            None => return None,
        };
        let live = nodes
            .iter()
            .filter(|n| !n.is_draining() && n.is_alive(now, window))
            .count()
            .max(1);
        Some(self.sources.len().div_ceil(live))
    }

    /// Releases tenures beyond `share` (newest sources last in name order first).
    async fn release_over(&mut self, share: usize) {
        while self.held.len() > share {
            let Some(source) = self.held.keys().next_back().cloned() else {
                break;
            };
            self.release(&source).await;
        }
    }

    async fn acquire_up_to(&mut self, share: usize) {
        if self.held.len() >= share {
            return;
        }
        let (now, leases) = match self.bounded(self.catalog.list_leases()).await {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                warn!(error = %e, "cannot list the leases; taking none this round");
                return;
            }
            None => return,
        };
        let taken: std::collections::HashSet<&str> = leases
            .iter()
            .filter(|l| l.is_live(now))
            .map(|l| l.source.as_str())
            .collect();
        let cooled = Instant::now();
        self.cooldown.retain(|_, until| *until > cooled);
        let candidates: Vec<String> = self
            .rotated_sources()
            .into_iter()
            .filter(|s| {
                !taken.contains(s.as_str())
                    && !self.held.contains_key(s)
                    && !self.cooldown.contains_key(s)
            })
            .collect();
        for source in candidates {
            if self.held.len() >= share {
                break;
            }
            let sent = Instant::now();
            let got = self.bounded(self.catalog.acquire_lease(
                &source,
                &self.opts.node,
                self.opts.ttl,
            ));
            match got.await {
                Some(Ok(Some(g))) => self.start_tenure(source, g, sent),
                Some(Ok(None)) => {} // another node was faster
                Some(Err(e)) => warn!(source, error = %e, "lease acquisition failed"),
                None => warn!(source, "lease acquisition timed out"),
            }
        }
    }

    /// The sources in an order rotated by a hash of the node id.
    fn rotated_sources(&self) -> Vec<String> {
        let mut sorted = self.sources.clone();
        sorted.sort();
        if sorted.is_empty() {
            return sorted;
        }
        let h = self.opts.node.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        let by = h % sorted.len();
        sorted.rotate_left(by);
        sorted
    }

    fn deadline_from(&self, sent: Instant) -> Instant {
        sent + self.opts.ttl.saturating_sub(self.opts.margin)
    }

    fn start_tenure(&mut self, source: String, g: Granted, sent: Instant) {
        let token = CancellationToken::new();
        let (deadline, watched) = watch::channel(self.deadline_from(sent));
        tokio::spawn(watchdog(token.clone(), watched.clone()));
        let tenure = Tenure {
            source: source.clone(),
            epoch: g.epoch,
            token,
            granted: g.clone(),
            deadline: watched,
        };
        info!(source, node = %self.opts.node, epoch = g.epoch, "this node owns the source now");
        if let Ok(mut m) = self.shared.lock() {
            m.insert(source.clone(), (g.epoch, tenure.token.clone()));
        }
        let _ = self.events.send(LeaseEvent::Acquired(tenure.clone()));
        self.held.insert(source, Held { tenure, deadline });
    }

    /// Ends a tenure here: cancels its token, forgets it, tells the consumer.
    fn end(&mut self, source: &str, why: EndReason) {
        let Some(h) = self.held.remove(source) else {
            return;
        };
        h.tenure.token.cancel();
        if let Ok(mut m) = self.shared.lock() {
            m.remove(source);
        }
        if why == EndReason::Expired {
            warn!(
                source,
                epoch = h.tenure.epoch,
                "lease not renewed in time: stopped the source before the lease could expire"
            );
        }
        let _ = self.events.send(LeaseEvent::Ended {
            source: source.to_owned(),
            epoch: h.tenure.epoch,
            why,
        });
    }

    /// Stops the tenure first, then frees the lease in the catalog.
    async fn release(&mut self, source: &str) {
        let Some(epoch) = self.held.get(source).map(|h| h.tenure.epoch) else {
            return;
        };
        self.end(source, EndReason::Released);
        match self
            .bounded(self.catalog.release_lease(source, &self.opts.node, epoch))
            .await
        {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                warn!(source, epoch, error = %e, "lease release failed; it expires by itself")
            }
            None => warn!(
                source,
                epoch, "lease release timed out; it expires by itself"
            ),
        }
    }

    async fn release_all(&mut self) {
        let sources: Vec<String> = self.held.keys().cloned().collect();
        for source in sources {
            self.release(&source).await;
        }
    }
}

/// Cancels `token` when the deadline in `deadline` passes without being moved, or when
/// the keeper drops its end (it ended the tenure, or it is gone).
async fn watchdog(token: CancellationToken, mut deadline: watch::Receiver<Instant>) {
    loop {
        let at = *deadline.borrow_and_update();
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep_until(at) => {
                if *deadline.borrow() <= Instant::now() {
                    token.cancel();
                    return;
                }
            }
            changed = deadline.changed() => {
                if changed.is_err() {
                    // The keeper is gone (it forgot the tenure, or it died): nothing
                    // renews this tenure any more, so it ends now.
                    token.cancel();
                    return;
                }
            }
        }
    }
}
