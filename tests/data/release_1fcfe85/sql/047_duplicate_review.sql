-- Duplicate review: which copy of each duplicate group to keep, and deleting the others' rows.
-- (semsql.duplicates itself, semantic and content, is in 044_similar.sql.)

-- Content hashes ------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.content_hash_bits() RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    bits integer;
BEGIN
    IF to_regclass('semsql.content_hashes') IS NULL
       OR NOT EXISTS (SELECT 1 FROM semsql.content_hashes) THEN
        RAISE EXCEPTION 'no content hashes yet'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'run `semsql worker`: the content stage needs no model';
    END IF;
    -- bit(n) keeps n as its type modifier; a bit varying column has none.
    SELECT nullif(a.atttypmod, -1) INTO bits
    FROM pg_attribute a
    WHERE a.attrelid = 'semsql.content_hashes'::regclass AND a.attname = 'hash';
    RETURN coalesce(bits, (SELECT max(length(h.hash)) FROM semsql.content_hashes h));
END
$$;
COMMENT ON FUNCTION semsql.content_hash_bits() IS
    'The length in bits of the content stage''s perceptual hashes (the largest Hamming distance); '
    'raises object_not_in_prerequisite_state while there are none.';

CREATE OR REPLACE FUNCTION semsql.default_content_distance() RETURNS real
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT 40::real;
$$;
COMMENT ON FUNCTION semsql.default_content_distance() IS
    'The Hamming distance (bits of the content hash) within which duplicates(by => ''content'') '
    'links two assets unless told otherwise; README "Duplicates" says how it was measured.';

-- Which copy to keep ----------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.user_fact_count(p_asset_id bigint) RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT ((SELECT count(*) FROM captions c WHERE c.asset_id = p_asset_id AND c.source = 'user')
          + (SELECT count(*) FROM tags t WHERE t.asset_id = p_asset_id AND t.source = 'user')
          + (SELECT count(*) FROM asset_people ap
             WHERE ap.asset_id = p_asset_id AND ap.source = 'user'))::integer;
$$;
COMMENT ON FUNCTION semsql.user_fact_count(bigint) IS
    'How much a person said about an asset: its caption, keywords and people of source user.';

CREATE OR REPLACE FUNCTION semsql.duplicate_review(
    max_distance real DEFAULT NULL, collection text DEFAULT NULL, space text DEFAULT 'image',
    neighbours integer DEFAULT 10, by text DEFAULT 'semantic'
) RETURNS TABLE (
    group_id bigint, asset_id bigint, uri text, kind text, distance real,
    width integer, height integer, pixels bigint, bytes bigint, taken_at timestamptz,
    ingested_at timestamptz, user_facts integer, rank integer, keep boolean, reason text
)
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    WITH members AS (
        SELECT d.group_id, d.asset_id, d.uri, d.kind, d.distance,
               a.width, a.height, a.width::bigint * a.height AS pixels, a.bytes, a.taken_at,
               a.created_at AS ingested_at, user_fact_count(a.id) AS user_facts
        FROM duplicates(duplicate_review.max_distance, duplicate_review.collection,
                        duplicate_review.space, duplicate_review.neighbours,
                        duplicate_review.by) AS d
        JOIN assets a ON a.id = d.asset_id),
    ranked AS (
        -- The order of preference; the first of each group is the copy to keep.
        SELECT m.*, row_number() OVER (
                   PARTITION BY m.group_id
                   ORDER BY m.pixels DESC NULLS LAST, m.bytes DESC NULLS LAST,
                            m.taken_at ASC NULLS LAST, m.user_facts DESC,
                            m.ingested_at ASC, m.asset_id ASC)::integer AS rank
        FROM members m),
    compared AS (
        -- The kept copy is compared with the runner-up, every other copy with the kept one.
        SELECT r.*, o.pixels AS o_pixels, o.width AS o_width, o.height AS o_height,
               o.bytes AS o_bytes, o.taken_at AS o_taken_at, o.user_facts AS o_user_facts,
               o.ingested_at AS o_ingested_at
        FROM ranked r
        JOIN ranked o ON o.group_id = r.group_id AND o.rank = CASE WHEN r.rank = 1 THEN 2 ELSE 1 END)
    SELECT c.group_id, c.asset_id, c.uri, c.kind, c.distance, c.width, c.height, c.pixels,
           c.bytes, c.taken_at, c.ingested_at, c.user_facts, c.rank, c.rank = 1,
           CASE
               WHEN c.pixels IS DISTINCT FROM c.o_pixels THEN
                   CASE WHEN c.rank = 1 THEN 'largest' ELSE 'smaller' END
                   || format(': %s (%s %s)', coalesce(c.width || 'x' || c.height || ' px', 'size unknown'),
                             CASE WHEN c.rank = 1 THEN 'next' ELSE 'kept' END,
                             coalesce(c.o_width || 'x' || c.o_height, 'size unknown'))
               WHEN c.bytes IS DISTINCT FROM c.o_bytes THEN
                   CASE WHEN c.rank = 1 THEN 'as large, most bytes' ELSE 'as large, fewer bytes' END
                   || format(': %s (%s %s)', coalesce(c.bytes::text, 'unknown'),
                             CASE WHEN c.rank = 1 THEN 'next' ELSE 'kept' END,
                             coalesce(c.o_bytes::text, 'unknown'))
               WHEN c.taken_at IS DISTINCT FROM c.o_taken_at THEN
                   CASE WHEN c.rank = 1 THEN 'same size, taken first' ELSE 'same size, taken later' END
                   || format(': %s (%s %s)',
                             coalesce(to_char(c.taken_at, 'YYYY-MM-DD HH24:MI:SS'), 'date unknown'),
                             CASE WHEN c.rank = 1 THEN 'next' ELSE 'kept' END,
                             coalesce(to_char(c.o_taken_at, 'YYYY-MM-DD HH24:MI:SS'), 'date unknown'))
               WHEN c.user_facts IS DISTINCT FROM c.o_user_facts THEN
                   CASE WHEN c.rank = 1 THEN 'same size and date, most user metadata'
                        ELSE 'same size and date, less user metadata' END
                   || format(': %s (%s %s)', c.user_facts,
                             CASE WHEN c.rank = 1 THEN 'next' ELSE 'kept' END, c.o_user_facts)
               WHEN c.ingested_at IS DISTINCT FROM c.o_ingested_at THEN
                   CASE WHEN c.rank = 1 THEN 'alike, ingested first' ELSE 'alike, ingested later' END
               ELSE CASE WHEN c.rank = 1 THEN 'alike, the first asset id' ELSE 'alike, a later asset id' END
           END
    FROM compared c
    ORDER BY c.group_id, c.rank;
$$;
COMMENT ON FUNCTION semsql.duplicate_review(real, text, text, integer, text) IS
    'The groups of semsql.duplicates (same arguments) with each copy''s size, dates and user '
    'metadata, ranked within its group; keep is true for the copy to keep (rank 1): the most '
    'pixels, then the most bytes, then the earliest taken_at (unknown last), then the most user '
    'facts (caption, keywords, people of source user), then the earliest ingest, then the '
    'smallest id. reason names the first of these that tells it from the runner-up (kept copy) '
    'or from the kept copy (the others).';

-- Deleting asset rows -----------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.delete_assets(p_asset_ids bigint[])
RETURNS TABLE (asset_id bigint, uri text)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    deleted bigint[];
    deleted_uris text[];
    clusters bigint[];
BEGIN
    IF NOT has_table_privilege('semsql.assets', 'DELETE') THEN
        RAISE EXCEPTION 'deleting assets needs a writer role (such as semsql_worker), not %',
                        current_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF coalesce(cardinality(p_asset_ids), 0) = 0 THEN
        RETURN;
    END IF;
    -- Their tasks first, in the order a worker writing results locks them
    -- (lock_owned_tasks): a worker's results for them then wait for this transaction and find
    -- their tasks gone, instead of the two deadlocking on the asset row and the task rows.
    PERFORM 1 FROM tasks t WHERE t.asset_id = ANY (p_asset_ids) ORDER BY t.id FOR UPDATE;
    SELECT array_agg(DISTINCT m.cluster_id) INTO clusters
    FROM face_cluster_members m JOIN faces f ON f.id = m.face_id
    WHERE f.asset_id = ANY (p_asset_ids);
    -- Everything else hangs from the asset by a cascading foreign key: captions, tags, faces
    -- (and their cluster memberships), people links, embeddings, content hashes, tasks, search
    -- documents. Job items keep their history with the asset's id set to NULL; a reference
    -- face enrolled from one of its faces keeps its vector (person_faces.face_id NULL).
    WITH gone AS (
        DELETE FROM assets a WHERE a.id = ANY (p_asset_ids) RETURNING a.id, a.uri)
    SELECT array_agg(g.id ORDER BY g.id), array_agg(g.uri ORDER BY g.id)
    INTO deleted, deleted_uris FROM gone g;
    IF deleted IS NULL THEN
        RETURN;
    END IF;
    -- A cluster of unknown faces left with none.
    DELETE FROM face_clusters c
    WHERE c.id = ANY (clusters)
      AND NOT EXISTS (SELECT 1 FROM face_cluster_members m WHERE m.cluster_id = c.id);
    -- A running ingest job that waited only for these assets' enrichment is complete now.
    PERFORM settle_assets(deleted);
    RETURN QUERY SELECT * FROM unnest(deleted, deleted_uris);
END
$$;
COMMENT ON FUNCTION semsql.delete_assets(bigint[]) IS
    'Deletes these assets'' rows and every row that hangs from them (never a file); needs a '
    'writer role. Job history stays (items keep their uri and outcome), running jobs waiting '
    'for them complete. Returns the assets deleted.';
