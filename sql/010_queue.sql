-- The work queue's triggers: a new or changed asset gets one task per enabled stage.

CREATE OR REPLACE FUNCTION semsql.assets_before_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.sha256 IS NOT DISTINCT FROM OLD.sha256 THEN
        NEW.updated_at := now();
        RETURN NEW;
    END IF;
    NEW.updated_at := now();
    NEW.status := CASE WHEN EXISTS (SELECT 1 FROM stages WHERE enabled) THEN 'pending' ELSE 'ready' END;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION semsql.assets_before_change() IS
    'Trigger: keeps updated_at, and marks an asset pending when its content is new or changed.';

CREATE OR REPLACE FUNCTION semsql.enqueue_asset_tasks() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.sha256 IS NOT DISTINCT FROM OLD.sha256 THEN
            RETURN NULL;
        END IF;
        -- What the models said was about the old pixels; what people said stays.
        DELETE FROM captions WHERE asset_id = NEW.id AND source <> 'user';
        DELETE FROM tags WHERE asset_id = NEW.id AND source <> 'user';
        DELETE FROM faces WHERE asset_id = NEW.id;
        DELETE FROM embeddings WHERE asset_id = NEW.id;
        DELETE FROM content_hashes WHERE asset_id = NEW.id;
        DELETE FROM frames WHERE asset_id = NEW.id;  -- their faces and vectors with them
    END IF;
    INSERT INTO tasks (asset_id, stage)
    SELECT NEW.id, name FROM stages WHERE enabled AND NEW.media_type = ANY (media_types)
    ON CONFLICT (asset_id, stage) DO UPDATE
        SET status = 'pending', attempts = 0, lost_leases = 0, last_error = NULL,
            next_attempt_at = now(),
            leased_by = NULL, leased_backend = NULL, lease_expires_at = NULL, model = NULL,
            started_at = NULL, finished_at = NULL;
    IF FOUND THEN
        -- A wake-up hint only: the tasks table is the truth. Notifications are
        -- de-duplicated per transaction, so a batch of inserts sends one.
        PERFORM notify('semsql_tasks');
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION semsql.enqueue_asset_tasks() IS
    'Trigger: queues one task per enabled stage of its media type for a new or changed asset '
    'and wakes the workers.';

CREATE OR REPLACE TRIGGER assets_before_change
    BEFORE INSERT OR UPDATE ON semsql.assets
    FOR EACH ROW EXECUTE FUNCTION semsql.assets_before_change();

CREATE OR REPLACE TRIGGER assets_enqueue
    AFTER INSERT OR UPDATE OF sha256 ON semsql.assets
    FOR EACH ROW EXECUTE FUNCTION semsql.enqueue_asset_tasks();

CREATE OR REPLACE FUNCTION semsql.write_stages(p_stages jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    added text[];
BEGIN
    -- Nothing to change (every init but the first of a release): no row is touched, so an init
    -- does not wait for the transactions that queue tasks (their foreign keys lock these rows).
    IF (SELECT array_agg(ROW(r.name, r.position, r.depends_on, r.description, r.reads,
                             r.vector_space, r.media_types) ORDER BY r.position)
        FROM jsonb_populate_recordset(NULL::semsql.stages, p_stages) AS r)
       IS NOT DISTINCT FROM
       (SELECT array_agg(ROW(s.name, s.position, s.depends_on, s.description, s.reads,
                             s.vector_space, s.media_types) ORDER BY s.position)
        FROM semsql.stages s WHERE NOT s.retired) THEN
        RETURN;
    END IF;
    added := ARRAY(SELECT r.name FROM jsonb_populate_recordset(NULL::semsql.stages, p_stages) AS r
                   WHERE NOT EXISTS (SELECT 1 FROM semsql.stages s WHERE s.name = r.name));
    -- Positions and vector spaces are unique: move every row out of the way before giving the
    -- new ones (a release may give a space to a stage of another name).
    UPDATE semsql.stages SET position = -position, vector_space = NULL WHERE position > 0;
    INSERT INTO semsql.stages AS s (name, position, depends_on, description, reads, vector_space,
                                    media_types, enabled)
    SELECT r.name, r.position, r.depends_on, r.description, r.reads, r.vector_space,
           coalesce(r.media_types, '{image,video}'),
           coalesce(r.enabled, true)  -- a stage declared off by default starts disabled
    FROM jsonb_populate_recordset(NULL::semsql.stages, p_stages) AS r
    ON CONFLICT (name) DO UPDATE
        SET position = excluded.position, depends_on = excluded.depends_on,
            description = excluded.description, reads = excluded.reads,
            vector_space = excluded.vector_space, media_types = excluded.media_types,
            -- declared again after a release retired it (an older init ran): enabled again
            enabled = s.enabled OR s.retired, retired = false;
    -- A stage this release does not declare keeps its rows and tasks but gets no new ones; it
    -- keeps its place after the declared ones.
    UPDATE semsql.stages s
    SET enabled = false, retired = true,
        position = jsonb_array_length(p_stages) + r.rank
    FROM (SELECT name, rank() OVER (ORDER BY position DESC) AS rank
          FROM semsql.stages WHERE position < 0) AS r
    WHERE s.name = r.name;
    -- A stage new to this database (a release added it) is queued for every stored asset, as
    -- ingest queues it for a new one.
    PERFORM semsql.queue_for_stored_assets(
        ARRAY(SELECT s.name FROM semsql.stages s WHERE s.name = ANY (added) AND s.enabled));
END
$$;
COMMENT ON FUNCTION semsql.write_stages(jsonb) IS
    'Called by every `semsql init`: makes semsql.stages say what semsql/stages.py declares '
    '(an array of {name, position, depends_on, description, reads, vector_space, media_types}); whether a '
    'declared stage is enabled stays as it was (one that an earlier init retired is enabled '
    'again; a new one is enabled unless its "enabled" says false), and an undeclared one is '
    'disabled and marked retired. A stage new to the database, if enabled, is queued for every '
    'stored asset.';

CREATE OR REPLACE FUNCTION semsql.queue_for_stored_assets(p_stages text[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    queued bigint[];
BEGIN
    WITH inserted AS (
        INSERT INTO tasks (asset_id, stage)
        SELECT a.id, s.name FROM assets a
        JOIN stages s ON s.name = ANY (p_stages) AND a.media_type = ANY (s.media_types)
        ON CONFLICT (asset_id, stage) DO NOTHING
        RETURNING asset_id)
    SELECT coalesce(array_agg(DISTINCT i.asset_id), '{}') INTO queued FROM inserted i;
    IF cardinality(queued) > 0 THEN
        PERFORM refresh_asset_status(queued);
        PERFORM notify('semsql_tasks');
    END IF;
    RETURN cardinality(queued);
END
$$;
COMMENT ON FUNCTION semsql.queue_for_stored_assets(text[]) IS
    'Queues a task of each of p_stages for every stored asset of its media types that has none (a stage new to the '
    'database, or one just enabled), sets those assets pending and wakes the workers; returns '
    'how many assets it queued.';

CREATE OR REPLACE FUNCTION semsql.enable_stage(p_stage text) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM stages s WHERE s.name = p_stage AND NOT s.retired) THEN
        RAISE EXCEPTION 'unknown stage %', coalesce(p_stage, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT s.enabled FROM stages s WHERE s.name = p_stage) THEN
        RETURN 0;  -- every worker start of a stage turned on by its setting: nothing to do
    END IF;
    -- Ingests in flight finish first, so that every asset gets the task: one committed after
    -- this read the stage enabled, one committed before is seen below.
    LOCK TABLE assets IN SHARE MODE;
    UPDATE stages SET enabled = true WHERE name = p_stage AND NOT enabled;
    IF NOT FOUND THEN
        RETURN 0;  -- another worker enabled it meanwhile
    END IF;
    RETURN queue_for_stored_assets(ARRAY[p_stage]);
END
$$;
COMMENT ON FUNCTION semsql.enable_stage(text) IS
    'Enables a disabled stage (one declared off by default, turned on by a worker started with '
    'its model setting) and queues its task for every stored asset that has none; returns how '
    'many it queued (0 when the stage was enabled already).';
