//! The transaction index: one RocksDB database per node at `<data_dir>/index.rocksdb`,
//! keyed per source, so that PITR can turn "a time" or "a GTID" into a binlog position.
//!
//! # Keys (all prefixed by `<source>\0`)
//!
//! ```text
//! o <ordinal u64 BE>                       -> TxnEntry (JSON): gtid, commit time, file, start, end
//! t <commit_ts u32 BE> <ordinal u64 BE>    -> ""      (time lookups)
//! g m <domain u32 BE> <server u32 BE> <seq u64 BE>   -> ordinal (MariaDB GTIDs)
//! g y <uuid 16> <gno u64 BE>               -> ordinal (MySQL GTIDs)
//! meta                                     -> IndexPos (JSON): indexed up to file:offset
//! ```
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

use crate::event::{EventReader, FormatDescription, Gtid, TxnRecord, TxnTracker};
use crate::store::{binlog_order, SourceStore};

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
}

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

fn ordinal_key(source: &str, ordinal: u64) -> Vec<u8> {
    let mut t = vec![b'o'];
    t.extend_from_slice(&ordinal.to_be_bytes());
    key(source, &t)
}

fn time_key(source: &str, ts: u32, ordinal: u64) -> Vec<u8> {
    let mut t = vec![b't'];
    t.extend_from_slice(&ts.to_be_bytes());
    t.extend_from_slice(&ordinal.to_be_bytes());
    key(source, &t)
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
    /// Returns the new position.
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
        for r in records {
            let entry = TxnEntry {
                ordinal,
                gtid: r.gtid.as_ref().map(|g| g.to_string()),
                commit_timestamp: r.commit_timestamp,
                file: file.to_owned(),
                start: r.start,
                end: r.end,
            };
            let v = serde_json::to_vec(&entry).map_err(|e| IndexError::Corrupt(e.to_string()))?;
            batch.put(ordinal_key(source, ordinal), v);
            batch.put(time_key(source, r.commit_timestamp, ordinal), b"");
            if let Some(g) = &r.gtid {
                batch.put(gtid_key(source, g), ordinal.to_be_bytes());
            }
            ordinal += 1;
        }
        let pos = IndexPos {
            file: file.to_owned(),
            offset: upto,
            next_ordinal: ordinal,
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

    fn entry(&self, source: &str, ordinal: u64) -> Result<Option<TxnEntry>, IndexError> {
        match self.db.get(ordinal_key(source, ordinal))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| IndexError::Corrupt(format!("{source} #{ordinal}: {e}"))),
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
            Some(Ok((k, _))) if k.starts_with(&p) => {
                let tail = k.get(p.len() + 4..p.len() + 12).ok_or_else(|| {
                    IndexError::Corrupt(format!("time key of {source} has {} bytes", k.len()))
                })?;
                let mut o = [0u8; 8];
                o.copy_from_slice(tail);
                self.entry(source, u64::from_be_bytes(o))
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
                let o: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| IndexError::Corrupt(format!("GTID value of {source}")))?;
                self.entry(source, u64::from_be_bytes(o))
            }
        }
    }

    /// The newest indexed transaction.
    pub fn last(&self, source: &str) -> Result<Option<TxnEntry>, IndexError> {
        match self.position(source)? {
            Some(p) if p.next_ordinal > 0 => self.entry(source, p.next_ordinal - 1),
            _ => Ok(None),
        }
    }

    /// Deletes everything indexed for `source`.
    pub fn clear(&self, source: &str) -> Result<(), IndexError> {
        let p = prefix(source);
        let mut batch = WriteBatch::default();
        for item in self.db.iterator(IteratorMode::From(&p, Direction::Forward)) {
            let (k, _) = item?;
            if !k.starts_with(&p) {
                break;
            }
            batch.delete(k);
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
        store: &SourceStore,
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
            if known.is_none() || beyond {
                tracing::warn!(source, index_at = ?p, "index is ahead of the store or names a missing file; rebuilding it");
                self.clear(source)?;
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
        Some(Ok((_, h, ev))) if h.type_code == crate::event::event_type::FORMAT_DESCRIPTION => {
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
