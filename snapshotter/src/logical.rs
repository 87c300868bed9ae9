//! Logical bases.
//!
//! - **mydumper** (default when installed): a consistent snapshot (FTWRL held only until
//!   every thread has started its `START TRANSACTION WITH CONSISTENT SNAPSHOT`, longer only
//!   while non-transactional tables are dumped), the selected databases by `--regex`,
//!   routines, events and triggers, into `<staging>/<id>/dump/`, then each file uploaded as
//!   `<source>/<id>/mydumper/<file>`. The consistency point comes from its `metadata` file
//!   (`SHOW MASTER STATUS:` `Log:`, `Pos:`, `GTID:`). Needs staging space for the dump.
//! - **mysqldump / mariadb-dump** `--single-transaction --master-data=2 --gtid`: one
//!   stream, uploaded as `dump.sql` while it is written (no staging space). The
//!   consistency point is read from the stream's comments on the way
//!   (`-- CHANGE MASTER TO MASTER_LOG_FILE=..., MASTER_LOG_POS=...;`, MariaDB's
//!   `-- SET GLOBAL gtid_slave_pos='...';`, MySQL's `SET @@GLOBAL.GTID_PURGED=...`), and
//!   the final `-- Dump completed` line must be there.
//!
//! Restore ([`restore`]) loads into a running server: `myloader -d DIR -o` or
//! `mariadb < dump.sql`, both without writing the target's binlog for the loaded data
//! (myloader's default; `SET sql_log_bin=0` for the client).

use std::path::Path;

use catalog::{BackupResult, BackupRow};
use objstore::store::StoredObject;
use tokio::io::{AsyncRead, ReadBuf};

use crate::error::BaseError;
use crate::method::{MethodOutput, Progress, Run};
use crate::tool::{self, write_defaults_file, Endpoint, Tools};
use objstore::store::Store;

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(crate) async fn take_mydumper(run: &Run<'_>) -> Result<MethodOutput, BaseError> {
    let program = run.tools.find("mydumper")?;
    let dump = run.workdir.join("dump");
    std::fs::create_dir_all(&dump).map_err(BaseError::io("create", &dump))?;
    let regex = format!(
        "^({})\\.",
        run.databases
            .iter()
            .map(|d| regex_escape(d))
            .collect::<Vec<_>>()
            .join("|")
    );
    let args = vec![
        format!("--defaults-file={}", run.defaults_file.display()),
        format!("--outputdir={}", dump.display()),
        format!("--regex={regex}"),
        format!("--threads={}", run.settings.threads),
        "--routines".into(),
        "--events".into(),
        "--triggers".into(),
        "--verbose=2".into(),
    ];
    run.progress.set_phase("dumping with mydumper");
    tool::run(&program, &args, None)
        .await
        .map_err(BaseError::tool("mydumper failed"))?;
    let meta_path = dump.join("metadata");
    let meta = std::fs::read_to_string(&meta_path).map_err(BaseError::io(
        "mydumper wrote no metadata file: read",
        meta_path,
    ))?;
    let (binlog_file, binlog_pos, gtid_pos) = parse_mydumper_metadata(&meta);
    run.mark_uploading().await?;
    run.progress.set_phase("uploading the dump");
    let objects = run.upload_dir(&dump, &run.key("mydumper")).await?;
    Ok(MethodOutput {
        tool_version: tool::version(&program).await,
        command: Some(tool::redact(&program, &args)),
        objects,
        result: BackupResult {
            binlog_file,
            binlog_pos,
            gtid_pos,
            ..Default::default()
        },
    })
}

/// Parses mydumper's `metadata`: the 0.10 form below, or 0.12+'s INI form (`[source]` or
/// `[master]` with `File =`, `Position =`, `Executed_Gtid_Set =`):
///
/// ```text
/// SHOW MASTER STATUS:
///     Log: mysql-bin.000001
///     Pos: 1385
///     GTID:0-1-7
/// ```
pub fn parse_mydumper_metadata(text: &str) -> (Option<String>, Option<u64>, Option<String>) {
    let mut in_master = false;
    let (mut file, mut pos, mut gtid) = (None, None, None);
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("SHOW MASTER STATUS")
            || t.starts_with("SHOW BINARY LOG STATUS")
            || t == "[master]"
            || t == "[source]"
        {
            in_master = true;
            continue;
        }
        if t.starts_with("SHOW SLAVE STATUS")
            || t.starts_with("Finished dump")
            || t.starts_with('[')
        {
            in_master = false;
        }
        if !in_master {
            continue;
        }
        if let Some(v) = t.strip_prefix("Log:") {
            file = Some(v.trim().to_owned()).filter(|s| !s.is_empty());
        } else if let Some(v) = t.strip_prefix("Pos:") {
            pos = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("GTID:") {
            gtid = Some(v.trim().to_owned()).filter(|s| !s.is_empty());
        } else if let Some((k, v)) = t.split_once('=') {
            // mydumper 0.12+ writes an INI file: [source] File = / Position = /
            // Executed_Gtid_Set =.
            let v = v.trim().trim_matches('\'').to_owned();
            match k.trim() {
                "File" => file = Some(v).filter(|s| !s.is_empty()),
                "Position" => pos = v.parse().ok(),
                "Executed_Gtid_Set" => {
                    gtid = Some(v.replace(['\n', ' '], "")).filter(|s| !s.is_empty())
                }
                _ => {}
            }
        }
    }
    (file, pos, gtid)
}

pub(crate) async fn take_mysqldump(run: &Run<'_>) -> Result<MethodOutput, BaseError> {
    let program = run.tools.find("mysqldump")?;
    let mut args = vec![
        format!("--defaults-extra-file={}", run.defaults_file.display()),
        "--single-transaction".to_string(),
        "--routines".into(),
        "--events".into(),
        "--triggers".into(),
        "--hex-blob".into(),
    ];
    if run.facts.mariadb {
        args.push("--master-data=2".into());
        args.push("--gtid".into());
    } else {
        args.push("--source-data=2".into());
        args.push("--set-gtid-purged=COMMENTED".into());
    }
    args.push("--databases".into());
    args.extend(run.databases.iter().cloned());
    run.progress.set_phase("streaming mysqldump");
    let name = program.display().to_string();
    let (tool_run, stdout) = tool::spawn_streaming(&program, &name, &args)?;
    let mut scanner = ScanReader::new(stdout);
    let upload = run
        .store
        .put_stream(&run.key("dump.sql"), &mut scanner, &run.progress.bytes)
        .await;
    // A failed upload kills the tool: its error, not the tool's, is the cause.
    let finished = tool_run.finish(upload.is_err()).await;
    let obj = upload.map_err(BaseError::store("upload the dump"))?;
    finished?;
    run.mark_uploading().await?;
    let s = scanner.scan;
    if !s.completed {
        return Err(BaseError::Unusable(
            "the dump has no final \"-- Dump completed\" line: it is truncated".into(),
        ));
    }
    Ok(MethodOutput {
        tool_version: tool::version(&program).await,
        command: Some(tool::redact(&program, &args)),
        objects: vec![obj],
        result: BackupResult {
            binlog_file: s.binlog_file,
            binlog_pos: s.binlog_pos,
            gtid_pos: s.gtid,
            ..Default::default()
        },
    })
}

/// What [`DumpScan`] found in a mysqldump stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpScan {
    /// `MASTER_LOG_FILE` / `SOURCE_LOG_FILE`.
    pub binlog_file: Option<String>,
    /// `MASTER_LOG_POS` / `SOURCE_LOG_POS`.
    pub binlog_pos: Option<u64>,
    /// `gtid_slave_pos` (MariaDB) or `GTID_PURGED` (MySQL).
    pub gtid: Option<String>,
    /// The `-- Dump completed` trailer was seen.
    pub completed: bool,
    line: Vec<u8>,
}

/// Longest line prefix kept for inspection (bytes); data lines are far longer and are
/// not looked at beyond this.
const SCAN_LINE_MAX: usize = 1024;

impl DumpScan {
    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push(data.get(..i).unwrap_or_default());
                    let line = std::mem::take(&mut self.line);
                    self.inspect(&line);
                    data = data.get(i + 1..).unwrap_or_default();
                }
                None => {
                    self.push(data);
                    data = &[];
                }
            }
        }
    }

    fn push(&mut self, part: &[u8]) {
        let room = SCAN_LINE_MAX.saturating_sub(self.line.len());
        self.line
            .extend_from_slice(part.get(..room.min(part.len())).unwrap_or_default());
    }

    fn inspect(&mut self, line: &[u8]) {
        let Ok(l) = std::str::from_utf8(line) else {
            return;
        };
        if !(l.starts_with("--") || l.contains("GTID_PURGED")) {
            return;
        }
        let quoted = |s: &str| -> Option<String> {
            let a = s.find('\'')? + 1;
            let b = s.get(a..)?.find('\'')? + a;
            s.get(a..b).map(str::to_owned)
        };
        if l.starts_with("-- Dump completed") {
            self.completed = true;
        } else if let Some(i) = l.find("_LOG_FILE=") {
            if l.contains("CHANGE MASTER TO") || l.contains("CHANGE REPLICATION SOURCE TO") {
                self.binlog_file = l.get(i..).and_then(quoted);
                if let Some(j) = l.find("_LOG_POS=") {
                    let digits: String = l
                        .get(j + "_LOG_POS=".len()..)
                        .unwrap_or_default()
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    self.binlog_pos = digits.parse().ok();
                }
            }
        } else if l.starts_with("-- SET GLOBAL gtid_slave_pos=") {
            self.gtid = quoted(l).filter(|g| !g.is_empty());
        } else if let Some(i) = l.find("GTID_PURGED=") {
            // MySQL: SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'uuid:1-5';
            let rest = l.get(i..).unwrap_or_default();
            let last = rest.rfind('\'');
            let first = last.and_then(|e| rest.get(..e)?.rfind('\''));
            if let (Some(a), Some(b)) = (first, last) {
                self.gtid = rest
                    .get(a + 1..b)
                    .map(str::to_owned)
                    .filter(|g| !g.is_empty() && g != "+");
            }
        }
    }
}

/// An `AsyncRead` that feeds a [`DumpScan`] with everything it passes on.
struct ScanReader<R> {
    inner: R,
    scan: DumpScan,
}

impl<R> ScanReader<R> {
    fn new(inner: R) -> Self {
        ScanReader {
            inner,
            scan: DumpScan::default(),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ScanReader<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &r {
            this.scan
                .feed(buf.filled().get(before..).unwrap_or_default());
        }
        r
    }
}

/// Loads a logical base into the running server at `target` (an account allowed to
/// create the databases). `workdir` is scratch space for a mydumper base's files.
///
/// # Errors
///
/// [`BaseError`]: the step with the tool's output tail, a missing object, or a base not
/// made by a logical tool.
pub async fn restore(
    store: &Store,
    tools: &Tools,
    base: &BackupRow,
    target: &Endpoint,
    workdir: &Path,
    threads: u32,
    progress: &Progress,
) -> Result<(), BaseError> {
    std::fs::create_dir_all(workdir).map_err(BaseError::io("create", workdir))?;
    let cnf = workdir.join("target.cnf");
    let _ = std::fs::remove_file(&cnf);
    write_defaults_file(target, &cnf)?;
    match base.tool.as_str() {
        "mydumper" => {
            let program = tools.find("myloader")?;
            let dir = workdir.join("dump");
            std::fs::create_dir_all(&dir).map_err(BaseError::io("create", &dir))?;
            let prefix = format!("{}/{}/mydumper/", base.source, base.id);
            progress.set_phase("downloading the dump");
            for obj in &base.objects {
                // The name mydumper wrote (without the codec suffix of an encoded object).
                let (_, plain) = objstore::store::split_codec_suffix(&obj.key);
                let Some(rel) = plain.strip_prefix(&prefix) else {
                    continue;
                };
                if rel.contains("..") || rel.starts_with('/') {
                    return Err(BaseError::Unusable(format!(
                        "object key {} escapes the dump directory",
                        obj.key
                    )));
                }
                download(store, obj, &dir.join(rel), progress).await?;
            }
            progress.set_phase("loading with myloader");
            let mut args = vec![
                format!("--defaults-file={}", cnf.display()),
                format!("--directory={}", dir.display()),
                format!("--threads={threads}"),
                "--overwrite-tables".into(),
                "--verbose=2".into(),
            ];
            if target.host.starts_with('/') {
                // myloader 0.10 reads user and password from the defaults file but not
                // the socket.
                args.push(format!("--socket={}", target.host));
            }
            tool::run(&program, &args, None)
                .await
                .map_err(BaseError::tool("myloader failed"))
        }
        "mysqldump" => {
            let program = tools.find("mysql")?;
            let obj = base
                .objects
                .iter()
                .find(|o| {
                    objstore::store::split_codec_suffix(&o.key)
                        .1
                        .ends_with("/dump.sql")
                })
                .ok_or_else(|| BaseError::MissingObject {
                    base: base.id.clone(),
                    object: "dump.sql",
                })?;
            progress.set_phase("loading dump.sql");
            tool::run_fed(
                store,
                obj,
                &program,
                &[
                    format!("--defaults-extra-file={}", cnf.display()),
                    "--init-command=SET sql_log_bin=0".into(),
                ],
                &progress.bytes,
            )
            .await
            .map_err(BaseError::tool("loading dump.sql failed"))
        }
        other => Err(BaseError::Unusable(format!(
            "base {} was made by {other}, not a logical tool",
            base.id
        ))),
    }
}

async fn download(
    store: &Store,
    obj: &StoredObject,
    dest: &Path,
    progress: &Progress,
) -> Result<(), BaseError> {
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(BaseError::io("create", parent))?;
    }
    let mut f = tokio::fs::File::create(dest)
        .await
        .map_err(BaseError::io("create", dest))?;
    Ok(store.get_to(obj, &mut f, &progress.bytes).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mydumper_metadata() {
        let m = "Started dump at: 2026-11-21 15:27:21\nSHOW MASTER STATUS:\n\tLog: mysql-bin.000001\n\tPos: 1385\n\tGTID:0-1-7\n\nFinished dump at: 2026-11-21 15:27:21\n";
        assert_eq!(
            parse_mydumper_metadata(m),
            (
                Some("mysql-bin.000001".into()),
                Some(1385),
                Some("0-1-7".into())
            )
        );
        assert_eq!(parse_mydumper_metadata("garbage"), (None, None, None));
        let ini = "[config]\nquote_character = BACKTICK\n\n[source]\n# Channel_Name = ''\nFile = mysql-bin.000004\nPosition = 2201\nExecuted_Gtid_Set = 0-1-90\n\n[`test`.`t`]\nreal_table_name=t\n";
        assert_eq!(
            parse_mydumper_metadata(ini),
            (
                Some("mysql-bin.000004".into()),
                Some(2201),
                Some("0-1-90".into())
            )
        );
    }

    #[test]
    fn dump_scan_mariadb_in_odd_chunks() {
        let text = "-- MariaDB dump 10.19\n-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000001', MASTER_LOG_POS=1385;\nINSERT INTO t VALUES (1,'-- SET GLOBAL gtid_slave_pos=''x''');\n-- SET GLOBAL gtid_slave_pos='0-1-7';\n-- Dump completed on 2026-11-21 15:27:25\n";
        for chunk in [1usize, 3, 7, 1000] {
            let mut s = DumpScan::default();
            for c in text.as_bytes().chunks(chunk) {
                s.feed(c);
            }
            assert_eq!(s.binlog_file.as_deref(), Some("mysql-bin.000001"));
            assert_eq!(s.binlog_pos, Some(1385));
            assert_eq!(s.gtid.as_deref(), Some("0-1-7"));
            assert!(s.completed);
        }
    }

    #[test]
    fn dump_scan_mysql() {
        let mut s = DumpScan::default();
        s.feed(b"-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000002', SOURCE_LOG_POS=157;\n/* SET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ '3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5'; */\n-- Dump completed\n");
        assert_eq!(s.binlog_file.as_deref(), Some("binlog.000002"));
        assert_eq!(s.binlog_pos, Some(157));
        assert_eq!(
            s.gtid.as_deref(),
            Some("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5")
        );
        let mut t = DumpScan::default();
        t.feed(b"-- MariaDB dump\nCREATE TABLE x (a int);\n");
        assert!(!t.completed);
    }

    #[test]
    fn regex_escaping() {
        assert_eq!(regex_escape("a.b$c"), "a\\.b\\$c");
    }
}
