//! `binlog-server pitr` and `binlog-server export`: the command-line twins of the PITR
//! API. Both talk to the running daemon (`[http] listen` of the config): the daemon owns
//! the index (RocksDB allows one process) and the fake primary. `export` then copies the
//! binlogs itself from `<data_dir>/<source>/`.
//!
//! Exit status: 0 done, 1 failed (the reason on stderr), 2 bad arguments or config,
//! 3 no plan (the reason on stderr).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use node::cli::{api_base, load_settings, Api, Client};

/// `binlog-server`'s requests: 422 (no plan) exits 3.
const CLIENT: Client = Client {
    prog: "binlog-server",
    on_422: 3,
};
use binlog::{EventHeader, HEADER_LEN};

/// Where the target is.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Source name.
    #[arg(long)]
    pub source: String,
    /// Target time: "2026-11-21 14:03:27" (UTC), RFC 3339 with a zone, or @unixtime.
    #[arg(long, conflicts_with = "gtid", required_unless_present = "gtid")]
    pub to: Option<String>,
    /// Target GTID (restores up to and including it).
    #[arg(long)]
    pub gtid: Option<String>,
    /// Base to start from (default: the newest before the target).
    #[arg(long = "from-base")]
    pub from_base: Option<String>,
}

impl TargetArgs {
    fn body(&self) -> Value {
        let mut b = match (&self.to, &self.gtid) {
            (Some(t), _) => json!({ "target_time": t }),
            (None, Some(g)) => json!({ "target_gtid": g }),
            _ => json!({}),
        };
        if let Some(id) = &self.from_base {
            b["base_id"] = json!(id);
        }
        b
    }
}

/// `binlog-server pitr`: plans, starts the job, shows a progress bar, prints the final
/// report (JSON) on stdout.
pub fn pitr(
    config: &Path,
    t: &TargetArgs,
    target_url: Option<String>,
    datadir: Option<PathBuf>,
    scratch: bool,
    plan_only: bool,
) -> ExitCode {
    let base = match api_base(config) {
        Ok(b) => b,
        Err(c) => return c,
    };
    let mut body = t.body();
    let path = if plan_only {
        format!("{base}/v1/sources/{}/pitr/plan", t.source)
    } else {
        match (&target_url, scratch) {
            (Some(u), false) => {
                body["url"] = json!(u);
                if let Some(d) = &datadir {
                    body["datadir"] = json!(d.display().to_string());
                }
            }
            (None, true) => body["scratch"] = json!(true),
            _ => {
                eprintln!("binlog-server: give --scratch, or --target URL (with --datadir DIR for a physical base)");
                return ExitCode::from(2);
            }
        }
        format!("{base}/v1/sources/{}/pitr", t.source)
    };
    let v = match CLIENT.request(&base, "POST", &path, Some(&body)) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if plan_only {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let report = match follow_job(&base, &v) {
        Ok(r) => r,
        Err(code) => return code,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    print_outcome(&report)
}

/// Follows a started job (the POST's answer `started`) with a progress bar until it is
/// done or failed: its final report. Err: the exit code after an error was printed.
fn follow_job(base: &Api, started: &Value) -> Result<Value, ExitCode> {
    let id = started["id"].as_str().unwrap_or_default().to_string();
    let planned = started["plan"]["bytes"].as_u64().unwrap_or(0);
    eprintln!(
        "PITR job {id}: base {} then {} transactions ({planned} bytes of binlog) to {}",
        started["plan"]["base"]["id"].as_str().unwrap_or("?"),
        started["plan"]["transactions"],
        started["plan"]["target"].as_str().unwrap_or("?")
    );
    let bar = indicatif::ProgressBar::new(planned.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let j = CLIENT
            .request(base, "GET", &format!("{base}/v1/pitr/{id}"), None)
            .inspect_err(|_| bar.abandon())?;
        let p = &j["progress"];
        bar.set_position(p["bytes_applied"].as_u64().unwrap_or(0));
        bar.set_message(format!(
            "{}: {} {}/{} txns{}",
            j["phase"].as_str().unwrap_or(""),
            j["step"].as_str().unwrap_or(""),
            p["transactions_applied"],
            p["transactions_planned"],
            p["eta_seconds"]
                .as_f64()
                .map(|s| format!(", ETA {s:.0} s"))
                .unwrap_or_default()
        ));
        let phase = j["phase"].as_str().unwrap_or_default();
        if phase == "done" || phase == "failed" {
            bar.finish_and_clear();
            return Ok(j);
        }
    }
}

/// Prints where the instance was restored (done) or why the job failed; the exit code.
fn print_outcome(report: &Value) -> ExitCode {
    if report["phase"] == "done" {
        eprintln!(
            "restored to {}: {} (socket {}, datadir {})",
            report["plan"]["target"].as_str().unwrap_or("?"),
            report["restored"]["address"].as_str().unwrap_or("?"),
            report["restored"]["socket"].as_str().unwrap_or("-"),
            report["restored"]["datadir"].as_str().unwrap_or("-"),
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "binlog-server: PITR failed: {}{}",
            report["error"].as_str().unwrap_or("?"),
            report["error_position"]
                .as_str()
                .map(|p| format!(" at {p}"))
                .unwrap_or_default()
        );
        ExitCode::FAILURE
    }
}

/// `binlog-server export`: writes the binlogs of the plan's range into `out`, the first
/// cut to start at the base's position (magic + FORMAT_DESCRIPTION + the events from
/// there) and the last cut at the stop point, for `mariadb-binlog FILES | mariadb`.
pub fn export(config: &Path, t: &TargetArgs, out: &Path) -> ExitCode {
    let settings = match load_settings("binlog-server", config) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let base = match api_base(config) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let plan = match CLIENT.request(
        &base,
        "POST",
        &format!("{base}/v1/sources/{}/pitr/plan", t.source),
        Some(&t.body()),
    ) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let dir = settings.data_dir.join(&t.source);
    let locate = |name: &str| locate_binlog(&settings, &t.source, &dir, name);
    match write_export(&locate, &plan, out) {
        Ok(files) => {
            let summary = json!({
                "source": t.source,
                "base": plan["base"],
                "target": plan["target"],
                "stop": plan["stop"],
                "end_gtid": plan["end_gtid"],
                "transactions": plan["transactions"],
                "files": files,
                "replay": format!(
                    "restore base {} first (snapshotter restore), then: mariadb-binlog --skip-gtid-strict-mode {} | mariadb (the first file starts at the base, so its GTID state looks incomplete to strict mode)",
                    plan["base"]["id"].as_str().unwrap_or("?"),
                    files.iter().map(|f| out.join(f).display().to_string()).collect::<Vec<_>>().join(" ")
                ),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&summary).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("binlog-server: export: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why `binlog-server export` could not write the plan's files; the command prints it
/// and exits 1.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    /// A local file could not be opened, read or written.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// "open", "read", "create", "write".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No async runtime for the store.
    #[error("start a runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The archive store could not be opened.
    #[error(transparent)]
    Store(#[from] Box<objstore::store::StoreError>),
    /// An evicted file could not be read back from the archive store.
    #[error(
        "{name} is not on this node's disk and cannot be read from the archive store: {source}"
    )]
    NotInStore {
        /// The binlog file.
        name: String,
        /// The store tier's error.
        #[source]
        source: Box<archive::fetch::FetchError>,
    },
    /// The plan names a file that is not a plain binlog file name.
    #[error("unsafe file name {0:?} in the plan")]
    UnsafeName(String),
    /// A file's FORMAT_DESCRIPTION header does not parse.
    #[error("{name}: {source}")]
    Event {
        /// The binlog file.
        name: String,
        /// The parser's error.
        #[source]
        source: binlog::EventError,
    },
    /// A file's FORMAT_DESCRIPTION runs past its end.
    #[error("{0}: FORMAT_DESCRIPTION runs past the file's end")]
    FdePastEnd(String),
}

/// An [`ExportError::Io`] for `what` on `path`, for `map_err`.
fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ExportError {
    let path = path.to_owned();
    move |source| ExportError::Io { what, path, source }
}

/// Where binlog `name` of `source` is: the local file, the cached copy, or (evicted) a
/// checked copy fetched from the archive store into the cache now.
fn locate_binlog(
    settings: &node::config::Settings,
    source: &str,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, ExportError> {
    let local = dir.join(name);
    if local.exists() || !settings.archive.enabled {
        return Ok(local);
    }
    let cdir = settings.archive.cache_dir.join(source);
    let cached = cdir.join(name);
    if cached.exists() {
        return Ok(cached);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ExportError::Runtime)?;
    rt.block_on(async {
        // A timeline's file (`tl<N>/<name>`) is cached in its own directory.
        let cdir = cached.parent().unwrap_or(&cdir);
        std::fs::create_dir_all(cdir).map_err(io("create", cdir))?;
        let store = objstore::store::Store::open(&settings.archive.store).map_err(Box::new)?;
        archive::fetch::fetch_file(
            &store,
            settings.archive.keyring.clone(),
            source,
            name,
            &cached,
            archive::fetch::Flush::Fsync,
        )
        .await
        .map_err(|e| ExportError::NotInStore {
            name: name.to_owned(),
            source: Box::new(e),
        })
    })?;
    Ok(cached)
}

fn write_export(
    locate: &dyn Fn(&str) -> Result<PathBuf, ExportError>,
    plan: &Value,
    out: &Path,
) -> Result<Vec<String>, ExportError> {
    std::fs::create_dir_all(out).map_err(io("create", out))?;
    let files: Vec<String> = plan["files"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let bfile = plan["base"]["binlog_file"].as_str().unwrap_or_default();
    let bpos = plan["base"]["binlog_pos"].as_u64().unwrap_or(4);
    let sfile = plan["stop"]["file"].as_str().unwrap_or_default();
    let spos = plan["stop"]["pos"].as_u64().unwrap_or(0);
    // Across a failover switch, the new timeline's first file repeats history the
    // earlier one holds: it is cut to start at its first new transaction.
    let crossed = |name: &str| {
        plan["crossings"].as_array().and_then(|a| {
            a.iter()
                .find(|c| c["file"].as_str() == Some(name))
                .and_then(|c| c["from"].as_u64())
        })
    };
    let mut written = Vec::new();
    for name in &files {
        if !archive::local::is_safe_stored_name(name) {
            return Err(ExportError::UnsafeName(name.clone()));
        }
        let src = locate(name)?;
        let end_of = |size: u64| if name == sfile { spos.min(size) } else { size };
        let from = match crossed(name) {
            _ if name == bfile => bpos,
            Some(from) => from,
            None => 4,
        };
        let dst = out.join(name);
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d).map_err(io("create", d))?;
        }
        export_file(name, &src, &dst, from, end_of)?;
        written.push(name.clone());
    }
    Ok(written)
}

/// Writes `dst`: `src`'s magic and FORMAT_DESCRIPTION (in-use flag cleared: the copy is
/// a closed file), then its bytes from `from` to `end_of(size)`.
fn export_file(
    name: &str,
    src: &Path,
    dst: &Path,
    from: u64,
    end_of: impl Fn(u64) -> u64,
) -> Result<(), ExportError> {
    let mut f = std::fs::File::open(src).map_err(io("open", src))?;
    let size = f.metadata().map_err(io("read", src))?.len();
    let end = end_of(size);
    let mut head = [0u8; 4 + HEADER_LEN];
    f.read_exact(&mut head).map_err(io("read", src))?;
    let h = EventHeader::parse(&head[4..]).map_err(|source| ExportError::Event {
        name: name.to_owned(),
        source,
    })?;
    let fde_end = 4 + u64::from(h.event_size);
    if fde_end > size {
        return Err(ExportError::FdePastEnd(name.to_owned()));
    }
    let mut fde = vec![0u8; fde_end as usize];
    f.seek(SeekFrom::Start(0)).map_err(io("read", src))?;
    f.read_exact(&mut fde).map_err(io("read", src))?;
    if let Some(flags) = fde.get_mut(4 + 17) {
        *flags &= !(binlog::LOG_EVENT_BINLOG_IN_USE_F as u8);
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(dst).map_err(io("create", dst))?);
    w.write_all(&fde).map_err(io("write", dst))?;
    let from = from.max(fde_end);
    if end > from {
        f.seek(SeekFrom::Start(from)).map_err(io("read", src))?;
        std::io::copy(&mut (&mut f).take(end - from), &mut w).map_err(io("write", dst))?;
    }
    w.flush().map_err(io("write", dst))?;
    Ok(())
}
