//! PITR job rows (`pitr_jobs`, migration 0003): the service's report of each restore,
//! stored as JSON so it survives restarts.

use crate::{query_err, unix_now, Catalog, CatalogError};

/// One stored PITR job.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PitrJobRow {
    /// Job id.
    pub id: String,
    /// Source name.
    pub source: String,
    /// Phase: "planned", "restoring base", "replaying", "done", "failed", "removed".
    pub state: String,
    /// The report, JSON text.
    pub report: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Last update, unix seconds.
    pub updated_at: i64,
}

impl Catalog {
    /// Inserts or replaces job `id`'s state and report.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn save_pitr_job(
        &self,
        id: &str,
        source: &str,
        state: &str,
        report: &str,
    ) -> Result<(), CatalogError> {
        let ts = unix_now();
        sqlx::query(
            "INSERT INTO pitr_jobs (id, source, state, report, created_at, updated_at, node) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, report = excluded.report, \
             updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(source)
        .bind(state)
        .bind(report)
        .bind(ts)
        .bind(ts)
        .bind(self.node())
        .execute(self.pool())
        .await
        .map_err(query_err("save_pitr_job"))?;
        Ok(())
    }

    /// Job `id`, if recorded.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn get_pitr_job(&self, id: &str) -> Result<Option<PitrJobRow>, CatalogError> {
        sqlx::query_as(
            "SELECT id, source, state, report, created_at, updated_at FROM pitr_jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_err("get_pitr_job"))
    }

    /// This node's jobs that were still running (not done, failed or removed) — after a
    /// restart they are interrupted. Returns their rows. Other nodes' jobs are theirs
    /// ([`Catalog::with_node`]).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn unfinished_pitr_jobs(&self) -> Result<Vec<PitrJobRow>, CatalogError> {
        sqlx::query_as(
            "SELECT id, source, state, report, created_at, updated_at FROM pitr_jobs \
             WHERE state NOT IN ('done', 'failed', 'removed') AND node = $1 ORDER BY created_at",
        )
        .bind(self.node())
        .fetch_all(self.pool())
        .await
        .map_err(query_err("unfinished_pitr_jobs"))
    }
}
