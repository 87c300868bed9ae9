-- binlog-server catalog on PostgreSQL, schema version 3: PITR jobs, as
-- migrations/sqlite/0003_pitr_jobs.sql (read the comments there).
CREATE TABLE pitr_jobs (
    id          TEXT COLLATE "C" PRIMARY KEY,
    source      TEXT COLLATE "C" NOT NULL,
    state       TEXT NOT NULL,
    report      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX pitr_jobs_source ON pitr_jobs (source, created_at);
