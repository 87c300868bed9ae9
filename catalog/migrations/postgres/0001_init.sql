-- binlog-server catalog on PostgreSQL, schema version 1: the same tables, columns and
-- constraints as migrations/sqlite/0001_init.sql (read the comments there). Key and
-- name columns are COLLATE "C" so that ORDER BY sorts bytes, as SQLite does, whatever
-- the database's locale. Every timestamp is BIGINT unix seconds (UTC), written by the
-- application.

CREATE TABLE sources (
    name        VARCHAR(255) COLLATE "C" NOT NULL,
    url         TEXT         NOT NULL,
    state       VARCHAR(64)  NOT NULL,
    last_error  TEXT,
    created_at  BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL,
    PRIMARY KEY (name)
);

CREATE TABLE binlog_files (
    source            VARCHAR(255) COLLATE "C" NOT NULL,
    name              VARCHAR(255) COLLATE "C" NOT NULL,
    seq               BIGINT       NOT NULL,
    size              BIGINT       NOT NULL,
    state             VARCHAR(16)  NOT NULL,
    info              TEXT         NOT NULL,
    first_event_time  BIGINT,
    last_event_time   BIGINT,
    first_gtid        TEXT,
    last_gtid         TEXT,
    sha256            VARCHAR(64),
    created_at        BIGINT       NOT NULL,
    reported_at       BIGINT,
    checked_at        BIGINT,
    state_changed_at  BIGINT       NOT NULL,
    PRIMARY KEY (source, name),
    CHECK (state IN ('ACTIVE', 'REPORTED', 'SUCC', 'FAIL')),
    CHECK (size >= 0)
);

CREATE INDEX binlog_files_by_seq ON binlog_files (source, seq, name);
CREATE INDEX binlog_files_by_state ON binlog_files (source, state);

CREATE TABLE binlog_gaps (
    source       VARCHAR(255) COLLATE "C" NOT NULL,
    after_file   VARCHAR(255) COLLATE "C",
    before_file  VARCHAR(255) COLLATE "C",
    reason       TEXT         NOT NULL,
    detected_at  BIGINT       NOT NULL
);

CREATE INDEX binlog_gaps_by_source ON binlog_gaps (source, detected_at);
