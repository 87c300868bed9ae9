//! Cron schedules of base backups (the `croner` crate): 5 fields
//! (`minute hour day-of-month month day-of-week`) or 6 with seconds first, nicknames such
//! as `@daily`. Evaluated in UTC.

use chrono::{DateTime, Utc};
use croner::Cron;

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl Schedule {
    /// Parses a cron expression; the error names what is wrong.
    // The text is the product: a parser's message to the person who wrote the input
    // (config file, CLI flag or API field), shown as it is; no caller acts on it.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let cron: Cron = text.parse().map_err(|e| {
            format!("{text:?} is not a cron expression ({e}); e.g. \"0 2 * * *\" = 02:00 UTC daily")
        })?;
        Ok(Schedule {
            text: text.to_owned(),
            cron,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `after` that matches, or `None` if none exists.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn daily_and_hourly() {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 14, 3, 27).unwrap();
        let daily = Schedule::parse("0 2 * * *").unwrap();
        assert_eq!(
            daily.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap())
        );
        let hourly = Schedule::parse("0 * * * *").unwrap();
        assert_eq!(
            hourly.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 21, 15, 0, 0).unwrap())
        );
        // Strictly after: an exact match moves on.
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 15, 0, 0).unwrap();
        assert_eq!(
            hourly.next_after(at),
            Some(Utc.with_ymd_and_hms(2026, 11, 21, 16, 0, 0).unwrap())
        );
    }

    #[test]
    fn refuses_garbage() {
        assert!(Schedule::parse("every day").unwrap_err().contains("cron"));
        assert!(Schedule::parse("61 * * * *").is_err());
    }
}
