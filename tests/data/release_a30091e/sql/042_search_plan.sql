-- The SQL that semsql.search runs, built from structure only, and how its candidates are
-- ranked.

-- Building the search's SQL (structure only: every value is a parameter) -------------------------
--
-- Parameters of every statement that semsql.search runs:
--   $1 tags text[]  $2 emotions text[]  $3 people ids bigint[]  $4 collection text
--   $5 taken_after  $6 taken_before  $7 metadata jsonb  $8 ids of people named in the query
--   $9 text vector  $10 image vector  $11 keyword tsquery  $12 query lexemes text[]
--   $13 pool of asset ids  $14 how many rows  $15 asset to leave out  $16 ids of people to boost

CREATE OR REPLACE FUNCTION semsql.filter_conditions(
    p_alias text, p_tags text[], p_tags_match text, p_emotions text[], p_person_ids bigint[],
    p_people_match text, p_collection text, p_taken_after timestamptz,
    p_taken_before timestamptz, p_metadata jsonb, p_named_ids bigint[]
) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public
AS $$
    -- Only whether each filter is given shapes the text; the values go in as $1..$8. p_alias
    -- is d (search_documents) or e (embeddings): both have the filter columns.
    SELECT format(nullif(array_to_string(array_remove(ARRAY[
        CASE WHEN p_tags IS NOT NULL THEN
            CASE p_tags_match WHEN 'all' THEN '%1$I.tags @> $1' ELSE '%1$I.tags && $1' END END,
        CASE WHEN p_emotions IS NOT NULL THEN '%1$I.emotions && $2' END,
        CASE WHEN p_person_ids IS NOT NULL THEN
            CASE p_people_match WHEN 'all' THEN '%1$I.people @> $3' ELSE '%1$I.people && $3' END END,
        CASE WHEN p_collection IS NOT NULL THEN '%1$I.collection = $4' END,
        CASE WHEN p_taken_after IS NOT NULL THEN '%1$I.taken_at >= $5' END,
        CASE WHEN p_taken_before IS NOT NULL THEN '%1$I.taken_at < $6' END,
        CASE WHEN p_metadata IS NOT NULL THEN
            'EXISTS (SELECT FROM semsql.assets a WHERE a.id = %1$I.asset_id AND a.metadata @> $7)' END,
        CASE WHEN p_named_ids IS NOT NULL THEN '%1$I.people @> $8' END], NULL), ' AND '), ''),
        p_alias);
$$;
COMMENT ON FUNCTION semsql.filter_conditions(text, text[], text, text[], bigint[], text, text, timestamptz, timestamptz, jsonb, bigint[]) IS
    'The filters given, as conditions on the rows of p_alias (d: search_documents, e: embeddings) '
    'AND-ed, NULL when none; values are the parameters $1..$8.';

CREATE OR REPLACE FUNCTION semsql.nearest_sql(p_space text, p_dims integer, p_conditions text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public
AS $$
    -- The ORDER BY expression and the space predicate are those of the space's HNSW index
    -- (semsql.register_vector_space). p_conditions test the filter columns of e itself, inside
    -- the index scan, so that iterative scans go on until enough rows pass them.
    SELECT format(
        'SELECT coalesce(array_agg(n.asset_id ORDER BY n.distance), ''{}''), '
        'coalesce(array_agg(1 - n.distance ORDER BY n.distance), ''{}'') FROM ('
        'SELECT e.asset_id, e.embedding::halfvec(%1$s) <=> %2$s::halfvec(%1$s) AS distance '
        'FROM semsql.embeddings e WHERE e.space = %3$L AND e.asset_id IS DISTINCT FROM $15%4$s '
        'ORDER BY e.embedding::halfvec(%1$s) <=> %2$s::halfvec(%1$s) LIMIT $14) AS n',
        p_dims, CASE p_space WHEN 'text' THEN '$9' ELSE '$10' END, p_space,
        ' AND ' || p_conditions);
$$;
COMMENT ON FUNCTION semsql.nearest_sql(text, integer, text) IS
    'The statement that returns the asset ids nearest to the query vector of a space through its HNSW index, '
    'under filter conditions on e (semsql.filter_conditions), and their similarities.';

CREATE OR REPLACE FUNCTION semsql.rank_pool(
    p_pool bigint[], p_text halfvec, p_image halfvec, p_keywords tsquery, p_lexemes text[],
    p_exclude_text halfvec, p_exclude_image halfvec, p_exclude_lexemes text[],
    p_text_hits bigint[], p_text_similarities double precision[],
    p_image_hits bigint[], p_image_similarities double precision[],
    p_candidates integer, p_weights real[], p_boost_ids bigint[], p_min_score real,
    p_relative_cut real, p_order_by text, p_k integer, p_offset integer, p_skip bigint
) RETURNS SETOF semsql.search_result
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public
-- One plan for every pool: planning with a pool of thousands of ids as a constant costs more
-- than running it.
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- Each signal's score: cosine similarity to the query vector (text, image), the share of
    -- the query's lexemes found in the document (keyword), shows a person named in the query
    -- (name boost). The fused score is their weighted mean (p_weights: text, image, keyword,
    -- name, exclude), less the exclude weight times the greatest similarity to the exclude text.
    -- Similarities that HNSW returned (p_*_hits) are not computed again; the other vectors are
    -- read in one index scan per space (MATERIALIZED, so that only the scores go further);
    -- documents only when a signal needs them; what is shown only for the rows returned.
    RETURN QUERY
    WITH pool AS MATERIALIZED (
        SELECT DISTINCT p.asset_id FROM unnest(p_pool) AS p(asset_id)
        WHERE p.asset_id IS DISTINCT FROM p_skip),
    text_scores AS MATERIALIZED (
        SELECT h.asset_id, h.score
        FROM unnest(p_text_hits, p_text_similarities) AS h(asset_id, score)
        UNION ALL
        SELECT e.asset_id, 1 - (e.embedding <=> p_text)
        FROM embeddings e
        WHERE p_text IS NOT NULL AND e.space = 'text'
          AND e.asset_id = ANY (ARRAY(SELECT unnest(p_pool) EXCEPT SELECT unnest(p_text_hits)))),
    image_scores AS MATERIALIZED (
        SELECT h.asset_id, h.score
        FROM unnest(p_image_hits, p_image_similarities) AS h(asset_id, score)
        UNION ALL
        SELECT e.asset_id, 1 - (e.embedding <=> p_image)
        FROM embeddings e
        WHERE p_image IS NOT NULL AND e.space = 'image'
          AND e.asset_id = ANY (ARRAY(SELECT unnest(p_pool) EXCEPT SELECT unnest(p_image_hits)))),
    exclusion AS MATERIALIZED (
        SELECT e.asset_id,
               max(1 - (e.embedding <=> CASE e.space WHEN 'text' THEN p_exclude_text
                                                      ELSE p_exclude_image END)) AS score
        FROM embeddings e
        WHERE (p_exclude_text IS NOT NULL OR p_exclude_image IS NOT NULL)
          AND e.asset_id = ANY (p_pool)
          AND (e.space = 'text' AND p_exclude_text IS NOT NULL
               OR e.space = 'image' AND p_exclude_image IS NOT NULL)
        GROUP BY e.asset_id),
    document_scores AS MATERIALIZED (
        SELECT d.asset_id,
               CASE WHEN d.document @@ p_keywords
                    THEN (length(d.document) - length(ts_delete(d.document, p_lexemes)))::real
                         / cardinality(p_lexemes)
                    ELSE 0 END AS keyword_score,
               coalesce(d.people && p_boost_ids, false) AS shows_named,
               CASE WHEN cardinality(p_exclude_lexemes) > 0
                    THEN (length(d.document) - length(ts_delete(d.document, p_exclude_lexemes)))::real
                         / cardinality(p_exclude_lexemes) END AS exclude_score
        FROM search_documents d
        WHERE (p_keywords IS NOT NULL OR p_boost_ids IS NOT NULL
               OR cardinality(p_exclude_lexemes) > 0)
          AND d.asset_id = ANY (p_pool)),
    signals AS (
        SELECT pool.asset_id, t.score::real AS text_score, i.score::real AS image_score,
               CASE WHEN p_keywords IS NOT NULL THEN coalesce(ds.keyword_score, 0) END::real
                   AS keyword_score,
               coalesce(ds.shows_named, false) AS shows_named,
               greatest(x.score, ds.exclude_score)::real AS exclude_score
        FROM pool
        LEFT JOIN text_scores t ON t.asset_id = pool.asset_id
        LEFT JOIN image_scores i ON i.asset_id = pool.asset_id
        LEFT JOIN exclusion x ON x.asset_id = pool.asset_id
        LEFT JOIN document_scores ds ON ds.asset_id = pool.asset_id),
    scored AS (
        SELECT s.*,
               ((coalesce(s.text_score, 0) * p_weights[1] + coalesce(s.image_score, 0) * p_weights[2]
                 + coalesce(s.keyword_score, 0) * p_weights[3] + s.shows_named::integer * p_weights[4])
                / nullif(p_weights[1] + p_weights[2] + p_weights[3] + p_weights[4], 0)
                - coalesce(s.exclude_score, 0) * p_weights[5])::real AS score
        FROM signals s),
    top AS (
        -- The k + offset best (a cut keeps a prefix of them), or by date with a cut: all that
        -- pass it. The best row is always among them.
        SELECT b.*, row_number() OVER (ORDER BY b.score DESC NULLS LAST, b.asset_id)::integer AS rank
        FROM (SELECT * FROM scored ORDER BY score DESC NULLS LAST, asset_id
              LIMIT CASE WHEN p_order_by = 'relevance'
                               OR (p_min_score IS NULL AND p_relative_cut IS NULL)
                          THEN p_k + p_offset END) AS b),
    floors AS (
        -- A vector signal found an asset when it is among the signal's p_candidates best.
        SELECT (SELECT min(x.score) FROM (SELECT t.score FROM text_scores t
                                          ORDER BY t.score DESC LIMIT p_candidates) AS x) AS text_floor,
               (SELECT min(x.score) FROM (SELECT i.score FROM image_scores i
                                          ORDER BY i.score DESC LIMIT p_candidates) AS x) AS image_floor,
               (SELECT max(t.score) FROM top t) AS best)
    SELECT c.asset_id, d.uri, c.score, d.caption, d.labels, d.emotions, d.people_names,
           array_remove(ARRAY[
               CASE WHEN c.image_score >= f.image_floor THEN 'image' END,
               CASE WHEN c.text_score >= f.text_floor THEN 'text' END,
               CASE WHEN c.keyword_score > 0 THEN 'keyword' END,
               CASE WHEN c.shows_named THEN 'name' END], NULL),
           c.image_score, c.text_score, c.keyword_score, c.exclude_score, d.taken_at, c.rank
    FROM top c CROSS JOIN floors f JOIN search_documents d ON d.asset_id = c.asset_id
    WHERE (p_min_score IS NULL OR c.score >= p_min_score)
      AND (p_relative_cut IS NULL OR f.best IS NULL OR f.best <= 0
           OR c.score >= p_relative_cut * f.best)
    ORDER BY CASE WHEN p_order_by = 'newest' THEN d.taken_at END DESC NULLS LAST,
             CASE WHEN p_order_by = 'oldest' THEN d.taken_at END ASC NULLS LAST,
             c.rank
    OFFSET p_offset LIMIT p_k;
END
$$;
COMMENT ON FUNCTION semsql.rank_pool(bigint[], halfvec, halfvec, tsquery, text[], halfvec, halfvec, text[], bigint[], double precision[], bigint[], double precision[], integer, real[], bigint[], real, real, text, integer, integer, bigint) IS
    'Scores a pool of assets exactly on every signal, fuses, cuts, orders and pages them: the last step of semsql.search.';

CREATE OR REPLACE FUNCTION semsql.rank_hits(
    p_hits bigint[], p_similarities double precision[], p_space text, p_min_score real,
    p_relative_cut real, p_order_by text, p_k integer, p_offset integer
) RETURNS SETOF semsql.search_result
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public
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
           NULL::real, NULL::real, d.taken_at, h.n::integer
    FROM unnest(p_hits[1:p_k + p_offset], p_similarities[1:p_k + p_offset])
         WITH ORDINALITY AS h(asset_id, similarity, n)
    JOIN search_documents d ON d.asset_id = h.asset_id
    -- The cuts compare the scores as shown (real), so that a score passed back as min_score keeps its row.
    WHERE (p_min_score IS NULL OR h.similarity::real >= p_min_score)
      AND (p_relative_cut IS NULL OR p_similarities[1] <= 0
           OR h.similarity::real >= p_relative_cut * p_similarities[1]::real)
    ORDER BY CASE WHEN p_order_by = 'newest' THEN d.taken_at END DESC NULLS LAST,
             CASE WHEN p_order_by = 'oldest' THEN d.taken_at END ASC NULLS LAST,
             h.n
    OFFSET p_offset LIMIT p_k;
END
$$;
COMMENT ON FUNCTION semsql.rank_hits(bigint[], double precision[], text, real, real, text, integer, integer) IS
    'The last step of semsql.search when one vector signal is the only one: cuts, orders and pages its ranked hits.';

CREATE OR REPLACE FUNCTION semsql.exact_nearest_sql(p_space text, p_conditions text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public
AS $$
    -- p_conditions: the filters on e (semsql.filter_conditions), or e.asset_id = ANY ($13) for
    -- a pool, or NULL for every vector of the space.
    SELECT format(
        'SELECT coalesce(array_agg(n.asset_id ORDER BY n.similarity DESC, n.asset_id), ''{}''), '
        'coalesce(array_agg(n.similarity ORDER BY n.similarity DESC, n.asset_id), ''{}'') FROM ('
        'SELECT e.asset_id, 1 - (e.embedding <=> %s::halfvec) AS similarity FROM semsql.embeddings e '
        'WHERE e.space = %L AND e.asset_id IS DISTINCT FROM $15%s '
        'ORDER BY 2 DESC, 1 LIMIT $14) AS n',
        CASE p_space WHEN 'text' THEN '$9' ELSE '$10' END, p_space, ' AND ' || p_conditions);
$$;
COMMENT ON FUNCTION semsql.exact_nearest_sql(text, text) IS
    'The statement that returns the asset ids nearest to the query vector of a space by an exact scan '
    'of the vectors that meet the conditions, and their similarities.';

CREATE OR REPLACE FUNCTION semsql.exact_scan_limit(p_candidates integer) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, semsql, public
AS $$
    -- An exact scan costs about one row fetch per filtered asset (n); an HNSW scan under the
    -- filter about one per tuple it visits, p_candidates * N / n for N assets. They cost the
    -- same at n = sqrt(p_candidates * N): 2000 for 40 candidates among 100,000 assets
    -- (measured by bench/search.py).
    SELECT coalesce(
        nullif(current_setting('semsql.exact_scan_limit', true), '')::integer,
        greatest(1000, round(sqrt(p_candidates * greatest(
            (SELECT c.reltuples FROM pg_class c
             WHERE c.oid = 'semsql.search_documents'::regclass), 0))))::integer);
$$;
COMMENT ON FUNCTION semsql.exact_scan_limit(integer) IS
    'Filtered sets up to this many assets are ranked by an exact scan, larger ones through HNSW '
    'iterative scans: the setting semsql.exact_scan_limit, else sqrt(candidates x assets), at least 1000.';
