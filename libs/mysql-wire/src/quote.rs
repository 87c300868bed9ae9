//! Quoting for SQL text that cannot use parameters: [`literal`] for string values,
//! [`ident`] for identifiers. The project's one quoting helper (MySQL and MariaDB
//! rules; escaped, never stripped).

/// `s` as a single-quoted SQL string literal, for a value that cannot be a parameter
/// (`CLONE LOCAL DATA DIRECTORY = '...'`, `SET GLOBAL gtid_slave_pos = '...'`).
///
/// `\` → `\\`, NUL → `\0`, newline → `\n`, carriage return → `\r`, Ctrl-Z → `\Z`
/// (MySQL's and MariaDB's escapes), and `'` → `''`. The quote is doubled rather than
/// backslash-escaped so that the literal also stays closed under
/// `sql_mode=NO_BACKSLASH_ESCAPES` (where `\'` would end it); in that mode only the
/// value of a string holding one of the escaped characters changes.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `s` as a backtick-quoted identifier (database, table, column): a backtick inside is
/// doubled, as MySQL and MariaDB read it.
pub fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the string literal at the start of `sql` as the server's lexer does
    /// (backslash escapes unless `no_backslash_escapes`, `''` for a quote): its value and
    /// what follows it, or `None` if it is never closed.
    fn lex_literal(sql: &str, no_backslash_escapes: bool) -> Option<(String, &str)> {
        let rest = sql.strip_prefix('\'')?;
        let mut value = String::new();
        let mut it = rest.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            match c {
                '\\' if !no_backslash_escapes => {
                    let (_, e) = it.next()?;
                    value.push(match e {
                        '0' => '\0',
                        'n' => '\n',
                        'r' => '\r',
                        'Z' => '\u{1a}',
                        other => other,
                    });
                }
                '\'' if it.peek().is_some_and(|&(_, n)| n == '\'') => {
                    it.next();
                    value.push('\'');
                }
                '\'' => return Some((value, rest.get(i + 1..)?)),
                c => value.push(c),
            }
        }
        None
    }

    #[test]
    fn trailing_backslash_stays_inside_the_literal() {
        let gtid = "0-1-7\\";
        let stmt = format!("SET GLOBAL gtid_slave_pos = {}", literal(gtid));
        assert_eq!(stmt, r"SET GLOBAL gtid_slave_pos = '0-1-7\\'");
        let lit = stmt.strip_prefix("SET GLOBAL gtid_slave_pos = ").unwrap();
        assert_eq!(lex_literal(lit, false), Some((gtid.to_owned(), "")));
        // Merely dropping quotes (the old way) leaves the literal open: `\'` is a quote.
        assert_eq!(lex_literal(&format!("'{gtid}'"), false), None);
    }

    #[test]
    fn literal_round_trips_and_never_ends_early() {
        for s in [
            "",
            "plain",
            "it's",
            "\\",
            "\\'",
            "a\\'; DROP TABLE t; -- ",
            "nul\0byte",
            "two\nlines\r\n",
            "ctrl\u{1a}z",
            "ünïcödé ''",
        ] {
            let lit = literal(s);
            assert_eq!(lex_literal(&lit, false), Some((s.to_owned(), "")), "{lit}");
            // Under NO_BACKSLASH_ESCAPES the value may differ, but the literal still
            // ends exactly at its last character.
            let (_, rest) = lex_literal(&lit, true).unwrap();
            assert_eq!(rest, "", "{lit}");
        }
        assert_eq!(literal("a'b\\c\0\n"), r"'a''b\\c\0\n'");
    }

    #[test]
    fn identifiers_double_their_backticks() {
        // Moved from the verifier's sql_quoting test.
        assert_eq!(literal("a'b\\c"), "'a''b\\\\c'");
        assert_eq!(ident("we`ird"), "`we``ird`");
        assert_eq!(ident("plain"), "`plain`");
    }
}
