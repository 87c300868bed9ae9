//! A background write load on a [`MariaDb`]: [`WriteLoadOptions`], [`WriteLoad`], and
//! the private generator and feeding loop that write INSERT / UPDATE / DELETE
//! transactions to a long-running `mariadb` CLI child.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::mariadb::MariaDb;

/// Shape and bounds of a [`WriteLoad`].
#[derive(Clone, Debug)]
pub struct WriteLoadOptions {
    /// Number of tables `test.load_t1 .. test.load_t<tables>` (default 3, at least 1).
    pub tables: usize,
    /// Stop after this many transactions (default 1,000,000).
    pub max_txns: u64,
    /// Stop after this much time (default 120 s).
    pub max_duration: Duration,
    /// Size of each row's payload in bytes (default 200).
    pub row_bytes: usize,
    /// INSERTs per transaction (default 3).
    pub rows_per_txn: usize,
}

impl Default for WriteLoadOptions {
    fn default() -> Self {
        WriteLoadOptions {
            tables: 3,
            max_txns: 1_000_000,
            max_duration: Duration::from_secs(120),
            row_bytes: 200,
            rows_per_txn: 3,
        }
    }
}

/// A background write load on a [`MariaDb`]: a thread feeds transactions to one
/// long-running `mariadb` CLI child (database `test`) through its stdin.
///
/// Each transaction is `BEGIN`, `rows_per_txn` INSERTs into one table (round robin), on
/// every second transaction an UPDATE and on every fifth a DELETE of an earlier row,
/// then `COMMIT`. The CLI stops at the first SQL error, which [`WriteLoad::stop`] and
/// [`WriteLoad::wait`] report with its stderr.
pub struct WriteLoad {
    stop_flag: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<()>>>,
    child: Option<Child>,
    port: u16,
}

impl WriteLoad {
    /// Writes `txns` transactions with the default options (at most 120 s) and waits
    /// for them; returns how many were committed.
    pub fn run(db: &MariaDb, txns: u64) -> Result<u64> {
        WriteLoad::start(
            db,
            WriteLoadOptions {
                max_txns: txns,
                max_duration: std::time::Duration::from_secs(120),
                ..Default::default()
            },
        )?
        .wait()
    }

    /// Creates test.load_t{1..tables} (id BIGINT AUTO_INCREMENT PK, k INT, payload
    /// LONGBLOB, updated TIMESTAMP) if missing, then starts the background thread, which
    /// runs until [`WriteLoad::stop`] or the bounds in `opts`. Transactions are counted
    /// when written to the CLI's stdin.
    pub fn start(db: &MariaDb, opts: WriteLoadOptions) -> Result<WriteLoad> {
        if opts.tables == 0 {
            bail!("WriteLoadOptions::tables must be at least 1");
        }
        let mut ddl = String::new();
        for t in 1..=opts.tables {
            ddl.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS test.load_t{t} (\
                 id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
                 k INT NOT NULL, \
                 payload LONGBLOB, \
                 updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP\
                 ) ENGINE=InnoDB;\n"
            ));
        }
        db.sql(&ddl).context("create the write-load tables")?;
        // Rows already present: UPDATE/DELETE target ids above them (a missing id simply
        // matches no row).
        let mut base_ids = Vec::with_capacity(opts.tables);
        for t in 1..=opts.tables {
            let v = db.sql_value(&format!("SELECT COALESCE(MAX(id), 0) FROM test.load_t{t}"))?;
            base_ids.push(
                v.parse::<u64>()
                    .with_context(|| format!("MAX(id) of load_t{t}: {v:?}"))?,
            );
        }

        let mut child = db
            .client_command(Some("test"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {} for the write load", db.client.display()))?;
        let stdin = child.stdin.take().context("write-load CLI stdin")?;
        let stop_flag = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop_flag = Arc::clone(&stop_flag);
            let written = Arc::clone(&written);
            std::thread::Builder::new()
                .name(format!("write-load-{}", db.port))
                .spawn(move || feed_load(stdin, opts, base_ids, &stop_flag, &written))
                .context("spawn the write-load thread")?
        };
        Ok(WriteLoad {
            stop_flag,
            written,
            thread: Some(thread),
            child: Some(child),
            port: db.port,
        })
    }

    /// Transactions written to the CLI so far (committed a moment later).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Whether the feeding thread has finished (bounds reached, stopped, or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops feeding now, closes the CLI's stdin, waits for the CLI to commit what it
    /// was given and exit, and returns the number of transactions committed. An error
    /// when the CLI failed (its stderr is included).
    pub fn stop(mut self) -> Result<u64> {
        self.stop_flag.store(true, Ordering::SeqCst);
        self.finish()
    }

    /// Waits until the load reaches its bounds (`max_txns` or `max_duration`), then
    /// finishes like [`WriteLoad::stop`].
    pub fn wait(mut self) -> Result<u64> {
        self.finish()
    }

    fn finish(&mut self) -> Result<u64> {
        let feed_result = match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("write-load thread panicked"))?,
            None => Ok(()),
        };
        let mut child = self.child.take().context("write load already finished")?;
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            // The CLI's stdin is closed: it exits after the last statement, which ends
            // this read.
            err.read_to_string(&mut stderr)
                .context("read the write-load CLI's stderr")?;
        }
        let status = child.wait().context("wait for the write-load CLI")?;
        let written = self.written.load(Ordering::SeqCst);
        if !status.success() {
            bail!(
                "write-load mariadb CLI on port {} failed ({status}) after {written} \
                 transactions were sent: {}",
                self.port,
                stderr.trim()
            );
        }
        feed_result.with_context(|| {
            format!(
                "write-load feeding failed after {written} transactions; CLI stderr: {}",
                stderr.trim()
            )
        })?;
        Ok(written)
    }
}

impl Drop for WriteLoad {
    fn drop(&mut self) {
        self.stop_flag.store(true, Ordering::SeqCst);
        if self.child.is_some() {
            if let Err(e) = self.finish() {
                eprintln!("harness: write load ended with an error: {e:#}");
            }
        }
    }
}

/// xorshift64*: a small deterministic generator for payloads and ids.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn payload(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

fn feed_load(
    stdin: ChildStdin,
    opts: WriteLoadOptions,
    base_ids: Vec<u64>,
    stop_flag: &AtomicBool,
    written: &AtomicU64,
) -> Result<()> {
    let mut stdin = std::io::BufWriter::new(stdin);
    let deadline = Instant::now() + opts.max_duration;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut inserted = vec![0u64; opts.tables];
    let mut txn = String::new();
    for n in 0..opts.max_txns {
        if stop_flag.load(Ordering::SeqCst) || Instant::now() >= deadline {
            break;
        }
        txn.clear();
        txn.push_str("BEGIN;\n");
        let t = (n % opts.tables as u64) as usize;
        for _ in 0..opts.rows_per_txn {
            let k = rng.next() % 1_000_000;
            txn.push_str(&format!(
                "INSERT INTO load_t{} (k, payload) VALUES ({k}, '{}');\n",
                t + 1,
                rng.payload(opts.row_bytes)
            ));
            inserted[t] += 1;
        }
        if n % 2 == 1 && inserted[t] > 0 {
            let id = base_ids[t] + 1 + rng.next() % inserted[t];
            txn.push_str(&format!(
                "UPDATE load_t{} SET k = k + 1, payload = '{}' WHERE id = {id};\n",
                t + 1,
                rng.payload(opts.row_bytes)
            ));
        }
        if n % 5 == 4 && inserted[t] > 0 {
            let id = base_ids[t] + 1 + rng.next() % inserted[t];
            txn.push_str(&format!("DELETE FROM load_t{} WHERE id = {id};\n", t + 1));
        }
        txn.push_str("COMMIT;\n");
        stdin
            .write_all(txn.as_bytes())
            .and_then(|()| stdin.flush())
            .context("write a transaction to the mariadb CLI")?;
        written.fetch_add(1, Ordering::SeqCst);
    }
    // Dropping the writer closes the pipe: the CLI finishes and exits.
    stdin.flush().context("flush the mariadb CLI's stdin")?;
    Ok(())
}
