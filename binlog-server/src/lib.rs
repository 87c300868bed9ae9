//! binlog-server: a fake replica per MySQL/MariaDB primary that keeps a verified,
//! byte-identical archive of every binlog, indexed by GTID and commit time.
//!
//! Module map: [`config`] (TOML), [`mysql`] (wire protocol client), [`primary`] (replica
//! session set-up per dialect), [`event`] (binlog event framing), [`checker`] (file
//! checks), [`store`] (files on disk, durability, recovery), [`capture`] (stream loop and
//! writer), [`checktask`] (poll, check, scrub, re-pull), [`index`] (RocksDB), [`status`]
//! (state and metrics), [`api`] (HTTP), [`server`] (supervision), [`cli`].

pub mod api;
pub mod backups;
pub mod capture;
pub mod checker;
pub mod checktask;
pub mod cli;
pub mod config;
pub mod event;
pub mod fake_primary;
pub mod index;
pub mod instance;
pub mod mysql;
pub mod pitr;
pub mod pitr_cli;
pub mod primary;
pub mod server;
pub mod snapshot_cli;
pub mod status;
pub mod store;
pub mod verify;
pub mod verify_cli;
