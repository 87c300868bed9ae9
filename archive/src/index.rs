//! The transaction index: one RocksDB database per node at `<data_dir>/index.rocksdb`,
//! keyed per source, so that PITR can turn "a time" or "a GTID" into a binlog position.
//!
//! # Keys (all prefixed by `<source>\0`)
//!
//! ```text
//! t <commit_ts u32 BE> <ordinal u64 BE>        -> start u64, end u64, file, GTID (binary)
//! g m <domain u32 BE> <server u32 BE> <seq u64 BE>  -> <commit_ts><ordinal> (MariaDB GTIDs)
//! g y <uuid 16> <gno u64 BE>                   -> <commit_ts><ordinal> (MySQL GTIDs)
//! o <ordinal u64 BE>                          -> <commit_ts><ordinal> (binlog order)
//! last                                         -> <commit_ts><ordinal> of the newest
//! meta                                         -> IndexPos (JSON): indexed up to file:offset
//! holes                                        -> file names (JSON) not indexed
//! ```
//!
//! `holes` lists files before the index position whose transactions are not in it: a
//! takeover found them held whole by nobody, and they were pulled again from the primary
//! after later files had been indexed (`super::takeover`). A PITR planned over one of them
//! is refused rather than cut at the wrong transaction; the next takeover re-indexes the
//! source from scratch and clears them. `holes` is written with a synced write-ahead log
//! entry: unlike the entries, it cannot be derived again after a crash.
//!
//! `ordinal` numbers the source's transactions in binlog order from 0.
//!
//! # Invariants and recovery
//!
//! Entries and the new `meta` are written in one atomic `WriteBatch`, and only for
//! transactions that end inside the durable prefix of the store (the writer calls
//! [`Index::commit`] after fsync). `meta.offset` is always a transaction boundary, so
//! indexing can resume there. Writes skip RocksDB's write-ahead log (the index is derived
//! from the binlogs), so a crash can lose the newest batches together with their `meta`; [`Index::catch_up`] re-indexes from `meta` to the store's durable end
//! on start-up, and rebuilds the source from scratch when `meta` is missing or points
//! past the store (files deleted by hand).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::local::LocalFiles;
use binlog::binlog_order;
use binlog::{EventReader, FormatDescription, Gtid, TxnRecord, TxnTracker};

/// Index errors.
#[derive(Debug, Error)]
pub enum IndexError {
    /// RocksDB failed (open, read, write).
    #[error("index database: {0}")]
    Db(#[from] rocksdb::Error),
    /// A stored value could not be decoded (the index is damaged: delete
    /// `<data_dir>/index.rocksdb` and restart to rebuild it from the binlogs).
    #[error("index entry damaged: {0}")]
    Corrupt(String),
    /// Reading a binlog file while re-indexing failed.
    #[error("re-index {file}: {source}")]
    Io {
        /// File name.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A binlog file could not be parsed while re-indexing.
    #[error("re-index {file} at offset {offset}: {message}")]
    Parse {
        /// File name.
        file: String,
        /// Offset of the bad event.
        offset: u64,
        /// What was wrong.
        message: String,
    },
}

/// Where indexing has got to in a source's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPos {
    /// File name.
    pub file: String,
    /// Offset in `file`: a transaction boundary; everything before it is indexed.
    pub offset: u64,
    /// Ordinal the next transaction gets.
    pub next_ordinal: u64,
    /// Key layout version ([`INDEX_FORMAT`]); an older one is rebuilt by
    /// [`Index::catch_up`]. Missing in the first layout (no ordinal keys).
    #[serde(default)]
    pub format: u32,
    /// `file` is the first file of a timeline >= 2 and its transactions so far were all
    /// indexed on an earlier timeline ([`Index::commit`]): the next ones are looked up
    /// too. False once one was new (a server's history after the switch is its own).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeats: bool,
}

/// Key layout version written by this build: 2 added the ordinal keys (`o`).
pub const INDEX_FORMAT: u32 = 2;

/// One indexed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnEntry {
    /// Position of the transaction in the source's history, from 0.
    pub ordinal: u64,
    /// GTID text ("0-1-42", "uuid:23"), when the transaction has one.
    pub gtid: Option<String>,
    /// Commit event timestamp, unix seconds (the primary's clock).
    pub commit_timestamp: u32,
    /// Binlog file name.
    pub file: String,
    /// Offset of the first event.
    pub start: u64,
    /// Offset just past the last event.
    pub end: u64,
}

/// The node's transaction index.
pub struct Index {
    db: DB,
}

fn prefix(source: &str) -> Vec<u8> {
    let mut k = source.as_bytes().to_vec();
    k.push(0);
    k
}

fn key(source: &str, tail: &[u8]) -> Vec<u8> {
    let mut k = prefix(source);
    k.extend_from_slice(tail);
    k
}

fn ordinal_key(source: &str, ordinal: u64) -> Vec<u8> {
    let mut t = vec![b'o'];
    t.extend_from_slice(&ordinal.to_be_bytes());
    key(source, &t)
}

fn gtid_key(source: &str, g: &Gtid) -> Vec<u8> {
    let mut t = vec![b'g'];
    match g {
        Gtid::MariaDb {
            domain,
            server_id,
            seq,
        } => {
            t.push(b'm');
            t.extend_from_slice(&domain.to_be_bytes());
            t.extend_from_slice(&server_id.to_be_bytes());
            t.extend_from_slice(&seq.to_be_bytes());
        }
        Gtid::MySql { uuid, gno } => {
            t.push(b'y');
            t.extend_from_slice(uuid);
            t.extend_from_slice(&gno.to_be_bytes());
        }
    }
    key(source, &t)
}

fn time_key(source: &str, ts: u32, ordinal: u64) -> Vec<u8> {
    let mut t = vec![b't'];
    t.extend_from_slice(&ts.to_be_bytes());
    t.extend_from_slice(&ordinal.to_be_bytes());
    key(source, &t)
}

/// Binary value of a `t` key: start u64 BE, end u64 BE, file name length u16 BE, file
/// name, then the GTID text (possibly empty). Commit time and ordinal are in the key.
fn encode_entry(file: &str, start: u64, end: u64, gtid: Option<&str>) -> Vec<u8> {
    let file = &file.as_bytes()[..file.len().min(u16::MAX as usize)];
    let gtid = gtid.unwrap_or("").as_bytes();
    let mut v = Vec::with_capacity(18 + file.len() + gtid.len());
    v.extend_from_slice(&start.to_be_bytes());
    v.extend_from_slice(&end.to_be_bytes());
    v.extend_from_slice(&(file.len() as u16).to_be_bytes());
    v.extend_from_slice(file);
    v.extend_from_slice(gtid);
    v
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn decode_entry(ts: u32, ordinal: u64, v: &[u8]) -> Option<TxnEntry> {
    let start = be_u64(v, 0)?;
    let end = be_u64(v, 8)?;
    let flen = usize::from(u16::from_be_bytes(v.get(16..18)?.try_into().ok()?));
    let file = std::str::from_utf8(v.get(18..18 + flen)?).ok()?.to_owned();
    let gtid = std::str::from_utf8(v.get(18 + flen..)?).ok()?;
    Some(TxnEntry {
        ordinal,
        gtid: (!gtid.is_empty()).then(|| gtid.to_owned()),
        commit_timestamp: ts,
        file,
        start,
        end,
    })
}

/// (commit time, ordinal) from the 12 bytes after `t` in a time key, or a GTID value.
fn decode_ts_ordinal(b: &[u8]) -> Option<(u32, u64)> {
    let ts = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
    Some((ts, be_u64(b, 4)?))
}

impl Index {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_keep_log_file_num(3);
        opts.set_max_total_wal_size(64 << 20);
        Ok(Index {
            db: DB::open(&opts, path)?,
        })
    }

    /// Where indexing of `source` has got to; `None` when nothing is indexed.
    pub fn position(&self, source: &str) -> Result<Option<IndexPos>, IndexError> {
        match self.db.get(key(source, b"meta"))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| IndexError::Corrupt(format!("meta of {source}: {e}"))),
        }
    }

    /// Adds completed transactions of `file` (each gets the next ordinal) and moves the
    /// index position to `upto` (a transaction boundary in `file`), atomically.
    /// Two keys per transaction: the time key holding the entry, and the GTID key
    /// pointing at it. Returns the new position.
    ///
    /// The first file of a timeline 2 or later (`binlog::split_timeline`) begins with
    /// transactions the previous timeline already holds (the new server's whole file is
    /// stored, `binlog_server::source::failover`): until the first transaction whose GTID
    /// is not indexed yet, such a transaction is not indexed again, so each GTID counts
    /// once across timelines and PITR finds it on the timeline it came first. Nothing is
    /// looked up for timeline 1, nor after that first new transaction
    /// ([`IndexPos::repeats`]).
    pub fn commit(
        &self,
        source: &str,
        file: &str,
        records: &[TxnRecord],
        upto: u64,
        next_ordinal: u64,
    ) -> Result<IndexPos, IndexError> {
        let mut batch = WriteBatch::default();
        let mut ordinal = next_ordinal;
        let mut last = None;
        let mut repeating = binlog::split_timeline(file).0 >= 2 && self.repeats(source, file)?;
        for r in records {
            if let (true, Some(g)) = (repeating, &r.gtid) {
                if self.db.get(gtid_key(source, g))?.is_some() {
                    continue;
                }
                // The first transaction the archive lacks: the new server's own history
                // from here on.
                repeating = false;
            }
            let gtid = r.gtid.as_ref().map(|g| g.to_string());
            let tk = time_key(source, r.commit_timestamp, ordinal);
            batch.put(&tk, encode_entry(file, r.start, r.end, gtid.as_deref()));
            if let Some(g) = &r.gtid {
                batch.put(gtid_key(source, g), &tk[tk.len() - 12..]);
            }
            batch.put(ordinal_key(source, ordinal), &tk[tk.len() - 12..]);
            last = Some(tk);
            ordinal += 1;
        }
        if let Some(tk) = last {
            batch.put(key(source, b"last"), &tk[tk.len() - 12..]);
        }
        let pos = IndexPos {
            file: file.to_owned(),
            offset: upto,
            next_ordinal: ordinal,
            format: INDEX_FORMAT,
            repeats: repeating,
        };
        let v = serde_json::to_vec(&pos).map_err(|e| IndexError::Corrupt(e.to_string()))?;
        batch.put(key(source, b"meta"), v);
        // No write-ahead log: the index is derived data. A crash loses the newest batches
        // and their `meta` together (RocksDB flushes memtables atomically), and
        // catch_up re-indexes from the older `meta` on start.
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(batch, &wo)?;
        Ok(pos)
    }

    /// Whether `file` (of a timeline >= 2) may still repeat an earlier timeline's
    /// transactions: as the index position says while it is `file`; true when the
    /// position is on an earlier timeline (`file` starts its timeline) or absent.
    fn repeats(&self, source: &str, file: &str) -> Result<bool, IndexError> {
        Ok(match self.position(source)? {
            Some(p) if p.file == file => p.repeats,
            Some(p) => binlog::split_timeline(&p.file).0 < binlog::split_timeline(file).0,
            None => true,
        })
    }

    fn entry_at(
        &self,
        source: &str,
        ts: u32,
        ordinal: u64,
    ) -> Result<Option<TxnEntry>, IndexError> {
        match self.db.get(time_key(source, ts, ordinal))? {
            None => Ok(None),
            Some(v) => decode_entry(ts, ordinal, &v)
                .map(Some)
                .ok_or_else(|| IndexError::Corrupt(format!("{source} #{ordinal}"))),
        }
    }

    /// The first transaction (smallest commit time, then binlog order) committed
    /// strictly after `t` (unix seconds), if any.
    pub fn first_after_time(&self, source: &str, t: u32) -> Result<Option<TxnEntry>, IndexError> {
        let Some(from) = t.checked_add(1) else {
            return Ok(None);
        };
        let start = time_key(source, from, 0);
        let p = key(source, b"t");
        let mut it = self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward));
        match it.next() {
            Some(Ok((k, v))) if k.starts_with(&p) => {
                let (ts, ordinal) = k
                    .get(p.len()..)
                    .and_then(decode_ts_ordinal)
                    .ok_or_else(|| IndexError::Corrupt(format!("time key of {source}")))?;
                decode_entry(ts, ordinal, &v)
                    .map(Some)
                    .ok_or_else(|| IndexError::Corrupt(format!("{source} #{ordinal}")))
            }
            Some(Err(e)) => Err(e.into()),
            _ => Ok(None),
        }
    }

    /// The transaction with GTID `g`, if indexed.
    pub fn find_gtid(&self, source: &str, g: &Gtid) -> Result<Option<TxnEntry>, IndexError> {
        match self.db.get(gtid_key(source, g))? {
            None => Ok(None),
            Some(v) => {
                let (ts, ordinal) = decode_ts_ordinal(&v)
                    .ok_or_else(|| IndexError::Corrupt(format!("GTID value of {source}")))?;
                self.entry_at(source, ts, ordinal)
            }
        }
    }

    /// The transaction with ordinal `ordinal` (binlog order from 0), if indexed.
    pub fn by_ordinal(&self, source: &str, ordinal: u64) -> Result<Option<TxnEntry>, IndexError> {
        match self.db.get(ordinal_key(source, ordinal))? {
            None => Ok(None),
            Some(v) => {
                let (ts, ordinal) = decode_ts_ordinal(&v)
                    .ok_or_else(|| IndexError::Corrupt(format!("ordinal value of {source}")))?;
                self.entry_at(source, ts, ordinal)
            }
        }
    }

    /// The newest indexed transaction.
    pub fn last(&self, source: &str) -> Result<Option<TxnEntry>, IndexError> {
        match self.db.get(key(source, b"last"))? {
            None => Ok(None),
            Some(v) => {
                let (ts, ordinal) = decode_ts_ordinal(&v)
                    .ok_or_else(|| IndexError::Corrupt(format!("last of {source}")))?;
                self.entry_at(source, ts, ordinal)
            }
        }
    }

    /// Indexes closed file `name` (at `path`, `size` bytes) after what is indexed of
    /// `source`: from the index position when it is inside `name`, else from offset 4
    /// with the next ordinal. Used by a rebuild from the archive store, file by file in
    /// binlog order, for files that are not in the local store. Returns the position
    /// reached and the number of transactions added.
    ///
    /// # Errors
    ///
    /// [`IndexError`] (reading or parsing the file, the database).
    pub fn index_file(
        &self,
        source: &str,
        name: &str,
        path: &Path,
        size: u64,
    ) -> Result<(IndexPos, u64), IndexError> {
        let (from, next) = self.resume_in(source, name)?;
        let (records, upto) = scan_file(path, name, from, size)?;
        let added = records.len() as u64;
        Ok((self.commit(source, name, &records, upto, next)?, added))
    }

    /// Where indexing `name` resumes: (offset in it, the next ordinal); the file's
    /// start when the position is in an earlier file.
    fn resume_in(&self, source: &str, name: &str) -> Result<(u64, u64), IndexError> {
        Ok(match self.position(source)? {
            Some(p) if p.file == name => (p.offset, p.next_ordinal),
            Some(p) => (4, p.next_ordinal),
            None => (4, 0),
        })
    }

    /// Adds the transactions `records` of the closed `size`-byte file `name` (all of
    /// its transactions, as its index segment holds them: `super::segment`) past the
    /// index position, as [`Index::index_file`] does from the file itself. Returns the
    /// position reached (the file's end) and the number added.
    ///
    /// # Errors
    ///
    /// [`IndexError::Db`], [`IndexError::Corrupt`].
    pub fn import_file(
        &self,
        source: &str,
        name: &str,
        records: &[TxnRecord],
        size: u64,
    ) -> Result<(IndexPos, u64), IndexError> {
        let (from, next) = self.resume_in(source, name)?;
        let first = records.partition_point(|r| r.start < from);
        let new = records.get(first..).unwrap_or_default();
        Ok((
            self.commit(source, name, new, size, next)?,
            new.len() as u64,
        ))
    }

    /// The files of `source` before the index position that the index lacks (module
    /// docs, `holes`), in the order they were marked.
    ///
    /// # Errors
    ///
    /// [`IndexError::Db`], or [`IndexError::Corrupt`] for a damaged list.
    pub fn unindexed(&self, source: &str) -> Result<Vec<String>, IndexError> {
        match self.db.get(key(source, b"holes"))? {
            None => Ok(Vec::new()),
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| IndexError::Corrupt(format!("holes of {source}: {e}"))),
        }
    }

    /// Adds `files` to the files of `source` the index lacks, durably (synced).
    ///
    /// # Errors
    ///
    /// [`IndexError::Db`], [`IndexError::Corrupt`].
    pub fn mark_unindexed(&self, source: &str, files: &[String]) -> Result<(), IndexError> {
        if files.is_empty() {
            return Ok(());
        }
        let mut holes = self.unindexed(source)?;
        for f in files {
            if !holes.contains(f) {
                holes.push(f.clone());
            }
        }
        let v = serde_json::to_vec(&holes).map_err(|e| IndexError::Corrupt(e.to_string()))?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_opt(key(source, b"holes"), v, &wo)?;
        Ok(())
    }

    /// Deletes everything indexed for `source`, its holes included.
    pub fn clear(&self, source: &str) -> Result<(), IndexError> {
        self.clear_keeping(source, None)
    }

    /// Deletes every key of `source` except `keep`.
    fn clear_keeping(&self, source: &str, keep: Option<&[u8]>) -> Result<(), IndexError> {
        let p = prefix(source);
        let keep = keep.map(|k| key(source, k));
        let mut batch = WriteBatch::default();
        for item in self.db.iterator(IteratorMode::From(&p, Direction::Forward)) {
            let (k, _) = item?;
            if !k.starts_with(&p) {
                break;
            }
            if keep.as_deref() != Some(&k[..]) {
                batch.delete(k);
            }
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// Brings the index of `source` up to the store's durable end (`end_file`,
    /// `end_len`): scans the files after the index position. Returns the position
    /// reached and the number of transactions added.
    pub fn catch_up(
        &self,
        source: &str,
        store: &LocalFiles,
        end_file: &str,
        end_len: u64,
    ) -> Result<(Option<IndexPos>, u64), IndexError> {
        let files = store.list().map_err(|source| IndexError::Io {
            file: store.dir().display().to_string(),
            source,
        })?;
        let mut pos = self.position(source)?;
        if let Some(p) = &pos {
            let known = files.iter().find(|(n, _)| n == &p.file);
            let beyond = binlog_order(&p.file) > binlog_order(end_file)
                || (p.file == end_file && p.offset > end_len);
            if p.format < INDEX_FORMAT {
                tracing::info!(source, "index has an older key layout; rebuilding it");
                self.clear(source)?;
                pos = None;
            } else if known.is_none() || beyond {
                tracing::warn!(source, index_at = ?p, "index is ahead of the store or names a missing file; rebuilding it");
                // The local files are indexed again; the holes stay holes.
                self.clear_keeping(source, Some(b"holes"))?;
                pos = None;
            }
        }
        let mut added = 0;
        for (name, size) in &files {
            if binlog_order(name) > binlog_order(end_file) {
                break;
            }
            let limit = if name == end_file { end_len } else { *size };
            let from = match &pos {
                Some(p) if binlog_order(&p.file) > binlog_order(name) => continue,
                Some(p) if &p.file == name => p.offset,
                _ => 4,
            };
            if from >= limit && pos.as_ref().is_some_and(|p| &p.file == name) {
                continue;
            }
            let next_ordinal = pos.as_ref().map(|p| p.next_ordinal).unwrap_or(0);
            let (records, upto) = scan_file(&store.path(name), name, from, limit)?;
            added += records.len() as u64;
            pos = Some(self.commit(source, name, &records, upto, next_ordinal)?);
        }
        Ok((pos, added))
    }
}

/// Reads the FDE at offset 4 of `path`.
pub fn read_fde(path: &Path, name: &str) -> Result<Option<FormatDescription>, IndexError> {
    let f = std::fs::File::open(path).map_err(|source| IndexError::Io {
        file: name.to_owned(),
        source,
    })?;
    let mut r =
        EventReader::new_at_start(std::io::BufReader::new(f)).map_err(|e| IndexError::Parse {
            file: name.to_owned(),
            offset: 0,
            message: e.to_string(),
        })?;
    match r.next_event() {
        Some(Ok((_, h, ev))) if h.type_code == binlog::event_type::FORMAT_DESCRIPTION => {
            FormatDescription::parse(ev)
                .map(Some)
                .map_err(|e| IndexError::Parse {
                    file: name.to_owned(),
                    offset: 4,
                    message: e.to_string(),
                })
        }
        _ => Ok(None),
    }
}

/// Every transaction of the closed `size`-byte file `path` (named `name`), in order,
/// for its index segment (`super::segment`). Blocking.
///
/// # Errors
///
/// [`IndexError`]: reading the file, or its FORMAT_DESCRIPTION does not parse;
/// [`IndexError::Parse`] when the scan stops before `size` (a malformed event, or a
/// transaction left open), since a segment holds a whole file's transactions.
pub fn file_transactions(path: &Path, name: &str, size: u64) -> Result<Vec<TxnRecord>, IndexError> {
    let (records, upto) = scan_file(path, name, 4, size)?;
    if upto != size {
        return Err(IndexError::Parse {
            file: name.to_owned(),
            offset: upto,
            message: format!("the transactions end at {upto}, not at the file's size {size}"),
        });
    }
    Ok(records)
}

/// Scans `[from, limit)` of one binlog file for transactions. Returns them and the
/// offset up to which the file is fully indexed (a transaction boundary).
fn scan_file(
    path: &Path,
    name: &str,
    from: u64,
    limit: u64,
) -> Result<(Vec<TxnRecord>, u64), IndexError> {
    let io_err = |source| IndexError::Io {
        file: name.to_owned(),
        source,
    };
    let Some(fde) = read_fde(path, name)? else {
        return Ok((Vec::new(), from));
    };
    let mut f = std::fs::File::open(path).map_err(io_err)?;
    f.seek(SeekFrom::Start(from)).map_err(io_err)?;
    let reader = std::io::BufReader::with_capacity(1 << 20, f.take(limit.saturating_sub(from)));
    let mut r = EventReader::new_at(reader, from);
    let mut tracker = TxnTracker::new();
    let mut records = Vec::new();
    let mut last_end = from;
    while let Some(item) = r.next_event() {
        let (offset, header, ev) = match item {
            Ok(x) => x,
            // A torn tail beyond `limit` cannot occur (limit is durable); stop at the
            // last complete event either way.
            Err(_) => break,
        };
        let end = offset + u64::from(header.event_size);
        match tracker.observe(offset, &header, ev, &fde) {
            Ok(Some(rec)) => records.push(rec),
            Ok(None) => {}
            Err(e) => {
                // A damaged file (the checker marks it FAIL and it is pulled again)
                // must not stop the source: index what precedes the damage.
                tracing::warn!(file = name, offset, error = %e, "cannot index past a malformed event");
                break;
            }
        }
        last_end = end;
    }
    let upto = tracker.open_txn_start().unwrap_or(last_end);
    Ok((records, upto))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, ts: u32, start: u64, end: u64) -> TxnRecord {
        TxnRecord {
            gtid: Some(Gtid::MariaDb {
                domain: 0,
                server_id: 1,
                seq,
            }),
            start,
            end,
            commit_timestamp: ts,
        }
    }

    #[test]
    fn a_new_timeline_indexes_what_it_repeats_once_and_stops_looking_after_its_own() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("idx")).unwrap();
        let p = idx
            .commit(
                "s",
                "b.000007",
                &[rec(1, 100, 4, 50), rec(2, 101, 50, 90)],
                90,
                0,
            )
            .unwrap();
        assert!(!p.repeats);
        // Timeline 2's first file starts with 1 and 2 again, then its own 3.
        let p = idx
            .commit(
                "s",
                "tl2/b.000001",
                &[rec(1, 100, 4, 50)],
                50,
                p.next_ordinal,
            )
            .unwrap();
        assert!(p.repeats, "only repeats so far");
        assert_eq!(p.next_ordinal, 2);
        let p = idx
            .commit(
                "s",
                "tl2/b.000001",
                &[rec(2, 101, 50, 90), rec(3, 102, 90, 130)],
                130,
                p.next_ordinal,
            )
            .unwrap();
        assert!(!p.repeats, "its own history began");
        assert_eq!(p.next_ordinal, 3);
        let g = |seq| Gtid::MariaDb {
            domain: 0,
            server_id: 1,
            seq,
        };
        assert_eq!(idx.find_gtid("s", &g(2)).unwrap().unwrap().file, "b.000007");
        let third = idx.find_gtid("s", &g(3)).unwrap().unwrap();
        assert_eq!((third.file.as_str(), third.ordinal), ("tl2/b.000001", 2));
    }

    #[test]
    fn commit_and_look_up() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("idx")).unwrap();
        assert_eq!(idx.position("s").unwrap(), None);
        assert_eq!(idx.last("s").unwrap(), None);
        let p = idx
            .commit(
                "s",
                "b.000001",
                &[rec(1, 100, 300, 700), rec(2, 100, 700, 900)],
                900,
                0,
            )
            .unwrap();
        assert_eq!(p.next_ordinal, 2);
        let p = idx
            .commit(
                "s",
                "b.000002",
                &[rec(3, 105, 400, 800)],
                850,
                p.next_ordinal,
            )
            .unwrap();
        assert_eq!(
            p,
            IndexPos {
                file: "b.000002".into(),
                offset: 850,
                next_ordinal: 3,
                format: INDEX_FORMAT,
                repeats: false,
            }
        );
        assert_eq!(idx.by_ordinal("s", 1).unwrap().unwrap().end, 900);
        assert_eq!(idx.by_ordinal("s", 2).unwrap().unwrap().file, "b.000002");
        assert!(idx.by_ordinal("s", 3).unwrap().is_none());
        // Another source with the same GTIDs does not interfere.
        idx.commit("t", "x.000001", &[rec(2, 50, 4, 8)], 8, 0)
            .unwrap();

        let g = |n| Gtid::MariaDb {
            domain: 0,
            server_id: 1,
            seq: n,
        };
        let e = idx.find_gtid("s", &g(2)).unwrap().unwrap();
        assert_eq!(
            (e.ordinal, e.file.as_str(), e.start, e.end),
            (1, "b.000001", 700, 900)
        );
        assert_eq!(e.gtid.as_deref(), Some("0-1-2"));
        assert_eq!(e.commit_timestamp, 100);
        assert!(idx.find_gtid("s", &g(9)).unwrap().is_none());
        // Two transactions in the same second: the first in binlog order comes first.
        assert_eq!(idx.first_after_time("s", 99).unwrap().unwrap().ordinal, 0);
        assert_eq!(idx.first_after_time("s", 100).unwrap().unwrap().ordinal, 2);
        assert!(idx.first_after_time("s", 105).unwrap().is_none());
        assert!(idx.first_after_time("s", u32::MAX).unwrap().is_none());
        assert_eq!(idx.last("s").unwrap().unwrap().ordinal, 2);
        assert_eq!(idx.find_gtid("t", &g(2)).unwrap().unwrap().file, "x.000001");

        idx.clear("s").unwrap();
        assert_eq!(idx.position("s").unwrap(), None);
        assert!(idx.find_gtid("s", &g(2)).unwrap().is_none());
        assert!(idx.find_gtid("t", &g(2)).unwrap().is_some());
    }

    #[test]
    fn holes_are_kept_per_source_without_duplicates_and_cleared_with_the_source() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("idx")).unwrap();
        assert!(idx.unindexed("s").unwrap().is_empty());
        idx.commit("s", "b.000003", &[rec(1, 100, 4, 90)], 90, 0)
            .unwrap();
        let files = |v: &[&str]| v.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        idx.mark_unindexed("s", &files(&["b.000001", "b.000002"]))
            .unwrap();
        idx.mark_unindexed("s", &files(&["b.000002"])).unwrap();
        idx.mark_unindexed("t", &files(&["x.000009"])).unwrap();
        assert_eq!(
            idx.unindexed("s").unwrap(),
            files(&["b.000001", "b.000002"])
        );
        // The holes key is not an entry: lookups and the position are unchanged.
        assert_eq!(idx.last("s").unwrap().unwrap().file, "b.000003");
        assert_eq!(idx.position("s").unwrap().unwrap().file, "b.000003");
        idx.clear("s").unwrap();
        assert!(idx.unindexed("s").unwrap().is_empty());
        assert_eq!(idx.unindexed("t").unwrap(), files(&["x.000009"]));
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        for v in [&b""[..], &[1, 2, 3][..], &[0u8; 17][..], &[0xFFu8; 40][..]] {
            let _ = decode_entry(1, 1, v);
            let _ = decode_ts_ordinal(v);
        }
        let v = encode_entry("b.000001", 4, 10, None);
        let e = decode_entry(7, 3, &v).unwrap();
        assert_eq!((e.ordinal, e.commit_timestamp, e.gtid), (3, 7, None));
    }
}
