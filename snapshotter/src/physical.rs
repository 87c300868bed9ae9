//! Physical bases: `mariabackup` (MariaDB) or `xtrabackup` (MySQL, Percona), full or
//! incremental, streamed (`--stream=mbstream` / `xbstream`) straight into the object store
//! as one object, so the backup never needs local space. Prepare happens on restore.
//!
//! The tool also writes `xtrabackup_checkpoints` and `xtrabackup_info` into
//! `--extra-lsndir` (a local directory): the end LSN (`to_lsn`, the next incremental's
//! `--incremental-lsn`) and the consistency point (`binlog_pos = filename '...',
//! position '...', GTID of the last change '...'`) are read from there, and both files are
//! stored as objects too.
//!
//! Restore ([`restore`]): each base of the chain (full, then its incrementals in order)
//! is streamed from the store through `mbstream -x` into its own directory (SHA-256
//! checked on the way), the full is prepared, each incremental applied with
//! `--prepare --incremental-dir`, and the result moved into the empty target datadir
//! with `--move-back`.

use std::path::{Path, PathBuf};

use catalog::{BackupResult, BackupRow};

use crate::error::BaseError;
use crate::method::{MethodOutput, Progress, Run};
use crate::tool::{self, Tools};
use objstore::store::{Store, StoredObject};

/// Object name of the stream inside a base.
pub const STREAM_OBJECT: &str = "backup.mbstream";

pub(crate) async fn take(run: &Run<'_>) -> Result<MethodOutput, BaseError> {
    let tools = run.tools;
    let (name, format) = if run.facts.mariadb {
        ("mariabackup", "mbstream")
    } else {
        ("xtrabackup", "xbstream")
    };
    let program = tools.find(name)?;
    let lsndir = run.workdir.join("lsn");
    let tmpdir = run.workdir.join("tmp");
    for d in [&lsndir, &tmpdir] {
        std::fs::create_dir_all(d).map_err(BaseError::io("create", d))?;
    }
    let mut args = vec![
        format!("--defaults-extra-file={}", run.defaults_file.display()),
        "--backup".to_string(),
        format!("--stream={format}"),
        format!("--target-dir={}", tmpdir.display()),
        format!("--extra-lsndir={}", lsndir.display()),
        format!("--parallel={}", run.settings.threads),
    ];
    if !run.facts.datadir.is_empty() {
        args.push(format!("--datadir={}", run.facts.datadir));
    }
    if let Some(lsn) = run.from_lsn {
        args.push(format!("--incremental-lsn={lsn}"));
    }
    let command = tool::redact(&program, &args);
    run.progress.set_phase(&format!("streaming {name}"));
    let (tool_run, stdout) = tool::spawn_streaming(&program, name, &args)?;
    let key = run.key(STREAM_OBJECT);
    let upload = run
        .store
        .put_stream(&key, stdout, &run.progress.bytes)
        .await;
    // A failed upload kills the tool: its error, not the tool's, is the cause.
    let finished = tool_run.finish(upload.is_err()).await;
    let stream_obj = upload.map_err(BaseError::store(format!("upload the {name} stream")))?;
    finished?;
    run.mark_uploading().await?;
    run.progress.set_phase("uploading metadata");
    let (meta, result) = read_and_upload_meta(run, &lsndir).await?;
    let mut objects = vec![stream_obj];
    objects.extend(meta);
    Ok(MethodOutput {
        tool_version: tool::version(&program).await,
        command: Some(command),
        objects,
        result,
    })
}

/// Reads the end LSN and the consistency point from `xtrabackup_checkpoints` and
/// `xtrabackup_info` in `lsndir`, and stores both files as `meta/<name>` objects.
async fn read_and_upload_meta(
    run: &Run<'_>,
    lsndir: &Path,
) -> Result<(Vec<StoredObject>, BackupResult), BaseError> {
    let checkpoints = read(&lsndir.join("xtrabackup_checkpoints"))?;
    let info = read(&lsndir.join("xtrabackup_info"))?;
    let to_lsn = kv(&checkpoints, "to_lsn").and_then(|v| v.parse().ok());
    let (binlog_file, binlog_pos, gtid_pos) = kv(&info, "binlog_pos")
        .map(|v| parse_binlog_pos(&v))
        .unwrap_or_default();
    let mut objects = Vec::new();
    for f in ["xtrabackup_checkpoints", "xtrabackup_info"] {
        objects.push(
            run.store
                .put_file(
                    &run.key(&format!("meta/{f}")),
                    &lsndir.join(f),
                    &run.progress.bytes,
                )
                .await?,
        );
    }
    let result = BackupResult {
        binlog_file,
        binlog_pos,
        gtid_pos,
        consistent_at: None,
        to_lsn,
        objects: Vec::new(),
    };
    Ok((objects, result))
}

fn read(p: &Path) -> Result<String, BaseError> {
    std::fs::read_to_string(p).map_err(BaseError::io("read", p))
}

/// Value of `key = value` in an xtrabackup metadata file.
pub fn kv(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// Parses `filename 'mysql-bin.000001', position '1385', GTID of the last change
/// '0-1-7'` (xtrabackup_info's `binlog_pos`; the GTID part may be missing or span
/// several comma-separated GTIDs).
pub fn parse_binlog_pos(v: &str) -> (Option<String>, Option<u64>, Option<String>) {
    let quoted_after = |label: &str| -> Option<String> {
        let i = v.find(label)? + label.len();
        let rest = v.get(i..)?;
        let start = rest.find('\'')? + 1;
        let end = rest.get(start..)?.find('\'')? + start;
        rest.get(start..end).map(str::to_owned)
    };
    let file = quoted_after("filename").filter(|s| !s.is_empty());
    let pos = quoted_after("position").and_then(|p| p.parse().ok());
    let gtid = quoted_after("GTID of the last change")
        .map(|g| g.replace(['\n', ' '], ""))
        .filter(|s| !s.is_empty());
    (file, pos, gtid)
}

/// Restores a chain of physical bases (full first, then its incrementals in order) into
/// `datadir`, which must not exist or be empty. `workdir` is scratch space (removed by
/// the caller); it needs about the size of the full base plus each incremental.
///
/// # Errors
///
/// [`BaseError`]: the step (extract, prepare, apply, move-back) with the tool's output
/// tail, a missing object, a non-empty datadir.
pub async fn restore(
    store: &Store,
    tools: &Tools,
    chain: &[BackupRow],
    datadir: &Path,
    workdir: &Path,
    progress: &Progress,
) -> Result<(), BaseError> {
    let first = chain.first().ok_or(BaseError::EmptyChain)?;
    if first.incremental {
        return Err(BaseError::Unusable(format!(
            "base {} is an incremental: a chain starts with a full base",
            first.id
        )));
    }
    let tool_name = if first.tool == "xtrabackup" {
        "xtrabackup"
    } else {
        "mariabackup"
    };
    let stream_name = if tool_name == "xtrabackup" {
        "xbstream"
    } else {
        "mbstream"
    };
    let program = tools.find(tool_name)?;
    let extractor = tools.find(stream_name)?;
    if datadir.exists()
        && std::fs::read_dir(datadir)
            .map_err(BaseError::io("read", datadir))?
            .next()
            .is_some()
    {
        return Err(BaseError::DatadirNotEmpty(datadir.to_owned()));
    }
    let dirs = extract_chain(store, &extractor, chain, workdir, progress).await?;
    let full = dirs.first().ok_or(BaseError::EmptyChain)?;
    progress.set_phase("preparing the full base");
    tool::run(
        &program,
        &[
            "--prepare".into(),
            format!("--target-dir={}", full.display()),
        ],
        None,
    )
    .await
    .map_err(BaseError::tool(format!("prepare {}", first.id)))?;
    for (dir, base) in dirs.iter().zip(chain).skip(1) {
        progress.set_phase(&format!("applying incremental {}", base.id));
        tool::run(
            &program,
            &[
                "--prepare".into(),
                format!("--target-dir={}", full.display()),
                format!("--incremental-dir={}", dir.display()),
            ],
            None,
        )
        .await
        .map_err(BaseError::tool(format!("apply incremental {}", base.id)))?;
    }
    progress.set_phase("moving files into the datadir");
    std::fs::create_dir_all(datadir).map_err(BaseError::io("create", datadir))?;
    tool::run(
        &program,
        &[
            "--move-back".into(),
            format!("--target-dir={}", full.display()),
            format!("--datadir={}", datadir.display()),
        ],
        None,
    )
    .await
    .map_err(BaseError::tool(format!(
        "move-back into {}",
        datadir.display()
    )))?;
    Ok(())
}

/// Streams each base's [`STREAM_OBJECT`] through `extractor -x` into its own directory
/// `<workdir>/<i>-<id>`; returns the directories in chain order.
async fn extract_chain(
    store: &Store,
    extractor: &Path,
    chain: &[BackupRow],
    workdir: &Path,
    progress: &Progress,
) -> Result<Vec<PathBuf>, BaseError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (i, base) in chain.iter().enumerate() {
        let obj = base
            .objects
            .iter()
            .find(|o| {
                objstore::store::split_codec_suffix(&o.key)
                    .1
                    .ends_with(&format!("/{STREAM_OBJECT}"))
            })
            .ok_or_else(|| BaseError::MissingObject {
                base: base.id.clone(),
                object: STREAM_OBJECT,
            })?;
        let dir = workdir.join(format!("{i:03}-{}", base.id));
        std::fs::create_dir_all(&dir).map_err(BaseError::io("create", &dir))?;
        progress.set_phase(&format!("downloading and extracting {}", base.id));
        tool::run_fed(
            store,
            obj,
            extractor,
            &["-x".into(), "-C".into(), dir.display().to_string()],
            &progress.bytes,
        )
        .await
        .map_err(BaseError::tool(format!("extract {}", base.id)))?;
        dirs.push(dir);
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xtrabackup_info() {
        let info = "tool_name = mariabackup\nbinlog_pos = filename 'mysql-bin.000001', position '1385', GTID of the last change '0-1-7'\ninnodb_to_lsn = 44404\n";
        let v = kv(info, "binlog_pos").unwrap();
        assert_eq!(
            parse_binlog_pos(&v),
            (
                Some("mysql-bin.000001".into()),
                Some(1385),
                Some("0-1-7".into())
            )
        );
        assert_eq!(
            kv("from_lsn = 0\nto_lsn = 44404\n", "to_lsn").as_deref(),
            Some("44404")
        );
        // No GTID (binlog without GTIDs) and MySQL's multi-GTID form.
        assert_eq!(
            parse_binlog_pos("filename 'binlog.000002', position '157'"),
            (Some("binlog.000002".into()), Some(157), None)
        );
        assert_eq!(
            parse_binlog_pos(
                "filename 'b.1', position '9', GTID of the last change 'u1:1-5,\nu2:1-3'"
            )
            .2,
            Some("u1:1-5,u2:1-3".into())
        );
    }
}
