//! Restore verification (seed 001's weekly check, done by a machine): the newest good
//! base of the week is restored into a scratch instance, replays the archived binlogs
//! from the fake primary (binlog verification), then chains to the live primary (chain
//! verification), and its data is compared with the primary's at one GTID position (data
//! checks). The time to a usable, caught-up instance is the RTO.
//!
//! | module | its one job |
//! |---|---|
//! | [`schedule`] | the weekly schedule and seed 001's skip/restart rules (pure, given clocks) |
//! | [`report`] | the run report: phases, outcomes, figures |
//! | [`html`] | self-contained HTML pages of a report and of the weekly summary |
//! | [`runner`] | the service that runs verifications (reuses the PITR runner and fake primary) |

pub mod html;
pub mod report;
pub mod runner;
pub mod schedule;
