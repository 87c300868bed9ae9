//! One connection's worth of streaming: connect, pick the start point, COM_BINLOG_DUMP,
//! then read, CRC-check and classify events and hand them to the writer in batches.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use binlog::{self, event_type, EventHeader};

use super::classify::{arrival_alg, classify_event, Action, StreamState};
use super::context::Shared;
use super::error::StreamEnd;
use super::session;
use super::writer::WriterMsg;
use crate::archive::store::{self, SourceStore};
use crate::config::{Source, StartAt};
use crate::status::{CaptureState, StatusCell};

/// Resolves where to start when the archive is empty (or a gap was accepted).
pub(crate) async fn start_point(
    s: &mut session::Session,
    src: &Source,
    status: &StatusCell,
    accept_gap: bool,
    store: &SourceStore,
) -> Result<(String, u64), StreamEnd> {
    let logs = session::show_binary_logs(&mut s.conn)
        .await
        .map_err(|e| StreamEnd::from(session::classify(e, "SHOW BINARY LOGS")))?;
    let Some((first, _)) = logs.first().cloned() else {
        return Err(StreamEnd::Definite(
            "the primary lists no binary logs (SHOW BINARY LOGS is empty)".into(),
        ));
    };
    let start = if accept_gap {
        // Continue with the primary's oldest binlog that is newer than the archive's
        // newest file: archived files are never opened for writing again.
        let archived_last = store
            .list()
            .ok()
            .and_then(|v| v.last().map(|(n, _)| n.clone()));
        let Some((next, _)) = logs
            .iter()
            .find(|(n, _)| {
                archived_last
                    .as_ref()
                    .is_none_or(|l| store::binlog_order(n) > store::binlog_order(l))
            })
            .cloned()
        else {
            return Err(StreamEnd::Definite(
                "the primary has no binlog newer than the archive's newest file".into(),
            ));
        };
        status.note(format!(
            "gap accepted by the operator: capture continues at {next}, the oldest binlog the primary has after the archive's last file"
        ));
        next
    } else {
        match &src.start {
            StartAt::Earliest => {
                let purged = store::binlog_seq(&first).is_some_and(|n| n > 1);
                status.note(if purged {
                    format!("capture began at {first}, the oldest binlog the primary still had: earlier binlogs had been purged on the primary and are not in the archive")
                } else {
                    format!("capture began at {first}, the primary's first binlog")
                });
                first
            }
            StartAt::Current => {
                let cur = session::show_master_status(&mut s.conn)
                    .await
                    .map_err(|e| StreamEnd::from(session::classify(e, "SHOW MASTER STATUS")))?
                    .map(|(f, _)| f)
                    .unwrap_or(first);
                status.note(format!("capture began at {cur}, the primary's current binlog (start = \"current\"), from position 4"));
                cur
            }
            StartAt::File(f) => {
                if !logs.iter().any(|(n, _)| n == f) {
                    return Err(StreamEnd::Definite(format!(
                        "start file {f} is not on the primary (it has {} .. {}): fix `start` in the config",
                        first,
                        logs.last().map(|(n, _)| n.as_str()).unwrap_or("?")
                    )));
                }
                status.note(format!("capture began at {f} (configured start)"));
                f.clone()
            }
        }
    };
    Ok((start, 4))
}

/// One connection's worth of streaming.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream_once(
    shared: &Shared,
    src: &Source,
    status: &StatusCell,
    wtx: &mpsc::Sender<WriterMsg>,
    store: &SourceStore,
    resume: &store::Resume,
    accept_gap: bool,
    label: &crate::status::SourceLabel,
    cancel: &CancellationToken,
    writer_failed: &CancellationToken,
) -> StreamEnd {
    let cap = &shared.capture;
    let mut s = tokio::select! {
        _ = cancel.cancelled() => return StreamEnd::Cancelled,
        r = session::connect(src, cap) => match r { Ok(s) => s, Err(e) => return e.into() },
    };
    {
        let mut st = status.lock();
        st.dialect = Some(s.dialect.name().into());
        st.server_version = Some(s.conn.server_version().to_owned());
    }
    if s.binlog_format == "STATEMENT" {
        status.note("the primary uses binlog_format=STATEMENT: archived and replayable, but non-deterministic statements may replay differently; ROW is recommended");
    }
    let (file, pos) = match resume {
        store::Resume::At { file, pos } => (file.clone(), *pos),
        store::Resume::Next { next, .. } => (next.clone(), 4),
        store::Resume::Empty => match start_point(&mut s, src, status, accept_gap, store).await {
            Ok(x) => x,
            Err(e) => return e,
        },
    };
    if let Err(e) = session::prepare_dump(&mut s, cap.heartbeat_period).await {
        return e.into();
    }
    if let Err(e) = session::start_dump(&mut s, src.server_id, &file, pos, true, false).await {
        return e.into();
    }
    info!(source = %src.name, %file, pos, dialect = s.dialect.name(), "streaming");
    {
        let mut st = status.lock();
        st.state = CaptureState::Streaming;
    }
    let _ = shared
        .catalog
        .set_source_state(&src.name, "streaming", None)
        .await;

    let received_bytes = shared.metrics.received_bytes.get_or_create(label).clone();
    let received_events = shared.metrics.received_events.get_or_create(label).clone();
    let crc_failures = shared.metrics.crc_failures.get_or_create(label).clone();
    let read_timeout = cap.heartbeat_period * 3 + Duration::from_secs(5);

    let mut st = StreamState {
        file: file.clone(),
        offset: pos,
        opened: false,
        alg: s.checksum,
    };
    if let store::Resume::At { .. } = resume {
        // The writer owns the file being continued from the start, so that a stream that
        // begins by moving to the next file (the primary stopped or crashed) closes it.
        if wtx
            .send(WriterMsg::Open {
                file: file.clone(),
                pos,
            })
            .await
            .is_err()
        {
            return StreamEnd::Definite("the writer stopped".into());
        }
        st.opened = true;
    }
    let mut batch: Vec<(EventHeader, Bytes)> = Vec::new();
    let mut batch_bytes = 0usize;
    loop {
        let pkt = tokio::select! {
            _ = cancel.cancelled() => return StreamEnd::Cancelled,
            _ = writer_failed.cancelled() => return StreamEnd::Definite("the writer failed".into()),
            r = tokio::time::timeout(read_timeout, s.conn.read_binlog_packet()) => r,
        };
        let ev = match pkt {
            Err(_) => {
                return StreamEnd::Transient(format!(
                    "no event or heartbeat for {read_timeout:?}: the connection is presumed dead"
                ))
            }
            Ok(Err(e)) => return session::classify(e, "binlog stream").into(),
            Ok(Ok(None)) => {
                return StreamEnd::Transient("the primary ended the binlog stream (EOF)".into())
            }
            Ok(Ok(Some(ev))) => ev,
        };
        let header = match EventHeader::parse(&ev) {
            Ok(h) if h.event_size as usize == ev.len() => h,
            Ok(h) => {
                return StreamEnd::Transient(format!(
                    "event size {} in its header differs from the packet's {} bytes at {}:{}",
                    h.event_size,
                    ev.len(),
                    st.file,
                    st.offset
                ))
            }
            Err(e) => {
                return StreamEnd::Transient(format!(
                    "bad event header at {}:{}: {e}",
                    st.file, st.offset
                ))
            }
        };
        let alg = match arrival_alg(&header, &ev, st.alg) {
            Ok(a) => a,
            Err(e) => return StreamEnd::Transient(format!("{e} at {}:{}", st.file, st.offset)),
        };
        if let Err(e) = binlog::verify_checksum(&ev, alg) {
            crc_failures.inc();
            return StreamEnd::Crc(
                format!(
                    "CRC32 check failed for a {} event at {}:{} ({e}); not stored",
                    event_type::name(header.type_code),
                    st.file,
                    st.offset
                ),
                (st.file.clone(), st.offset),
            );
        }
        received_bytes.inc_by(ev.len() as u64);
        received_events.inc();
        match classify_event(&mut st, &header, &ev, alg) {
            Ok(Action::Skip) => {}
            Ok(Action::Switch { file, pos }) => {
                if let Some(e) = going_back(store, &file) {
                    return e;
                }
                if !batch.is_empty() {
                    if wtx
                        .send(WriterMsg::Events(std::mem::take(&mut batch)))
                        .await
                        .is_err()
                    {
                        return StreamEnd::Definite("the writer stopped".into());
                    }
                    batch_bytes = 0;
                }
                if wtx.send(WriterMsg::Open { file, pos }).await.is_err() {
                    return StreamEnd::Definite("the writer stopped".into());
                }
            }
            Ok(Action::Store { then_switch }) => {
                if !st.opened {
                    st.opened = true;
                    if wtx
                        .send(WriterMsg::Open {
                            file: st.file.clone(),
                            pos: st.offset,
                        })
                        .await
                        .is_err()
                    {
                        return StreamEnd::Definite("the writer stopped".into());
                    }
                }
                batch_bytes += ev.len();
                st.offset += ev.len() as u64;
                batch.push((header, ev));
                if let Some(next) = then_switch {
                    if let Some(e) = going_back(store, &next) {
                        return e;
                    }
                    if wtx
                        .send(WriterMsg::Events(std::mem::take(&mut batch)))
                        .await
                        .is_err()
                    {
                        return StreamEnd::Definite("the writer stopped".into());
                    }
                    batch_bytes = 0;
                    st.file = next.clone();
                    st.offset = 4;
                    if wtx
                        .send(WriterMsg::Open { file: next, pos: 4 })
                        .await
                        .is_err()
                    {
                        return StreamEnd::Definite("the writer stopped".into());
                    }
                }
            }
            Err(end) => return end,
        }
        if !batch.is_empty() && (batch_bytes >= 256 * 1024 || !s.conn.has_buffered_packet()) {
            if wtx
                .send(WriterMsg::Events(std::mem::take(&mut batch)))
                .await
                .is_err()
            {
                return StreamEnd::Definite("the writer stopped".into());
            }
            batch_bytes = 0;
        }
    }
}

/// A switch to `file` that is already archived and older than the archive's newest file
/// would overwrite a closed file: the primary went back in its history (RESET MASTER, or
/// another server answering at that address). Stop rather than damage the archive.
pub(crate) fn going_back(store: &SourceStore, file: &str) -> Option<StreamEnd> {
    let files = store.list().ok()?;
    let (last, _) = files.last()?;
    (store::binlog_order(file) < store::binlog_order(last) && files.iter().any(|(n, _)| n == file))
        .then(|| {
            StreamEnd::Definite(format!(
                "the primary moved to {file}, which is already archived and older than {last}: \
                 was RESET MASTER run, or is another server answering at this address? \
                 Capture stopped so the archive is not overwritten"
            ))
        })
}
