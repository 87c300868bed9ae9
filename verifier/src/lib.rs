//! Restore verification (seed 001's weekly check, done by a machine): the newest good
//! base of the week is restored into a scratch instance, replays the archived binlogs
//! from binlog-server's fake primary (binlog verification), then chains to the live
//! primary (chain verification), and its data is compared with the primary's at one GTID
//! position (data checks). The time to a usable, caught-up instance is the RTO.
//!
//! This crate holds what does not need a server: the schedule and its skip/restart rules
//! ([`schedule`]), the report ([`report`]) and its self-contained HTML pages ([`html`]).
//! The runner lives in binlog-server (`binlog-server/src/verify.rs`), next to the PITR
//! runner and the fake primary it reuses; the `verifier` binary is built from there too.

pub mod html;
pub mod report;
pub mod schedule;
