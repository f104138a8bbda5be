-- Ingest: one call per batch of probed files, so that a batch costs one round trip.

CREATE OR REPLACE FUNCTION semsql.add_user_facts(
    p_asset_id bigint, p_caption text, p_tags text[], p_people text[]
) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
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


CREATE OR REPLACE FUNCTION semsql.ingest_item(
    p_job_id bigint, p_collection text, p_item jsonb,
    OUT outcome text, OUT asset_id bigint, OUT detail text, OUT reason text
)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
-- One item of semsql.ingest_batch: a probed file {position, uri, root, sha256, media_type,
-- duration_ms, mime, width, height, bytes, taken_at, metadata, caption, tags, people,
-- signature}, a failure {position, uri, error_code, error} or a file not read {position, uri,
-- skip_reason, detail}. A skipped item's
-- reason is what the job counts it by: its skip_reason, 'duplicate' or 'unchanged'. Raises
-- unique_violation when another transaction stored the same uri or content first
-- (ingest_batch then runs the item again, and it sees that asset). A stored file keeps the
-- item's signature (assets.file_signature; NULL when the item has none), except a duplicate,
-- whose asset is not this content.
DECLARE
    existing assets%ROWTYPE;
    twin assets%ROWTYPE;
    v_tags text[];
    v_people text[];
    facts_changed boolean;
    v_signature jsonb := nullif(p_item->'signature', 'null');
BEGIN
    SELECT * INTO existing FROM assets a
    WHERE a.collection = p_collection AND a.uri = p_item->>'uri';

    IF p_item ? 'error_code' THEN
        outcome := 'failed';
        detail := p_item->>'error';
        IF existing.id IS NOT NULL THEN
            asset_id := existing.id;
            UPDATE assets SET error = (p_item->>'error_code') || ': ' || (p_item->>'error')
            WHERE id = existing.id;
        END IF;
        RETURN;
    END IF;

    IF p_item ? 'skip_reason' THEN
        outcome := 'skipped';
        asset_id := existing.id;
        reason := p_item->>'skip_reason';
        detail := p_item->>'detail';
        RETURN;
    END IF;

    v_tags := ARRAY(SELECT jsonb_array_elements_text(coalesce(p_item->'tags', '[]')));
    v_people := ARRAY(SELECT jsonb_array_elements_text(coalesce(p_item->'people', '[]')));
    IF existing.id IS NULL OR existing.sha256 <> p_item->>'sha256' THEN
        SELECT * INTO twin FROM assets a
        WHERE a.collection = p_collection AND a.sha256 = p_item->>'sha256';
    END IF;

    IF twin.id IS NOT NULL THEN
        outcome := 'skipped';
        asset_id := coalesce(existing.id, twin.id);
        detail := format('same content as asset %s (%s)', twin.id, twin.uri);
        reason := 'duplicate';
    ELSIF existing.id IS NULL THEN
        INSERT INTO assets (collection, uri, root, sha256, media_type, duration_ms, mime,
                            width, height, bytes, taken_at, metadata, job_id, file_signature)
        VALUES (p_collection, p_item->>'uri', p_item->>'root', p_item->>'sha256',
                coalesce(p_item->>'media_type', 'image'), (p_item->>'duration_ms')::integer,
                p_item->>'mime', (p_item->>'width')::integer, (p_item->>'height')::integer,
                (p_item->>'bytes')::bigint, (p_item->>'taken_at')::timestamptz,
                coalesce(p_item->'metadata', '{}'), p_job_id, v_signature)
        RETURNING id INTO asset_id;
        PERFORM add_user_facts(asset_id, p_item->>'caption', v_tags, v_people);
        outcome := 'new';
    ELSIF existing.sha256 <> p_item->>'sha256' THEN
        asset_id := existing.id;
        UPDATE assets
        SET sha256 = p_item->>'sha256', root = p_item->>'root', mime = p_item->>'mime',
            media_type = coalesce(p_item->>'media_type', 'image'),
            duration_ms = (p_item->>'duration_ms')::integer,
            width = (p_item->>'width')::integer, height = (p_item->>'height')::integer,
            bytes = (p_item->>'bytes')::bigint, taken_at = (p_item->>'taken_at')::timestamptz,
            metadata = coalesce(p_item->'metadata', '{}'), error = NULL, job_id = p_job_id,
            file_signature = v_signature
        WHERE id = existing.id;
        PERFORM add_user_facts(asset_id, p_item->>'caption', v_tags, v_people);
        outcome := 'updated';
        detail := 'content changed';
    ELSE
        asset_id := existing.id;
        facts_changed := add_user_facts(asset_id, p_item->>'caption', v_tags, v_people);
        IF existing.metadata IS DISTINCT FROM coalesce(p_item->'metadata', '{}') THEN
            UPDATE assets SET metadata = coalesce(p_item->'metadata', '{}') WHERE id = existing.id;
            facts_changed := true;
        END IF;
        -- Where the file was found, and its signature, are bookkeeping (for the worker, for the
        -- next ingest), not a change of the asset.
        IF existing.error IS NOT NULL OR existing.root IS DISTINCT FROM p_item->>'root'
           OR existing.file_signature IS DISTINCT FROM v_signature THEN
            UPDATE assets SET error = NULL, root = p_item->>'root', file_signature = v_signature
            WHERE id = existing.id;
        END IF;
        outcome := CASE WHEN facts_changed THEN 'updated' ELSE 'skipped' END;
        reason := CASE WHEN NOT facts_changed THEN 'unchanged' END;
        detail := CASE WHEN facts_changed THEN 'captions, tags, people or metadata changed'
                       ELSE 'unchanged' END;
    END IF;
END
$$;
COMMENT ON FUNCTION semsql.ingest_item(bigint, text, jsonb) IS
    'Stores one probed file (or records one failure or skip) of an ingest batch: new, updated, skipped or failed, with the asset, a detail and a skipped item''s reason.';


CREATE OR REPLACE FUNCTION semsql.unchanged_files(
    p_collection text, p_files jsonb, p_max_bytes bigint, p_max_pixels bigint
) RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- p_files: [{uri, root, signature}], a batch of local files about to be read. The uris of
    -- those whose asset recorded the same signature, beneath the same root, with no error and
    -- within this ingest's limits: they are skipped as unchanged, unread.
    SELECT a.uri
    FROM jsonb_to_recordset(p_files) AS f(uri text, root text, signature jsonb)
    JOIN assets a ON a.collection = p_collection AND a.uri = f.uri
    WHERE a.file_signature = f.signature
      AND a.root IS NOT DISTINCT FROM f.root
      AND a.error IS NULL
      AND a.bytes <= p_max_bytes
      AND a.width::bigint * a.height <= p_max_pixels;
$$;
COMMENT ON FUNCTION semsql.unchanged_files(text, jsonb, bigint, bigint) IS
    'Of a batch of local files [{uri, root, signature}], the uris whose asset recorded that stat signature (and root, no error, within the byte and pixel limits): a re-ingest skips them unread.';


CREATE OR REPLACE FUNCTION semsql.add_counts(p_counts jsonb, p_more jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(key, total), '{}')
    FROM (SELECT key, sum(value::integer) AS total
          FROM (SELECT * FROM jsonb_each_text(p_counts)
                UNION ALL SELECT * FROM jsonb_each_text(p_more)) AS both_counts
          GROUP BY key) AS summed;
$$;
COMMENT ON FUNCTION semsql.add_counts(jsonb, jsonb) IS
    'Two {name: count} objects added name by name (jobs.skipped_reasons).';


CREATE OR REPLACE FUNCTION semsql.ingest_batch(p_job_id bigint, p_collection text, p_items jsonb)
RETURNS TABLE (item_position integer, outcome text, asset_id bigint, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
-- Items as semsql.ingest_item takes them. Each runs in a subtransaction of its own, its search
-- document built inside it (not at commit, where one bad document would fail the batch), so
-- that a database error fails that item alone. A unique violation means that a concurrent
-- ingest stored the same file or content first: the item runs again and finds that asset.
DECLARE
    item jsonb;
    v_asset_id bigint;
    v_outcome text;
    v_detail text;
    v_error_code text;
    v_reason text;
    reasons jsonb := '{}';
    attempt integer;
    n_new integer := 0;
    n_updated integer := 0;
    n_skipped integer := 0;
    n_failed integer := 0;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        attempt := 0;
        LOOP
            attempt := attempt + 1;
            BEGIN
                SELECT r.outcome, r.asset_id, r.detail, r.reason
                INTO v_outcome, v_asset_id, v_detail, v_reason
                FROM ingest_item(p_job_id, p_collection, item) AS r;
                SET CONSTRAINTS semsql.search_documents_stale_refresh IMMEDIATE;
                SET CONSTRAINTS semsql.search_documents_stale_refresh DEFERRED;
                v_error_code := item->>'error_code';
                EXIT;
            EXCEPTION
                WHEN unique_violation OR deadlock_detected THEN
                    IF attempt >= 3 THEN
                        v_outcome := 'failed';
                        v_asset_id := NULL;
                        v_error_code := 'database';
                        v_detail := 'database error: ' || SQLERRM;
                        EXIT;
                    END IF;
                WHEN OTHERS THEN
                    v_outcome := 'failed';
                    v_asset_id := NULL;
                    v_error_code := 'database';
                    v_detail := 'database error: ' || SQLERRM;
                    EXIT;
            END;
        END LOOP;

        INSERT INTO job_items (job_id, position, uri, outcome, asset_id, error_code, error)
        VALUES (p_job_id, (item->>'position')::integer, item->>'uri', v_outcome, v_asset_id,
                v_error_code, CASE WHEN v_outcome IN ('failed', 'skipped') THEN v_detail END);

        CASE v_outcome
            WHEN 'new' THEN n_new := n_new + 1;
            WHEN 'updated' THEN n_updated := n_updated + 1;
            WHEN 'skipped' THEN
                n_skipped := n_skipped + 1;
                v_reason := coalesce(v_reason, 'other');
                reasons := jsonb_set(reasons, ARRAY[v_reason],
                                     to_jsonb(coalesce((reasons->>v_reason)::integer, 0) + 1));
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
                    failed_count  = failed_count + n_failed,
                    skipped_reasons = add_counts(skipped_reasons, reasons)
    WHERE id = p_job_id;
END
$$;
COMMENT ON FUNCTION semsql.ingest_batch(bigint, text, jsonb) IS
    'Stores a batch of probed files for a job, each in a subtransaction of its own: new, updated (content or stated facts changed), skipped (unchanged or same content as another asset) or failed (the file''s error, or the database''s for that item alone).';


CREATE OR REPLACE FUNCTION semsql.complete_jobs() RETURNS SETOF bigint
LANGUAGE sql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- A job whose files are all read completes once none of its assets has work left (at
    -- this moment: an upload's streamed ingest is one transaction that began at its first file).
    UPDATE jobs SET status = 'completed', finished_at = clock_timestamp()
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
