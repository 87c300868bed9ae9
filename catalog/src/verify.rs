//! Restore verification rows (`verifications`, migration 0004): one per run, with the
//! run's report as JSON.

use crate::{query_err, unix_now, Catalog, CatalogError};

/// One stored verification run.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct VerificationRow {
    /// Run id.
    pub id: String,
    /// Source name.
    pub source: String,
    /// The base verified, if one was found.
    pub base_id: Option<String>,
    /// "schedule" or "manual".
    pub trigger_kind: String,
    /// "running", "passed", "failed", "no_base", "cancelled".
    pub state: String,
    /// Start, unix seconds.
    pub started_at: i64,
    /// End, unix seconds.
    pub finished_at: Option<i64>,
    /// Start to a usable, caught-up instance, seconds.
    pub rto_seconds: Option<f64>,
    /// What failed.
    pub error: Option<String>,
    /// The report, JSON text.
    pub report: String,
}

const COLUMNS: &str =
    "id, source, base_id, trigger_kind, state, started_at, finished_at, rto_seconds, error, report";

impl Catalog {
    /// Inserts or replaces run `r.id`.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn save_verification(&self, r: &VerificationRow) -> Result<(), CatalogError> {
        sqlx::query(&format!(
            "INSERT INTO verifications ({COLUMNS}, node) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             CASE WHEN $11 = 1 THEN $8 ELSE NULL END, $9, $10, $12) \
             ON CONFLICT (id) DO UPDATE SET base_id = excluded.base_id, state = excluded.state, \
             finished_at = excluded.finished_at, rto_seconds = excluded.rto_seconds, \
             error = excluded.error, report = excluded.report"
        ))
        .bind(&r.id)
        .bind(&r.source)
        .bind(&r.base_id)
        .bind(&r.trigger_kind)
        .bind(&r.state)
        .bind(r.started_at)
        .bind(r.finished_at)
        // Never a NULL f64: sqlx 0.8's Any driver sends a NULL DOUBLE to PostgreSQL as a
        // float4 (sqlx-core any/arguments.rs), and the statement prepared with it then
        // refuses an 8-byte value. The NULL is chosen in SQL instead ($11).
        .bind(r.rto_seconds.unwrap_or(0.0))
        .bind(&r.error)
        .bind(&r.report)
        .bind(i64::from(r.rto_seconds.is_some()))
        .bind(self.node())
        .execute(self.pool())
        .await
        .map_err(query_err("save_verification"))?;
        Ok(())
    }

    /// Run `id`, if recorded.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn get_verification(
        &self,
        id: &str,
    ) -> Result<Option<VerificationRow>, CatalogError> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM verifications WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_err("get_verification"))
    }

    /// Runs started at or after `since` (unix seconds), of one source or all, newest
    /// first, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn list_verifications(
        &self,
        source: Option<&str>,
        since: i64,
        limit: u32,
    ) -> Result<Vec<VerificationRow>, CatalogError> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM verifications WHERE started_at >= $1 AND ($2 IS NULL OR source = $3) \
             ORDER BY started_at DESC, id DESC LIMIT $4"
        ))
        .bind(since)
        .bind(source)
        .bind(source)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(query_err("list_verifications"))
    }

    /// Marks this node's runs left "running" by a previous process as cancelled with
    /// `why`; returns their ids. Other nodes' runs are left alone ([`Catalog::with_node`]).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn cancel_running_verifications(
        &self,
        why: &str,
    ) -> Result<Vec<String>, CatalogError> {
        let ids: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM verifications WHERE state = 'running' AND node = $1")
                .bind(self.node())
                .fetch_all(self.pool())
                .await
                .map_err(query_err("cancel_running_verifications"))?;
        sqlx::query(
            "UPDATE verifications SET state = 'cancelled', error = $1, finished_at = $2 \
             WHERE state = 'running' AND node = $3",
        )
        .bind(why)
        .bind(unix_now())
        .bind(self.node())
        .execute(self.pool())
        .await
        .map_err(query_err("cancel_running_verifications"))?;
        Ok(ids.into_iter().map(|(i,)| i).collect())
    }
}
