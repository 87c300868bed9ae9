//! The archive tier against a real MariaDB primary: every binlog shipped to the archive
//! store (a local directory, and moto's S3-compatible server), compressed, encrypted
//! when a key file is configured, and read back byte-identical with `binlog-server
//! archive get`.
//!
//! Run: `bash scripts/setup.sh && cargo test -p binlog-tests --test archive`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use binlog_tests::*;

fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_binlog-server-under-test"))
}

/// `binlog-server archive <args>` with `env`: (exit ok, stdout, stderr).
fn archive_cmd(args: &[&str], env: &[(&str, &str)]) -> Result<(bool, String, String)> {
    let out = Command::new(server_bin())
        .arg("archive")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .context("run binlog-server archive")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Waits until every closed file of the primary is in the store whole (`location` both,
/// or store once evicted)
/// and the archive lag is 0; returns the source's `archive` status.
fn wait_shipped(sb: &Sandbox) -> Result<serde_json::Value> {
    let db = sb.primary();
    let files = db.binlog_files()?;
    let closed: Vec<String> = files
        .iter()
        .take(files.len().saturating_sub(1))
        .map(|(n, _)| n.clone())
        .collect();
    let src = sb.source().to_string();
    wait_for(
        "every closed binlog in the archive store, lag 0",
        Duration::from_secs(90),
        || {
            let b = sb
                .server()
                .get_json(&format!("/v1/sources/{src}/binlogs"))?;
            let whole = |name: &str| {
                b["files"].as_array().is_some_and(|a| {
                    a.iter().any(|f| {
                        f["name"] == name && (f["location"] == "both" || f["location"] == "store")
                    })
                })
            };
            let st = sb.server().get_json(&format!("/v1/sources/{src}"))?;
            let lag = st["archive"]["lag_bytes"].as_u64();
            Ok((closed.iter().all(|n| whole(n)) && lag == Some(0)).then_some(st))
        },
    )
    .with_context(|| sb.server().log_tail(30))
    .map(|st| st["archive"].clone())
}

/// Fetches every closed file with `archive get` and compares it with the primary's.
fn assert_closed_files_identical(sb: &Sandbox, env: &[(&str, &str)]) -> Result<usize> {
    let db = sb.primary();
    let files = db.binlog_files()?;
    let out = tempfile::tempdir()?;
    let cfg = sb.config_path().to_str().context("utf-8")?.to_string();
    let mut n = 0;
    for (name, _) in files.iter().take(files.len() - 1) {
        let (ok, stdout, stderr) = archive_cmd(
            &[
                "get",
                "--config",
                &cfg,
                sb.source(),
                name,
                "--out",
                out.path().to_str().context("utf-8")?,
            ],
            env,
        )?;
        if !ok {
            bail!("archive get {name}: {stderr}");
        }
        assert!(stdout.contains(name), "{stdout}");
        let got = std::fs::read(out.path().join(name))?;
        let want = std::fs::read(db.binlog_path(name))?;
        assert!(
            got == want,
            "{name}: {} bytes from the store, {} in the primary's file, or other bytes",
            got.len(),
            want.len()
        );
        n += 1;
    }
    Ok(n)
}

/// The chunks of the primary's active file in a local store under `bases`, decoded in
/// order: a prefix of the primary's active file (its in-use flag aside), as long as the
/// archive's durable length.
fn assert_active_chunks_are_a_prefix(sb: &Sandbox, bases: &Path) -> Result<()> {
    let db = sb.primary();
    let (active, _) = db.master_status()?;
    let dir = bases
        .join(sb.source())
        .join("binlogs")
        .join(format!("{active}.chunks"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("{} (the active file's chunks)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let ring = Arc::new(objstore::keyring::Keyring::none());
    let mut prefix = Vec::new();
    for n in &names {
        let codec = n
            .rsplit_once('.')
            .map(|(_, c)| c)
            .context("codec in name")?;
        let (range, _) = n.split_once(".e").context("range in name")?;
        let (a, b) = range.split_once('-').context("range")?;
        let (a, b): (usize, usize) = (a.parse()?, b.parse()?);
        assert_eq!(a, prefix.len(), "chunk {n} starts where the previous ended");
        let plain = objstore::codec::decode(&std::fs::read(dir.join(n))?, codec, ring.clone())?;
        assert_eq!(plain.len(), b - a, "chunk {n} holds its range");
        prefix.extend_from_slice(&plain);
    }
    let primary = std::fs::read(db.binlog_path(&active))?;
    assert!(!prefix.is_empty(), "the active file has chunks");
    assert!(prefix.len() <= primary.len());
    let durable = std::fs::metadata(sb.archive_dir(sb.source()).join(&active))?.len() as usize;
    assert_eq!(
        prefix.len(),
        durable,
        "the chunks cover the durable length (lag 0)"
    );
    for (i, (a, b)) in prefix.iter().zip(&primary).enumerate() {
        assert!(
            a == b || i == IN_USE_FLAG_OFFSET,
            "{active}: chunk byte {i} differs from the primary's file"
        );
    }
    Ok(())
}

/// Under a write load with rotations and `kill -9` of binlog-server in between, every
/// closed binlog reaches the local store whole (zstd) and decodes to the primary's
/// bytes; the active file's chunks are a prefix of it; upload amplification at most 2.
#[test]
fn every_binlog_reaches_a_local_store_byte_identical_across_kill9() -> Result<()> {
    let mut sb = Sandbox::builder(server_bin())
        .local_base_store()
        .extra_toml("[archive]\nship_interval = \"200ms\"\n")
        .start()?;
    let writes = WriteLoad::start(
        sb.primary(),
        WriteLoadOptions {
            max_duration: Duration::from_secs(60),
            ..Default::default()
        },
    )?;
    for round in 0..4u64 {
        std::thread::sleep(Duration::from_millis(1200 + 300 * (round % 2)));
        if round % 2 == 0 {
            sb.primary().flush_binary_logs()?;
        }
        sb.server_mut().kill9()?;
        std::thread::sleep(Duration::from_millis(200));
        let s = ServerProcess::start(&server_bin(), sb.config_path(), sb.http_addr())?;
        *sb.server_mut() = s;
    }
    std::thread::sleep(Duration::from_secs(1));
    let n = writes.stop()?;
    assert!(n > 50, "the load wrote only {n} transactions");
    sb.primary().flush_binary_logs()?;
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), sb.source(), Duration::from_secs(90))?;
    let st = wait_shipped(&sb)?;
    let closed = assert_closed_files_identical(&sb, &[])?;
    assert!(closed >= 3, "{closed} closed files");
    let bases = sb.bases_dir().context("local base store")?.to_path_buf();
    assert_active_chunks_are_a_prefix(&sb, &bases)?;
    // The closed files' chunks are gone once their whole objects are recorded (those a
    // crash left without a row too).
    let names: Vec<String> = sb
        .primary()
        .binlog_files()?
        .into_iter()
        .take(closed)
        .map(|(n, _)| n)
        .collect();
    // A write that kill -9 interrupted leaves the local store's staging file
    // (`<key>#<n>`, object_store's LocalFileSystem), which is no object: not counted.
    let left = |name: &str| {
        let chunks = bases
            .join(sb.source())
            .join("binlogs")
            .join(format!("{name}.chunks"));
        std::fs::read_dir(&chunks)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| !e.file_name().to_string_lossy().contains('#'))
                    .count()
            })
            .unwrap_or(0)
    };
    let r = wait_for(
        "the closed files' chunks retired",
        Duration::from_secs(20),
        || Ok(names.iter().all(|n| left(n) == 0).then_some(())),
    );
    for n in &names {
        assert_eq!(
            left(n),
            0,
            "{n}: chunks left after the whole object ({r:?})"
        );
    }
    // This process's figures (the last start): at most 2 uploads per binlog byte.
    if let Some(a) = st["amplification"].as_f64() {
        assert!(a <= 2.0 + 1e-9, "upload amplification {a}: {st}");
    }
    assert!(
        st["stored_bytes"].as_u64() <= st["uploaded_bytes"].as_u64(),
        "zstd never grows: {st}"
    );
    let metrics = sb.server().get_text("/metrics")?.1;
    assert!(
        metrics.contains("binlog_server_archive_lag_bytes"),
        "{metrics}"
    );
    Ok(())
}

/// An S3-compatible store with zstd and encryption: a known string written on the
/// primary is in no object of the bucket; `archive get` with the key gives the primary's
/// files; with another key file it fails naming the object's key id; the whole-file
/// objects carry their plaintext SHA-256 as metadata.
#[test]
fn an_encrypted_s3_archive_hides_the_data_and_names_a_wrong_key() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let moto = Moto::start()?;
    moto.create_bucket("arch")?;
    for (k, v) in S3_TEST_ENV {
        std::env::set_var(k, v);
    }
    let keys = tempfile::tempdir()?;
    let key_file = keys.path().join("archive.key");
    std::fs::write(&key_file, format!("2026-12 {}\n", "5a".repeat(32)))?;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
    let archive = format!(
        "[archive]\nstore = \"s3://arch/pre\"\ns3_endpoint = {}\ns3_allow_http = true\n\
         ship_interval = \"200ms\"\nencryption_key_file = {}\n",
        toml_string(&moto.endpoint()),
        toml_string(key_file.to_str().context("utf-8")?)
    );
    let secret = "archive-secret-7f3a9c";
    let sb = Sandbox::builder(server_bin())
        .local_base_store()
        .extra_toml(&archive)
        .setup(move |db| {
            db.sql(
                "CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT)",
            )?;
            Ok(())
        })
        .start()?;
    let db = sb.primary();
    for i in 0..30 {
        db.sql(&format!("INSERT INTO s.t (v) VALUES ('{secret} {i}')"))?;
        if i % 10 == 9 {
            db.flush_binary_logs()?;
        }
    }
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), sb.source(), Duration::from_secs(60))?;
    wait_shipped(&sb)?;
    // Nothing in the bucket shows the string, in any object (files, chunks, manifests):
    // read with the store client, signed (moto refuses anonymous reads of some objects).
    let bucket = moto_bucket(&moto, "arch")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let keys_in_bucket = rt.block_on(bucket.list("pre"))?;
    assert!(
        keys_in_bucket
            .iter()
            .any(|(k, _)| k.ends_with(".manifest.json")),
        "{keys_in_bucket:?}"
    );
    for (k, _) in &keys_in_bucket {
        let bytes = rt.block_on(bucket.get_bytes(k, 256 << 20))?;
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{k} holds the plaintext"
        );
    }
    // Whole-file objects carry their plaintext SHA-256.
    let files = db.binlog_files()?;
    let first = &files[0].0;
    let meta = rt.block_on(bucket.metadata_of(&format!("pre/{}/binlogs/{first}", sb.source())))?;
    let sha = meta
        .iter()
        .find(|(k, _)| k == "sha256")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        sha,
        Some(sha256_file(&db.binlog_path(first))?.as_str()),
        "{meta:?}"
    );
    assert!(
        meta.iter().any(|(k, v)| k == "key-id" && v == "2026-12"),
        "the key id in the object's metadata: {meta:?}"
    );
    // Read back with the key: the primary's bytes.
    let closed = assert_closed_files_identical(&sb, &S3_TEST_ENV)?;
    assert!(closed >= 3);
    // With another key file: a clear error naming the key id, no file written.
    let other = keys.path().join("other.key");
    std::fs::write(&other, format!("2027-01 {}\n", "6b".repeat(32)))?;
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600))?;
    let cfg = std::fs::read_to_string(sb.config_path())?.replace(
        key_file.to_str().context("utf-8")?,
        other.to_str().context("utf-8")?,
    );
    let wrong_cfg = keys.path().join("wrong.toml");
    std::fs::write(&wrong_cfg, cfg)?;
    let out = tempfile::tempdir()?;
    let (ok, _, stderr) = archive_cmd(
        &[
            "get",
            "--config",
            wrong_cfg.to_str().context("utf-8")?,
            sb.source(),
            first,
            "--out",
            out.path().to_str().context("utf-8")?,
        ],
        &S3_TEST_ENV,
    )?;
    assert!(!ok, "a wrong key must fail");
    assert!(
        stderr.contains("\"2026-12\""),
        "names the object's key id: {stderr}"
    );
    assert!(
        !out.path().join(first).exists(),
        "nothing written with a wrong key"
    );
    Ok(())
}

/// With `local_retention = "0s"`, closed binlogs leave the local disk once the store holds
/// them; then a PITR into a scratch instance, a restore verification and
/// `mariadb-binlog --raw --to-last-log` through the fake primary all read them back from
/// the store, without knowing where they came from: the checkpoint's table checksums,
/// a passed verification, and the primary's files byte for byte.
#[test]
fn evicted_binlogs_are_read_back_for_pitr_verification_and_replicas() -> Result<()> {
    let fake_port = free_port();
    let sb = Sandbox::builder(server_bin())
        .local_base_store()
        .source_backup(SourceBackup::physical())
        .source_replication(fake_port)
        .source_verify("day = \"sun\"\nstart = \"03:00\"\nchain_timeout = \"5m\"")
        .extra_toml("[archive]\nship_interval = \"200ms\"\nlocal_retention = \"0s\"\n")
        .setup(|db| {
            db.sql(
                "CREATE TABLE test.t1 (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)); \
                 CREATE TABLE test.t2 (id INT PRIMARY KEY, n INT)",
            )?;
            db.sql("INSERT INTO test.t2 VALUES (1, 0), (2, 0)")?;
            Ok(())
        })
        .start()?;
    let db = sb.primary();
    let base = sb.take_base(sb.source())?;
    let burst = |tag: &str, n: usize| -> Result<()> {
        let mut sql = String::new();
        for i in 0..n {
            sql.push_str(&format!(
                "BEGIN; INSERT INTO test.t1 (v) VALUES ('{tag}-{i}'); UPDATE test.t2 SET n = n + 1 WHERE id = {}; COMMIT;\n",
                1 + i % 2
            ));
        }
        db.sql(&sql).map(|_| ())
    };
    for round in 0..4 {
        burst(&format!("r{round}"), 100)?;
        db.flush_binary_logs()?;
    }
    burst("checkpoint", 20)?;
    let gtid = db.gtid_binlog_pos()?;
    let sums = db.table_checksums(&["test"])?;
    db.flush_binary_logs()?;
    burst("after", 10)?;
    db.flush_binary_logs()?;
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), sb.source(), Duration::from_secs(60))?;
    // Every closed file but the two newest leaves the disk.
    let src = sb.source().to_string();
    let evicted = wait_for("closed binlogs evicted", Duration::from_secs(60), || {
        let b = sb
            .server()
            .get_json(&format!("/v1/sources/{src}/binlogs"))?;
        let n = b["files"]
            .as_array()
            .map(|a| a.iter().filter(|f| f["location"] == "store").count())
            .unwrap_or(0);
        Ok((n >= 4).then_some(n))
    })
    .with_context(|| sb.server().log_tail(30))?;
    for (name, _) in db.binlog_files()?.iter().take(evicted) {
        assert!(
            !sb.archive_dir(&src).join(name).exists(),
            "{name} is still on the local disk"
        );
    }
    eprintln!("{evicted} binlogs evicted; base {}", base.id);

    // PITR into a scratch instance, to the checkpoint's GTID.
    let mut jobs = PitrJobs::new(sb.server());
    let (code, v) = sb.server().post_json(
        &format!("/v1/sources/{src}/pitr"),
        &serde_json::json!({"target_gtid": gtid, "scratch": true}),
    )?;
    assert_eq!(code, 202, "{v:#}");
    let id = v["id"].as_str().context("job id")?.to_string();
    jobs.add(&id);
    let j = wait_for("PITR job", Duration::from_secs(600), || {
        let j = sb.server().get_json(&format!("/v1/pitr/{id}"))?;
        let p = j["phase"].as_str().unwrap_or_default().to_string();
        Ok((p == "done" || p == "failed").then_some(j))
    })?;
    assert_eq!(j["phase"], "done", "{j:#}");
    let socket = j["restored"]["socket"].as_str().context("socket")?;
    assert_eq!(checksums_socket(socket)?, sums, "the checkpoint's tables");
    let (code, _) = jobs.delete(&id)?;
    assert_eq!(code, 200);

    // A restore verification over the evicted range.
    let (code, r) = sb.server().post_json(
        &format!("/v1/sources/{src}/verifications"),
        &serde_json::json!({}),
    )?;
    assert_eq!(code, 202, "{r:#}");
    let vid = r["id"].as_str().context("id")?.to_string();
    let r = wait_for("verification", Duration::from_secs(600), || {
        let r = sb.server().get_json(&format!("/v1/verifications/{vid}"))?;
        Ok((r["outcome"] != "running").then_some(r))
    })?;
    assert_eq!(r["outcome"], "passed", "{r:#}");

    // A stock client through the fake primary: every file, evicted ones included.
    let files = db.binlog_files()?;
    let out = tempfile::tempdir()?;
    mariadb_binlog_raw(
        fake_port,
        &files[0].0,
        out.path(),
        &[],
        Duration::from_secs(120),
    )?;
    let active = files.last().map(|(n, _)| n.clone());
    for (name, _) in &files {
        let got = std::fs::read(out.path().join(name)).with_context(|| format!("no {name}"))?;
        let want = std::fs::read(db.binlog_path(name))?;
        let same = got.len() == want.len()
            && got.iter().zip(&want).enumerate().all(|(i, (a, b))| {
                a == b || (Some(name) == active.as_ref() && i == IN_USE_FLAG_OFFSET)
            });
        assert!(
            same,
            "{name} through the fake primary differs from the primary's"
        );
    }
    let cached = std::fs::read_dir(sb.data_dir().join("cache").join(&src))?.count();
    assert!(
        cached >= 1,
        "evicted files were read back through the cache"
    );
    a_large_evicted_file_streams_while_it_is_fetched(&sb, fake_port)
}

/// A replica asking first for a large evicted file (about 24 MiB, not prefetched since
/// no earlier file was read) gets its first events while the rest is still being
/// fetched from the store, and every byte of it is the primary's.
fn a_large_evicted_file_streams_while_it_is_fetched(sb: &Sandbox, fake_port: u16) -> Result<()> {
    let db = sb.primary();
    let src = sb.source().to_string();
    // One transaction of 24 rows of about 1 MiB (distinct MD5s: they compress only
    // about 2x), so one file of about 24 MiB however small max_binlog_size is.
    db.sql(
        "CREATE TABLE test.big (id INT AUTO_INCREMENT PRIMARY KEY, v LONGTEXT); \
         SET SESSION group_concat_max_len = 4194304; \
         INSERT INTO test.big (v) SELECT GROUP_CONCAT(MD5(s.seq * 100 + k.seq) SEPARATOR '') \
           FROM test.seq_1_to_32768 AS s JOIN test.seq_1_to_24 AS k GROUP BY k.seq;",
    )?;
    // The file rotated right after the transaction: the largest one holds it.
    let (big, size) = db
        .binlog_files()?
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .context("binlogs")?;
    anyhow::ensure!(
        size > 20 << 20,
        "{big} holds {size} bytes, not a large file"
    );
    for _ in 0..2 {
        db.flush_binary_logs()?;
        db.sql("INSERT INTO test.t2 VALUES (3, 0) ON DUPLICATE KEY UPDATE n = n + 1")?;
    }
    sb.wait_caught_up()?;
    wait_for("the large file evicted", Duration::from_secs(120), || {
        let b = sb
            .server()
            .get_json(&format!("/v1/sources/{src}/binlogs"))?;
        let evicted = b["files"].as_array().is_some_and(|a| {
            a.iter()
                .any(|f| f["name"] == big.as_str() && f["location"] == "store")
        });
        Ok(evicted.then_some(()))
    })
    .with_context(|| sb.server().log_tail(30))?;
    let out = tempfile::tempdir()?;
    mariadb_binlog_raw(fake_port, &big, out.path(), &[], Duration::from_secs(120))?;
    let got = std::fs::read(out.path().join(&big)).with_context(|| format!("no {big}"))?;
    let want = std::fs::read(db.binlog_path(&big))?;
    assert!(
        got == want,
        "{big} ({} bytes) through the fake primary differs from the primary's ({} bytes)",
        got.len(),
        want.len()
    );
    let streamed = grep_file(
        sb.server().log_path(),
        "sending an evicted binlog while it is fetched",
    )?;
    for l in &streamed {
        eprintln!("{l}");
    }
    assert!(
        streamed.iter().any(|l| l.contains(big.as_str())),
        "{big} was sent only once fetched whole; the log says:\n{}",
        sb.server().log_tail(30)
    );
    Ok(())
}

/// The S3-compatible store hangs (moto frozen with SIGSTOP) for 60 s under a write load:
/// capture goes on locally and stays caught up, the backlog shows in the API as a growing
/// lag, and once the store answers again shipping catches up (lag back to 0) with every
/// closed binlog byte-identical in the store.
#[test]
fn a_store_outage_under_load_loses_nothing_and_shows_as_lag() -> Result<()> {
    let moto = Moto::start()?;
    moto.create_bucket("arch")?;
    for (k, v) in S3_TEST_ENV {
        std::env::set_var(k, v);
    }
    let archive = format!(
        "[archive]\nstore = \"s3://arch/out\"\ns3_endpoint = {}\ns3_allow_http = true\nship_interval = \"200ms\"\n",
        toml_string(&moto.endpoint())
    );
    let sb = Sandbox::builder(server_bin())
        .local_base_store()
        .extra_toml(&archive)
        .start()?;
    let src = sb.source().to_string();
    let writes = WriteLoad::start(
        sb.primary(),
        WriteLoadOptions {
            max_duration: Duration::from_secs(100),
            // Bounded, so that catching up through moto (a Python server) stays short.
            max_txns: 20_000,
            ..Default::default()
        },
    )?;
    std::thread::sleep(Duration::from_secs(2));
    moto.pause()?;
    let outage = std::time::Instant::now();
    let mut max_lag = (0u64, 0f64);
    let mut flushed = 0;
    while outage.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(5));
        if flushed < 3 {
            sb.primary().flush_binary_logs()?;
            flushed += 1;
        }
        let st = sb.server().get_json(&format!("/v1/sources/{src}"))?;
        let a = &st["archive"];
        max_lag.0 = max_lag.0.max(a["lag_bytes"].as_u64().unwrap_or(0));
        max_lag.1 = max_lag.1.max(a["lag_seconds"].as_f64().unwrap_or(0.0));
        assert_eq!(
            st["state"], "streaming",
            "capture goes on during the outage: {st:#}"
        );
    }
    // Capture kept up with the primary while the store hung.
    sb.wait_caught_up()?;
    moto.resume()?;
    let n = writes.stop()?;
    assert!(n > 50, "the load wrote only {n} transactions");
    assert!(max_lag.0 > 0, "the backlog showed in lag_bytes");
    assert!(
        max_lag.1 >= 20.0,
        "lag_seconds grew during the outage: {max_lag:?}"
    );
    sb.primary().flush_binary_logs()?;
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), &src, Duration::from_secs(90))?;
    let st = wait_shipped(&sb)?;
    eprintln!("after the outage: {st}");
    let closed = assert_closed_files_identical(&sb, &S3_TEST_ENV)?;
    assert!(closed >= 4, "{closed} closed files");
    Ok(())
}

/// Archive retention with `keep_days = 0`: the binlogs entirely before the oldest
/// restorable base's position leave the store, the local disk and the catalog; the
/// base's own file and every later one stay (the report says why), and a PITR plan from
/// that base still works.
#[test]
fn archive_retention_deletes_only_what_no_restorable_base_needs() -> Result<()> {
    let sb = Sandbox::builder(server_bin())
        .local_base_store()
        .source_backup(SourceBackup::logical())
        .extra_toml("[archive]\nship_interval = \"200ms\"\nkeep_days = 0\n")
        .setup(|db| {
            db.sql("CREATE TABLE test.k (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")?;
            Ok(())
        })
        .start()?;
    let db = sb.primary();
    let src = sb.source().to_string();
    for i in 0..3 {
        db.sql(&format!("INSERT INTO test.k (v) VALUES ({i})"))?;
        db.flush_binary_logs()?;
    }
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), &src, Duration::from_secs(60))?;
    let base = sb.take_base(&src)?;
    let rows = sb
        .server()
        .get_json(&format!("/v1/sources/{src}/backups"))?;
    let base_file = rows["oldest_restorable"]["binlog_file"]
        .as_str()
        .context("the base's binlog file")?
        .to_string();
    for i in 0..2 {
        db.sql(&format!("INSERT INTO test.k (v) VALUES ({})", 10 + i))?;
        db.flush_binary_logs()?;
    }
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), &src, Duration::from_secs(60))?;
    // (Retention ran after the base already: the files before it may be gone.)
    let (code, report) = sb.server().post_json(
        &format!("/v1/sources/{src}/backups/retention"),
        &serde_json::json!({}),
    )?;
    assert_eq!(code, 200, "{report:#}");
    let binlogs = &report["binlogs"];
    let kept_base = binlogs["kept"]
        .as_array()
        .and_then(|a| a.iter().find(|k| k["file"] == base_file.as_str()))
        .with_context(|| format!("{base_file} kept: {report:#}"))?;
    assert!(
        kept_base["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&base.id),
        "{kept_base}"
    );
    let order = |n: &str| -> u64 {
        n.rsplit('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let bases_dir = sb.bases_dir().context("local store")?.to_path_buf();
    let listed = sb
        .server()
        .get_json(&format!("/v1/sources/{src}/binlogs"))?;
    let names: Vec<String> = listed["files"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut before = 0;
    for (name, _) in db.binlog_files()? {
        let in_store = bases_dir.join(&src).join("binlogs").join(&name).exists();
        let local = sb.archive_dir(&src).join(&name).exists();
        if order(&name) < order(&base_file) {
            before += 1;
            assert!(
                !in_store && !local,
                "{name} is before the base: deleted everywhere"
            );
            assert!(!names.contains(&name), "{name} forgotten by the catalog");
        } else {
            assert!(local, "{name} is needed by the base: kept locally");
            assert!(names.contains(&name), "{name} still listed");
        }
    }
    assert!(before >= 1, "some binlogs were before the base");
    // A restore from the base still plans.
    let (code, plan) = sb.server().post_json(
        &format!("/v1/sources/{src}/pitr/plan"),
        &serde_json::json!({"target_gtid": db.gtid_binlog_pos()?}),
    )?;
    assert_eq!(code, 200, "{plan:#}");
    Ok(())
}

/// The store client on `bucket` of the test S3 server (5 MiB parts, 2 retries).
fn moto_bucket(moto: &Moto, bucket: &str) -> Result<objstore::store::Store> {
    moto_store(moto, &format!("s3://{bucket}"))
}

/// The store `url` (`s3://bucket[/prefix]`) on `moto`.
fn moto_store(moto: &Moto, url: &str) -> Result<objstore::store::Store> {
    Ok(objstore::store::Store::open(
        &objstore::store::StoreOptions {
            url: url.to_owned(),
            s3_endpoint: Some(moto.endpoint()),
            s3_region: "us-east-1".into(),
            s3_allow_http: true,
            part_size: 5 << 20,
            upload_concurrency: 1,
            retries: 2,
            checksums: true,
        },
    )?)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Node loss: the server is killed, its whole `data_dir` (binlogs, catalog, index,
/// cache) deleted, and a fresh one started against the same store. It rebuilds by itself
/// (bases and binlogs from their manifests, the index from the files, the active file's
/// prefix from its chunks), resumes capture at that exact byte, and ends with every
/// binlog of the primary, byte-identical, nothing missing or twice; files from before the
/// loss stay in the store (not pulled again); a PITR to a time before the loss gives the
/// checkpoint's tables.
#[test]
fn a_lost_node_is_rebuilt_from_the_store_and_resumes() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Bases and binlogs compressed and encrypted; the key file lives off the node.
    let keys = tempfile::tempdir()?;
    let key_file = keys.path().join("archive.key");
    std::fs::write(&key_file, format!("k1 {}\n", "3c".repeat(32)))?;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
    let key_line = format!(
        "encryption_key_file = {}\n",
        toml_string(key_file.to_str().context("utf-8")?)
    );
    let mut sb = Sandbox::builder(server_bin())
        .local_base_store()
        .backup_toml(&key_line)
        .source_backup(SourceBackup::physical())
        .extra_toml(&format!("[archive]\nship_interval = \"200ms\"\n{key_line}"))
        .setup(|db| {
            db.sql(
                "CREATE TABLE test.t1 (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)); \
                 CREATE TABLE test.t2 (id INT PRIMARY KEY, n INT)",
            )?;
            db.sql("INSERT INTO test.t2 VALUES (1, 0), (2, 0)")?;
            Ok(())
        })
        .start()?;
    let base = sb.take_base(sb.source())?;
    let encoded: Vec<String> = base.job["backup"]["objects"]
        .as_array()
        .context("objects")?
        .iter()
        .filter_map(|o| o["key"].as_str().map(str::to_owned))
        .collect();
    assert!(
        encoded
            .iter()
            .any(|k| k.ends_with(".zstd_aes-256-gcm.bsrv")),
        "base objects are compressed and encrypted: {encoded:?}"
    );
    let db = sb.primary();
    let burst = |db: &MariaDb, tag: &str, n: usize| -> Result<()> {
        let mut sql = String::new();
        for i in 0..n {
            sql.push_str(&format!(
                "BEGIN; INSERT INTO test.t1 (v) VALUES ('{tag}-{i}'); UPDATE test.t2 SET n = n + 1 WHERE id = {}; COMMIT;\n",
                1 + i % 2
            ));
        }
        db.sql(&sql).map(|_| ())
    };
    for round in 0..3 {
        burst(db, &format!("r{round}"), 100)?;
        db.flush_binary_logs()?;
    }
    burst(db, "checkpoint", 20)?;
    let t_cp = unix_now();
    let sums = db.table_checksums(&["test"])?;
    while unix_now() <= t_cp + 1 {
        std::thread::sleep(Duration::from_millis(100));
    }
    burst(db, "after", 50)?;
    db.flush_binary_logs()?;
    // The active file at the loss holds transactions only its chunks have in the store.
    burst(db, "active", 40)?;
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), sb.source(), Duration::from_secs(60))?;
    wait_shipped(&sb)?;
    let before: Vec<String> = db.binlog_files()?.into_iter().map(|(n, _)| n).collect();

    // The node is lost: process, binlogs, catalog, index, cache.
    sb.server_mut().kill9()?;
    std::fs::remove_dir_all(sb.data_dir()).context("delete data_dir")?;
    let db = sb.primary();
    burst(db, "while-down", 30)?;
    let s = ServerProcess::start(&server_bin(), sb.config_path(), sb.http_addr())?;
    *sb.server_mut() = s;
    let src = sb.source().to_string();
    let status = wait_for("the rebuild note", Duration::from_secs(120), || {
        let st = sb.server().get_json(&format!("/v1/sources/{src}"))?;
        let noted = st["notes"].as_array().is_some_and(|a| {
            a.iter().any(|n| {
                n.as_str()
                    .is_some_and(|n| n.contains("rebuilt from the archive store"))
            })
        });
        Ok(noted.then_some(st))
    })
    .with_context(|| sb.server().log_tail(40))?;
    eprintln!("{:#}", status["notes"]);
    let db = sb.primary();
    burst(db, "after-rebuild", 30)?;
    db.flush_binary_logs()?;
    burst(db, "tail", 10)?;
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), sb.source(), Duration::from_secs(60))?;
    wait_shipped(&sb)?;

    // Every file of the primary, once, with its size; the closed ones from before the
    // loss served from the store (never pulled again).
    let files = db.binlog_files()?;
    let listed = sb
        .server()
        .get_json(&format!("/v1/sources/{src}/binlogs"))?;
    let listed = listed["files"].as_array().context("files")?.clone();
    let names: Vec<&str> = listed.iter().filter_map(|f| f["name"].as_str()).collect();
    let want: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names, want,
        "the archive lists the primary's files, each once"
    );
    for (f, (name, size)) in listed.iter().zip(&files) {
        assert_eq!(f["size"].as_u64(), Some(*size), "{name}: size");
    }
    let in_store_only = listed.iter().filter(|f| f["location"] == "store").count();
    assert!(
        in_store_only + 2 >= before.len(),
        "files from before the loss stay in the store: {listed:#?}"
    );
    let n = assert_closed_files_identical(&sb, &[])?;
    assert_eq!(n, files.len() - 1);
    let bases = sb
        .server()
        .get_json(&format!("/v1/sources/{src}/backups"))?;
    assert!(
        bases.to_string().contains(&base.id),
        "base {} rebuilt from its manifest: {bases:#}",
        base.id
    );

    // PITR to a time before the loss.
    let mut jobs = PitrJobs::new(sb.server());
    let (code, v) = sb.server().post_json(
        &format!("/v1/sources/{src}/pitr"),
        &serde_json::json!({
            "target_time": replay::pitr::fmt_time(t_cp as i64),
            "scratch": true
        }),
    )?;
    assert_eq!(code, 202, "{v:#}");
    let id = v["id"].as_str().context("job id")?.to_string();
    jobs.add(&id);
    let j = wait_for("PITR job", Duration::from_secs(600), || {
        let j = sb.server().get_json(&format!("/v1/pitr/{id}"))?;
        let p = j["phase"].as_str().unwrap_or_default().to_string();
        Ok((p == "done" || p == "failed").then_some(j))
    })?;
    assert_eq!(j["phase"], "done", "{j:#}");
    let socket = j["restored"]["socket"].as_str().context("socket")?;
    assert_eq!(checksums_socket(socket)?, sums, "the checkpoint's tables");
    let (code, _) = jobs.delete(&id)?;
    assert_eq!(code, 200);
    Ok(())
}

/// Flips one byte in the middle of the object at `path` (a local store's file).
fn damage(path: &Path) -> Result<()> {
    let mut b = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let i = b.len() / 2;
    b[i] ^= 0x5a;
    std::fs::write(path, &b).with_context(|| format!("write {}", path.display()))
}

/// The source's last store scrub once it has `trigger` and covers `file`.
fn wait_scrub(sb: &Sandbox, trigger: &str, file: &str) -> Result<serde_json::Value> {
    let src = sb.source().to_string();
    wait_for(
        &format!("a {trigger} scrub that found {file}"),
        Duration::from_secs(90),
        || {
            let st = sb.server().get_json(&format!("/v1/sources/{src}"))?;
            let r = st["archive"]["last_scrub"].clone();
            let found = r["trigger"] == trigger
                && r["damaged"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x["file"] == file));
            Ok(found.then_some(r))
        },
    )
    .with_context(|| sb.server().log_tail(30))
}

/// Damaged objects in the store: a scrub (asked through the API) finds a flipped byte in
/// a file's object whose local copy is still on disk and in one that was evicted; the
/// first is shipped again from the local copy, the second pulled again from the primary;
/// the damaged bytes are kept aside. A read through the fake primary that meets a
/// damaged evicted object fails, and that read alone gets the object repaired. In the
/// end every closed file decodes from the store to the primary's bytes.
#[test]
fn damaged_objects_are_found_and_replaced_from_a_good_copy() -> Result<()> {
    let fake_port = free_port();
    let sb = Sandbox::builder(server_bin())
        .local_base_store()
        .source_replication(fake_port)
        .extra_toml("[archive]\nship_interval = \"200ms\"\nlocal_retention = \"0s\"\n")
        .setup(|db| {
            db.sql("CREATE TABLE test.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(200))")?;
            Ok(())
        })
        .start()?;
    let db = sb.primary();
    for round in 0..5 {
        let mut sql = String::new();
        for i in 0..100 {
            sql.push_str(&format!(
                "INSERT INTO test.t (v) VALUES (REPEAT('r{round}-{i}', 10));\n"
            ));
        }
        db.sql(&sql)?;
        db.flush_binary_logs()?;
    }
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), sb.source(), Duration::from_secs(60))?;
    wait_shipped(&sb)?;
    let src = sb.source().to_string();
    let files = db.binlog_files()?;
    let name = |i: usize| files[i].0.clone();
    let (evicted_a, evicted_b, local) = (name(0), name(1), name(files.len() - 2));
    wait_for("the older files evicted", Duration::from_secs(60), || {
        let b = sb
            .server()
            .get_json(&format!("/v1/sources/{src}/binlogs"))?;
        let loc = |n: &str| {
            b["files"]
                .as_array()
                .and_then(|a| a.iter().find(|f| f["name"] == n))
                .map(|f| f["location"].clone())
        };
        Ok((loc(&evicted_a) == Some("store".into())
            && loc(&evicted_b) == Some("store".into())
            && loc(&local) == Some("both".into()))
        .then_some(()))
    })?;
    let objects = sb
        .bases_dir()
        .context("local store")?
        .join(&src)
        .join("binlogs");

    // A scrub finds both and repairs them from the local copy and from the primary.
    damage(&objects.join(&local))?;
    damage(&objects.join(&evicted_b))?;
    let (code, v) = sb.server().post_json(
        &format!("/v1/sources/{src}/archive/scrub"),
        &serde_json::json!({}),
    )?;
    assert_eq!(code, 202, "{v:#}");
    let r = wait_scrub(&sb, "request", &local)?;
    eprintln!("{r:#}");
    let damaged = r["damaged"].as_array().context("damaged")?;
    let repair = |f: &str| {
        damaged
            .iter()
            .find(|d| d["file"] == f)
            .map(|d| d["repair"].clone())
    };
    assert_eq!(repair(&local), Some("local copy".into()), "{r:#}");
    assert_eq!(repair(&evicted_b), Some("primary".into()), "{r:#}");
    assert_eq!(damaged.len(), 2, "nothing else is damaged: {r:#}");
    for d in damaged {
        let kept = d["kept_as"].as_str().context("kept_as")?;
        assert!(
            sb.bases_dir().context("store")?.join(kept).exists(),
            "the damaged bytes are kept aside as {kept}"
        );
    }
    wait_shipped(&sb)?;
    assert_closed_files_identical(&sb, &[])?;
    let row = sb
        .server()
        .get_json(&format!("/v1/sources/{src}/binlogs"))?;
    let info = row["files"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == evicted_b.as_str()))
        .map(|f| f["info"].to_string())
        .unwrap_or_default();
    assert!(info.contains("pulled again"), "{evicted_b}: {info}");

    // A read that meets a damaged object fails, and gets it repaired.
    damage(&objects.join(&evicted_a))?;
    let out = tempfile::tempdir()?;
    let first = mariadb_binlog_raw(
        fake_port,
        &evicted_a,
        out.path(),
        &[],
        Duration::from_secs(20),
    );
    assert!(
        first.is_err()
            || std::fs::read(out.path().join(&evicted_a)).ok()
                != std::fs::read(db.binlog_path(&evicted_a)).ok(),
        "a damaged object is never served as the file"
    );
    let r = wait_scrub(&sb, "damaged read", &evicted_a)?;
    assert_eq!(r["damaged"][0]["repair"], "primary", "{r:#}");
    wait_all_succ(sb.server(), sb.source(), Duration::from_secs(60))?;
    wait_shipped(&sb)?;
    assert_closed_files_identical(&sb, &[])?;
    let out = tempfile::tempdir()?;
    mariadb_binlog_raw(
        fake_port,
        &evicted_a,
        out.path(),
        &[],
        Duration::from_secs(60),
    )?;
    assert!(
        std::fs::read(out.path().join(&evicted_a))? == std::fs::read(db.binlog_path(&evicted_a))?,
        "{evicted_a} through the fake primary after the repair"
    );
    Ok(())
}

/// The local tier under space limits, without any `local_retention`: with `min_free_bytes`
/// above the disk's free space, confirmed files leave the local disk at once (the two
/// newest stay) and copies read back into the cache are removed at the next pass; with
/// `local_bytes`, the oldest files leave until the source's files fit the budget.
#[test]
fn low_disk_space_and_a_byte_budget_evict_without_an_age() -> Result<()> {
    let fake_port = free_port();
    let mut sb = Sandbox::builder(server_bin())
        .local_base_store()
        .source_replication(fake_port)
        .extra_toml("[archive]\nship_interval = \"200ms\"\nmin_free_bytes = 1152921504606846976\n")
        .setup(|db| {
            db.sql("CREATE TABLE test.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(200))")?;
            Ok(())
        })
        .start()?;
    let rounds = |db: &MariaDb, n: usize| -> Result<()> {
        for round in 0..n {
            let mut sql = String::new();
            for i in 0..100 {
                sql.push_str(&format!(
                    "INSERT INTO test.t (v) VALUES (REPEAT('r{round}-{i}', 10));\n"
                ));
            }
            db.sql(&sql)?;
            db.flush_binary_logs()?;
        }
        Ok(())
    };
    rounds(sb.primary(), 4)?;
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), sb.source(), Duration::from_secs(60))?;
    let src = sb.source().to_string();
    let locations = |sb: &Sandbox| -> Result<Vec<String>> {
        let b = sb
            .server()
            .get_json(&format!("/v1/sources/{src}/binlogs"))?;
        Ok(b["files"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f["location"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default())
    };
    let all_but_two = |l: &[String]| {
        l.len() > 2
            && l[..l.len() - 2].iter().all(|x| x == "store")
            && l[l.len() - 2..].iter().all(|x| x != "store")
    };
    wait_for(
        "low space evicts all but the two newest",
        Duration::from_secs(60),
        || {
            let l = locations(&sb)?;
            Ok(all_but_two(&l).then_some(()))
        },
    )
    .with_context(|| sb.server().log_tail(20))?;
    // Read the evicted files back through the fake primary: they land in the cache, and
    // the next pass removes them again (the disk is "low").
    let files = sb.primary().binlog_files()?;
    let out = tempfile::tempdir()?;
    mariadb_binlog_raw(
        fake_port,
        &files[0].0,
        out.path(),
        &[],
        Duration::from_secs(60),
    )?;
    assert_eq!(
        std::fs::read(out.path().join(&files[0].0))?,
        std::fs::read(sb.primary().binlog_path(&files[0].0))?,
        "an evicted file read back"
    );
    let cache = sb.data_dir().join("cache").join(&src);
    wait_for(
        "the cache emptied under low space",
        Duration::from_secs(30),
        || {
            let n = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
            Ok((n == 0).then_some(()))
        },
    )?;

    // A byte budget instead: files beyond it leave, oldest first.
    sb.server_mut().stop()?;
    let cfg = sb.config_path().to_path_buf();
    let text = std::fs::read_to_string(&cfg)?.replace(
        "min_free_bytes = 1152921504606846976",
        "min_free_bytes = 0\nlocal_bytes = 1",
    );
    std::fs::write(&cfg, text)?;
    let s = ServerProcess::start(&server_bin(), &cfg, sb.http_addr())?;
    *sb.server_mut() = s;
    rounds(sb.primary(), 3)?;
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), sb.source(), Duration::from_secs(60))?;
    wait_for(
        "the byte budget evicts all but the two newest",
        Duration::from_secs(60),
        || {
            let l = locations(&sb)?;
            Ok(all_but_two(&l).then_some(()))
        },
    )
    .with_context(|| sb.server().log_tail(20))?;
    Ok(())
}

/// Single PUTs are create-only on the S3-compatible server too (`If-None-Match: *`): of
/// two writers racing for one key, exactly one wins and the object holds its bytes; a
/// later PUT of the key is refused.
#[test]
fn racing_single_puts_to_s3_leave_one_winner() -> Result<()> {
    for (k, v) in S3_TEST_ENV {
        std::env::set_var(k, v);
    }
    let moto = Moto::start()?;
    moto.create_bucket("race")?;
    let store = moto_bucket(&moto, "race")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for round in 0..10 {
        let key = format!("db1/binlogs/m.{round:06}.manifest.json");
        let (a, b) = rt.block_on(async {
            tokio::join!(
                store.put_bytes(&key, b"writer a"),
                store.put_bytes(&key, b"writer b")
            )
        });
        let exists = |r: &Result<_, objstore::store::StoreError>| matches!(r, Err(objstore::store::StoreError::Exists(k)) if *k == key);
        let winner: &[u8] = match (a.is_ok(), b.is_ok()) {
            (true, false) if exists(&b) => b"writer a",
            (false, true) if exists(&a) => b"writer b",
            _ => bail!("round {round}: {a:?} / {b:?}"),
        };
        assert_eq!(rt.block_on(store.get_bytes(&key, 64))?, winner);
        let late = rt.block_on(store.put_bytes(&key, b"late"));
        assert!(
            matches!(late, Err(objstore::store::StoreError::Exists(_))),
            "{late:?}"
        );
    }
    Ok(())
}

/// `[archive] object_lock`: against a bucket with S3 Object Lock and a default rule,
/// every object the archive writes (a single PUT and a multipart upload, a manifest) is
/// locked in the configured mode until at least the rule's days; a permanent delete of
/// a version is refused, a plain delete only hides it; a lock extension pass sets a
/// later date on every kept object once the old one nears, records it and does not
/// repeat; and a store without the rule is refused at start, naming what to configure.
#[test]
fn an_object_locked_archive_cannot_be_deleted_and_its_locks_are_extended() -> Result<()> {
    use objstore::lock::LockMode;
    let moto = Moto::start()?;
    moto.create_locked_bucket("locked", "GOVERNANCE", 2)?;
    moto.create_bucket("plain")?;
    for (k, v) in S3_TEST_ENV {
        std::env::set_var(k, v);
    }
    let archive = format!(
        "[archive]\nstore = \"s3://locked/pre\"\ns3_endpoint = {}\ns3_allow_http = true\n\
         ship_interval = \"200ms\"\nobject_lock = \"governance\"\ncompression = \"none\"\n",
        toml_string(&moto.endpoint())
    );
    let sb = Sandbox::builder(server_bin())
        .local_base_store()
        .extra_toml(&archive)
        .setup(|db| {
            db.sql("CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY AUTO_INCREMENT, v LONGTEXT)")?;
            Ok(())
        })
        .start()?;
    let db = sb.primary();
    let started = unix_now() as i64;
    // One file over the single-PUT size (a multipart upload: one 9 MiB transaction,
    // which a binlog never splits), then two small ones.
    db.sql("INSERT INTO s.t (v) VALUES (REPEAT('x', 9437184))")?;
    db.flush_binary_logs()?;
    for i in 0..20 {
        db.sql(&format!("INSERT INTO s.t (v) VALUES ('row {i}')"))?;
        if i % 10 == 9 {
            db.flush_binary_logs()?;
        }
    }
    sb.wait_caught_up()?;
    wait_all_succ(sb.server(), sb.source(), Duration::from_secs(60))?;
    wait_shipped(&sb)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cat = rt.block_on(catalog::Catalog::open(&format!(
        "sqlite://{}",
        sb.data_dir().join("catalog.db").display()
    )))?;
    let rows = rt.block_on(cat.list_archive_objects(sb.source()))?;
    let whole: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == catalog::ArchiveKind::File)
        .collect();
    assert!(whole.len() >= 3, "{rows:?}");
    assert!(
        whole.iter().any(|r| r.end_offset > 8 << 20),
        "a file shipped by multipart upload: {whole:?}"
    );
    let bucket = moto_bucket(&moto, "locked")?;
    let lock = bucket
        .object_lock()
        .context("an s3 store has the lock calls")?;
    let rule_end = started + 2 * 86_400;
    for r in &whole {
        for key in [
            format!("pre/{}", r.object_key),
            format!(
                "pre/{}",
                archive::objects::manifest_key(sb.source(), &r.file, r.epoch)
            ),
        ] {
            let ret = rt
                .block_on(lock.retention(&key))?
                .with_context(|| format!("{key} is in the bucket"))?;
            assert_eq!(ret.mode, Some(LockMode::Governance), "{key}: {ret:?}");
            let until = ret.until.with_context(|| format!("{key} has a date"))?;
            assert!(
                until >= rule_end - 60,
                "{key} locked until {until}, before the rule's end {rule_end}"
            );
        }
    }

    // A permanent delete of a locked version is refused; a plain delete only hides it.
    let victim = format!("pre/{}", whole[0].object_key);
    let version = rt
        .block_on(lock.retention(&victim))?
        .context("victim present")?
        .version_id;
    assert!(!version.is_empty(), "the bucket is versioned");
    let refused = rt.block_on(lock.delete_version(&victim, &version));
    assert_eq!(
        refused.as_ref().err().and_then(|e| e.status()),
        Some(403),
        "{refused:?}"
    );

    // Extension: a pass as if 1.5 days had gone by sets every row's objects to a later
    // date, records it, and the same pass again has nothing to do.
    let prefixed = moto_store(&moto, "s3://locked/pre")?.with_retention(LockMode::Governance, 2);
    let later = unix_now() as i64 + 36 * 3600;
    let report = rt.block_on(archive::lock::extend_due(
        &cat,
        &prefixed,
        sb.source(),
        later,
    ))?;
    let live = rt.block_on(cat.list_archive_objects(sb.source()))?.len() as u64;
    assert_eq!(report.extended, live, "{report:?}");
    assert_eq!(report.until, later + 2 * 86_400);
    let extended = rt
        .block_on(lock.retention(&format!("pre/{}", whole[1].object_key)))?
        .context("present")?;
    assert_eq!(extended.until, Some(later + 2 * 86_400), "{extended:?}");
    let again = rt.block_on(archive::lock::extend_due(
        &cat,
        &prefixed,
        sb.source(),
        later,
    ))?;
    assert_eq!(again.extended, 0, "{again:?}");

    rt.block_on(bucket.delete(&victim))?;
    assert!(rt.block_on(lock.retention(&victim))?.is_none(), "hidden");
    let still = rt.block_on(lock.delete_version(&victim, &version));
    assert_eq!(
        still.as_ref().err().and_then(|e| e.status()),
        Some(403),
        "the locked version outlives a plain delete: {still:?}"
    );

    // A base kept in the locked bucket: its objects get the later date too, once.
    let base_obj = rt.block_on(prefixed.put_bytes("db1/base-lock/a", b"base bytes"))?;
    rt.block_on(cat.begin_backup(&catalog::NewBackup {
        id: "base-lock".into(),
        source: sb.source().into(),
        method: "logical".into(),
        tool: "mydumper".into(),
        ..Default::default()
    }))?;
    rt.block_on(cat.complete_backup(
        "base-lock",
        &catalog::BackupResult {
            binlog_file: None,
            binlog_pos: None,
            gtid_pos: None,
            consistent_at: None,
            to_lsn: None,
            objects: vec![base_obj],
        },
    ))?;
    let bases = rt.block_on(snapshotter::retention::extend_locks(
        &cat,
        &prefixed,
        sb.source(),
        later,
    ))?;
    assert_eq!(bases, 1);
    let base_lock = rt
        .block_on(lock.retention("pre/db1/base-lock/a"))?
        .context("the base's object")?;
    assert_eq!(base_lock.until, Some(later + 2 * 86_400), "{base_lock:?}");
    let bases = rt.block_on(snapshotter::retention::extend_locks(
        &cat,
        &prefixed,
        sb.source(),
        later,
    ))?;
    assert_eq!(bases, 0, "recorded: not extended twice");

    // A bucket without Object Lock: the start is refused with what to configure.
    let cfg = std::fs::read_to_string(sb.config_path())?
        .replace("s3://locked/pre", "s3://plain/pre")
        .replace(
            sb.data_dir().to_str().context("utf-8")?,
            sb.dir().join("other-data").to_str().context("utf-8")?,
        );
    let wrong = sb.dir().join("plain.toml");
    std::fs::write(&wrong, cfg)?;
    let out = Command::new(server_bin())
        .args(["rebuild", "--config"])
        .arg(&wrong)
        .envs(S3_TEST_ENV.iter().copied())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no Object Lock default retention rule")
            && stderr.contains("put-object-lock-configuration"),
        "{stderr}"
    );
    Ok(())
}
