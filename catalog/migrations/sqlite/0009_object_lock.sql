-- S3 Object Lock ([archive] object_lock): the retain-until date (unix seconds) last set
-- on an object row's objects by a lock extension. NULL: only the bucket's default rule,
-- counted from created_at.
ALTER TABLE archive_objects ADD COLUMN lock_until BIGINT;
-- The same for a base's objects (NULL: the bucket's rule, counted from started_at).
ALTER TABLE base_backups ADD COLUMN lock_until BIGINT;
