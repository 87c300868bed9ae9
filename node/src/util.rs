//! Small helpers the service's modules share: [`lock`].

use std::sync::{Mutex, MutexGuard};

/// `m`'s guard, also after a panic while it was held (the data are plain records: a
/// panicked writer leaves them usable, and the service must not cascade the panic).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
