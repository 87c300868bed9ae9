//! The `verifier` binary: runs [`verifier::cli::main`].

fn main() -> std::process::ExitCode {
    verifier::cli::main()
}
