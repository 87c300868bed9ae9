//! The `snapshotter` binary: runs [`binlog_server::cli::snapshot::main`].

fn main() -> std::process::ExitCode {
    binlog_server::cli::snapshot::main()
}
