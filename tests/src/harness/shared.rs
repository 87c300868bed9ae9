//! One expensive fixture shared by the scenario tests of one test binary:
//! [`SharedFixture`] sets it up once, on the first scenario that asks for it, hands it to
//! one scenario at a time ([`FixtureGuard`]), and tears it down when the test binary
//! exits.
//!
//! # Why this is sound
//!
//! - Set-up runs once per binary, inside a [`OnceLock`]: concurrent scenarios wait for
//!   it. Its failure (an error or a panic, e.g. a missing tool with [`SETUP_HINT`]) is
//!   kept and reported by every scenario that asks afterwards, instead of setting up
//!   again.
//! - [`SharedFixture::lock`] returns a guard over a [`Mutex`]: scenarios that hold it run
//!   one after the other, whatever `--test-threads` says. A scenario that panics while
//!   holding it poisons the mutex; the others still get the fixture (poisoning is
//!   ignored), so one failure does not fail the rest. Scenarios must therefore leave the
//!   fixture as they found it, also when they fail (restore what they damage from a
//!   `Drop` guard) or damage only what no other scenario uses.
//! - A value in a `static` is never dropped, so the harness registers one `atexit(3)`
//!   handler that drops every shared fixture when the process exits (libtest returns
//!   from `main` or calls `process::exit` after the last test): the servers are stopped
//!   by PID and the temporary directories removed, as when a test's own values drop.
//!
//! [`SETUP_HINT`]: crate::SETUP_HINT

use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};

use anyhow::{bail, Result};

/// A fixture set up once per test binary and shared by its scenario tests, one at a time;
/// dropped at process exit. Declare it as a `static`:
///
/// ```no_run
/// use binlog_tests::{SharedFixture, Sandbox};
/// static FIXTURE: SharedFixture<Sandbox> = SharedFixture::new();
///
/// #[test]
/// fn a_scenario() -> anyhow::Result<()> {
///     let sb = FIXTURE.lock(|| Sandbox::builder("/path/to/binlog-server").start())?;
///     sb.server().get_json("/v1/sources")?;
///     Ok(())
/// }
/// ```
pub struct SharedFixture<T: Send + 'static> {
    cell: OnceLock<Mutex<Slot<T>>>,
}

enum Slot<T> {
    Ready(T),
    Failed(String),
    TornDown,
}

impl<T: Send + 'static> Default for SharedFixture<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + 'static> SharedFixture<T> {
    /// An empty slot; nothing is set up until the first [`SharedFixture::lock`].
    pub const fn new() -> Self {
        SharedFixture {
            cell: OnceLock::new(),
        }
    }

    /// The fixture, set up by `setup` on the first call of the process, locked for the
    /// caller until the guard drops. An error when the set-up failed (now or in an
    /// earlier scenario), with its message.
    pub fn lock(&'static self, setup: impl FnOnce() -> Result<T>) -> Result<FixtureGuard<T>> {
        let cell = self.cell.get_or_init(|| {
            let slot = match catch_unwind(AssertUnwindSafe(setup)) {
                Ok(Ok(v)) => Slot::Ready(v),
                Ok(Err(e)) => Slot::Failed(format!("{e:#}")),
                Err(payload) => Slot::Failed(format!("panicked: {}", panic_text(&*payload))),
            };
            register_teardown(Box::new(move || self.teardown()));
            Mutex::new(slot)
        });
        let guard = cell.lock().unwrap_or_else(|e| e.into_inner());
        match &*guard {
            Slot::Ready(_) => Ok(FixtureGuard { guard }),
            Slot::Failed(e) => {
                bail!("the shared fixture of this test binary could not be set up: {e}")
            }
            Slot::TornDown => bail!("the shared fixture of this test binary was already torn down"),
        }
    }

    /// Drops the fixture (outside the lock).
    fn teardown(&self) {
        if let Some(cell) = self.cell.get() {
            let old = std::mem::replace(
                &mut *cell.lock().unwrap_or_else(|e| e.into_inner()),
                Slot::TornDown,
            );
            drop(old);
        }
    }
}

/// Exclusive access to a [`SharedFixture`]'s value; the next scenario gets it when this
/// drops.
pub struct FixtureGuard<T: 'static> {
    guard: MutexGuard<'static, Slot<T>>,
}

impl<T> Deref for FixtureGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &*self.guard {
            Slot::Ready(v) => v,
            // `lock` only hands out guards over a ready slot, and only the exit handler
            // (which no scenario outlives) changes it.
            _ => unreachable!("a FixtureGuard over a slot that is not ready"),
        }
    }
}

impl<T> DerefMut for FixtureGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut *self.guard {
            Slot::Ready(v) => v,
            _ => unreachable!("a FixtureGuard over a slot that is not ready"),
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic payload)".to_string()
    }
}

type Teardown = Box<dyn FnOnce() + Send>;

static TEARDOWNS: Mutex<Vec<Teardown>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

fn register_teardown(f: Teardown) {
    TEARDOWNS.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    AT_EXIT.call_once(|| {
        // SAFETY: atexit(3) only records the function pointer; `run_teardowns` is a
        // plain `extern "C" fn()` that never unwinds (it catches panics).
        let rc = unsafe { libc::atexit(run_teardowns) };
        if rc != 0 {
            eprintln!("harness: atexit failed ({rc}): shared fixtures are not stopped at exit");
        }
    });
}

/// The `atexit` handler: drops the shared fixtures, newest first.
extern "C" fn run_teardowns() {
    let all = std::mem::take(&mut *TEARDOWNS.lock().unwrap_or_else(|e| e.into_inner()));
    for f in all.into_iter().rev() {
        if catch_unwind(AssertUnwindSafe(f)).is_err() {
            eprintln!("harness: tearing down a shared fixture panicked");
        }
    }
}
