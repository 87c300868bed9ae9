//! moto's standalone S3 server (`moto_server`, from PyPI, installed by
//! `scripts/setup.sh`) on a free loopback port, stopped by PID on drop: the
//! S3-compatible store of the base-backup and archive tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::tools::{free_port, require_tool, send_signal};
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

    /// Creates bucket `name` with S3 Object Lock enabled and a default retention rule
    /// of `mode` (`GOVERNANCE` or `COMPLIANCE`) for `days` days (CreateBucket with
    /// `x-amz-bucket-object-lock-enabled`, then PutObjectLockConfiguration).
    pub fn create_locked_bucket(&self, name: &str, mode: &str, days: u32) -> Result<()> {
        ureq::put(&format!("{}/{name}", self.endpoint()))
            .set("x-amz-bucket-object-lock-enabled", "true")
            .call()
            .with_context(|| format!("create bucket {name} with Object Lock"))?;
        let rule = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
             <Mode>{mode}</Mode><Days>{days}</Days></DefaultRetention></Rule>\
             </ObjectLockConfiguration>"
        );
        ureq::put(&format!("{}/{name}?object-lock", self.endpoint()))
            .send_string(&rule)
            .with_context(|| format!("put the Object Lock rule of bucket {name}"))?;
        Ok(())
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel and never
    /// answered, as a store that hangs. [`Moto::resume`] (or drop) undoes it.
    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// Lets a paused server go on (SIGCONT); the requests that waited are answered.
    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        send_signal(self.child.id(), sig)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
