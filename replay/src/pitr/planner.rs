//! The planner: a [`Target`] (time or GTID) becomes a [`Plan`] (base, binlog range, stop
//! point, counts) or a [`PlanError`] that says why not; target time text and GTID
//! positions.

use std::sync::Arc;

use catalog::{BackupRow, BackupState, BinlogFileRow, Catalog, FileState, GapRow};
use serde::Serialize;

use super::error::{internal, PlanError};
use super::timefmt::fmt_time;
use crate::fake_primary::StopAt;
use archive::index::{Index, TxnEntry};
use binlog::binlog_order;
use binlog::Gtid;
use node::status::{CaptureState, StatusCell};

/// A restore target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Unix seconds (UTC).
    Time(i64),
    /// A GTID.
    Gtid(Gtid),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Time(t) => write!(f, "time {}", fmt_time(*t)),
            Target::Gtid(g) => write!(f, "GTID {g}"),
        }
    }
}

/// The base a plan starts from.
#[derive(Debug, Clone, Serialize)]
pub struct PlanBase {
    /// Base id (the newest of its chain).
    pub id: String,
    /// physical | logical.
    pub method: String,
    /// Tool.
    pub tool: String,
    /// Ids to apply in order (full first).
    pub chain: Vec<String>,
    /// Consistency time, unix seconds.
    pub consistent_at: Option<i64>,
    /// Binlog file at the consistency point.
    pub binlog_file: String,
    /// Position, bytes.
    pub binlog_pos: u64,
    /// GTID position.
    pub gtid_pos: Option<String>,
}

/// Where a plan's range crosses a failover switch into `file`, the next timeline's
/// first file: that file starts with history the earlier timeline holds (the new
/// server's whole file is stored), so a replay of the range applies it from `from`, the
/// offset of its first transaction the earlier timeline lacks (its size when it holds
/// none). The fake primary skips the same transactions by GTID; `binlog-server export`
/// cuts the file there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crossing {
    /// Stored name (`tl<N>/<name>`).
    pub file: String,
    /// Offset, bytes, of the first transaction to apply in it.
    pub from: u64,
}

/// A PITR plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Source name.
    pub source: String,
    /// Target as text.
    pub target: String,
    /// Target time, unix seconds.
    pub target_time: Option<i64>,
    /// Target GTID.
    pub target_gtid: Option<String>,
    /// The base.
    pub base: PlanBase,
    /// Where replay stops (a transaction boundary; nothing at or after it is applied).
    pub stop: StopAt,
    /// GTID of the last transaction applied (`None` when nothing is applied or the
    /// binlogs have no GTIDs).
    pub end_gtid: Option<String>,
    /// Commit time of that transaction, unix seconds.
    pub end_commit_time: Option<u32>,
    /// Transactions to apply.
    pub transactions: u64,
    /// Binlog bytes to apply (from the base's position to the stop).
    pub bytes: u64,
    /// Binlog files in the range.
    pub files: Vec<String>,
    /// Where the range crosses a failover switch (empty on one timeline).
    pub crossings: Vec<Crossing>,
    /// Index ordinal of the first transaction to apply (for progress).
    #[serde(skip)]
    pub first_ordinal: u64,
}

/// The service's clock, unix seconds.
/// Plans the restore of `source` to `target`: the cut, the newest usable base at or
/// before it (or `base_id`), the checked binlog range between them, and the counts.
///
/// # Errors
///
/// A no-plan variant of [`PlanError`] with the reason when the archive cannot do it;
/// BadRequest for a target time out of range; Internal for catalog and index failures.
pub async fn plan(
    catalog: &Catalog,
    index: &Arc<Index>,
    status: Option<&StatusCell>,
    source: &str,
    target: &Target,
    base_id: Option<&str>,
) -> Result<Plan, PlanError> {
    // 1. The cut: (file, pos) and the last transaction applied.
    let cut = find_cut(index, status, source, target).await?;
    // 2. The newest usable base at or before the cut.
    let (base, start) = choose_base(catalog, index, source, &cut.stop, base_id).await?;
    let chain = snapshotter::restore::chain(catalog, &base.id)
        .await
        .map_err(|source| PlanError::BaseChain {
            base_id: base.id.clone(),
            source: Box::new(source),
        })?;
    // 3. The files in the range: present, not FAIL, no hole.
    let (range, timelines) = checked_range(catalog, source, &base.id, &start, &cut.stop).await?;
    check_indexed(index, source, &range).await?;
    let crossings = crossings(index, source, &range, &timelines).await?;
    // 4. Counts: transactions by ordinal, bytes by position.
    let base_gtid = base.gtid_pos.clone().unwrap_or_default();
    let first_ordinal = first_ordinal(index, source, base_gtid, &start, &cut.stop).await?;
    let transactions = match &cut.last {
        Some(l) => (l.ordinal + 1).saturating_sub(first_ordinal),
        None => 0,
    };
    let mut bytes = 0u64;
    for f in &range {
        let crossed = crossings.iter().find(|c| c.file == f.name);
        let from = match crossed {
            _ if f.name == start.file => start.pos,
            Some(c) => c.from,
            None => 0,
        };
        let to = if f.name == cut.stop.file {
            cut.stop.pos
        } else {
            f.size
        };
        bytes += to.saturating_sub(from);
    }
    let (end_gtid, end_commit_time) = match (&cut.last, transactions) {
        (Some(l), n) if n > 0 => (l.gtid.clone(), Some(l.commit_timestamp)),
        _ => (None, None),
    };
    Ok(Plan {
        source: source.to_string(),
        target: target.to_string(),
        target_time: match target {
            Target::Time(t) => Some(*t),
            _ => None,
        },
        target_gtid: match target {
            Target::Gtid(g) => Some(g.to_string()),
            _ => None,
        },
        base: PlanBase {
            id: base.id.clone(),
            method: base.method.clone(),
            tool: base.tool.clone(),
            chain: chain.iter().map(|b| b.id.clone()).collect(),
            consistent_at: base.consistent_at,
            binlog_file: start.file,
            binlog_pos: start.pos,
            gtid_pos: base.gtid_pos.clone().filter(|g| !g.is_empty()),
        },
        stop: cut.stop,
        end_gtid,
        end_commit_time,
        transactions,
        bytes,
        files: range.iter().map(|f| f.name.clone()).collect(),
        crossings,
        first_ordinal,
    })
}

/// Where replay stops and the last transaction applied before it (`None` when the cut
/// precedes the archive's first transaction).
struct Cut {
    stop: StopAt,
    last: Option<TxnEntry>,
}

/// A base's binlog position: where replay starts.
struct BasePos {
    file: String,
    pos: u64,
}

/// Where replay starts for `base`: its binlog position; on an archive with several
/// timelines (`multi`, failover follow), the end of the newest of its GTIDs in the index,
/// because a base's file name is its server's own (a base taken on a later primary
/// names that server's file, which the archive stores as `tl<N>/<name>`, or holds the
/// shared history on an earlier timeline). Blocking (index reads).
fn base_position(
    idx: &Index,
    source: &str,
    base: &BackupRow,
    multi: bool,
) -> Result<BasePos, PlanError> {
    let own = BasePos {
        file: base.binlog_file.clone().unwrap_or_default(),
        pos: base.binlog_pos.unwrap_or(4),
    };
    let Some(gtid_pos) = base.gtid_pos.as_deref().filter(|_| multi) else {
        return Ok(own);
    };
    let mut best: Option<TxnEntry> = None;
    for part in gtid_pos.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Ok(g) = part.parse::<Gtid>() else {
            continue;
        };
        if let Some(e) = idx.find_gtid(source, &g).map_err(internal)? {
            if best.as_ref().is_none_or(|b| e.ordinal > b.ordinal) {
                best = Some(e);
            }
        }
    }
    Ok(match best {
        Some(e) => BasePos {
            file: e.file,
            pos: e.end,
        },
        None => own,
    })
}

/// Binlog order of a position: by file sequence, then offset.
fn order_key(file: &str, pos: u64) -> (binlog::BinlogOrder, u64) {
    (binlog_order(file), pos)
}

/// Finds the cut for `target` in the index (on a blocking thread).
async fn find_cut(
    index: &Arc<Index>,
    status: Option<&StatusCell>,
    source: &str,
    target: &Target,
) -> Result<Cut, PlanError> {
    let idx = index.clone();
    let name = source.to_string();
    let t2 = target.clone();
    let st = status.map(|s| s.snapshot());
    tokio::task::spawn_blocking(move || match &t2 {
        Target::Time(t) => {
            let live = st
                .as_ref()
                .is_some_and(|s| s.state == CaptureState::Streaming && s.seconds_behind == Some(0));
            cut_at_time(&idx, &name, *t, live)
        }
        Target::Gtid(g) => cut_at_gtid(&idx, &name, g),
    })
    .await
    .map_err(internal)?
}

/// The cut for a target time: before the first transaction committed after `t`, or the
/// archive's end when none is, provided the capture is `live` (streaming, caught up).
fn cut_at_time(idx: &Index, name: &str, t: i64, live: bool) -> Result<Cut, PlanError> {
    let now = catalog::unix_now();
    if t > now {
        return Err(PlanError::TargetInFuture { target: t, now });
    }
    let t32 = u32::try_from(t)
        .map_err(|_| PlanError::BadRequest(format!("target time {t} is out of range")))?;
    if let Some(e) = idx.first_after_time(name, t32).map_err(internal)? {
        let last = match e.ordinal.checked_sub(1) {
            Some(o) => idx.by_ordinal(name, o).map_err(internal)?,
            None => None,
        };
        return Ok(Cut {
            stop: StopAt {
                file: e.file,
                pos: e.start,
            },
            last,
        });
    }
    let last = idx
        .last(name)
        .map_err(internal)?
        .ok_or_else(|| PlanError::NothingArchived {
            source_name: name.to_string(),
        })?;
    if !live {
        return Err(PlanError::BeyondArchiveEnd {
            source_name: name.to_string(),
            target: t,
            newest_commit: i64::from(last.commit_timestamp),
        });
    }
    Ok(Cut {
        stop: StopAt {
            file: last.file.clone(),
            pos: last.end,
        },
        last: Some(last),
    })
}

/// The cut for a target GTID: just after its transaction.
fn cut_at_gtid(idx: &Index, name: &str, g: &Gtid) -> Result<Cut, PlanError> {
    let e =
        idx.find_gtid(name, g)
            .map_err(internal)?
            .ok_or_else(|| PlanError::GtidNotArchived {
                source_name: name.to_string(),
                gtid: g.clone(),
            })?;
    Ok(Cut {
        stop: StopAt {
            file: e.file.clone(),
            pos: e.end,
        },
        last: Some(e),
    })
}

/// The newest COMPLETED physical or logical base (only `base_id`, when given) whose
/// binlog position ([`base_position`], where its replay starts) is at or before `stop`,
/// with that position.
async fn choose_base(
    catalog: &Catalog,
    index: &Arc<Index>,
    source: &str,
    stop: &StopAt,
    base_id: Option<&str>,
) -> Result<(BackupRow, BasePos), PlanError> {
    let stop_key = order_key(&stop.file, stop.pos);
    let bases = catalog.list_backups(source).await.map_err(internal)?;
    let multi = catalog
        .list_timelines(source)
        .await
        .map_err(internal)?
        .len()
        > 1;
    let usable: Vec<BackupRow> = bases
        .iter()
        .filter(|b| b.state == BackupState::Completed)
        .filter(|b| b.method == "physical" || b.method == "logical")
        .filter(|b| base_id.is_none_or(|id| b.id == id))
        .filter(|b| b.binlog_file.is_some() && b.binlog_pos.is_some())
        .cloned()
        .collect();
    // Each base's position in the archive's names (base_position), compared with the stop.
    let (idx, name) = (index.clone(), source.to_string());
    let placed = tokio::task::spawn_blocking(move || {
        usable
            .into_iter()
            .map(|b| base_position(&idx, &name, &b, multi).map(|p| (b, p)))
            .collect::<Result<Vec<_>, PlanError>>()
    })
    .await
    .map_err(internal)??;
    // The newest (the last of equals, as a stable sort leaves them).
    let newest = placed
        .into_iter()
        .filter(|(_, p)| order_key(&p.file, p.pos) <= stop_key)
        .max_by_key(|(b, p)| (binlog_order(&p.file), p.pos, b.started_at));
    if let (Some(id), None) = (base_id, &newest) {
        return Err(PlanError::BaseNotUsable {
            source_name: source.to_string(),
            base_id: id.to_string(),
        });
    }
    newest.ok_or_else(|| PlanError::NoBase {
        source_name: source.to_string(),
        oldest: bases
            .iter()
            .filter(|b| b.state == BackupState::Completed)
            .filter_map(|b| b.consistent_at)
            .min(),
    })
}

/// The catalog's files from the base's file to the stop's, in order, checked: the range
/// starts at the base's file and ends at the stop's, has no sequence hole or recorded
/// gap, and no file in it is FAIL.
async fn checked_range(
    catalog: &Catalog,
    source: &str,
    base_id: &str,
    start: &BasePos,
    stop: &StopAt,
) -> Result<(Vec<BinlogFileRow>, Vec<catalog::TimelineRow>), PlanError> {
    let files = catalog.list_files(source).await.map_err(internal)?;
    let mut range = Vec::new();
    for f in &files {
        let o = binlog_order(&f.name);
        if o >= binlog_order(&start.file) && o <= binlog_order(&stop.file) {
            range.push(f.clone());
        }
    }
    range.sort_by_key(|f| binlog_order(&f.name));
    if range.first().map(|f| f.name.as_str()) != Some(start.file.as_str()) {
        return Err(PlanError::BaseFileNotArchived {
            source_name: source.to_string(),
            file: start.file.clone(),
            base_id: base_id.to_string(),
        });
    }
    if range.last().map(|f| f.name.as_str()) != Some(stop.file.as_str()) {
        return Err(PlanError::FileNotListed {
            source_name: source.to_string(),
            file: stop.file.clone(),
        });
    }
    let gaps = catalog.list_gaps(source).await.map_err(internal)?;
    let timelines = catalog.list_timelines(source).await.map_err(internal)?;
    check_continuity(&range, &gaps, &timelines)?;
    for f in &range {
        if f.state == FileState::Fail {
            return Err(PlanError::FileFailed {
                file: f.name.clone(),
                info: f.info.clone(),
            });
        }
    }
    Ok((range, timelines))
}

/// The range's crossings of failover switches ([`Crossing`]): for each file that starts
/// a later timeline than the file before it, the start of the transaction after the
/// timeline's switch GTID (the archive's last transaction when capture switched: the
/// index holds the new timeline's transactions from there on, in order), when that
/// transaction is in the file; else the file's size (it repeats history only).
async fn crossings(
    index: &Arc<Index>,
    source: &str,
    range: &[BinlogFileRow],
    timelines: &[catalog::TimelineRow],
) -> Result<Vec<Crossing>, PlanError> {
    let mut want = Vec::new();
    for w in range.windows(2) {
        let (ta, tb) = (
            binlog::split_timeline(&w[0].name).0,
            binlog::split_timeline(&w[1].name).0,
        );
        if ta == tb {
            continue;
        }
        let switch = timelines
            .iter()
            .find(|t| t.timeline == i64::from(tb))
            .and_then(|t| t.switch_gtid.as_deref())
            .and_then(|g| g.parse::<binlog::Gtid>().ok());
        want.push((w[1].name.clone(), w[1].size, tb, switch));
    }
    if want.is_empty() {
        return Ok(Vec::new());
    }
    let (idx, s) = (index.clone(), source.to_string());
    tokio::task::spawn_blocking(move || {
        want.into_iter()
            .map(|(file, size, timeline, switch)| {
                // No switch GTID (an empty archive then): the file is all new.
                let Some(g) = switch else {
                    return Ok(Crossing { file, from: 4 });
                };
                // The switch GTID is indexed where it came first; without it the cut
                // in the new file cannot be placed.
                let Some(at) = idx.find_gtid(&s, &g).map_err(internal)? else {
                    return Err(PlanError::SwitchNotIndexed {
                        timeline,
                        first_file: file,
                        gtid: g.to_string(),
                    });
                };
                let next = idx.by_ordinal(&s, at.ordinal + 1).map_err(internal)?;
                let from = next.filter(|e| e.file == file).map_or(size, |e| e.start);
                Ok(Crossing { file, from })
            })
            .collect::<Result<Vec<_>, PlanError>>()
    })
    .await
    .map_err(internal)?
}

/// No file of `range` is one of the index's holes ([`Index::unindexed`]).
async fn check_indexed(
    index: &Arc<Index>,
    source: &str,
    range: &[BinlogFileRow],
) -> Result<(), PlanError> {
    let (idx, s) = (index.clone(), source.to_string());
    let holes = tokio::task::spawn_blocking(move || idx.unindexed(&s))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    match range.iter().find(|f| holes.contains(&f.name)) {
        Some(f) => Err(PlanError::FileNotIndexed {
            file: f.name.clone(),
        }),
        None => Ok(()),
    }
}

/// Consecutive files of `range` have consecutive sequence numbers and no recorded gap
/// lies between them; where the range crosses a failover switch (`timelines`), the
/// later file is the next timeline's first file and that timeline has no divergent
/// transactions (the replay then skips what the new timeline's first file repeats:
/// the fake primary sends each transaction from the file the index holds it in).
fn check_continuity(
    range: &[BinlogFileRow],
    gaps: &[GapRow],
    timelines: &[catalog::TimelineRow],
) -> Result<(), PlanError> {
    for w in range.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let (ta, tb) = (
            binlog::split_timeline(&a.name).0,
            binlog::split_timeline(&b.name).0,
        );
        if ta != tb {
            let row = timelines.iter().find(|t| t.timeline == i64::from(tb));
            // Timelines between the two hold no file (capture left their server before
            // its first byte): `b` must start its own timeline.
            if row.and_then(|r| r.first_file.as_deref()) != Some(b.name.as_str()) {
                return Err(PlanError::SequenceHole {
                    before: a.name.clone(),
                    after: b.name.clone(),
                });
            }
            if let Some(divergent) = row.and_then(|r| r.divergent.clone()) {
                return Err(PlanError::DivergentSwitch {
                    timeline: tb,
                    first_file: b.name.clone(),
                    divergent,
                });
            }
        } else if b.seq != a.seq + 1 && a.seq >= 0 {
            return Err(PlanError::SequenceHole {
                before: a.name.clone(),
                after: b.name.clone(),
            });
        }
        if let Some(g) = gaps
            .iter()
            .find(|g| g.after_file.as_deref() == Some(a.name.as_str()))
        {
            return Err(PlanError::RecordedGap {
                before: a.name.clone(),
                after: b.name.clone(),
                reason: g.reason.clone(),
            });
        }
    }
    Ok(())
}

/// Index ordinal of the first transaction to apply: after the newest of the base's GTIDs
/// (`base_gtid`, "0-1-5,1-2-9") that the index holds at or before the base's position;
/// 0 when the base sits before the archive's first transaction (on a blocking thread).
async fn first_ordinal(
    index: &Arc<Index>,
    source: &str,
    base_gtid: String,
    start: &BasePos,
    stop: &StopAt,
) -> Result<u64, PlanError> {
    let idx = index.clone();
    let name = source.to_string();
    let (bf2, bpos, stop2) = (start.file.clone(), start.pos, stop.clone());
    tokio::task::spawn_blocking(move || -> Result<u64, PlanError> {
        let bgtid = base_gtid;
        let mut best: Option<u64> = None;
        for part in bgtid.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g: Gtid = part.parse().map_err(|_| {
                PlanError::Internal(format!("base GTID {part:?} does not parse").into())
            })?;
            if let Some(e) = idx.find_gtid(&name, &g).map_err(internal)? {
                if order_key(&e.file, e.end) <= order_key(&bf2, bpos) {
                    best = Some(best.map_or(e.ordinal, |b| b.max(e.ordinal)));
                }
            }
        }
        match best {
            Some(o) => Ok(o + 1),
            None => {
                // No GTID of the base is archived: fine only when the base sits before
                // the archive's first transaction.
                match idx.by_ordinal(&name, 0).map_err(internal)? {
                    Some(e) if order_key(&e.file, e.start) >= order_key(&bf2, bpos) => Ok(0),
                    None if order_key(&stop2.file, stop2.pos) <= order_key(&bf2, bpos) => Ok(0),
                    _ => Err(PlanError::BasePositionNotArchived {
                        source_name: name,
                        file: bf2,
                        pos: bpos,
                        gtid: bgtid,
                    }),
                }
            }
        }
    })
    .await
    .map_err(internal)?
}

/// True when the GTID position `gpos` ("0-1-100,1-2-5") includes `end` (same domain,
/// sequence at least `end`'s).
pub fn gtid_reached(gpos: &str, end: &str) -> bool {
    let Ok(Gtid::MariaDb { domain, seq, .. }) = end.parse::<Gtid>() else {
        return false;
    };
    gpos.split(',')
        .filter_map(|p| p.trim().parse::<Gtid>().ok())
        .any(|g| matches!(g, Gtid::MariaDb { domain: d, seq: s, .. } if d == domain && s >= seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions_reach_their_end() {
        assert!(gtid_reached("0-1-100", "0-1-100"));
        assert!(gtid_reached("1-2-3,0-1-101", "0-1-100"));
        assert!(!gtid_reached("0-1-99", "0-1-100"));
        assert!(!gtid_reached("1-1-500", "0-1-100"));
        assert!(!gtid_reached("", "0-1-1"));
    }
}
