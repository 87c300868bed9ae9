//! `low_priority`: CPU-heavy file work (checks, SHA-256) on a thread at nice 10, so
//! capture keeps up with the primary.

/// Runs `f` on its own thread at nice level 10, so that checking (a full read, CRC walk
/// and SHA-256 of a file) yields the CPU to capture, which must keep up with the primary.
/// The error case means the thread panicked or could not be started.
pub(crate) async fn low_priority<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LowPriorityError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Threads do not inherit the caller's span: enter it, so the check's log lines name
    // the source.
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("checker".into())
        .spawn(move || {
            let _entered = span.enter();
            // SAFETY: setpriority on the calling thread (tid from gettid) only changes
            // its scheduling priority; failure is harmless and ignored.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
            let _ = tx.send(f());
        })
        .map_err(LowPriorityError::Start)?;
    rx.await.map_err(|_| LowPriorityError::Died)
}

/// The low-priority thread could not run the work; the caller skips this check and
/// the checker tries again on its next pass.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LowPriorityError {
    /// The OS refused a new thread.
    #[error("start a checker thread: {0}")]
    Start(#[source] std::io::Error),
    /// The thread ended without a result (it panicked).
    #[error("the checker thread died")]
    Died,
}
