-- Timelines (failover follow): a source's history is timeline 1 until capture first
-- switches to another server; each switch starts the next timeline, whose files are
-- stored as "tl<N>/<the server's name>". One row per timeline.
CREATE TABLE timelines (
    source TEXT NOT NULL,
    timeline BIGINT NOT NULL,
    -- The server: its server_id, its server_uuid (MySQL; NULL on MariaDB) and its URL
    -- without the password.
    server_id BIGINT NOT NULL,
    server_uuid TEXT,
    server_url TEXT NOT NULL,
    -- When capture switched to it (unix seconds); for timeline 1, when it was first seen.
    started_at BIGINT NOT NULL,
    -- The archive's last GTID when the switch happened (NULL for timeline 1).
    switch_gtid TEXT,
    -- The stored name of the timeline's first file (it starts at position 4).
    first_file TEXT,
    -- Why capture switched ("the primary was unreachable for 30s", "read-only").
    reason TEXT,
    -- Transactions of the previous timeline this server does not have (GTIDs, for
    -- people): set once the new server's stream shows where its history leaves the
    -- archive's. NULL: none found (or not known yet).
    divergent TEXT,
    PRIMARY KEY (source, timeline)
);
