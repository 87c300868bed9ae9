//! Timeline records in the archive store: which server each stretch of a source's
//! archive came from (failover follow), kept beside the binlogs so that a node rebuilt
//! from the store alone ([`super::rebuild`]) knows its timelines as the lost catalog
//! did.
//!
//! # Layout
//!
//! - `<source>/timelines/tl<N>.json`: timeline N's row as the catalog has it when the
//!   timeline starts (server_id, redacted URL, start time, the archive's last GTID at
//!   the switch, the stored name of its first file, the reason), [`Record`].
//! - `<source>/timelines/tl<N>.divergent.json`: written once the new server's stream
//!   showed that it lacks the previous timeline's last transactions, [`Divergent`].
//!
//! Both are written create-only ([`Store::put_bytes`]) from the catalog's rows, so two
//! writers (an owner and a later one) write the same bytes and neither overwrites the
//! other; neither is ever deleted (a few hundred bytes per failover).
//!
//! # When, and after a crash
//!
//! Capture writes what is missing ([`put_missing`], one listing) after each switch or
//! divergence it records in the catalog, and when it starts on a source that followed a
//! switch (timeline 1 alone needs no record: a rebuild recreates it when capture
//! reaches the server). The catalog row comes
//! first: a crash or a store outage between the two leaves the record missing until
//! the next start. A rebuild that finds a timeline's files but not its record
//! ([`rows_for_rebuild`]) marks the timeline's switch as of unknown divergence, so that
//! replay refuses to cross it rather than mix two servers' histories.

use std::collections::{BTreeMap, BTreeSet};

use catalog::TimelineRow;
use objstore::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// Largest record read back, bytes (a record is a few hundred).
const RECORD_MAX: usize = 64 * 1024;

/// The text a rebuilt timeline carries as its divergence when the store holds its files
/// but not its record.
pub const UNKNOWN_DIVERGENCE: &str =
    "unknown: rebuilt from the archive store, which holds no record of this switch";

/// `<source>/timelines/`.
pub fn prefix(source: &str) -> String {
    format!("{source}/timelines/")
}

/// `<source>/timelines/tl<N>.json`.
pub fn record_key(source: &str, timeline: i64) -> String {
    format!("{}tl{timeline}.json", prefix(source))
}

/// `<source>/timelines/tl<N>.divergent.json`.
pub fn divergent_key(source: &str, timeline: i64) -> String {
    format!("{}tl{timeline}.divergent.json", prefix(source))
}

/// `tl<N>.json`: a timeline as it started (its row, `divergent` always null: that is
/// `tl<N>.divergent.json`'s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Format (1).
    pub version: u32,
    /// The row.
    #[serde(flatten)]
    pub row: TimelineRow,
}

/// `tl<N>.divergent.json`: the previous timeline's transactions the server lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergent {
    /// Format (1).
    pub version: u32,
    /// 2, 3, ...
    pub timeline: i64,
    /// The divergent transactions, for people ("<first>..<last> (<n> transactions)").
    pub divergent: String,
}

impl Record {
    fn of(r: &TimelineRow) -> Record {
        Record {
            version: 1,
            row: TimelineRow {
                divergent: None,
                ..r.clone()
            },
        }
    }
}

/// Errors reading the records back.
#[derive(Debug, thiserror::Error)]
pub enum TimelineRecordError {
    /// The store failed (listing or reading): retry later.
    #[error("timeline records: {0}")]
    Store(#[from] StoreError),
    /// An object under `<source>/timelines/` is not a record of this source: a definite
    /// stop for the rebuild, with the key (someone else's object, or damage).
    #[error("timeline record {key} is not one: {message}")]
    Invalid {
        /// The object's key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Writes the records of `rows` (the catalog's timelines of `source`) that the store
/// lacks: one listing, then one create-only PUT per missing object (an object another
/// writer made meanwhile counts as written). Returns how many were written.
///
/// # Errors
///
/// The store's first failure; the rest are written at the next call.
pub async fn put_missing(
    store: &Store,
    source: &str,
    rows: &[TimelineRow],
) -> Result<usize, StoreError> {
    let have: BTreeSet<String> = store
        .list(&prefix(source))
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut put = 0;
    for r in rows {
        let mut objects = vec![(record_key(source, r.timeline), json(&Record::of(r)))];
        if let Some(text) = &r.divergent {
            let d = Divergent {
                version: 1,
                timeline: r.timeline,
                divergent: text.clone(),
            };
            objects.push((divergent_key(source, r.timeline), json(&d)));
        }
        for (key, bytes) in objects {
            if have.contains(&key) {
                continue;
            }
            match store.put_bytes(&key, &bytes).await {
                Ok(_) => put += 1,
                Err(StoreError::Exists(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(put)
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// The timeline rows a rebuild imports for `source`: every record in the store, with
/// its divergence when recorded, and, for a timeline N >= 2 that `stored_timelines`
/// (the timelines of the files the store holds) names but no record does, a row of
/// unknown server whose first file is the timeline's first stored file and whose
/// divergence is [`UNKNOWN_DIVERGENCE`]. Oldest first.
///
/// `first_files`: the first stored file of each timeline (stored names).
///
/// # Errors
///
/// [`TimelineRecordError`]: the store, or an object that is not a record of `source`.
pub async fn rows_for_rebuild(
    store: &Store,
    source: &str,
    first_files: &BTreeMap<u32, String>,
) -> Result<Vec<TimelineRow>, TimelineRecordError> {
    let mut records: BTreeMap<i64, TimelineRow> = BTreeMap::new();
    let mut divergent: BTreeMap<i64, String> = BTreeMap::new();
    for (key, _) in store.list(&prefix(source)).await? {
        let raw = store.get_bytes(&key, RECORD_MAX).await?;
        let invalid = |message: String| TimelineRecordError::Invalid {
            key: key.clone(),
            message,
        };
        if key.ends_with(".divergent.json") {
            let d: Divergent = serde_json::from_slice(&raw).map_err(|e| invalid(e.to_string()))?;
            if key != divergent_key(source, d.timeline) {
                return Err(invalid(format!("it records timeline {}", d.timeline)));
            }
            divergent.insert(d.timeline, d.divergent);
        } else {
            let r = serde_json::from_slice::<Record>(&raw)
                .map_err(|e| invalid(e.to_string()))?
                .row;
            if r.source != source || key != record_key(source, r.timeline) {
                return Err(invalid(format!(
                    "it records timeline {} of {:?}",
                    r.timeline, r.source
                )));
            }
            records.insert(r.timeline, r);
        }
    }
    for (&t, first) in first_files {
        let t = i64::from(t);
        if t < 2 || records.contains_key(&t) {
            continue;
        }
        records.insert(
            t,
            TimelineRow {
                source: source.to_string(),
                timeline: t,
                server_id: 0,
                server_uuid: None,
                server_url: "unknown (rebuilt from the archive store)".into(),
                started_at: 0,
                switch_gtid: None,
                first_file: Some(first.clone()),
                reason: Some("rebuilt from the archive store without its record".into()),
                divergent: None,
            },
        );
        divergent.insert(t, UNKNOWN_DIVERGENCE.into());
    }
    Ok(records
        .into_values()
        .map(|mut r| {
            r.divergent = divergent.remove(&r.timeline);
            r
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::local_store;

    fn row(t: i64, divergent: Option<&str>) -> TimelineRow {
        TimelineRow {
            source: "db1".into(),
            timeline: t,
            server_id: t * 10,
            server_uuid: None,
            server_url: format!("mysql://repl:***@db{t}:3306"),
            started_at: 1_700_000_000 + t,
            switch_gtid: (t > 1).then(|| format!("0-1-{t}00")),
            first_file: (t > 1).then(|| format!("tl{t}/mysql-bin.000001")),
            reason: (t > 1).then(|| "the primary became read-only".into()),
            divergent: divergent.map(str::to_owned),
        }
    }

    /// Records round-trip (divergence included, a second put writes nothing), and a
    /// timeline whose files the store holds without a record comes back of unknown
    /// divergence with its first stored file.
    #[tokio::test]
    async fn records_round_trip_and_a_missing_one_is_of_unknown_divergence() {
        let d = tempfile::tempdir().unwrap();
        let store = local_store(d.path());
        let rows = [
            row(1, None),
            row(2, Some("0-1-150..0-1-200 (51 transactions)")),
        ];
        assert_eq!(put_missing(&store, "db1", &rows).await.unwrap(), 3);
        assert_eq!(put_missing(&store, "db1", &rows).await.unwrap(), 0);
        let firsts = BTreeMap::from([
            (1, "mysql-bin.000001".to_string()),
            (2, "tl2/mysql-bin.000001".to_string()),
            (3, "tl3/mysql-bin.000004".to_string()),
        ]);
        let got = rows_for_rebuild(&store, "db1", &firsts).await.unwrap();
        assert_eq!(got[..2], rows);
        let third = &got[2];
        assert_eq!(third.timeline, 3);
        assert_eq!(third.first_file.as_deref(), Some("tl3/mysql-bin.000004"));
        assert_eq!(third.divergent.as_deref(), Some(UNKNOWN_DIVERGENCE));
        assert_eq!(third.server_id, 0);
        assert!(rows_for_rebuild(&store, "other", &BTreeMap::new())
            .await
            .unwrap()
            .is_empty());
    }

    /// An object under the prefix that records another source's timeline is refused.
    #[tokio::test]
    async fn a_record_of_another_source_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let store = local_store(d.path());
        let mut r = row(2, None);
        r.source = "db9".into();
        store
            .put_bytes(&record_key("db1", 2), &json(&Record::of(&r)))
            .await
            .unwrap();
        let err = rows_for_rebuild(&store, "db1", &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(matches!(err, TimelineRecordError::Invalid { .. }), "{err}");
    }
}
