//! `snapshotter` built for the integration tests (`CARGO_BIN_EXE_snapshotter-under-test`).

fn main() -> std::process::ExitCode {
    binlog_server::cli::snapshot::main()
}
