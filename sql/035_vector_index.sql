-- Each vector space's HNSW index: its definition, and the bulk path for a large backlog.
--
-- Adding one vector to an HNSW index costs 1.5 to 2 ms of CPU (the graph search and neighbour
-- updates, measured at 384 dimensions on two cores), writing it to the table about 40 µs, and
-- building the whole index at once 0.2 to 0.3 ms per vector. So for a backlog that is large beside what its
-- space already holds, the worker
--   1. calls defer_vector_index before it drains the queue: the index is dropped, and
--      vector_spaces.index_deferred_since set (searches scan the space exactly meanwhile);
--   2. writes the backlog to the bare table;
--   3. once its stage has no due task, runs vector_index_build_steps on a connection of its own
--      (CREATE INDEX CONCURRENTLY: writes and searches go on), then finish_vector_index.
-- The build's connection records itself in vector_spaces.index_build_backend: while that
-- backend is alive, no other build starts and defer_vector_index drops nothing. (A session
-- advisory lock would do the same, but any role can take one, and so stall the build.)

CREATE OR REPLACE FUNCTION semsql.vector_space_stage(p_space text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.name FROM semsql.stages s WHERE s.vector_space = p_space;
$$;
COMMENT ON FUNCTION semsql.vector_space_stage(text) IS
    'The stage that writes a vector space''s vectors (semsql.stages.vector_space); NULL for another.';

CREATE OR REPLACE FUNCTION semsql.vector_index_name(p_space text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT format('embeddings_%s_hnsw', p_space);
$$;
COMMENT ON FUNCTION semsql.vector_index_name(text) IS
    'The name of the HNSW index of a vector space (image or text) in schema semsql.';

CREATE OR REPLACE FUNCTION semsql.vector_index_valid(p_space text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT i.indisvalid FROM pg_index i
    WHERE i.indexrelid = to_regclass(format('semsql.%I', vector_index_name(p_space)));
$$;
COMMENT ON FUNCTION semsql.vector_index_valid(text) IS
    'Whether a vector space''s HNSW index is valid: false while it is being built concurrently '
    'or after such a build failed, NULL when there is none.';

CREATE OR REPLACE FUNCTION semsql.hnsw_build_options(p_vectors bigint) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- pgvector's defaults (m 16, ef_construction 64) find 99 % of the 20 nearest at ef_search
    -- 250 among 100,000 vectors, but among 1,000,000 at most 93 % at 300 and 97 % at 1000;
    -- m 24 and ef_construction 128 find 99.9 % at 400, for a build 2.5 times as long
    -- (bench/search.py, 384-d, 2 cores: 1,300 s against 511 s; the index 4 % larger).
    SELECT CASE WHEN p_vectors >= 500000 THEN ' WITH (m = 24, ef_construction = 128)' ELSE '' END;
$$;
COMMENT ON FUNCTION semsql.hnsw_build_options(bigint) IS
    'The WITH clause of a vector space''s HNSW index built over p_vectors vectors: pgvector''s '
    'defaults below 500,000, a denser graph (m 24, ef_construction 128) from there on.';

CREATE OR REPLACE FUNCTION semsql.vector_index_sql(
    p_space text, p_dims integer, p_concurrently boolean DEFAULT false
) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT format('CREATE INDEX %s %I ON semsql.embeddings USING hnsw '
                  '((embedding::halfvec(%s)) halfvec_cosine_ops)%s WHERE space = %L',
                  CASE WHEN p_concurrently THEN 'CONCURRENTLY' ELSE '' END,
                  vector_index_name(p_space), p_dims,
                  hnsw_build_options((SELECT count(*) FROM embeddings e WHERE e.space = p_space)),
                  p_space);
$$;
COMMENT ON FUNCTION semsql.vector_index_sql(text, integer, boolean) IS
    'The CREATE INDEX statement of a vector space''s HNSW index, on embedding::halfvec(dims) '
    'for the rows of that space, with the build options for as many vectors as it holds now '
    '(semsql.hnsw_build_options).';

CREATE OR REPLACE FUNCTION semsql.vector_index_building(p_space semsql.vector_spaces)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT p_space.index_build_backend IS NOT NULL
           AND backend_alive(p_space.index_build_backend, p_space.index_build_backend_start);
$$;
COMMENT ON FUNCTION semsql.vector_index_building(semsql.vector_spaces) IS
    'Whether the connection recorded as building this space''s deferred index is still alive.';

CREATE OR REPLACE FUNCTION semsql.defer_vector_index(p_space text, p_min_backlog integer)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    stage_name text := vector_space_stage(p_space);
    backlog bigint;
BEGIN
    IF p_min_backlog IS NULL OR p_min_backlog < 1 THEN
        RETURN false;
    END IF;
    SELECT count(*) INTO backlog FROM tasks t WHERE t.stage = stage_name AND t.status = 'pending';
    IF backlog < p_min_backlog THEN
        RETURN false;
    END IF;
    -- Rebuilding costs about a seventh of indexing row by row per vector: it pays once the
    -- backlog is a quarter of what is stored.
    IF (SELECT count(*) FROM (SELECT FROM embeddings e WHERE e.space = p_space
                              LIMIT 4 * backlog + 1) AS stored) > 4 * backlog THEN
        RETURN false;
    END IF;
    PERFORM FROM vector_spaces v WHERE v.space = p_space AND v.index_deferred_since IS NULL
        AND NOT vector_index_building(v)
        FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;  -- deferred already, or its build is running
    END IF;
    BEGIN
        -- A search in progress holds the table; waiting long would queue every new one.
        PERFORM set_config('lock_timeout', '2s', true);
        EXECUTE format('DROP INDEX IF EXISTS semsql.%I', vector_index_name(p_space));
    EXCEPTION WHEN lock_not_available OR insufficient_privilege THEN
        RAISE NOTICE 'the % index stays: %', p_space, SQLERRM;
        RETURN false;
    END;
    UPDATE vector_spaces SET index_deferred_since = now() WHERE space = p_space;
    RETURN true;
END
$$;
COMMENT ON FUNCTION semsql.defer_vector_index(text, integer) IS
    'Drops a vector space''s HNSW index when its stage has at least p_min_backlog tasks pending '
    'and at least a quarter as many as the space holds vectors, and marks it deferred; '
    'returns whether it did. The worker builds it again once the backlog is written.';

CREATE OR REPLACE FUNCTION semsql.vector_index_build_steps(p_space text) RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    stage_name text := vector_space_stage(p_space);
    registered vector_spaces;
    valid boolean;
    bytes bigint;
BEGIN
    SELECT * INTO registered FROM vector_spaces v WHERE v.space = p_space FOR UPDATE;
    IF registered.index_deferred_since IS NULL OR vector_index_building(registered)
       OR EXISTS (SELECT FROM tasks t WHERE t.stage = stage_name AND t.status = 'pending'
                  AND t.next_attempt_at <= now()) THEN
        RETURN '{}';
    END IF;
    valid := vector_index_valid(p_space);
    IF valid THEN
        RETURN '{}';  -- built already; finish_vector_index clears the mark
    END IF;
    UPDATE vector_spaces v
    SET index_build_backend = a.pid, index_build_backend_start = a.backend_start
    FROM pg_stat_activity a WHERE v.space = p_space AND a.pid = pg_backend_pid();
    -- pgvector builds fastest with the whole graph in memory: about 2 bytes a dimension and
    -- 1 kB of links per vector, given up to 2 GB (never less than the server's setting).
    SELECT count(*) * (2 * registered.dims + 1024) INTO bytes
    FROM embeddings e WHERE e.space = p_space;
    RETURN array_remove(ARRAY[
        CASE WHEN valid IS NOT NULL  -- left invalid by a build that was interrupted
             THEN format('DROP INDEX CONCURRENTLY IF EXISTS semsql.%I', vector_index_name(p_space))
        END,
        format('SET maintenance_work_mem = %s',
               greatest(pg_size_bytes(current_setting('maintenance_work_mem')) / 1024,
                        least(bytes / 1024, 2 * 1024 * 1024))),
        vector_index_sql(p_space, registered.dims, true)], NULL);
END
$$;
COMMENT ON FUNCTION semsql.vector_index_build_steps(text) IS
    'For a space whose index is deferred and whose stage has no due task: records the calling '
    'connection as its builder and returns the statements that build the index again '
    '(CONCURRENTLY, outside a transaction, on that connection); empty when there is nothing to '
    'do or a build runs.';

CREATE OR REPLACE FUNCTION semsql.finish_vector_index(p_space text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    UPDATE vector_spaces v
    SET index_deferred_since = NULL, index_build_backend = NULL, index_build_backend_start = NULL
    WHERE v.space = p_space AND v.index_deferred_since IS NOT NULL
      AND vector_index_valid(p_space);
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION semsql.finish_vector_index(text) IS
    'Clears a space''s deferred mark once its HNSW index exists and is valid; returns whether '
    'it did.';

CREATE OR REPLACE VIEW semsql.vector_index_status AS
SELECT v.space, v.model, v.dims,
       CASE WHEN v.index_deferred_since IS NULL AND semsql.vector_index_valid(v.space) THEN 'ready'
            WHEN v.index_deferred_since IS NULL THEN 'missing'
            WHEN semsql.vector_index_building(v) THEN 'building'
            ELSE 'deferred' END AS index,
       v.index_deferred_since AS deferred_since
FROM semsql.vector_spaces v;
COMMENT ON VIEW semsql.vector_index_status IS
    'Per vector space, its HNSW index: ready, deferred (dropped while a backlog is written; '
    'searches scan exactly), building, or missing.';

-- Video frames' vectors (semsql.frame_vectors) are in the image space too, with an HNSW index of
-- their own on the same expression. It is not deferred: a video adds at most 120 vectors.

CREATE OR REPLACE FUNCTION semsql.frame_index_sql(p_dims integer) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Built with twice pgvector's default links and effort: a search reads a video's frames
    -- many deep (semsql.frame_scan_factor), and at the default (m 16, ef_construction 64)
    -- recall@20 over 100k frames of 5k videos was 0.95, with m 32 and 128 0.977
    -- (bench/video_search.py); the build takes about 4x as long.
    SELECT format('CREATE INDEX frame_vectors_hnsw ON semsql.frame_vectors USING hnsw '
                  '((embedding::halfvec(%s)) halfvec_cosine_ops) '
                  'WITH (m = 32, ef_construction = 128)', p_dims);
$$;
COMMENT ON FUNCTION semsql.frame_index_sql(integer) IS
    'The CREATE INDEX statement of the HNSW index of video frames'' image-space vectors.';

CREATE OR REPLACE FUNCTION semsql.register_frame_vectors(
    p_model text, p_dims integer, p_reset boolean
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    other record;
    dropped bigint[];
    definition text;
BEGIN
    SELECT f.model, vector_dims(f.embedding) AS dims, count(*) AS n INTO other
    FROM frame_vectors f
    WHERE f.model <> p_model OR vector_dims(f.embedding) <> p_dims
    GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1;
    IF FOUND AND NOT p_reset THEN
        RAISE EXCEPTION 'the image space holds % video frame vectors of model % (% dimensions), not of % (% dimensions)',
            other.n, other.model, other.dims, p_model, p_dims
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('run `semsql worker --reset-space image` to delete them and embed '
                                'every asset again, or set SEMSQL_MODEL_CLIP=%s', other.model);
    ELSIF FOUND THEN
        DROP INDEX IF EXISTS semsql.frame_vectors_hnsw;
        WITH gone AS (
            DELETE FROM frame_vectors f
            WHERE f.model <> p_model OR vector_dims(f.embedding) <> p_dims
            RETURNING f.asset_id)
        SELECT array_agg(DISTINCT asset_id) INTO dropped FROM gone;
        PERFORM requeue_tasks(dropped, ARRAY[vector_space_stage('image')]);
        RETURN;  -- the index is built by the next registration, once they are gone
    END IF;
    SELECT i.indexdef INTO definition FROM pg_indexes i
    WHERE i.schemaname = 'semsql' AND i.indexname = 'frame_vectors_hnsw';
    IF definition IS NOT NULL AND position(format('halfvec(%s)', p_dims) IN definition) = 0 THEN
        DROP INDEX semsql.frame_vectors_hnsw;
        definition := NULL;
    END IF;
    IF definition IS NULL THEN
        EXECUTE frame_index_sql(p_dims);
    END IF;
END
$$;
COMMENT ON FUNCTION semsql.register_frame_vectors(text, integer, boolean) IS
    'The image space''s registration, for video frames: refuses frame vectors of another model '
    'unless p_reset deletes them (and queues their videos again), and builds the frames'' HNSW '
    'index for p_dims (register_vector_space calls it).';
