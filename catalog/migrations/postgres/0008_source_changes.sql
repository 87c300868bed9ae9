-- binlog-server catalog, schema version 8: a change counter per source, kept by the
-- database itself. Every row added to or removed from binlog_files or archive_objects,
-- and every change of a column the shipper acts on, adds one to the source's counter,
-- whichever node or command wrote it. A shipper with nothing to do reads this one row
-- per pass (Catalog::archive_fingerprint) instead of listing every file of the source,
-- so its idle cost does not grow with the archive.
CREATE TABLE source_changes (
    source  VARCHAR(255) COLLATE "C" NOT NULL PRIMARY KEY,
    n       BIGINT       NOT NULL
);

CREATE FUNCTION source_changes_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s VARCHAR(255);
BEGIN
    IF TG_OP = 'DELETE' THEN
        s := OLD.source;
    ELSE
        s := NEW.source;
    END IF;
    INSERT INTO source_changes (source, n) VALUES (s, 1)
        ON CONFLICT (source) DO UPDATE SET n = source_changes.n + 1;
    RETURN NULL;
END;
$$;

-- Deferred to the commit: a transaction takes its source's counter row last, after
-- every row lock it needs, so the counter never closes a cycle of waits (a deadlock)
-- between a transaction of several statements and a single statement.
CREATE CONSTRAINT TRIGGER binlog_files_changes_insert AFTER INSERT OR DELETE ON binlog_files
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION source_changes_bump();

CREATE CONSTRAINT TRIGGER binlog_files_changes_update AFTER UPDATE ON binlog_files
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.size IS DISTINCT FROM NEW.size OR OLD.state IS DISTINCT FROM NEW.state
        OR OLD.state_changed_at IS DISTINCT FROM NEW.state_changed_at
        OR OLD.sha256 IS DISTINCT FROM NEW.sha256
        OR OLD.last_event_time IS DISTINCT FROM NEW.last_event_time
        OR OLD.name IS DISTINCT FROM NEW.name OR OLD.source IS DISTINCT FROM NEW.source)
    EXECUTE FUNCTION source_changes_bump();

CREATE CONSTRAINT TRIGGER archive_objects_changes
    AFTER INSERT OR UPDATE OR DELETE ON archive_objects
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION source_changes_bump();
