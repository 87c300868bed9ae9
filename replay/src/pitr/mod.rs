//! Point-in-time recovery: the planner and the runner.
//!
//! # Semantics
//!
//! - **Target time T** (unix seconds, UTC; text with an explicit zone is converted): the
//!   restore holds exactly the transactions whose commit event's timestamp is ≤ T, as the
//!   primary's clock wrote it into the binlog (event timestamps are UTC seconds, whatever
//!   the server's `time_zone`). Several transactions in the same second are all in or all
//!   out: the binlog has one-second resolution. The cut is made before the first
//!   transaction (by commit time, then binlog order) whose timestamp is > T, so it always
//!   falls between transactions. If the primary's clock stepped back, transactions after
//!   that cut with timestamps ≤ T are not restored (the binlog order is kept).
//! - **Target GTID G**: everything up to and including G's transaction.
//!
//! # Plan
//!
//! The newest COMPLETED base (physical or logical) whose binlog position is at or before
//! the cut; the binlog range from the base's position to the cut; transactions and bytes
//! to apply (from the index's ordinals and the files' sizes). No plan (HTTP 422) when no
//! base precedes the target, the target is in the future or past the archive's end, the
//! archive does not reach back to the base, or a file in the range is FAIL, missing or
//! behind a recorded gap.
//!
//! # Run
//!
//! Restore the base (physical: mariabackup prepare + incrementals + copy-back; logical:
//! myloader / mysql into a fresh instance), start it privately (see [`crate::instance`]),
//! set `gtid_slave_pos` to the base's GTID, point it with CHANGE MASTER at a fake primary
//! listener of this job (one-time account, stop point = the cut), start the parallel
//! applier, and wait until `gtid_slave_pos` holds the plan's last GTID and the relay log
//! is drained. Then STOP SLAVE, RESET SLAVE ALL, restart the instance on 127.0.0.1:PORT
//! and report. A failed run stops and removes its scratch instance; the report keeps the
//! replica's error and the event's file:pos. Job reports are saved in the catalog
//! (`pitr_jobs`) on every phase change.
//!
//! # Files
//!
//! | file | its one job |
//! |---|---|
//! | `mod.rs` | this map and the re-exports (every `crate::pitr::X` path) |
//! | `planner.rs` | [`Target`], [`Plan`], [`plan()`] and its steps (cut, base, checked range, counts); [`gtid_reached`] |
//! | `timefmt.rs` | target time text: [`parse_time`], [`fmt_time`] |
//! | `error.rs` | [`PlanError`]: one variant per reason there is no plan, with its data and [`PlanError::file`]; [`RunError`]: why a running job failed, with [`RunError::kind`] |
//! | `job.rs` | [`PitrService`]: the job registry and the API-facing calls (plan, start, get, cancel, remove) |
//! | `report.rs` | the report types ([`JobReport`], [`ReplayProgress`], [`Restored`]) and the running job they belong to |
//! | `allow.rs` | which existing instances and datadirs a restore may write to (`[pitr] allowed_destinations`, `allowed_datadir_roots`) |
//! | `runner.rs` | one job's run, from what the service hands it (`RunDeps`): restore the base, start the instance, CHANGE MASTER to the job's fake primary, wait, serve, record the end |

pub mod allow;
mod error;
mod job;
mod planner;
mod report;
mod runner;
mod timefmt;

pub use allow::Destination;
pub use error::{PlanError, RunError};
pub use job::{JobOptions, PitrDeps, PitrService};
pub use planner::{gtid_reached, plan, Plan, PlanBase, Target};
pub use report::{JobReport, ReplayProgress, Restored};
pub use timefmt::{fmt_time, parse_time};
