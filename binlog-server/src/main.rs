//! The `binlog-server` binary: parses the command line and runs [`binlog_server::cli::main`].

fn main() -> std::process::ExitCode {
    binlog_server::cli::main()
}
