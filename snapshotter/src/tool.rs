//! Running the external backup tools (mariabackup/xtrabackup, mbstream/xbstream,
//! mydumper/myloader, mariadb-dump/mysqldump, the mariadb/mysql client).
//!
//! Passwords never appear on a command line (where `ps` shows them) or in a log: each run
//! gets a defaults file, mode 0600, in its work directory, removed with it, passed as the
//! tool's first option (`--defaults-extra-file=` or mydumper's `--defaults-file=`). The
//! recorded command line is therefore free of secrets; [`redact`] is applied anyway.

use crate::error::{DefaultsFileError, ToolError};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// Where and as whom the tools connect.
#[derive(Clone, Default)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Password (never printed).
    pub password: Option<String>,
    /// TLS: `None` = off; `Some(None)` = TLS without CA check; `Some(Some(ca))` = verify.
    pub tls: Option<Option<PathBuf>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}@{}:{}",
            self.user,
            if self.password.is_some() { ":***" } else { "" },
            self.host,
            self.port
        )
    }
}

/// Tool names that can be given a path in `[backup.tools]`.
pub const TOOL_NAMES: [&str; 10] = [
    "mariabackup",
    "xtrabackup",
    "mbstream",
    "xbstream",
    "mydumper",
    "myloader",
    "mysqldump",
    "mysql",
    "mariadbd",
    "mariadb-install-db",
];

/// Resolves tools: an explicit path from `[backup.tools]`, else the first of the
/// candidate names found in `PATH` (and `/usr/sbin`, `/usr/bin`).
#[derive(Debug, Clone, Default)]
pub struct Tools {
    /// Explicit paths by tool name.
    pub paths: BTreeMap<String, PathBuf>,
}

impl Tools {
    /// The path of `name` (one of [`TOOL_NAMES`]).
    ///
    /// # Errors
    ///
    /// [`ToolError::NotExecutable`], [`ToolError::Unknown`], or
    /// [`ToolError::NotInstalled`] naming where it was looked for and the package.
    pub fn find(&self, name: &str) -> Result<PathBuf, ToolError> {
        if let Some(p) = self.paths.get(name) {
            if is_executable(p) {
                return Ok(p.clone());
            }
            return Err(ToolError::NotExecutable {
                name: name.to_owned(),
                path: p.clone(),
            });
        }
        let candidates: Vec<&str> = match name {
            "mariabackup" => vec!["mariabackup", "mariadb-backup"],
            "mysqldump" => vec!["mariadb-dump", "mysqldump"],
            "mysql" => vec!["mariadb", "mysql"],
            "mariadbd" => vec!["mariadbd", "mysqld"],
            n if TOOL_NAMES.contains(&n) => vec![n],
            _ => return Err(ToolError::Unknown(name.to_owned())),
        };
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        dirs.push("/usr/sbin".into());
        dirs.push("/usr/bin".into());
        for c in &candidates {
            for d in &dirs {
                let p = d.join(c);
                if is_executable(&p) {
                    return Ok(p);
                }
            }
        }
        let package = match name {
            "mariabackup" | "mbstream" => "mariadb-backup",
            "mydumper" | "myloader" => "mydumper",
            "xtrabackup" | "xbstream" => "percona-xtrabackup-80",
            "mariadbd" | "mariadb-install-db" => "mariadb-server",
            _ => "mariadb-client",
        };
        Err(ToolError::NotInstalled {
            name: name.to_owned(),
            looked: candidates.join(" / "),
            package,
        })
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Writes a client defaults file (mode 0600) for `ep` at `path`. Every value is written
/// double-quoted (`\\` and `"` escaped), and a value holding a control character (a
/// newline decoded from `%0A` in a URL, say) is refused: the file never holds a line
/// the caller did not put there (`plugin-dir`, `default-auth`, ...).
///
/// # Errors
///
/// [`DefaultsFileError`]: a value with a control character or an `ssl-ca` path that is
/// not UTF-8 (naming the option, not its value: a definite refusal of the input), or
/// the I/O error, with the path.
pub fn write_defaults_file(ep: &Endpoint, path: &Path) -> Result<(), DefaultsFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let quote = |option: &'static str, s: &str| -> Result<String, DefaultsFileError> {
        if s.chars().any(char::is_control) {
            return Err(DefaultsFileError::ControlCharacter(option));
        }
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c => out.push(c),
            }
        }
        out.push('"');
        Ok(out)
    };
    // A host that is an absolute path is the server's Unix socket.
    let mut text = if ep.host.starts_with('/') {
        format!(
            "[client]\nuser={}\nsocket={}\n",
            quote("user", &ep.user)?,
            quote("socket", &ep.host)?
        )
    } else {
        format!(
            "[client]\nuser={}\nhost={}\nport={}\n",
            quote("user", &ep.user)?,
            quote("host", &ep.host)?,
            ep.port
        )
    };
    if let Some(pw) = &ep.password {
        text.push_str(&format!("password={}\n", quote("password", pw)?));
    }
    if let Some(ca) = &ep.tls {
        text.push_str("ssl\n");
        if let Some(ca) = ca {
            let ca = ca.to_str().ok_or(DefaultsFileError::NotUtf8("ssl-ca"))?;
            text.push_str(&format!(
                "ssl-ca={}\nssl-verify-server-cert\n",
                quote("ssl-ca", ca)?
            ));
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .map_err(|source| DefaultsFileError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The command line as recorded: program and arguments, with any `password=...`,
/// `--password...` or `-p...` argument replaced by `***`.
pub fn redact(program: &Path, args: &[String]) -> String {
    let mut out = program.display().to_string();
    for a in args {
        out.push(' ');
        let lower = a.to_ascii_lowercase();
        if lower.starts_with("--password")
            || (a.starts_with("-p") && a.len() > 2 && !a.starts_with("-p="))
        {
            out.push_str("--password=***");
        } else if a.contains(' ') {
            out.push_str(&format!("'{a}'"));
        } else {
            out.push_str(a);
        }
    }
    out
}

/// First line of `<tool> --version` (e.g. "mydumper 0.10.0, built against MySQL 10.11.14").
pub async fn version(tool: &Path) -> Option<String> {
    let out = Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// Bytes of a tool's output kept for `info` on failure (the tail).
pub const OUTPUT_TAIL: usize = 8000;

/// Reads `r` to its end, keeping only the last `max` bytes; returns them as lossy UTF-8,
/// trimmed. Memory stays bounded whatever the tool prints, and nothing is written to
/// disk (the staging directory may be the full one).
pub async fn keep_tail<R: tokio::io::AsyncRead + Unpin>(mut r: R, max: usize) -> String {
    use tokio::io::AsyncReadExt;
    let mut keep: std::collections::VecDeque<u8> = std::collections::VecDeque::with_capacity(max);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                keep.extend(buf.get(..n).unwrap_or_default());
                let excess = keep.len().saturating_sub(max);
                keep.drain(..excess);
            }
        }
    }
    let v: Vec<u8> = keep.into_iter().collect();
    String::from_utf8_lossy(&v).trim().to_owned()
}

/// Takes the child's piped stderr and keeps its tail in a background task; await the
/// handle after the child has exited.
pub fn stderr_tail(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        match stderr {
            Some(e) => keep_tail(e, OUTPUT_TAIL).await,
            None => String::new(),
        }
    })
}

/// A tool whose stdout the caller streams somewhere (the object store), or whose stdin
/// it feeds ([`run_fed`]): started with the tail of stderr kept, ended by
/// [`Streaming::finish`].
pub struct Streaming {
    child: tokio::process::Child,
    program: PathBuf,
    err_tail: tokio::task::JoinHandle<String>,
    /// The name a failure is reported under ([`ToolError::Failed`]); `None`: the path
    /// ([`ToolError::Exited`]).
    name: Option<String>,
}

/// Starts `program` with `args`, stdout piped to the caller; a failure is reported as
/// `name` failed ([`ToolError::Failed`]).
///
/// # Errors
///
/// [`ToolError::Start`], or [`ToolError::NoPipe`].
pub fn spawn_streaming(
    program: &Path,
    name: &str,
    args: &[String],
) -> Result<(Streaming, tokio::process::ChildStdout), ToolError> {
    let mut run = Streaming::spawn(program, args, Stdio::null(), Stdio::piped())?;
    run.name = Some(name.to_owned());
    let stdout = run.child.stdout.take().ok_or_else(|| ToolError::NoPipe {
        program: program.to_owned(),
        pipe: "stdout",
    })?;
    Ok((run, stdout))
}

impl Streaming {
    /// Starts `program` with the given stdin and stdout, stderr piped into the kept tail.
    fn spawn(
        program: &Path,
        args: &[String],
        stdin: Stdio,
        stdout: Stdio,
    ) -> Result<Streaming, ToolError> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ToolError::Start {
                program: program.to_owned(),
                source,
            })?;
        let err_tail = stderr_tail(&mut child);
        Ok(Streaming {
            child,
            program: program.to_owned(),
            err_tail,
            name: None,
        })
    }

    /// Waits for the tool once its stdout was consumed; `kill` first when the consumer
    /// stopped early (the store failed), so the tool does not block on a full pipe.
    ///
    /// # Errors
    ///
    /// [`ToolError::Wait`], or [`ToolError::Failed`] / [`ToolError::Exited`] with the
    /// stderr tail.
    pub async fn finish(mut self, kill: bool) -> Result<(), ToolError> {
        if kill {
            let _ = self.child.kill().await;
        }
        let status = self.child.wait().await.map_err(|source| ToolError::Wait {
            program: self.program.clone(),
            source,
        })?;
        let output = self.err_tail.await.unwrap_or_default();
        match self.name {
            _ if status.success() => Ok(()),
            Some(name) => Err(ToolError::Failed {
                name,
                status,
                output,
            }),
            None => Err(ToolError::Exited {
                program: self.program,
                status,
                output,
            }),
        }
    }
}

/// Runs a tool with object `obj` of `store` as its stdin (read back with its size and
/// SHA-256 checked, `progress` growing by the bytes read); stdout is discarded, the tail
/// of stderr kept for the error. A read failure or a damaged object kills the tool.
///
/// # Errors
///
/// [`ToolError`]: could not start, the store's error ([`ToolError::Feed`]), or exited
/// with an error plus the stderr tail.
pub async fn run_fed(
    store: &objstore::store::Store,
    obj: &objstore::store::StoredObject,
    program: &Path,
    args: &[String],
    progress: &std::sync::atomic::AtomicU64,
) -> Result<(), ToolError> {
    use tokio::io::AsyncWriteExt;
    let mut run = Streaming::spawn(program, args, Stdio::piped(), Stdio::null())?;
    let mut stdin = run.child.stdin.take().ok_or_else(|| ToolError::NoPipe {
        program: program.to_owned(),
        pipe: "stdin",
    })?;
    let fed = store.get_to(obj, &mut stdin, progress).await;
    let _ = stdin.shutdown().await;
    drop(stdin);
    if let Err(source) = fed {
        let _ = run.child.kill().await;
        return Err(ToolError::Feed {
            key: obj.key.clone(),
            program: program.to_owned(),
            output: run.err_tail.await.unwrap_or_default(),
            source: Box::new(source),
        });
    }
    run.finish(false).await
}

/// Runs a tool to completion with stdin closed; stdout and stderr are kept in memory
/// (their last [`OUTPUT_TAIL`] bytes each).
///
/// # Errors
///
/// [`ToolError`]: could not start, or exited with an error plus the tail of its output.
pub async fn run(program: &Path, args: &[String], cwd: Option<&Path>) -> Result<(), ToolError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().map_err(|source| ToolError::Start {
        program: program.to_owned(),
        source,
    })?;
    let out = child.stdout.take();
    let err = child.stderr.take();
    let (out, err) = tokio::join!(
        async {
            match out {
                Some(o) => keep_tail(o, OUTPUT_TAIL).await,
                None => String::new(),
            }
        },
        async {
            match err {
                Some(e) => keep_tail(e, OUTPUT_TAIL).await,
                None => String::new(),
            }
        }
    );
    let status = child.wait().await.map_err(|source| ToolError::Wait {
        program: program.to_owned(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        let output = [err, out]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        Err(ToolError::Exited {
            program: program.to_owned(),
            status,
            output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_defaults_file_holds_only_the_lines_it_writes() {
        let d = tempfile::tempdir().unwrap();
        let ep = |host: &str, ca: &str| Endpoint {
            host: host.into(),
            port: 3306,
            user: "repl".into(),
            password: Some("p\"w\\x".into()),
            tls: Some(Some(PathBuf::from(ca))),
        };
        let good = d.path().join("good.cnf");
        write_defaults_file(&ep("127.0.0.1", "/etc/ca.pem"), &good).unwrap();
        let text = std::fs::read_to_string(&good).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .map(|l| l.split('=').next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "[client]",
                "user",
                "host",
                "port",
                "password",
                "ssl",
                "ssl-ca",
                "ssl-verify-server-cert"
            ]
        );
        assert!(text.contains("ssl-ca=\"/etc/ca.pem\""), "{text}");
        assert!(text.contains(r#"password="p\"w\\x""#), "{text}");
        // A newline (from %0A in a URL) in any value is refused, and no file is left.
        for (i, e) in [
            ep("127.0.0.1", "/tmp/ca\nplugin-dir=/tmp/evil"),
            ep("h\ndefault-auth=evil", "/etc/ca.pem"),
        ]
        .iter()
        .enumerate()
        {
            let p = d.path().join(format!("bad{i}.cnf"));
            let r = write_defaults_file(e, &p);
            assert!(
                matches!(r, Err(DefaultsFileError::ControlCharacter(_))),
                "{r:?}"
            );
            assert!(!p.exists());
        }
    }

    #[test]
    fn defaults_file_is_private_and_quoted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.cnf");
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: 3307,
            user: "bk".into(),
            password: Some("pa\"ss\\w".into()),
            tls: None,
        };
        write_defaults_file(&ep, &p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("password=\"pa\\\"ss\\\\w\""), "{text}");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!format!("{ep:?}").contains("pa"));
    }

    #[test]
    fn redaction() {
        let s = redact(
            Path::new("/usr/bin/mydumper"),
            &[
                "--password=x".into(),
                "-psecret".into(),
                "--regex".into(),
                "^(a)\\.".into(),
            ],
        );
        assert!(!s.contains("secret") && !s.contains("=x"), "{s}");
    }

    #[test]
    fn missing_tool_names_the_package() {
        let mut t = Tools::default();
        t.paths
            .insert("mydumper".into(), "/nonexistent/mydumper".into());
        let e = t.find("mydumper").unwrap_err();
        assert!(
            matches!(&e, ToolError::NotExecutable { path, .. } if path.ends_with("mydumper")),
            "{e}"
        );
        assert!(e.to_string().contains("/nonexistent/mydumper"), "{e}");
    }
}
