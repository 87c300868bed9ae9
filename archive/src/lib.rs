//! The archive: on this node, a source's binlog files, their control files and crash
//! recovery ([`local`]) and the RocksDB transaction index by GTID, time and ordinal
//! ([`index`]); in the archive store (the object tier), its handle ([`tier`]), where
//! binlogs live as objects ([`objects`]), the shipping that puts them there ([`ship`]),
//! the checked reading back ([`fetch`]), the local tier as a cache of the store
//! ([`cache`]), archive retention ([`retention`]), the rebuild of a lost node from the
//! store ([`rebuild`]), a new lease owner's takeover ([`takeover`]), a node that does
//! not own a source following its archive from the store so that it can restore it
//! ([`follow`]) and the scrub of the store with the repair of damaged objects
//! ([`scrub`]), and with S3 Object Lock, the later lock dates of objects still kept
//! ([`lock`]); the records of a source's timelines (failover follow) in the store
//! ([`timelines`]).
//!
//! Names: "local files" are the node's disk ([`local::LocalFiles`], one per source),
//! "the object store" is `objstore::store::Store`, and "the archive tier"
//! ([`tier::ArchiveTier`]) is the object store with the `[archive]` settings.

pub mod cache;
pub mod fetch;
pub mod follow;
pub mod index;
pub mod local;
pub mod lock;
pub mod objects;
pub mod rebuild;
pub mod retention;
pub mod scrub;
pub mod segment;
pub mod ship;
pub mod takeover;
pub mod tier;
pub mod timelines;

/// What the unit tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use objstore::store::{Store, StoreOptions};

    /// A `file://` store in `dir` (created): a real store, the local backend.
    pub(crate) fn local_store(dir: &std::path::Path) -> Store {
        std::fs::create_dir_all(dir).expect("store dir");
        Store::open(&StoreOptions {
            url: format!("file://{}", dir.display()),
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_allow_http: false,
            part_size: 8 << 20,
            upload_concurrency: 2,
            retries: 0,
            checksums: false,
        })
        .expect("open the store")
    }
}
