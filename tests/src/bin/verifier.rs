//! `verifier` built for the integration tests (`CARGO_BIN_EXE_verifier-under-test`).

fn main() -> std::process::ExitCode {
    verifier::cli::main()
}
