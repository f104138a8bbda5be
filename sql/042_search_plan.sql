-- The SQL that semsql.search runs, built from structure only, and how its candidates are
-- ranked.

-- Building the search's SQL (structure only: every value is a parameter) -------------------------
--
-- Every statement that semsql.search runs has one parameter, $1: its semsql.search_args
-- (migrations/0011_search_args.sql). The conditions read its fields by name: ($1).tags,
-- ($1).text_vector, ($1).row_limit ...

CREATE OR REPLACE FUNCTION semsql.filter_conditions(p_alias text, p_args semsql.search_args)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- Only whether each filter is given shapes the text; the values are fields of $1. p_alias
    -- is d (search_documents) or e (embeddings): both have the filter columns.
    SELECT format(nullif(array_to_string(array_remove(ARRAY[
        CASE WHEN (p_args).tags IS NOT NULL THEN
            CASE (p_args).tags_match WHEN 'all' THEN '%1$I.tags @> ($1).tags'
                                     ELSE '%1$I.tags && ($1).tags' END END,
        CASE WHEN (p_args).emotions IS NOT NULL THEN '%1$I.emotions && ($1).emotions' END,
        CASE WHEN (p_args).person_ids IS NOT NULL THEN
            CASE (p_args).people_match WHEN 'all' THEN '%1$I.people @> ($1).person_ids'
                                       ELSE '%1$I.people && ($1).person_ids' END END,
        CASE WHEN (p_args).collection IS NOT NULL THEN '%1$I.collection = ($1).collection' END,
        CASE WHEN (p_args).taken_after IS NOT NULL THEN '%1$I.taken_at >= ($1).taken_after' END,
        CASE WHEN (p_args).taken_before IS NOT NULL THEN '%1$I.taken_at < ($1).taken_before' END,
        CASE WHEN (p_args).metadata IS NOT NULL THEN
            'EXISTS (SELECT FROM semsql.assets a WHERE a.id = %1$I.asset_id '
            'AND a.metadata @> ($1).metadata)' END,
        CASE WHEN (p_args).named_ids IS NOT NULL THEN '%1$I.people @> ($1).named_ids' END,
        CASE WHEN num_nonnulls((p_args).media_type, (p_args).min_duration_ms,
                               (p_args).max_duration_ms) > 0 THEN
            'EXISTS (SELECT FROM semsql.assets a WHERE a.id = %1$I.asset_id'
            || CASE WHEN (p_args).media_type IS NOT NULL
                    THEN ' AND a.media_type = ($1).media_type' ELSE '' END
            || CASE WHEN (p_args).min_duration_ms IS NOT NULL
                    THEN ' AND a.duration_ms >= ($1).min_duration_ms' ELSE '' END
            || CASE WHEN (p_args).max_duration_ms IS NOT NULL
                    THEN ' AND a.duration_ms <= ($1).max_duration_ms' ELSE '' END
            || ')' END],
        NULL), ' AND '), ''),
        p_alias);
$$;
COMMENT ON FUNCTION semsql.filter_conditions(text, semsql.search_args) IS
    'The filters of a search, as conditions on the rows of p_alias (d: search_documents, e: '
    'embeddings) AND-ed, NULL when none; the values are fields of the parameter $1 (search_args).';

CREATE OR REPLACE FUNCTION semsql.frame_scan_factor() RETURNS integer
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- 1.5 times the mean number of frames of a video, from the statistics of
    -- semsql.frame_vectors (n_distinct of asset_id; negative: a share of the rows), 3 to 120.
    -- A video's frames are mostly near each other, so the k nearest videos need about
    -- k x (frames a video) nearest frames, and the approximate scan more than that: at 100k
    -- frames of 5k videos, 1.5 times found 97.1 % of the 20 nearest videos (p95 11.1 ms),
    -- twice 97.4 % (12.9 ms), 3 frames a video 33 % (bench/video_search.py). 3 before the first ANALYZE; a scan that falls short is redone
    -- exactly by semsql.search. PL/pgSQL, so that the session keeps the plan of this query
    -- on pg_stats (planning it costs about a millisecond).
    RETURN coalesce((
        SELECT least(120, greatest(3, ceil(1.5 * CASE WHEN s.n_distinct < 0 THEN -1 / s.n_distinct
                                                    ELSE c.reltuples / s.n_distinct END)))::integer
        FROM pg_class c
        JOIN pg_stats s ON s.schemaname = 'semsql' AND s.tablename = 'frame_vectors'
                       AND s.attname = 'asset_id' AND s.n_distinct <> 0
        WHERE c.oid = 'semsql.frame_vectors'::regclass), 3);
END
$$;
COMMENT ON FUNCTION semsql.frame_scan_factor() IS
    'How many frames per video the HNSW scan of video frames reads (times k): 1.5 times the '
    'mean frames of a video by the statistics of semsql.frame_vectors, 3 to 120.';

CREATE OR REPLACE FUNCTION semsql.nearest_sql(
    p_space text, p_dims integer, p_conditions text, p_media_type text DEFAULT NULL
) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- The ORDER BY expression and the space predicate are those of the space's HNSW index
    -- (semsql.register_vector_space). p_conditions test the filter columns of e itself, inside
    -- the index scan, so that iterative scans go on until enough rows pass them. In the image
    -- space, video frames are scanned too (their own index, the same expression): a video's
    -- nearest frame stands for it, and its frames are scanned 1.5 times as deep as k videos
    -- have frames (semsql.frame_scan_factor): a video's frames near the query are near it too.
    -- With p_media_type, the image space's vectors of the other media type are not scanned at
    -- all (the filter conditions say it too).
    WITH scan AS (
        SELECT format(
            'SELECT e.asset_id, e.embedding::halfvec(%1$s) <=> %2$s::halfvec(%1$s) AS distance '
            'FROM semsql.%5$I e '
            'WHERE %3$s e.asset_id IS DISTINCT FROM ($1).like_asset%4$s '
            'ORDER BY e.embedding::halfvec(%1$s) <=> %2$s::halfvec(%1$s) LIMIT %6$s',
            p_dims, CASE p_space WHEN 'text' THEN '($1).text_vector' ELSE '($1).image_vector' END,
            CASE WHEN t.name = 'embeddings' THEN format('e.space = %L AND', p_space) ELSE '' END,
            ' AND ' || p_conditions, t.name,
            CASE WHEN t.name = 'embeddings' THEN '($1).row_limit'
                 ELSE '(SELECT semsql.frame_scan_factor()) * ($1).row_limit' END)
            AS statement, t.name
        FROM (VALUES ('embeddings', 'image'), ('frame_vectors', 'video')) AS t(name, media_type)
        WHERE p_space <> 'image' AND t.name = 'embeddings'
           OR p_space = 'image' AND t.media_type = coalesce(p_media_type, t.media_type))
    -- A scan of semsql.embeddings alone (one vector per asset and space) needs no grouping,
    -- nor a sort (array_agg orders what a relaxed-order scan returns); frames do (several
    -- per video).
    SELECT 'SELECT coalesce(array_agg(n.asset_id ORDER BY n.distance), ''{}''), '
           'coalesce(array_agg(1 - n.distance ORDER BY n.distance), ''{}'') FROM ('
           || CASE WHEN count(*) = 1 AND bool_and(name = 'embeddings')
                   THEN min(statement) || ') AS n'
                   ELSE 'SELECT u.asset_id, min(u.distance) AS distance FROM ('
                        || string_agg('(' || statement || ')', ' UNION ALL ')
                        || ') AS u GROUP BY u.asset_id ORDER BY 2 LIMIT ($1).row_limit) AS n' END
    FROM scan;
$$;
COMMENT ON FUNCTION semsql.nearest_sql(text, integer, text, text) IS
    'The statement that returns the asset ids nearest to the query vector of a space through its HNSW index '
    '(and, in the image space, video frames through theirs: a video by its nearest frame; with '
    'p_media_type image or video, only those), under filter conditions on e '
    '(semsql.filter_conditions), and their similarities.';

CREATE OR REPLACE FUNCTION semsql.effective_floor(p_floor real, p_ratio real, p_best double precision)
RETURNS real
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- Below the floor the best is no match, and nothing nearer it is either.
    SELECT CASE WHEN p_ratio IS NOT NULL AND p_best >= p_floor
                THEN least(p_floor, (p_ratio * p_best)::real)
                ELSE p_floor END
$$;
COMMENT ON FUNCTION semsql.effective_floor(real, real, double precision) IS
    'The least similarity at which a vector matches a search (search_args.text_floor or '
    'image_floor, p_floor), lowered to p_ratio times the best similarity (p_best) of the space '
    'when that best passes the floor: an asset nearly as similar as a match matches too.';

CREATE OR REPLACE FUNCTION semsql.best_moment(p_asset semsql.assets, p_image_vector halfvec)
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- Only for the rows shown: an exact scan of one video's frames (120 at most).
    SELECT make_interval(secs => fr.at_ms / 1000.0)
    FROM frame_vectors f JOIN frames fr ON fr.id = f.frame_id
    WHERE p_asset.media_type = 'video' AND p_image_vector IS NOT NULL
      AND f.asset_id = p_asset.id
    ORDER BY f.embedding <=> p_image_vector, fr.at_ms
    LIMIT 1;
$$;
COMMENT ON FUNCTION semsql.best_moment(semsql.assets, halfvec) IS
    'For a video: the time of its frame most like the image-space query vector (NULL for an '
    'image, or without an image-space vector).';

CREATE OR REPLACE FUNCTION semsql.rank_pool(
    p_args semsql.search_args, p_pool bigint[],
    p_text_hits bigint[], p_text_similarities double precision[],
    p_image_hits bigint[], p_image_similarities double precision[]
) RETURNS SETOF semsql.search_result
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
-- One plan for every pool: planning with a pool of thousands of ids as a constant costs more
-- than running it.
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- Each signal's score: cosine similarity to the query vector (text, image), the share of
    -- the query's selectivity found in the document (keyword: each lexeme weighted by its
    -- inverse document frequency; it counts in fusion from 80 %, see signals), shows a person
    -- named in the query (name boost). The fused score is their weighted mean (p_args.weights: text, image, keyword,
    -- name, exclude), less the exclude weight times the greatest similarity to the exclude text.
    -- Similarities that HNSW returned (p_*_hits) are not computed again; the other vectors are
    -- read in one index scan per space (MATERIALIZED, so that only the scores go further);
    -- documents only when a signal needs them; what is shown only for the rows returned.
    RETURN QUERY
    WITH pool AS MATERIALIZED (
        SELECT DISTINCT p.asset_id FROM unnest(p_pool) AS p(asset_id)
        WHERE p.asset_id IS DISTINCT FROM p_args.like_asset),
    text_scores AS MATERIALIZED (
        SELECT h.asset_id, h.score
        FROM unnest(p_text_hits, p_text_similarities) AS h(asset_id, score)
        UNION ALL
        SELECT e.asset_id, 1 - (e.embedding <=> p_args.text_vector)
        FROM embeddings e
        WHERE p_args.text_vector IS NOT NULL AND e.space = 'text'
          AND e.asset_id = ANY (ARRAY(SELECT unnest(p_pool) EXCEPT SELECT unnest(p_text_hits)))),
    image_scores AS MATERIALIZED (
        SELECT h.asset_id, h.score
        FROM unnest(p_image_hits, p_image_similarities) AS h(asset_id, score)
        UNION ALL
        SELECT e.asset_id, 1 - (e.embedding <=> p_args.image_vector)
        FROM embeddings e
        WHERE p_args.image_vector IS NOT NULL AND e.space = 'image'
          AND e.asset_id = ANY (ARRAY(SELECT unnest(p_pool) EXCEPT SELECT unnest(p_image_hits)))
        UNION ALL
        SELECT f.asset_id, max(1 - (f.embedding <=> p_args.image_vector))  -- a video's best frame
        FROM frame_vectors f
        WHERE p_args.image_vector IS NOT NULL
          AND f.asset_id = ANY (ARRAY(SELECT unnest(p_pool) EXCEPT SELECT unnest(p_image_hits)))
        GROUP BY f.asset_id),
    exclusion AS MATERIALIZED (
        SELECT e.asset_id,
               max(1 - (e.embedding <=> CASE e.space WHEN 'text' THEN p_args.exclude_text_vector
                                                      ELSE p_args.exclude_image_vector END))
                   AS score
        FROM embeddings e
        WHERE (p_args.exclude_text_vector IS NOT NULL OR p_args.exclude_image_vector IS NOT NULL)
          AND e.asset_id = ANY (p_pool)
          AND (e.space = 'text' AND p_args.exclude_text_vector IS NOT NULL
               OR e.space = 'image' AND p_args.exclude_image_vector IS NOT NULL)
        GROUP BY e.asset_id
        UNION ALL
        SELECT f.asset_id, max(1 - (f.embedding <=> p_args.exclude_image_vector))
        FROM frame_vectors f
        WHERE p_args.exclude_image_vector IS NOT NULL AND f.asset_id = ANY (p_pool)
        GROUP BY f.asset_id),
    library AS MATERIALIZED (
        -- How many documents there are: the planner's count, else (a library never analysed,
        -- or small) a count of up to 10,000 of them.
        SELECT greatest((SELECT c.reltuples FROM pg_class c
                         WHERE c.oid = 'semsql.search_documents'::regclass),
                        (SELECT count(*) FROM (SELECT FROM search_documents LIMIT 10000) AS x))
                   ::double precision AS documents
        WHERE p_args.keywords IS NOT NULL),
    lexeme_weights AS MATERIALIZED (
        -- How selective each query lexeme is: ln((N + 1) / df) / ln(N + 1), from 1 (in one
        -- document of N) to nearly 0 (in every one). df: a common lexeme's frequency in the
        -- column statistics (ANALYZE keeps the most common lexemes of the documents), else a
        -- count through the GIN index, capped at 10,000.
        SELECT w.lexeme, w.query,
               CASE WHEN coalesce(f.frequency, c.found) > 0
                    THEN ln((l.documents + 1)
                            / least(greatest(coalesce(f.frequency * l.documents, c.found), 1),
                                    l.documents + 1))
                         / ln(l.documents + 1)
                    -- A word no document has is the most selective of all: a document
                    -- with the query's other words still lacks it, and a paraphrase of
                    -- the whole query (the vectors) is likelier what was meant. Except a
                    -- word for the picture itself ("a photo of the harbour"): every asset
                    -- is one, and captions rarely say so.
                    WHEN w.lexeme = ANY ('{photo,photograph,pictur,imag,pic,snapshot}') THEN 0
                    ELSE 1 END AS weight
        FROM library l
        CROSS JOIN LATERAL (
            SELECT u.lexeme, ('''' || replace(replace(u.lexeme, '\', '\\'), '''', '''''')
                              || '''')::tsquery AS query
            FROM unnest(p_args.lexemes) AS u(lexeme)) AS w
        LEFT JOIN LATERAL (
            SELECT e.frequency FROM pg_stats s
            CROSS JOIN LATERAL unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs)
                AS e(lexeme, frequency)
            WHERE s.schemaname = 'semsql' AND s.tablename = 'search_documents'
              AND s.attname = 'document' AND e.lexeme = w.lexeme
            LIMIT 1) AS f ON true
        CROSS JOIN LATERAL (
            SELECT count(*) AS found
            FROM (SELECT FROM search_documents d
                  WHERE f.frequency IS NULL AND d.document @@ w.query LIMIT 10000) AS x) AS c),
    document_scores AS MATERIALIZED (
        -- keyword_coverage: the share of the query's selectivity (lexeme_weights) that the
        -- document has.
        SELECT d.asset_id,
               d.document @@ p_args.keywords AS keyword_matched,
               CASE WHEN d.document @@ p_args.keywords
                    THEN (SELECT coalesce(sum(w.weight) FILTER (WHERE d.document @@ w.query), 0)
                                 / nullif(sum(w.weight), 0)
                          FROM lexeme_weights w) END AS keyword_coverage,
               coalesce(d.people && p_args.boost_ids, false) AS shows_named,
               CASE WHEN cardinality(p_args.exclude_lexemes) > 0
                    THEN (length(d.document)
                          - length(ts_delete(d.document, p_args.exclude_lexemes)))::real
                         / cardinality(p_args.exclude_lexemes) END AS exclude_score
        FROM search_documents d
        WHERE (p_args.keywords IS NOT NULL OR p_args.boost_ids IS NOT NULL
               OR cardinality(p_args.exclude_lexemes) > 0)
          AND d.asset_id = ANY (p_pool)),
    signals AS (
        -- A keyword match adds to the fused score only where its lexemes carry most (80 %) of
        -- the query's selectivity: a name, a rare word, a file name, the query's own words. A
        -- document with only some of them (a kitten elsewhere, for "kitten in the rain") is
        -- left where the vectors put it: they already see the words it shares, and a
        -- paraphrase of the whole query, which shares none, is likelier what was meant
        -- (bench/fusion.py). It still matches (matched_by), and keywords alone rank by
        -- coverage.
        SELECT pool.asset_id, t.score::real AS text_score, i.score::real AS image_score,
               CASE WHEN p_args.keywords IS NOT NULL THEN
                   CASE WHEN ds.keyword_coverage >= 0.8 OR p_args.weights[1] + p_args.weights[2] = 0
                        THEN coalesce(ds.keyword_coverage, 0) ELSE 0 END END::real
                   AS keyword_score,
               coalesce(ds.keyword_matched, false) AS keyword_matched,
               coalesce(ds.shows_named, false) AS shows_named,
               greatest(x.score, ds.exclude_score)::real AS exclude_score
        FROM pool
        LEFT JOIN text_scores t ON t.asset_id = pool.asset_id
        LEFT JOIN image_scores i ON i.asset_id = pool.asset_id
        LEFT JOIN (SELECT x.asset_id, max(x.score) AS score FROM exclusion x GROUP BY 1) AS x
            ON x.asset_id = pool.asset_id
        LEFT JOIN document_scores ds ON ds.asset_id = pool.asset_id),
    scored AS (
        SELECT s.*,
               ((coalesce(s.text_score, 0) * p_args.weights[1]
                 + coalesce(s.image_score, 0) * p_args.weights[2]
                 + coalesce(s.keyword_score, 0) * p_args.weights[3]
                 + s.shows_named::integer * p_args.weights[4])
                / nullif(p_args.weights[1] + p_args.weights[2] + p_args.weights[3]
                         + p_args.weights[4], 0)
                - coalesce(s.exclude_score, 0) * p_args.weights[5])::real AS score
        FROM signals s),
    floors AS (
        -- A vector signal matched an asset at the least similarity of its space (p_args, near
        -- the best: effective_floor), or, with none, when the asset is among the signal's
        -- p_args.candidates best.
        SELECT coalesce(effective_floor(p_args.text_floor, p_args.floor_ratio,
                                        (SELECT max(t.score) FROM text_scores t)),
                        (SELECT min(x.score) FROM (SELECT t.score FROM text_scores t
                                                   ORDER BY t.score DESC
                                                   LIMIT p_args.candidates) AS x)) AS text_floor,
               coalesce(effective_floor(p_args.image_floor, p_args.floor_ratio,
                                        (SELECT max(i.score) FROM image_scores i)),
                        (SELECT min(x.score) FROM (SELECT i.score FROM image_scores i
                                                   ORDER BY i.score DESC
                                                   LIMIT p_args.candidates) AS x)) AS image_floor),
    matched AS (
        SELECT s.*,
               array_remove(ARRAY[
                   CASE WHEN s.image_score >= f.image_floor THEN 'image' END,
                   CASE WHEN s.text_score >= f.text_floor THEN 'text' END,
                   CASE WHEN s.keyword_matched THEN 'keyword' END,
                   CASE WHEN s.shows_named THEN 'name' END], NULL) AS matched_by
        FROM scored s CROSS JOIN floors f),
    top AS (
        -- The k + offset best (a cut keeps a prefix of them), or by date with a cut: all that
        -- pass it; of a search by query text, only those a signal matched. The best row is
        -- always among them.
        SELECT b.*, row_number() OVER (ORDER BY b.score DESC NULLS LAST, b.asset_id)::integer AS rank
        FROM (SELECT * FROM matched m
              WHERE NOT coalesce(p_args.matched_only, false) OR cardinality(m.matched_by) > 0
              ORDER BY m.score DESC NULLS LAST, m.asset_id
              LIMIT CASE WHEN p_args.order_by = 'relevance'
                               OR (p_args.min_score IS NULL AND p_args.relative_cut IS NULL)
                          THEN p_args.k + p_args."offset" END) AS b),
    best AS (SELECT max(t.score) AS best FROM top t)
    SELECT c.asset_id, d.uri, c.score, d.caption, d.labels, d.emotions, d.people_names,
           c.matched_by, c.image_score, c.text_score, c.keyword_score, c.exclude_score, d.taken_at,
           c.rank, d.media_type,
           CASE WHEN d.media_type = 'video' THEN (SELECT best_moment(a, p_args.image_vector)
                                                 FROM assets a WHERE a.id = c.asset_id) END
    FROM top c CROSS JOIN best f JOIN search_documents d ON d.asset_id = c.asset_id
    WHERE (p_args.min_score IS NULL OR c.score >= p_args.min_score)
      AND (p_args.relative_cut IS NULL OR f.best IS NULL OR f.best <= 0
           OR c.score >= p_args.relative_cut * f.best)
    ORDER BY CASE WHEN p_args.order_by = 'newest' THEN d.taken_at END DESC NULLS LAST,
             CASE WHEN p_args.order_by = 'oldest' THEN d.taken_at END ASC NULLS LAST,
             c.rank
    OFFSET p_args."offset" LIMIT p_args.k;
END
$$;
COMMENT ON FUNCTION semsql.rank_pool(semsql.search_args, bigint[], bigint[], double precision[], bigint[], double precision[]) IS
    'Scores a pool of assets exactly on every signal of a search (p_args), fuses, cuts, orders and '
    'pages them (with p_args.matched_only, only those a signal matched), given the hits and '
    'similarities that HNSW returned: the last step of semsql.search.';

CREATE OR REPLACE FUNCTION semsql.rank_hits(
    p_args semsql.search_args, p_hits bigint[], p_similarities double precision[], p_space text
) RETURNS SETOF semsql.search_result
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- One vector signal alone: its similarity is the score, and the hits come ranked (those
    -- without a vector last, with no score).
    RETURN QUERY
    SELECT h.asset_id, d.uri, h.similarity::real, d.caption, d.labels, d.emotions, d.people_names,
           CASE WHEN h.similarity IS NOT NULL THEN ARRAY[p_space] ELSE '{}' END,
           CASE WHEN p_space = 'image' THEN h.similarity::real END,
           CASE WHEN p_space = 'text' THEN h.similarity::real END,
           NULL::real, NULL::real, d.taken_at, h.n::integer,
           d.media_type,
           -- The documents have all the rest (migration 0029): the asset's row only for a video.
           CASE WHEN d.media_type = 'video' THEN (SELECT best_moment(a, p_args.image_vector)
                                                 FROM assets a WHERE a.id = h.asset_id) END
    FROM unnest(p_hits[1:p_args.k + p_args."offset"],
                p_similarities[1:p_args.k + p_args."offset"])
         WITH ORDINALITY AS h(asset_id, similarity, n)
    JOIN search_documents d ON d.asset_id = h.asset_id
    -- The cuts compare the scores as shown (real), so that a score passed back as min_score keeps its row.
    -- Of a search by query text, only the hits at least as similar as a match (p_args).
    WHERE (NOT coalesce(p_args.matched_only, false)
           OR h.similarity::real >= coalesce(
                  effective_floor(CASE p_space WHEN 'text' THEN p_args.text_floor
                                               ELSE p_args.image_floor END,
                                  p_args.floor_ratio,
                                  (SELECT max(x) FROM unnest(p_similarities) AS x)),
                  '-Infinity'))
      AND (p_args.min_score IS NULL OR h.similarity::real >= p_args.min_score)
      AND (p_args.relative_cut IS NULL OR p_similarities[1] <= 0
           OR h.similarity::real >= p_args.relative_cut * p_similarities[1]::real)
    ORDER BY CASE WHEN p_args.order_by = 'newest' THEN d.taken_at END DESC NULLS LAST,
             CASE WHEN p_args.order_by = 'oldest' THEN d.taken_at END ASC NULLS LAST,
             h.n
    OFFSET p_args."offset" LIMIT p_args.k;
END
$$;
COMMENT ON FUNCTION semsql.rank_hits(semsql.search_args, bigint[], double precision[], text) IS
    'The last step of semsql.search when one vector signal (p_space) is the only one: cuts, orders '
    'and pages its ranked hits by the cuts, order and page of p_args (with p_args.matched_only, '
    'only those that match: effective_floor of p_args.text_floor or image_floor).';

CREATE OR REPLACE FUNCTION semsql.exact_nearest_sql(
    p_space text, p_conditions text, p_media_type text DEFAULT NULL
) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- p_conditions: the filters on e (semsql.filter_conditions), or NULL for every vector of
    -- the space. The values are fields of $1 (semsql.search_args). Video frames are vectors of
    -- the image space: a video's most similar frame stands for it; with p_media_type, only
    -- the vectors of that type are read. semsql.embeddings alone has one vector per asset and
    -- space: its rows are ranked as they are read, with no grouping (grouping 10,000 filtered
    -- rows by asset took a quarter more CPU time than ranking them).
    WITH source AS (
        SELECT format('SELECT asset_id, embedding, collection, taken_at, tags, emotions, people '
                      'FROM semsql.%I%s', t.name, t.predicate) AS statement, t.name
        FROM (VALUES ('embeddings', format(' WHERE space = %L', p_space), 'image'),
                     ('frame_vectors', '', 'video')) AS t(name, predicate, media_type)
        WHERE p_space <> 'image' AND t.name = 'embeddings'
           OR p_space = 'image' AND t.media_type = coalesce(p_media_type, t.media_type)),
    shape AS (
        SELECT count(*) = 1 AND bool_and(name = 'embeddings') AS one_per_asset,
               string_agg(statement, ' UNION ALL ') AS vectors
        FROM source)
    SELECT format(
        'SELECT coalesce(array_agg(n.asset_id ORDER BY n.similarity DESC, n.asset_id), ''{}''), '
        'coalesce(array_agg(n.similarity ORDER BY n.similarity DESC, n.asset_id), ''{}'') FROM ('
        || CASE WHEN one_per_asset
                THEN 'SELECT e.asset_id, 1 - (e.embedding <=> %1$s::halfvec) '
                ELSE 'SELECT e.asset_id, max(1 - (e.embedding <=> %1$s::halfvec)) ' END
        || 'AS similarity FROM (%2$s) e WHERE e.asset_id IS DISTINCT FROM ($1).like_asset%3$s '
        || CASE WHEN one_per_asset THEN '' ELSE 'GROUP BY 1 ' END
        || 'ORDER BY 2 DESC, 1 LIMIT ($1).row_limit) AS n',
        CASE p_space WHEN 'text' THEN '($1).text_vector' ELSE '($1).image_vector' END,
        vectors, ' AND ' || p_conditions)
    FROM shape;
$$;
COMMENT ON FUNCTION semsql.exact_nearest_sql(text, text, text) IS
    'The statement that returns the asset ids nearest to the query vector of a space by an exact scan '
    'of the vectors that meet the conditions (in the image space, video frames too: a video by '
    'its most similar frame), and their similarities.';

CREATE OR REPLACE FUNCTION semsql.exact_scan_rows(p_candidates integer, p_documents double precision)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- An exact scan costs about one row fetch per filtered asset (n); an HNSW scan under the
    -- filter about one tuple visit per p_candidates * N / n for N assets, and a visit (a heap
    -- fetch for the filter, and the graph's distances) costs about 4 exact rows: they cost the
    -- same at n = sqrt(4 * p_candidates * N), 4,000 for 40 candidates among 100,000 assets,
    -- 12,649 among 1,000,000. Measured on bench/search.py's data (the server's CPU time per
    -- search, k = 20): at 100,000 assets the exact scan took about 1 us per filtered row
    -- (15 ms for 10,000), HNSW 7.5 ms at 3 % and 4.6 ms at 5 %; at 1,000,000 assets 10,000
    -- rows took 22 ms exactly and 43 ms through HNSW, 100,000 rows 186 and 17 ms.
    SELECT greatest(1000, round(sqrt(4.0 * p_candidates * greatest(coalesce(p_documents, 0), 0))))
               ::integer;
$$;
COMMENT ON FUNCTION semsql.exact_scan_rows(integer, double precision) IS
    'How many filtered assets an exact scan ranks faster than an HNSW iterative scan for '
    'p_candidates among p_documents: sqrt(4 x candidates x documents), at least 1000.';

CREATE OR REPLACE FUNCTION semsql.exact_scan_limit(p_candidates integer) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT coalesce(
        nullif(current_setting('semsql.exact_scan_limit', true), '')::integer,
        exact_scan_rows(p_candidates, (SELECT c.reltuples FROM pg_class c
                                       WHERE c.oid = 'semsql.search_documents'::regclass)));
$$;
COMMENT ON FUNCTION semsql.exact_scan_limit(integer) IS
    'Filtered sets up to this many assets are ranked by an exact scan, larger ones through HNSW '
    'iterative scans: the setting semsql.exact_scan_limit, else semsql.exact_scan_rows for the '
    'assets there are.';

-- HNSW's search width, per space and per query -------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.confident_recall(p_recalls double precision[])
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- One-sided 95 % bound of the mean: the mean less 1.645 standard errors.
    SELECT avg(r) - 1.645 * coalesce(stddev_samp(r), 0) / sqrt(nullif(count(*), 0))
    FROM unnest(p_recalls) AS r;
$$;
COMMENT ON FUNCTION semsql.confident_recall(double precision[]) IS
    'The recall that queries like these reach with 95 % confidence, from each one''s recall: '
    'their mean less 1.645 standard errors (NULL for none). semsql.calibrate_ef_search keeps '
    'the least ef_search at which it reaches the target.';

CREATE OR REPLACE FUNCTION semsql.calibrate_ef_search(
    p_space text,
    p_k integer DEFAULT 20,
    p_target real DEFAULT 0.99,
    p_sample integer DEFAULT 300,
    p_tries integer[] DEFAULT '{40,60,80,100,120,150,200,250,300,400,500,600,800,1000}',
    p_queries vector[] DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.iterative_scan = off
AS $$
DECLARE
    dims integer := (SELECT vs.dims FROM semsql.vector_spaces vs WHERE vs.space = p_space);
    vectors bigint;
    ef integer;
    recall double precision;
    recall_bound double precision;
    widths integer[] := '{}';
    recalls double precision[] := '{}';
    hnsw_sql text;
BEGIN
    IF dims IS NULL THEN
        RAISE EXCEPTION 'no vector space is named %', p_space USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'p_k must be between 1 and 1000, not %', p_k USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_target IS NULL OR NOT (p_target > 0 AND p_target <= 1) THEN
        RAISE EXCEPTION 'p_target must be in (0, 1], not %', p_target USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_sample IS NULL OR p_sample NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'p_sample must be between 1 and 10000, not %', p_sample
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF cardinality(p_tries) IS NULL OR EXISTS (SELECT FROM unnest(p_tries) AS t
                                                  WHERE t IS NULL OR t NOT BETWEEN 1 AND 1000) THEN
        RAISE EXCEPTION 'p_tries must be ef_search values between 1 and 1000'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF semsql.vector_index_valid(p_space) IS NOT TRUE THEN
        RAISE EXCEPTION 'the % space has no valid HNSW index to calibrate', p_space
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    vectors := (SELECT count(*) FROM semsql.embeddings e WHERE e.space = p_space);
    IF vectors <= p_k THEN
        RAISE EXCEPTION 'the % space has % vectors: too few to calibrate for k = %', p_space, vectors, p_k
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- The queries: p_queries when given; else the space's cached query vectors (semsql.
    -- query_embeddings, the newest; real queries), when there are 10 or more; else made from
    -- stored vectors. Not a stored vector itself: HNSW finds the neighbours of a vector of its
    -- graph far more easily than those of a new query (they are its links). A stored vector
    -- moved away from its nearest neighbour by as far again, which is harder than most
    -- queries: the width it finds errs on the side of recall.
    DROP TABLE IF EXISTS pg_temp.semsql_calibration;
    CREATE TEMP TABLE semsql_calibration (embedding halfvec, truth bigint[]) ON COMMIT DROP;
    IF p_queries IS NOT NULL THEN
        INSERT INTO pg_temp.semsql_calibration (embedding)
        SELECT l2_normalize(q)::halfvec FROM unnest(p_queries) AS q
        WHERE vector_dims(q) = dims AND vector_norm(q) > 0 LIMIT p_sample;
    ELSE
        INSERT INTO pg_temp.semsql_calibration (embedding)
        SELECT l2_normalize(qe.embedding)::halfvec FROM semsql.query_embeddings qe
        WHERE qe.space = p_space AND qe.embedding IS NOT NULL AND vector_dims(qe.embedding) = dims
          AND qe.model IS NOT DISTINCT FROM (SELECT vs.model FROM semsql.vector_spaces vs
                                             WHERE vs.space = p_space)
          AND vector_norm(qe.embedding) > 0
        ORDER BY qe.answered_at DESC NULLS LAST LIMIT p_sample;
        IF (SELECT count(*) FROM pg_temp.semsql_calibration) < 10 THEN
            TRUNCATE pg_temp.semsql_calibration;
            INSERT INTO pg_temp.semsql_calibration (embedding)
            SELECT l2_normalize(s.embedding::vector + s.embedding::vector - (
                       SELECT e.embedding::vector FROM semsql.embeddings e
                       WHERE e.space = p_space AND e.asset_id <> s.asset_id
                       ORDER BY e.embedding <=> s.embedding, e.asset_id LIMIT 1))::halfvec
            FROM (SELECT e.asset_id, e.embedding FROM semsql.embeddings e
                  WHERE e.space = p_space ORDER BY random() LIMIT p_sample) AS s;
        END IF;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_temp.semsql_calibration) THEN
        RAISE EXCEPTION 'no query vector of % dimensions to calibrate with', dims
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE pg_temp.semsql_calibration c SET truth = ARRAY(
        SELECT e.asset_id FROM semsql.embeddings e WHERE e.space = p_space
        ORDER BY e.embedding <=> c.embedding, e.asset_id LIMIT p_k);
    -- The HNSW query of semsql.search (its index's expression), at each ef_search in turn. A
    -- width passes when its recall is p_target with 95 % confidence (semsql.confident_recall):
    -- a few hard queries make a small sample's mean unreliable (on 50 queries at 100,000
    -- vectors, a width whose mean recall was 0.992 found 0.972 on 150 others).
    hnsw_sql := format(
        'SELECT avg(r), semsql.confident_recall(array_agg(r)) FROM ('
        'SELECT cardinality(ARRAY(SELECT unnest(c.truth) INTERSECT SELECT unnest(ARRAY('
        'SELECT e.asset_id FROM semsql.embeddings e '
        'WHERE e.space = %1$L '
        'ORDER BY e.embedding::halfvec(%2$s) <=> c.embedding::halfvec(%2$s) LIMIT %3$s))))::double precision '
        '/ cardinality(c.truth) AS r FROM pg_temp.semsql_calibration c) AS q',
        p_space, dims, p_k);
    FOREACH ef IN ARRAY ARRAY(SELECT DISTINCT t FROM unnest(p_tries) AS t ORDER BY t) LOOP
        PERFORM set_config('hnsw.ef_search', ef::text, true);
        EXECUTE hnsw_sql INTO recall, recall_bound;
        EXIT WHEN recall_bound >= p_target;
        widths := widths || ef;
        recalls := recalls || recall;
    END LOOP;
    IF recall_bound < p_target THEN
        -- No width reaches the target: the graph, not the width, limits recall (at a million
        -- clustered vectors, 0.9887 at 300 and 0.9892 at 1000). Keep the narrowest width that
        -- finds as much as the widest tried, within 0.001, rather than pay for nothing.
        SELECT w, r INTO ef, recall FROM unnest(widths, recalls) AS tried(w, r)
        WHERE r >= recall - 0.001 ORDER BY w LIMIT 1;
    END IF;
    INSERT INTO semsql.search_tuning AS t
        (space, ef_search, k, target_recall, measured_recall, sample, vectors, calibrated_at)
    VALUES (p_space, ef, p_k, p_target, recall, (SELECT count(*) FROM pg_temp.semsql_calibration),
            vectors, now())
    ON CONFLICT (space) DO UPDATE SET
        ef_search = excluded.ef_search, k = excluded.k, target_recall = excluded.target_recall,
        measured_recall = excluded.measured_recall, sample = excluded.sample,
        vectors = excluded.vectors, calibrated_at = excluded.calibrated_at;
    DROP TABLE pg_temp.semsql_calibration;
    RETURN ef;
END
$$;
COMMENT ON FUNCTION semsql.calibrate_ef_search(text, integer, real, integer, integer[], vector[]) IS
    'Measures the hnsw.ef_search that semsql.search needs in a space: up to p_sample queries '
    '(p_queries, else the cached query vectors of the space when 10 or more, else stored '
    'vectors moved away from their nearest neighbour), each with its p_k nearest vectors by an '
    'exact scan; the least of p_tries '
    'at which HNSW finds p_target of them with 95 % confidence (their mean recall, kept as '
    'measured_recall, less 1.645 standard errors; where none does, the least whose mean '
    'recall is within 0.001 of the largest tried''s) is kept '
    'in semsql.search_tuning and returned. Run it again after the library grows much (10x) '
    'or the space''s model changes; until then, and without it, searches use their k-based width.';

CREATE OR REPLACE FUNCTION semsql.search_ef_search(p_space text, p_rows integer, p_candidates integer)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- The calibrated width, scaled from the k it was measured at to the rows wanted; never
    -- less than the candidates the search asks for, never more than pgvector allows.
    SELECT least(1000, greatest(p_candidates, coalesce((
        SELECT ceil(t.ef_search * greatest(1.0, p_rows::numeric / t.k))::integer
        FROM semsql.search_tuning t JOIN semsql.vector_spaces vs ON vs.space = t.space
        WHERE t.space = p_space AND t.calibrated_at >= vs.updated_at), 0)));
$$;
COMMENT ON FUNCTION semsql.search_ef_search(text, integer, integer) IS
    'The hnsw.ef_search of a search in a space for p_rows rows (k + offset) and p_candidates: '
    'the calibrated one (semsql.search_tuning, unless the space changed since), times p_rows / '
    'its k when more, at least p_candidates, at most 1000.';

CREATE OR REPLACE FUNCTION semsql.hnsw_scan_tuples(
    p_scan_limit integer, p_estimate double precision, p_documents double precision,
    p_candidates integer
) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- An iterative scan under a filter that p_estimate of p_documents pass visits about
    -- p_scan_limit / selectivity tuples to find p_scan_limit that pass; twice that before it
    -- gives up, and never fewer than 20,000 (or 50 per candidate), pgvector's default.
    SELECT least(2147483647, greatest(
        20000, 50 * coalesce(p_candidates, 0),
        ceil(2.0 * p_scan_limit * greatest(coalesce(p_documents, 0), 1)
             / greatest(coalesce(p_estimate, p_documents, 0), 1))))::integer;
$$;
COMMENT ON FUNCTION semsql.hnsw_scan_tuples(integer, double precision, double precision, integer) IS
    'The hnsw.max_scan_tuples of a filtered HNSW scan that is to find p_scan_limit rows when '
    'the filter passes p_estimate of p_documents (the planner''s estimate): twice the tuples '
    'that selectivity takes, at least 20,000 and 50 per candidate.';
