-- Moments: the video frames most like a query, for a user who wants every scene, not one row
-- per video (semsql.search gives that, with each video's best_at).

CREATE OR REPLACE FUNCTION semsql.search_moments(
    query text DEFAULT NULL,
    image_embedding vector DEFAULT NULL,
    k integer DEFAULT 20,
    collection text DEFAULT NULL,
    min_similarity real DEFAULT NULL
) RETURNS TABLE (asset_id bigint, uri text, frame_id bigint, at interval, similarity real,
                 caption text, rank integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.ef_search = 100
SET hnsw.iterative_scan = relaxed_order
SET hnsw.max_scan_tuples = 20000
AS $$
#variable_conflict use_variable
DECLARE
    dims integer := (SELECT vs.dims FROM vector_spaces vs WHERE vs.space = 'image');
    query_vector vector;
    scan text;
    ids bigint[];
    distances double precision[];
BEGIN
    PERFORM check_query_text('image', query);
    PERFORM check_query_vector('image_embedding', image_embedding);
    PERFORM check_real('min_similarity', min_similarity, -1, 1);
    IF num_nonnulls(nullif(btrim(query), ''), image_embedding) <> 1 THEN
        RAISE EXCEPTION 'pass query or image_embedding (one of them)'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF k IS NULL OR k NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'k must be between 1 and 10000, not %', k
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF dims IS NULL THEN
        RAISE EXCEPTION 'no vectors in the image space yet'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'a `semsql worker` with the clip stage fills it';
    END IF;
    -- A query text is turned into an image-space (CLIP) vector by a running worker.
    query_vector := l2_normalize(coalesce(image_embedding, embed_text(query, 'image')));
    IF vector_dims(query_vector) <> dims THEN
        RAISE EXCEPTION 'the query vector has % dimensions, the image space %',
            vector_dims(query_vector), dims USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The frames' HNSW index, under the filters; an exact scan when it gave fewer than k and
    -- more pass them (never short): "+ 0" orders by a distance that is not the index's.
    FOREACH scan IN ARRAY ARRAY['', ' + 0'] LOOP
        EXECUTE format(
            'SELECT coalesce(array_agg(n.frame_id ORDER BY n.distance, n.frame_id), ''{}''), '
            'coalesce(array_agg(n.distance ORDER BY n.distance, n.frame_id), ''{}'') FROM ('
            'SELECT f.frame_id, f.embedding::halfvec(%1$s) <=> $1::halfvec(%1$s) AS distance '
            'FROM semsql.frame_vectors f WHERE ($2::text IS NULL OR f.collection = $2) '
            'ORDER BY (f.embedding::halfvec(%1$s) <=> $1::halfvec(%1$s))%2$s LIMIT $3) AS n',
            dims, scan)
            INTO ids, distances
            USING query_vector, collection, k;
        EXIT WHEN cardinality(ids) >= k;
    END LOOP;
    RETURN QUERY
    SELECT fr.asset_id, a.uri, fr.id, make_interval(secs => fr.at_ms / 1000.0),
           (1 - h.distance)::real, fr.caption, h.n::integer
    FROM unnest(ids, distances) WITH ORDINALITY AS h(frame_id, distance, n)
    JOIN frames fr ON fr.id = h.frame_id
    JOIN assets a ON a.id = fr.asset_id
    WHERE min_similarity IS NULL OR (1 - h.distance)::real >= min_similarity
    ORDER BY h.n;
END
$$;
COMMENT ON FUNCTION semsql.search_moments(text, vector, integer, text, real) IS
    'The k video frames most like a query text (its CLIP vector, from a running worker) or an '
    'image_embedding, best first, several per video where several match: each with its video, '
    'its time (at), similarity and caption; optionally of one collection and at least '
    'min_similarity similar. Through the frames'' HNSW index, exactly when that gives fewer '
    'than k (never short).';

CREATE OR REPLACE FUNCTION semsql.moment_frame(p_asset_id bigint, p_at_ms integer)
RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT f.id FROM frames f WHERE f.asset_id = p_asset_id
    ORDER BY abs(f.at_ms - coalesce(p_at_ms, 0)), f.at_ms LIMIT 1;
$$;
COMMENT ON FUNCTION semsql.moment_frame(bigint, integer) IS
    'The frame a video is shown by at a moment (ms; NULL: its start): the nearest sampled one, '
    'the earlier of two as near. NULL for an image or a video with no frames yet.';
