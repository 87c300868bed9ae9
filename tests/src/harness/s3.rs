//! moto's standalone S3 server (`moto_server`, from PyPI, installed by
//! `scripts/setup.sh`) on a free loopback port, stopped by PID on drop: the
//! S3-compatible store of the base-backup and archive tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::tools::{free_port, require_tool};
use super::wait::wait_for;

/// The credentials moto accepts (any), as `(name, value)` environment pairs for the
/// commands under test.
pub const S3_TEST_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
];

/// A running `moto_server`.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Moto {
    /// Starts it and waits until it answers; fails (never skips) when moto is missing.
    pub fn start() -> Result<Moto> {
        let bin = require_tool("moto_server");
        let port = free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start moto_server")?;
        let m = Moto { child, port };
        wait_for("moto_server answers", Duration::from_secs(30), || {
            Ok(ureq::get(&format!("http://127.0.0.1:{port}/"))
                .call()
                .ok()
                .map(|_| ()))
        })?;
        Ok(m)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates bucket `name`.
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        ureq::put(&format!("{}/{name}", self.endpoint()))
            .call()
            .with_context(|| format!("create bucket {name}"))?;
        Ok(())
    }

    /// The keys under `prefix` in `bucket` (ListObjectsV2, first 1000).
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let xml = ureq::get(&format!(
            "{}/{bucket}?list-type=2&prefix={prefix}",
            self.endpoint()
        ))
        .call()?
        .into_string()?;
        Ok(xml
            .split("<Key>")
            .skip(1)
            .filter_map(|p| p.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect())
    }

    /// The bytes of `key` in `bucket`.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        let r = ureq::get(&format!("{}/{bucket}/{key}", self.endpoint())).call()?;
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut v)?;
        Ok(v)
    }

    /// The `x-amz-meta-<name>` header of `key` in `bucket`.
    pub fn metadata(&self, bucket: &str, key: &str, name: &str) -> Result<Option<String>> {
        let r = ureq::head(&format!("{}/{bucket}/{key}", self.endpoint())).call()?;
        Ok(r.header(&format!("x-amz-meta-{name}")).map(str::to_string))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
