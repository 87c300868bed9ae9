//! python-mysql-replication (PyPI `mysql-replication`, installed by `scripts/setup.sh`)
//! run through `tests/clients/pyrepl_events.py`, for the clients suites.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use binlog_tests::{require_tool, run_bounded, SETUP_HINT};

/// How long a `blocking=False` read may take before it counts as "never ends" (a few
/// MB of binlogs take seconds).
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `tests/clients/pyrepl_events.py` (python-mysql-replication) against
/// 127.0.0.1:`port`: the events it read, one JSON line each. An error when the library is
/// missing (with the set-up command), when it fails, or when it does not end within
/// [`TIMEOUT`] (`blocking=False` must end at the end of the binlogs). `args` may start
/// with the script's options (`--mysql`, `--password=P`).
pub fn pyrepl(port: u16, server_id: u32, args: &[&str]) -> Result<Vec<serde_json::Value>> {
    let python = require_tool("python3");
    let probe = Command::new(&python)
        .args(["-c", "import pymysqlreplication"])
        .output()?;
    if !probe.status.success() {
        bail!("python-mysql-replication is missing: {SETUP_HINT}");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/pyrepl_events.py");
    let work = tempfile::tempdir()?;
    let out_path = work.path().join("events.jsonl");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg(port.to_string())
        .arg(server_id.to_string())
        .args(args)
        .stdout(std::fs::File::create(&out_path)?);
    run_bounded(
        &mut cmd,
        TIMEOUT,
        &format!("python-mysql-replication {args:?} (blocking=False) against port {port}"),
    )?;
    std::fs::read_to_string(&out_path)?
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("event line {l:?}")))
        .collect()
}
