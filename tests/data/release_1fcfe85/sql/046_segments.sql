-- The segments stage's table (migrations/0018_segments.sql) follows its asset's content: what
-- the model said was about the old pixels. Its tags (source 'segmentation') go with the other
-- models' tags in semsql.enqueue_asset_tasks.

CREATE OR REPLACE FUNCTION semsql.forget_segments_of_changed_asset() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    DELETE FROM segments WHERE asset_id = NEW.id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION semsql.forget_segments_of_changed_asset() IS
    'Trigger: deletes the segments of an asset whose content (sha256) changed; the segments '
    'stage, queued again, stores the new ones.';

CREATE OR REPLACE TRIGGER assets_forget_segments
    AFTER UPDATE OF sha256 ON semsql.assets
    FOR EACH ROW WHEN (OLD.sha256 IS DISTINCT FROM NEW.sha256)
    EXECUTE FUNCTION semsql.forget_segments_of_changed_asset();
