//! The archive on this node: binlog files, their control files and crash recovery
//! ([`store`]), and the RocksDB transaction index by GTID, time and ordinal ([`index`]).

pub mod index;
pub mod store;
