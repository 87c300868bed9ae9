//! Semi-synchronous replication against a real MariaDB primary, at the wire
//! (`mysql_wire::semisync`): the replica asks for it, every event arrives with the
//! semi-sync header, a commit waits for the ack of its last event and is counted as
//! acknowledged, and without an ack the primary falls back to asynchronous replication
//! after its timeout and says so in its status variables.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use binlog_tests::*;
use mysql_wire::semisync;

/// The primary's semi-sync timeout, ms.
const TIMEOUT_MS: u64 = 3000;

fn status(db: &MariaDb, name: &str) -> Result<String> {
    let rows = db.sql_rows(&format!("SHOW GLOBAL STATUS LIKE '{name}'"))?;
    rows.first()
        .and_then(|r| r.get(1).cloned())
        .with_context(|| format!("status {name}"))
}

/// Reads the stream until an event the primary wants acknowledged; returns the position
/// after it (the stream stays in one file here). Every event must carry the semi-sync
/// header.
async fn next_ack_request(conn: &mut mysql_wire::Conn) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let pkt = tokio::time::timeout(Duration::from_secs(30), conn.read_binlog_packet())
            .await
            .context("an event within 30 s")??
            .context("the stream goes on")?;
        let (want_ack, ev) = semisync::split_event(pkt)?;
        let h = binlog::EventHeader::parse(&ev)?;
        if want_ack {
            return Ok(u64::from(h.log_pos));
        }
    }
    bail!("no event asked for an ack within 30 s")
}

/// Reads what the dump sends of the past (acknowledging what asks for it) until the
/// stream is quiet for a second: the replica is caught up.
async fn catch_up(conn: &mut mysql_wire::Conn, file: &str) -> Result<()> {
    loop {
        match tokio::time::timeout(Duration::from_secs(1), conn.read_binlog_packet()).await {
            Err(_) => return Ok(()),
            Ok(pkt) => {
                let (want_ack, ev) = semisync::split_event(pkt?.context("the stream goes on")?)?;
                if want_ack {
                    let h = binlog::EventHeader::parse(&ev)?;
                    conn.send_command(&semisync::ack(file, u64::from(h.log_pos)))
                        .await?;
                }
            }
        }
    }
}

#[test]
fn a_commit_waits_for_the_ack_and_falls_back_to_async_without_one() -> Result<()> {
    let db = MariaDb::start(MariaDbOptions {
        extra_args: vec![
            "--rpl-semi-sync-master-enabled=ON".into(),
            format!("--rpl-semi-sync-master-timeout={TIMEOUT_MS}"),
            "--rpl-semi-sync-master-wait-point=AFTER_SYNC".into(),
        ],
        ..Default::default()
    })?;
    db.sql("CREATE TABLE test.t (id INT PRIMARY KEY)")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = mysql_wire::SourceUrl::parse(&db.repl_url()).map_err(anyhow::Error::msg)?;
    let mut conn = rt.block_on(mysql_wire::Conn::connect(&mysql_wire::ConnectOptions {
        url,
        connect_timeout: Duration::from_secs(10),
        query_timeout: Duration::from_secs(10),
    }))?;
    for q in [
        "SET @master_binlog_checksum = @@global.binlog_checksum",
        "SET @mariadb_slave_capability = 4",
        semisync::enable_statement(semisync::Variant::Slave),
    ] {
        rt.block_on(conn.query(q))?;
    }
    let (first, _) = db.binlog_files()?.into_iter().last().context("a binlog")?;
    rt.block_on(conn.send_command(&mysql_wire::packet::com_binlog_dump(4, 0, 7001, &first)))?;
    // The primary counts this replica as a semi-sync client once the dump runs.
    wait_for("one semi-sync client", Duration::from_secs(10), || {
        Ok((status(&db, "Rpl_semi_sync_master_clients")? == "1").then_some(()))
    })?;

    rt.block_on(catch_up(&mut conn, &first))?;
    // A commit waits; the ack of its last event releases it and counts as acknowledged.
    // (What the harness committed before any replica counts as released without one.)
    let count = |name: &str| -> Result<u64> { Ok(status(&db, name)?.parse()?) };
    let (yes, no) = (
        count("Rpl_semi_sync_master_yes_tx")?,
        count("Rpl_semi_sync_master_no_tx")?,
    );
    let took = std::thread::scope(|scope| -> Result<Duration> {
        let committer = scope.spawn(|| {
            let t = Instant::now();
            db.sql("INSERT INTO test.t VALUES (1)").map(|_| t.elapsed())
        });
        let pos = rt.block_on(next_ack_request(&mut conn))?;
        rt.block_on(conn.send_command(&semisync::ack(&first, pos)))?;
        committer
            .join()
            .map_err(|_| anyhow::anyhow!("committer panicked"))?
    })?;
    assert!(
        took < Duration::from_millis(TIMEOUT_MS),
        "released by the ack, not the timeout: {took:?}"
    );
    assert_eq!(count("Rpl_semi_sync_master_yes_tx")?, yes + 1);
    assert_eq!(count("Rpl_semi_sync_master_no_tx")?, no);
    assert_eq!(status(&db, "Rpl_semi_sync_master_status")?, "ON");

    // Without an ack the commit waits the whole timeout, then the primary falls back.
    let t = Instant::now();
    db.sql("INSERT INTO test.t VALUES (2)")?;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(TIMEOUT_MS - 200),
        "the commit waited for the ack until the timeout: {waited:?}"
    );
    assert_eq!(count("Rpl_semi_sync_master_no_tx")?, no + 1);
    assert_eq!(status(&db, "Rpl_semi_sync_master_status")?, "OFF");
    Ok(())
}
