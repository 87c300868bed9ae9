//! The fixed thread pools that run every source's writer and syncer: a source's work is
//! a [`Lane`], a serial queue of messages with its state, run by whichever pool thread
//! is free, one message at a time and in order, never on two threads at once. The
//! process's OS thread count therefore does not grow with its sources: a thousand idle
//! sources are a thousand queues and no threads.
//!
//! Two pools, so appends never wait behind fdatasyncs: the writers' (appends to the
//! page cache, file switches) and the syncers' (fdatasync, the control file, the
//! index), whose threads spend their time blocked on the disk. A lane's handler may
//! block (a file switch waits for its sync); it holds one pool thread meanwhile.
//!
//! Nothing here is durable: a lane lives as long as the process.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, Weak};

use node::util::lock;

/// A lane's state machine: handles one message at a time, in order.
pub(crate) trait Actor: Send + 'static {
    /// Messages to this actor.
    type Msg: Send + 'static;

    /// Handles `msg`. Returning false ends the actor: it is dropped, with every message
    /// still queued, and later sends fail.
    fn handle(&mut self, msg: Self::Msg) -> bool;

    /// Called when the queue is empty after messages were handled (the sender paused).
    /// Returning false ends the actor, as for [`Actor::handle`].
    fn drained(&mut self) -> bool {
        true
    }
}

/// A pool of `n` threads running lanes' turns from one queue.
pub(crate) struct Pool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    queue: Mutex<VecDeque<Box<dyn FnOnce() + Send>>>,
    ready: Condvar,
}

impl Pool {
    /// Starts `n` (at least 1) threads named `<name>-<i>`. They live as long as the
    /// process.
    ///
    /// # Errors
    ///
    /// A thread could not be started (resource limits).
    pub(crate) fn start(name: &str, n: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(PoolShared {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        });
        for i in 0..n.max(1) {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || s.work())?;
        }
        Ok(Pool { shared })
    }
}

impl PoolShared {
    fn work(&self) {
        loop {
            let job = {
                let mut q = lock(&self.queue);
                loop {
                    if let Some(j) = q.pop_front() {
                        break j;
                    }
                    q = self
                        .ready
                        .wait(q)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            };
            job();
        }
    }
}

/// The sending side of an actor's serial queue on a [`Pool`]. Clones share the lane.
pub(crate) struct Lane<A: Actor> {
    inner: Arc<LaneInner<A>>,
}

impl<A: Actor> Clone for Lane<A> {
    fn clone(&self) -> Self {
        Lane {
            inner: self.inner.clone(),
        }
    }
}

/// A lane that does not keep its actor alive (for the actor's own partner, so two lanes
/// that talk to each other do not hold each other forever).
pub(crate) struct WeakLane<A: Actor> {
    inner: Weak<LaneInner<A>>,
}

impl<A: Actor> Clone for WeakLane<A> {
    fn clone(&self) -> Self {
        WeakLane {
            inner: self.inner.clone(),
        }
    }
}

impl<A: Actor> WeakLane<A> {
    /// Sends `msg` if the lane still exists; false when it does not or its actor ended.
    pub(crate) fn send(&self, msg: A::Msg) -> bool {
        self.inner
            .upgrade()
            .is_some_and(|inner| Lane { inner }.send(msg))
    }
}

struct LaneInner<A: Actor> {
    state: Mutex<LaneState<A>>,
    pool: Arc<PoolShared>,
}

struct LaneState<A: Actor> {
    queue: VecDeque<A::Msg>,
    /// The actor, while no pool thread runs it; `None` while a turn runs or once ended.
    actor: Option<A>,
    /// A turn is queued or running.
    scheduled: bool,
    /// The actor ended.
    ended: bool,
}

/// Messages one turn handles before it yields its thread to other lanes.
const TURN_MESSAGES: usize = 64;

impl<A: Actor> Lane<A> {
    /// A lane for `actor` on `pool`.
    pub(crate) fn new(pool: &Pool, actor: A) -> Lane<A> {
        Lane::new_cyclic(pool, |_| actor)
    }

    /// A lane whose actor is made by `make` from the lane's own [`WeakLane`] (so that
    /// it can hand it to a partner that answers it).
    pub(crate) fn new_cyclic(pool: &Pool, make: impl FnOnce(WeakLane<A>) -> A) -> Lane<A> {
        Lane {
            inner: Arc::new_cyclic(|weak| LaneInner {
                state: Mutex::new(LaneState {
                    queue: VecDeque::new(),
                    actor: Some(make(WeakLane {
                        inner: weak.clone(),
                    })),
                    scheduled: false,
                    ended: false,
                }),
                pool: pool.shared.clone(),
            }),
        }
    }

    /// A handle that does not keep the lane alive.
    #[cfg(test)]
    pub(crate) fn downgrade(&self) -> WeakLane<A> {
        WeakLane {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Queues `msg` and schedules a turn if none is queued or running. False when the
    /// actor has ended (the message is dropped).
    pub(crate) fn send(&self, msg: A::Msg) -> bool {
        let mut s = lock(&self.inner.state);
        if s.ended {
            return false;
        }
        s.queue.push_back(msg);
        if !s.scheduled {
            s.scheduled = true;
            drop(s);
            self.schedule();
        }
        true
    }

    fn schedule(&self) {
        let inner = self.inner.clone();
        let pool = inner.pool.clone();
        lock(&pool.queue).push_back(Box::new(move || {
            // A panicking handler ends its lane: its actor is dropped by the unwinding.
            let turn = std::panic::AssertUnwindSafe(|| LaneInner::turn(&inner));
            if std::panic::catch_unwind(turn).is_err() {
                inner.end();
            }
        }));
        pool.ready.notify_one();
    }
}

impl<A: Actor> LaneInner<A> {
    /// One turn: up to [`TURN_MESSAGES`] messages, then [`Actor::drained`] when the
    /// queue is empty; yields the thread (queueing another turn) when messages remain.
    fn turn(self: &Arc<Self>) {
        let Some(mut actor) = lock(&self.state).actor.take() else {
            return;
        };
        let mut handled = 0;
        loop {
            let msg = {
                let mut s = lock(&self.state);
                match s.queue.pop_front() {
                    Some(m) => m,
                    None => {
                        drop(s);
                        if !actor.drained() {
                            return self.end();
                        }
                        let mut s = lock(&self.state);
                        if s.queue.is_empty() {
                            s.actor = Some(actor);
                            s.scheduled = false;
                            return;
                        }
                        continue;
                    }
                }
            };
            if !actor.handle(msg) {
                return self.end();
            }
            handled += 1;
            if handled >= TURN_MESSAGES {
                lock(&self.state).actor = Some(actor);
                Lane {
                    inner: self.clone(),
                }
                .schedule();
                return;
            }
        }
    }

    fn end(&self) {
        let mut s = lock(&self.state);
        s.ended = true;
        s.queue.clear();
        s.scheduled = false;
    }
}

/// The writer and syncer pools of the process.
pub struct IoPools {
    pub(crate) writers: Pool,
    pub(crate) syncers: Pool,
}

/// Threads of the writers' pool: appends are memory copies into the page cache.
pub const WRITER_THREADS: usize = 4;
/// Threads of the syncers' pool: each fdatasync holds one for the disk's latency, so
/// this many sources sync at once.
pub const SYNCER_THREADS: usize = 8;

impl IoPools {
    /// Starts [`WRITER_THREADS`] writer and [`SYNCER_THREADS`] syncer threads.
    ///
    /// # Errors
    ///
    /// A thread could not be started (resource limits).
    pub fn start() -> std::io::Result<IoPools> {
        Ok(IoPools {
            writers: Pool::start("writer", WRITER_THREADS)?,
            syncers: Pool::start("syncer", SYNCER_THREADS)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Sums numbers; reports each sum and each drain.
    struct Sum {
        total: u64,
        out: mpsc::Sender<(u64, bool)>,
    }

    impl Actor for Sum {
        type Msg = u64;
        fn handle(&mut self, n: u64) -> bool {
            self.total += n;
            let _ = self.out.send((self.total, false));
            n != 0
        }
        fn drained(&mut self) -> bool {
            let _ = self.out.send((self.total, true));
            true
        }
    }

    #[test]
    fn a_lane_handles_its_messages_in_order_on_a_pool_and_ends_when_its_actor_does() {
        let pool = Pool::start("test", 3).expect("pool");
        let (tx, rx) = mpsc::channel();
        let lanes: Vec<_> = (0..10)
            .map(|_| {
                Lane::new(
                    &pool,
                    Sum {
                        total: 0,
                        out: tx.clone(),
                    },
                )
            })
            .collect();
        for i in 1..=200u64 {
            for l in &lanes {
                assert!(l.send(i));
            }
        }
        let mut sums = Vec::new();
        while sums.len() < 10 * 200 {
            let (t, drained) = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("a sum");
            if !drained {
                sums.push(t);
            }
        }
        // Every lane saw 1..=200 in order: its running sums are the triangular numbers.
        assert_eq!(sums.iter().filter(|&&t| t == 200 * 201 / 2).count(), 10);
        assert!(lanes[0].send(0), "0 is handled, then ends the actor");
        let weak = lanes[0].downgrade();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while weak.send(1) {
            assert!(std::time::Instant::now() < deadline, "the lane never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!lanes[0].send(1));
        assert!(lanes[1].send(1), "other lanes go on");
    }
}
