-- Assets like an asset: similar, near duplicates and exact duplicates.

-- More like this: semsql.similar is in 047_similar_by.sql.

-- Until `by` was added, duplicates had no `by` and max_distance defaulted to 0.05: a second
-- overload would make every call without `by` ambiguous.
DROP FUNCTION IF EXISTS semsql.duplicates(real, text, text, integer);

CREATE OR REPLACE FUNCTION semsql.video_duplicate_links_sql(p_dims integer) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The links of semsql.duplicates between videos, as (a, b) numbers of $3 (the assets
    -- considered), from their frames: each frame's neighbours ($2) among other videos' frames
    -- within $1. Video a links to b when at least 80 % of a's frames, and at least 2, have a
    -- frame of b that near: a re-encoded copy matches frame for frame, a trimmed copy is all
    -- inside its original (the one direction is enough), and two videos that share a title
    -- card or an opening share too few frames. Black and flat frames are never sampled, so a
    -- black opening links nothing. Never one averaged vector per video: its opening or its
    -- longest shot would decide.
    SELECT format($sql$
        SELECT c.a, c.b
        FROM (SELECT ma.i::integer AS a, mb.i::integer AS b, count(DISTINCT f.frame_id) AS matched,
                     (SELECT count(*) FROM semsql.frame_vectors n WHERE n.asset_id = f.asset_id)
                         AS frames
              FROM unnest($3::bigint[]) WITH ORDINALITY AS ma (asset_id, i)
              JOIN semsql.frame_vectors f ON f.asset_id = ma.asset_id
              CROSS JOIN LATERAL (
                  SELECT g.asset_id, g.embedding::halfvec(%1$s) <=> f.embedding::halfvec(%1$s)
                             AS distance
                  FROM semsql.frame_vectors g
                  WHERE g.asset_id <> f.asset_id
                  ORDER BY g.embedding::halfvec(%1$s) <=> f.embedding::halfvec(%1$s)
                  LIMIT $2) AS n
              JOIN unnest($3::bigint[]) WITH ORDINALITY AS mb (asset_id, i)
                ON mb.asset_id = n.asset_id
              WHERE n.distance <= $1
              GROUP BY ma.i, mb.i, f.asset_id) AS c
        WHERE c.matched >= 2 AND c.matched >= 0.8 * c.frames
    $sql$, p_dims);
$$;
COMMENT ON FUNCTION semsql.video_duplicate_links_sql(integer) IS
    'The statement of semsql.duplicates'' links between videos, compared by their frames'' '
    'image-space vectors: a links to b when 80 % of a''s frames (and 2 at least) have a frame '
    'of b within max_distance.';

CREATE OR REPLACE FUNCTION semsql.duplicates(
    max_distance real DEFAULT NULL, collection text DEFAULT NULL, space text DEFAULT 'image',
    neighbours integer DEFAULT 10, by text DEFAULT 'semantic'
) RETURNS TABLE (group_id bigint, asset_id bigint, uri text, kind text, distance real)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.ef_search = 40
AS $$
#variable_conflict use_column
DECLARE
    dims integer;
    ids bigint[];      -- the assets considered, by id: asset number i is ids[i]
    parent integer[];  -- a union-find forest over 1 .. n, each tree named by its least number
    link record;
    links text;        -- the query of the links: (a, b) asset numbers within max_distance
    members text;      -- the query of the result rows, from the forest
    x integer;
    y integer;
BEGIN
    IF duplicates.by IS NULL OR duplicates.by NOT IN ('semantic', 'content') THEN
        RAISE EXCEPTION 'by takes semantic or content, not %', duplicates.by
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF neighbours IS NULL OR neighbours NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'neighbours must be between 1 and 1000, not %', neighbours
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF duplicates.by = 'content' THEN
        -- Hamming distances are whole bits, from 0 to the hash's length.
        max_distance := coalesce(max_distance, default_content_distance());
        PERFORM check_real('max_distance', max_distance, 0, content_hash_bits(), true);
        SELECT coalesce(array_agg(a.id ORDER BY a.id), '{}') INTO ids
        FROM assets a
        WHERE (duplicates.collection IS NULL OR a.collection = duplicates.collection)
          AND EXISTS (SELECT 1 FROM content_hashes h
                      WHERE h.asset_id = a.id AND h.view = 'full'
                        -- A blank hash (all 0: a flat image, of any colour) says nothing
                        -- about the picture; a white page is no copy of a black one.
                        AND position(B'1' IN h.hash) > 0);
        -- Each asset's whole view (its first canonical row) against every row of the others:
        -- one HNSW scan per asset, streamed into the union-find. Rows are stored in their
        -- canonical orientation, so a rotated or mirrored copy matches its original unturned; a
        -- copy cropped by 10 % per side matches the original's centre view from its own side,
        -- which is enough for the components. Up to neighbours rows of other assets per scan
        -- (the asset's own rows, up to 6, come first).
        PERFORM set_config('hnsw.ef_search', least(greatest(40, neighbours + 6), 1000)::text, true);
        links := $sql$
            SELECT w.i AS a, nm.i AS b
            FROM (SELECT m.i::integer AS i, h.asset_id, h.hash
                  FROM unnest($3::bigint[]) WITH ORDINALITY AS m (asset_id, i)
                  JOIN semsql.content_hashes h
                    ON h.asset_id = m.asset_id AND h.view = 'full' AND NOT h.alternate
                  OFFSET 0) AS w
            CROSS JOIN LATERAL (
                SELECT c.asset_id, c.hash <~> w.hash AS distance
                FROM semsql.content_hashes c
                WHERE position(B'1' IN c.hash) > 0  -- nor the blank centre of a framed one
                ORDER BY c.hash <~> w.hash
                LIMIT least($2 + 6, 1000)) AS n
            JOIN (SELECT m.asset_id, m.i::integer AS i
                  FROM unnest($3::bigint[]) WITH ORDINALITY AS m (asset_id, i)
                  OFFSET 0) AS nm ON nm.asset_id = n.asset_id
            WHERE n.distance <= $1 AND n.asset_id <> w.asset_id
        $sql$;
        -- Distance to the group's first asset: either's whole view to the nearest row of the
        -- other.
        members := $sql$
            SELECT g.group_id, g.asset_id, a.uri,
                   CASE WHEN a.sha256 = ga.sha256 THEN 'exact' ELSE 'near' END,
                   (SELECT min(x.hash <~> y.hash)
                    FROM semsql.content_hashes x
                    JOIN semsql.content_hashes y
                      ON y.asset_id = CASE WHEN x.asset_id = g.asset_id THEN g.group_id
                                           ELSE g.asset_id END
                    WHERE x.asset_id IN (g.asset_id, g.group_id) AND x.view = 'full'
                      AND NOT x.alternate)::real
            FROM forest g
            JOIN semsql.assets a ON a.id = g.asset_id
            JOIN semsql.assets ga ON ga.id = g.group_id
            WHERE g.size > 1
            ORDER BY g.group_id, 5, g.asset_id
        $sql$;
    ELSE
        -- Cosine distances lie between 0 and 2; NaN would link nothing and Infinity everything.
        max_distance := coalesce(max_distance, 0.05);
        PERFORM check_real('max_distance', max_distance, 0, 2, true);
        IF duplicates.space IS NULL OR duplicates.space NOT IN ('image', 'text') THEN
            RAISE EXCEPTION 'space takes image or text, not %', duplicates.space
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        dims := (SELECT vs.dims FROM vector_spaces vs WHERE vs.space = duplicates.space);
        IF dims IS NULL THEN
            RAISE EXCEPTION 'no vectors in the % space yet', duplicates.space
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'by => ''content'' needs no model';
        END IF;
        -- An HNSW scan returns at most ef_search rows: as many as the neighbours asked for
        -- (restored when the function returns, by its SET clause).
        PERFORM set_config('hnsw.ef_search', greatest(40, neighbours)::text, true);
        EXECUTE format($sql$
            SELECT coalesce(array_agg(x.asset_id ORDER BY x.asset_id), '{}')
            FROM (SELECT e.asset_id FROM semsql.embeddings e WHERE e.space = %1$L
                  UNION ALL
                  SELECT DISTINCT f.asset_id FROM semsql.frame_vectors f WHERE %1$L = 'image')
                 AS x
            JOIN semsql.assets a ON a.id = x.asset_id
            WHERE $1 IS NULL OR a.collection = $1
        $sql$, duplicates.space)
        INTO ids USING duplicates.collection;
        -- A video's frames are scanned with the filter "another video's": until enough pass.
        PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
        links := format($sql$
            SELECT l.a, nm.i AS b
            FROM (SELECT m.i::integer AS a, n.asset_id
                  FROM unnest($3::bigint[]) WITH ORDINALITY AS m (asset_id, i)
                  JOIN semsql.embeddings me ON me.asset_id = m.asset_id AND me.space = %2$L
                  CROSS JOIN LATERAL (
                      SELECT e.asset_id, e.embedding::halfvec(%1$s) <=> me.embedding::halfvec(%1$s)
                                 AS distance
                      FROM semsql.embeddings e
                      WHERE e.space = %2$L AND e.asset_id <> m.asset_id
                      ORDER BY e.embedding::halfvec(%1$s) <=> me.embedding::halfvec(%1$s)
                      LIMIT $2) AS n
                  WHERE n.distance <= $1
                  OFFSET 0) AS l
            -- Each link's far end to its number, through a hash of the assets built once (its
            -- key a column of embeddings, whose statistics show it unique), the links streaming
            -- past.
            JOIN (SELECT ne.asset_id, m.i::integer AS i
                  FROM unnest($3::bigint[]) WITH ORDINALITY AS m (asset_id, i)
                  JOIN semsql.embeddings ne ON ne.asset_id = m.asset_id AND ne.space = %2$L
                  OFFSET 0) AS nm ON nm.asset_id = l.asset_id
        $sql$, dims, duplicates.space);
        IF duplicates.space = 'image' THEN
            links := links || ' UNION ALL ' || video_duplicate_links_sql(dims);
        END IF;
        members := format($sql$
            SELECT g.group_id, g.asset_id, a.uri,
                   CASE WHEN a.sha256 = ga.sha256 THEN 'exact' ELSE 'near' END,
                   coalesce(e.embedding::halfvec(%1$s) <=> ge.embedding::halfvec(%1$s),
                            -- videos: their nearest two frames
                            (SELECT min(x.embedding::halfvec(%1$s) <=> y.embedding::halfvec(%1$s))
                             FROM semsql.frame_vectors x, semsql.frame_vectors y
                             WHERE x.asset_id = g.asset_id AND y.asset_id = g.group_id))::real
            FROM forest g
            JOIN semsql.assets a ON a.id = g.asset_id
            JOIN semsql.assets ga ON ga.id = g.group_id
            LEFT JOIN semsql.embeddings e ON e.asset_id = g.asset_id AND e.space = %2$L
            LEFT JOIN semsql.embeddings ge ON ge.asset_id = g.group_id AND ge.space = %2$L
            WHERE g.size > 1
            ORDER BY g.group_id, 5, g.asset_id
        $sql$, dims, duplicates.space);
    END IF;
    -- Each asset links to its nearest neighbours within max_distance (HNSW); a group is a
    -- connected component of those links, named by its smallest asset id. The components come
    -- from a union-find over the links as they stream past (path halving; the larger root
    -- joins the smaller), so time grows with the links (assets x neighbours) and memory with
    -- the assets (12 bytes each), whatever the size or shape of a component. (A transitive
    -- closure holds n^2 pairs for a component of n; label propagation takes as many rounds
    -- as a component's diameter, n / neighbours for a chain of gradual changes.)
    parent := array(SELECT generate_series(1, cardinality(ids)));
    FOR link IN EXECUTE links USING max_distance, neighbours, ids
    LOOP
        x := link.a;
        WHILE parent[x] <> x LOOP
            parent[x] := parent[parent[x]];
            x := parent[x];
        END LOOP;
        y := link.b;
        WHILE parent[y] <> y LOOP
            parent[y] := parent[parent[y]];
            y := parent[y];
        END LOOP;
        IF x < y THEN
            parent[y] := x;
        ELSIF y < x THEN
            parent[x] := y;
        END IF;
    END LOOP;
    -- A parent is always a smaller number, so one pass upwards points each asset at its root.
    FOR i IN 1 .. cardinality(ids) LOOP
        parent[i] := parent[parent[i]];
    END LOOP;
    RETURN QUERY EXECUTE
        $sql$
        WITH forest AS (
            SELECT f.asset_id, ($1::bigint[])[f.root] AS group_id,
                   count(*) OVER (PARTITION BY f.root) AS size
            FROM unnest($1::bigint[], $2::integer[]) AS f (asset_id, root))
        $sql$ || members
    USING ids, parent;
END
$$;
COMMENT ON FUNCTION semsql.duplicates(real, text, text, integer, text) IS
    'Groups of duplicate assets: each asset linked to those of its neighbours (1 to 1000 nearest) '
    'within max_distance; a group is a connected component of those links, named by its '
    'smallest asset id; distance is to the group''s first asset, kind exact when the files are '
    'identical. by => semantic (the default): vectors of space (CLIP image by default), cosine '
    '0 to 2, default 0.05; in the image space videos too, by their frames '
    '(semsql.video_duplicate_links_sql). by => content: the perceptual hashes of the content stage, no model '
    'needed, Hamming bits (0 to 256), default semsql.default_content_distance(); each asset''s '
    'whole view, in its canonical orientation, is compared with every view of the others, so '
    'resized, re-encoded, turned, mirrored and 10 % border-cropped copies group. Time grows '
    'with assets x neighbours (one HNSW scan per asset), memory with '
    'the assets, not with the size of a group.';

CREATE OR REPLACE FUNCTION semsql.exact_duplicates(collection text DEFAULT NULL)
RETURNS TABLE (sha256 text, asset_id bigint, uri text, collection text, stored boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- Identical files: assets of different collections with one hash, and the files that
    -- ingest skipped as the same content as a stored asset (stored = false: uri is that file).
    WITH copies AS (
        SELECT a.sha256, a.id AS asset_id, a.uri, a.collection, true AS stored
        FROM assets a
        UNION
        SELECT a.sha256, a.id, ji.uri, a.collection, false
        FROM job_items ji JOIN assets a ON a.id = ji.asset_id
        WHERE ji.outcome = 'skipped' AND ji.uri <> a.uri AND ji.error LIKE 'same content as asset %')
    SELECT c.sha256, c.asset_id, c.uri, c.collection, c.stored
    FROM copies c
    WHERE (exact_duplicates.collection IS NULL OR c.collection = exact_duplicates.collection)
      AND c.sha256 IN (SELECT c2.sha256 FROM copies c2
                       WHERE exact_duplicates.collection IS NULL
                          OR c2.collection = exact_duplicates.collection
                       GROUP BY c2.sha256 HAVING count(*) > 1)
    ORDER BY c.sha256, NOT c.stored, c.asset_id, c.uri;
$$;
COMMENT ON FUNCTION semsql.exact_duplicates(text) IS
    'Identical files by SHA-256: stored assets sharing a hash across collections, and files ingest skipped as copies of an asset.';
