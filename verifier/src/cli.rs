//! The `verifier` command: one-off restore verifications through the running
//! `binlog-server serve` (which owns the archive, the catalog and the schedules).
//!
//! ```text
//! verifier run  --config FILE --source NAME [--keep-instance]
//! verifier show --config FILE ID [--html]
//! verifier list --config FILE [--source NAME] [--days N]
//! ```
//!
//! `run` starts a verification, prints one line per phase change on stderr and the final
//! report (JSON) on stdout. Exit status: 0 passed; 1 failed (the reason and its position
//! on stderr); 3 nothing to verify (no base in the last week); 2 bad usage or config, or
//! a request the service refused (409 while a run of that source goes on).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use node::cli::{api_base, Client};

/// `verifier`'s requests: every 4xx (409 busy, 404) exits 2.
const CLIENT: Client = Client {
    prog: "verifier",
    on_422: 2,
};

/// Restore verification of the sources configured for binlog-server.
#[derive(Debug, Parser)]
#[command(
    name = "verifier",
    version,
    about = "Restore verification: restore the newest base of the week, replay the archive, chain to the primary, compare the data, report (through a running binlog-server)"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one verification now and wait for it; prints the report as JSON.
    Run {
        /// TOML configuration file (shared with binlog-server).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Source name.
        #[arg(long)]
        source: String,
        /// Keep the scratch instance after the run (default: `[source.verify]
        /// keep_instance`, else removed).
        #[arg(long)]
        keep_instance: bool,
    },
    /// Print one run's report (JSON, or the HTML page with --html).
    Show {
        /// TOML configuration file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Run id.
        id: String,
        /// The HTML page instead of JSON.
        #[arg(long)]
        html: bool,
    },
    /// List runs as JSON, newest first.
    List {
        /// TOML configuration file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// How many days back (default 30).
        #[arg(long)]
        days: Option<u32>,
    },
}

/// Entry point of the `verifier` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            source,
            keep_instance,
        } => run(&config, &source, keep_instance),
        Command::Show { config, id, html } => {
            let base = match api_base(&config) {
                Ok(b) => b,
                Err(c) => return c,
            };
            let path = if html {
                format!("{base}/v1/verifications/{id}.html")
            } else {
                format!("{base}/v1/verifications/{id}")
            };
            match CLIENT.request(&base, "GET", &path, None) {
                Ok(Value::String(page)) => {
                    println!("{page}");
                    ExitCode::SUCCESS
                }
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        Command::List {
            config,
            source,
            days,
        } => {
            let base = match api_base(&config) {
                Ok(b) => b,
                Err(c) => return c,
            };
            let mut path = format!("{base}/v1/verifications?days={}", days.unwrap_or(30));
            if let Some(s) = source {
                path.push_str(&format!("&source={s}"));
            }
            match CLIENT.request(&base, "GET", &path, None) {
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
    }
}

fn run(config: &std::path::Path, source: &str, keep: bool) -> ExitCode {
    let base = match api_base(config) {
        Ok(b) => b,
        Err(c) => return c,
    };
    let body = if keep {
        json!({"keep_instance": true})
    } else {
        json!({})
    };
    let v = match CLIENT.request(
        &base,
        "POST",
        &format!("{base}/v1/sources/{source}/verifications"),
        Some(&body),
    ) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let id = v["id"].as_str().unwrap_or_default().to_string();
    eprintln!("verification {id} of {source} started");
    let mut shown: Vec<String> = Vec::new();
    let report = loop {
        std::thread::sleep(Duration::from_millis(500));
        let r = match CLIENT.request(&base, "GET", &format!("{base}/v1/verifications/{id}"), None) {
            Ok(r) => r,
            Err(code) => return code,
        };
        for p in r["phases"].as_array().into_iter().flatten() {
            let line = format!(
                "  {:<20} {:<8} {:>8.1} s  {}",
                p["name"].as_str().unwrap_or("?"),
                p["outcome"].as_str().unwrap_or("?"),
                p["seconds"].as_f64().unwrap_or(0.0),
                p["detail"].as_str().unwrap_or("")
            );
            let key = format!("{}{}", p["name"], p["outcome"]);
            if p["outcome"] != "skipped" && !shown.contains(&key) {
                shown.push(key);
                eprintln!("{line}");
            }
        }
        if r["outcome"] != "running" {
            break r;
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    eprintln!("report: {base}/v1/verifications/{id}.html");
    match report["outcome"].as_str().unwrap_or_default() {
        "passed" => {
            eprintln!(
                "verification passed; RTO {:.1} s",
                report["rto_seconds"].as_f64().unwrap_or(0.0)
            );
            ExitCode::SUCCESS
        }
        "no_base" => {
            eprintln!(
                "verifier: {}",
                report["error"].as_str().unwrap_or("no base to verify")
            );
            ExitCode::from(3)
        }
        _ => {
            eprintln!(
                "verifier: verification {}: {}{}",
                report["outcome"].as_str().unwrap_or("?"),
                report["error"].as_str().unwrap_or("?"),
                report["error_position"]
                    .as_str()
                    .map(|p| format!(" at {p}"))
                    .unwrap_or_default()
            );
            ExitCode::FAILURE
        }
    }
}
