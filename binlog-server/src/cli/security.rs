//! `binlog-server token add` (an API token and its tokens-file line) and `binlog-server
//! tls self-signed` (a certificate and key for the API and the fake primary).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use node::tokens::{file_line, new_token, Role, Tokens};

/// `binlog-server token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Make a new random token, append its hash to the tokens file (created with mode
    /// 0600 if missing) and print the token once on stdout. The running service sees
    /// it within a second.
    Add {
        /// The `[http] tokens_file`.
        #[arg(long)]
        file: PathBuf,
        /// The caller's name (logged with each state-changing call).
        #[arg(long)]
        name: String,
        /// read, operate or admin.
        #[arg(long)]
        role: Role,
        /// Limit the token to these sources (comma-separated, e.g. `--sources db1,db2`):
        /// it reaches only their routes and sees only them in the list.
        #[arg(long, value_delimiter = ',')]
        sources: Vec<String>,
    },
}

/// `binlog-server tls ...`.
#[derive(Debug, Subcommand)]
pub enum TlsCmd {
    /// Write a self-signed certificate (PEM) and its private key (PEM, mode 0600) for
    /// localhost, 127.0.0.1, ::1 and the given names: for `[http] tls_cert`/`tls_key`
    /// and `[source.replication] tls_cert`/`tls_key`. Clients trust the certificate
    /// file itself (curl --cacert, MASTER_SSL_CA).
    SelfSigned {
        /// Certificate file to write.
        #[arg(long)]
        cert: PathBuf,
        /// Private key file to write.
        #[arg(long)]
        key: PathBuf,
        /// More DNS names or IP addresses for the certificate.
        #[arg(long = "name")]
        names: Vec<String>,
    },
}

fn write_private(path: &Path, text: &str, append: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Runs a `token` sub-command.
pub fn token(cmd: TokenCmd) -> ExitCode {
    match cmd {
        TokenCmd::Add {
            file,
            name,
            role,
            sources,
        } => {
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '#') {
                eprintln!("binlog-server: --name must be one word without '#'");
                return ExitCode::from(2);
            }
            let bad_source = |n: &String| {
                n.is_empty() || n.contains(|c: char| c.is_whitespace() || "\"\\#,".contains(c))
            };
            if sources.iter().any(bad_source) {
                eprintln!("binlog-server: --sources takes source names separated by commas");
                return ExitCode::from(2);
            }
            let limit = if sources.is_empty() {
                String::new()
            } else {
                let quoted: Vec<String> = sources.iter().map(|n| format!("\"{n}\"")).collect();
                format!(" sources = [{}]", quoted.join(", "))
            };
            if let Ok(existing) = std::fs::read_to_string(&file) {
                let probe = format!("{}{limit}", file_line(role, &name, "probe"));
                if let Err(e) = Tokens::parse(&format!("{existing}\n{probe}")) {
                    eprintln!("binlog-server: {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            }
            let token = match new_token() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("binlog-server: random source: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let line = format!("{}{limit}\n", file_line(role, &name, &token));
            if let Err(e) = write_private(&file, &line, true) {
                eprintln!("binlog-server: write {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
            println!("{token}");
            ExitCode::SUCCESS
        }
    }
}

/// Runs a `tls` sub-command.
pub fn tls(cmd: TlsCmd) -> ExitCode {
    match cmd {
        TlsCmd::SelfSigned { cert, key, names } => {
            let mut all = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
            all.extend(names);
            let made = rcgen::generate_simple_self_signed(all);
            let made = match made {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("binlog-server: make the certificate: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Err(e) = write_private(&key, &made.key_pair.serialize_pem(), false) {
                eprintln!("binlog-server: write {}: {e}", key.display());
                return ExitCode::FAILURE;
            }
            if let Err(e) = std::fs::write(&cert, made.cert.pem()) {
                eprintln!("binlog-server: write {}: {e}", cert.display());
                return ExitCode::FAILURE;
            }
            println!("{}", cert.display());
            ExitCode::SUCCESS
        }
    }
}
