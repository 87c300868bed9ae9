//! Retention: which bases to keep, and deleting the others (seed 004's mark-del: the row
//! is marked EXPIRED before any object is deleted, DELETED once they are all gone).
//!
//! Rules for one source, with `keep_days` = D and `keep_min` = M:
//!
//! - A *full* is a COMPLETED base that is not incremental (physical full, logical, clone).
//!   Fulls are ranked newest first by their consistency time (`consistent_at`, else
//!   `started_at`).
//! - Kept fulls: the newest M; every full newer than now − D; and the newest full older
//!   than now − D (so every point of the last D days stays restorable: a restore to the
//!   start of the window needs the base taken before it).
//! - An incremental is kept exactly when its whole parent chain is COMPLETED and its full
//!   is kept; otherwise it expires with it.
//! - ERROR bases keep their row (the record of the failure and its reason); any partial
//!   objects left under their prefix (a crash mid-upload) are deleted. DOING, UPLOADING
//!   and SKIPPED rows are never touched.
//!
//! [`oldest_restorable`] is the consistency point of the oldest kept full: binlogs before
//! it are not needed by any restore (purge nothing newer).

use crate::error::BaseError;
use std::collections::{HashMap, HashSet};

use catalog::{BackupRow, BackupState, Catalog};
use serde::Serialize;

use objstore::store::{Store, StoreError};

/// What one retention pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RetentionReport {
    /// Bases expired and deleted.
    pub expired: Vec<String>,
    /// ERROR bases whose partial objects were removed (the rows stay ERROR).
    pub collected: Vec<String>,
    /// Objects deleted.
    pub objects_deleted: usize,
    /// Bases kept (COMPLETED).
    pub kept: Vec<String>,
}

/// The oldest point a restore can start from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RestorablePoint {
    /// The base.
    pub backup_id: String,
    /// Its binlog file.
    pub binlog_file: Option<String>,
    /// Its binlog position.
    pub binlog_pos: Option<u64>,
    /// Its GTID position.
    pub gtid_pos: Option<String>,
    /// Its consistency time, unix seconds.
    pub time: i64,
}

fn point_time(b: &BackupRow) -> i64 {
    b.consistent_at.unwrap_or(b.started_at)
}

/// The ids of `bases` that retention keeps at time `now` (unix seconds).
pub fn decide(bases: &[BackupRow], keep_days: u32, keep_min: u32, now: i64) -> HashSet<String> {
    let cutoff = now - i64::from(keep_days) * 86_400;
    let mut fulls: Vec<&BackupRow> = bases
        .iter()
        .filter(|b| b.state == BackupState::Completed && !b.incremental)
        .collect();
    fulls.sort_by_key(|b| std::cmp::Reverse((point_time(b), b.id.clone())));
    let mut keep: HashSet<String> = HashSet::new();
    let mut older_kept = false;
    for (i, b) in fulls.iter().enumerate() {
        let recent = point_time(b) >= cutoff;
        if i < keep_min as usize || recent {
            keep.insert(b.id.clone());
        } else if !older_kept {
            keep.insert(b.id.clone());
            older_kept = true;
            continue;
        }
        if !recent {
            older_kept = true;
        }
    }
    // Incrementals: kept when the whole chain up to a kept full is COMPLETED.
    let by_id: HashMap<&str, &BackupRow> = bases.iter().map(|b| (b.id.as_str(), b)).collect();
    for b in bases
        .iter()
        .filter(|b| b.incremental && b.state == BackupState::Completed)
    {
        let mut cur = b;
        let mut ok = false;
        for _ in 0..10_000 {
            let Some(p) = cur.parent_id.as_deref().and_then(|p| by_id.get(p)) else {
                break;
            };
            if p.state != BackupState::Completed {
                break;
            }
            if !p.incremental {
                ok = keep.contains(&p.id);
                break;
            }
            cur = p;
        }
        if ok {
            keep.insert(b.id.clone());
        }
    }
    keep
}

/// The oldest kept full of `bases` (call after retention), if any.
pub fn oldest_restorable(bases: &[BackupRow]) -> Option<RestorablePoint> {
    bases
        .iter()
        .filter(|b| b.state == BackupState::Completed && !b.incremental)
        .min_by_key(|b| (point_time(b), b.id.clone()))
        .map(|b| RestorablePoint {
            backup_id: b.id.clone(),
            binlog_file: b.binlog_file.clone(),
            binlog_pos: b.binlog_pos,
            gtid_pos: b.gtid_pos.clone(),
            time: point_time(b),
        })
}

/// Applies retention to `source` at time `now`.
///
/// # Errors
///
/// [`BaseError`]: the first catalog or store failure (what was done before it stays done; the next pass
/// resumes: EXPIRED rows are deleted again).
pub async fn apply(
    catalog: &Catalog,
    store: &Store,
    source: &str,
    keep_days: u32,
    keep_min: u32,
    now: i64,
) -> Result<RetentionReport, BaseError> {
    let bases = catalog
        .list_backups(source)
        .await
        .map_err(BaseError::catalog(format!("list the bases of {source}")))?;
    let keep = decide(&bases, keep_days, keep_min, now);
    let mut report = RetentionReport::default();
    // One listing of the source's objects per pass, grouped by base id (keys are
    // `<source>/<id>/...`), and only when some base has objects to remove.
    let needs_listing = bases.iter().any(|b| match b.state {
        BackupState::Completed => !keep.contains(&b.id),
        BackupState::Expired | BackupState::Error => true,
        _ => false,
    });
    let mut stored: HashMap<String, Vec<String>> = HashMap::new();
    if needs_listing {
        for (k, _) in store.list(source).await? {
            if let Some(id) = k.split('/').nth(1) {
                stored.entry(id.to_owned()).or_default().push(k);
            }
        }
    }
    for b in &bases {
        let leftovers = stored.remove(&b.id).unwrap_or_default();
        let drop = match b.state {
            BackupState::Completed if !keep.contains(&b.id) => {
                catalog
                    .expire_backup(
                        &b.id,
                        &format!(
                            "expired by retention (keep_days={keep_days}, keep_min={keep_min})"
                        ),
                    )
                    .await
                    .map_err(BaseError::catalog(format!("mark {} EXPIRED", b.id)))?;
                report.expired.push(b.id.clone());
                true
            }
            BackupState::Completed => {
                report.kept.push(b.id.clone());
                false
            }
            BackupState::Expired => {
                report.expired.push(b.id.clone());
                true
            }
            BackupState::Error => {
                if !leftovers.is_empty() {
                    for k in &leftovers {
                        store.delete(k).await?;
                        report.objects_deleted += 1;
                    }
                    report.collected.push(b.id.clone());
                }
                false
            }
            _ => false,
        };
        if !drop {
            continue;
        }
        let mut keys: Vec<String> = b.objects.iter().map(|o| o.key.clone()).collect();
        for k in leftovers {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for k in &keys {
            store.delete(k).await?;
            report.objects_deleted += 1;
        }
        catalog
            .mark_deleted(&b.id)
            .await
            .map_err(BaseError::catalog(format!("mark {} DELETED", b.id)))?;
        tracing::info!(source, base = %b.id, objects = keys.len(), state = %b.state, "retention removed a base");
    }
    Ok(report)
}

/// With S3 Object Lock on `store` (`Store::with_retention`): every COMPLETED base of
/// `source` whose objects' lock ends before `now + D / 2` (`D`: the rule's days) gets
/// `now + D` on each of its objects, recorded in its row (fenced by the caller's
/// tenure). Retention deletes what it does not keep, so a base still COMPLETED is
/// kept: its objects stay undeletable as long as it is (archive::lock does the same for
/// binlogs). How many bases were extended; nothing without Object Lock.
///
/// # Errors
///
/// [`BaseError`] when the store cannot be reached or the catalog fails (a fenced
/// refusal: stop, another node owns the source); retried at the next pass. An object
/// the store refuses or lacks is logged and its base passed over.
pub async fn extend_locks(
    catalog: &Catalog,
    store: &Store,
    source: &str,
    now: i64,
) -> Result<u64, BaseError> {
    let Some((lock, retain)) = store.locking() else {
        return Ok(0);
    };
    let until = retain.until(now);
    let due = catalog
        .base_locks_due(source, retain.due(now), retain.period())
        .await
        .map_err(BaseError::catalog(
            "list the bases whose object lock ends soon",
        ))?;
    if due.is_empty() {
        return Ok(0);
    }
    let rows = catalog
        .list_backups(source)
        .await
        .map_err(BaseError::catalog("list the bases"))?;
    let mut extended = 0;
    'bases: for b in rows.iter().filter(|b| due.contains(&b.id)) {
        for o in &b.objects {
            match lock.retain(&o.key, retain.mode, until).await {
                Ok(()) => {}
                // The store refuses or lacks this object: logged, the other bases go on.
                Err(e) if e.status().is_some() => {
                    tracing::warn!(source, base = %b.id, key = %o.key, error = %e, "object lock: could not extend a base's object; tried again at the next pass");
                    continue 'bases;
                }
                Err(e) => return Err(StoreError::from(e).into()),
            }
        }
        catalog
            .set_base_lock_until(&b.id, until)
            .await
            .map_err(BaseError::catalog(format!("record the lock of {}", b.id)))?;
        extended += 1;
    }
    tracing::info!(source, bases = extended, until = %objstore::lock::iso8601(until), "object lock: kept bases locked longer");
    Ok(extended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(id: &str, t: i64, parent: Option<&str>, state: BackupState) -> BackupRow {
        BackupRow {
            id: id.into(),
            source: "db1".into(),
            method: "physical".into(),
            tool: "mariabackup".into(),
            incremental: parent.is_some(),
            parent_id: parent.map(Into::into),
            state,
            info: None,
            started_at: t,
            finished_at: Some(t),
            bytes: 1,
            binlog_file: None,
            binlog_pos: None,
            gtid_pos: None,
            consistent_at: Some(t),
            from_lsn: None,
            to_lsn: None,
            server_version: None,
            tool_version: None,
            command: None,
            db_list: None,
            store_url: None,
            state_changed_at: t,
            objects: vec![],
        }
    }

    const DAY: i64 = 86_400;

    #[test]
    fn keeps_window_plus_the_base_before_it_and_min() {
        let now = 100 * DAY;
        use BackupState::Completed as C;
        let bases = vec![
            base("f1", now - 20 * DAY, None, C),
            base("f2", now - 10 * DAY, None, C),
            base("i2", now - 9 * DAY, Some("f2"), C),
            base("f3", now - 8 * DAY, None, C),
            base("i3a", now - 7 * DAY + 10, Some("f3"), C),
            base("i3b", now - 6 * DAY, Some("i3a"), C),
            base("f4", now - 2 * DAY, None, C),
            base("f5", now - DAY, None, C),
        ];
        let keep = decide(&bases, 7, 1, now);
        let mut k: Vec<_> = keep.into_iter().collect();
        k.sort();
        // f4, f5 in the window; f3 is the newest before it (and its incrementals).
        assert_eq!(k, vec!["f3", "f4", "f5", "i3a", "i3b"]);
    }

    #[test]
    fn keep_min_wins_over_days_and_never_drops_newest() {
        let now = 100 * DAY;
        use BackupState::Completed as C;
        let bases = vec![
            base("f1", now - 90 * DAY, None, C),
            base("f2", now - 80 * DAY, None, C),
            base("f3", now - 70 * DAY, None, C),
        ];
        let mut k: Vec<_> = decide(&bases, 7, 2, now).into_iter().collect();
        k.sort();
        assert_eq!(k, vec!["f2", "f3"]);
        let k = decide(&bases, 0, 1, now);
        assert!(k.contains("f3") && k.len() == 1, "{k:?}");
    }

    #[test]
    fn incremental_with_broken_chain_is_dropped() {
        let now = 100 * DAY;
        let bases = vec![
            base("f1", now - DAY, None, BackupState::Completed),
            base("i1", now - DAY + 1, Some("f1"), BackupState::Error),
            base("i2", now - DAY + 2, Some("i1"), BackupState::Completed),
        ];
        let k = decide(&bases, 7, 1, now);
        assert!(k.contains("f1") && !k.contains("i2"), "{k:?}");
        assert_eq!(oldest_restorable(&bases).unwrap().backup_id, "f1");
    }
}
