//! Phase 4 of a run, the data checks: the primary's consistent snapshot gives a GTID
//! position X and each InnoDB table's row count and checksum; the scratch instance is
//! brought to exactly X and the same values are read there and compared; every table
//! gets `CHECK TABLE` on the scratch instance. [`crate::runner`]'s module docs
//! say why the comparison is sound.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mysql_wire::conn::Conn;
use mysql_wire::quote;
use mysql_wire::{ConnError, ResultSet};

use crate::phase::{Fail, RunCtx, DATA};
use crate::report::{Check, Outcome};
use crate::runner::position_reached;
use crate::sql::{q, value, SlaveStatus};

/// A base table of the primary (outside the system schemas).
struct Table {
    db: String,
    name: String,
    engine: String,
    /// Column names, in order.
    columns: Vec<String>,
}

/// A table's row count and checksum, as the server prints them.
#[derive(Debug, Clone, PartialEq)]
struct Sums {
    rows: String,
    checksum: String,
}

/// What the primary's consistent snapshot saw.
struct Snapshot {
    /// The snapshot's GTID position (X).
    gtid: String,
    /// The InnoDB tables' sums, by [`Table::label`].
    sums: BTreeMap<String, Sums>,
}

impl Table {
    /// The table's name in the report, `` `db`.`table` ``.
    fn label(&self) -> String {
        format!("`{}`.`{}`", self.db, self.name)
    }

    /// The quoted name for a statement.
    fn sql_name(&self) -> String {
        format!("{}.{}", quote::ident(&self.db), quote::ident(&self.name))
    }

    /// Row count `n` and order-independent checksum `c` (`BIT_XOR(CRC32(CONCAT_WS('#',
    /// columns…, null flags)))`, the pt-table-checksum construction).
    fn sums_sql(&self) -> String {
        let cols = &self.columns;
        let vals = cols
            .iter()
            .map(|c| quote::ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let nulls = cols
            .iter()
            .map(|c| format!("ISNULL({})", quote::ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let expr = if cols.is_empty() {
            "0".to_string()
        } else {
            format!("COALESCE(BIT_XOR(CRC32(CONCAT_WS('#', {vals}, CONCAT({nulls})))), 0)")
        };
        format!("SELECT COUNT(*) AS n, {expr} AS c FROM {}", self.sql_name())
    }

    /// Reads the sums on `c`.
    async fn sums(&self, c: &mut Conn) -> Result<Sums, ConnError> {
        let rs = c.query(&self.sums_sql()).await?;
        Ok(Sums {
            rows: rs.get(0, "n").unwrap_or("").to_string(),
            checksum: rs.get(0, "c").unwrap_or("").to_string(),
        })
    }
}

impl RunCtx<'_> {
    /// Phase 4 on the sessions that phase 3 left, timed and written into the report.
    pub(super) async fn data_phase(&self, primary: &mut Conn, replica: &mut Conn) {
        let t = Instant::now();
        self.begin(DATA);
        match self.data_checks(primary, replica).await {
            Ok(detail) => self.pass(DATA, t, detail),
            Err(f) => self.fail(DATA, t, f),
        }
    }

    /// Phase 4; see the runner's module docs for why the comparison is sound. Returns
    /// the phase's detail; the checks go into the report either way.
    async fn data_checks(&self, primary: &mut Conn, replica: &mut Conn) -> Result<String, Fail> {
        q(replica, "STOP SLAVE", "STOP SLAVE").await?;
        let tables = list_tables(primary).await?;
        let snap = snapshot(primary, &tables).await?;
        let x = snap.gtid;
        self.set(|r| r.compared_at_gtid = Some(x.clone()));
        bring_to(replica, &x).await?;
        let checks = compare(replica, &tables, &snap.sums).await;
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| c.outcome == Outcome::Failed)
            .map(|c| format!("{} {}", c.table, c.kind))
            .collect();
        self.set(|r| r.checks = checks);
        if failed.is_empty() {
            Ok(format!(
                "{} tables pass CHECK TABLE; rows and checksums of {} InnoDB tables equal the primary's at GTID {x}",
                tables.len(),
                snap.sums.len()
            ))
        } else {
            Err(format!(
                "the restored data differ from the primary's at GTID {x}: {}",
                failed.join(", ")
            )
            .into())
        }
    }
}

/// The primary's base tables outside the system schemas, with their columns.
async fn list_tables(primary: &mut Conn) -> Result<Vec<Table>, Fail> {
    let tables = primary
        .query(
            "SELECT table_schema, table_name, engine FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') \
             ORDER BY table_schema, table_name",
        )
        .await
        .map_err(|e| format!("list the primary's tables: {e}"))?;
    let mut list = Vec::new();
    for row in &tables.rows {
        if let [Some(db), Some(t), engine] = row.as_slice() {
            let cols = primary
                .query(&format!(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = {} \
                     AND table_name = {} ORDER BY ordinal_position",
                    quote::literal(db),
                    quote::literal(t)
                ))
                .await
                .map_err(|e| format!("columns of {db}.{t}: {e}"))?;
            list.push(Table {
                db: db.clone(),
                name: t.clone(),
                engine: engine.clone().unwrap_or_default(),
                columns: cols
                    .rows
                    .iter()
                    .filter_map(|r| r.first().cloned().flatten())
                    .collect(),
            });
        }
    }
    Ok(list)
}

/// Inside one consistent snapshot of the primary: its binlog position, turned into the
/// GTID position X, and the sums of the InnoDB `tables`.
async fn snapshot(primary: &mut Conn, tables: &[Table]) -> Result<Snapshot, Fail> {
    q(
        primary,
        "START TRANSACTION WITH CONSISTENT SNAPSHOT",
        "the snapshot",
    )
    .await?;
    let st = primary
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| format!("SHOW STATUS LIKE 'binlog_snapshot_%': {e}"))?;
    let (snap_file, snap_pos) = snapshot_position(&st);
    let mut sums = BTreeMap::new();
    for t in tables {
        if t.engine.eq_ignore_ascii_case("InnoDB") {
            let s = t
                .sums(primary)
                .await
                .map_err(|e| format!("checksum {}.{} on the primary: {e}", t.db, t.name))?;
            sums.insert(t.label(), s);
        }
    }
    q(primary, "COMMIT", "end the snapshot").await?;
    let snap_pos: u64 = match (snap_file.is_empty(), snap_pos.parse()) {
        (false, Ok(p)) => p,
        _ => {
            return Err(format!(
                "the primary reports no usable Binlog_snapshot_file/position ({snap_file:?}, \
                 {snap_pos:?}): is its binlog on?"
            )
            .into())
        }
    };
    let sql = format!(
        "SELECT BINLOG_GTID_POS({}, {snap_pos})",
        quote::literal(&snap_file)
    );
    let gtid = value(primary, &sql).await?;
    Ok(Snapshot { gtid, sums })
}

/// `Binlog_snapshot_file` and `Binlog_snapshot_position` of `SHOW STATUS` rows (""
/// when absent).
fn snapshot_position(st: &ResultSet) -> (String, String) {
    let mut snap_file = String::new();
    let mut snap_pos = String::new();
    for r in &st.rows {
        if let [Some(k), Some(v)] = r.as_slice() {
            match k.to_ascii_lowercase().as_str() {
                "binlog_snapshot_file" => snap_file = v.clone(),
                "binlog_snapshot_position" => snap_pos = v.clone(),
                _ => {}
            }
        }
    }
    (snap_file, snap_pos)
}

/// Brings the (stopped) replica to exactly GTID position `x`: `START SLAVE UNTIL
/// master_gtid_pos = x` unless it is there already, then checks it got there.
async fn bring_to(replica: &mut Conn, x: &str) -> Result<(), Fail> {
    let have = value(replica, "SELECT @@GLOBAL.gtid_slave_pos").await?;
    if !position_reached(&have, x) {
        q(
            replica,
            &format!("START SLAVE UNTIL master_gtid_pos = {}", quote::literal(x)),
            "START SLAVE UNTIL",
        )
        .await?;
        wait_sql_thread_end(replica, x).await?;
        q(replica, "STOP SLAVE", "STOP SLAVE").await?;
    }
    let have = value(replica, "SELECT @@GLOBAL.gtid_slave_pos").await?;
    if !position_reached(&have, x) {
        return Err(format!("the replica stopped at {have}, short of {x}").into());
    }
    Ok(())
}

/// Waits (up to 10 minutes) for the replica's SQL thread to stop at the UNTIL position
/// `x`; fails when it stops on an error.
async fn wait_sql_thread_end(replica: &mut Conn, x: &str) -> Result<(), Fail> {
    let t = Instant::now();
    loop {
        let st = SlaveStatus::read(replica).await?;
        let n = st.get("Last_SQL_Errno");
        if !n.is_empty() && n != "0" {
            return Err(Fail {
                error: format!(
                    "the replica's SQL thread stopped: error {n}: {}",
                    st.get("Last_SQL_Error")
                ),
                position: Some(st.position()),
            });
        }
        if st.get("Slave_SQL_Running") != "Yes" {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(600) {
            return Err(format!("the replica did not reach {x} within 10 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The checks of every table on the replica: CHECK TABLE, and for the tables the
/// primary's snapshot summed (`on_primary`), rows and checksum compared.
async fn compare(
    replica: &mut Conn,
    tables: &[Table],
    on_primary: &BTreeMap<String, Sums>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for t in tables {
        checks.push(check_table(replica, t).await);
        match on_primary.get(&t.label()) {
            Some(p) => checks.extend(compare_sums(replica, t, p).await),
            None => checks.push(Check {
                kind: "checksum".into(),
                table: t.label(),
                outcome: Outcome::Skipped,
                primary: None,
                restored: None,
                detail: format!(
                    "not compared: {} is not transactional, the primary's snapshot cannot fix its contents",
                    t.engine
                ),
            }),
        }
    }
    checks
}

/// `CHECK TABLE` of `t` on the replica: passed when its last row says "status: OK".
async fn check_table(replica: &mut Conn, t: &Table) -> Check {
    let (ok, text) = match replica
        .query(&format!("CHECK TABLE {}", t.sql_name()))
        .await
    {
        Ok(rs) => {
            let last = rs.rows.len().saturating_sub(1);
            let ty = rs.get(last, "Msg_type").unwrap_or("").to_string();
            let txt = rs.get(last, "Msg_text").unwrap_or("").to_string();
            (
                ty.eq_ignore_ascii_case("status") && txt == "OK",
                format!("{ty}: {txt}"),
            )
        }
        Err(e) => (false, e.to_string()),
    };
    Check {
        kind: "check table".into(),
        table: t.label(),
        outcome: if ok { Outcome::Passed } else { Outcome::Failed },
        primary: None,
        restored: None,
        detail: text,
    }
}

/// The "rows" and "checksum" checks of `t`: the replica's sums against the primary's
/// `p`. A failed read on the replica is a checksum of "error: …" (and no rows).
async fn compare_sums(replica: &mut Conn, t: &Table, p: &Sums) -> [Check; 2] {
    let r = t.sums(replica).await.unwrap_or_else(|e| Sums {
        rows: String::new(),
        checksum: format!("error: {e}"),
    });
    let check = |kind: &str, p: &String, r: String| Check {
        kind: kind.into(),
        table: t.label(),
        outcome: if *p == r {
            Outcome::Passed
        } else {
            Outcome::Failed
        },
        primary: Some(p.clone()),
        restored: Some(r),
        detail: String::new(),
    };
    [
        check("rows", &p.rows, r.rows),
        check("checksum", &p.checksum, r.checksum),
    ]
}
