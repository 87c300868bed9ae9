//! Archive retention (`[archive] keep_days`), applied after base retention: a binlog goes
//! from the store, the local disk and the catalog only when it is older than `keep_days`
//! **and** entirely before the oldest restorable base's position. A binlog that any
//! restorable point needs is never deleted, whatever the configuration says; so is every
//! binlog while there is no restorable base at all.
//!
//! Order of deletion: the store's objects (whole file, manifest, chunks), then the local
//! file, then the catalog rows. A crash in between leaves a file whose objects are gone
//! but whose row stays: the next pass deletes it again (deleting a missing object is not
//! an error).

use std::path::Path;

use catalog::{BinlogFileRow, Catalog, CatalogError, FileState};
use objstore::store::{Store, StoreError};
use serde::Serialize;
use snapshotter::retention::RestorablePoint;

use super::objects;
use binlog::binlog_order;

/// Why a retention pass stopped. Every variant is retried by the next pass (what was
/// deleted before stays deleted).
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The catalog failed.
    #[error("archive retention of {source_name}: catalog: {cause}")]
    Catalog {
        /// Source.
        source_name: String,
        /// Cause.
        #[source]
        cause: CatalogError,
    },
    /// Deleting an object from the store failed.
    #[error("archive retention: {0}")]
    Store(#[from] StoreError),
    /// Removing the local file failed.
    #[error("archive retention: remove {path}: {cause}")]
    Remove {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        cause: std::io::Error,
    },
}

/// Why a binlog is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// No base is restorable: every binlog may be needed.
    NoBase,
    /// The oldest restorable base has no binlog position.
    BaseWithoutPosition {
        /// The base.
        base: String,
    },
    /// At or after the oldest restorable base's position.
    NeededByBase {
        /// The base.
        base: String,
        /// Its binlog file.
        file: String,
        /// Its position in it, bytes.
        pos: u64,
    },
    /// Not SUCC: only checked files are deleted.
    NotChecked(FileState),
    /// Its last event is younger than keep_days.
    TooYoung {
        /// keep_days.
        keep_days: u32,
    },
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::NoBase => write!(f, "no restorable base: every binlog may be needed"),
            Keep::BaseWithoutPosition { base } => {
                write!(
                    f,
                    "the oldest restorable base {base} has no binlog position"
                )
            }
            Keep::NeededByBase { base, file, pos } => {
                write!(f, "needed to restore from base {base} ({file}:{pos})")
            }
            Keep::NotChecked(s) => write!(f, "{} (only checked files are deleted)", s.as_str()),
            Keep::TooYoung { keep_days } => write!(f, "younger than keep_days = {keep_days}"),
        }
    }
}

/// What a pass did, file by file.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BinlogRetentionReport {
    /// `keep_days` applied.
    pub keep_days: u32,
    /// The oldest restorable base's binlog position (`file:pos`), if any.
    pub oldest_restorable: Option<String>,
    /// Binlogs deleted.
    pub deleted: Vec<String>,
    /// Binlogs kept, each with the reason.
    pub kept: Vec<Kept>,
}

/// A kept binlog and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Kept {
    /// File name.
    pub file: String,
    /// Why it stays.
    pub reason: String,
}

/// The decision for each file (in order): `None` to delete, `Some(why)` to keep.
pub fn decide(
    files: &[BinlogFileRow],
    keep_days: u32,
    now: i64,
    oldest: Option<&RestorablePoint>,
) -> Vec<(String, Option<Keep>)> {
    let cutoff = now - i64::from(keep_days) * 86_400;
    files
        .iter()
        .map(|f| {
            let keep = match oldest {
                None => Some(Keep::NoBase),
                Some(p) => match &p.binlog_file {
                    None => Some(Keep::BaseWithoutPosition {
                        base: p.backup_id.clone(),
                    }),
                    Some(bf) if binlog_order(&f.name) >= binlog_order(bf) => {
                        Some(Keep::NeededByBase {
                            base: p.backup_id.clone(),
                            file: bf.clone(),
                            pos: p.binlog_pos.unwrap_or(4),
                        })
                    }
                    Some(_) if f.state != FileState::Succ => Some(Keep::NotChecked(f.state)),
                    Some(_) if f.last_event_time.unwrap_or(f.state_changed_at) > cutoff => {
                        Some(Keep::TooYoung { keep_days })
                    }
                    Some(_) => None,
                },
            };
            (f.name.clone(), keep)
        })
        .collect()
}

/// The epochs of the whole objects and manifests the store holds for each file of
/// `source` (one listing of `<source>/binlogs/`; chunks are not counted).
async fn whole_object_epochs(
    store: &Store,
    source: &str,
) -> Result<std::collections::HashMap<String, Vec<i64>>, StoreError> {
    let dir = format!("{source}/binlogs/");
    let mut out: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for (key, _) in store.list(&dir).await? {
        let Some(name) = key.strip_prefix(&dir).and_then(objects::whole_object_name) else {
            continue;
        };
        let name = name.strip_suffix(".manifest.json").unwrap_or(name);
        let (file, epoch) = objects::split_epoch(name);
        out.entry(file.to_string()).or_default().push(epoch);
    }
    Ok(out)
}

/// Applies retention to `source` (local directory `dir`) at `now`.
///
/// # Errors
///
/// The first catalog or store failure; what was deleted before it stays deleted and the
/// next pass resumes.
pub async fn apply(
    catalog: &Catalog,
    store: &Store,
    dir: &Path,
    source: &str,
    keep_days: u32,
    now: i64,
    oldest: Option<&RestorablePoint>,
) -> Result<BinlogRetentionReport, RetentionError> {
    let cat = |cause| RetentionError::Catalog {
        source_name: source.to_string(),
        cause,
    };
    let files = catalog.list_files(source).await.map_err(cat)?;
    let objs = catalog.list_archive_objects(source).await.map_err(cat)?;
    let mut report = BinlogRetentionReport {
        keep_days,
        oldest_restorable: oldest.and_then(|p| {
            p.binlog_file
                .as_ref()
                .map(|f| format!("{f}:{}", p.binlog_pos.unwrap_or(4)))
        }),
        ..Default::default()
    };
    let mut listed: Option<std::collections::HashMap<String, Vec<i64>>> = None;
    for (file, keep) in decide(&files, keep_days, now, oldest) {
        if let Some(why) = keep {
            report.kept.push(Kept {
                file,
                reason: why.to_string(),
            });
            continue;
        }
        // Recorded first (fenced on a lease owner's handle): a stale owner stops here.
        catalog
            .mark_file_expired(source, &file)
            .await
            .map_err(cat)?;
        for o in objs.iter().filter(|o| o.file == file) {
            store.delete(&o.object_key).await?;
        }
        // Every epoch's whole object and manifest of the file: the rows' epochs, epoch 0,
        // and whatever the store holds that no row names (a crash before the row, a
        // stale writer whose row the fence refused). One listing per pass.
        let mut epochs: std::collections::BTreeSet<i64> = objs
            .iter()
            .filter(|o| o.file == file)
            .map(|o| o.epoch)
            .collect();
        epochs.insert(0);
        if listed.is_none() {
            listed = Some(whole_object_epochs(store, source).await?);
        }
        if let Some(held) = listed.as_ref().and_then(|l| l.get(&file)) {
            epochs.extend(held.iter().copied());
        }
        for epoch in epochs {
            for key in [
                objects::file_key(source, &file, epoch),
                objects::manifest_key(source, &file, epoch),
            ] {
                store.delete(&key).await?;
            }
        }
        for prefix in [
            objects::chunks_prefix(source, &file),
            objects::index_prefix(source, &file),
        ] {
            for (k, _) in store.list(&prefix).await? {
                store.delete(&k).await?;
            }
        }
        let path = dir.join(&file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(cause) => return Err(RetentionError::Remove { path, cause }),
        }
        catalog.forget_file(source, &file).await.map_err(cat)?;
        tracing::info!(source, file = %file, keep_days, "binlog deleted by archive retention");
        report.deleted.push(file);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, state: FileState, t: i64) -> BinlogFileRow {
        BinlogFileRow {
            source: "db1".into(),
            name: name.into(),
            seq: binlog::binlog_seq(name).map_or(-1, |s| s as i64),
            size: 100,
            state,
            info: String::new(),
            first_event_time: Some(t),
            last_event_time: Some(t),
            first_gtid: None,
            last_gtid: None,
            sha256: None,
            created_at: t,
            reported_at: None,
            checked_at: None,
            state_changed_at: t,
        }
    }

    #[test]
    fn only_old_checked_files_entirely_before_the_oldest_base_go() {
        let day = 86_400;
        let now = 100 * day;
        let files = vec![
            file("mysql-bin.000008", FileState::Succ, now - 30 * day),
            file("mysql-bin.000009", FileState::Fail, now - 30 * day),
            file("mysql-bin.000010", FileState::Succ, now - 3 * day),
            file("mysql-bin.000011", FileState::Succ, now - 20 * day),
            file("mysql-bin.000012", FileState::Succ, now - 20 * day),
        ];
        let base = RestorablePoint {
            backup_id: "b1".into(),
            binlog_file: Some("mysql-bin.000011".into()),
            binlog_pos: Some(1234),
            gtid_pos: None,
            time: now - 20 * day,
        };
        let d = decide(&files, 7, now, Some(&base));
        let deleted: Vec<&str> = d
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(deleted, vec!["mysql-bin.000008"]);
        assert_eq!(d[1].1, Some(Keep::NotChecked(FileState::Fail)));
        assert_eq!(d[2].1, Some(Keep::TooYoung { keep_days: 7 }));
        // The base's own file and later ones are needed, however old.
        let needed = Some(Keep::NeededByBase {
            base: "b1".into(),
            file: "mysql-bin.000011".into(),
            pos: 1234,
        });
        assert_eq!(d[3].1, needed);
        assert_eq!(d[4].1, needed);
        // No restorable base: nothing goes, whatever keep_days says.
        assert!(decide(&files, 0, now, None)
            .iter()
            .all(|(_, v)| *v == Some(Keep::NoBase)));
    }
}
