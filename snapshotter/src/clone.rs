//! Clone bases (seed 003): MySQL 8.0.17+'s clone plugin copies the whole instance with
//! `CLONE LOCAL DATA DIRECTORY = '<dir>'`; the consistency point is read from
//! `performance_schema.clone_status` (`BINLOG_FILE`, `BINLOG_POSITION`, `GTID_EXECUTED`).
//! Built to the MySQL 8.0 Reference Manual ("The Clone Plugin", "Cloning Data Locally",
//! "Monitoring Cloning Operations"); **untested against a live MySQL 8** (none can be
//! installed here). What is tested: the refusal on MariaDB, and the statements and state
//! flow against a stand-in that returns the documented rows.
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

use crate::sql::{version_triple, Sql};
use crate::take::{MethodOutput, Run};

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

pub(crate) async fn take<S: Sql>(run: &Run<'_>, sql: &mut S) -> Result<MethodOutput, String> {
    let v = &run.facts.version;
    if run.facts.mariadb {
        return Err(format!(
            "the clone method needs MySQL 8.0.17 or later (CLONE LOCAL DATA DIRECTORY); this \
             server is {v}, and MariaDB has no clone plugin: use method = \"physical\" \
             (mariabackup) instead"
        ));
    }
    if version_triple(v).is_none_or(|t| t < (8, 0, 17)) {
        return Err(format!(
            "the clone method needs MySQL 8.0.17 or later; this server is {v}: use method = \
             \"physical\" (xtrabackup)"
        ));
    }
    let status = sql
        .query("SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'clone'")
        .await
        .map_err(|e| format!("read the clone plugin's status: {e}"))?;
    if status.value() != Some("ACTIVE") {
        return Err(format!(
            "the clone plugin is not active (PLUGIN_STATUS = {:?}): run INSTALL PLUGIN clone \
             SONAME 'mysql_clone.so' on the server (or plugin-load-add=mysql_clone.so)",
            status.value()
        ));
    }
    let dir = run.workdir.join("clone");
    let dir_text = dir
        .to_str()
        .ok_or_else(|| format!("staging path {} is not UTF-8", dir.display()))?;
    run.progress.set_phase("cloning");
    sql.query(&format!(
        "CLONE LOCAL DATA DIRECTORY = {}",
        sql_string(dir_text)
    ))
    .await
    .map_err(|e| format!("CLONE LOCAL DATA DIRECTORY failed: {e}"))?;
    let st = sql
        .query(
            "SELECT STATE, ERROR_NO, ERROR_MESSAGE, BINLOG_FILE, BINLOG_POSITION, GTID_EXECUTED \
             FROM performance_schema.clone_status",
        )
        .await
        .map_err(|e| format!("read performance_schema.clone_status: {e}"))?;
    let state = st.get(0, "STATE").unwrap_or("");
    if state != "Completed" {
        return Err(format!(
            "clone ended in state {state:?}: error {} {}",
            st.get(0, "ERROR_NO").unwrap_or("?"),
            st.get(0, "ERROR_MESSAGE").unwrap_or("")
        ));
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
    let objects = run
        .snap
        .upload_dir(&dir, &run.key("clone"), run.progress)
        .await?;
    if objects.is_empty() {
        return Err(format!("the clone directory {} is empty", dir.display()));
    }
    Ok(MethodOutput {
        tool_version: Some(format!("clone plugin of {v}")),
        command: Some(format!(
            "CLONE LOCAL DATA DIRECTORY = {}",
            sql_string(dir_text)
        )),
        objects,
        result,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use catalog::{BackupState, Catalog};
    use object_store::memory::InMemory;

    use crate::config::{Method, SourceBackupConfig};
    use crate::sql::{Rows, Sql};
    use crate::take::{Progress, Snapshotter, TakeRequest};
    use crate::tool::{Endpoint, Tools};
    use crate::BaseStore;

    /// A stand-in MySQL 8 that answers with the rows the MySQL manual documents and, on
    /// CLONE LOCAL DATA DIRECTORY, writes a directory as the server would.
    struct StandIn {
        version: &'static str,
        read_only: &'static str,
        plugin: &'static str,
        clone_state: &'static str,
        statements: Vec<String>,
    }

    fn rows(cols: &[&str], vals: &[&str]) -> Rows {
        Rows {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            rows: vec![vals.iter().map(|v| Some(v.to_string())).collect()],
        }
    }

    impl Sql for StandIn {
        async fn query(&mut self, sql: &str) -> Result<Rows, String> {
            self.statements.push(sql.to_owned());
            if sql.starts_with("SELECT VERSION()") {
                Ok(rows(
                    &["v", "ro", "d"],
                    &[self.version, self.read_only, "/var/lib/mysql/"],
                ))
            } else if sql.contains("information_schema.PLUGINS") {
                Ok(rows(&["PLUGIN_STATUS"], &[self.plugin]))
            } else if let Some(dir) = sql.strip_prefix("CLONE LOCAL DATA DIRECTORY = '") {
                let dir = dir.trim_end_matches('\'');
                std::fs::create_dir_all(format!("{dir}/mysql")).map_err(|e| e.to_string())?;
                std::fs::write(format!("{dir}/ibdata1"), vec![7u8; 70_000])
                    .map_err(|e| e.to_string())?;
                std::fs::write(format!("{dir}/mysql/mysql.ibd"), b"dictionary")
                    .map_err(|e| e.to_string())?;
                Ok(Rows::default())
            } else if sql.contains("performance_schema.clone_status") {
                Ok(rows(
                    &[
                        "STATE",
                        "ERROR_NO",
                        "ERROR_MESSAGE",
                        "BINLOG_FILE",
                        "BINLOG_POSITION",
                        "GTID_EXECUTED",
                    ],
                    &[
                        self.clone_state,
                        "0",
                        "",
                        "binlog.000007",
                        "1234",
                        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77",
                    ],
                ))
            } else {
                Err(format!("stand-in: unexpected statement {sql}"))
            }
        }
    }

    async fn setup() -> (Snapshotter, tempfile::TempDir) {
        let staging = tempfile::tempdir().unwrap();
        let catalog = Arc::new(Catalog::open("sqlite::memory:").await.unwrap());
        let store = BaseStore::from_object_store(Arc::new(InMemory::new()), "memory://", 5 << 20);
        (
            Snapshotter {
                catalog,
                store,
                staging_dir: staging.path().to_owned(),
                tools: Tools::default(),
            },
            staging,
        )
    }

    fn request(replica_only: bool) -> TakeRequest {
        let cfg = SourceBackupConfig {
            method: Method::Clone,
            replica_only,
            ..Default::default()
        };
        TakeRequest {
            source: "m8".into(),
            endpoint: Endpoint {
                host: "127.0.0.1".into(),
                port: 3306,
                user: "backup".into(),
                password: Some("pw".into()),
                tls: None,
            },
            settings: cfg.validate("source[0].backup").unwrap(),
            method: Method::Clone,
            incremental: false,
        }
    }

    fn stand_in(version: &'static str) -> StandIn {
        StandIn {
            version,
            read_only: "1",
            plugin: "ACTIVE",
            clone_state: "Completed",
            statements: Vec::new(),
        }
    }

    #[tokio::test]
    async fn clone_flow_against_documented_rows() {
        let (snap, staging) = setup().await;
        let mut sql = stand_in("8.0.36");
        let row = snap
            .take(&request(false), "m8-1", Ok(&mut sql), &Progress::default())
            .await
            .unwrap();
        assert_eq!(row.state, BackupState::Completed);
        assert_eq!(row.tool, "clone");
        assert_eq!(row.binlog_file.as_deref(), Some("binlog.000007"));
        assert_eq!(row.binlog_pos, Some(1234));
        assert_eq!(
            row.gtid_pos.as_deref(),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77")
        );
        let keys: Vec<&str> = row.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "m8/m8-1/clone/ibdata1",
                "m8/m8-1/clone/mysql/mysql.ibd",
                "m8/m8-1/manifest.json"
            ]
        );
        assert_eq!(row.bytes, row.objects.iter().map(|o| o.bytes).sum::<u64>());
        // The statements, in order; the directory is inside the staging area.
        assert_eq!(sql.statements.len(), 4, "{:?}", sql.statements);
        assert!(sql.statements[2].starts_with(&format!(
            "CLONE LOCAL DATA DIRECTORY = '{}",
            staging.path().join("m8-1").display()
        )));
        // The work directory is gone.
        assert!(!staging.path().join("m8-1").exists());
    }

    #[tokio::test]
    async fn clone_refusals_and_failures_end_in_error() {
        let (snap, _staging) = setup().await;
        for (i, (mut sql, needle)) in [
            (
                stand_in("10.11.19-MariaDB-log"),
                "MariaDB has no clone plugin",
            ),
            (stand_in("8.0.16"), "8.0.17 or later"),
            (
                StandIn {
                    plugin: "DISABLED",
                    ..stand_in("8.0.36")
                },
                "INSTALL PLUGIN clone",
            ),
            (
                StandIn {
                    clone_state: "Failed",
                    ..stand_in("8.0.36")
                },
                "clone ended in state \"Failed\"",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("m8-err-{i}");
            let e = snap
                .take(&request(false), &id, Ok(&mut sql), &Progress::default())
                .await
                .unwrap_err();
            assert!(e.message.contains(needle), "{}", e.message);
            let row = snap.catalog.get_backup(&id).await.unwrap().unwrap();
            assert_eq!(row.state, BackupState::Error);
            assert!(row.info.unwrap_or_default().contains(needle));
            assert!(row.objects.is_empty());
        }
        // Nothing was left in the store.
        assert!(snap.store.list("m8").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn replica_only_skips_a_primary() {
        let (snap, _staging) = setup().await;
        let mut sql = StandIn {
            read_only: "0",
            ..stand_in("8.0.36")
        };
        let row = snap
            .take(
                &request(true),
                "m8-skip",
                Ok(&mut sql),
                &Progress::default(),
            )
            .await
            .unwrap();
        assert_eq!(row.state, BackupState::Skipped);
        assert!(row.info.unwrap_or_default().contains("read_only=OFF"));
        assert_eq!(sql.statements.len(), 1, "nothing but the facts query ran");
    }
}
