-- binlog-server catalog, schema version 2: base backups (seed 003's full_backup_metadata,
-- seed 004's user_backup). Same portability rules as 0001.

-- One row per base backup attempt. `id` is made by the application
-- ("<source>-<UTC yyyymmddThhmmssZ>-<4 hex>") and is also the object-key prefix.
-- state: DOING -> UPLOADING -> COMPLETED | ERROR; SKIPPED (replica-only and the target
-- was a primary); COMPLETED -> EXPIRED (retention decided) -> DELETED (objects removed).
-- Positions are the consistency point of the base: binlog file + position and GTID
-- position (MariaDB "0-1-42,1-2-7" or MySQL "uuid:1-42"). LSNs are InnoDB's (physical).
-- Times are unix seconds; bytes are the sum of the objects' sizes.
CREATE TABLE base_backups (
    id                VARCHAR(64)  NOT NULL,
    source            VARCHAR(255) NOT NULL,
    method            VARCHAR(16)  NOT NULL,
    tool              VARCHAR(32)  NOT NULL,
    incremental       BIGINT       NOT NULL,
    parent_id         VARCHAR(64),
    state             VARCHAR(16)  NOT NULL,
    info              TEXT,
    started_at        BIGINT       NOT NULL,
    finished_at       BIGINT,
    bytes             BIGINT       NOT NULL,
    binlog_file       VARCHAR(255),
    binlog_pos        BIGINT,
    gtid_pos          TEXT,
    consistent_at     BIGINT,
    from_lsn          BIGINT,
    to_lsn            BIGINT,
    server_version    VARCHAR(255),
    tool_version      VARCHAR(255),
    command           TEXT,
    db_list           TEXT,
    store_url         TEXT,
    state_changed_at  BIGINT       NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX base_backups_source ON base_backups (source, started_at);

-- The objects a base is made of. Written in the same transaction that moves the base to
-- COMPLETED, after every object is uploaded: a crash leaves unreferenced objects to
-- collect, never a COMPLETED base with missing parts.
CREATE TABLE base_backup_objects (
    backup_id   VARCHAR(64)  NOT NULL,
    object_key  VARCHAR(512) NOT NULL,
    bytes       BIGINT       NOT NULL,
    sha256      VARCHAR(64)  NOT NULL,
    PRIMARY KEY (backup_id, object_key)
);
