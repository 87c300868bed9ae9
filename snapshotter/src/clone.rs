//! Clone bases (seed 003): MySQL 8.0.17+'s clone plugin copies the whole instance with
//! `CLONE LOCAL DATA DIRECTORY = '<dir>'`; the consistency point is read from
//! `performance_schema.clone_status` (`BINLOG_FILE`, `BINLOG_POSITION`, `GTID_EXECUTED`).
//! Built to the MySQL 8.0 Reference Manual ("The Clone Plugin", "Cloning Data Locally",
//! "Monitoring Cloning Operations"); **untested against a live MySQL 8** (none can be
//! installed here). What is tested (in `take`'s tests, as they drive the whole flow): the
//! refusal on MariaDB, and the statements and state flow against a stand-in that returns
//! the documented rows.
//!
//! Flow:
//! 1. refuse MariaDB (no clone plugin) and MySQL before 8.0.17;
//! 2. `SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'clone'`
//!    must be `ACTIVE` (else: `INSTALL PLUGIN clone SONAME 'mysql_clone.so'`);
//! 3. `CLONE LOCAL DATA DIRECTORY = '<staging>/<id>/clone'` — the directory is written by
//!    the server, so the snapshotter must run on the server's host with a staging
//!    directory mysqld can write (the account needs BACKUP_ADMIN);
//! 4. `SELECT STATE, ERROR_NO, ERROR_MESSAGE, BINLOG_FILE, BINLOG_POSITION, GTID_EXECUTED
//!    FROM performance_schema.clone_status` must say `Completed`;
//! 5. every file of the cloned directory is uploaded as `<source>/<id>/clone/<path>`.
//!
//! Restore: download the files into an empty datadir and start mysqld on it (a cloned
//! directory is already consistent, no prepare step).

use catalog::BackupResult;

use crate::error::BaseError;
use crate::method::{MethodOutput, Run};
use crate::sql::{run_query, version_triple, Sql};
use mysql_wire::quote;

pub(crate) async fn take<S: Sql>(run: &Run<'_>, sql: &mut S) -> Result<MethodOutput, BaseError> {
    let v = &run.facts.version;
    if run.facts.mariadb {
        return Err(BaseError::Unusable(format!(
            "the clone method needs MySQL 8.0.17 or later (CLONE LOCAL DATA DIRECTORY); this \
             server is {v}, and MariaDB has no clone plugin: use method = \"physical\" \
             (mariabackup) instead"
        )));
    }
    if version_triple(v).is_none_or(|t| t < (8, 0, 17)) {
        return Err(BaseError::Unusable(format!(
            "the clone method needs MySQL 8.0.17 or later; this server is {v}: use method = \
             \"physical\" (xtrabackup)"
        )));
    }
    let status = run_query(
        sql,
        "read the clone plugin's status",
        "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'clone'",
    )
    .await?;
    if status.value() != Some("ACTIVE") {
        return Err(BaseError::Unusable(format!(
            "the clone plugin is not active (PLUGIN_STATUS = {:?}): run INSTALL PLUGIN clone \
             SONAME 'mysql_clone.so' on the server (or plugin-load-add=mysql_clone.so)",
            status.value()
        )));
    }
    let dir = run.workdir.join("clone");
    let dir_text = dir.to_str().ok_or_else(|| {
        BaseError::Unusable(format!("staging path {} is not UTF-8", dir.display()))
    })?;
    let clone_statement = format!("CLONE LOCAL DATA DIRECTORY = {}", quote::literal(dir_text));
    run.progress.set_phase("cloning");
    run_query(sql, "CLONE LOCAL DATA DIRECTORY failed", &clone_statement).await?;
    let st = run_query(
        sql,
        "read performance_schema.clone_status",
        "SELECT STATE, ERROR_NO, ERROR_MESSAGE, BINLOG_FILE, BINLOG_POSITION, GTID_EXECUTED \
         FROM performance_schema.clone_status",
    )
    .await?;
    let state = st.get(0, "STATE").unwrap_or("");
    if state != "Completed" {
        return Err(BaseError::Unusable(format!(
            "clone ended in state {state:?}: error {} {}",
            st.get(0, "ERROR_NO").unwrap_or("?"),
            st.get(0, "ERROR_MESSAGE").unwrap_or("")
        )));
    }
    let result = BackupResult {
        binlog_file: st
            .get(0, "BINLOG_FILE")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        binlog_pos: st.get(0, "BINLOG_POSITION").and_then(|p| p.parse().ok()),
        gtid_pos: st
            .get(0, "GTID_EXECUTED")
            .map(|g| g.replace(['\n', ' '], ""))
            .filter(|g| !g.is_empty()),
        ..Default::default()
    };
    run.mark_uploading().await?;
    run.progress.set_phase("uploading the clone");
    let objects = run.upload_dir(&dir, &run.key("clone")).await?;
    if objects.is_empty() {
        return Err(BaseError::Unusable(format!(
            "the clone directory {} is empty",
            dir.display()
        )));
    }
    Ok(MethodOutput {
        tool_version: Some(format!("clone plugin of {v}")),
        command: Some(clone_statement),
        objects,
        result,
    })
}
