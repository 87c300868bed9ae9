//! The command line: `binlog-server serve --config FILE`, `binlog-server check FILE...`,
//! `pitr`, `export`, `check-config`, and the other two binaries' commands.
//!
//! | module | its one job |
//! |---|---|
//! | this file | `binlog-server`'s sub-commands and their dispatch |
//! | [`archive`] | `binlog-server archive ls/get/decode`: the archive store by hand |
//! | [`security`] | `binlog-server token add` and `tls self-signed` |
//! | [`pitr`] | `binlog-server pitr` and `export` (through the service's API) |
//! | [`snapshot`] | the `snapshotter` binary (base backups on the shared config) |

pub mod archive;
pub mod fleet;
pub mod pitr;
pub mod security;
pub mod snapshot;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use binlog::check::{check_file, CheckOptions};
use node::cli::{init_tracing, load_settings, runtime};
use node::config::Config;

/// Binlog log-server: archives MySQL/MariaDB binlogs byte-identically as a fake replica.
#[derive(Debug, Parser)]
#[command(name = "binlog-server", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: capture every configured source and serve the HTTP API.
    Serve {
        /// TOML configuration file (see the README's config reference).
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// Check binlog files as the archive does (CRC32 of every event, contiguity, FDE
    /// first, ROTATE/STOP last) and print one line per file. Exit 1 if any is bad.
    Check {
        /// Do not require a ROTATE or STOP as the last event (for active files).
        #[arg(long)]
        allow_open: bool,
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Restore a source to a point in time (or GTID) through the running daemon, with a
    /// progress bar; prints the final report as JSON. Exit 0 done, 1 failed, 3 no plan.
    Pitr {
        /// TOML configuration file of the running daemon.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Source and target.
        #[command(flatten)]
        target: pitr::TargetArgs,
        /// Restore into an existing, empty instance: its administrator URL.
        #[arg(long = "target", conflicts_with = "scratch")]
        target_url: Option<String>,
        /// The existing instance's empty datadir (physical bases).
        #[arg(long, requires = "target_url")]
        datadir: Option<PathBuf>,
        /// Restore into a scratch mariadbd the daemon starts on a free port.
        #[arg(long)]
        scratch: bool,
        /// Print the plan only; change nothing.
        #[arg(long)]
        plan_only: bool,
    },
    /// Write the binlogs a PITR would replay (first one cut at the base's position, last
    /// one at the target) for `mariadb-binlog FILES | mariadb`; same plan as `pitr`.
    Export {
        /// TOML configuration file of the running daemon.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Source and target.
        #[command(flatten)]
        target: pitr::TargetArgs,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// The archive store by hand: list a source's binlogs, fetch one decoded and
    /// checked, or undo a codec (after `aws s3 cp`).
    Archive {
        /// What to do.
        #[command(subcommand)]
        cmd: archive::ArchiveCmd,
    },
    /// Rebuild a lost node from the archive store, offline (the service does the same
    /// by itself at start): for each source whose local binlogs and catalog rows are
    /// gone while the `[archive]` store holds its archive, recreate the catalog rows of
    /// its bases and binlogs from their manifests, the index from the files, and the
    /// active file's prefix from its chunks; then `serve` resumes capture there. Run
    /// it while the service is stopped (the index is locked otherwise).
    Rebuild {
        /// TOML configuration file (the same `[archive]` and `[backup]` stores).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
    },
    /// The nodes of a fleet and their leases: `fleet status`, `fleet drain --node ID`.
    Fleet {
        /// What to do.
        #[command(subcommand)]
        cmd: fleet::FleetCmd,
    },
    /// API tokens: `token add --file F --name N --role read|operate|admin`.
    Token {
        /// What to do.
        #[command(subcommand)]
        cmd: security::TokenCmd,
    },
    /// TLS material: `tls self-signed --cert F --key F [--name N]...`.
    Tls {
        /// What to do.
        #[command(subcommand)]
        cmd: security::TlsCmd,
    },
    /// Validate a configuration file and print the sources it defines (passwords
    /// redacted).
    CheckConfig {
        /// TOML configuration file.
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { allow_open, files } => check(allow_open, &files),
        Command::Pitr {
            config,
            target,
            target_url,
            datadir,
            scratch,
            plan_only,
        } => pitr::pitr(&config, &target, target_url, datadir, scratch, plan_only),
        Command::Export {
            config,
            target,
            out,
        } => pitr::export(&config, &target, &out),
        Command::Archive { cmd } => archive::run(cmd),
        Command::Fleet { cmd } => fleet::run(cmd),
        Command::Token { cmd } => security::token(cmd),
        Command::Tls { cmd } => security::tls(cmd),
        Command::Rebuild { config, source } => archive::rebuild(&config, source.as_deref()),
        Command::CheckConfig { config } => match Config::load(&config).and_then(|c| c.validate()) {
            Ok(s) => {
                println!("data_dir = {}", s.data_dir.display());
                println!("http.listen = {}", s.http_listen);
                for src in &s.sources {
                    println!(
                        "source {}: {} server_id={} start={:?}",
                        src.name,
                        src.url.redacted(),
                        src.server_id,
                        src.start
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("binlog-server: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `binlog-server serve`: loads the config, runs the service until SIGTERM or Ctrl-C.
fn serve(config: &std::path::Path) -> ExitCode {
    init_tracing("info");
    let settings = match load_settings("binlog-server", config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rt = match runtime("binlog-server") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
            c2.cancel();
        });
        match crate::server::run(settings, cancel).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("binlog-server: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `binlog-server check`: one line per file, SUCC or FAIL with the SHA-256 and the
/// check's findings; exit 1 when any is FAIL.
fn check(allow_open: bool, files: &[std::path::PathBuf]) -> ExitCode {
    let mut bad = false;
    for f in files {
        let opts = CheckOptions {
            require_terminal: !allow_open,
            expected_size: None,
            expected_format: None,
        };
        match check_file(f, &opts) {
            Ok(r) => {
                let verdict = if r.is_ok() { "SUCC" } else { "FAIL" };
                bad |= !r.is_ok();
                println!("{verdict}\t{}\t{}\t{}", f.display(), r.sha256_hex, r.info());
            }
            Err(e) => {
                bad = true;
                println!("FAIL\t{}\t-\tcannot read: {e}", f.display());
            }
        }
    }
    if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
