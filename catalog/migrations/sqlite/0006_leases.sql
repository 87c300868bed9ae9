-- binlog-server catalog, schema version 6: the nodes of a fleet and the leases that give
-- each source to at most one of them (catalog/src/leases.rs).
--
-- Unlike every other table, these times are milliseconds since the Unix epoch on the
-- DATABASE's clock (set by the statements themselves, never bound by a node), so that
-- every node compares one lease's expiry against one clock.

-- One row per node that ever ran against this catalog; heartbeat_ms moves on every
-- lease round of the node. draining = 1: the node hands its leases to the others and
-- takes none (binlog-server drain), until it is set back to 0.
CREATE TABLE nodes (
    id              VARCHAR(255) NOT NULL,
    advertise       TEXT         NOT NULL,
    started_ms      BIGINT       NOT NULL,
    heartbeat_ms    BIGINT       NOT NULL,
    draining        BIGINT       NOT NULL,
    PRIMARY KEY (id),
    CHECK (draining IN (0, 1))
);

-- One row per source that was ever leased. owner NULL = free (released); a lease whose
-- expires_ms has passed is free as well. epoch grows by one at every acquisition, so
-- (source, epoch) names one owner's tenure for ever; it fences that owner's writes.
-- previous_owner / previous_renewed_ms: who held it before and their last renewal,
-- for the takeover time.
CREATE TABLE source_leases (
    source               VARCHAR(255) NOT NULL,
    owner                VARCHAR(255),
    epoch                BIGINT       NOT NULL,
    expires_ms           BIGINT       NOT NULL,
    acquired_ms          BIGINT       NOT NULL,
    renewed_ms           BIGINT       NOT NULL,
    previous_owner       VARCHAR(255),
    previous_renewed_ms  BIGINT,
    PRIMARY KEY (source),
    CHECK (epoch >= 0)
);
