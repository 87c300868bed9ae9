//! binlog-server: a fake replica per MySQL/MariaDB primary that keeps a verified,
//! byte-identical archive of every binlog, indexed by GTID and commit time; base
//! backups, point-in-time recovery through a fake primary, and weekly restore
//! verification on top.
//!
//! The binlog format lives in the `binlog` crate and the MySQL wire protocol (client
//! side, and the packets a server writes) in `mysql_wire`; this crate is the service.
//! Data flow: primary -> [`source`] (capture) -> [`archive`] (files, index) ->
//! [`replay`] (fake primary, PITR) -> replica.
//!
//! # Module map
//!
//! | module | its one job |
//! |---|---|
//! | [`config`] | the TOML file, validated into [`config::Settings`] |
//! | [`source`] | one source's capture: session with the primary, stream, writer, poll, file checks, re-pull, gaps |
//! | [`archive`] | the binlog files on disk ([`archive::store`]) and the transaction index ([`archive::index`]) |
//! | [`replay`] | serving the archive: the fake primary, PITR planning and jobs, scratch instances |
//! | [`backups`] | base backups of the sources through the `snapshotter` crate: schedules, API glue |
//! | [`verify`] | weekly restore verification: schedule, runner, reports and pages |
//! | [`status`] | live per-source state and the Prometheus metrics |
//! | [`api`] | the HTTP API (status codes are chosen here) |
//! | [`http`] | the API's listener (TLS, limits, JSON rejections) and its tokens and roles |
//! | [`server`] | `serve`: starts and supervises everything |
//! | [`cli`] | the three binaries' command lines |
//! | [`fuzzing`] | one entry per fuzz target (`fuzz/`), replayed over the corpora by `cargo test` |
//! | [`util`] | small shared helpers ([`util::lock`]) |

pub mod api;
pub mod archive;
pub mod backups;
pub mod cli;
pub mod config;
pub mod fuzzing;
pub mod http;
pub mod replay;
pub mod server;
pub mod source;
pub mod status;
pub mod util;
pub mod verify;
