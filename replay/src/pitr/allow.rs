//! Where a PITR restores ([`Destination`]) and which existing instances it may restore
//! into: `[pitr] allowed_destinations` (host:port rules, parsed as
//! [`node::config::DestinationRule`]) and `allowed_datadir_roots` (directories a physical
//! base may be copied into). With neither list configured no external destination is
//! allowed, only scratch instances: a restore writes a whole database copy to wherever it
//! is pointed.

use std::path::{Component, Path, PathBuf};

use node::config::{DestinationRule, PitrConfig, SourceUrl};

use super::PlanError;

/// Where to restore.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A mariadbd the service starts on a free port under `[pitr] work_dir`.
    Scratch,
    /// An existing instance: a running, empty server at `url` (logical bases), or an
    /// empty `datadir` the service restores into and starts on `url`'s port (physical).
    Existing {
        /// Administrator URL (used for logical loads and replication set-up).
        url: SourceUrl,
        /// Datadir (required for physical bases).
        datadir: Option<PathBuf>,
    },
}

/// Why a caller's datadir is refused (HTTP 403 with this text).
#[derive(Debug, thiserror::Error)]
enum DatadirError {
    /// Not an absolute path.
    #[error("datadir {} is not an absolute path", .0.display())]
    Relative(PathBuf),
    /// Holds a `..` component.
    #[error("datadir {} holds `..`", .0.display())]
    ParentDir(PathBuf),
    /// Its existing prefix could not be resolved.
    #[error("datadir {}: {source}", .path.display())]
    Resolve {
        /// The datadir asked for.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// `path` made absolute without `..`, with its longest existing prefix resolved
/// (symlinks included): the directory a restore would really write to.
fn resolved(path: &Path) -> Result<PathBuf, DatadirError> {
    if !path.is_absolute() {
        return Err(DatadirError::Relative(path.to_owned()));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(DatadirError::ParentDir(path.to_owned()));
    }
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing
        .canonicalize()
        .map_err(|source| DatadirError::Resolve {
            path: path.to_owned(),
            source,
        })?;
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    Ok(out)
}

/// Checks an external destination against `[pitr]`'s lists and gives it back as it will
/// be used: the datadir resolved, the URL's `ssl-ca` the configured one
/// (`[pitr] destination_ssl_ca`; API input never names a file). Scratch passes as is.
///
/// # Errors
///
/// [`PlanError::Forbidden`] naming the lists.
pub fn check(cfg: &PitrConfig, dest: Destination) -> Result<Destination, PlanError> {
    let Destination::Existing { mut url, datadir } = dest else {
        return Ok(dest);
    };
    let rules: Vec<DestinationRule> = cfg
        .allowed_destinations
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect();
    if !rules.iter().any(|r| r.allows(&url.host, url.port)) {
        return Err(PlanError::Forbidden(format!(
            "destination {}:{} is not in [pitr] allowed_destinations {:?}",
            url.host, url.port, cfg.allowed_destinations
        )));
    }
    let datadir = match datadir {
        None => None,
        Some(d) => {
            let r = resolved(&d).map_err(|e| PlanError::Forbidden(e.to_string()))?;
            let inside = cfg.allowed_datadir_roots.iter().any(|root| {
                root.canonicalize()
                    .is_ok_and(|root| r.starts_with(&root) && r != root)
            });
            if !inside {
                return Err(PlanError::Forbidden(format!(
                    "datadir {} is not below one of [pitr] allowed_datadir_roots {:?}",
                    r.display(),
                    cfg.allowed_datadir_roots
                )));
            }
            Some(r)
        }
    };
    url.ssl_ca = cfg.destination_ssl_ca.clone();
    Ok(Destination::Existing { url, datadir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datadirs_must_be_absolute_and_below_a_root() {
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(other.path(), root.path().join("link")).unwrap();
        let cfg = PitrConfig {
            allowed_destinations: vec!["127.0.0.1:*".into()],
            allowed_datadir_roots: vec![root.path().to_path_buf()],
            ..PitrConfig::default()
        };
        let dest = |d: &str| Destination::Existing {
            url: node::config::SourceUrl::parse("mysql://root@127.0.0.1:3306").unwrap(),
            datadir: Some(PathBuf::from(d)),
        };
        let inside = root.path().join("new/data");
        assert!(check(&cfg, dest(inside.to_str().unwrap())).is_ok());
        for bad in [
            "relative/data".to_string(),
            format!("{}/../x", root.path().display()),
            format!("{}/link/data", root.path().display()),
            root.path().display().to_string(),
            "/etc/mysql".into(),
        ] {
            assert!(
                matches!(check(&cfg, dest(&bad)), Err(PlanError::Forbidden(_))),
                "{bad}"
            );
        }
        let far = Destination::Existing {
            url: node::config::SourceUrl::parse("mysql://root@10.1.1.1:3306").unwrap(),
            datadir: None,
        };
        assert!(matches!(check(&cfg, far), Err(PlanError::Forbidden(_))));
    }
}
