//! Helpers shared by the benchmarks: the sysbench-like write load, page-cache settling
//! and CPU accounting from /proc.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use binlog_tests::MariaDb;

/// Creates `test.sbtest` (sysbench's shape with ~1 KB rows) and the procedure
/// `test.gen(n)`: n transactions of 3 INSERTs and an UPDATE each, one session.
pub fn create_sbtest(db: &MariaDb) -> Result<()> {
    db.sql(
        "CREATE TABLE test.sbtest (id BIGINT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL, c CHAR(120), pad VARCHAR(1024), KEY(k)) ENGINE=InnoDB;
         DELIMITER //
         CREATE PROCEDURE test.gen(n INT)
         BEGIN
           DECLARE i INT DEFAULT 0;
           WHILE i < n DO
             START TRANSACTION;
             INSERT INTO test.sbtest (k, c, pad) VALUES
               (i, MD5(i), REPEAT(MD5(RAND()), 30)),
               (i + 1, MD5(i + 1), REPEAT(MD5(RAND()), 30)),
               (i + 2, MD5(i + 2), REPEAT(MD5(RAND()), 30));
             UPDATE test.sbtest SET k = k + 1 WHERE id = GREATEST(1, CAST(LAST_INSERT_ID() AS SIGNED) - 100);
             COMMIT;
             SET i = i + 1;
           END WHILE;
         END//
         DELIMITER ;",
    )?;
    Ok(())
}

/// Sum of the sizes of the primary's binlogs (SHOW BINARY LOGS), bytes.
pub fn binlog_bytes(db: &MariaDb) -> Result<u64> {
    Ok(db.binlog_files()?.iter().map(|(_, s)| s).sum())
}

/// Runs `test.gen` in batches of `batch` transactions until the primary's binlogs have
/// grown by at least `bytes`.
pub fn generate(db: &MariaDb, bytes: u64, batch: u32) -> Result<()> {
    let start = binlog_bytes(db)?;
    while binlog_bytes(db)? < start + bytes {
        db.sql(&format!("CALL test.gen({batch})"))?;
    }
    Ok(())
}

/// The sequence number of the last GTID in a single-domain `gtid_binlog_pos`.
pub fn last_seq(gtid_pos: &str) -> u64 {
    gtid_pos
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// What [`generate_sbtest`] made: the primary's binlogs (name, bytes), their total
/// bytes, and the number of transactions.
pub type Generated = (Vec<(String, u64)>, u64, u64);

/// Creates the table and procedure, generates about `mb` MB of binlogs, rotates, and
/// prints a summary.
pub fn generate_sbtest(db: &MariaDb, mb: u64) -> Result<Generated> {
    create_sbtest(db)?;
    let t = Instant::now();
    generate(db, mb << 20, 20000)?;
    db.flush_binary_logs()?;
    let files = db.binlog_files()?;
    let total: u64 = files.iter().map(|(_, s)| s).sum();
    let txns = last_seq(&db.gtid_binlog_pos()?);
    println!(
        "   {} files, {:.1} MB, {} transactions, generated in {:.1} s",
        files.len(),
        total as f64 / 1e6,
        txns,
        t.elapsed().as_secs_f64()
    );
    Ok((files, total, txns))
}

pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with("mysql-bin.0") {
            n += e.metadata()?.len();
        }
    }
    Ok(n)
}

/// Writes back every dirty page of the machine (sync(2)) and pauses a moment, so that a
/// run does not pay for the previous run's write-back.
pub fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_secs(1));
}

/// user + system CPU seconds of a process, from /proc/PID/stat.
pub fn cpu_secs(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the ")" that closes the command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of this process's waited-for children (mariadb-binlog).
pub fn children_cpu_secs() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct; RUSAGE_CHILDREN is a valid `who`.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr());
        ru.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Writes 1 KB transactions into `test.f` (created here, with the procedure
/// `test.gen`) until the primary, rotating every 4 KiB, has at least `n` closed binlogs.
///
/// # Errors
///
/// A statement fails.
pub fn make_files(db: &MariaDb, n: usize) -> Result<()> {
    db.sql(
        "CREATE TABLE test.f (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(1000));
         DELIMITER //
         CREATE PROCEDURE test.gen(k INT)
         BEGIN
           DECLARE i INT DEFAULT 0;
           WHILE i < k DO
             INSERT INTO test.f (v) VALUES (REPEAT(MD5(i), 28));
             SET i = i + 1;
           END WHILE;
         END//
         DELIMITER ;",
    )?;
    loop {
        let have = db.binlog_files()?.len().saturating_sub(1);
        if have >= n {
            return Ok(());
        }
        // About three such transactions fill a 4 KiB file.
        let k = ((n - have) * 3).clamp(16, 6000);
        db.sql(&format!("CALL test.gen({k})"))?;
    }
}
