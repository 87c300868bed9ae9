//! Timelines of a source (`timelines`, migration 0010): which server each stretch of the
//! archive came from, and when and why capture switched (failover follow).
//!
//! Timeline 1 is recorded when capture first reaches its server; a switch inserts the
//! next one. A row is updated once at most, when the new server's stream shows the
//! earlier timeline's divergent transactions ([`Catalog::set_divergent`]): the history
//! of switches is the record a DBA reads (`GET /v1/sources/{name}/timelines`). Writes are
//! fenced like every capture write.

use crate::{query_err, unix_now, Catalog, CatalogError};

/// One timeline of a source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct TimelineRow {
    /// Source name.
    pub source: String,
    /// 1, 2, ...
    pub timeline: i64,
    /// The server's server_id.
    pub server_id: i64,
    /// The server's server_uuid (MySQL), if it has one.
    pub server_uuid: Option<String>,
    /// The server's URL, password redacted.
    pub server_url: String,
    /// When capture switched to it (unix seconds).
    pub started_at: i64,
    /// The archive's last GTID at the switch (None for timeline 1).
    pub switch_gtid: Option<String>,
    /// Stored name of the timeline's first file.
    pub first_file: Option<String>,
    /// Why capture switched.
    pub reason: Option<String>,
    /// The previous timeline's transactions this server lacks (divergent), if any.
    pub divergent: Option<String>,
}

const COLUMNS: &str = "source, timeline, server_id, server_uuid, server_url, started_at, \
                       switch_gtid, first_file, reason, divergent";

/// A timeline to record ([`Catalog::add_timeline`]).
#[derive(Debug, Clone, Default)]
pub struct NewTimeline<'a> {
    /// 1, 2, ...
    pub timeline: i64,
    /// The server's server_id.
    pub server_id: i64,
    /// The server's server_uuid, if any.
    pub server_uuid: Option<&'a str>,
    /// Its URL, password redacted.
    pub server_url: &'a str,
    /// The archive's last GTID at the switch.
    pub switch_gtid: Option<&'a str>,
    /// Stored name of its first file.
    pub first_file: Option<&'a str>,
    /// Why capture switched.
    pub reason: Option<&'a str>,
}

impl Catalog {
    /// Records timeline `t.timeline` of `source` (started now). A timeline already
    /// recorded is left as it is (capture resumed after a restart): returns false then.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Fenced`] when this writer's lease of `source` is over;
    /// [`CatalogError::Query`] if the statement fails (the caller retries on its next
    /// attempt).
    pub async fn add_timeline(
        &self,
        source: &str,
        t: &NewTimeline<'_>,
    ) -> Result<bool, CatalogError> {
        const OP: &str = "add_timeline";
        const VALUES: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9";
        let rows = self.fenced_values(source, "$1", VALUES);
        let r = sqlx::query(&format!(
            "INSERT INTO timelines (source, timeline, server_id, server_uuid, server_url, \
             started_at, switch_gtid, first_file, reason) {rows} ON CONFLICT (source, timeline) DO NOTHING"
        ))
        .bind(source)
        .bind(t.timeline)
        .bind(t.server_id)
        .bind(t.server_uuid)
        .bind(t.server_url)
        .bind(unix_now())
        .bind(t.switch_gtid)
        .bind(t.first_file)
        .bind(t.reason)
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        if r.rows_affected() == 0 {
            self.refuse_if_fenced(source, OP).await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Records that timeline `timeline` of `source` lacks the previous timeline's
    /// transactions `divergent` (GTIDs, for people).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Fenced`] when this writer's lease of `source` is over;
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn set_divergent(
        &self,
        source: &str,
        timeline: i64,
        divergent: &str,
    ) -> Result<(), CatalogError> {
        const OP: &str = "set_divergent";
        let r = sqlx::query(&format!(
            "UPDATE timelines SET divergent = $1 WHERE source = $2 AND timeline = $3{}",
            self.fence_clause(source, "$2")
        ))
        .bind(divergent)
        .bind(source)
        .bind(timeline)
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        if r.rows_affected() == 0 {
            self.refuse_if_fenced(source, OP).await?;
        }
        Ok(())
    }

    /// Imports a timeline row as the archive store records it (a rebuild into an empty
    /// catalog; `archive::timelines`), unfenced like every rebuilt row. A row already
    /// present is left as it is, except that a `divergent` the import knows and the row
    /// does not is set. Returns whether anything changed.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if a statement fails (the rebuild is run again).
    pub async fn import_timeline(&self, t: &TimelineRow) -> Result<bool, CatalogError> {
        const OP: &str = "import_timeline";
        let r = sqlx::query(&format!(
            "INSERT INTO timelines ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (source, timeline) DO UPDATE SET divergent = excluded.divergent \
             WHERE timelines.divergent IS NULL AND excluded.divergent IS NOT NULL"
        ))
        .bind(&t.source)
        .bind(t.timeline)
        .bind(t.server_id)
        .bind(&t.server_uuid)
        .bind(&t.server_url)
        .bind(t.started_at)
        .bind(&t.switch_gtid)
        .bind(&t.first_file)
        .bind(&t.reason)
        .bind(&t.divergent)
        .execute(self.pool())
        .await
        .map_err(query_err(OP))?;
        Ok(r.rows_affected() > 0)
    }

    /// The timelines of `source`, oldest first (empty before capture first reached a
    /// server).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Query`] if the statement fails.
    pub async fn list_timelines(&self, source: &str) -> Result<Vec<TimelineRow>, CatalogError> {
        sqlx::query_as::<_, TimelineRow>(&format!(
            "SELECT {COLUMNS} FROM timelines WHERE source = $1 ORDER BY timeline"
        ))
        .bind(source)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("list_timelines"))
    }
}
