//! The archive: on this node, binlog files, their control files and crash recovery
//! ([`store`]) and the RocksDB transaction index by GTID, time and ordinal ([`index`]);
//! in the archive store, where binlogs live as objects ([`objects`]), the shipping that
//! puts them there ([`ship`]), the checked reading back ([`fetch`]) the local tier as
//! a cache of the store ([`cache`]), archive retention ([`retention`]) and the rebuild
//! of a lost node from the store ([`rebuild`]); the scrub of the store and the repair
//! of damaged objects ([`scrub`]).

pub mod cache;
pub mod fetch;
pub mod index;
pub mod objects;
pub mod rebuild;
pub mod retention;
pub mod scrub;
pub mod ship;
pub mod store;
