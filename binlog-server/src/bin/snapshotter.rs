//! The `snapshotter` binary: runs [`binlog_server::snapshot_cli::main`].

fn main() -> std::process::ExitCode {
    binlog_server::snapshot_cli::main()
}
