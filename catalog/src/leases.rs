//! Nodes of a fleet and the leases that give each source to at most one of them.
//!
//! # Tables (migration 0006)
//!
//! - `nodes`: one row per node id that ever ran on this catalog: its `advertise` URL,
//!   when it started and its last heartbeat.
//! - `source_leases`: one row per source that was ever leased: `owner` (NULL = free),
//!   `epoch`, `expires_ms`, when the tenure began and was last renewed, and the previous
//!   owner with its last renewal (for the takeover time).
//!
//! Their times are **milliseconds on the database's clock** (PostgreSQL's
//! `statement_timestamp()` and `clock_timestamp()`, SQLite's `julianday('now')`), written by the statements, never
//! bound by a node: every node judges a lease against the one clock. A node's own
//! clock only decides when *it* stops writing (see [`Granted`]).
//!
//! # The protocol (neon's generation numbers, `docs/rfcs/025-generation-numbers.md`)
//!
//! - [`acquire_lease`](Catalog::acquire_lease) is one compare-and-set `UPDATE`: it
//!   succeeds only when the lease is free or expired, and it raises the epoch by one.
//!   PostgreSQL re-checks the `WHERE` of a concurrent `UPDATE` on the row it waited for,
//!   so of two nodes racing, one wins; SQLite serialises writers.
//! - [`renew_lease`](Catalog::renew_lease) extends the expiry only while the caller
//!   still holds that very epoch and the lease has not expired. A lease that expired,
//!   even if nobody took it, is never renewed: its owner must acquire again and gets a
//!   new epoch, since it stopped writing at expiry.
//! - [`release_lease`](Catalog::release_lease) frees it at once (drain, shut-down).
//! - [`lease_held`](Catalog::lease_held) is the fence: the writer's (owner, epoch) is
//!   the lease's, unexpired, on the database's clock.
//!
//! Nothing here is in a transaction: each call is one statement (plus, for a first
//! acquisition, an idempotent insert of the free row), so a crash leaves either the old
//! or the new lease.

use std::time::Duration;

use sqlx::FromRow;

use crate::{query_err, Backend, Catalog, CatalogError};

/// The time on the database's clock, in milliseconds since the Unix epoch, as an SQL
/// expression of each engine: the same value wherever it appears in one statement.
///
/// PostgreSQL's is `statement_timestamp()`, the statement's start: a statement that
/// waited for a row lock judges expiry by a time a little in the past, which only makes
/// an acquisition more careful; who wins is still decided by the row lock.
/// (`clock_timestamp()` moves between two uses in one statement.) SQLite's `'now'` is
/// fixed for one statement.
fn now_ms_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => {
            "CAST(floor(EXTRACT(EPOCH FROM statement_timestamp()) * 1000) AS BIGINT)"
        }
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

/// The database's clock *now* (not at the statement's start), for a check made once.
fn clock_ms_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "CAST(floor(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)",
        Backend::Sqlite => now_ms_sql(Backend::Sqlite),
    }
}

/// The fence of a write made under `(source, epoch)`, as an SQL condition: that tenure
/// is the source's lease, held and unexpired on the database's clock now. `source` and
/// `epoch` are SQL expressions: the statement's placeholders (e.g. `"$1"`, `"$12"`) or,
/// for the epoch of a fenced handle, an integer literal. On PostgreSQL the
/// lease row is share-locked until the write commits, so a takeover's `UPDATE` waits for
/// it: a write that passed the fence is seen by the new owner. (An epoch names one
/// tenure of one source, so the owner's name is not needed.)
pub(crate) fn fence_sql(backend: Backend, source: &str, epoch: &str) -> String {
    let lock = match backend {
        Backend::Postgres => " FOR SHARE",
        Backend::Sqlite => "",
    };
    format!(
        "EXISTS (SELECT 1 FROM source_leases WHERE {}{lock})",
        live_tenure_sql(backend, source, epoch)
    )
}

/// The one definition of a live tenure, as a condition on `source_leases`: tenure
/// `epoch` of `source` (SQL expressions) is held and unexpired on the database's clock
/// now.
fn live_tenure_sql(backend: Backend, source: &str, epoch: &str) -> String {
    format!(
        "source = {source} AND epoch = {epoch} AND owner IS NOT NULL AND expires_ms > {}",
        clock_ms_sql(backend)
    )
}

/// The fence as the first write of a transaction: an `UPDATE` of the lease row that
/// changes nothing and matches one row exactly when tenure `$2` of source `$1` is live,
/// on the database's clock now. It holds the row's lock until the commit, so the lease
/// cannot change hands before the transaction's writes are in.
pub(crate) fn fence_update_sql(backend: Backend) -> String {
    format!(
        "UPDATE source_leases SET epoch = epoch WHERE {}",
        live_tenure_sql(backend, "$1", "$2")
    )
}

/// A lease acquired or renewed, as the database recorded it.
///
/// The holder may write under `epoch` until its *own* monotonic clock says
/// `ttl - margin` has passed since it **sent** the statement: the database's expiry was
/// computed later than that moment, so the local deadline always falls before it (with
/// clocks that run at the same rate, give or take the margin).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Granted {
    /// The epoch of this tenure (the first acquisition of a source gets 1).
    pub epoch: i64,
    /// When the lease expires, database clock, ms since the Unix epoch.
    pub expires_ms: i64,
    /// When the statement ran, database clock, ms since the Unix epoch.
    pub renewed_ms: i64,
    /// Who held the lease before this tenure (`None`: nobody ever did).
    pub previous_owner: Option<String>,
    /// The previous owner's last renewal, database clock, ms: where a takeover's time
    /// is counted from (the owner died after it, within a renewal period).
    pub previous_renewed_ms: Option<i64>,
}

/// One row of `source_leases`.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct LeaseRow {
    /// Source name.
    pub source: String,
    /// The node holding it; `None` when released. An expired lease keeps its last owner.
    pub owner: Option<String>,
    /// Epoch of the current (or last) tenure; 0 = never acquired.
    pub epoch: i64,
    /// Expiry, database clock, ms since the Unix epoch.
    pub expires_ms: i64,
    /// When this tenure began, database clock, ms.
    pub acquired_ms: i64,
    /// Its last renewal, database clock, ms.
    pub renewed_ms: i64,
    /// Who held it before this tenure.
    pub previous_owner: Option<String>,
    /// The previous owner's last renewal (or acquisition), database clock, ms.
    pub previous_renewed_ms: Option<i64>,
}

impl LeaseRow {
    /// Whether the lease is held at `now_ms` (database clock): an owner and an expiry
    /// still ahead.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.owner.is_some() && self.expires_ms > now_ms
    }

    /// Whether `node` holds the lease at `now_ms` (database clock).
    pub fn is_held_by(&self, node: &str, now_ms: i64) -> bool {
        self.is_live(now_ms) && self.owner.as_deref() == Some(node)
    }

    /// The owner while the lease is live at `now_ms`; `None` when free or expired.
    pub fn live_owner(&self, now_ms: i64) -> Option<&str> {
        self.owner.as_deref().filter(|_| self.is_live(now_ms))
    }

    /// Milliseconds left at `now_ms` (0 when expired).
    pub fn expires_in_ms(&self, now_ms: i64) -> i64 {
        self.expires_ms.saturating_sub(now_ms).max(0)
    }
}

/// One row of `nodes`.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct NodeRow {
    /// Node id (`[node] id`).
    pub id: String,
    /// Its API URL as other nodes reach it (`[node] advertise`).
    pub advertise: String,
    /// When it (last) started, database clock, ms.
    pub started_ms: i64,
    /// Its last heartbeat, database clock, ms.
    pub heartbeat_ms: i64,
    /// 1 while the node is drained (it takes no lease and hands its own over), else 0.
    pub draining: i64,
}

impl NodeRow {
    /// Whether the node is being drained ([`Catalog::set_node_draining`]).
    pub fn is_draining(&self) -> bool {
        self.draining != 0
    }

    /// Whether the node heartbeat within `within` before `now_ms` (database clock).
    pub fn is_alive(&self, now_ms: i64, within: Duration) -> bool {
        self.heartbeat_ms > now_ms.saturating_sub(ms(within))
    }
}

/// Milliseconds of `d` for SQL, saturating at `i64::MAX`.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

const NODE_COLUMNS: &str = "id, advertise, started_ms, heartbeat_ms, draining";

const LEASE_COLUMNS: &str = "source, owner, epoch, expires_ms, acquired_ms, renewed_ms, \
     previous_owner, previous_renewed_ms";

impl Catalog {
    /// The database's clock, ms since the Unix epoch.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub async fn db_now_ms(&self) -> Result<i64, CatalogError> {
        sqlx::query_scalar(&format!("SELECT {}", clock_ms_sql(self.backend)))
            .fetch_one(self.pool())
            .await
            .map_err(query_err("db_now_ms"))
    }

    /// Takes the lease of `source` for `node` for `ttl`, if it is free or expired: one
    /// compare-and-set statement that raises the epoch by one. `None` when another
    /// tenure is live, **including the caller's own** (renew that one instead).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; the outcome is then unknown, and the caller treats the
    /// lease as not held (it may be granted: it expires after `ttl` unrenewed).
    pub async fn acquire_lease(
        &self,
        source: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<Option<Granted>, CatalogError> {
        const OP: &str = "acquire_lease";
        sqlx::query(
            "INSERT INTO source_leases (source, owner, epoch, expires_ms, acquired_ms, \
             renewed_ms, previous_owner, previous_renewed_ms) \
             VALUES ($1, NULL, 0, 0, 0, 0, NULL, NULL) ON CONFLICT (source) DO NOTHING",
        )
        .bind(source)
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        let now = now_ms_sql(self.backend);
        let granted = sqlx::query_as::<_, Granted>(&format!(
            "UPDATE source_leases SET \
             previous_owner = COALESCE(owner, previous_owner), \
             previous_renewed_ms = CASE WHEN owner IS NULL THEN previous_renewed_ms \
             ELSE renewed_ms END, \
             owner = $2, epoch = epoch + 1, acquired_ms = {now}, renewed_ms = {now}, \
             expires_ms = {now} + $3 \
             WHERE source = $1 AND (owner IS NULL OR expires_ms <= {now}) \
             RETURNING epoch, expires_ms, renewed_ms, previous_owner, previous_renewed_ms"
        ))
        .bind(source)
        .bind(node)
        .bind(ms(ttl))
        .fetch_optional(self.pool())
        .await
        .map_err(query_err(OP))?;
        if let Some(g) = &granted {
            tracing::info!(source, node, epoch = g.epoch, "lease acquired");
        }
        Ok(granted)
    }

    /// Extends `node`'s tenure `epoch` of `source` to `ttl` from now. `None` when that
    /// tenure is over: expired, released, or another epoch holds the lease. The caller
    /// then stops writing for the source (it should have already, by its own clock).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; the lease is then still held until its last expiry.
    pub async fn renew_lease(
        &self,
        source: &str,
        node: &str,
        epoch: i64,
        ttl: Duration,
    ) -> Result<Option<Granted>, CatalogError> {
        let now = now_ms_sql(self.backend);
        // Expiry is judged by the clock now: a renewal that waited for the row lock must
        // not revive a tenure that ran out meanwhile.
        let clock = clock_ms_sql(self.backend);
        sqlx::query_as::<_, Granted>(&format!(
            "UPDATE source_leases SET renewed_ms = {now}, expires_ms = {now} + $4 \
             WHERE source = $1 AND owner = $2 AND epoch = $3 AND expires_ms > {clock} \
             RETURNING epoch, expires_ms, renewed_ms, previous_owner, previous_renewed_ms"
        ))
        .bind(source)
        .bind(node)
        .bind(epoch)
        .bind(ms(ttl))
        .fetch_optional(self.pool())
        .await
        .map_err(query_err("renew_lease"))
    }

    /// Frees `node`'s tenure `epoch` of `source` at once (drain, clean shut-down), so
    /// that another node need not wait for the expiry. `false` when that tenure was
    /// already over.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; the lease then expires by itself.
    pub async fn release_lease(
        &self,
        source: &str,
        node: &str,
        epoch: i64,
    ) -> Result<bool, CatalogError> {
        let now = now_ms_sql(self.backend);
        let r = sqlx::query(&format!(
            "UPDATE source_leases SET previous_owner = owner, previous_renewed_ms = renewed_ms, \
             owner = NULL, expires_ms = {now} \
             WHERE source = $1 AND owner = $2 AND epoch = $3"
        ))
        .bind(source)
        .bind(node)
        .bind(epoch)
        .execute(self.pool())
        .await
        .map_err(query_err("release_lease"))?;
        let released = r.rows_affected() > 0;
        if released {
            tracing::info!(source, node, epoch, "lease released");
        }
        Ok(released)
    }

    /// Whether tenure `epoch` of `source` is live now, whoever holds it: the check of
    /// a fenced write that changed nothing (was it refused, or already done?).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub(crate) async fn tenure_live(&self, source: &str, epoch: i64) -> Result<bool, CatalogError> {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM source_leases WHERE {}",
            live_tenure_sql(self.backend, "$1", "$2")
        ))
        .bind(source)
        .bind(epoch)
        .fetch_one(self.pool())
        .await
        .map_err(query_err("tenure_live"))?;
        Ok(n > 0)
    }

    /// The fence: whether `node` holds `source` under `epoch`, unexpired, on the
    /// database's clock, now.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`]; the caller then treats the lease as not held.
    pub async fn lease_held(
        &self,
        source: &str,
        node: &str,
        epoch: i64,
    ) -> Result<bool, CatalogError> {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM source_leases WHERE owner = $2 AND {}",
            live_tenure_sql(self.backend, "$1", "$3")
        ))
        .bind(source)
        .bind(node)
        .bind(epoch)
        .fetch_one(self.pool())
        .await
        .map_err(query_err("lease_held"))?;
        Ok(n > 0)
    }

    /// Every lease row, by source name, and the database's clock when read (ms): judge
    /// each with [`LeaseRow::is_live`] against that time.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub async fn list_leases(&self) -> Result<(i64, Vec<LeaseRow>), CatalogError> {
        let now = self.db_now_ms().await?;
        let rows = sqlx::query_as::<_, LeaseRow>(&format!(
            "SELECT {LEASE_COLUMNS} FROM source_leases ORDER BY source"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(query_err("list_leases"))?;
        Ok((now, rows))
    }

    /// Records that `node` is alive (its heartbeat, on the database's clock), creating its
    /// row on the first call; `started` also sets its start time (the first heartbeat of
    /// a process). Returns the node's row as it now is (with its `draining` flag).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub async fn node_heartbeat(
        &self,
        node: &str,
        advertise: &str,
        started: bool,
    ) -> Result<NodeRow, CatalogError> {
        const OP: &str = "node_heartbeat";
        let now = now_ms_sql(self.backend);
        sqlx::query(&format!(
            "INSERT INTO nodes (id, advertise, started_ms, heartbeat_ms, draining) \
             VALUES ($1, $2, {now}, {now}, 0) ON CONFLICT (id) DO NOTHING"
        ))
        .bind(node)
        .bind(advertise)
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        sqlx::query_as::<_, NodeRow>(&format!(
            "UPDATE nodes SET advertise = $2, heartbeat_ms = {now}, \
             started_ms = CASE WHEN $3 = 1 THEN {now} ELSE started_ms END \
             WHERE id = $1 RETURNING {NODE_COLUMNS}"
        ))
        .bind(node)
        .bind(advertise)
        .bind(i64::from(started))
        .fetch_one(self.pool())
        .await
        .map_err(query_err(OP))
    }

    /// Every node row, by id, and the database's clock when read (ms).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub async fn list_nodes(&self) -> Result<(i64, Vec<NodeRow>), CatalogError> {
        let now = self.db_now_ms().await?;
        let rows =
            sqlx::query_as::<_, NodeRow>(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY id"))
                .fetch_all(self.pool())
                .await
                .map_err(query_err("list_nodes"))?;
        Ok((now, rows))
    }

    /// Sets or clears `node`'s drain flag (`binlog-server drain --node ID`): while set,
    /// the node takes no lease and releases the ones it holds, and the other nodes take
    /// them over. `false` when no such node ever ran on this catalog.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub async fn set_node_draining(
        &self,
        node: &str,
        draining: bool,
    ) -> Result<bool, CatalogError> {
        let r = sqlx::query("UPDATE nodes SET draining = $2 WHERE id = $1")
            .bind(node)
            .bind(i64::from(draining))
            .execute(self.pool())
            .await
            .map_err(query_err("set_node_draining"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Raises the epoch of `source`'s lease row to at least `epoch`, creating it (free)
    /// when missing, so that the next tenure writes under an epoch above every one the
    /// store already holds (a rebuild after the catalog was lost: the store keeps
    /// `.e<epoch>` keys, the new catalog would start again at 1). A live tenure is left
    /// alone. Returns the row's epoch afterwards.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`].
    pub async fn raise_lease_epoch(&self, source: &str, epoch: i64) -> Result<i64, CatalogError> {
        const OP: &str = "raise_lease_epoch";
        sqlx::query(
            "INSERT INTO source_leases (source, owner, epoch, expires_ms, acquired_ms, \
             renewed_ms, previous_owner, previous_renewed_ms) \
             VALUES ($1, NULL, $2, 0, 0, 0, NULL, NULL) ON CONFLICT (source) DO NOTHING",
        )
        .bind(source)
        .bind(epoch.max(0))
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        let now = clock_ms_sql(self.backend);
        sqlx::query(&format!(
            "UPDATE source_leases SET epoch = $2 WHERE source = $1 AND epoch < $2 \
             AND (owner IS NULL OR expires_ms <= {now})"
        ))
        .bind(source)
        .bind(epoch)
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        sqlx::query_scalar("SELECT epoch FROM source_leases WHERE source = $1")
            .bind(source)
            .fetch_one(self.pool())
            .await
            .map_err(query_err(OP))
    }
}
