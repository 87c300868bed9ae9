-- binlog-server catalog, schema version 7: which node runs each job. A node's start-up
-- sweep (interrupted bases, unfinished PITRs, running verifications) touches only its
-- own rows, so that one node's restart never fails a neighbour's work. '' is the node
-- of a single-node deployment (no [node] section), and of every row written before.
ALTER TABLE base_backups ADD COLUMN node VARCHAR(255) NOT NULL DEFAULT '';
ALTER TABLE pitr_jobs ADD COLUMN node VARCHAR(255) NOT NULL DEFAULT '';
ALTER TABLE verifications ADD COLUMN node VARCHAR(255) NOT NULL DEFAULT '';
