-- The content index: look-alike images by their perceptual hashes (semsql.content_hashes,
-- written by the content stage), with no model. Each view is stored in its canonical
-- orientation (semsql/content_hash.py says how), so rotated and mirrored copies are compared
-- unturned: one HNSW scan per query hash.

CREATE OR REPLACE FUNCTION semsql.content_neighbours(
    p_hashes bit(256)[], p_k integer DEFAULT 20, p_max_distance integer DEFAULT 256
) RETURNS TABLE (asset_id bigint, distance integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.ef_search = 40
SET hnsw.iterative_scan = strict_order
AS $$
#variable_conflict use_column
DECLARE
    -- Each scan reads per_scan rows, with ef_search as large: k and a margin for the rows of
    -- one asset (2 views, 1 to 8 rows each; 2.7 an asset on bench/content.py's scenes) and for
    -- HNSW's misses (at 100,000 assets, 2 scans of 21 rows found 99.3 % of the copies, of 31
    -- rows 99.9 %, in 1.9 and 2.5 ms). Short of k assets within p_max_distance while a scan
    -- was cut at per_scan rows within it, the scans are made 4 times as long, up to 16 k rows,
    -- which always holds k assets.
    per_scan integer := greatest(30, p_k + 10);
    hashes bit(256)[] := ARRAY(SELECT DISTINCT q.hash FROM unnest(p_hashes) AS q (hash));
    ids bigint[];
    distances integer[];
    cut boolean;
BEGIN
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000, not %', p_k
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_max_distance IS NULL OR p_max_distance NOT BETWEEN 0 AND 256 THEN
        RAISE EXCEPTION 'max_distance must be between 0 and 256 bits, not %', p_max_distance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        PERFORM set_config('hnsw.ef_search', least(per_scan, 1000)::text, true);
        WITH scanned AS MATERIALIZED (
            SELECT t.i, n.asset_id, n.distance
            FROM unnest(hashes) WITH ORDINALITY AS t (hash, i)
            CROSS JOIN LATERAL (
                SELECT c.asset_id, c.hash <~> t.hash AS distance
                FROM content_hashes c
                ORDER BY c.hash <~> t.hash
                LIMIT per_scan) AS n),
        nearest AS (
            SELECT s.asset_id, min(s.distance)::integer AS distance
            FROM scanned s WHERE s.distance <= p_max_distance
            GROUP BY s.asset_id
            ORDER BY 2, 1
            LIMIT p_k)
        SELECT array_agg(n.asset_id ORDER BY n.distance, n.asset_id),
               array_agg(n.distance ORDER BY n.distance, n.asset_id),
               (SELECT bool_or(scans.cut) FROM (
                    SELECT count(*) >= per_scan AND max(s.distance) <= p_max_distance AS cut
                    FROM scanned s GROUP BY s.i) AS scans)
        INTO ids, distances, cut
        FROM nearest n;
        EXIT WHEN coalesce(cardinality(ids), 0) >= p_k OR NOT coalesce(cut, false)
                  OR per_scan >= 16 * p_k;
        per_scan := least(4 * per_scan, 16 * p_k);
    END LOOP;
    RETURN QUERY SELECT * FROM unnest(ids, distances);
END
$$;
COMMENT ON FUNCTION semsql.content_neighbours(bit[], integer, integer) IS
    'The k assets whose content hashes (any view, stored in its canonical orientation, so '
    'rotated and mirrored copies included) are nearest to any of p_hashes (an asset''s rows of '
    'semsql.content_hashes that are not alternates, or semsql.content_hash.query_hashes of an '
    'image), within p_max_distance bits '
    '(Hamming, 0 to 256), nearest first: the content index''s one search, with no model. Never '
    'fewer than k while k assets lie within p_max_distance.';

-- The bulk path for a large backlog of hashes, as sql/035 has for vectors: indexing a hash
-- row by row into HNSW costs 1 to 2 ms of CPU (at pgvector's default effort it was a third of
-- the content stage's time in bench/content.py), writing it to the bare table 11 µs. Before it drains the queue, a worker that
-- runs the content stage calls defer_content_index: the index is dropped when the backlog is
-- large beside what is stored (searches scan exactly meanwhile). Once no content task is due, it
-- runs content_index_build_steps on a connection of its own. The index's absence is the mark:
-- a worker builds a missing index whoever dropped it, and a build in progress is seen in
-- pg_stat_progress_create_index.

CREATE OR REPLACE FUNCTION semsql.content_index_sql() RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- As migration 0024 made it (which says why ef_construction is 128).
    SELECT 'CREATE INDEX CONCURRENTLY IF NOT EXISTS content_hashes_hash_hnsw '
           'ON semsql.content_hashes USING hnsw (hash bit_hamming_ops) '
           'WITH (m = 16, ef_construction = 128)';
$$;
COMMENT ON FUNCTION semsql.content_index_sql() IS
    'The CREATE INDEX statement of the content index (HNSW over semsql.content_hashes.hash).';

CREATE OR REPLACE FUNCTION semsql.content_index_building() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                   WHERE p.relid = 'semsql.content_hashes'::regclass);
$$;
COMMENT ON FUNCTION semsql.content_index_building() IS
    'Whether an index of semsql.content_hashes is being built now (by any connection).';

CREATE OR REPLACE FUNCTION semsql.defer_content_index(p_min_backlog integer) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    backlog bigint;
BEGIN
    IF p_min_backlog IS NULL OR p_min_backlog < 1
       OR to_regclass('semsql.content_hashes_hash_hnsw') IS NULL OR content_index_building() THEN
        RETURN false;
    END IF;
    SELECT count(*) INTO backlog FROM tasks t WHERE t.stage = 'content' AND t.status = 'pending';
    -- Rebuilding pays once the backlog is a quarter of what is stored (as for vectors), about
    -- 10 rows an asset stored for each one pending (2.6 rows an asset).
    IF backlog < p_min_backlog OR (SELECT count(*) FROM (SELECT FROM content_hashes
                                                         LIMIT 10 * backlog + 1) AS stored)
                                  > 10 * backlog THEN
        RETURN false;
    END IF;
    BEGIN
        -- A search in progress holds the table; waiting long would queue every new one.
        PERFORM set_config('lock_timeout', '2s', true);
        DROP INDEX IF EXISTS semsql.content_hashes_hash_hnsw;
    EXCEPTION WHEN lock_not_available OR insufficient_privilege THEN
        RAISE NOTICE 'the content index stays: %', SQLERRM;
        RETURN false;
    END;
    RETURN true;
END
$$;
COMMENT ON FUNCTION semsql.defer_content_index(integer) IS
    'Drops the content index (HNSW over semsql.content_hashes) when the content stage has at '
    'least p_min_backlog tasks pending and at least a quarter as many as there are hashed '
    'assets; returns whether it did. The worker builds it again once the backlog is written '
    '(semsql.content_index_build_steps).';

CREATE OR REPLACE FUNCTION semsql.content_index_build_steps() RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    valid boolean := (SELECT i.indisvalid FROM pg_index i
                      WHERE i.indexrelid = to_regclass('semsql.content_hashes_hash_hnsw'));
BEGIN
    IF valid OR content_index_building()
       OR EXISTS (SELECT FROM tasks t WHERE t.stage = 'content' AND t.status = 'pending'
                  AND t.next_attempt_at <= now()) THEN
        RETURN '{}';
    END IF;
    -- pgvector builds fastest with the whole graph in memory: about 1 kB of links a row
    -- (as for vectors), given up to 2 GB, never less than the server's setting.
    RETURN array_remove(ARRAY[
        CASE WHEN valid IS NOT NULL  -- left invalid by a build that was interrupted
             THEN 'DROP INDEX CONCURRENTLY IF EXISTS semsql.content_hashes_hash_hnsw' END,
        format('SET maintenance_work_mem = %s',
               greatest(pg_size_bytes(current_setting('maintenance_work_mem')) / 1024,
                        least((SELECT count(*) FROM content_hashes) * 1056 / 1024,
                              2 * 1024 * 1024))),
        content_index_sql()], NULL);
END
$$;
COMMENT ON FUNCTION semsql.content_index_build_steps() IS
    'The statements that build the content index again (CONCURRENTLY, outside a transaction), '
    'when it is missing or invalid, no build runs and no content task is due; empty otherwise.';
