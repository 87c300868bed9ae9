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

/// Sort key of stored binlog names: (timeline, sequence number, name).
pub type BinlogOrder = (u32, u64, String);

/// Sort key of binlog names: the timeline ([`split_timeline`]: a stored name of timeline
/// N >= 2 is `tl<N>/<the server's name>`, timeline 1 has no prefix), then the numeric
/// extension ([`binlog_seq`]; names without one sort last in their timeline), then the
/// name. So every file of an older timeline sorts before every file of a newer one.
pub fn binlog_order(name: &str) -> BinlogOrder {
    let (timeline, wire) = split_timeline(name);
    (
        timeline,
        binlog_seq(wire).unwrap_or(u64::MAX),
        name.to_owned(),
    )
}

/// A stored name's timeline and the server's own file name: `"tl3/mysql-bin.000007"` →
/// `(3, "mysql-bin.000007")`, `"mysql-bin.000042"` → `(1, "mysql-bin.000042")`. A
/// prefix that is not `tl<N>/` with N >= 2 (no leading zero) is not a timeline: the
/// whole name is returned with timeline 1.
///
/// Timelines follow PostgreSQL's: a source's history is timeline 1 until its first
/// failover; each server capture switches to starts the next one.
pub fn split_timeline(name: &str) -> (u32, &str) {
    name.split_once('/')
        .and_then(|(dir, wire)| Some((timeline_dir(dir)?, wire)))
        .unwrap_or((1, name))
}

/// The timeline whose files a directory named `dir` holds: `"tl3"` → `Some(3)`; `None`
/// for anything but `tl<N>` with N >= 2 and no leading zero.
pub fn timeline_dir(dir: &str) -> Option<u32> {
    let n = dir.strip_prefix("tl")?;
    if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|n| *n >= 2)
}

/// The stored name of the server's file `wire` on `timeline` (the inverse of
/// [`split_timeline`]): timeline 1 keeps the name, timeline N >= 2 gets `tl<N>/`.
pub fn timeline_name(timeline: u32, wire: &str) -> String {
    if timeline <= 1 {
        wire.to_owned()
    } else {
        format!("tl{timeline}/{wire}")
    }
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

    #[test]
    fn timelines_sort_after_each_other_and_round_trip() {
        let mut v = vec![
            "tl2/mysql-bin.000003",
            "mysql-bin.000010",
            "tl10/mysql-bin.000001",
            "tl2/mysql-bin.000002",
        ];
        v.sort_by_key(|n| binlog_order(n));
        assert_eq!(
            v,
            [
                "mysql-bin.000010",
                "tl2/mysql-bin.000002",
                "tl2/mysql-bin.000003",
                "tl10/mysql-bin.000001"
            ]
        );
        assert_eq!(split_timeline("tl3/a.000001"), (3, "a.000001"));
        assert_eq!(timeline_dir("tl12"), Some(12));
        for not_one in ["tl1", "tl012", "tl", "tlx", "x"] {
            assert_eq!(timeline_dir(not_one), None, "{not_one}");
        }
        for not_one in [
            "tl1/a.000001",
            "tl02/a.000001",
            "tl/a.1",
            "tlx/a.1",
            "a.000001",
        ] {
            assert_eq!(split_timeline(not_one), (1, not_one));
        }
        assert_eq!(timeline_name(1, "a.000001"), "a.000001");
        assert_eq!(timeline_name(4, "a.000001"), "tl4/a.000001");
        assert_eq!(
            split_timeline(&timeline_name(4, "a.000001")),
            (4, "a.000001")
        );
    }
}
