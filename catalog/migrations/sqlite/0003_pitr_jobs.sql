-- PITR jobs (issue 4): one row per restore request. The whole report (plan, phase,
-- progress, result) is kept as JSON text so that GET /v1/pitr/{id} answers after a
-- restart; `state` is the phase name for queries.
CREATE TABLE pitr_jobs (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    state       TEXT NOT NULL,
    report      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX pitr_jobs_source ON pitr_jobs (source, created_at);
