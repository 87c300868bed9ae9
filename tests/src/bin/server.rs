fn main() -> std::process::ExitCode {
    binlog_server::cli::main()
}
