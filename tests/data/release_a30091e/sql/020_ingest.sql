-- Ingest: one call per batch of probed files, so that a batch costs one round trip.

CREATE OR REPLACE FUNCTION semsql.add_user_facts(
    p_asset_id bigint, p_caption text, p_tags text[], p_people text[]
) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public
AS $$
-- Captions, keywords and people that a person stated (file metadata, a catalog manifest).
-- A caption replaces the user caption; tags and people are added, never removed, so that
-- re-ingesting a folder without its manifest loses nothing. Returns whether anything changed.
DECLARE
    changed boolean := false;
    n integer;
BEGIN
    IF nullif(btrim(p_caption), '') IS NOT NULL THEN
        INSERT INTO captions (asset_id, source, text) VALUES (p_asset_id, 'user', btrim(p_caption))
        ON CONFLICT (asset_id, source) DO UPDATE SET text = EXCLUDED.text, created_at = now()
            WHERE captions.text IS DISTINCT FROM EXCLUDED.text;
        GET DIAGNOSTICS n = ROW_COUNT;
        changed := changed OR n > 0;
    END IF;

    INSERT INTO tags (asset_id, label, source)
    SELECT DISTINCT ON (lower(label)) p_asset_id, label, 'user'
    FROM (SELECT btrim(t) AS label FROM unnest(p_tags) AS t) AS given
    WHERE label <> ''
      AND NOT EXISTS (SELECT 1 FROM tags
                      WHERE asset_id = p_asset_id AND source = 'user'
                        AND lower(tags.label) = lower(given.label));
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed OR n > 0;

    INSERT INTO people (name)
    SELECT DISTINCT btrim(p) FROM unnest(p_people) AS p WHERE btrim(p) <> ''
    ON CONFLICT ((lower(name))) DO NOTHING;

    INSERT INTO asset_people (asset_id, person_id, source)
    SELECT p_asset_id, people.id, 'user'
    FROM people
    WHERE lower(people.name) IN (SELECT lower(btrim(p)) FROM unnest(p_people) AS p)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN changed OR n > 0;
END
$$;
COMMENT ON FUNCTION semsql.add_user_facts(bigint, text, text[], text[]) IS
    'Stores a user caption, keywords and people shown for an asset; returns whether anything changed.';


CREATE OR REPLACE FUNCTION semsql.ingest_batch(p_job_id bigint, p_collection text, p_items jsonb)
RETURNS TABLE (item_position integer, outcome text, asset_id bigint, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public
AS $$
-- Each item is either a probed file {position, uri, sha256, mime, width, height, bytes,
-- taken_at, metadata, caption, tags, people} or a failure {position, uri, error_code, error}.
DECLARE
    item jsonb;
    existing assets%ROWTYPE;
    twin assets%ROWTYPE;
    v_asset_id bigint;
    v_outcome text;
    v_detail text;
    v_tags text[];
    v_people text[];
    facts_changed boolean;
    n_new integer := 0;
    n_updated integer := 0;
    n_skipped integer := 0;
    n_failed integer := 0;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        v_asset_id := NULL;
        v_detail := NULL;
        SELECT * INTO existing FROM assets a
        WHERE a.collection = p_collection AND a.uri = item->>'uri';

        IF item ? 'error_code' THEN
            v_outcome := 'failed';
            v_detail := item->>'error';
            IF existing.id IS NOT NULL THEN
                v_asset_id := existing.id;
                UPDATE assets SET error = (item->>'error_code') || ': ' || (item->>'error')
                WHERE id = existing.id;
            END IF;
        ELSE
            v_tags := ARRAY(SELECT jsonb_array_elements_text(coalesce(item->'tags', '[]')));
            v_people := ARRAY(SELECT jsonb_array_elements_text(coalesce(item->'people', '[]')));
            IF existing.id IS NULL OR existing.sha256 <> item->>'sha256' THEN
                SELECT * INTO twin FROM assets a
                WHERE a.collection = p_collection AND a.sha256 = item->>'sha256';
            ELSE
                twin := NULL;
            END IF;

            IF twin.id IS NOT NULL THEN
                v_outcome := 'skipped';
                v_asset_id := coalesce(existing.id, twin.id);
                v_detail := format('same content as asset %s (%s)', twin.id, twin.uri);
            ELSIF existing.id IS NULL THEN
                INSERT INTO assets (collection, uri, sha256, mime, width, height, bytes,
                                    taken_at, metadata, job_id)
                VALUES (p_collection, item->>'uri', item->>'sha256', item->>'mime',
                        (item->>'width')::integer, (item->>'height')::integer,
                        (item->>'bytes')::bigint, (item->>'taken_at')::timestamptz,
                        coalesce(item->'metadata', '{}'), p_job_id)
                RETURNING id INTO v_asset_id;
                PERFORM add_user_facts(v_asset_id, item->>'caption', v_tags, v_people);
                v_outcome := 'new';
            ELSIF existing.sha256 <> item->>'sha256' THEN
                v_asset_id := existing.id;
                UPDATE assets
                SET sha256 = item->>'sha256', mime = item->>'mime',
                    width = (item->>'width')::integer, height = (item->>'height')::integer,
                    bytes = (item->>'bytes')::bigint, taken_at = (item->>'taken_at')::timestamptz,
                    metadata = coalesce(item->'metadata', '{}'), error = NULL, job_id = p_job_id
                WHERE id = existing.id;
                PERFORM add_user_facts(v_asset_id, item->>'caption', v_tags, v_people);
                v_outcome := 'updated';
                v_detail := 'content changed';
            ELSE
                v_asset_id := existing.id;
                facts_changed := add_user_facts(v_asset_id, item->>'caption', v_tags, v_people);
                IF existing.metadata IS DISTINCT FROM coalesce(item->'metadata', '{}') THEN
                    UPDATE assets SET metadata = coalesce(item->'metadata', '{}') WHERE id = existing.id;
                    facts_changed := true;
                END IF;
                IF existing.error IS NOT NULL THEN
                    UPDATE assets SET error = NULL WHERE id = existing.id;
                END IF;
                v_outcome := CASE WHEN facts_changed THEN 'updated' ELSE 'skipped' END;
                v_detail := CASE WHEN facts_changed THEN 'captions, tags, people or metadata changed'
                                 ELSE 'unchanged' END;
            END IF;
        END IF;

        INSERT INTO job_items (job_id, position, uri, outcome, asset_id, error_code, error)
        VALUES (p_job_id, (item->>'position')::integer, item->>'uri', v_outcome, v_asset_id,
                item->>'error_code',
                CASE WHEN v_outcome IN ('failed', 'skipped') THEN v_detail END);

        CASE v_outcome
            WHEN 'new' THEN n_new := n_new + 1;
            WHEN 'updated' THEN n_updated := n_updated + 1;
            WHEN 'skipped' THEN n_skipped := n_skipped + 1;
            ELSE n_failed := n_failed + 1;
        END CASE;
        item_position := (item->>'position')::integer;
        outcome := v_outcome;
        asset_id := v_asset_id;
        detail := v_detail;
        RETURN NEXT;
    END LOOP;
    UPDATE jobs SET new_count     = new_count + n_new,
                    updated_count = updated_count + n_updated,
                    skipped_count = skipped_count + n_skipped,
                    failed_count  = failed_count + n_failed
    WHERE id = p_job_id;
END
$$;
COMMENT ON FUNCTION semsql.ingest_batch(bigint, text, jsonb) IS
    'Stores a batch of probed files for a job: new, updated (content or stated facts changed), skipped (unchanged or same content as another asset) or failed.';


CREATE OR REPLACE FUNCTION semsql.complete_jobs() RETURNS SETOF bigint
LANGUAGE sql
SET search_path = pg_catalog, semsql, public
AS $$
    -- A job whose files are all read completes once none of its assets has work left.
    UPDATE jobs SET status = 'completed', finished_at = now()
    WHERE status = 'running'
      AND ingested_at IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM job_items ji JOIN tasks t ON t.asset_id = ji.asset_id
          WHERE ji.job_id = jobs.id AND ji.outcome IN ('new', 'updated')
            AND t.status IN ('pending', 'running'))
    RETURNING id;
$$;
COMMENT ON FUNCTION semsql.complete_jobs() IS
    'Marks completed every running job whose files are read and whose assets have no pending work; returns their ids.';
