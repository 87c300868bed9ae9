-- binlog-server catalog on PostgreSQL, schema version 5: binlog objects in the archive
-- store, as migrations/sqlite/0005_archive_objects.sql (read the comments there).
CREATE TABLE archive_objects (
    source         VARCHAR(255) COLLATE "C" NOT NULL,
    file           VARCHAR(255) COLLATE "C" NOT NULL,
    kind           VARCHAR(8)   NOT NULL,
    start_offset   BIGINT       NOT NULL,
    end_offset     BIGINT       NOT NULL,
    object_key     TEXT         COLLATE "C" NOT NULL,
    sha256         VARCHAR(64)  NOT NULL,
    stored_bytes   BIGINT       NOT NULL,
    stored_sha256  VARCHAR(64)  NOT NULL,
    codec          VARCHAR(32)  NOT NULL,
    key_id         VARCHAR(64),
    epoch          BIGINT       NOT NULL,
    created_at     BIGINT       NOT NULL,
    deleted_at     BIGINT,
    PRIMARY KEY (source, file, kind, end_offset),
    CHECK (kind IN ('file', 'chunk')),
    CHECK (start_offset >= 0 AND end_offset >= start_offset)
);

CREATE INDEX archive_objects_by_source ON archive_objects (source, deleted_at);
