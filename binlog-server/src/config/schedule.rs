//! The validated `[source.verify]` schedule: a weekday, a start and an optional stop
//! time of day, UTC, and the parsers of those values. What a schedule decides (the next
//! start, which base, skip or restart) is in `crate::verify::schedule`.

use chrono::{NaiveTime, Weekday};

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
pub fn parse_day(s: &str) -> Result<Weekday, String> {
    s.trim()
        .parse::<Weekday>()
        .map_err(|_| format!("{s:?} is not a weekday (mon, tue, ..., sun, or the full name)"))
}

/// Parses a time of day "HH:MM" or "HH:MM:SS" (UTC).
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_time_of_day(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(s.trim(), "%H:%M"))
        .map_err(|_| format!("{s:?} is not a time of day (HH:MM or HH:MM:SS, UTC)"))
}
