//! The `verifier` binary: runs [`binlog_server::cli::verify::main`].

fn main() -> std::process::ExitCode {
    binlog_server::cli::verify::main()
}
