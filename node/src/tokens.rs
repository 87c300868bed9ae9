//! API bearer tokens and their roles: the tokens file's format, its parser and the
//! constant-time check of a presented token. The request checks that use them are
//! `binlog-server`'s `http::auth`.
//!
//! # The tokens file (`[http] tokens_file`)
//!
//! One token per line, `<role> <name> sha256:<64 hex digits>`, optionally followed by
//! `sources = ["db1", "db2"]` to limit the token to those sources (a fleet serves several
//! teams); `#` starts a comment.
//!
//! ```text
//! # role   name         SHA-256 of the token (binlog-server token add prints the token once)
//! admin    alice        sha256:5f8c...
//! read     prometheus   sha256:0a1b...
//! operate  team-orders  sha256:77d0...  sources = ["orders", "orders-eu"]
//! ```
//!
//! A limited token reaches only the routes of its sources (`/v1/sources/<name>/...`),
//! the list of sources (showing its own), and the PITR jobs, verifications and backup
//! jobs of its sources by id; every other route refuses it (`http::auth`).
//!
//! `[http] tokens_env` names an environment variable holding the same lines instead
//! (`;` may separate them), read once at start.
//!
//! Only the SHA-256 of each token is stored: a token is 32 random bytes (`bls_` and 64
//! hex digits), so a fast hash is as good as a slow one and a leaked file gives nothing
//! to replay. A presented token is hashed and compared with every entry in constant
//! time (`subtle`). The file is re-read when its size or modification time changes
//! (checked at most once a second by the API's request guard): a token is added or revoked without a
//! restart; a file that no longer parses leaves the previous set in force (logged).
//! Tokens are never logged; a caller is logged by its name.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// What a token may do; ordered: `Read < Operate < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// GET requests and PITR plans.
    Read,
    /// Starting backups, checks, verifications, scratch PITRs, restarts.
    Operate,
    /// PITR into existing instances, retention, DELETE.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    // The text is the product: a parser's message to the person who wrote the input
    // (config file, CLI flag or API field), shown as it is; no caller acts on it.
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "read" => Ok(Role::Read),
            "operate" => Ok(Role::Operate),
            "admin" => Ok(Role::Admin),
            other => Err(format!("{other:?} is not a role (read, operate or admin)")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        })
    }
}

/// A tokens file that cannot be used.
#[derive(Debug, Error)]
pub enum TokensError {
    /// The file could not be read.
    #[error("read tokens file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `<role> <name> sha256:<64 hex>`.
    #[error("tokens file line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// One token: its caller's name, role, sources and the SHA-256 of the token.
#[derive(Clone)]
struct Entry {
    name: String,
    role: Role,
    sources: Option<Vec<String>>,
    hash: [u8; 32],
}

/// The parsed tokens file.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (&e.name, e.role)))
            .finish()
    }
}

/// The prefix of every token this service makes (so a secret scanner can find them).
pub const TOKEN_PREFIX: &str = "bls_";

/// A new random token: `bls_` and 64 hex digits (32 bytes from the OS).
///
/// # Errors
///
/// The OS random source failed.
pub fn new_token() -> Result<String, crate::random::RandomError> {
    Ok(format!("{TOKEN_PREFIX}{}", crate::random::hex(32)?))
}

/// The tokens-file line for `token`: `<role> <name> sha256:<hex>`.
pub fn file_line(role: Role, name: &str, token: &str) -> String {
    format!(
        "{role} {name} sha256:{}",
        hex::encode(Sha256::digest(token.as_bytes()))
    )
}

impl Tokens {
    /// Reads and parses a tokens file.
    ///
    /// # Errors
    ///
    /// [`TokensError::Read`] or the first bad line; an empty file is an error too (it
    /// would lock every caller out).
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        Tokens::parse(&text)
    }

    /// Parses the text of a tokens file (see the module doc).
    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |message: String| TokensError::Line {
                line: i + 1,
                message,
            };
            let fields = next_field(line).and_then(|(role, rest)| {
                let (name, rest) = next_field(rest)?;
                let (hash, rest) = next_field(rest)?;
                Some((role, name, hash, rest.trim()))
            });
            let Some((role, name, hash, rest)) = fields else {
                return Err(bad("expected `<role> <name> sha256:<64 hex digits>`".into()));
            };
            let sources = match rest {
                "" => None,
                rest => Some(parse_sources(rest).map_err(|e| bad(e.to_string()))?),
            };
            let role: Role = role.parse().map_err(bad)?;
            let hex_part = hash
                .strip_prefix("sha256:")
                .ok_or_else(|| bad("the hash must start with `sha256:`".into()))?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hex_part, &mut digest)
                .map_err(|_| bad("the hash must be 64 hex digits after `sha256:`".into()))?;
            if entries.iter().any(|e: &Entry| e.name == name) {
                return Err(bad(format!("the name {name:?} is used twice")));
            }
            entries.push(Entry {
                name: name.to_string(),
                role,
                sources,
                hash: digest,
            });
        }
        if entries.is_empty() {
            return Err(TokensError::Line {
                line: 0,
                message: "the file holds no token (add one with `binlog-server token add`)".into(),
            });
        }
        Ok(Tokens { entries })
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds no token.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller a presented token belongs to, compared in constant time against every
    /// entry (the time does not tell which entry, or how much of a hash, matched).
    pub fn check(&self, presented: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(&digest)) {
                found = Some(e);
            }
        }
        found.map(|e| Caller {
            name: e.name.clone(),
            role: e.role,
            sources: e.sources.clone(),
        })
    }
}

/// Who made a request (in the request's extensions once the API's `guard` let it through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name ("local" without a tokens file).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The sources it is limited to; `None`: every source.
    pub sources: Option<Vec<String>>,
}

impl Caller {
    /// Whether the caller may act on `source`.
    pub fn may_use(&self, source: &str) -> bool {
        self.sources
            .as_ref()
            .is_none_or(|s| s.iter().any(|n| n == source))
    }

    /// Whether the caller is limited to some sources.
    pub fn is_limited(&self) -> bool {
        self.sources.is_some()
    }
}

/// The first whitespace-separated field of `s` and what follows it; `None` when `s` is
/// blank.
fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some(s.split_at(end))
}

/// Why the `sources = [...]` part of a tokens-file line is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SourcesError {
    /// Something other than `sources = [...]` follows the hash.
    #[error("after the hash, only `sources = [\"db1\", \"db2\"]` may follow")]
    Form,
    /// An item of the list is not a quoted name.
    #[error("{0:?} in sources is not a quoted source name")]
    NotQuoted(String),
    /// The list is empty.
    #[error("sources = [] would allow nothing: name at least one source")]
    Empty,
}

/// The `sources = ["a", "b"]` part of a tokens-file line: a non-empty list of quoted
/// names without quotes or backslashes inside.
fn parse_sources(rest: &str) -> Result<Vec<String>, SourcesError> {
    let list = rest
        .strip_prefix("sources")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('='))
        .map(str::trim)
        .and_then(|r| r.strip_prefix('['))
        .and_then(|r| r.strip_suffix(']'))
        .ok_or(SourcesError::Form)?;
    let mut names = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let name = item
            .strip_prefix('"')
            .and_then(|i| i.strip_suffix('"'))
            .filter(|n| !n.is_empty() && !n.contains(['"', '\\']))
            .ok_or_else(|| SourcesError::NotQuoted(item.to_string()))?;
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(SourcesError::Empty);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_by_its_hash_only() {
        let t = new_token().unwrap();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == 68);
        let text = format!(
            "# comment\n\n{}\n{}  # trailing comment\n",
            file_line(Role::Read, "prom", "bls_other"),
            file_line(Role::Admin, "alice", &t)
        );
        assert!(!text.contains(&t), "the file must not hold the token");
        let tokens = Tokens::parse(&text).unwrap();
        assert_eq!(
            tokens.check(&t),
            Some(Caller {
                name: "alice".into(),
                role: Role::Admin,
                sources: None,
            })
        );
        assert_eq!(tokens.check("bls_other").unwrap().role, Role::Read);
        assert_eq!(tokens.check(&t[..67]), None);
        assert_eq!(tokens.check(""), None);
    }

    #[test]
    fn a_token_may_be_limited_to_some_sources() {
        let text = format!(
            "{}   sources = [\"orders\", \"orders-eu\"]\n{}\tsources=[\"db1\"] # one\n{}\n",
            file_line(Role::Operate, "team", "bls_team").replace(' ', "   "),
            file_line(Role::Read, "one", "bls_one"),
            file_line(Role::Admin, "all", "bls_all"),
        );
        let tokens = Tokens::parse(&text).unwrap();
        let team = tokens.check("bls_team").unwrap();
        assert_eq!(
            team.sources,
            Some(vec!["orders".into(), "orders-eu".into()])
        );
        assert!(team.is_limited() && team.may_use("orders-eu") && !team.may_use("db1"));
        let one = tokens.check("bls_one").unwrap();
        assert!(one.may_use("db1") && !one.may_use("orders"));
        let all = tokens.check("bls_all").unwrap();
        assert!(!all.is_limited() && all.may_use("anything"));
        let hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        for tail in [
            "sources = []",
            "sources = [db1]",
            "source = [\"a\"]",
            "extra",
            "sources = [\"a\"",
        ] {
            let line = format!("read x {hash} {tail}\n");
            assert!(
                matches!(Tokens::parse(&line), Err(TokensError::Line { line: 1, .. })),
                "{line}"
            );
        }
    }

    #[test]
    fn bad_tokens_files_are_refused_with_the_line() {
        for (text, line) in [
            ("admin alice\n", 1),
            ("\nroot alice sha256:00\n", 2),
            ("admin alice md5:00\n", 1),
            ("admin alice sha256:zz\n", 1),
            (
                "read a sha256:0000000000000000000000000000000000000000000000000000000000000000\nread a sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
                2,
            ),
            ("# nothing\n", 0),
        ] {
            match Tokens::parse(text) {
                Err(TokensError::Line { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
