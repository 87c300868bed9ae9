//! `binlog-server fleet status|drain`: the nodes of a fleet and their leases, read and
//! changed in the shared catalog directly (no running node is needed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use node::cli::{load_settings, runtime};

/// `binlog-server fleet ...`.
#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// Print every node (last heartbeat, draining) and every source's lease (owner,
    /// epoch, time left), as the catalog holds them; times on the catalog's clock.
    Status {
        /// TOML configuration file (its `[catalog]`).
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// Drain a node for maintenance: at its next lease round it releases every lease
    /// and takes none, and the other nodes take its sources over. `--undo` ends the
    /// drain.
    Drain {
        /// TOML configuration file (its `[catalog]`).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The node's `[node] id`.
        #[arg(long)]
        node: String,
        /// Let the node take leases again.
        #[arg(long)]
        undo: bool,
    },
}

/// Runs a `fleet` sub-command. Exit 0 done, 1 catalog error, 2 bad config or unknown
/// node.
pub fn run(cmd: FleetCmd) -> ExitCode {
    match cmd {
        FleetCmd::Status { config } => with_catalog(&config, |cat| async move {
            print_status(&cat).await.map(|()| ExitCode::SUCCESS)
        }),
        FleetCmd::Drain { config, node, undo } => with_catalog(&config, |cat| async move {
            if cat.set_node_draining(&node, !undo).await? {
                println!(
                    "node {node}: {}",
                    if undo {
                        "drain ended; it takes leases again"
                    } else {
                        "draining; it hands its sources to the other nodes at its next lease round"
                    }
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("binlog-server fleet drain: no node {node:?} ever ran on this catalog");
                Ok(ExitCode::from(2))
            }
        }),
    }
}

/// Opens the config's catalog and runs `f` on it.
fn with_catalog<F, Fut>(config: &Path, f: F) -> ExitCode
where
    F: FnOnce(catalog::Catalog) -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode, catalog::CatalogError>>,
{
    let s = match load_settings("binlog-server fleet", config) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let rt = match runtime("binlog-server fleet") {
        Ok(rt) => rt,
        Err(c) => return c,
    };
    rt.block_on(async {
        let run = async { f(s.open_catalog().await?).await };
        match run.await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("binlog-server fleet: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// One line per node, then one per lease.
async fn print_status(cat: &catalog::Catalog) -> Result<(), catalog::CatalogError> {
    let (now, nodes) = cat.list_nodes().await?;
    let (_, leases) = cat.list_leases().await?;
    println!("node\tadvertise\tlast heartbeat\tstate\tleases");
    for n in &nodes {
        let held = leases.iter().filter(|l| l.is_held_by(&n.id, now)).count();
        println!(
            "{}\t{}\t{:.1}s ago\t{}\t{held}",
            n.id,
            n.advertise,
            now.saturating_sub(n.heartbeat_ms) as f64 / 1000.0,
            if n.is_draining() {
                "draining"
            } else {
                "active"
            }
        );
    }
    println!("source\towner\tepoch\texpires in\tprevious owner");
    for l in &leases {
        let owner = match (l.live_owner(now), &l.owner) {
            (Some(o), _) => o,
            (None, Some(_)) => "(expired)",
            (None, None) => "(free)",
        };
        println!(
            "{}\t{owner}\t{}\t{:.1}s\t{}",
            l.source,
            l.epoch,
            l.expires_in_ms(now) as f64 / 1000.0,
            l.previous_owner.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
