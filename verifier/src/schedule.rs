//! The weekly schedule and seed 001's rules for starting a run.
//!
//! Times are UTC. A schedule names a weekday, a start time and an optional `stop_at`
//! time: a run started at `start` stops chain verification at the first `stop_at` after
//! its start (the next day when `stop_at` is earlier than `start`).
//!
//! Rules, applied when a scheduled run is due ([`decide`]):
//! - the base to verify is the newest COMPLETED base of the last 7 days; none is a
//!   finding ("no base to verify"), recorded like any result;
//! - a run still going on that same base, started less than 7 days ago, is left alone
//!   (the new run is skipped);
//! - any other run still going (an older base, or older than a week) is stale: it is
//!   stopped and a new run starts.

use serde::{Deserialize, Serialize};

/// How far back a base may be to be verified, and how long a run may go on before the
/// next scheduled run replaces it: one week, seconds.
pub const WEEK_SECS: i64 = 7 * 24 * 3600;

/// A weekly schedule: the validated `[source.verify]` times (its rules are here).
pub use node::config::schedule::{parse_day, parse_time_of_day, Schedule};

/// A COMPLETED base that could be verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Base id.
    pub id: String,
    /// When it finished, unix seconds.
    pub completed_at: i64,
}

/// A run that is still going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// Run id.
    pub id: String,
    /// The base it verifies.
    pub base_id: Option<String>,
    /// Start, unix seconds.
    pub started_at: i64,
}

/// What to do when a run is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No COMPLETED base in the last week: record "no base to verify" (and stop a run
    /// still going, if any: it is older than the newest base window).
    NoBase {
        /// The stale run to stop, if any.
        stop: Option<String>,
    },
    /// A run on the newest base is going and younger than a week: leave it.
    Skip {
        /// The run left alone.
        running: String,
        /// Why.
        reason: String,
    },
    /// Verify `base_id`, after stopping `stop` if set.
    Run {
        /// The base.
        base_id: String,
        /// A stale run to stop first.
        stop: Option<String>,
    },
}

/// Applies the rules at `now` (unix seconds) to the COMPLETED bases (any order) and the
/// run still going, if any.
pub fn decide(now: i64, bases: &[Candidate], running: Option<&Running>) -> Decision {
    let newest = bases
        .iter()
        .filter(|b| b.completed_at <= now && now - b.completed_at <= WEEK_SECS)
        .max_by(|a, b| (a.completed_at, &a.id).cmp(&(b.completed_at, &b.id)));
    let Some(base) = newest else {
        return Decision::NoBase {
            stop: running.map(|r| r.id.clone()),
        };
    };
    if let Some(r) = running {
        let young = now - r.started_at < WEEK_SECS;
        if young && r.base_id.as_deref() == Some(base.id.as_str()) {
            return Decision::Skip {
                running: r.id.clone(),
                reason: format!(
                    "run {} on base {} is still going (started {} s ago)",
                    r.id,
                    base.id,
                    now - r.started_at
                ),
            };
        }
        return Decision::Run {
            base_id: base.id.clone(),
            stop: Some(r.id.clone()),
        };
    }
    Decision::Run {
        base_id: base.id.clone(),
        stop: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc, Weekday};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn sched(stop: Option<&str>) -> Schedule {
        Schedule {
            enabled: true,
            day: parse_day("mon").unwrap_or(Weekday::Mon),
            start: parse_time_of_day("01:30").unwrap_or_default(),
            stop_at: stop.map(|s| parse_time_of_day(s).unwrap_or_default()),
            keep_instance: false,
        }
    }

    #[test]
    fn next_start_is_the_next_matching_weekday_strictly_after() {
        let s = sched(None);
        // 2026-11-21 is a Saturday.
        assert_eq!(
            s.next_start(at("2026-11-21T12:00:00Z")),
            at("2026-11-23T01:30:00Z")
        );
        // On the Monday before the start time: that day.
        assert_eq!(
            s.next_start(at("2026-11-23T01:00:00Z")),
            at("2026-11-23T01:30:00Z")
        );
        // Exactly at the start or after it: the next week.
        assert_eq!(
            s.next_start(at("2026-11-23T01:30:00Z")),
            at("2026-11-30T01:30:00Z")
        );
    }

    #[test]
    fn deadline_is_the_first_stop_at_after_the_start() {
        assert_eq!(
            sched(Some("08:00")).deadline(at("2026-11-23T01:30:00Z")),
            Some(at("2026-11-23T08:00:00Z"))
        );
        assert_eq!(
            sched(Some("01:00")).deadline(at("2026-11-23T01:30:00Z")),
            Some(at("2026-11-24T01:00:00Z"))
        );
        assert_eq!(sched(None).deadline(at("2026-11-23T01:30:00Z")), None);
    }

    #[test]
    fn parse_errors_name_the_forms() {
        assert!(parse_day("funday").unwrap_err().contains("weekday"));
        assert!(parse_time_of_day("25:00").unwrap_err().contains("HH:MM"));
        assert_eq!(parse_day("Sunday"), Ok(Weekday::Sun));
    }

    const DAY: i64 = 86_400;

    fn base(id: &str, t: i64) -> Candidate {
        Candidate {
            id: id.into(),
            completed_at: t,
        }
    }

    #[test]
    fn no_base_in_the_last_week_is_a_finding() {
        let now = 100 * DAY;
        assert_eq!(decide(now, &[], None), Decision::NoBase { stop: None });
        assert_eq!(
            decide(now, &[base("old", now - 8 * DAY)], None),
            Decision::NoBase { stop: None }
        );
        // A base "from the future" (clock skew) is not picked either.
        assert_eq!(
            decide(now, &[base("future", now + 10)], None),
            Decision::NoBase { stop: None }
        );
    }

    #[test]
    fn the_newest_base_of_the_week_is_verified() {
        let now = 100 * DAY;
        let bases = [
            base("a", now - 6 * DAY),
            base("c", now - DAY),
            base("b", now - 3 * DAY),
        ];
        assert_eq!(
            decide(now, &bases, None),
            Decision::Run {
                base_id: "c".into(),
                stop: None
            }
        );
    }

    #[test]
    fn a_young_run_on_the_newest_base_is_left_alone() {
        let now = 100 * DAY;
        let bases = [base("c", now - DAY)];
        let r = Running {
            id: "r1".into(),
            base_id: Some("c".into()),
            started_at: now - 6 * DAY,
        };
        assert!(
            matches!(decide(now, &bases, Some(&r)), Decision::Skip { running, .. } if running == "r1")
        );
    }

    #[test]
    fn a_stale_run_is_stopped_and_a_new_one_starts() {
        let now = 100 * DAY;
        let bases = [base("c", now - DAY), base("b", now - 5 * DAY)];
        // Same base, but a week old.
        let old = Running {
            id: "r1".into(),
            base_id: Some("c".into()),
            started_at: now - 7 * DAY,
        };
        assert_eq!(
            decide(now, &bases, Some(&old)),
            Decision::Run {
                base_id: "c".into(),
                stop: Some("r1".into())
            }
        );
        // Young, but on an older base than the newest.
        let other = Running {
            id: "r2".into(),
            base_id: Some("b".into()),
            started_at: now - DAY,
        };
        assert_eq!(
            decide(now, &bases, Some(&other)),
            Decision::Run {
                base_id: "c".into(),
                stop: Some("r2".into())
            }
        );
        // No base any more: the run still going is stopped too.
        assert_eq!(
            decide(now + 30 * DAY, &bases, Some(&other)),
            Decision::NoBase {
                stop: Some("r2".into())
            }
        );
    }
}
