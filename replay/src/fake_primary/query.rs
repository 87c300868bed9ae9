//! The tolerant answers to a replica's statements: `SET` stores user variables, `SELECT`
//! evaluates each item, `SHOW VARIABLES LIKE` / `SHOW BINARY LOGS` / `SHOW MASTER STATUS`
//! answer from the archive, anything else gets OK (see the module doc of
//! [`super`]).

use std::collections::BTreeMap;

use super::archive::{durable_end, list_files, Archive, ArchiveFacts};
use super::wire::{result_set, Wire};

/// Splits at top-level commas (outside quotes and parentheses).
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0i32;
    for c in s.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                cur.push(c);
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    cur.push(c);
                }
                '(' => {
                    depth += 1;
                    cur.push(c);
                }
                ')' => {
                    depth -= 1;
                    cur.push(c);
                }
                ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            },
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

/// A value without its surrounding `'...'` or `"..."` (and `\'` turned into `'`); other
/// values trimmed as they are.
fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].replace("\\'", "'");
        }
    }
    v.to_string()
}

/// A server variable the fake primary answers (`@@GLOBAL.name`, SHOW VARIABLES).
fn server_var(name: &str, facts: &ArchiveFacts, a: &Archive) -> Option<String> {
    let n = name.to_ascii_lowercase();
    let n = n
        .strip_prefix("global.")
        .or_else(|| n.strip_prefix("session."))
        .unwrap_or(&n);
    Some(match n {
        "server_id" => facts.server_id.to_string(),
        "version" => facts.version.clone(),
        "binlog_checksum" => facts.alg.as_str().to_string(),
        "log_bin" => "1".into(),
        "binlog_format" => "ROW".into(),
        // A semi-sync source to a replica that asks (`SET @rpl_semi_sync_slave = 1` /
        // `@rpl_semi_sync_replica = 1`): its events carry the header and transactions
        // ask for acks (`super::dump::DumpOptions::semi_sync`). Nothing commits here, so
        // nothing waits for them.
        "rpl_semi_sync_master_enabled" | "rpl_semi_sync_source_enabled" => "ON".into(),
        "gtid_domain_id" => "0".into(),
        "gtid_strict_mode" => "0".into(),
        "gtid_mode" => {
            if facts.mariadb {
                return None;
            }
            let last = a.index.last(&a.source).ok().flatten();
            if last.and_then(|l| l.gtid).is_some() {
                "ON"
            } else {
                "OFF"
            }
            .into()
        }
        "server_uuid" => {
            // A stable UUID per source (the fake primary is not the real primary).
            let h = crc32fast::hash(a.source.as_bytes());
            format!("{h:08x}-0000-4000-8000-00000000b1a5")
        }
        "gtid_binlog_pos" | "gtid_current_pos" => a
            .index
            .last(&a.source)
            .ok()
            .flatten()
            .and_then(|l| l.gtid)
            .unwrap_or_default(),
        "time_zone" => "SYSTEM".into(),
        "system_time_zone" => "UTC".into(),
        "collation_server" => "utf8mb4_general_ci".into(),
        "character_set_server" => "utf8mb4".into(),
        "max_allowed_packet" => "1073741824".into(),
        "hostname" => "binlog-server".into(),
        _ => return None,
    })
}

/// One `SELECT` item's value: `UNIX_TIMESTAMP()`, `VERSION()`, `@@server_var`, `@user_var`,
/// a quoted or numeric literal; `None` (NULL) for anything else.
fn eval_select_item(
    item: &str,
    vars: &BTreeMap<String, String>,
    facts: &ArchiveFacts,
    a: &Archive,
) -> Option<String> {
    let item = item.trim();
    let lower = item.to_ascii_lowercase();
    if lower == "unix_timestamp()" {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        return Some(t.to_string());
    }
    if lower == "version()" {
        return Some(facts.version.clone());
    }
    if let Some(v) = lower.strip_prefix("@@") {
        return server_var(v, facts, a);
    }
    if let Some(v) = lower.strip_prefix('@') {
        return vars.get(v).cloned();
    }
    if item.starts_with('\'') || item.starts_with('"') {
        return Some(unquote(item));
    }
    if !item.is_empty()
        && item
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Some(item.to_string());
    }
    None
}

/// Answers one COM_QUERY `sql`; `SET @x = ...` lands in `vars` (names lower case,
/// without the `@`).
///
/// # Errors
///
/// I/O errors, and an unreadable archive directory for the SHOW statements.
pub(super) async fn answer_query(
    w: &mut Wire,
    sql: &str,
    vars: &mut BTreeMap<String, String>,
    facts: &ArchiveFacts,
    a: &Archive,
) -> anyhow::Result<()> {
    let s = sql.trim().trim_end_matches(';').trim();
    let lower = s.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    match words.as_slice() {
        ["set", ..] => {
            set_vars(&s[3..], vars, facts, a);
            w.ok().await
        }
        ["select", ..] => {
            let (cols, row) = select_row(&s[6..], vars, facts, a);
            let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
            result_set(w, &cols, &[row]).await
        }
        ["show", "variables", "like", ..]
        | ["show", "global", "variables", "like", ..]
        | ["show", "session", "variables", "like", ..] => {
            let pat = s
                .to_ascii_lowercase()
                .rsplit_once(" like ")
                .map(|(_, p)| unquote(p))
                .unwrap_or_default();
            let rows: Vec<Vec<Option<String>>> = server_var(&pat, facts, a)
                .map(|v| vec![vec![Some(pat.clone()), Some(v)]])
                .unwrap_or_default();
            result_set(w, &["Variable_name", "Value"], &rows).await
        }
        ["show", "binary", "logs", ..] | ["show", "master", "logs", ..] => {
            let rows = binary_logs(a)?;
            result_set(w, &["Log_name", "File_size"], &rows).await
        }
        ["show", "master", "status", ..] | ["show", "binary", "log", "status", ..] => {
            let rows = master_status(facts, a)?;
            result_set(
                w,
                &[
                    "File",
                    "Position",
                    "Binlog_Do_DB",
                    "Binlog_Ignore_DB",
                    "Executed_Gtid_Set",
                ],
                &rows,
            )
            .await
        }
        ["show", ..] => result_set(w, &["Value"], &[]).await,
        _ => w.ok().await,
    }
}

/// `SET` (after the keyword): stores each `@name = value` in `vars` (a value
/// `@@server_var` is looked up, others are unquoted); `@@` assignments are ignored.
fn set_vars(
    assignments: &str,
    vars: &mut BTreeMap<String, String>,
    facts: &ArchiveFacts,
    a: &Archive,
) {
    for (name, v) in set_assignments(assignments) {
        let value = if let Some(var) = v.to_ascii_lowercase().strip_prefix("@@") {
            server_var(var, facts, a).unwrap_or_default()
        } else {
            unquote(&v)
        };
        vars.insert(name, value);
    }
}

/// The user-variable assignments of a `SET` (after the keyword): `(name` lower case
/// without `@`, `raw value)`; `@@` assignments and items without `=` are left out.
fn set_assignments(assignments: &str) -> Vec<(String, String)> {
    split_top(assignments)
        .iter()
        .filter_map(|asg| {
            let (k, v) = asg.split_once('=')?;
            let k = k.trim().to_ascii_lowercase();
            let name = k.strip_prefix('@').filter(|n| !n.starts_with('@'))?;
            Some((name.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// `SELECT` (after the keyword, any `FROM` ignored): the column names (an `AS` alias or
/// the item's text) and the one row of values.
fn select_row(
    select: &str,
    vars: &BTreeMap<String, String>,
    facts: &ArchiveFacts,
    a: &Archive,
) -> (Vec<String>, Vec<Option<String>>) {
    select_items(select)
        .into_iter()
        .map(|(expr, alias)| (alias, eval_select_item(&expr, vars, facts, a)))
        .unzip()
}

/// The items of a `SELECT` (after the keyword, any `FROM` ignored): `(expression,
/// column name)`, the name an `AS` alias or the item's text.
fn select_items(select: &str) -> Vec<(String, String)> {
    let body = select.trim();
    let body = match body.to_ascii_lowercase().find(" from ") {
        Some(i) => body.get(..i).unwrap_or(body),
        None => body,
    };
    split_top(body)
        .into_iter()
        .map(|it| match it.to_ascii_lowercase().rfind(" as ") {
            Some(i) => (
                it.get(..i).unwrap_or_default().to_string(),
                it.get(i + 4..)
                    .unwrap_or_default()
                    .trim()
                    .trim_matches('`')
                    .to_string(),
            ),
            None => (it.clone(), it),
        })
        .collect()
}

/// What a replica's query text parses into, without answering it (fuzzing: every
/// parser a query reaches before the archive is asked). Never panics.
pub(super) fn parse_only(sql: &str) -> usize {
    let s = sql.trim().trim_end_matches(';').trim();
    let lower = s.to_ascii_lowercase();
    let mut n = lower.split_whitespace().count();
    if let Some(rest) = s.get(3..) {
        n += set_assignments(rest).len();
    }
    if let Some(rest) = s.get(6..) {
        n += select_items(rest).len();
    }
    if let Some((_, p)) = lower.rsplit_once(" like ") {
        n += unquote(p).len();
    }
    n
}

/// `SHOW BINARY LOGS` rows: each file with its size (the ACTIVE file's durable length).
fn binary_logs(a: &Archive) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let files = list_files(a)?;
    let durable = durable_end(a);
    Ok(files
        .iter()
        .map(|(n, size)| {
            let size = match &durable {
                Some((f, p)) if f == n => *p,
                _ => *size,
            };
            vec![Some(n.clone()), Some(size.to_string())]
        })
        .collect())
}

/// `SHOW MASTER STATUS` row: the durable end (or the last file's size) and the last GTID;
/// no row while the archive is empty.
fn master_status(facts: &ArchiveFacts, a: &Archive) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let files = list_files(a)?;
    let row = match (durable_end(a), files.last()) {
        (Some((f, p)), _) => Some((f, p)),
        (None, Some((f, p))) => Some((f.clone(), *p)),
        _ => None,
    };
    let gtid = server_var("gtid_binlog_pos", facts, a);
    Ok(row
        .map(|(f, p)| {
            vec![vec![
                Some(f),
                Some(p.to_string()),
                Some(String::new()),
                Some(String::new()),
                gtid.clone(),
            ]]
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_assignments_split_outside_quotes() {
        assert_eq!(
            split_top(" @slave_connect_state='0-1-5,1-2-3', @slave_gtid_strict_mode=1"),
            vec![
                "@slave_connect_state='0-1-5,1-2-3'",
                "@slave_gtid_strict_mode=1"
            ]
        );
        assert_eq!(
            split_top("UNIX_TIMESTAMP(), f(a, b)"),
            vec!["UNIX_TIMESTAMP()", "f(a, b)"]
        );
        assert_eq!(unquote("'CRC32'"), "CRC32");
    }
}
