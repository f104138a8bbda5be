-- More like this, by meaning, by look or both: semsql.similar (an asset) and semsql.similar_to
-- (an image file's hashes and vector, made by the caller). Two indexes answer: the semantic one
-- (semsql.search: the CLIP image vector and the document vector) and the content one
-- (semsql.content_neighbours: perceptual hashes, rotations and mirrors included, no model).
-- With by => 'both' their lists are fused by semsql.fuse_similar, whose order is documented
-- there and in README "Look-alike search and the content index".

CREATE OR REPLACE FUNCTION semsql.check_similar_arguments(
    p_k integer, p_by text, p_priority text, p_split real, p_max_distance integer
) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF p_by IS NULL OR p_by NOT IN ('semantic', 'content', 'both') THEN
        RAISE EXCEPTION 'by takes semantic, content or both, not %', coalesce(p_by, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_priority IS NULL OR p_priority NOT IN ('both_first', 'semantic_first', 'content_first')
    THEN
        RAISE EXCEPTION 'priority takes both_first, semantic_first or content_first, not %',
            coalesce(p_priority, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_max_distance IS NULL OR p_max_distance NOT BETWEEN 0 AND 256 THEN
        RAISE EXCEPTION 'max_distance must be between 0 and 256 bits, not %',
            coalesce(p_max_distance::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_by <> 'semantic' AND (p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000) THEN
        -- semsql.search takes up to 10000 (and says so); one content scan returns at most 1000.
        RAISE EXCEPTION 'k must be between 1 and 1000 with by => %, not %', p_by,
            coalesce(p_k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM check_real('split', p_split, 0, 1, true);
END
$$;
COMMENT ON FUNCTION semsql.check_similar_arguments(integer, text, text, real, integer) IS
    'Raises invalid_parameter_value naming the argument of semsql.similar or similar_to that is '
    'wrong: by (semantic, content, both), priority (both_first, semantic_first, content_first), '
    'split (0 to 1), max_distance (0 to 256 bits), k (1 to 1000 when the content index answers).';

CREATE OR REPLACE FUNCTION semsql.fuse_similar(
    p_semantic semsql.search_result[], p_content_ids bigint[], p_content_distances integer[],
    p_k integer, p_priority text DEFAULT 'both_first', p_split real DEFAULT 0.5
) RETURNS SETOF semsql.similar_result
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    reserved integer := 0;  -- slots taken by hits of both indexes before any quota (both_first)
    semantic_quota integer;
    content_quota integer;
BEGIN
    -- p_semantic is in semantic rank order, p_content_ids nearest first (distance, then id).
    IF p_priority = 'both_first' THEN
        reserved := least(p_k, (SELECT count(*) FROM unnest(p_semantic) AS s
                                WHERE s.asset_id = ANY (p_content_ids)));
    END IF;
    -- The slots left are shared out by split, rounded half up; a list too short for its share
    -- leaves the rest to the other (the top-up below).
    semantic_quota := round((p_split * (p_k - reserved))::numeric);
    content_quota := p_k - reserved - semantic_quota;
    RETURN QUERY
    WITH semantic AS (
        SELECT s.asset_id, s.ordinality::integer AS semantic_rank, s.score, s.image_score,
               s.text_score, s.best_at
        FROM unnest(p_semantic) WITH ORDINALITY AS s),
    content AS (
        SELECT c.asset_id, c.i::integer AS content_rank, c.distance
        FROM unnest(p_content_ids, p_content_distances) WITH ORDINALITY AS c (asset_id, distance, i)),
    pool AS (
        SELECT coalesce(s.asset_id, c.asset_id) AS asset_id, s.semantic_rank, c.content_rank,
               c.distance, s.score, s.image_score, s.text_score, s.best_at,
               CASE WHEN s.asset_id IS NOT NULL AND c.asset_id IS NOT NULL THEN 'both'
                    WHEN s.asset_id IS NOT NULL THEN 'semantic' ELSE 'content' END AS matched_by,
               -- the preferred list's rank, then the other's
               CASE WHEN p_priority = 'content_first' THEN c.content_rank ELSE s.semantic_rank END
                   AS first_rank,
               CASE WHEN p_priority = 'content_first' THEN s.semantic_rank ELSE c.content_rank END
                   AS second_rank
        FROM semantic s FULL JOIN content c ON c.asset_id = s.asset_id),
    picked_both AS (
        SELECT p.asset_id FROM pool p
        WHERE p.matched_by = 'both'
        ORDER BY p.semantic_rank + p.content_rank, p.semantic_rank, p.asset_id
        LIMIT reserved),
    picked_first AS (  -- the preferred list's quota (semantic, unless content_first)
        SELECT p.asset_id FROM pool p
        WHERE p.first_rank IS NOT NULL
          AND p.asset_id NOT IN (SELECT b.asset_id FROM picked_both b)
        ORDER BY p.first_rank, p.asset_id
        LIMIT CASE WHEN p_priority = 'content_first' THEN content_quota ELSE semantic_quota END),
    picked_second AS (  -- the other list's quota, of the hits not picked yet
        SELECT p.asset_id FROM pool p
        WHERE p.second_rank IS NOT NULL
          AND p.asset_id NOT IN (SELECT b.asset_id FROM picked_both b)
          AND p.asset_id NOT IN (SELECT f.asset_id FROM picked_first f)
        ORDER BY p.second_rank, p.asset_id
        LIMIT CASE WHEN p_priority = 'content_first' THEN semantic_quota ELSE content_quota END),
    picked AS (
        SELECT b.asset_id FROM picked_both b
        UNION ALL SELECT f.asset_id FROM picked_first f
        UNION ALL SELECT s.asset_id FROM picked_second s),
    topped_up AS (  -- when a list ran short: the best of the rest, either list
        SELECT p.asset_id FROM pool p
        WHERE p.asset_id NOT IN (SELECT x.asset_id FROM picked x)
        ORDER BY least(p.semantic_rank, p.content_rank), p.semantic_rank IS NULL, p.asset_id
        LIMIT greatest(0, p_k - (SELECT count(*) FROM picked))),
    chosen AS (
        SELECT p.*,
               row_number() OVER (ORDER BY
                   -- both_first: hits of both indexes (by the sum of their ranks), then the
                   -- others by their one rank, semantic before content on a tie
                   CASE WHEN p_priority = 'both_first' THEN p.matched_by <> 'both'
                        ELSE p.first_rank IS NULL END,
                   CASE WHEN p_priority = 'both_first' AND p.matched_by = 'both'
                        THEN p.semantic_rank + p.content_rank
                        WHEN p_priority = 'both_first'
                        THEN coalesce(p.semantic_rank, p.content_rank)
                        ELSE coalesce(p.first_rank, p.second_rank) END,
                   p.semantic_rank IS NULL, p.semantic_rank, p.asset_id)::integer AS rank
        FROM pool p
        WHERE p.asset_id IN (SELECT x.asset_id FROM picked x
                             UNION ALL SELECT t.asset_id FROM topped_up t))
    SELECT c.asset_id, d.uri,
           coalesce(c.score, (1 - c.distance / 256.0)::real), d.caption, d.labels, d.emotions,
           d.people_names, c.matched_by, c.distance, c.semantic_rank, c.content_rank,
           c.image_score, c.text_score, d.taken_at, c.rank, a.media_type, c.best_at
    FROM chosen c JOIN search_documents d ON d.asset_id = c.asset_id
    JOIN assets a ON a.id = c.asset_id
    ORDER BY c.rank;
END
$$;
COMMENT ON FUNCTION semsql.fuse_similar(semsql.search_result[], bigint[], integer[], integer, text, real) IS
    'Fuses a semantic list (semsql.search rows, best first) and a content list (asset ids and '
    'Hamming distances, nearest first) into k rows: both_first gives the hits of both lists the '
    'first slots (by the sum of their two ranks), and the slots left are shared out by split '
    '(the share for semantic hits, rounded half up); semantic_first and content_first share all '
    'k slots by split, the preferred list choosing first and listed first; a list too short for '
    'its share leaves its slots to the other. Ties: the semantic rank, then the asset id.';

CREATE OR REPLACE FUNCTION semsql.content_hits(
    p_hashes bit(256)[], p_k integer, p_max_distance integer, p_leave_out bigint,
    OUT ids bigint[], OUT distances integer[]
)
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT coalesce(array_agg(n.asset_id ORDER BY n.distance, n.asset_id), '{}'),
           coalesce(array_agg(n.distance ORDER BY n.distance, n.asset_id), '{}')
    FROM (SELECT c.asset_id, c.distance
          FROM content_neighbours(p_hashes, least(1000, p_k + 1), p_max_distance) AS c
          WHERE c.asset_id IS DISTINCT FROM p_leave_out
          ORDER BY c.distance, c.asset_id
          LIMIT p_k) AS n;
$$;
COMMENT ON FUNCTION semsql.content_hits(bit[], integer, integer, bigint) IS
    'The content list that semsql.fuse_similar takes: the k assets nearest to p_hashes '
    '(semsql.content_neighbours), p_leave_out left out, as asset ids and distances, nearest '
    'first.';

CREATE OR REPLACE FUNCTION semsql.similar_to(
    content_hashes bit(256)[] DEFAULT NULL, image_embedding vector DEFAULT NULL,
    k integer DEFAULT 20, by text DEFAULT 'both', priority text DEFAULT 'both_first',
    split real DEFAULT 0.5, max_distance integer DEFAULT 64, leave_out bigint DEFAULT NULL
) RETURNS SETOF semsql.similar_result
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    use_semantic boolean;
    use_content boolean;
    semantic_hits search_result[] := '{}';
    content_ids bigint[] := '{}';
    content_distances integer[] := '{}';
BEGIN
    PERFORM check_similar_arguments(k, similar_to.by, priority, split, max_distance);
    use_semantic := similar_to.by IN ('semantic', 'both');
    use_content := similar_to.by IN ('content', 'both');
    IF similar_to.by = 'semantic' AND image_embedding IS NULL THEN
        RAISE EXCEPTION 'by => semantic needs an image_embedding'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF similar_to.by = 'content' AND coalesce(cardinality(content_hashes), 0) = 0 THEN
        RAISE EXCEPTION 'by => content needs content_hashes'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'semsql.content_hash.query_hashes(image) makes them, with no model';
    ELSIF similar_to.by = 'both' AND image_embedding IS NULL
          AND coalesce(cardinality(content_hashes), 0) = 0 THEN
        RAISE EXCEPTION 'by => both needs content_hashes, an image_embedding or both'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF similar_to.by = 'both' AND image_embedding IS NULL THEN
        RAISE NOTICE 'no CLIP image vector of the query: similar by content alone';
        use_semantic := false;
    ELSIF similar_to.by = 'both' AND coalesce(cardinality(content_hashes), 0) = 0 THEN
        RAISE NOTICE 'no content hash of the query: similar by meaning alone';
        use_content := false;
    END IF;
    IF use_semantic THEN
        semantic_hits := ARRAY(
            SELECT s FROM search(image_embedding => similar_to.image_embedding, k => k) AS s
            WHERE s.asset_id IS DISTINCT FROM leave_out ORDER BY s.rank);
    END IF;
    IF use_content THEN
        SELECT h.ids, h.distances INTO content_ids, content_distances
        FROM content_hits(content_hashes, k, max_distance, leave_out) AS h;
    END IF;
    -- One index alone: its list in its own order (all k slots are its own).
    RETURN QUERY SELECT * FROM fuse_similar(
        semantic_hits, content_ids, content_distances, k,
        CASE WHEN NOT use_content THEN 'semantic_first'
             WHEN NOT use_semantic THEN 'content_first' ELSE priority END,
        CASE WHEN NOT use_content THEN 1 WHEN NOT use_semantic THEN 0 ELSE split END);
END
$$;
COMMENT ON FUNCTION semsql.similar_to(bit[], vector, integer, text, text, real, integer, bigint) IS
    'The k assets most like an image that need not be stored: by its content hashes (semsql.'
    'content_hash.query_hashes, no model; rotations and mirrors included, within max_distance '
    'bits), by its CLIP image_embedding (semsql.search), or both fused by priority and split '
    '(semsql.fuse_similar); by => both with only one of them uses that one, with a NOTICE. '
    'leave_out: an asset never listed (the query''s own). Rows say which index found each.';

CREATE OR REPLACE FUNCTION semsql.similar(
    asset_id bigint, k integer DEFAULT 20, by text DEFAULT 'semantic',
    priority text DEFAULT 'both_first', split real DEFAULT 0.5, max_distance integer DEFAULT 64
) RETURNS SETOF semsql.similar_result
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    seed bigint := $1;
    index_by text := $3;  -- "similar" is a keyword: similar.by cannot name the parameter
    use_semantic boolean := $3 IS DISTINCT FROM 'content';
    use_content boolean := $3 IS DISTINCT FROM 'semantic';
    hashes bit(256)[];
    has_image_vector boolean;
    semantic_hits search_result[] := '{}';
    content_ids bigint[] := '{}';
    content_distances integer[] := '{}';
BEGIN
    -- semsql.search without like_asset would list the newest assets instead.
    IF seed IS NULL THEN
        RAISE EXCEPTION 'asset_id must be the id of an asset, not NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM check_similar_arguments(k, index_by, priority, split, max_distance);
    -- by => semantic: as before there was a content index, semsql.search's rows, in its order
    -- and with its errors.
    IF use_content THEN
        IF NOT EXISTS (SELECT 1 FROM assets a WHERE a.id = seed) THEN
            RAISE EXCEPTION 'no asset has id %', seed USING ERRCODE = 'no_data_found';
        END IF;
        hashes := ARRAY(SELECT h.hash FROM content_hashes h
                        WHERE h.asset_id = seed AND NOT h.alternate ORDER BY h.view);
        has_image_vector := EXISTS (SELECT 1 FROM embeddings e
                                    WHERE e.asset_id = seed AND e.space = 'image');
        IF cardinality(hashes) = 0 AND (index_by = 'content' OR NOT has_image_vector) THEN
            RAISE EXCEPTION 'asset % has no content hash yet', seed
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = '`semsql worker` hashes it (the content stage needs no model); '
                             'semsql.tasks shows its progress';
        ELSIF index_by = 'both' AND NOT has_image_vector THEN
            RAISE NOTICE 'asset % has no CLIP image vector (%): similar by content alone', seed,
                CASE WHEN EXISTS (SELECT 1 FROM embeddings e WHERE e.space = 'image')
                     THEN 'not embedded yet'
                     ELSE 'the image space is empty: CLIP is off or absent' END
                USING HINT = 'pass by => ''content'' to ask for the content index alone';
            use_semantic := false;
        ELSIF index_by = 'both' AND cardinality(hashes) = 0 THEN
            RAISE NOTICE 'asset % has no content hash yet: similar by meaning alone', seed
                USING HINT = '`semsql worker` hashes it (the content stage needs no model)';
            use_content := false;
        END IF;
    END IF;
    IF use_semantic THEN
        semantic_hits := ARRAY(SELECT s FROM search(like_asset => seed, k => k) AS s
                               ORDER BY s.rank);
    END IF;
    IF use_content THEN
        SELECT h.ids, h.distances INTO content_ids, content_distances
        FROM content_hits(hashes, k, max_distance, seed) AS h;
    END IF;
    -- One index alone: its list in its own order (all k slots are its own).
    RETURN QUERY SELECT * FROM fuse_similar(
        semantic_hits, content_ids, content_distances, k,
        CASE WHEN NOT use_content THEN 'semantic_first'
             WHEN NOT use_semantic THEN 'content_first' ELSE priority END,
        CASE WHEN NOT use_content THEN 1 WHEN NOT use_semantic THEN 0 ELSE split END);
END
$$;
COMMENT ON FUNCTION semsql.similar(bigint, integer, text, text, real, integer) IS
    'The k assets most like this one, itself left out: by => semantic (the default: its CLIP '
    'image vector and document vector, semsql.search), content (its perceptual hashes, rotations '
    'and mirrors included, within max_distance bits; no model) or both, fused by priority '
    '(both_first, semantic_first, content_first) and split (the share of the k slots for '
    'semantic hits; semsql.fuse_similar says the order). With both and no CLIP image vector of '
    'the asset, the content index alone, with a NOTICE. Each row says which index found it.';
