//! Semi-sync capture (`semi_sync = true`): the acks a stream owes its primary, each sent
//! only once the events it covers are fdatasynced (`mysql_wire::semisync` has the wire).
//!
//! # What is durable when
//!
//! - An event the primary wants acknowledged (its header's flag) makes an ack *owed* at
//!   its end position (`file`, `log_pos`) and asks the writer to sync at once
//!   ([`WriterMsg::SyncSoon`](super::writer::WriterMsg::SyncSoon)) instead of after
//!   `fsync_interval`.
//! - The writer's syncer fdatasyncs, then publishes the synced end at once
//!   ([`WriterTx::synced`], before the control file, the index and the status follow).
//!   Only then does the stream send one ack, for the newest owed position the synced
//!   end covers; it acknowledges every earlier transaction too (group commit: one
//!   fdatasync and one ack for every commit that waited meanwhile).
//! - A crash before the ack loses nothing acknowledged: the primary still waits (or
//!   falls back to async after its timeout, which it reports in its own status).
//!
//! With the fleet, capture runs on the lease owner only, so the ack comes from the
//! owner, written under its tenure.

use std::collections::VecDeque;

use node::status::{Metrics, StatusCell};

use super::error::StreamEnd;
use super::session;
use super::writer::{SyncedEnd, WriterTx};

/// Longest a 20-byte ack may take to be written before the connection is presumed dead.
const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The acks one stream owes.
pub(crate) struct Acks {
    /// Owed end positions, oldest first.
    owed: VecDeque<(String, u64)>,
    /// The synced end, the moment each fdatasync returns.
    synced: tokio::sync::watch::Receiver<Option<SyncedEnd>>,
}

impl Acks {
    /// The acks of a stream whose events go to `writer`.
    pub(crate) fn new(writer: &WriterTx) -> Acks {
        let mut synced = writer.synced();
        synced.mark_unchanged();
        Acks {
            owed: VecDeque::new(),
            synced,
        }
    }

    /// Whether an ack is owed (the stream then also waits for the durable end).
    pub(crate) fn pending(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Notes an ack owed at `pos` (the event's end) of `file`.
    pub(crate) fn owe(&mut self, file: &str, pos: u64) {
        self.owed.push_back((file.to_owned(), pos));
    }

    /// Waits until the synced end moves (cancel-safe).
    pub(crate) async fn synced_moved(&mut self) {
        if self.synced.changed().await.is_err() {
            // The writer is gone; the stream hears why from its own channels.
            std::future::pending::<()>().await;
        }
    }

    /// Sends one ack for the newest owed position the synced end covers, if any.
    ///
    /// # Errors
    ///
    /// [`StreamEnd`] when the ack cannot be written (the connection is broken: the
    /// stream reconnects, and the primary waits or falls back meanwhile).
    pub(crate) async fn send_covered(
        &mut self,
        s: &mut session::Session,
        status: &StatusCell,
        metrics: &Metrics,
        source: &str,
    ) -> Result<(), StreamEnd> {
        let Some(SyncedEnd {
            file: dfile,
            len: dpos,
        }) = self.synced.borrow_and_update().clone()
        else {
            return Ok(());
        };
        let dfile: &str = &dfile;
        let mut newest = None;
        while let Some((f, p)) = self.owed.front() {
            let covered = if f == dfile {
                dpos >= *p
            } else {
                binlog::binlog_order(dfile) > binlog::binlog_order(f)
            };
            if !covered {
                break;
            }
            newest = self.owed.pop_front();
        }
        let Some((file, pos)) = newest else {
            return Ok(());
        };
        // The primary knows its file by its own name, not the archive's.
        let ack = mysql_wire::semisync::ack(binlog::split_timeline(&file).1, pos);
        match tokio::time::timeout(ACK_TIMEOUT, s.conn.send_command(&ack)).await {
            Ok(r) => r.map_err(|e| StreamEnd::from(session::classify(e, "send a semi-sync ack")))?,
            Err(_) => {
                return Err(StreamEnd::Transient(format!(
                    "a semi-sync ack could not be written within {ACK_TIMEOUT:?}: the connection is presumed dead"
                )))
            }
        }
        metrics
            .semi_sync_acks
            .get_or_create(&Metrics::label(source))
            .inc();
        let mut st = status.lock();
        if let Some(v) = st.semi_sync.as_mut() {
            v.acks += 1;
            v.last_ack = Some(format!("{file}:{pos}"));
            v.last_ack_at = Some(catalog::unix_now());
        }
        Ok(())
    }
}
