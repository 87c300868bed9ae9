//! The main demo's last scene: RPO 0 and failover follow. A semi-sync primary P1
//! (AFTER_SYNC) and its GTID replica P2; binlog-server lists both (`urls`) and
//! acknowledges P1's commits only after their fdatasync. Under a write load P1 is killed
//! with SIGKILL and P2 promoted: capture follows it onto timeline 2, and the archive
//! holds every commit P1 acknowledged.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use binlog_tests::*;

/// `failover_timeout` of the scene, seconds.
const FAILOVER_SECS: u64 = 5;

/// Runs the scene (about 30 s) in its own temporary directory.
pub fn run(bin: &Path) -> Result<()> {
    println!("== failover follow with semi-sync: P1 (semi-sync primary, AFTER_SYNC) and P2 (its GTID replica)");
    let opts = |server_id, semi: bool| {
        let mut extra_args = vec!["--log-slave-updates".into(), "--gtid-strict-mode=ON".into()];
        if semi {
            extra_args.extend([
                "--rpl-semi-sync-master-enabled=ON".to_string(),
                "--rpl-semi-sync-master-wait-point=AFTER_SYNC".to_string(),
                "--rpl-semi-sync-master-timeout=10000".to_string(),
            ]);
        }
        MariaDbOptions {
            server_id,
            extra_args,
            ..Default::default()
        }
    };
    let mut p1 = MariaDb::start(opts(1, true))?;
    let p2 = MariaDb::start(opts(2, false))?;
    p2.sql("RESET MASTER; SET GLOBAL gtid_slave_pos = ''; SET GLOBAL read_only = 1;")?;
    p2.replicate_from(&p1)?;
    p1.sql("CREATE TABLE test.acked (id BIGINT PRIMARY KEY)")?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("binlog-server.toml");
    let source = format!(
        "[[source]]\nname = \"db\"\nurls = [{:?}, {:?}]\nfailover_timeout = \"{FAILOVER_SECS}s\"\n\
         server_id = 4242\nsemi_sync = true\n",
        p1.repl_url(),
        p2.repl_url()
    );
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[capture]\npoll_interval = \"1s\"\n[http]\nlisten = {http:?}\n{source}",
            dir.path().join("data")
        ),
    )?;
    println!(
        "   P1 on 127.0.0.1:{}, P2 on 127.0.0.1:{}; the source:\n{}",
        p1.port(),
        p2.port(),
        source.replace(REPL_PASSWORD, "***")
    );
    let server = ServerProcess::start(bin, &cfg, &http)?;
    wait_for("semi-sync on P1", Duration::from_secs(30), || {
        p1.sql("INSERT INTO test.acked VALUES (0)")?;
        p1.sql("DELETE FROM test.acked")?;
        Ok((p1.status_var("Rpl_semi_sync_master_status")? == "ON").then_some(()))
    })?;
    // A client commits ids one by one; the ids P1 answered OK for were acknowledged.
    let (client, socket) = (require_tool("mariadb"), p1.socket_path());
    let writer = std::thread::spawn(move || -> u64 {
        let mut acked = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let id = acked + 1;
            let ok = std::process::Command::new(&client)
                .arg("--no-defaults")
                .arg(format!("--socket={}", socket.display()))
                .args(["--user=root", "test", "-e"])
                .arg(format!("INSERT INTO test.acked VALUES ({id})"))
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                break;
            }
            acked = id;
        }
        acked
    });
    std::thread::sleep(Duration::from_secs(5));
    let s = server.get_json("/v1/sources/db")?;
    println!(
        "   after 5 s: P1 Rpl_semi_sync_master_yes_tx={} no_tx={}; binlog-server acks={} last_ack={}",
        p1.status_var("Rpl_semi_sync_master_yes_tx")?,
        p1.status_var("Rpl_semi_sync_master_no_tx")?,
        s["semi_sync"]["acks"],
        s["semi_sync"]["last_ack"]
    );
    println!(
        "== kill -9 P1 (pid {:?}) under the load; promote P2",
        p1.pid()
    );
    p1.kill9()?;
    let killed = Instant::now();
    let acked = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))?;
    p2.wait_gtid_settled(Duration::from_secs(2), Duration::from_secs(60))?;
    p2.sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0;")?;
    p2.sql("INSERT INTO test.acked VALUES (1000000)")?;
    let s = wait_for(
        "capture on timeline 2",
        Duration::from_secs(FAILOVER_SECS + 30),
        || {
            let s = server.get_json("/v1/sources/db")?;
            let on = s["durable_file"]
                .as_str()
                .is_some_and(|f| f.starts_with("tl2/"));
            Ok(on.then_some(s))
        },
    )?;
    println!(
        "   capture streams from P2 {:.1} s after the kill (failover_timeout {FAILOVER_SECS} s): durable {}:{}",
        killed.elapsed().as_secs_f64(),
        s["durable_file"],
        s["durable_pos"]
    );
    let tl = server.get_json("/v1/sources/db/timelines")?;
    println!("== GET /v1/sources/db/timelines");
    for t in tl["timelines"].as_array().cloned().unwrap_or_default() {
        println!(
            "   timeline {} server_id {} {} first_file={} switch_gtid={} divergent={} reason={}",
            t["timeline"],
            t["server_id"],
            t["server_url"],
            t["first_file"],
            t["switch_gtid"],
            t["divergent"],
            t["reason"]
        );
    }
    // Every id P1 acknowledged is in the archive: the last one's GTID is indexed.
    let p2_ids: u64 = p2
        .sql_value("SELECT COUNT(*) FROM test.acked WHERE id < 1000000")?
        .parse()?;
    println!(
        "   the client had {acked} commits acknowledged by P1; P2 has {p2_ids} of them, and the archive's last GTID of timeline 1 is {}",
        tl["timelines"][1]["switch_gtid"]
    );
    anyhow::ensure!(p2_ids >= acked, "an acknowledged commit is missing on P2");
    Ok(())
}
