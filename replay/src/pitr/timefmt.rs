//! Target times as text: [`parse_time`] reads what a DBA types, [`fmt_time`] writes
//! what reports and messages show (UTC, one-second resolution).

/// "2026-11-21T14:03:27Z".
pub fn fmt_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Parses a target time: RFC 3339 ("2026-11-21T14:03:27Z", "...+02:00"), or
/// "2026-11-21 14:03:27" / "2026-11-21T14:03:27" taken as UTC, optionally followed by an
/// offset ("2026-11-21 14:03:27 +02:00"), or unix seconds ("@1790000000").
///
/// # Errors
///
/// A message with the accepted forms.
// The text is the product: a parser's message to the person who wrote the input
// (config file, CLI flag or API field), shown as it is; no caller acts on it.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Some(n) = s.strip_prefix('@') {
        return n.parse().map_err(|_| format!("{s:?}: not unix seconds"));
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(d.timestamp());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S %:z",
        "%Y-%m-%dT%H:%M:%S %:z",
        "%Y-%m-%d %H:%M:%S%:z",
    ] {
        if let Ok(d) = chrono::DateTime::parse_from_str(s, f) {
            return Ok(d.timestamp());
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(d.and_utc().timestamp());
        }
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-11-21T14:03:27Z, 2026-11-21T16:03:27+02:00), \
         \"2026-11-21 14:03:27\" (UTC) or \"@<unix seconds>\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_times_parse_in_utc_or_with_a_zone() {
        let t = parse_time("2026-11-21T14:03:27Z").unwrap();
        assert_eq!(parse_time("2026-11-21 14:03:27").unwrap(), t);
        assert_eq!(parse_time("2026-11-21T16:03:27+02:00").unwrap(), t);
        assert_eq!(parse_time("2026-11-21 16:03:27 +02:00").unwrap(), t);
        assert_eq!(parse_time(&format!("@{t}")).unwrap(), t);
        assert_eq!(fmt_time(t), "2026-11-21T14:03:27Z");
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-40 00:00:00").is_err());
    }
}
