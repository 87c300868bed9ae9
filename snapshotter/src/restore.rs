//! Restoring a base: resolve its chain, then hand it to the method's restore
//! ([`physical::restore`], [`logical::restore`]).
//!
//! After the data is in place the restored server still has to be told where it stands:
//! [`position_statements`] gives the SQL (MariaDB: `gtid_slave_pos` for replication by
//! GTID, and `gtid_binlog_state` when the restored server writes a binlog, so its
//! `gtid_binlog_pos` continues from the base).

use crate::error::BaseError;
use std::collections::HashMap;

use catalog::{BackupRow, BackupState, Catalog};

use crate::{logical, physical};
use mysql_wire::quote;

/// The bases to apply, in order, to restore `id`: the full first, then each incremental
/// up to `id`. Every one must be COMPLETED.
///
/// # Errors
///
/// [`BaseError`] naming the missing or unusable base.
pub async fn chain(catalog: &Catalog, id: &str) -> Result<Vec<BackupRow>, BaseError> {
    let target = catalog
        .get_backup(id)
        .await
        .map_err(BaseError::catalog(format!("read base {id}")))?
        .ok_or_else(|| BaseError::NotInCatalog(id.to_owned()))?;
    let all: HashMap<String, BackupRow> = catalog
        .list_backups(&target.source)
        .await
        .map_err(BaseError::catalog(format!(
            "list the bases of {}",
            target.source
        )))?
        .into_iter()
        .map(|b| (b.id.clone(), b))
        .collect();
    let mut out = vec![target];
    for _ in 0..10_000 {
        let cur = out.last().ok_or(BaseError::EmptyChain)?;
        if cur.state != BackupState::Completed {
            return Err(BaseError::NotCompleted {
                id: cur.id.clone(),
                state: cur.state,
                info: cur.info.clone(),
            });
        }
        if !cur.incremental {
            out.reverse();
            return Ok(out);
        }
        let pid = cur
            .parent_id
            .clone()
            .ok_or_else(|| BaseError::NoParent(cur.id.clone()))?;
        let parent = all
            .get(&pid)
            .cloned()
            .ok_or_else(|| BaseError::ParentMissing {
                parent: pid.clone(),
                id: cur.id.clone(),
            })?;
        out.push(parent);
    }
    Err(BaseError::ChainDoesNotEnd(id.to_owned()))
}

/// SQL that records a restored MariaDB server's position (run as an administrator on the
/// restored server, with replication stopped): `gtid_slave_pos` always; with
/// `binlog_enabled`, also `RESET MASTER` and `gtid_binlog_state` so that the restored
/// server's `gtid_binlog_pos` equals the base's position. Empty when the base has no GTID.
/// The position is quoted with [`quote::literal`]: whatever the catalog holds stays one
/// string literal.
pub fn position_statements(base: &BackupRow, binlog_enabled: bool) -> Vec<String> {
    let Some(g) = base.gtid_pos.as_deref().filter(|g| !g.is_empty()) else {
        return Vec::new();
    };
    let q = quote::literal(g);
    let mut v = Vec::new();
    if binlog_enabled {
        v.push("RESET MASTER".to_string());
        v.push(format!("SET GLOBAL gtid_binlog_state = {q}"));
    }
    v.push(format!("SET GLOBAL gtid_slave_pos = {q}"));
    v
}

pub use logical::restore as restore_logical;
pub use physical::restore as restore_physical;

#[cfg(test)]
mod tests {
    use super::*;

    fn base(gtid: Option<&str>) -> BackupRow {
        BackupRow {
            id: "db1-1".into(),
            source: "db1".into(),
            method: "physical".into(),
            tool: "mariabackup".into(),
            incremental: false,
            parent_id: None,
            state: BackupState::Completed,
            info: None,
            started_at: 0,
            finished_at: Some(0),
            bytes: 1,
            binlog_file: None,
            binlog_pos: None,
            gtid_pos: gtid.map(Into::into),
            consistent_at: Some(0),
            from_lsn: None,
            to_lsn: None,
            server_version: None,
            tool_version: None,
            command: None,
            db_list: None,
            store_url: None,
            state_changed_at: 0,
            objects: vec![],
        }
    }

    #[test]
    fn position_statements_quote_the_gtid() {
        assert_eq!(
            position_statements(&base(Some("0-1-7,1-2-9")), true),
            vec![
                "RESET MASTER",
                "SET GLOBAL gtid_binlog_state = '0-1-7,1-2-9'",
                "SET GLOBAL gtid_slave_pos = '0-1-7,1-2-9'",
            ]
        );
        // A trailing backslash is escaped, so it cannot swallow the closing quote.
        assert_eq!(
            position_statements(&base(Some("0-1-7\\")), false),
            vec![r"SET GLOBAL gtid_slave_pos = '0-1-7\\'"]
        );
        assert!(position_statements(&base(Some("")), true).is_empty());
        assert!(position_statements(&base(None), true).is_empty());
    }
}
