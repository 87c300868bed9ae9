//! Capture assertions shared by the end-to-end tests: [`assert_archive_identical`]
//! compares the archived binlogs byte for byte with the primary's, ignoring the
//! IN_USE flag at [`IN_USE_FLAG_OFFSET`].

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::mariadb::MariaDb;
use super::tools::sha256_file;

/// File offset of the low byte of the first FORMAT_DESCRIPTION's flags: the
/// LOG_EVENT_BINLOG_IN_USE_F bit the primary sets in its active (or crash-closed) file
/// and clears in the copy it streams.
pub const IN_USE_FLAG_OFFSET: usize = 4 + 17;

/// Compares the archive with the primary's binlogs: every closed primary file (all but
/// the last listed) must have the same SHA-256 as the stored one; the primary's active
/// file must start with the stored file's bytes (the IN_USE flag byte excepted).
/// Returns the number of closed files compared.
pub fn assert_archive_identical(db: &MariaDb, archive: &Path) -> Result<usize> {
    let files = db.binlog_files()?;
    let Some(((active, _), closed)) = files.split_last() else {
        bail!("the primary lists no binlogs");
    };
    for (name, _) in closed {
        let ours = archive.join(name);
        let theirs = db.binlog_path(name);
        let a = sha256_file(&ours).with_context(|| format!("archived {name}"))?;
        let b = sha256_file(&theirs).with_context(|| format!("primary's {name}"))?;
        if a != b {
            let x = fs::read(&ours)?;
            let y = fs::read(&theirs)?;
            let first = x.iter().zip(y.iter()).position(|(p, q)| p != q);
            bail!(
                "{name} differs: archive {} bytes sha {a}, primary {} bytes sha {b}, first difference at {first:?}",
                x.len(),
                y.len()
            );
        }
    }
    let ours =
        fs::read(archive.join(active)).with_context(|| format!("archived active {active}"))?;
    let mut theirs = fs::read(db.binlog_path(active))?;
    if ours.len() > theirs.len() {
        bail!(
            "archived {active} ({} bytes) is longer than the primary's ({})",
            ours.len(),
            theirs.len()
        );
    }
    theirs.truncate(ours.len());
    let mut ours = ours;
    for v in [&mut ours, &mut theirs] {
        if let Some(b) = v.get_mut(IN_USE_FLAG_OFFSET) {
            *b &= !1;
        }
    }
    if ours != theirs {
        let first = ours.iter().zip(theirs.iter()).position(|(p, q)| p != q);
        bail!("archived active {active} is not a prefix of the primary's: first difference at {first:?}");
    }
    Ok(closed.len())
}
