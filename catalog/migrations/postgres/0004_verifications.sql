-- binlog-server catalog on PostgreSQL, schema version 4: restore verification runs,
-- as migrations/sqlite/0004_verifications.sql (read the comments there).
CREATE TABLE verifications (
    id           TEXT COLLATE "C" PRIMARY KEY,
    source       TEXT COLLATE "C" NOT NULL,
    base_id      TEXT COLLATE "C",
    trigger_kind TEXT NOT NULL,
    state        TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    rto_seconds  DOUBLE PRECISION,
    error        TEXT,
    report       TEXT NOT NULL
);
CREATE INDEX verifications_source ON verifications (source, started_at);
