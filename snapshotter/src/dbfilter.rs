//! Database filter of logical bases, seed 004's `db_list`:
//!
//! - `%` — every database;
//! - `fan,bo,union_log_%` — these databases; `%` (any run of characters) and `_` (one
//!   character) are SQL `LIKE` wildcards, `\%` and `\_` match them literally;
//! - `!fan,!bo` — every database except these (wildcards allowed too).
//!
//! Mixing included and excluded names (`!fan,bo`) is refused, as in seed 004. The system
//! schemas (`mysql`, `information_schema`, `performance_schema`, `sys`) are never part of
//! a logical base: a restore must not replace the target's accounts. Matching is exact
//! (case-sensitive), as database names are on Linux.

/// Schemas a logical base never includes.
pub const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// A parsed `databases` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFilter {
    text: String,
    exclude: bool,
    patterns: Vec<String>,
}

impl DbFilter {
    /// Parses the filter text. Errors say what is wrong (empty item, mixed `!`).
    // The text is the product: a parser's message to the person who wrote the input
    // (config file, CLI flag or API field), shown as it is; no caller acts on it.
    pub fn parse(text: &str) -> Result<DbFilter, String> {
        let items: Vec<&str> = text.split(',').map(str::trim).collect();
        if items.iter().any(|i| i.is_empty() || *i == "!") {
            return Err(format!(
                "{text:?}: empty database name; use \"%\", \"a,b,c_%\" or \"!a,!b\""
            ));
        }
        let negs = items.iter().filter(|i| i.starts_with('!')).count();
        if negs != 0 && negs != items.len() {
            return Err(format!(
                "{text:?}: mixing included and excluded (!) databases is not supported; \
                 list only names to include, or only !names to exclude"
            ));
        }
        Ok(DbFilter {
            text: text.to_owned(),
            exclude: negs != 0,
            patterns: items
                .iter()
                .map(|i| i.trim_start_matches('!').to_owned())
                .collect(),
        })
    }

    /// The filter as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether database `db` is in the base (system schemas never are).
    pub fn matches(&self, db: &str) -> bool {
        if SYSTEM_SCHEMAS.contains(&db) {
            return false;
        }
        let hit = self
            .patterns
            .iter()
            .any(|p| like(p.as_bytes(), db.as_bytes()));
        hit != self.exclude
    }

    /// The databases of `all` (e.g. `SHOW DATABASES`) that are in the base, sorted.
    pub fn select<'a>(&self, all: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut v: Vec<String> = all
            .into_iter()
            .filter(|d| self.matches(d))
            .map(str::to_owned)
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// SQL LIKE with `%`, `_` and `\` escapes, iterative with backtracking over the last `%`.
fn like(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some(b'%') => {
                star = Some((p, i));
                p += 1;
                continue;
            }
            Some(b'_') => {
                p += 1;
                i += 1;
                continue;
            }
            Some(b'\\') if pat.get(p + 1).is_some_and(|c| s.get(i) == Some(c)) => {
                p += 2;
                i += 1;
                continue;
            }
            Some(c) if *c != b'\\' && s.get(i) == Some(c) => {
                p += 1;
                i += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    while pat.get(p) == Some(&b'%') {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 9] = [
        "fan",
        "bo",
        "shi",
        "union_log_ad_1",
        "union_log_ad_2",
        "unionXlog",
        "mysql",
        "sys",
        "test",
    ];

    #[test]
    fn percent_selects_every_user_database() {
        let f = DbFilter::parse("%").unwrap();
        assert_eq!(
            f.select(ALL),
            // Byte order: 'X' sorts before '_'.
            vec![
                "bo",
                "fan",
                "shi",
                "test",
                "unionXlog",
                "union_log_ad_1",
                "union_log_ad_2"
            ]
        );
    }

    #[test]
    fn list_with_wildcards() {
        let f = DbFilter::parse("fan, bo,union_log_ad_%").unwrap();
        assert_eq!(
            f.select(ALL),
            vec!["bo", "fan", "union_log_ad_1", "union_log_ad_2"]
        );
        // `_` is one character: unionXlog matches union_log only through `_`.
        let f = DbFilter::parse("union_log").unwrap();
        assert_eq!(f.select(ALL), vec!["unionXlog"]);
        let f = DbFilter::parse(r"union\_log%").unwrap();
        assert_eq!(f.select(ALL), vec!["union_log_ad_1", "union_log_ad_2"]);
    }

    #[test]
    fn negation_excludes() {
        let f = DbFilter::parse("!fan,!bo,!union%").unwrap();
        assert_eq!(f.select(ALL), vec!["shi", "test"]);
    }

    #[test]
    fn system_schemas_never_selected() {
        let f = DbFilter::parse("mysql,sys,test").unwrap();
        assert_eq!(f.select(ALL), vec!["test"]);
    }

    #[test]
    fn refusals() {
        assert!(DbFilter::parse("!fan,bo").unwrap_err().contains("mixing"));
        assert!(DbFilter::parse("").unwrap_err().contains("empty"));
        assert!(DbFilter::parse("a,,b").unwrap_err().contains("empty"));
        assert!(DbFilter::parse("!").unwrap_err().contains("empty"));
    }

    #[test]
    fn like_edge_cases() {
        assert!(like(b"%", b""));
        assert!(like(b"a%b%c", b"aXXbYYc"));
        assert!(!like(b"a%b%c", b"aXXbYY"));
        assert!(like(b"%%a", b"bba"));
        assert!(!like(b"a_", b"a"));
    }
}
