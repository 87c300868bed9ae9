//! The encryption keys of the archive: a key file (`encryption_key_file`), one key per
//! line, the first one sealing new objects and every one opening old objects, so keys
//! can be rotated by putting a new key first and keeping the old ones below it.
//!
//! # Key file
//!
//! ```text
//! # comments and blank lines are ignored
//! 2026-12 4f1c...(64 hex digits)      <- "id key": new objects are sealed with this one
//! 9a0b...(64 hex digits)              <- a key alone: its id is the first 16 hex digits
//!                                        of the SHA-256 of the key
//! ```
//!
//! The file must not be readable by group or others (mode 0600 or 0400), like an ssh
//! private key. Key bytes never appear in errors, logs or `Debug` output.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Errors of loading a key file. Stop: fix the file named.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read.
    #[error("key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is readable by group or others.
    #[error("key file {path} is readable by group or others (mode {mode:o}): chmod 600 it")]
    Mode {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not `[id] <64 hex digits>`.
    #[error("key file {path}, line {line}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the key).
        message: String,
    },
    /// The file holds no key.
    #[error("key file {path} holds no key")]
    Empty {
        /// The file.
        path: String,
    },
}

/// One 256-bit key and its id.
#[derive(Clone)]
pub struct Key {
    id: String,
    secret: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("id", &self.id).finish()
    }
}

impl Key {
    /// A key from its 32 bytes; `id` defaults to the first 16 hex digits of its SHA-256.
    pub fn new(id: Option<String>, secret: [u8; 32]) -> Key {
        let id = id.unwrap_or_else(|| hex::encode(&Sha256::digest(secret)[..8]));
        Key { id, secret }
    }

    /// The key's id (recorded in every object it seals).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }
}

/// The keys of a key file: [`Keyring::current`] seals, any of them opens.
#[derive(Debug, Default)]
pub struct Keyring {
    current: Option<Arc<Key>>,
    keys: HashMap<String, Arc<Key>>,
}

/// Whether `id` is a usable key id: 1..=64 of `[A-Za-z0-9._-]`.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Keyring {
    /// No keys: objects are not encrypted, and encrypted ones cannot be read.
    pub fn none() -> Keyring {
        Keyring::default()
    }

    /// Keys given directly (tests, tools); the first seals.
    pub fn from_keys(keys: Vec<Key>) -> Keyring {
        let mut r = Keyring::default();
        for k in keys {
            let k = Arc::new(k);
            if r.current.is_none() {
                r.current = Some(k.clone());
            }
            r.keys.entry(k.id.clone()).or_insert(k);
        }
        r
    }

    /// Parses the key file at `path` (see the module doc).
    ///
    /// # Errors
    ///
    /// [`KeyError`] naming the file and line; never the key bytes.
    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        let p = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Read {
            path: p.clone(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Mode { path: p, mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: p.clone(),
            source,
        })?;
        let mut keys = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |message: String| KeyError::Syntax {
                path: p.clone(),
                line: i + 1,
                message,
            };
            let mut parts = line.split_whitespace();
            let (id, hex_key) = match (parts.next(), parts.next(), parts.next()) {
                (Some(k), None, None) => (None, k),
                (Some(id), Some(k), None) => (Some(id.to_string()), k),
                _ => return Err(syntax("expected `[id] <64 hex digits>`".into())),
            };
            if let Some(id) = &id {
                if !valid_id(id) {
                    return Err(syntax(format!(
                        "key id {id:?}: use 1 to 64 of A-Z a-z 0-9 . _ -"
                    )));
                }
            }
            let mut secret = [0u8; 32];
            if hex_key.len() != 64 || hex::decode_to_slice(hex_key, &mut secret).is_err() {
                return Err(syntax(
                    "the key is not 64 hex digits (32 bytes; `openssl rand -hex 32` makes one)"
                        .into(),
                ));
            }
            keys.push(Key::new(id, secret));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty { path: p });
        }
        Ok(Keyring::from_keys(keys))
    }

    /// The key that seals new objects; `None` without a key file.
    pub fn current(&self) -> Option<&Key> {
        self.current.as_deref()
    }

    /// The key with `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Key>> {
        self.keys.get(id).cloned()
    }

    /// True without keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
