-- 0014: a job counts its skipped files by reason ("unchanged", "duplicate", "sidecar",
-- "unsupported format .dng", "video (not supported yet)", "heic without the heif extra").
-- semsql.ingest_item gains an OUT reason, which changes its row type: CREATE OR REPLACE cannot
-- do that, so the old one goes here and sql/020 makes the new one.

ALTER TABLE semsql.jobs ADD COLUMN skipped_reasons jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN semsql.jobs.skipped_reasons IS
    'Skipped files by reason, {reason: count}; they add up to skipped_count.';

DROP FUNCTION IF EXISTS semsql.ingest_item(bigint, text, jsonb);
