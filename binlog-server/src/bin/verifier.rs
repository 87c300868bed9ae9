//! The `verifier` binary: runs [`binlog_server::verify_cli::main`].

fn main() -> std::process::ExitCode {
    binlog_server::verify_cli::main()
}
