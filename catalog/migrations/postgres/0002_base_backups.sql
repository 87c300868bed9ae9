-- binlog-server catalog on PostgreSQL, schema version 2: base backups, as
-- migrations/sqlite/0002_base_backups.sql (read the comments there).

CREATE TABLE base_backups (
    id                VARCHAR(64)  COLLATE "C" NOT NULL,
    source            VARCHAR(255) COLLATE "C" NOT NULL,
    method            VARCHAR(16)  NOT NULL,
    tool              VARCHAR(32)  NOT NULL,
    incremental       BIGINT       NOT NULL,
    parent_id         VARCHAR(64)  COLLATE "C",
    state             VARCHAR(16)  NOT NULL,
    info              TEXT,
    started_at        BIGINT       NOT NULL,
    finished_at       BIGINT,
    bytes             BIGINT       NOT NULL,
    binlog_file       VARCHAR(255) COLLATE "C",
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

CREATE TABLE base_backup_objects (
    backup_id   VARCHAR(64)  COLLATE "C" NOT NULL,
    object_key  VARCHAR(512) COLLATE "C" NOT NULL,
    bytes       BIGINT       NOT NULL,
    sha256      VARCHAR(64)  NOT NULL,
    PRIMARY KEY (backup_id, object_key)
);
