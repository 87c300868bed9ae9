//! The validated `[source.verify]` schedule: a weekday, a start and an optional stop
//! time of day, UTC, the parsers of those values, and the two times it implies (the next
//! start, a run's deadline). Which base a due run verifies, and whether it skips or
//! restarts, is in `verifier::schedule`.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};

/// A weekly schedule (config `[source.verify]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Whether the service runs it.
    pub enabled: bool,
    /// Day of the week.
    pub day: Weekday,
    /// Start time of day, UTC.
    pub start: NaiveTime,
    /// Chain verification stops at this time of day (UTC) if not caught up by then.
    pub stop_at: Option<NaiveTime>,
    /// Keep the scratch instance running after the run (default: remove it).
    pub keep_instance: bool,
}

/// Parses a weekday: "mon", "Monday", "MON"...
///
/// # Errors
/// A message naming the accepted forms.
// The text is the product: a parser's message to the person who wrote the input
// (config file, CLI flag or API field), shown as it is; no caller acts on it.
pub fn parse_day(s: &str) -> Result<Weekday, String> {
    s.trim()
        .parse::<Weekday>()
        .map_err(|_| format!("{s:?} is not a weekday (mon, tue, ..., sun, or the full name)"))
}

/// Parses a time of day "HH:MM" or "HH:MM:SS" (UTC).
///
/// # Errors
/// A message naming the accepted forms.
// The text is the product: a parser's message to the person who wrote the input
// (config file, CLI flag or API field), shown as it is; no caller acts on it.
pub fn parse_time_of_day(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(s.trim(), "%H:%M"))
        .map_err(|_| format!("{s:?} is not a time of day (HH:MM or HH:MM:SS, UTC)"))
}

impl Schedule {
    /// The first scheduled start strictly after `after`.
    pub fn next_start(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        let mut day = after.date_naive();
        for _ in 0..8 {
            if day.weekday() == self.day {
                let t = Utc.from_utc_datetime(&day.and_time(self.start));
                if t > after {
                    return t;
                }
            }
            day = day.succ_opt().unwrap_or(day);
        }
        // Unreachable for a valid weekday; a week later keeps the loop sane.
        after + Duration::days(7)
    }

    /// When a run started at `started` stops chain verification: the first `stop_at`
    /// time of day after `started`; `None` without `stop_at`.
    pub fn deadline(&self, started: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let stop = self.stop_at?;
        let today = Utc.from_utc_datetime(&started.date_naive().and_time(stop));
        Some(if today > started {
            today
        } else {
            today + Duration::days(1)
        })
    }
}
