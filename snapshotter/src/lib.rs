//! Base backups of MySQL/MariaDB sources into object storage, recorded in the catalog.
//!
//! A PITR starts from a base and replays binlogs from the base's exact position; this
//! crate takes those bases on schedule or on demand, stores them safely and finds them.
//!
//! - Methods: [`physical`] (mariabackup / xtrabackup, full and incremental, streamed into
//!   the store), [`logical`] (mydumper, or mysqldump), [`clone`] (MySQL 8.0.17+ clone
//!   plugin; untested against a live MySQL 8).
//! - [`take`]: the state flow DOING → UPLOADING → COMPLETED | ERROR (| SKIPPED), catalog
//!   row written last.
//! - [`objstore`]: local directory or S3-compatible store via `object_store`; objects
//!   never overwritten, multipart with bounded memory, SHA-256 of every object.
//! - [`retention`]: keep N days and at least M bases; EXPIRED before DELETED.
//! - [`restore`]: the chain of a base and the restore steps.
//! - [`config`]: the `[backup]` and `[source.backup]` tables of the shared TOML file.
//!
//! The daemon side (schedules, the HTTP API, jobs) lives in binlog-server, which embeds
//! this crate; so does the `snapshotter` command.

pub mod clone;
pub mod config;
pub mod dbfilter;
pub mod logical;
pub mod objstore;
pub mod physical;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod sql;
pub mod take;
pub mod tool;

pub use config::{
    BackupConfig, LogicalTool, Method, SourceBackupConfig, SourceBackupSettings, StoreSettings,
};
pub use objstore::{BaseStore, StoreError};
pub use take::{new_backup_id, Progress, Snapshotter, TakeError, TakeRequest};
pub use tool::{Endpoint, Tools};
