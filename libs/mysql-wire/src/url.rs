//! Connection URLs: `mysql://user[:password]@host[:port][?ssl-mode=..&ssl-ca=..]`, parsed
//! into [`SourceUrl`] with its [`TlsMode`]. The password never appears in `Debug` output
//! ([`SourceUrl::redacted`]).

use std::path::PathBuf;

/// TLS mode of a source connection (MySQL `--ssl-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS (default).
    Disabled,
    /// TLS when the server offers it, unauthenticated.
    Preferred,
    /// TLS or fail; the certificate is not checked.
    Required,
    /// TLS; the certificate must chain to ssl-ca.
    VerifyCa,
    /// TLS; chain and host name are checked.
    VerifyIdentity,
}

/// A parsed source URL.
#[derive(Clone)]
pub struct SourceUrl {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (default 3306).
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password; never printed.
    pub password: Option<String>,
    /// TLS mode.
    pub tls: TlsMode,
    /// CA file for VERIFY_CA / VERIFY_IDENTITY.
    pub ssl_ca: Option<PathBuf>,
}

impl std::fmt::Debug for SourceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl SourceUrl {
    /// The URL with the password replaced by `***` (for logs, the API and the catalog).
    pub fn redacted(&self) -> String {
        let pw = if self.password.is_some() { ":***" } else { "" };
        let tls = match self.tls {
            TlsMode::Disabled => "",
            TlsMode::Preferred => "?ssl-mode=PREFERRED",
            TlsMode::Required => "?ssl-mode=REQUIRED",
            TlsMode::VerifyCa => "?ssl-mode=VERIFY_CA",
            TlsMode::VerifyIdentity => "?ssl-mode=VERIFY_IDENTITY",
        };
        format!(
            "mysql://{}{}@{}:{}{}",
            self.user, pw, self.host, self.port, tls
        )
    }

    /// Parses `mysql://user[:password]@host[:port][?ssl-mode=..&ssl-ca=..]`.
    /// Percent-escapes in user and password are decoded. A control character in any
    /// part after decoding (a `%0A` in a password or `ssl-ca`) is refused: the values
    /// end up in client option files.
    // The text is the product: a parser's message to the person who wrote the input
    // (config file, CLI flag or API field), shown as it is; no caller acts on it.
    pub fn parse(text: &str) -> Result<SourceUrl, String> {
        let u = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(u.scheme(), "mysql" | "mariadb") {
            return Err(format!(
                "scheme {:?}: use mysql://user:password@host:port",
                u.scheme()
            ));
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "user or password is not valid UTF-8 after %-decoding".to_string())
        };
        let user = decode(u.username())?;
        if user.is_empty() {
            return Err("no user name (mysql://USER:password@host:port)".into());
        }
        let password = u.password().map(decode).transpose()?;
        if u.path() != "" && u.path() != "/" {
            return Err("a database path is not used; remove it".into());
        }
        let mut tls = TlsMode::Disabled;
        let mut ssl_ca = None;
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "ssl-mode" | "ssl_mode" | "sslmode" => {
                    tls = match v.to_ascii_uppercase().as_str() {
                        "DISABLED" => TlsMode::Disabled,
                        "PREFERRED" => TlsMode::Preferred,
                        "REQUIRED" => TlsMode::Required,
                        "VERIFY_CA" => TlsMode::VerifyCa,
                        "VERIFY_IDENTITY" => TlsMode::VerifyIdentity,
                        other => {
                            return Err(format!(
                                "ssl-mode {other:?}: use DISABLED, PREFERRED, REQUIRED, \
                                 VERIFY_CA or VERIFY_IDENTITY"
                            ))
                        }
                    }
                }
                "ssl-ca" | "ssl_ca" => ssl_ca = Some(PathBuf::from(v.as_ref())),
                other => return Err(format!("unknown URL parameter {other:?}")),
            }
        }
        let control = |s: &str| s.chars().any(char::is_control);
        if control(&host)
            || control(&user)
            || password.as_deref().is_some_and(control)
            || u.query_pairs().any(|(k, v)| control(&k) || control(&v))
        {
            return Err(
                "a control character (such as %0A) in the URL: refused, it could add lines \
                 to a client option file"
                    .into(),
            );
        }
        Ok(SourceUrl {
            host,
            port: u.port().unwrap_or(3306),
            user,
            password,
            tls,
            ssl_ca,
        })
    }
}
