//! Base backups of MySQL/MariaDB sources into object storage, recorded in the catalog.
//!
//! A PITR starts from a base and replays binlogs from the base's exact position; this
//! crate takes those bases on schedule or on demand, stores them safely and finds them.
//!
//! # Module map
//!
//! Taking a base:
//!
//! - [`take`]: the orchestration of one base, DOING → UPLOADING → COMPLETED | ERROR
//!   (| SKIPPED), catalog row written last; calls the methods.
//! - `method` (private; its [`Progress`] is re-exported): the interface between [`take`]
//!   and each method — what a method is given, what it returns, the live progress.
//! - [`physical`]: mariabackup / xtrabackup, full and incremental, streamed into the
//!   store; and their restore.
//! - [`logical`]: mydumper or mysqldump, with the consistency point read from their
//!   output; and their restore into a running server.
//! - [`clone`]: MySQL 8.0.17+ clone plugin (untested against a live MySQL 8).
//! - [`sql`]: the SQL session on the server ([`sql::Sql`]), the facts read from it, its
//!   error type, and string literal quoting.
//! - [`tool`]: finding and running the external tools, with secret-free command lines.
//! - [`error`]: [`ToolError`] and [`BaseError`], why a tool, a base or a restore failed.
//!
//! Keeping and using bases:
//!
//! - the object store itself is the `objstore` crate (shared with the binlog archive):
//!   objects never overwritten, multipart with bounded memory, SHA-256 of every object.
//! - [`retention`]: keep N days and at least M bases; EXPIRED before DELETED.
//! - [`restore`]: the chain of a base, the method restores, and the position statements.
//!
//! Configuration:
//!
//! - [`config`]: the `[backup]` and `[source.backup]` tables of the shared TOML file.
//! - [`dbfilter`]: the `databases` filter of logical bases (`%`, `a,b_%`, `!a,!b`).
//! - [`schedule`]: cron schedules of bases, in UTC.
//!
//! Dependencies between the taking modules point one way: [`take`] → the methods →
//! `method`, [`sql`], [`tool`] and the `objstore` crate; no method names [`take`].
//!
//! The daemon side (schedules, the HTTP API, jobs) lives in binlog-server, which embeds
//! this crate; so does the `snapshotter` command.

pub mod clone;
pub mod config;
pub mod dbfilter;
pub mod error;
pub mod logical;
mod method;
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
pub use error::{BaseError, ToolError};
pub use method::Progress;
pub use take::{new_backup_id, Snapshotter, TakeError, TakeRequest};
pub use tool::{Endpoint, Tools};
