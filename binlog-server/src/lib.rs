//! binlog-server: a fake replica per MySQL/MariaDB primary that keeps a verified,
//! byte-identical archive of every binlog, indexed by GTID and commit time; base
//! backups, point-in-time recovery through a fake primary, and weekly restore
//! verification on top.
//!
//! This crate is the top of the stack: capture and the process that runs everything.
//! The layers below it, each depending only on those before it:
//! `binlog`, `mysql_wire`, `objstore`, `catalog` (formats, protocol, stores) ->
//! `node` (config, status, tokens, CLI helpers) -> `archive` (local files, index,
//! object-store tier) -> `replay` (fake primary, PITR, scratch instances) ->
//! `verifier` (weekly restore verification); `snapshotter` takes base backups.
//! Data flow: primary -> [`source`] (capture) -> `archive` -> `replay` -> replica.
//!
//! # Module map
//!
//! | module | its one job |
//! |---|---|
//! | [`source`] | one source's capture: session with the primary, stream, writer, poll, file checks, re-pull, gaps |
//! | [`backups`] | base backups of the sources through the `snapshotter` crate: schedules, API glue |
//! | [`api`] | the HTTP API (status codes are chosen here) |
//! | [`http`] | the API's listener (TLS, limits, JSON rejections) and its tokens and roles |
//! | [`server`] | `serve`: starts and supervises everything |
//! | [`cli`] | the binlog-server and snapshotter command lines |
//! | [`fuzzing`] | one entry per fuzz target (`fuzz/`), replayed over the corpora by `cargo test` |

pub mod api;
pub mod backups;
pub mod cli;
pub mod fleet;
pub mod fuzzing;
pub mod http;
pub mod server;
pub mod source;
