//! Where binlogs live in the archive store, and the manifest that describes each file.
//!
//! # Layout (under the store's prefix)
//!
//! ```text
//! <source>/binlogs/<file>[.e<epoch>]                   the closed, checked file, whole
//! <source>/binlogs/<file>[.e<epoch>].manifest.json     written after it: what it holds, how it is encoded
//! <source>/binlogs/<file>.index/e<epoch>.<codec>       the whole object's transaction index
//!                                                      (`super::segment`), written before the manifest
//! <source>/binlogs/<file>.chunks/<start>-<end>.e<epoch>.<codec>
//!                                                      bytes [start, end) of the file's durable
//!                                                      prefix, shipped while it was open; offsets
//!                                                      zero-padded to 12 digits
//! ```
//!
//! `<file>` is the stored name (`tl<N>/<name>` on timelines N >= 2, failover follow);
//! `<source>/timelines/` holds the timeline records (`super::timelines`).
//!
//! Every key carries the writer's fencing epoch (its lease tenure, `catalog::leases`), so
//! no two writers ever write one key: an old owner woken from a pause writes beside the
//! new owner's objects, never over them. Epoch 0 (a single node, no leases) writes the
//! whole file and its manifest without the `.e0` suffix: the layout of stores made
//! before the fleet. Which epoch's object is canonical for a file is the catalog's
//! `archive_objects` row; a reader without the catalog takes the highest epoch.
//!
//! Base backups use `<source>/<base id>/...` beside it (base ids are UTC times, never
//! `binlogs`).
//!
//! Every object is encoded with the codec named in its manifest (or, for chunks, at the
//! end of its name): `none` (the bytes themselves: `aws s3 cp` gives the primary's file),
//! `zstd`, `aes-256-gcm` or `zstd+aes-256-gcm` (see `objstore::codec`; `binlog-server
//! archive decode` undoes it by hand).
//!
//! # What is durable when
//!
//! Objects are never overwritten. The data object is stored first; then the manifest
//! (files only); then the catalog row. A file's chunks are deleted only after its whole
//! object and manifest are stored and recorded. A crash at any point leaves at most an
//! object without a manifest or row, which the next pass finds (the key exists), reads
//! back and checks before recording it; it never leaves a record without data.

use serde::{Deserialize, Serialize};

/// The key of `file`'s whole object written in `epoch`: `<source>/binlogs/<file>` for
/// epoch 0, `<source>/binlogs/<file>.e<epoch>` after.
pub fn file_key(source: &str, file: &str, epoch: i64) -> String {
    match epoch {
        0 => format!("{source}/binlogs/{file}"),
        e => format!("{source}/binlogs/{file}.e{e}"),
    }
}

/// The key of the manifest of `file`'s whole object written in `epoch`.
pub fn manifest_key(source: &str, file: &str, epoch: i64) -> String {
    format!("{}.manifest.json", file_key(source, file, epoch))
}

/// The file name and epoch of a whole object's name below `<source>/binlogs/` (the key
/// without that prefix and without `.manifest.json`): `mysql-bin.000007.e3` is epoch 3
/// of `mysql-bin.000007`; a name without an `.e<digits>` suffix after its own extension
/// is epoch 0.
pub fn split_epoch(name: &str) -> (&str, i64) {
    if let Some((file, e)) = name.rsplit_once(".e") {
        if file.contains('.') && !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(epoch) = e.parse::<i64>() {
                if epoch > 0 {
                    return (file, epoch);
                }
            }
        }
    }
    (name, 0)
}

/// The name of a whole object or its manifest below `<source>/binlogs/` (`rest`, the key
/// without that prefix), when `rest` is one: a stored file name (`tl<N>/` for timelines
/// N >= 2) with an optional `.e<epoch>` and `.manifest.json`, no further `/` (chunks
/// and index segments live in `<file>.chunks/` and `<file>.index/`). `None` otherwise.
pub fn whole_object_name(rest: &str) -> Option<&str> {
    let (_, name) = binlog::split_timeline(rest);
    (!name.is_empty() && !name.contains('/')).then_some(rest)
}

/// The key of the chunk `[start, end)` of `file`, written in `epoch` with `codec`.
pub fn chunk_key(
    source: &str,
    file: &str,
    start: u64,
    end: u64,
    epoch: i64,
    codec: &str,
) -> String {
    format!("{source}/binlogs/{file}.chunks/{start:012}-{end:012}.e{epoch}.{codec}")
}

/// The key of the transaction index segment ([`super::segment`]) of `file`'s whole
/// object written in `epoch`, encoded with `codec`:
/// `<source>/binlogs/<file>.index/e<epoch>.<codec>`.
pub fn index_key(source: &str, file: &str, epoch: i64, codec: &str) -> String {
    format!("{}/e{epoch}.{codec}", index_prefix(source, file))
}

/// The prefix of `file`'s index segments (one per epoch that shipped it whole).
pub fn index_prefix(source: &str, file: &str) -> String {
    format!("{source}/binlogs/{file}.index")
}

/// The prefix of `file`'s chunks.
pub fn chunks_prefix(source: &str, file: &str) -> String {
    format!("{source}/binlogs/{file}.chunks")
}

/// A chunk key's parts: `(start, end, epoch, codec)`; `None` for other keys.
pub fn parse_chunk_name(name: &str) -> Option<(u64, u64, i64, String)> {
    let (range, rest) = name.split_once(".e")?;
    let (start, end) = range.split_once('-')?;
    let (epoch, codec) = rest.split_once('.')?;
    Some((
        start.parse().ok()?,
        end.parse().ok()?,
        epoch.parse().ok()?,
        codec.to_string(),
    ))
}

/// `<file>.manifest.json`: what a whole-file object holds. Written after the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format of this manifest (1).
    pub version: u32,
    /// Source name.
    pub source: String,
    /// Binlog file name (the primary's).
    pub file: String,
    /// Object key of the data.
    pub object_key: String,
    /// Plaintext size, bytes (the primary's file size).
    pub size: u64,
    /// SHA-256 (hex) of the plaintext file.
    pub sha256: String,
    /// Size of the object as stored, bytes.
    pub stored_bytes: u64,
    /// SHA-256 (hex) of the object as stored.
    pub stored_sha256: String,
    /// objstore codec descriptor.
    pub codec: String,
    /// Encryption key id, when encrypted.
    pub key_id: Option<String>,
    /// Writer's fencing epoch.
    pub epoch: i64,
    /// First and last GTID of the file, when it has any.
    pub first_gtid: Option<String>,
    /// See `first_gtid`.
    pub last_gtid: Option<String>,
    /// Unix seconds of the file's first and last events.
    pub first_event_time: Option<i64>,
    /// See `first_event_time`.
    pub last_event_time: Option<i64>,
    /// When the object was written, unix seconds.
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_objects_and_manifests_of_every_timeline_are_told_from_chunks_and_segments() {
        for whole in [
            "mysql-bin.000007",
            "mysql-bin.000007.e3",
            "mysql-bin.000007.e3.manifest.json",
            "tl2/mysql-bin.000007",
            "tl12/mysql-bin.000007.e4.manifest.json",
        ] {
            assert_eq!(whole_object_name(whole), Some(whole), "{whole}");
        }
        for other in [
            "mysql-bin.000007.chunks/000000000000-000000000100.e1.zst",
            "mysql-bin.000007.index/e1.zst",
            "tl2/mysql-bin.000007.index/e1.zst",
            "tl1/mysql-bin.000007",
            "other/mysql-bin.000007",
            "tl2/",
        ] {
            assert_eq!(whole_object_name(other), None, "{other}");
        }
    }

    #[test]
    fn keys_sort_by_offset_and_chunk_names_parse_back() {
        let a = chunk_key("db1", "mysql-bin.000007", 4, 1_048_580, 0, "zstd");
        let b = chunk_key("db1", "mysql-bin.000007", 1_048_580, 20_000_000, 0, "zstd");
        assert!(a < b, "zero-padded offsets sort as numbers");
        assert!(a.starts_with(&chunks_prefix("db1", "mysql-bin.000007")));
        let name = b.rsplit('/').next().unwrap();
        assert_eq!(
            parse_chunk_name(name),
            Some((1_048_580, 20_000_000, 0, "zstd".to_string()))
        );
        let enc = chunk_key("db1", "f", 0, 9, 3, "zstd+aes-256-gcm");
        assert_eq!(
            parse_chunk_name(enc.rsplit('/').next().unwrap()),
            Some((0, 9, 3, "zstd+aes-256-gcm".to_string()))
        );
        assert_eq!(parse_chunk_name("mysql-bin.000007.manifest.json"), None);
        assert_eq!(
            file_key("db1", "mysql-bin.000007", 0),
            "db1/binlogs/mysql-bin.000007"
        );
    }

    #[test]
    fn whole_objects_and_manifests_carry_their_epoch_after_the_first() {
        assert_eq!(
            file_key("db1", "mysql-bin.000007", 3),
            "db1/binlogs/mysql-bin.000007.e3"
        );
        assert_eq!(
            manifest_key("db1", "mysql-bin.000007", 0),
            "db1/binlogs/mysql-bin.000007.manifest.json"
        );
        assert_eq!(
            manifest_key("db1", "mysql-bin.000007", 12),
            "db1/binlogs/mysql-bin.000007.e12.manifest.json"
        );
        for (name, want) in [
            ("mysql-bin.000007", ("mysql-bin.000007", 0)),
            ("mysql-bin.000007.e3", ("mysql-bin.000007", 3)),
            ("mysql-bin.000007.e12", ("mysql-bin.000007", 12)),
            ("mysql-bin.000007.e", ("mysql-bin.000007.e", 0)),
            ("mysql-bin.000007.e0", ("mysql-bin.000007.e0", 0)),
            ("mysql-bin.000007.ex", ("mysql-bin.000007.ex", 0)),
            ("binlog.e5", ("binlog.e5", 0)),
            ("e5", ("e5", 0)),
        ] {
            assert_eq!(split_epoch(name), want, "{name}");
        }
        for epoch in [0, 1, 7, 4_000_000_000] {
            let key = file_key("db1", "b.000001", epoch);
            let name = key.strip_prefix("db1/binlogs/").unwrap();
            assert_eq!(split_epoch(name), ("b.000001", epoch));
        }
    }
}
