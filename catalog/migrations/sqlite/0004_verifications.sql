-- Restore verification runs (issue 5), one row per run, like seed 004's
-- user_recover_info (bk_id, start_time, end_time, elapsed_time, recover_status): the
-- base verified, start and end, RTO, the result and the error are columns for queries;
-- the whole report (phases, checks, range) is JSON text.
CREATE TABLE verifications (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    base_id      TEXT,
    trigger_kind TEXT NOT NULL,
    state        TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    rto_seconds  DOUBLE PRECISION,
    error        TEXT,
    report       TEXT NOT NULL
);
CREATE INDEX verifications_source ON verifications (source, started_at);
