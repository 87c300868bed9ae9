//! Restore verification (seed 001's weekly check, done by a machine): the newest good
//! base of the week is restored into a scratch instance, replays the archived binlogs
//! from the fake primary (binlog verification), then chains to the live primary (chain
//! verification), and its data is compared with the primary's at one GTID position (data
//! checks). The time to a usable, caught-up instance is the RTO.
//!
//! | module | its one job |
//! |---|---|
//! | [`cli`] | the `verifier` binary's commands (restore verification through the service's API) |
//! | [`schedule`] | the weekly schedule and seed 001's skip/restart rules (pure, given clocks) |
//! | [`report`] | the run report: phases, outcomes, figures |
//! | [`html`] | self-contained HTML pages of a report and of the weekly summary |
//! | [`runner`] | the service that runs verifications: requests, schedules, the order of a run's phases; [`runner::VerifyError`] |
//! | `phase` | what a run's phases share: the run context (report, source, clocks, cancel), phase bookkeeping, a phase's failure |
//! | `restore` | phases 1, 2 and 5: the private PITR job that restores the base and replays the archive (reuses the PITR runner and fake primary), and clean-up |
//! | `chain` | phase 3: chaining the scratch instance to the live primary by GTID until caught up (the RTO) |
//! | `data` | phase 4: the primary's consistent snapshot, the replica brought to its GTID, CHECK TABLE and per-table rows and checksums compared |
//! | `sql` | the SQL helpers of the phases: scratch-instance session, statements, `SHOW SLAVE STATUS`, backtick identifier quoting (`ident`) |

mod chain;
pub mod cli;
mod data;
pub mod html;
mod phase;
pub mod report;
mod restore;
pub mod runner;
pub mod schedule;
mod sql;
