-- binlog-server catalog, schema version 8: a change counter per source, kept by the
-- database itself. Every row added to or removed from binlog_files or archive_objects,
-- and every change of a column the shipper acts on, adds one to the source's counter,
-- whichever node or command wrote it. A shipper with nothing to do reads this one row
-- per pass (Catalog::archive_fingerprint) instead of listing every file of the source,
-- so its idle cost does not grow with the archive.
CREATE TABLE source_changes (
    source  VARCHAR(255) NOT NULL PRIMARY KEY,
    n       BIGINT       NOT NULL
);

CREATE TRIGGER binlog_files_changes_insert AFTER INSERT ON binlog_files
BEGIN
    INSERT INTO source_changes (source, n) VALUES (NEW.source, 1)
        ON CONFLICT (source) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER binlog_files_changes_update AFTER UPDATE ON binlog_files
WHEN OLD.size IS NOT NEW.size OR OLD.state IS NOT NEW.state
    OR OLD.state_changed_at IS NOT NEW.state_changed_at OR OLD.sha256 IS NOT NEW.sha256
    OR OLD.last_event_time IS NOT NEW.last_event_time OR OLD.name IS NOT NEW.name
    OR OLD.source IS NOT NEW.source
BEGIN
    INSERT INTO source_changes (source, n) VALUES (NEW.source, 1)
        ON CONFLICT (source) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER binlog_files_changes_delete AFTER DELETE ON binlog_files
BEGIN
    INSERT INTO source_changes (source, n) VALUES (OLD.source, 1)
        ON CONFLICT (source) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER archive_objects_changes_insert AFTER INSERT ON archive_objects
BEGIN
    INSERT INTO source_changes (source, n) VALUES (NEW.source, 1)
        ON CONFLICT (source) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER archive_objects_changes_update AFTER UPDATE ON archive_objects
BEGIN
    INSERT INTO source_changes (source, n) VALUES (NEW.source, 1)
        ON CONFLICT (source) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER archive_objects_changes_delete AFTER DELETE ON archive_objects
BEGIN
    INSERT INTO source_changes (source, n) VALUES (OLD.source, 1)
        ON CONFLICT (source) DO UPDATE SET n = n + 1;
END;
