//! `low_priority`: CPU-heavy file work (checks, SHA-256) on a thread at nice 10, so
//! capture keeps up with the primary.

/// Runs `f` on its own thread at nice level 10, so that checking (a full read, CRC walk
/// and SHA-256 of a file) yields the CPU to capture, which must keep up with the primary.
/// The error case means the thread panicked or could not be started.
pub(crate) async fn low_priority<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
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
        .map_err(|e| format!("start a checker thread: {e}"))?;
    rx.await.map_err(|_| "the checker thread died".to_string())
}
