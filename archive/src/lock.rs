//! Object Lock extension (`[archive] object_lock`, objstore::lock): objects still kept
//! near the end of their lock get a later retain-until date, so that what a restorable
//! base still needs stays undeletable as bases age.
//!
//! # What is locked until when
//!
//! - Every object is locked by the bucket's default rule of `D` days when it is written
//!   (and multipart uploads set the same date explicitly, `Store::with_retention`). `D`
//!   is at least `keep_days` (checked at start, `ArchiveTier::open_checked`), so no
//!   object's lock ends before archive retention could first delete it.
//! - Retention deletes only what no restorable base needs; so every object row that is
//!   not deleted is still kept. Once its lock ends within `D / 2`, a pass sets the lock
//!   of its objects (a whole file: its object, manifest and index segment; a chunk: its
//!   object) to `now + D` and records the date in its row (`lock_until`), fenced by
//!   the owner's tenure. One query finds the rows due (it reads the source's live
//!   rows in the database, a scan of one source's rows once an hour, with no store call
//!   while nothing is due).
//! - A crash between the store's calls and the row's update leaves the later date set
//!   and the row's older one recorded: the next pass sets it again (extending to a later
//!   date is always allowed). Extending objects that retention deletes soon after is
//!   harmless: their versions stay locked a little longer, then expire.

use catalog::{ArchiveKind, Catalog};
use objstore::store::{Store, StoreError};
use serde::Serialize;
use tracing::{info, warn};

use super::objects;
use super::tier::TierError;

/// Rows read per query of a pass.
const BATCH: u32 = 500;

/// What one extension pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LockReport {
    /// Object rows whose objects got a later date.
    pub extended: u64,
    /// Object rows whose main object the store does not have (left for the scrub).
    pub missing: u64,
    /// Object rows the store refused to extend (logged with the store's answer; tried
    /// again at the next pass).
    pub refused: u64,
    /// The date set, unix seconds (0 when nothing was due).
    pub until: i64,
}

/// Extends the lock of every object row of `source` whose lock ends before
/// `now + D / 2` to `now + D` (`D`: the store's retention days). Nothing without
/// Object Lock on `store`.
///
/// # Errors
///
/// [`TierError::Catalog`] (a fenced refusal included: stop, the source has another
/// owner) or [`TierError::Store`] when the store cannot be reached; retried by the next
/// pass, what was extended stays so. An object the store refuses or lacks is counted
/// in the report and passed over, never holding the others back.
pub async fn extend_due(
    catalog: &Catalog,
    store: &Store,
    source: &str,
    now: i64,
) -> Result<LockReport, TierError> {
    let Some((lock, retain)) = store.locking() else {
        return Ok(LockReport::default());
    };
    let (period, until, due) = (retain.period(), retain.until(now), retain.due(now));
    let mut report = LockReport::default();
    // Rows passed over in this pass (missing, refused): still due, so read past them.
    let mut skipped = std::collections::HashSet::new();
    loop {
        let limit = BATCH.saturating_add(u32::try_from(skipped.len()).unwrap_or(u32::MAX));
        let rows = catalog
            .archive_locks_due(source, due, period, limit)
            .await?;
        let fresh: Vec<_> = rows
            .iter()
            .filter(|r| !skipped.contains(&r.object_key))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for row in fresh {
            let mut keys = vec![row.object_key.clone()];
            if row.kind == ArchiveKind::File {
                keys.push(objects::manifest_key(source, &row.file, row.epoch));
                keys.push(objects::index_key(source, &row.file, row.epoch, &row.codec));
            }
            match retain_all(lock, &keys, retain.mode, until).await {
                Ok(true) => {
                    catalog
                        .set_archive_lock_until(source, &row.file, row.kind, row.end_offset, until)
                        .await?;
                    report.extended += 1;
                }
                Ok(false) => {
                    warn!(file = %row.file, key = %row.object_key, "object lock: the store does not have this object; the scrub will find it");
                    report.missing += 1;
                    skipped.insert(row.object_key.clone());
                }
                // The store's refusal of this object (403, 405: a delete marker, a
                // version it will not extend): logged, the others go on.
                Err(StoreError::Lock(e)) if e.status().is_some() => {
                    warn!(file = %row.file, key = %row.object_key, error = %e, "object lock: the store refused a later date; tried again at the next pass");
                    report.refused += 1;
                    skipped.insert(row.object_key.clone());
                }
                Err(e) => return Err(e.into()),
            }
        }
        if rows.len() < limit as usize {
            break;
        }
    }
    if report.extended > 0 {
        report.until = until;
        info!(
            extended = report.extended,
            until = %objstore::lock::iso8601(until),
            "object lock: kept objects locked longer"
        );
    }
    Ok(report)
}

/// Sets the lock of `keys` (the first is the row's main object, the others may be
/// absent); `false` when the main object is missing.
async fn retain_all(
    lock: &objstore::lock::ObjectLock,
    keys: &[String],
    mode: objstore::lock::LockMode,
    until: i64,
) -> Result<bool, StoreError> {
    for (i, key) in keys.iter().enumerate() {
        match lock.retain(key, mode, until).await {
            Ok(()) => {}
            Err(e) if e.status() == Some(404) => {
                if i == 0 {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}
