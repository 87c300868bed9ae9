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
use super::context::Upstream;
use super::error::StreamEnd;
use super::lowprio::{low_priority, LowPriorityError};
use super::session::{self, SessionError};
use archive::local::{self, LocalFiles, REPULL_SUFFIX};
use node::config::Source;

/// Why a re-pull failed; the file stays FAIL with this text added to its info, and the
/// checker tries again on a later pass while the primary still lists the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RepullError {
    /// Connecting or setting up the dump failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The stream broke.
    #[error(transparent)]
    Stream(#[from] mysql_wire::conn::ConnError),
    /// The server at the source's address now is not the one whose timeline holds the
    /// file (failover follow): nothing is fetched; the file stays FAIL.
    #[error(
        "{file} is not re-pulled: the server answering (server_id {server_id}) is not the one that wrote it"
    )]
    OtherServer {
        /// The stored file.
        file: String,
        /// The answering server's server_id.
        server_id: u32,
    },
    /// No packet within three heartbeat periods.
    #[error("timed out reading the re-pull stream")]
    Timeout,
    /// An event's header does not parse.
    #[error(transparent)]
    Event(#[from] binlog::EventError),
    /// A FORMAT_DESCRIPTION does not parse.
    #[error("bad FORMAT_DESCRIPTION: {0}")]
    Fde(#[source] binlog::EventError),
    /// An event failed its CRC32 on arrival.
    #[error("CRC32 at {file}:{pos}: {source}")]
    Crc {
        /// The file.
        file: String,
        /// The event's offset, bytes.
        pos: u64,
        /// The check's error.
        #[source]
        source: binlog::EventError,
    },
    /// The stream does not follow on (classification failed).
    #[error(transparent)]
    Classify(#[from] StreamEnd),
    /// Writing, syncing or renaming the copy failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// "create", "write", "sync", "rename".
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The check could not run.
    #[error(transparent)]
    LowPriority(#[from] LowPriorityError),
    /// The new copy fails its check too.
    #[error("the re-pulled copy is bad too: {0}")]
    StillBad(String),
}

/// Fetches `file` again from position 4 into `<file>.repull`, checks it, and swaps it in.
/// Returns the new size in bytes. It comes from the current server (`upstream`), and
/// only when that is the server of the file's timeline ([`RepullError::OtherServer`]).
pub(crate) async fn repull(
    shared: &Shared,
    source: &Source,
    upstream: &Upstream,
    store: &Arc<LocalFiles>,
    file: &str,
) -> Result<u64, RepullError> {
    let mut s = session::connect(source, &upstream.url(), &shared.capture).await?;
    if upstream
        .server_id
        .is_some_and(|id| id != s.primary_server_id)
        || binlog::split_timeline(file).0 != upstream.timeline
    {
        // Another server than the one that wrote the file: its file of that name is not
        // this one (failover follow).
        return Err(RepullError::OtherServer {
            file: file.to_owned(),
            server_id: s.primary_server_id,
        });
    }
    session::prepare_dump(&mut s, shared.capture.heartbeat_period).await?;
    // The server knows the file by its own name (the caller checked it is the current
    // timeline's).
    let wire = binlog::split_timeline(file).1;
    session::start_dump(&mut s, 0, wire, 4, false, true).await?;
    let tmp = store.dir().join(format!("{file}{REPULL_SUFFIX}"));
    let io = |what: &'static str, path: &std::path::Path| {
        let path = path.to_owned();
        move |source| RepullError::Io { what, path, source }
    };
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&tmp).map_err(io("create", &tmp))?,
    );
    out.write_all(&BINLOG_MAGIC).map_err(io("write", &tmp))?;
    let mut st = StreamState::new(wire, 4, s.checksum);
    let mut last_type = None;
    let timeout = shared.capture.heartbeat_period * 3 + Duration::from_secs(5);
    loop {
        let pkt = tokio::time::timeout(timeout, s.conn.read_binlog_packet())
            .await
            .map_err(|_| RepullError::Timeout)??;
        let Some(ev) = pkt else { break };
        let h = EventHeader::parse(&ev)?;
        let alg = arrival_alg(&h, &ev, st.alg()).map_err(RepullError::Fde)?;
        binlog::verify_checksum(&ev, alg).map_err(|source| RepullError::Crc {
            file: file.to_owned(),
            pos: st.offset(),
            source,
        })?;
        match classify_event(&mut st, &h, &ev, alg) {
            Ok(Action::Skip) => {}
            // The primary moved on to the next file: this one is complete.
            Ok(Action::Switch { .. }) => break,
            Ok(Action::Store { then_switch }) => {
                out.write_all(&ev).map_err(io("write", &tmp))?;
                st.advance(ev.len() as u64);
                last_type = Some(h.type_code);
                if then_switch.is_some() {
                    break;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let offset = st.offset();
    drop(s);
    let f = out
        .into_inner()
        .map_err(|e| io("write", &tmp)(e.into_error()))?;
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
            .map_err(io("write", &tmp))?;
    }
    f.sync_all().map_err(io("sync", &tmp))?;
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
    .await?
    .map_err(io("read", &tmp))?;
    if !report.is_ok() {
        let _ = std::fs::remove_file(&tmp);
        return Err(RepullError::StillBad(report.info()));
    }
    std::fs::rename(&tmp, &dst).map_err(io("rename", &tmp))?;
    let dir = store.dir_of(file);
    local::fsync_dir(&dir).map_err(io("sync", &dir))?;
    Ok(offset)
}
