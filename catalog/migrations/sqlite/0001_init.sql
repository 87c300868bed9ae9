-- binlog-server catalog, schema version 1.
--
-- Portable on purpose: only VARCHAR(n), TEXT and BIGINT columns, plain PRIMARY KEY /
-- CREATE INDEX, a CHECK constraint, no AUTOINCREMENT / SERIAL, no defaults on TEXT
-- columns (MySQL < 8.0.13 refuses them) and no SQL date functions. Key columns are
-- VARCHAR(255) rather than TEXT because MySQL/MariaDB cannot index TEXT without a prefix
-- length. Every timestamp is BIGINT unix seconds (UTC), written by the application.

-- One row per configured primary. `state` is free text owned by the stream task
-- ("new" on insert, then e.g. "streaming", "reconnecting", "failed", "stopped").
CREATE TABLE sources (
    name        VARCHAR(255) NOT NULL,
    url         TEXT         NOT NULL,
    state       VARCHAR(64)  NOT NULL,
    last_error  TEXT,
    created_at  BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL,
    PRIMARY KEY (name)
);

-- One row per binlog file held in the archive, keyed by (source, primary's file name).
-- seq is the file name's numeric extension (mysql-bin.000042 -> 42), -1 if it has none;
-- it orders files (000009 before 000010) without relying on string collation.
-- size is in bytes; event times are the events' own timestamps (unix seconds).
CREATE TABLE binlog_files (
    source            VARCHAR(255) NOT NULL,
    name              VARCHAR(255) NOT NULL,
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

-- Holes in the archive: binlogs the primary no longer had when we asked for them.
-- after_file / before_file are the stored files on either side (NULL = no such file,
-- e.g. the hole is before the first file we hold). Deduplicated by the application on
-- (source, after_file, before_file), since NULLs never compare equal in a UNIQUE key.
CREATE TABLE binlog_gaps (
    source       VARCHAR(255) NOT NULL,
    after_file   VARCHAR(255),
    before_file  VARCHAR(255),
    reason       TEXT         NOT NULL,
    detected_at  BIGINT       NOT NULL
);

CREATE INDEX binlog_gaps_by_source ON binlog_gaps (source, detected_at);
