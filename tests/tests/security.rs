//! Security (issue 14) end to end, against the real daemon: the API's tokens and roles
//! over HTTPS (a table over every route), its cross-site and media-type checks, JSON
//! errors and limits; PITR destinations by allow-list; the fake primary under 2,000
//! idle connections, with TLS for a real MariaDB replica, refusing wrong passwords and
//! slowing repeated ones; and the start-up refusals of unsafe configurations.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test security`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use binlog_tests::*;
use serde_json::{json, Value};

fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

/// `binlog-server <args>`: exit code, stdout, stderr.
fn cli(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(server_bin())
        .args(args)
        .output()
        .context("run binlog-server")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A self-signed certificate and key in `dir` (by `binlog-server tls self-signed`).
fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    tls_self_signed(&server_bin(), dir)
}

/// A new token of `role` added to `file` (by `binlog-server token add`); the file holds
/// only its hash.
fn add_token(file: &Path, name: &str, role: &str) -> Result<String> {
    let token = add_api_token(&server_bin(), file, name, role)?;
    let text = std::fs::read_to_string(file)?;
    assert!(!text.contains(&token), "the tokens file holds only hashes");
    Ok(token)
}

/// The server error code the `mariadb` client printed (`ERROR 1045 (28000): ...`).
fn client_error_code(stderr: &str) -> Option<u16> {
    let rest = &stderr[stderr.find("ERROR ")? + 6..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// One request: status and JSON body (a non-JSON error body fails the test: every
/// error of the API is JSON; `/metrics` is text).
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<(u16, Value)> {
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let r = match body {
        Some(b) => req.send_string(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e).with_context(|| format!("{method} {url}")),
    };
    let code = resp.status();
    let text = resp.into_string()?;
    let v = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) if code < 400 => Value::String(text),
        Err(e) => bail!("{method} {url} -> {code}: the error body is not JSON ({e}): {text:?}"),
    };
    Ok((code, v))
}

/// The running daemon with one archive-only source ("arch", a MySQL 8.0 fixture file),
/// HTTPS, three tokens (read, operate, admin), and a `[pitr]` allow-list.
struct Secured {
    _work: tempfile::TempDir,
    dir: PathBuf,
    server: ServerProcess,
    base: String,
    agent: ureq::Agent,
    cert: PathBuf,
    tokens_file: PathBuf,
    tokens: Vec<(&'static str, String)>,
}

fn secured(extra_http: &str) -> Result<Secured> {
    let work = tempfile::tempdir()?;
    let dir = work.path().to_path_buf();
    let data = dir.join("data");
    let arch = data.join("arch");
    std::fs::create_dir_all(&arch)?;
    let fixture = corpus_dir().join("rust-us__mysql-cdc-rs/8.0/folder/binlog.000693");
    std::fs::copy(&fixture, arch.join("binlog.000693"))
        .with_context(|| format!("copy {}", fixture.display()))?;
    let (cert, key) = self_signed(&dir)?;
    let tokens_file = dir.join("tokens");
    let mut tokens = Vec::new();
    for role in ["read", "operate", "admin"] {
        tokens.push((role, add_token(&tokens_file, &format!("t-{role}"), role)?));
    }
    let roots = dir.join("restore");
    std::fs::create_dir_all(&roots)?;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let text = format!(
        "data_dir = {}\n[http]\nlisten = {}\ntokens_file = {}\ntls_cert = {}\ntls_key = {}\n{extra_http}\n\
         [pitr]\nallowed_destinations = [\"127.0.0.1:3306\"]\nallowed_datadir_roots = [{}]\n\
         [[source]]\nname = \"arch\"\nurl = \"mysql://repl:x@127.0.0.1:1\"\nserver_id = 77\ncapture = false\n",
        toml_string(data.to_str().context("utf-8")?),
        toml_string(&listen),
        toml_string(tokens_file.to_str().context("utf-8")?),
        toml_string(cert.to_str().context("utf-8")?),
        toml_string(key.to_str().context("utf-8")?),
        toml_string(roots.to_str().context("utf-8")?),
    );
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, text)?;
    let base = format!("https://{listen}");
    let server = ServerProcess::start_with(
        &server_bin(),
        &cfg,
        &base,
        ApiAccess {
            token: Some(tokens[2].1.clone()),
            ca_cert: Some(cert.clone()),
        },
    )?;
    let agent = agent_trusting(&cert, Duration::from_secs(30))?;
    Ok(Secured {
        _work: work,
        dir,
        server,
        base,
        agent,
        cert,
        tokens_file,
        tokens,
    })
}

impl Secured {
    fn token(&self, role: &str) -> &str {
        &self
            .tokens
            .iter()
            .find(|(r, _)| *r == role)
            .expect("role")
            .1
    }

    /// `method path` with `token` (if any), `Content-Type: application/json` and `body`.
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Result<(u16, Value)> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            h.push(("Authorization", a.as_str()));
        }
        let body = (method != "GET").then_some(body);
        send(
            &self.agent,
            method,
            &format!("{}{path}", self.base),
            &h,
            body,
        )
    }
}

/// Rank of a role in the table: read < operate < admin.
fn rank(role: &str) -> u8 {
    match role {
        "read" => 0,
        "operate" => 1,
        "admin" => 2,
        _ => 3,
    }
}

/// Every route of the API, with the role it needs (`None`: open). Requests name an
/// unknown source or id, so an allowed one is answered by its handler (404, 200, 409)
/// and nothing is started.
const ROUTES: &[(&str, &str, &str, Option<&str>)] = &[
    ("GET", "/healthz", "", None),
    ("GET", "/metrics", "", Some("read")),
    ("GET", "/v1/sources", "", Some("read")),
    ("GET", "/v1/nodes", "", Some("read")),
    ("GET", "/v1/sources/nosuch", "", Some("read")),
    ("GET", "/v1/sources/nosuch/binlogs", "", Some("read")),
    ("POST", "/v1/sources/nosuch/restart", "", Some("operate")),
    (
        "POST",
        "/v1/sources/nosuch/binlogs/f.000001/check",
        "",
        Some("operate"),
    ),
    (
        "POST",
        "/v1/sources/nosuch/archive/scrub",
        "",
        Some("operate"),
    ),
    (
        "GET",
        "/v1/sources/nosuch/lookup?gtid=0-1-1",
        "",
        Some("read"),
    ),
    ("GET", "/v1/sources/nosuch/backups", "", Some("read")),
    ("POST", "/v1/sources/nosuch/backups", "", Some("operate")),
    (
        "POST",
        "/v1/sources/nosuch/backups/retention",
        "",
        Some("admin"),
    ),
    ("GET", "/v1/jobs/nosuch", "", Some("read")),
    (
        "POST",
        "/v1/sources/nosuch/pitr/plan",
        r#"{"target_gtid":"0-1-1"}"#,
        Some("read"),
    ),
    (
        "POST",
        "/v1/sources/nosuch/pitr",
        r#"{"target_gtid":"0-1-1","scratch":true}"#,
        Some("operate"),
    ),
    (
        "POST",
        "/v1/sources/nosuch/pitr",
        r#"{"target_gtid":"0-1-1","url":"mysql://root@127.0.0.1:3306"}"#,
        Some("admin"),
    ),
    ("GET", "/v1/pitr/nosuch", "", Some("read")),
    ("DELETE", "/v1/pitr/nosuch", "", Some("admin")),
    (
        "POST",
        "/v1/sources/nosuch/verifications",
        "",
        Some("operate"),
    ),
    ("GET", "/v1/verifications", "", Some("read")),
    ("GET", "/v1/verifications/nosuch", "", Some("read")),
    ("GET", "/v1/verifications/summary", "", Some("read")),
];

/// Tokens and roles: every route without a token is 401 (but /healthz), with an unknown
/// token 401, and each role can do exactly what the table says; the tokens file is
/// re-read when it changes (a revoked token is refused at once after).
#[test]
fn every_route_needs_the_role_its_table_says() -> Result<()> {
    let s = secured("")?;
    for (method, path, body, need) in ROUTES {
        let (code, v) = s.call(method, path, None, body)?;
        match need {
            None => assert_eq!(code, 200, "{method} {path} is open: {v}"),
            Some(_) => assert_eq!(code, 401, "{method} {path} without a token: {v}"),
        }
        let (code, _) = s.call(method, path, Some("bls_0000"), body)?;
        if need.is_some() {
            assert_eq!(code, 401, "{method} {path} with an unknown token");
        }
        for role in ["read", "operate", "admin"] {
            let (code, v) = s.call(method, path, Some(s.token(role)), body)?;
            let allowed = need.is_none_or(|n| rank(role) >= rank(n));
            if allowed {
                assert!(
                    code != 401 && code != 403,
                    "{method} {path} as {role} is allowed, got {code}: {v}"
                );
            } else {
                assert_eq!(code, 403, "{method} {path} as {role} is refused: {v}");
                assert!(v["error"].as_str().is_some(), "{v}");
            }
        }
    }
    // Revocation: the file without the read token; the service re-reads it.
    let text = std::fs::read_to_string(&s.tokens_file)?;
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("read ")).collect();
    std::fs::write(&s.tokens_file, kept.join("\n") + "\n")?;
    let revoked = wait_for("the read token is revoked", Duration::from_secs(10), || {
        let (code, _) = s.call("GET", "/v1/sources", Some(s.token("read")), "")?;
        Ok((code == 401).then_some(()))
    });
    revoked?;
    let (code, _) = s.call("GET", "/v1/sources", Some(s.token("admin")), "")?;
    assert_eq!(code, 200, "the other tokens still work");
    let log = std::fs::read_to_string(s.server.log_path())?;
    for (_, t) in &s.tokens {
        assert!(!log.contains(t.as_str()), "a token appears in the log");
    }
    Ok(())
}

/// A token limited to some sources (`sources = [...]` on its tokens-file line) reaches
/// only those: the list shows its sources, another source's routes are 403, routes that
/// span every source are 403, and a job id it cannot see is 404.
#[test]
fn a_token_limited_to_sources_reaches_only_those() -> Result<()> {
    use sha2::{Digest, Sha256};
    let s = secured("")?;
    let line = |role: &str, name: &str, token: &str, sources: &str| {
        format!(
            "{role} {name} sha256:{}   sources = {sources}\n",
            hex::encode(Sha256::digest(token.as_bytes()))
        )
    };
    let (mine, theirs) = ("bls_team_arch_0123456789", "bls_team_other_0123456789");
    let mut text = std::fs::read_to_string(&s.tokens_file)?;
    text.push_str(&line("operate", "team-arch", mine, "[\"arch\"]"));
    text.push_str(&line(
        "admin",
        "team-other",
        theirs,
        "[\"other\", \"more\"]",
    ));
    std::fs::write(&s.tokens_file, text)?;
    wait_for(
        "the limited tokens are read",
        Duration::from_secs(10),
        || {
            let (code, _) = s.call("GET", "/v1/sources", Some(mine), "")?;
            Ok((code == 200).then_some(()))
        },
    )?;

    let names = |token: &str| -> Result<Vec<String>> {
        let (code, v) = s.call("GET", "/v1/sources", Some(token), "")?;
        assert_eq!(code, 200, "{v}");
        Ok(v.as_array()
            .context("a list")?
            .iter()
            .filter_map(|x| x["name"].as_str().map(str::to_string))
            .collect())
    };
    assert_eq!(names(mine)?, ["arch"]);
    assert!(
        names(theirs)?.is_empty(),
        "another team's sources are not listed"
    );
    assert_eq!(names(s.token("read"))?, ["arch"]);

    for path in ["/v1/sources/arch", "/v1/sources/arch/binlogs"] {
        let (code, v) = s.call("GET", path, Some(mine), "")?;
        assert_eq!(code, 200, "{path}: {v}");
        let (code, v) = s.call("GET", path, Some(theirs), "")?;
        assert_eq!(code, 403, "{path}: {v}");
        let msg = v["error"].as_str().unwrap_or("");
        assert!(
            msg.contains("team-other") && msg.contains("\"arch\""),
            "{msg}"
        );
    }
    let (code, v) = s.call("POST", "/v1/sources/arch/restart", Some(theirs), "{}")?;
    assert_eq!(code, 403, "even an admin token of another team: {v}");
    for path in [
        "/metrics",
        "/v1/nodes",
        "/v1/verifications",
        "/v1/verifications/summary",
    ] {
        let (code, v) = s.call("GET", path, Some(mine), "")?;
        assert_eq!(code, 403, "{path} spans every source: {v}");
        let (code, v) = s.call("GET", path, Some(s.token("read")), "")?;
        assert_eq!(code, 200, "{path} for an unlimited token: {v}");
    }
    let (code, v) = s.call("GET", "/v1/pitr/no-such-job", Some(mine), "")?;
    assert_eq!(code, 404, "{v}");
    Ok(())
}

/// Cross-site requests and media types: a POST without `Content-Type:
/// application/json` is 415 (also with an empty body), a foreign `Origin` or
/// `Sec-Fetch-Site: cross-site` 403, a DNS-rebinding `Host` 403; every rejection axum
/// makes is JSON (400, 404, 405, 413, 422); curl reaches the API over HTTPS.
#[test]
fn cross_site_media_type_json_errors_and_https() -> Result<()> {
    let s = secured("")?;
    let admin = format!("Bearer {}", s.token("admin"));
    let url = |p: &str| format!("{}{p}", s.base);
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        let mut h = vec![("Authorization", admin.as_str())];
        h.extend_from_slice(headers);
        send(&s.agent, "POST", &url(path), &h, Some(body))
    };
    let (code, v) = post("/v1/sources/arch/archive/scrub", &[], "")?;
    assert_eq!(code, 415, "no Content-Type: {v}");
    let (code, v) = post(
        "/v1/sources/arch/restart",
        &[("Content-Type", "text/plain")],
        "{}",
    )?;
    assert_eq!(code, 415, "text/plain: {v}");
    let json_ct = ("Content-Type", "application/json");
    let (code, v) = post(
        "/v1/sources/arch/restart",
        &[json_ct, ("Origin", "https://evil.example.net")],
        "",
    )?;
    assert_eq!(code, 403, "foreign Origin: {v}");
    let (code, v) = post(
        "/v1/sources/arch/restart",
        &[json_ct, ("Sec-Fetch-Site", "cross-site")],
        "",
    )?;
    assert_eq!(code, 403, "cross-site fetch: {v}");
    let (code, v) = post(
        "/v1/sources/arch/restart",
        &[json_ct, ("Host", "rebind.evil.example.net")],
        "",
    )?;
    assert_eq!(code, 403, "a foreign Host name: {v}");
    let (code, v) = post(
        "/v1/sources/arch/restart",
        &[json_ct, ("Origin", s.base.as_str())],
        "",
    )?;
    assert_eq!(
        code, 409,
        "same origin is fine (the source is not failed): {v}"
    );
    // JSON error bodies for axum's own rejections.
    let (code, _) = post("/v1/sources/arch/backups", &[json_ct], "{not json")?;
    assert_eq!(code, 400, "bad JSON");
    let (code, _) = post(
        "/v1/sources/arch/backups",
        &[json_ct],
        r#"{"incremental": "yes"}"#,
    )?;
    assert_eq!(code, 422, "wrong type");
    let big = format!("{{\"method\": \"{}\"}}", "x".repeat(1_200_000));
    let (code, _) = post("/v1/sources/arch/backups", &[json_ct], &big)?;
    assert_eq!(code, 413, "a 1.2 MB body");
    let (code, _) = send(
        &s.agent,
        "PUT",
        &url("/v1/sources"),
        &[("Authorization", admin.as_str()), json_ct],
        Some("{}"),
    )?;
    assert_eq!(code, 405, "PUT");
    let (code, _) = send(
        &s.agent,
        "GET",
        &url("/v1/nothing"),
        &[("Authorization", admin.as_str())],
        None,
    )?;
    assert_eq!(code, 404);
    let (code, _) = send(
        &s.agent,
        "GET",
        &url("/v1/verifications?days=many"),
        &[("Authorization", admin.as_str())],
        None,
    )?;
    assert_eq!(code, 400, "bad query string");
    // curl over HTTPS, trusting the self-signed certificate.
    let curl = require_tool("curl");
    let out = Command::new(curl)
        .args(["-sS", "--fail", "--cacert"])
        .arg(&s.cert)
        .args(["-H", &format!("Authorization: Bearer {}", s.token("read"))])
        .arg(url("/v1/sources"))
        .output()?;
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v[0]["name"], "arch", "{v}");
    // Plain HTTP to the TLS port is not served.
    let plain = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let r = plain.get(&s.base.replace("https://", "http://")).call();
    assert!(r.is_err(), "plain HTTP was answered");
    Ok(())
}

/// PITR destinations: a URL outside `[pitr] allowed_destinations` is 403 naming the
/// list and starts nothing; a relative datadir, one with `..` or outside the roots 403;
/// a URL with `%0A` in any part 400; `ssl-ca` from a request 400.
#[test]
fn pitr_destinations_come_from_the_allow_list() -> Result<()> {
    let s = secured("")?;
    let admin = Some(s.token("admin"));
    let pitr = |body: Value| s.call("POST", "/v1/sources/arch/pitr", admin, &body.to_string());
    let g = "0-1-1";
    let (code, v) = pitr(json!({"target_gtid": g, "url": "mysql://root@10.9.9.9:3306"}))?;
    assert_eq!(code, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("127.0.0.1:3306"),
        "names the list: {v}"
    );
    let (code, v) = pitr(json!({"target_gtid": g, "url": "mysql://root@127.0.0.1:3307"}))?;
    assert_eq!(code, 403, "another port: {v}");
    let roots = s.dir.join("restore");
    for datadir in [
        "restore/data".to_string(),
        format!("{}/../data", roots.display()),
        "/var/lib/mysql".into(),
        roots.display().to_string(),
    ] {
        let (code, v) = pitr(
            json!({"target_gtid": g, "url": "mysql://root@127.0.0.1:3306", "datadir": datadir}),
        )?;
        assert_eq!(code, 403, "datadir {datadir}: {v}");
    }
    for url in [
        "mysql://root:pw%0Aplugin-dir=/tmp@127.0.0.1:3306",
        "mysql://ro%0Dot@127.0.0.1:3306",
        "mysql://root@127.0.0.1:3306?ssl-mode=REQUIRED%0Adefault-auth=x",
    ] {
        let (code, v) = pitr(json!({"target_gtid": g, "url": url}))?;
        assert_eq!(code, 400, "{url}: {v}");
    }
    let (code, v) = pitr(
        json!({"target_gtid": g, "url": "mysql://root@127.0.0.1:3306?ssl-mode=VERIFY_CA&ssl-ca=/tmp/x.pem"}),
    )?;
    assert_eq!(code, 400, "ssl-ca from a request: {v}");
    let work = s.dir.join("data/pitr");
    let started = std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0);
    assert_eq!(started, 0, "no PITR job was started");
    Ok(())
}

/// The HTTP listener's limits: beyond `max_connections` a connection is closed at once;
/// a client that sends no complete headers within `header_timeout` is disconnected; the
/// API answers again afterwards.
#[test]
fn the_api_caps_connections_and_times_out_slow_headers() -> Result<()> {
    let s = secured("max_connections = 8\nheader_timeout = \"1s\"\n")?;
    let addr = s.base.trim_start_matches("https://").to_string();
    let mut idle = Vec::new();
    for _ in 0..8 {
        let c = std::net::TcpStream::connect(&addr)?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        idle.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut ninth = std::net::TcpStream::connect(&addr)?;
    ninth.set_read_timeout(Some(Duration::from_secs(5)))?;
    let t = Instant::now();
    let mut b = [0u8; 1];
    let n = ninth.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "the 9th connection is closed");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "closed at once, not after a timeout"
    );
    // A slowloris: half a TLS hello, then nothing.
    for c in idle.iter_mut() {
        c.write_all(&[0x16, 0x03, 0x01])?;
    }
    std::thread::sleep(Duration::from_millis(1500));
    for (i, c) in idle.iter_mut().enumerate() {
        let n = c.read(&mut b).unwrap_or(0);
        assert_eq!(n, 0, "idle connection {i} was closed after header_timeout");
    }
    let (code, _) = s.call("GET", "/v1/sources", Some(s.token("read")), "")?;
    assert_eq!(code, 200);
    Ok(())
}

/// Configurations that would expose the archive are refused at start: a non-loopback
/// API without tokens, a non-loopback fake primary without TLS (unless
/// `allow_plaintext`), an empty replication password, a bad allow-list entry.
#[test]
fn unsafe_configurations_are_refused_at_start() -> Result<()> {
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let head = format!(
        "data_dir = {}\n",
        toml_string(data.to_str().context("utf-8")?)
    );
    let src = "[[source]]\nname = \"a\"\nurl = \"mysql://repl:x@127.0.0.1:1\"\nserver_id = 7\ncapture = false\n";
    let cases: &[(&str, &str, &str)] = &[
        ("[http]\nlisten = \"0.0.0.0:7480\"\n", "", "http.listen"),
        (
            "",
            "[source.replication]\nlisten = \"0.0.0.0:3307\"\nuser = \"r\"\npassword = \"p\"\n",
            "listen",
        ),
        (
            "",
            "[source.replication]\nlisten = \"3307\"\nuser = \"r\"\npassword = \"\"\n",
            "password",
        ),
        (
            "[pitr]\nallowed_destinations = [\"10.0.0.0/40:3306\"]\n",
            "",
            "allowed_destinations",
        ),
    ];
    for (i, (top, repl, key)) in cases.iter().enumerate() {
        let cfg = work.path().join(format!("c{i}.toml"));
        std::fs::write(&cfg, format!("{head}{top}{src}{repl}"))?;
        let (code, _, err) = cli(&["check-config", "--config", cfg.to_str().context("utf-8")?])?;
        assert_eq!(code, 2, "case {i} is refused: {err}");
        assert!(err.contains(key), "case {i} names {key}: {err}");
    }
    let ok = work.path().join("ok.toml");
    std::fs::write(
        &ok,
        format!("{head}{src}[source.replication]\nlisten = \"0.0.0.0:3307\"\nuser = \"r\"\npassword = \"p\"\nallow_plaintext = true\n"),
    )?;
    let (code, _, err) = cli(&["check-config", "--config", ok.to_str().context("utf-8")?])?;
    assert_eq!(code, 0, "allow_plaintext = true: {err}");
    Ok(())
}

/// Raises this process's open-file limit to its hard limit (the test holds 2,000 sockets).
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// `mariadb` as `user`/`password` to the fake primary on `port` over TLS: exit code and
/// stderr, and how long it took.
fn mariadb_login(
    port: u16,
    password: &str,
    ca: &Path,
    tls: bool,
) -> Result<(i32, String, Duration)> {
    let mut cmd = Command::new(require_tool("mariadb"));
    cmd.args(["--protocol=TCP", "-h", "127.0.0.1", "-P", &port.to_string()])
        .args([
            "-u",
            REPL_USER,
            &format!("-p{password}"),
            "--connect-timeout=20",
            "-e",
            "SELECT 1",
        ]);
    if tls {
        cmd.arg("--ssl").arg(format!("--ssl-ca={}", ca.display()));
    } else {
        cmd.arg("--skip-ssl");
    }
    let t = Instant::now();
    let out = cmd.output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t.elapsed(),
    ))
}

/// The fake primary under attack, with TLS: 2,000 idle TCP connections (the first 64 hold
/// the sessions, the rest get ERROR 1040 and are closed), while capture keeps streaming
/// and a real MariaDB replica with MASTER_SSL=1 connects once the idle handshakes time out
/// and replicates; a plain login is refused (3159), a wrong password too (1045), and 20
/// wrong passwords in a row are slowed down.
#[test]
fn the_fake_primary_survives_idle_floods_and_serves_a_tls_replica() -> Result<()> {
    raise_nofile();
    let certs = tempfile::tempdir()?;
    let (cert, key) = self_signed(certs.path())?;
    let port = free_port();
    let sb = Sandbox::builder(server_bin())
        .source_replication(port)
        .replication_toml(&format!(
            "tls_cert = {}\ntls_key = {}\n",
            toml_string(cert.to_str().context("utf-8")?),
            toml_string(key.to_str().context("utf-8")?)
        ))
        .setup(|db| {
            db.sql("CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(64))")?;
            Ok(())
        })
        .start()?;
    let t0 = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        let c = std::net::TcpStream::connect(("127.0.0.1", port))?;
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        idle.push(c);
    }
    // Capture keeps streaming, the API answers.
    for i in 0..50 {
        sb.primary().sql(&format!(
            "INSERT INTO s.t (v) VALUES ('during the flood {i}')"
        ))?;
    }
    sb.wait_caught_up()?;
    sb.server().get_json("/v1/sources")?;
    // A real replica over TLS.
    let replica = MariaDb::start(MariaDbOptions {
        server_id: 901,
        ..Default::default()
    })?;
    replica.sql(&format!(
        "RESET MASTER; CHANGE MASTER TO master_host='127.0.0.1', master_port={port}, \
         master_user='{REPL_USER}', master_password='{REPL_PASSWORD}', master_use_gtid=slave_pos, \
         master_connect_retry=1, master_ssl=1, master_ssl_ca='{}'; START SLAVE;",
        cert.display()
    ))?;
    wait_for(
        "the TLS replica has the rows",
        Duration::from_secs(90),
        || {
            let n = replica
                .sql_value("SELECT COUNT(*) FROM s.t")
                .unwrap_or_default();
            Ok((n.trim() == "50").then_some(()))
        },
    )
    .with_context(|| replica.sql("SHOW SLAVE STATUS\\G").unwrap_or_default())?;
    // (The listener refuses plain logins, asserted below: the replica used TLS.)
    // Every idle connection is closed by now or within the handshake timeout.
    let mut b = [0u8; 4096];
    for (i, c) in idle.iter_mut().enumerate() {
        loop {
            match c.read(&mut b) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => bail!("idle connection {i} was not closed: {e}"),
            }
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(60), "closed in time");
    // Logins: plain refused, wrong password refused, the right one accepted.
    let (code, err, _) = mariadb_login(port, REPL_PASSWORD, &cert, false)?;
    assert_ne!(code, 0, "a plain login is refused");
    assert_eq!(client_error_code(&err), Some(3159), "{err}");
    let (code, _, _) = mariadb_login(port, REPL_PASSWORD, &cert, true)?;
    assert_eq!(code, 0, "the right password over TLS logs in");
    let mut times = Vec::new();
    for _ in 0..20 {
        let (code, err, took) = mariadb_login(port, "wrong", &cert, true)?;
        assert_ne!(code, 0, "a wrong password is refused");
        assert_eq!(client_error_code(&err), Some(1045), "{err}");
        times.push(took);
    }
    assert!(
        times[0] < Duration::from_millis(900),
        "the first failure is not delayed: {times:?}"
    );
    assert!(
        times[19] >= Duration::from_secs(1) && times[19] > times[0] * 2,
        "the 20th failure in a row is slowed down: {times:?}"
    );
    replica.sql("STOP SLAVE")?;
    Ok(())
}
