//! Re-pull of a FAIL file while the primary still has it.
//!
//! # Re-pull
//!
//! A FAIL file is fetched again on its own connection (server_id 0, no
//! COM_REGISTER_SLAVE, BINLOG_DUMP_NON_BLOCK, so the live capture's registration is not
//! disturbed) from position 4 into `<file>.repull`, up to its ROTATE or STOP or until the
//! primary moves to the next file. The temporary file is fsynced and checked; only a good
//! one is renamed over the bad file (then the directory is fsynced), and the file goes
//! back to REPORTED, so the checker verifies it once more. A crash mid-way leaves only a
//! `.repull` file, which the store deletes on start.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use binlog::check::{check_file, CheckOptions};
use binlog::{self, EventHeader, BINLOG_MAGIC};

use super::classify::{arrival_alg, classify_event, Action, StreamState};
use super::context::Shared;
use super::lowprio::low_priority;
use super::session;
use archive::local::{self, LocalFiles, REPULL_SUFFIX};
use node::config::Source;

/// Fetches `file` again from position 4 into `<file>.repull`, checks it, and swaps it in.
/// Returns the new size in bytes.
pub(crate) async fn repull(
    shared: &Shared,
    source: &Source,
    store: &Arc<LocalFiles>,
    file: &str,
) -> Result<u64, String> {
    let mut s = session::connect(source, &shared.capture)
        .await
        .map_err(|e| e.to_string())?;
    session::prepare_dump(&mut s, shared.capture.heartbeat_period)
        .await
        .map_err(|e| e.to_string())?;
    session::start_dump(&mut s, 0, file, 4, false, true)
        .await
        .map_err(|e| e.to_string())?;
    let tmp = store.dir().join(format!("{file}{REPULL_SUFFIX}"));
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&tmp).map_err(|e| e.to_string())?,
    );
    out.write_all(&BINLOG_MAGIC).map_err(|e| e.to_string())?;
    let mut st = StreamState::new(file, 4, s.checksum);
    let mut last_type = None;
    let timeout = shared.capture.heartbeat_period * 3 + Duration::from_secs(5);
    loop {
        let pkt = tokio::time::timeout(timeout, s.conn.read_binlog_packet())
            .await
            .map_err(|_| "timed out reading the re-pull stream".to_string())?
            .map_err(|e| e.to_string())?;
        let Some(ev) = pkt else { break };
        let h = EventHeader::parse(&ev).map_err(|e| e.to_string())?;
        let alg = arrival_alg(&h, &ev, st.alg())?;
        binlog::verify_checksum(&ev, alg)
            .map_err(|e| format!("CRC32 at {file}:{}: {e}", st.offset()))?;
        match classify_event(&mut st, &h, &ev, alg) {
            Ok(Action::Skip) => {}
            // The primary moved on to the next file: this one is complete.
            Ok(Action::Switch { .. }) => break,
            Ok(Action::Store { then_switch }) => {
                out.write_all(&ev).map_err(|e| e.to_string())?;
                st.advance(ev.len() as u64);
                last_type = Some(h.type_code);
                if then_switch.is_some() {
                    break;
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let offset = st.offset();
    drop(s);
    let f = out.into_inner().map_err(|e| e.to_string())?;
    if !matches!(
        last_type,
        Some(binlog::event_type::ROTATE | binlog::event_type::STOP)
    ) && offset > local::IN_USE_FLAG_OFFSET
    {
        // Closed by a crash of the primary: its copy keeps the in-use flag (see
        // ActiveFile::mark_in_use), so ours must too to stay identical.
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, local::IN_USE_FLAG_OFFSET)
            .and_then(|_| {
                b[0] |= binlog::LOG_EVENT_BINLOG_IN_USE_F as u8;
                f.write_all_at(&b, local::IN_USE_FLAG_OFFSET)
            })
            .map_err(|e| e.to_string())?;
    }
    f.sync_all().map_err(|e| e.to_string())?;
    drop(f);
    let dst = store.path(file);
    let tmp2 = tmp.clone();
    let report = low_priority(move || {
        check_file(
            &tmp2,
            &CheckOptions {
                require_terminal: false,
                expected_size: None,
                expected_format: None,
            },
        )
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    if !report.is_ok() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("the re-pulled copy is bad too: {}", report.info()));
    }
    std::fs::rename(&tmp, &dst).map_err(|e| e.to_string())?;
    local::fsync_dir(store.dir()).map_err(|e| e.to_string())?;
    Ok(offset)
}
