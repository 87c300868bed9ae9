//! Self-contained HTML pages (inline CSS, no scripts, no external resources): one run's
//! report and the weekly summary across sources.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::report::{BaseInfo, Outcome, RangeInfo, Report};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

fn badge(o: Outcome) -> String {
    let (bg, label) = match o {
        Outcome::Passed => ("#1a7f37", "PASSED"),
        Outcome::Failed => ("#cf222e", "FAILED"),
        Outcome::NoBase => ("#9a6700", "NO BASE TO VERIFY"),
        Outcome::Running => ("#0969da", "RUNNING"),
        Outcome::Cancelled => ("#6e7781", "CANCELLED"),
        Outcome::Skipped => ("#6e7781", "skipped"),
    };
    format!("<span class=\"b\" style=\"background:{bg}\">{label}</span>")
}

fn bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn secs(s: f64) -> String {
    if s >= 3600.0 {
        format!(
            "{}h {:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else if s >= 60.0 {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1} s")
    }
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#1f2328;padding:0 1em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f6f8fa}.b{color:#fff;border-radius:4px;padding:.1em .5em;font-weight:600;font-size:.85em}\
code{background:#f6f8fa;padding:.1em .3em;border-radius:3px}.err{background:#ffebe9;border:1px solid #cf222e;padding:.6em;border-radius:4px}\
.muted{color:#6e7781}";

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(title)
    )
}

/// The page of one run.
pub fn report_page(r: &Report, now: i64) -> String {
    let mut h = head(&format!("Verification {} of {}", r.id, r.source));
    overview_section(&mut h, r, now);
    error_section(&mut h, r);
    phases_section(&mut h, r);
    checks_section(&mut h, r);
    let _ = writeln!(
        h,
        "<p class=\"muted\">JSON: <a href=\"{0}\">{0}</a> · <a href=\"summary.html\">weekly summary</a></p></body></html>",
        escape(&r.id)
    );
    h
}

/// The title and the table of the run: times, RTO, base, range replayed, kept instance.
fn overview_section(h: &mut String, r: &Report, now: i64) {
    let _ = write!(
        h,
        "<h1>Restore verification of <code>{}</code> {}</h1>\n<table>\
         <tr><th>Run</th><td><code>{}</code> ({})</td></tr>\
         <tr><th>Started</th><td>{}</td></tr><tr><th>Finished</th><td>{}</td></tr>\
         <tr><th>Duration</th><td>{}</td></tr><tr><th>RTO</th><td>{}</td></tr>",
        escape(&r.source),
        badge(r.outcome),
        escape(&r.id),
        escape(&r.trigger),
        time(r.started_at),
        r.finished_at.map(time).unwrap_or_else(|| "—".into()),
        secs(r.duration(now) as f64),
        r.rto_seconds
            .map(|s| format!(
                "<b>{}</b> (start to a usable instance caught up with the primary)",
                secs(s)
            ))
            .unwrap_or_else(|| "—".into()),
    );
    if let Some(b) = &r.base {
        base_row(h, b);
    }
    if let Some(g) = &r.range {
        range_row(h, g);
    }
    if let Some(i) = &r.instance {
        let _ = write!(
            h,
            "<tr><th>Kept instance</th><td><code>{}</code></td></tr>",
            escape(&i.to_string())
        );
    }
    h.push_str("</table>\n");
}

/// The overview row of the base verified.
fn base_row(h: &mut String, b: &BaseInfo) {
    let _ = write!(
        h,
        "<tr><th>Base</th><td><code>{}</code>, {}, {}, taken {}{}; GTID <code>{}</code>, binlog <code>{}</code></td></tr>",
        escape(&b.id),
        escape(&b.method),
        bytes(b.bytes),
        b.consistent_at.map(time).unwrap_or_else(|| "?".into()),
        b.age_seconds
            .map(|a| format!(" ({} old)", secs(a as f64)))
            .unwrap_or_default(),
        escape(b.gtid_pos.as_deref().unwrap_or("—")),
        escape(b.binlog_position.as_deref().unwrap_or("—")),
    );
}

/// The overview row of the archived binlogs replayed.
fn range_row(h: &mut String, g: &RangeInfo) {
    let files = match (g.files.first(), g.files.last()) {
        (Some(a), Some(b)) if a != b => format!("{} … {} ({} files)", a, b, g.files.len()),
        (Some(a), _) => a.clone(),
        _ => "none".into(),
    };
    let _ = write!(
        h,
        "<tr><th>Archived binlogs replayed</th><td>{}, {}, {} transactions, to GTID <code>{}</code></td></tr>",
        escape(&files),
        bytes(g.bytes),
        g.transactions,
        escape(g.end_gtid.as_deref().unwrap_or("—"))
    );
}

/// The error box (what failed and where), if the run has an error.
fn error_section(h: &mut String, r: &Report) {
    if let Some(e) = &r.error {
        let _ = writeln!(
            h,
            "<div class=\"err\"><b>{}</b>{}</div>",
            escape(e),
            r.error_position
                .as_deref()
                .map(|p| format!("<br>at <code>{}</code>", escape(p)))
                .unwrap_or_default()
        );
    }
}

/// The table of the phases: result, time, bytes, detail.
fn phases_section(h: &mut String, r: &Report) {
    h.push_str("<h2>Phases</h2>\n<table><tr><th>Phase</th><th>Result</th><th>Time</th><th>Bytes</th><th>Detail</th></tr>\n");
    for p in &r.phases {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.name),
            badge(p.outcome),
            secs(p.seconds),
            if p.bytes > 0 {
                bytes(p.bytes)
            } else {
                "—".into()
            },
            escape(&p.detail)
        );
    }
    h.push_str("</table>\n");
}

/// The table of the data checks against the primary, if any ran.
fn checks_section(h: &mut String, r: &Report) {
    if r.checks.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<h2>Data checks</h2><p class=\"muted\">Compared with the primary at GTID <code>{}</code>.</p>\n\
         <table><tr><th>Table</th><th>Check</th><th>Result</th><th>Primary</th><th>Restored</th><th>Detail</th></tr>\n",
        escape(r.compared_at_gtid.as_deref().unwrap_or("—"))
    );
    for c in &r.checks {
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.table),
            escape(&c.kind),
            badge(c.outcome),
            escape(c.primary.as_deref().unwrap_or("")),
            escape(c.restored.as_deref().unwrap_or("")),
            escape(&c.detail)
        );
    }
    h.push_str("</table>\n");
}

/// The weekly summary: for each source, its runs of the last 7 days before `now`
/// (newest first), the last result, the last success and the RTO trend.
pub fn summary_page(reports: &[Report], sources: &[String], now: i64) -> String {
    let since = now - crate::schedule::WEEK_SECS;
    let mut by_source: BTreeMap<&str, Vec<&Report>> = BTreeMap::new();
    for s in sources {
        by_source.entry(s.as_str()).or_default();
    }
    for r in reports {
        by_source.entry(r.source.as_str()).or_default().push(r);
    }
    let mut h = head("Restore verification: weekly summary");
    let _ = write!(
        h,
        "<h1>Restore verification: weekly summary</h1><p class=\"muted\">{} to {}</p>\n\
         <table><tr><th>Source</th><th>Last result</th><th>Last success</th><th>Runs this week</th><th>RTO trend (oldest → newest)</th></tr>\n",
        time(since),
        time(now)
    );
    for (source, mut runs) in by_source {
        runs.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        let week: Vec<&&Report> = runs.iter().filter(|r| r.started_at >= since).collect();
        let last = runs.first();
        let last_ok = runs.iter().find(|r| r.outcome == Outcome::Passed);
        let counts = [Outcome::Passed, Outcome::Failed, Outcome::NoBase]
            .iter()
            .map(|o| {
                format!(
                    "{} {}",
                    week.iter().filter(|r| r.outcome == *o).count(),
                    o.as_str().replace('_', " ")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut trend: Vec<String> = runs
            .iter()
            .filter_map(|r| r.rto_seconds.map(secs))
            .take(8)
            .collect();
        trend.reverse();
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(source),
            last.map(|r| format!(
                "{} <a href=\"{}.html\">{}</a>{}",
                badge(r.outcome),
                escape(&r.id),
                time(r.started_at),
                r.error
                    .as_deref()
                    .map(|e| format!("<br><span class=\"muted\">{}</span>", escape(e)))
                    .unwrap_or_default()
            ))
            .unwrap_or_else(|| "never verified".into()),
            last_ok
                .map(|r| time(r.finished_at.unwrap_or(r.started_at)))
                .unwrap_or_else(|| "never".into()),
            counts,
            if trend.is_empty() {
                "—".into()
            } else {
                escape(&trend.join(" → "))
            }
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Check, Report};

    #[test]
    fn pages_escape_what_they_show() {
        let mut r = Report::new("v1", "db<1>", "manual", 1_700_000_000);
        r.outcome = Outcome::Failed;
        r.error = Some("duplicate key 'x' <script>".into());
        r.error_position = Some("mysql-bin.000002:1234".into());
        r.checks.push(Check {
            kind: "checksum".into(),
            table: "`test`.`t1`".into(),
            outcome: Outcome::Failed,
            primary: Some("1".into()),
            restored: Some("2".into()),
            detail: String::new(),
        });
        let p = report_page(&r, 1_700_000_100);
        assert!(p.contains("db&lt;1&gt;"));
        assert!(!p.contains("<script>"));
        assert!(p.contains("mysql-bin.000002:1234"));
        assert!(p.contains("FAILED"));
        let s = summary_page(&[r], &["db<1>".into(), "idle".into()], 1_700_000_100);
        assert!(s.contains("never verified"), "{s}");
        assert!(s.contains("0 passed, 1 failed, 0 no base"), "{s}");
    }
}
