-- Binlog objects in the archive store (the binlog-server `archive` tier), schema
-- version 5. One row per object, written after the object is in the store (the record
-- that points at data comes after the data).
--
-- kind 'file': a closed, checked (SUCC) binlog file, whole: bytes [0, end_offset).
-- kind 'chunk': bytes [start_offset, end_offset) of a file's durable prefix, shipped
--   while it was ACTIVE (or REPORTED); removed (deleted_at set) once the 'file' object
--   of that file is confirmed.
-- sha256 is of the plaintext binlog bytes the object holds; stored_sha256 and
-- stored_bytes of the object as stored (compressed, encrypted), for scrubs without the
-- key. codec is an objstore codec descriptor ('none', 'zstd', 'aes-256-gcm',
-- 'zstd+aes-256-gcm'); key_id the encryption key's id. epoch is the writer's fencing
-- epoch (0 until leases exist). Timestamps are unix seconds.
CREATE TABLE archive_objects (
    source         VARCHAR(255) NOT NULL,
    file           VARCHAR(255) NOT NULL,
    kind           VARCHAR(8)   NOT NULL,
    start_offset   BIGINT       NOT NULL,
    end_offset     BIGINT       NOT NULL,
    object_key     TEXT         NOT NULL,
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
