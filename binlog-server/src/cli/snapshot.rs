//! The `snapshotter` command: one-off base backups, listing, restore and retention, on the
//! same TOML config, catalog and store as `binlog-server serve` (which runs the schedules).
//!
//! ```text
//! snapshotter take      --config FILE --source NAME [--method physical|logical|clone] [--incremental]
//! snapshotter list      --config FILE --source NAME
//! snapshotter restore   --config FILE --backup ID (--datadir DIR | --target mysql://...)
//! snapshotter retention --config FILE --source NAME
//! ```
//!
//! Exit status: 0 done (take: COMPLETED), 3 take SKIPPED (replica-only on a primary),
//! 1 failed (reason on stderr; a failed take leaves an ERROR row), 2 bad config or usage.

use snapshotter::BaseError;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use catalog::BackupState;
use clap::{Parser, Subcommand};
use snapshotter::restore::{chain, position_statements, restore_logical, restore_physical};
use snapshotter::{Method, Progress};

use crate::backups::BackupService;
use node::config::SourceUrl;

/// Base backups of the configured sources (see `binlog-server serve` for schedules).
#[derive(Debug, Parser)]
#[command(
    name = "snapshotter",
    version,
    about = "Base backups (physical, incremental, logical, clone) of the sources configured for binlog-server"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take one base now and wait for it; prints the catalog row as JSON.
    Take {
        /// TOML configuration file (shared with binlog-server).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Source name.
        #[arg(long)]
        source: String,
        /// Method (default: the source's `[source.backup] method`).
        #[arg(long)]
        method: Option<Method>,
        /// Incremental on top of the newest COMPLETED physical base.
        #[arg(long)]
        incremental: bool,
    },
    /// List the bases of a source as JSON (oldest first), with the oldest restorable point.
    List {
        /// TOML configuration file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Source name.
        #[arg(long)]
        source: String,
    },
    /// Restore a base: physical into an empty datadir (prepare, incrementals, move-back;
    /// then start mariadbd on it), logical into a running server.
    Restore {
        /// TOML configuration file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Base id (from `list`).
        #[arg(long)]
        backup: String,
        /// Physical: the empty (or absent) datadir to fill.
        #[arg(long)]
        datadir: Option<PathBuf>,
        /// Logical: the server to load into, `mysql://user:password@host:port`.
        #[arg(long)]
        target: Option<String>,
    },
    /// Apply retention now (keep_days / keep_min of the source); prints the report.
    Retention {
        /// TOML configuration file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Source name.
        #[arg(long)]
        source: String,
    },
}

/// Entry point of the `snapshotter` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    node::cli::init_tracing("warn");
    let config = match &cli.command {
        Command::Take { config, .. }
        | Command::List { config, .. }
        | Command::Restore { config, .. }
        | Command::Retention { config, .. } => config.clone(),
    };
    let settings = match node::cli::load_settings("snapshotter", &config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rt = match node::cli::runtime("snapshotter") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let catalog = match settings.open_catalog().await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                eprintln!("snapshotter: open the catalog: {e}");
                return ExitCode::FAILURE;
            }
        };
        let svc = match BackupService::open(&settings, catalog.clone(), false, None).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("snapshotter: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        match cli.command {
            Command::Take {
                source,
                method,
                incremental,
                ..
            } => take(&svc, &source, method, incremental).await,
            Command::List { source, .. } => {
                if svc.source(&source).is_none() {
                    eprintln!("snapshotter: no source named {source:?} in the config");
                    return ExitCode::from(2);
                }
                match svc.list(&source).await {
                    Ok((rows, oldest)) => {
                        print_json(&serde_json::json!({
                            "source": source,
                            "oldest_restorable": oldest,
                            "backups": rows,
                        }));
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("snapshotter: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Retention { source, .. } => match svc.retention(&source).await {
                Ok(r) => {
                    print_json(&r);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("snapshotter: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Restore {
                backup,
                datadir,
                target,
                ..
            } => restore(&svc, &backup, datadir, target).await,
        }
    })
}

fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("snapshotter: render JSON: {e}"),
    }
}

/// Prints `phase, bytes` to stderr every 2 s (when it changed) while `fut` runs.
async fn with_progress<F: std::future::Future>(progress: &Progress, fut: F) -> F::Output {
    tokio::pin!(fut);
    let mut last = String::new();
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                let line = format!(
                    "snapshotter: {} ({:.1} MiB)",
                    progress.phase(),
                    progress.bytes() as f64 / 1048576.0
                );
                if line != last {
                    eprintln!("{line}");
                    last = line;
                }
            }
        }
    }
}

async fn take(
    svc: &BackupService,
    source: &str,
    method: Option<Method>,
    incremental: bool,
) -> ExitCode {
    let progress = Progress::default();
    match with_progress(
        &progress,
        svc.take_now(source, method, incremental, &progress),
    )
    .await
    {
        Ok(row) => {
            print_json(&row);
            if row.state == BackupState::Skipped {
                eprintln!(
                    "snapshotter: skipped: {}",
                    row.info.as_deref().unwrap_or("(no reason recorded)")
                );
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            match &e.id {
                Some(id) => eprintln!("snapshotter: base {id} failed (recorded as ERROR): {e}"),
                None => eprintln!("snapshotter: {e}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn restore(
    svc: &BackupService,
    id: &str,
    datadir: Option<PathBuf>,
    target: Option<String>,
) -> ExitCode {
    let snap = svc.snapshotter();
    let bases = match chain(&snap.catalog, id).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("snapshotter: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(last) = bases.last().cloned() else {
        eprintln!("snapshotter: empty chain");
        return ExitCode::FAILURE;
    };
    let work = match tempfile::Builder::new()
        .prefix(&format!("restore-{id}-"))
        .tempdir_in(&snap.staging_dir)
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!(
                "snapshotter: create a work directory in {}: {e}",
                snap.staging_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let progress = Progress::default();
    let r = match (last.method.as_str(), datadir, target) {
        ("physical", Some(dir), None) => {
            with_progress(
                &progress,
                restore_physical(
                    &snap.store,
                    &snap.tools,
                    &bases,
                    &dir,
                    work.path(),
                    &progress,
                ),
            )
            .await
        }
        ("logical", None, Some(url)) => match SourceUrl::parse(&url) {
            Ok(u) => {
                with_progress(
                    &progress,
                    restore_logical(
                        &snap.store,
                        &snap.tools,
                        &last,
                        &node::config::tool_endpoint(&u),
                        work.path(),
                        4,
                        &progress,
                    ),
                )
                .await
            }
            Err(e) => Err(BaseError::Unusable(format!("--target: {e}"))),
        },
        ("physical", _, _) => Err(BaseError::Unusable(
            "a physical base is restored with --datadir DIR (empty or absent)".into(),
        )),
        ("logical", _, _) => Err(BaseError::Unusable(
            "a logical base is restored with --target mysql://user:password@host:port".into(),
        )),
        (m, _, _) => Err(BaseError::Unusable(format!(
            "restoring a {m} base is not supported by this command yet"
        ))),
    };
    match r {
        Ok(()) => {
            print_json(&serde_json::json!({
                "restored": last.id,
                "chain": bases.iter().map(|b| &b.id).collect::<Vec<_>>(),
                "binlog_file": last.binlog_file,
                "binlog_pos": last.binlog_pos,
                "gtid_pos": last.gtid_pos,
                "next_steps": position_statements(&last, true),
            }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("snapshotter: restore of {id} failed: {e}");
            ExitCode::FAILURE
        }
    }
}
