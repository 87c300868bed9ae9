//! Semi-sync capture (`semi_sync = true`): the acks a stream owes its primary, each sent
//! only once the events it covers are fdatasynced (`mysql_wire::semisync` has the wire).
//!
//! # What is durable when
//!
//! - An event the primary wants acknowledged (its header's flag) makes an ack *owed* at
//!   its end position (`file`, `log_pos`) and asks the writer to sync at once
//!   ([`WriterMsg::SyncSoon`](super::writer::WriterMsg::SyncSoon)) instead of after
//!   `fsync_interval`.
//! - The writer's syncer fdatasyncs, then publishes the durable end (`durable_file`,
//!   `durable_pos` in the status, [`StatusCell::watch_durable`]). Only then does the
//!   stream send one ack, for the newest owed position the durable end covers; it
//!   acknowledges every earlier transaction too (group commit: one fdatasync and one ack
//!   for every commit that waited meanwhile).
//! - A crash before the ack loses nothing acknowledged: the primary still waits (or
//!   falls back to async after its timeout, which it reports in its own status).
//!
//! With the fleet, capture runs on the lease owner only, so the ack comes from the
//! owner, written under its tenure.

use std::collections::VecDeque;

use node::status::{Metrics, StatusCell};

use super::error::StreamEnd;
use super::session;

/// Longest a 20-byte ack may take to be written before the connection is presumed dead.
const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The acks one stream owes.
pub(crate) struct Acks {
    /// Owed end positions, oldest first.
    owed: VecDeque<(String, u64)>,
    /// Moves with the durable end.
    durable: tokio::sync::watch::Receiver<u64>,
}

impl Acks {
    pub(crate) fn new(status: &StatusCell) -> Acks {
        let mut durable = status.watch_durable();
        durable.mark_unchanged();
        Acks {
            owed: VecDeque::new(),
            durable,
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

    /// Waits until the durable end moves (cancel-safe).
    pub(crate) async fn durable_moved(&mut self) {
        if self.durable.changed().await.is_err() {
            // The status outlives the stream; should it go, wait for the read instead.
            std::future::pending::<()>().await;
        }
    }

    /// Sends one ack for the newest owed position the durable end covers, if any.
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
        let durable = {
            let st = status.lock();
            st.durable_file.clone().zip(st.durable_pos)
        };
        let Some((dfile, dpos)) = durable else {
            return Ok(());
        };
        let mut newest = None;
        while let Some((f, p)) = self.owed.front() {
            let covered = if *f == dfile {
                dpos >= *p
            } else {
                binlog::binlog_order(&dfile) > binlog::binlog_order(f)
            };
            if !covered {
                break;
            }
            newest = self.owed.pop_front();
        }
        let Some((file, pos)) = newest else {
            return Ok(());
        };
        let ack = mysql_wire::semisync::ack(&file, pos);
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
