//! Binlog file names: the sequence number in a name's numeric extension and the order
//! of names (the order a primary writes its files in). The one definition for the
//! catalog, the archive, capture and the fake primary.

/// Sequence number from a binlog file name's numeric extension
/// (`"mysql-bin.000042"` → `Some(42)`).
///
/// Returns `None` if the name has no `.`, the part after the last `.` is empty or not
/// all ASCII digits (`"mysql-bin.index"`), or the number does not fit in a `u64`.
pub fn binlog_seq(name: &str) -> Option<u64> {
    let (_, ext) = name.rsplit_once('.')?;
    if ext.is_empty() || !ext.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ext.parse().ok()
}

/// Sort key of binlog names: the numeric extension ([`binlog_seq`]; names without one
/// sort last), then the name.
pub fn binlog_order(name: &str) -> (u64, String) {
    (binlog_seq(name).unwrap_or(u64::MAX), name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_order_by_their_numeric_extension() {
        let mut v = vec![
            "mysql-bin.000010",
            "mysql-bin.000009",
            "odd",
            "mysql-bin.1000000",
        ];
        v.sort_by_key(|n| binlog_order(n));
        assert_eq!(
            v,
            [
                "mysql-bin.000009",
                "mysql-bin.000010",
                "mysql-bin.1000000",
                "odd"
            ]
        );
        assert_eq!(binlog_seq("a.b"), None);
        assert_eq!(binlog_seq("mysql-bin.18446744073709551615"), Some(u64::MAX));
        assert_eq!(binlog_seq("mysql-bin.18446744073709551616"), None);
    }
}
