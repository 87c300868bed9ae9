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

use catalog::{BinlogFileRow, Catalog, FileState};
use objstore::store::Store;
use serde::Serialize;
use snapshotter::retention::RestorablePoint;

use super::objects;
use super::store::binlog_order;

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

/// The decision for each file (in order): `Ok(())` to delete, `Err(reason)` to keep.
pub fn decide(
    files: &[BinlogFileRow],
    keep_days: u32,
    now: i64,
    oldest: Option<&RestorablePoint>,
) -> Vec<(String, Result<(), String>)> {
    let cutoff = now - i64::from(keep_days) * 86_400;
    let base_file = oldest.and_then(|p| p.binlog_file.clone());
    files
        .iter()
        .map(|f| {
            let verdict = match (&base_file, oldest) {
                (_, None) => Err("no restorable base: every binlog may be needed".to_string()),
                (None, Some(p)) => Err(format!(
                    "the oldest restorable base {} has no binlog position",
                    p.backup_id
                )),
                (Some(bf), Some(p)) if binlog_order(&f.name) >= binlog_order(bf) => Err(format!(
                    "needed to restore from base {} ({}:{})",
                    p.backup_id,
                    bf,
                    p.binlog_pos.unwrap_or(4)
                )),
                _ if f.state != FileState::Succ => Err(format!(
                    "{} (only checked files are deleted)",
                    f.state.as_str()
                )),
                _ if f.last_event_time.unwrap_or(f.state_changed_at) > cutoff => {
                    Err(format!("younger than keep_days = {keep_days}"))
                }
                _ => Ok(()),
            };
            (f.name.clone(), verdict)
        })
        .collect()
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
) -> Result<BinlogRetentionReport, String> {
    let files = catalog
        .list_files(source)
        .await
        .map_err(|e| format!("list the binlogs of {source}: {e}"))?;
    let objs = catalog
        .list_archive_objects(source)
        .await
        .map_err(|e| format!("list the archive objects of {source}: {e}"))?;
    let mut report = BinlogRetentionReport {
        keep_days,
        oldest_restorable: oldest.and_then(|p| {
            p.binlog_file
                .as_ref()
                .map(|f| format!("{f}:{}", p.binlog_pos.unwrap_or(4)))
        }),
        ..Default::default()
    };
    for (file, verdict) in decide(&files, keep_days, now, oldest) {
        if let Err(reason) = verdict {
            report.kept.push(Kept { file, reason });
            continue;
        }
        for o in objs.iter().filter(|o| o.file == file) {
            store
                .delete(&o.object_key)
                .await
                .map_err(|e| format!("delete {}: {e}", o.object_key))?;
        }
        for key in [
            objects::file_key(source, &file),
            objects::manifest_key(source, &file),
        ] {
            store
                .delete(&key)
                .await
                .map_err(|e| format!("delete {key}: {e}"))?;
        }
        if let Ok(chunks) = store.list(&objects::chunks_prefix(source, &file)).await {
            for (k, _) in chunks {
                store
                    .delete(&k)
                    .await
                    .map_err(|e| format!("delete {k}: {e}"))?;
            }
        }
        match std::fs::remove_file(dir.join(&file)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", dir.join(&file).display())),
        }
        catalog
            .forget_file(source, &file)
            .await
            .map_err(|e| format!("forget {file}: {e}"))?;
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
            seq: catalog::binlog_seq(name).map_or(-1, |s| s as i64),
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
            .filter(|(_, v)| v.is_ok())
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(deleted, vec!["mysql-bin.000008"]);
        assert!(d[1].1.as_ref().unwrap_err().contains("FAIL"));
        assert!(d[2].1.as_ref().unwrap_err().contains("younger"));
        // The base's own file and later ones are needed, however old.
        assert!(d[3]
            .1
            .as_ref()
            .unwrap_err()
            .contains("needed to restore from base b1"));
        assert!(d[4].1.is_err());
        // No restorable base: nothing goes, whatever keep_days says.
        assert!(decide(&files, 0, now, None).iter().all(|(_, v)| v.is_err()));
    }
}
