//! binlog-server config files for the tests ([`SourceSpec`], [`write_config`],
//! [`write_config_sources`]) and [`grep_file`] for reading the server's log.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::tools::toml_string;

/// One `[[source]]` of a binlog-server config, for [`write_config_sources`].
#[derive(Clone, Debug)]
pub struct SourceSpec {
    /// Source name (also the directory name under `data_dir`).
    pub name: String,
    /// Primary URL, e.g. [`MariaDb::repl_url`](crate::MariaDb::repl_url).
    pub url: String,
    /// server_id the fake replica registers with (must differ from the primary's).
    pub server_id: u32,
    /// `start` as TOML value text, e.g. `"\"earliest\""`.
    pub start: String,
}

/// Writes `<dir>/binlog-server.toml` with `data_dir = "<dir>/data"`, `extra` (top-level
/// TOML text, placed before the first table so that its keys stay top-level; it may
/// also hold its own tables), `[http] listen = http_addr`, and one `[[source]]` per
/// (name, url, server_id) with `start = "earliest"`. Returns the file's path.
pub fn write_config(
    dir: &Path,
    http_addr: &str,
    sources: &[(&str, &str, u32)],
    extra: &str,
) -> Result<PathBuf> {
    let specs: Vec<SourceSpec> = sources
        .iter()
        .map(|(name, url, server_id)| SourceSpec {
            name: name.to_string(),
            url: url.to_string(),
            server_id: *server_id,
            start: "\"earliest\"".to_string(),
        })
        .collect();
    write_config_sources(dir, http_addr, &specs, extra)
}

/// Like [`write_config`], with each source's `start` given as TOML value text.
pub fn write_config_sources(
    dir: &Path,
    http_addr: &str,
    sources: &[SourceSpec],
    extra: &str,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let data_dir = dir.join("data");
    let data_dir = data_dir
        .to_str()
        .with_context(|| format!("data dir {} is not UTF-8", data_dir.display()))?;
    let mut text = format!("data_dir = {}\n", toml_string(data_dir));
    if !extra.trim().is_empty() {
        text.push('\n');
        text.push_str(extra.trim_end());
        text.push('\n');
    }
    text.push_str(&format!("\n[http]\nlisten = {}\n", toml_string(http_addr)));
    for s in sources {
        text.push_str(&source_table(s));
    }
    let path = dir.join("binlog-server.toml");
    fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// One `[[source]]` table as [`write_config_sources`] writes it (with its leading blank
/// line); `sandbox.rs` follows each with the source's own sub-tables.
pub(crate) fn source_table(s: &SourceSpec) -> String {
    format!(
        "\n[[source]]\nname = {}\nurl = {}\nserver_id = {}\nstart = {}\n",
        toml_string(&s.name),
        toml_string(&s.url),
        s.server_id,
        s.start.trim()
    )
}

/// Reads a file line by line (for logs): the lines that contain `needle`.
pub fn grep_file(path: &Path, needle: &str) -> Result<Vec<String>> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("read {}", path.display()))?;
        if line.contains(needle) {
            out.push(line);
        }
    }
    Ok(out)
}
