//! S3 Object Lock: the bucket's lock configuration and one object's retention, the
//! calls `object_store` 0.12 does not make (AWS S3 API reference:
//! GetObjectLockConfiguration, PutObjectRetention, HeadObject, DeleteObject with
//! `versionId`).
//!
//! # How the archive uses it
//!
//! - The bucket must have Object Lock enabled **and** a default retention rule (mode and
//!   days). S3 applies that rule to every new object version in the request that writes
//!   it, single PUT or multipart, so no object is ever stored unlocked, not even for a
//!   moment. [`ObjectLock::bucket_rule`] reads it at start; a bucket without it is a
//!   definite stop with the reason.
//! - A delete without a version id (what `object_store` sends) then only adds a delete
//!   marker: the locked version stays, and deleting it for good
//!   ([`ObjectLock::delete_version`]) is refused until its retain-until date, in
//!   COMPLIANCE mode even for the bucket's owner. A stale owner or a stolen credential
//!   can hide an object, never destroy it.
//! - Objects kept longer than the rule's days (binlogs a restorable base still needs)
//!   get a later retain-until date ([`ObjectLock::retain`]): extending is allowed in both
//!   modes, shortening never in COMPLIANCE.
//!
//! Requests are signed with SigV4 by `object_store`'s own [`AwsAuthorizer`] with the
//! store's credentials, path-style (`<endpoint>/<bucket>/<key>`) as the store itself
//! addresses an endpoint. Nothing here is retried: the caller's next pass retries.

use std::sync::Arc;

use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{
    ClientOptions, CredentialProvider, HttpClient, HttpConnector, HttpError, HttpRequest,
    HttpRequestBody, ReqwestConnector,
};

/// Largest response body read from a lock call, bytes (a configuration or an error
/// document; anything longer is cut).
const MAX_BODY: usize = 64 * 1024;

/// An Object Lock retention mode (AWS S3: "Object Lock retention modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete a locked version.
    Governance,
    /// Nobody, the bucket's owner included, deletes a locked version before its date.
    Compliance,
}

impl LockMode {
    /// S3's spelling: `GOVERNANCE` or `COMPLIANCE`.
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// Parses S3's spelling (any case); `None` for anything else.
    pub fn from_s3(s: &str) -> Option<LockMode> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// A bucket's default retention rule: every new object version is locked in `mode` for
/// `days` days from its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRule {
    /// Mode of the rule.
    pub mode: LockMode,
    /// Retention in days (a rule in years is converted at 365 days a year).
    pub days: u32,
}

/// How long this archive locks objects: the mode and the bucket rule's days (`D`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retain {
    /// Lock mode.
    pub mode: LockMode,
    /// `D`, days.
    pub days: u32,
}

impl Retain {
    /// `D` in seconds.
    pub fn period(self) -> i64 {
        i64::from(self.days) * 86_400
    }

    /// The retain-until date of an object written or extended at `now` (unix
    /// seconds): `now + D`.
    pub fn until(self, now: i64) -> i64 {
        now.saturating_add(self.period())
    }

    /// Locks that end before this date are extended at `now`: `now + D / 2`.
    pub fn due(self, now: i64) -> i64 {
        now.saturating_add(self.period() / 2)
    }
}

/// One object version's lock, as HeadObject reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// The current version's id (`x-amz-version-id`).
    pub version_id: String,
    /// Its lock mode, if locked.
    pub mode: Option<LockMode>,
    /// Its retain-until date, unix seconds, if locked.
    pub until: Option<i64>,
}

/// Why a lock call failed. Every variant is retried by the caller's next pass, except
/// where the status says the request itself is wrong (4xx other than 404), which the
/// message names.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The request did not complete (connection, TLS, timeout).
    #[error("object lock: {op} {key}: {source}")]
    Http {
        /// The call (`PutObjectRetention`, ...).
        op: &'static str,
        /// Key or bucket.
        key: String,
        /// Cause.
        #[source]
        source: HttpError,
    },
    /// The store answered with an error status.
    #[error("object lock: {op} {key}: HTTP {status}: {body}")]
    Status {
        /// The call.
        op: &'static str,
        /// Key or bucket.
        key: String,
        /// HTTP status code.
        status: u16,
        /// The start of the error document.
        body: String,
    },
    /// The store's credentials could not be obtained.
    #[error("object lock: credentials: {0}")]
    Credentials(#[source] object_store::Error),
    /// A URL or request could not be built from the key (a key S3 cannot address).
    #[error("object lock: bad request for {key}: {message}")]
    Request {
        /// Key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl LockError {
    /// HTTP status of a store's refusal (403 for a permanent delete of a locked version).
    pub fn status(&self) -> Option<u16> {
        match self {
            LockError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The Object Lock calls for one `s3://bucket/prefix` store.
#[derive(Clone)]
pub struct ObjectLock {
    http: HttpClient,
    credentials: Arc<dyn CredentialProvider<Credential = AwsCredential>>,
    region: String,
    /// `<endpoint>/<bucket>`, no trailing slash.
    bucket_url: String,
    /// The store's key prefix (`a/b`, no slashes at the ends), empty for none.
    prefix: String,
}

impl std::fmt::Debug for ObjectLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectLock({})", self.bucket_url)
    }
}

impl ObjectLock {
    /// The lock calls of bucket `bucket` at `endpoint` (`None`: AWS's regional endpoint)
    /// with the store's `credentials`; keys are under `prefix`.
    ///
    /// # Errors
    ///
    /// [`LockError::Request`] when no HTTP client can be built.
    pub fn new(
        credentials: Arc<dyn CredentialProvider<Credential = AwsCredential>>,
        region: &str,
        endpoint: Option<&str>,
        bucket: &str,
        prefix: &str,
        allow_http: bool,
    ) -> Result<ObjectLock, LockError> {
        let http = ReqwestConnector::default()
            .connect(&ClientOptions::new().with_allow_http(allow_http))
            .map_err(|e| LockError::Request {
                key: bucket.to_owned(),
                message: e.to_string(),
            })?;
        let endpoint = match endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        Ok(ObjectLock {
            http,
            credentials,
            region: region.to_owned(),
            bucket_url: format!("{endpoint}/{bucket}"),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    /// The bucket's default retention rule; `None` when Object Lock is not enabled on
    /// the bucket or it has no default rule (GetObjectLockConfiguration).
    ///
    /// # Errors
    ///
    /// [`LockError`] when the call fails (other than the bucket having no lock
    /// configuration, which is `Ok(None)`).
    pub async fn bucket_rule(&self) -> Result<Option<BucketRule>, LockError> {
        const OP: &str = "GetObjectLockConfiguration";
        let url = format!("{}?object-lock", self.bucket_url);
        let (status, body) = self
            .call(OP, "", http::Method::GET, &url, Vec::new(), &[])
            .await?;
        // S3's answer for a bucket without a lock configuration (404, or 400 from some
        // servers), named by its error code; any other error (NoSuchBucket, access
        // denied) is an error with its own message.
        if matches!(status, 400 | 404)
            && error_code(&body) == Some("ObjectLockConfigurationNotFoundError")
        {
            return Ok(None);
        }
        succeeded(OP, &self.bucket_url, status, &body)?;
        Ok(parse_rule(&body))
    }

    /// Sets the current version of `key` to be retained in `mode` until `until` (unix
    /// seconds) (PutObjectRetention). A date before the present lock is refused by the
    /// store in COMPLIANCE mode (and without bypass in GOVERNANCE mode).
    ///
    /// # Errors
    ///
    /// [`LockError`]; a missing key is `Status` 404.
    pub async fn retain(&self, key: &str, mode: LockMode, until: i64) -> Result<(), LockError> {
        const OP: &str = "PutObjectRetention";
        let url = format!("{}?retention", self.object_url(key));
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            mode.as_s3(),
            iso8601(until)
        );
        let md5 = content_md5(body.as_bytes());
        let (status, text) = self
            .call(
                OP,
                key,
                http::Method::PUT,
                &url,
                body.into_bytes(),
                &[("content-md5", md5)],
            )
            .await?;
        succeeded(OP, key, status, &text)
    }

    /// The current version of `key` and its lock (HeadObject); `None` for a missing key.
    ///
    /// # Errors
    ///
    /// [`LockError`].
    pub async fn retention(&self, key: &str) -> Result<Option<Retention>, LockError> {
        const OP: &str = "HeadObject";
        let url = self.object_url(key);
        let resp = self
            .send(OP, key, http::Method::HEAD, &url, Vec::new(), &[])
            .await?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        succeeded(OP, key, status, "")?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Some(Retention {
            version_id: header("x-amz-version-id").unwrap_or_default(),
            mode: header("x-amz-object-lock-mode").and_then(|m| LockMode::from_s3(&m)),
            until: header("x-amz-object-lock-retain-until-date").and_then(|d| parse_date(&d)),
        }))
    }

    /// Deletes version `version_id` of `key` for good (DeleteObject with `versionId`),
    /// which the store refuses (403) while the version is locked.
    ///
    /// # Errors
    ///
    /// [`LockError`]: `Status` 403 for a locked version.
    pub async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), LockError> {
        const OP: &str = "DeleteObject";
        let mut url = url::Url::parse(&self.object_url(key)).map_err(|e| LockError::Request {
            key: key.to_owned(),
            message: e.to_string(),
        })?;
        url.query_pairs_mut().append_pair("versionId", version_id);
        let (status, body) = self
            .call(OP, key, http::Method::DELETE, url.as_str(), Vec::new(), &[])
            .await?;
        succeeded(OP, key, status, &body)
    }

    /// `<endpoint>/<bucket>/<prefix>/<key>`, addressed as the store addresses it: the
    /// key made an `object_store` path (which escapes what S3 keys must not hold, as
    /// the store's own writes do), then every byte but `A-Z a-z 0-9 - . _ ~ /`
    /// percent-encoded, as SigV4's canonical URI wants it for S3.
    fn object_url(&self, key: &str) -> String {
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        let path = object_store::path::Path::from(full);
        let encoded = percent_encoding::utf8_percent_encode(path.as_ref(), &PATH_ENCODE);
        format!("{}/{encoded}", self.bucket_url)
    }

    /// Writes `body` as `key` in one create-only PUT (`If-None-Match: *`) that locks it
    /// in `mode` until `until` (unix seconds) in the same request
    /// (`x-amz-object-lock-mode`, `x-amz-object-lock-retain-until-date`, with the
    /// Content-MD5 S3 requires beside them), with `metadata` as `x-amz-meta-*`.
    /// `Ok(false)` when the key exists (412).
    ///
    /// # Errors
    ///
    /// [`LockError`] for any other failure.
    pub async fn put_locked(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: &[(&'static str, String)],
        mode: LockMode,
        until: i64,
    ) -> Result<bool, LockError> {
        const OP: &str = "PutObject";
        let url = self.object_url(key);
        let meta_names: Vec<String> = metadata
            .iter()
            .map(|(k, _)| format!("x-amz-meta-{k}"))
            .collect();
        let mut headers: Vec<(&str, String)> = vec![
            ("content-md5", content_md5(&body)),
            ("if-none-match", "*".to_owned()),
            ("x-amz-object-lock-mode", mode.as_s3().to_owned()),
            ("x-amz-object-lock-retain-until-date", iso8601(until)),
        ];
        headers.extend(
            meta_names
                .iter()
                .zip(metadata)
                .map(|(name, (_, v))| (name.as_str(), v.clone())),
        );
        let (status, text) = self
            .call(OP, key, http::Method::PUT, &url, body, &headers)
            .await?;
        match status {
            200..=299 => Ok(true),
            412 => Ok(false),
            _ => Err(status_error(OP, key, status, &text)),
        }
    }

    /// Sends a signed request and reads at most [`MAX_BODY`] bytes of the answer (the
    /// rest is not read).
    async fn call(
        &self,
        op: &'static str,
        key: &str,
        method: http::Method,
        url: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<(u16, String), LockError> {
        let resp = self.send(op, key, method, url, body, headers).await?;
        use futures::StreamExt as _;
        let status = resp.status().as_u16();
        let mut stream = resp.into_body().bytes_stream();
        let mut body = Vec::new();
        while body.len() < MAX_BODY {
            let Some(piece) = stream.next().await else {
                break;
            };
            let piece = piece.map_err(|source| LockError::Http {
                op,
                key: key.to_owned(),
                source,
            })?;
            let room = MAX_BODY - body.len();
            body.extend_from_slice(piece.get(..room.min(piece.len())).unwrap_or_default());
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn send(
        &self,
        op: &'static str,
        key: &str,
        method: http::Method,
        url: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<object_store::client::HttpResponse, LockError> {
        let bad = |message: String| LockError::Request {
            key: key.to_owned(),
            message,
        };
        let mut builder = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let mut req: HttpRequest = builder
            .body(HttpRequestBody::from(body))
            .map_err(|e| bad(e.to_string()))?;
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(LockError::Credentials)?;
        AwsAuthorizer::new(&credential, "s3", &self.region).authorize(&mut req, None);
        self.http
            .execute(req)
            .await
            .map_err(|source| LockError::Http {
                op,
                key: key.to_owned(),
                source,
            })
    }
}

/// What SigV4 leaves unencoded in an S3 path: unreserved characters and `/`
/// (object_store's `STRICT_PATH_ENCODE_SET`).
const PATH_ENCODE: percent_encoding::AsciiSet = percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The base64 MD5 of `body` (`Content-MD5`).
fn content_md5(body: &[u8]) -> String {
    use base64::Engine as _;
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// `Ok` for a 2xx answer, else [`LockError::Status`] with the start of `body`.
fn succeeded(op: &'static str, key: &str, status: u16, body: &str) -> Result<(), LockError> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(status_error(op, key, status, body))
    }
}

fn status_error(op: &'static str, key: &str, status: u16, body: &str) -> LockError {
    LockError::Status {
        op,
        key: key.to_owned(),
        status,
        body: body.chars().take(300).collect(),
    }
}

/// The default rule of an ObjectLockConfiguration document; `None` unless
/// `ObjectLockEnabled` is `Enabled` and a rule with a mode and days or years is there.
fn parse_rule(xml: &str) -> Option<BucketRule> {
    if element(xml, "ObjectLockEnabled")? != "Enabled" {
        return None;
    }
    let retention = element(xml, "DefaultRetention")?;
    let mode = LockMode::from_s3(element(retention, "Mode")?)?;
    let days = match element(retention, "Days") {
        Some(d) => d.parse::<u32>().ok()?,
        None => element(retention, "Years")?
            .parse::<u32>()
            .ok()?
            .checked_mul(365)?,
    };
    Some(BucketRule { mode, days })
}

/// The `<Code>` of an S3 error document.
fn error_code(xml: &str) -> Option<&str> {
    element(xml, "Code")
}

/// The text between `<name>` and `</name>` (the first such element), trimmed. The
/// documents read here are S3's small, fixed lock documents without attributes on
/// these elements; a missing element is `None`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml.get(start..)?.find(&close)?;
    Some(xml.get(start..start + len)?.trim())
}

/// Unix seconds as S3's ISO 8601 date (`2026-12-07T17:00:00Z`).
pub fn iso8601(unix: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An RFC 3339 date (what S3 returns) as unix seconds; `None` when it is not one.
fn parse_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rule_is_read_from_a_lock_configuration() {
        let doc = "<ObjectLockConfiguration xmlns=\"x\"><ObjectLockEnabled>Enabled\
                   </ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode>\
                   <Days>30</Days></DefaultRetention></Rule></ObjectLockConfiguration>";
        assert_eq!(
            parse_rule(doc),
            Some(BucketRule {
                mode: LockMode::Compliance,
                days: 30
            })
        );
        let years = doc.replace("<Days>30</Days>", "<Years>2</Years>");
        assert_eq!(parse_rule(&years).map(|r| r.days), Some(730));
        let no_rule = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled\
                       </ObjectLockEnabled></ObjectLockConfiguration>";
        assert_eq!(parse_rule(no_rule), None);
        assert_eq!(parse_rule("<Error><Code>x</Code></Error>"), None);
        assert_eq!(parse_rule(&doc.replace("<Days>30", "<Days>-1")), None);
    }

    #[test]
    fn keys_are_addressed_as_sigv4_and_the_store_want_them() {
        let lock = ObjectLock {
            http: ReqwestConnector::default()
                .connect(&ClientOptions::new())
                .unwrap(),
            credentials: Arc::new(object_store::StaticCredentialProvider::new(AwsCredential {
                key_id: "k".into(),
                secret_key: "s".into(),
                token: None,
            })),
            region: "us-east-1".into(),
            bucket_url: "http://127.0.0.1:9000/b".into(),
            prefix: "pre".into(),
        };
        assert_eq!(
            lock.object_url("db1/binlogs/f.000001.index/e3.zstd+aes-256-gcm"),
            "http://127.0.0.1:9000/b/pre/db1/binlogs/f.000001.index/e3.zstd%2Baes-256-gcm"
        );
        assert_eq!(
            lock.object_url("db1/base/t@0024x=1 y"),
            "http://127.0.0.1:9000/b/pre/db1/base/t%400024x%3D1%20y"
        );
        // What object_store escapes in a key (`#` here) is escaped the same way.
        assert!(lock.object_url("a/b#c").ends_with("/pre/a/b%2523c"));
    }

    #[test]
    fn the_no_rule_answer_is_told_apart_from_other_errors() {
        let none = "<Error><Code>ObjectLockConfigurationNotFoundError</Code></Error>";
        assert_eq!(
            error_code(none),
            Some("ObjectLockConfigurationNotFoundError")
        );
        assert_eq!(
            error_code("<Error><Code>NoSuchBucket</Code></Error>"),
            Some("NoSuchBucket")
        );
    }

    #[test]
    fn dates_round_trip_through_s3s_format() {
        let t = 1_796_000_000;
        assert_eq!(parse_date(&iso8601(t)), Some(t));
        assert_eq!(parse_date("2026-12-07T17:00:00.000Z"), Some(1_796_662_800));
        assert_eq!(parse_date("yesterday"), None);
    }
}
