-- Search: semsql.search fuses CLIP image similarity, document-text similarity and keyword
-- full text under exact filters; semsql.similar, semsql.duplicates and
-- semsql.exact_duplicates find assets like an asset. The filters and the keyword document
-- live in semsql.search_documents (sql/040), and in copies beside each vector.
--
-- Filtered search, per query: the filtered assets are estimated by the planner from the
-- indexes' statistics and, unless far too many, counted with the indexes up to
-- semsql.exact_scan_limit() (a single signal trusts the estimate once there are statistics,
-- and counts nothing); a set that small is ranked by an exact scan, a larger one
-- through the HNSW indexes with pgvector's iterative scans (the filter checked on the vector's
-- own row in the index scan), and the candidates of every signal are re-ranked by exact
-- distances. Should an iterative scan end before it found enough candidates, the search falls
-- back to the exact scan, so that filters never shrink the result silently.

-- semsql.search --------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.search(
    query text DEFAULT NULL,
    query_embedding vector DEFAULT NULL,
    like_asset bigint DEFAULT NULL,
    tags text[] DEFAULT NULL,
    tags_match text DEFAULT 'any',
    emotions text[] DEFAULT NULL,
    people text[] DEFAULT NULL,
    people_match text DEFAULT 'any',
    collection text DEFAULT NULL,
    taken_after timestamptz DEFAULT NULL,
    taken_before timestamptz DEFAULT NULL,
    metadata jsonb DEFAULT NULL,
    exclude text DEFAULT NULL,
    k integer DEFAULT 20,
    "offset" integer DEFAULT 0,
    min_score real DEFAULT NULL,
    relative_cut real DEFAULT NULL,
    order_by text DEFAULT 'relevance',
    exact boolean DEFAULT false,
    image_weight real DEFAULT 1,
    text_weight real DEFAULT 1,
    keyword_weight real DEFAULT 0.5,
    name_weight real DEFAULT 0.5,
    exclude_weight real DEFAULT 0.5,
    names text DEFAULT 'filter',
    query_space text DEFAULT NULL,
    text_embedding vector DEFAULT NULL,
    image_embedding vector DEFAULT NULL,
    min_text_similarity real DEFAULT NULL,
    min_image_similarity real DEFAULT NULL,
    article text DEFAULT NULL,
    article_summary text DEFAULT NULL,
    media_type text DEFAULT NULL,
    min_duration interval DEFAULT NULL,
    max_duration interval DEFAULT NULL
) RETURNS SETOF semsql.search_result
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.ef_search = 40
SET hnsw.iterative_scan = relaxed_order
SET hnsw.max_scan_tuples = 20000
AS $$
#variable_conflict use_variable
DECLARE
    text_dims integer;
    image_dims integer;
    text_vec vector := text_embedding;
    image_vec vector := image_embedding;
    exclude_text_vec vector;
    exclude_image_vec vector;
    embedding_space text;
    semantic_query text := nullif(btrim(query), '');
    keywords tsquery;
    lexemes text[];
    exclude_lexemes text[];
    tag_list text[];
    emotion_list text[];
    person_ids bigint[];
    unknown_people text;
    recognised record;
    named_ids bigint[];
    boost_ids bigint[];
    weights real[];
    args semsql.search_args;  -- the only parameter ($1) of every statement built below
    filter_sql text;
    vector_filter text;
    source_sql text;
    estimate double precision;
    plan json;
    pool bigint[];
    found_ids bigint[];
    found_similarities double precision[];
    text_hits bigint[];
    text_similarities double precision[];
    image_hits bigint[];
    image_similarities double precision[];
    candidates integer;
    use_exact boolean := coalesce(exact, false);
    single_signal boolean;
    wanted integer;
    ef integer;
    documents double precision;
    -- Whether a DEBUG message goes anywhere (client_min_messages or log_min_messages debug1-5).
    debugging boolean := current_setting('client_min_messages') LIKE 'debug%'
                         OR current_setting('log_min_messages') LIKE 'debug%';
BEGIN
    -- Arguments ---------------------------------------------------------------------------------
    -- Over-long texts first, before anything reads them (semsql.max_query_text_length()).
    -- One statement each for the texts and the numbers: a statement costs more than a check.
    PERFORM check_query_text('text', query), check_query_text('text', exclude),
            check_article(article), check_article(article_summary)
    WHERE num_nonnulls(query, exclude, article, article_summary) > 0;
    IF semantic_query IS NOT NULL AND nullif(btrim(article), '') IS NOT NULL THEN
        RAISE EXCEPTION 'pass query or article, not both' USING ERRCODE = 'invalid_parameter_value';
    ELSIF k IS NULL OR k NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'k must be between 1 and 10000, not %', k USING ERRCODE = 'invalid_parameter_value';
    ELSIF "offset" IS NULL OR "offset" NOT BETWEEN 0 AND 1000000000 THEN
        -- The bound keeps 2 * (k + offset) within integer.
        RAISE EXCEPTION 'offset must be between 0 and 1000000000, not %', "offset"
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF tags_match IS DISTINCT FROM 'any' AND tags_match IS DISTINCT FROM 'all'
          OR people_match IS DISTINCT FROM 'any' AND people_match IS DISTINCT FROM 'all' THEN
        RAISE EXCEPTION 'tags_match and people_match take any or all'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF order_by IS NULL OR order_by NOT IN ('relevance', 'newest', 'oldest') THEN
        RAISE EXCEPTION 'order_by takes relevance, newest or oldest, not %', order_by
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF names IS NULL OR names NOT IN ('filter', 'boost', 'off') THEN
        RAISE EXCEPTION 'names takes filter, boost or off, not %', names
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF query_space IS NOT NULL AND query_space NOT IN ('text', 'image') THEN
        RAISE EXCEPTION 'query_space takes text or image, not %', query_space
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF media_type IS NOT NULL AND media_type NOT IN ('image', 'video') THEN
        RAISE EXCEPTION 'media_type takes image or video, not %', media_type
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF min_duration < interval '0' OR max_duration < interval '0'
          OR extract(epoch FROM greatest(min_duration, max_duration)) > 1e9 THEN
        RAISE EXCEPTION 'min_duration and max_duration must be between 0 and 1e9 seconds'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The numbers one by one, each with its message, only when one of them would fail: twelve
    -- calls cost more than this test (NaN compares greater than Infinity, so < 'Infinity'
    -- leaves out NaN and Infinity; a NULL weight leaves the test NULL).
    IF (image_weight >= 0 AND image_weight < 'Infinity' AND text_weight >= 0
        AND text_weight < 'Infinity' AND keyword_weight >= 0 AND keyword_weight < 'Infinity'
        AND name_weight >= 0 AND name_weight < 'Infinity'
        AND exclude_weight >= 0 AND exclude_weight < 'Infinity'
        AND (min_score IS NULL OR min_score > '-Infinity' AND min_score < 'Infinity')
        AND (relative_cut IS NULL OR relative_cut BETWEEN 0 AND 1)
        AND (min_text_similarity IS NULL OR min_text_similarity BETWEEN -1 AND 1)
        AND (min_image_similarity IS NULL OR min_image_similarity BETWEEN -1 AND 1)
        AND (query_embedding IS NULL OR vector_norm(query_embedding) > 0)
        AND (text_embedding IS NULL OR vector_norm(text_embedding) > 0)
        AND (image_embedding IS NULL OR vector_norm(image_embedding) > 0)) IS NOT TRUE THEN
        PERFORM check_real('image_weight', image_weight, 0, NULL, true),
                check_real('text_weight', text_weight, 0, NULL, true),
                check_real('keyword_weight', keyword_weight, 0, NULL, true),
                check_real('name_weight', name_weight, 0, NULL, true),
                check_real('exclude_weight', exclude_weight, 0, NULL, true),
                check_real('min_score', min_score),
                check_real('relative_cut', relative_cut, 0, 1),
                check_real('min_text_similarity', min_text_similarity, -1, 1),
                check_real('min_image_similarity', min_image_similarity, -1, 1),
                check_query_vector('query_embedding', query_embedding),
                check_query_vector('text_embedding', text_embedding),
                check_query_vector('image_embedding', image_embedding);
    END IF;
    candidates := least(greatest(2 * (k + "offset"), 40), 4000);

    -- Filters ---------------------------------------------------------------------------------
    IF cardinality(tags) > 0 THEN
        tag_list := ARRAY(SELECT DISTINCT lower(btrim(t)) FROM unnest(tags) AS t WHERE t IS NOT NULL);
    END IF;
    IF cardinality(emotions) > 0 THEN
        emotion_list := ARRAY(SELECT DISTINCT lower(btrim(e)) FROM unnest(emotions) AS e
                              WHERE e IS NOT NULL);
    END IF;
    IF cardinality(people) > 0 THEN
        person_ids := ARRAY(SELECT p.id FROM semsql.people p
                            WHERE lower(p.name) IN (SELECT lower(btrim(n)) FROM unnest(people) AS n));
        SELECT string_agg(format('"%s"', n), ', ') INTO unknown_people
        FROM unnest(people) AS n
        WHERE NOT EXISTS (SELECT 1 FROM semsql.people p WHERE lower(p.name) = lower(btrim(n)));
        IF unknown_people IS NOT NULL THEN
            RAISE NOTICE 'no person is named %', unknown_people;
            IF people_match = 'all' OR cardinality(person_ids) = 0 THEN
                RETURN;
            END IF;
        END IF;
    END IF;

    -- Query vectors -----------------------------------------------------------------------------
    -- The spaces' dimensions, and the one space of query_embedding's (NULL unless exactly one).
    SELECT max(vs.dims) FILTER (WHERE vs.space = 'text'), max(vs.dims) FILTER (WHERE vs.space = 'image'),
           CASE WHEN count(*) FILTER (WHERE vs.dims = vector_dims(query_embedding)) = 1
                THEN min(vs.space) FILTER (WHERE vs.dims = vector_dims(query_embedding)) END
    INTO text_dims, image_dims, embedding_space
    FROM vector_spaces vs;
    IF query_embedding IS NOT NULL THEN
        embedding_space := coalesce(query_space, embedding_space);
        IF embedding_space IS NULL THEN
            RAISE EXCEPTION 'query_embedding has % dimensions: no single vector space matches',
                vector_dims(query_embedding)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'pass query_space => ''text'' or ''image''; semsql.vector_spaces lists their dimensions';
        ELSIF embedding_space = 'text' THEN
            text_vec := coalesce(text_vec, query_embedding);
        ELSE
            image_vec := coalesce(image_vec, query_embedding);
        END IF;
    END IF;
    IF like_asset IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM assets a WHERE a.id = like_asset) THEN
            RAISE EXCEPTION 'no asset has id %', like_asset USING ERRCODE = 'no_data_found';
        END IF;
        text_vec := coalesce(text_vec, (SELECT e.embedding::vector FROM embeddings e
                                        WHERE e.asset_id = like_asset AND e.space = 'text'));
        image_vec := coalesce(image_vec, (SELECT e.embedding::vector FROM embeddings e
                                          WHERE e.asset_id = like_asset AND e.space = 'image'),
                              -- a video: what its frames show on the whole
                              (SELECT avg(f.embedding::vector) FROM frame_vectors f
                               WHERE f.asset_id = like_asset));
        IF text_vec IS NULL AND image_vec IS NULL THEN
            RAISE EXCEPTION 'asset % has no vectors yet', like_asset
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = '`semsql worker` embeds it; semsql.tasks shows its progress';
        END IF;
    END IF;
    IF text_vec IS NOT NULL AND vector_dims(text_vec) IS DISTINCT FROM text_dims
       OR image_vec IS NOT NULL AND vector_dims(image_vec) IS DISTINCT FROM image_dims THEN
        RAISE EXCEPTION 'a query vector does not have the dimensions of its space (text %, image %)',
            text_dims, image_dims USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- An article: its names, parts and keyphrases (sql/046_articles.sql) ------------------------
    IF nullif(btrim(article), '') IS NOT NULL THEN
        SELECT * INTO recognised FROM article_query(article, article_summary, names,
                                                    cardinality(people) > 0,
                                                    text_vec IS NULL AND text_weight > 0,
                                                    image_vec IS NULL AND image_weight > 0);
        IF recognised.person_ids IS NOT NULL THEN
            RAISE NOTICE 'people named in the article (%): %',
                CASE WHEN recognised.filters THEN 'filter' ELSE 'boost' END, recognised.found_names;
            IF recognised.filters THEN
                person_ids := recognised.person_ids;
                people_match := 'any';
            ELSE
                boost_ids := recognised.person_ids;
            END IF;
        END IF;
        text_vec := coalesce(text_vec, recognised.text_vector);
        image_vec := coalesce(image_vec, recognised.image_vector);
        lexemes := recognised.lexemes;
        keywords := (SELECT string_agg('''' || replace(replace(l, '\', '\\'), '''', '''''') || '''', ' | ')::tsquery
                     FROM unnest(lexemes) AS l);
        semantic_query := 'article';  -- a search by text: only what a signal matched
    -- Query text: names, keywords, and the vectors of what is left ------------------------------
    ELSIF semantic_query IS NOT NULL THEN
        IF names <> 'off' THEN
            SELECT array_agg(m.person_id) AS ids, string_agg(m.name, ', ') AS found_names,
                   array_agg(m.first_word) AS firsts, array_agg(m.last_word) AS lasts
            INTO recognised FROM match_people(query) AS m;
            IF recognised.ids IS NOT NULL THEN
                RAISE NOTICE 'people named in the query (%): %', names, recognised.found_names;
                IF names = 'filter' THEN
                    named_ids := recognised.ids;
                ELSE
                    boost_ids := recognised.ids;
                END IF;
                semantic_query := coalesce((
                    SELECT string_agg(w.word, ' ' ORDER BY w.word_number) FROM query_words(query) AS w
                    WHERE NOT EXISTS (SELECT 1 FROM unnest(recognised.firsts, recognised.lasts)
                                                 AS r(first_word, last_word)
                                      WHERE w.word_number BETWEEN r.first_word AND r.last_word)
                      AND w.word ~ '\w'), semantic_query);
            END IF;
        END IF;
        keywords := keyword_query(query);
        lexemes := query_lexemes(query);
        IF text_vec IS NULL AND text_dims IS NOT NULL AND text_weight > 0 THEN
            text_vec := embed_text_or_null(semantic_query, 'text', text_dims);
        END IF;
        IF image_vec IS NULL AND image_dims IS NOT NULL AND image_weight > 0 THEN
            image_vec := embed_text_or_null(semantic_query, 'image', image_dims);
        END IF;
    END IF;
    IF nullif(btrim(exclude), '') IS NOT NULL AND exclude_weight > 0 THEN
        IF text_vec IS NOT NULL THEN
            exclude_text_vec := embed_text_or_null(exclude, 'text', text_dims);
        END IF;
        IF image_vec IS NOT NULL THEN
            exclude_image_vec := embed_text_or_null(exclude, 'image', image_dims);
        END IF;
        exclude_lexemes := query_lexemes(exclude);
    END IF;
    -- Cosine distance does not depend on a vector's length: at unit length any finite query
    -- vector fits halfvec (whose largest value is 65504), the type the vectors are compared in.
    text_vec := l2_normalize(text_vec);
    image_vec := l2_normalize(image_vec);
    exclude_text_vec := l2_normalize(exclude_text_vec);
    exclude_image_vec := l2_normalize(exclude_image_vec);
    weights := ARRAY[
        CASE WHEN text_vec IS NOT NULL THEN text_weight ELSE 0 END,
        CASE WHEN image_vec IS NOT NULL THEN image_weight ELSE 0 END,
        CASE WHEN keywords IS NOT NULL THEN keyword_weight ELSE 0 END,
        CASE WHEN boost_ids IS NOT NULL THEN name_weight ELSE 0 END,
        CASE WHEN exclude_text_vec IS NOT NULL OR exclude_image_vec IS NOT NULL
                  OR cardinality(exclude_lexemes) > 0 THEN exclude_weight ELSE 0 END];

    -- What a match is: a search by query text (or with a least similarity given) returns only
    -- the assets that a signal matched; a vector matches at the least similarity of its space.
    args.matched_only := semantic_query IS NOT NULL
                         OR min_text_similarity IS NOT NULL OR min_image_similarity IS NOT NULL;
    IF args.matched_only THEN
        IF text_vec IS NULL AND image_vec IS NULL AND keywords IS NULL AND boost_ids IS NULL THEN
            RAISE NOTICE 'the query has no keywords and no vector signal: nothing can match it';
            RETURN;
        END IF;
        -- An article's vector is a mean of several parts: half its space's floor matches it.
        IF text_vec IS NOT NULL THEN
            args.text_floor := coalesce(min_text_similarity, match_similarity('text')
                                        * CASE WHEN article IS NOT NULL THEN 0.5 ELSE 1 END);
        END IF;
        IF image_vec IS NOT NULL THEN
            args.image_floor := coalesce(min_image_similarity, match_similarity('image')
                                         * CASE WHEN article IS NOT NULL THEN 0.5 ELSE 1 END);
        END IF;
        -- Unless the call sets a least similarity, a vector nearly as similar as the space's
        -- best match (80 %) matches too: a paraphrase that shares no word with the captions is
        -- often 0.25 to 0.30 similar to every photo it means, and the floor alone kept only
        -- the first of them (bench/articles.py, short queries). A query that no vector
        -- matches at the floor still matches nothing.
        IF min_text_similarity IS NULL AND min_image_similarity IS NULL THEN
            args.floor_ratio := 0.8;
        END IF;
    END IF;

    single_signal := num_nonnulls(text_vec, image_vec) = 1
                     AND weights[3] + weights[4] + weights[5] = 0
                     AND (order_by = 'relevance' OR min_score IS NULL AND relative_cut IS NULL);
    -- A signal alone needs no more hits than are shown; fusion needs a pool to fuse.
    wanted := CASE WHEN single_signal THEN k + "offset" ELSE candidates END;

    -- The search's inputs, as the one parameter of the statements below ------------------------
    args.tags := tag_list;
    args.tags_match := tags_match;
    args.emotions := emotion_list;
    args.person_ids := person_ids;
    args.people_match := people_match;
    args.collection := collection;
    args.taken_after := taken_after;
    args.taken_before := taken_before;
    args.metadata := metadata;
    -- A duration is a video's: either bound leaves the images out.
    args.media_type := CASE WHEN min_duration IS NOT NULL OR max_duration IS NOT NULL
                            THEN coalesce(media_type, 'video') ELSE media_type END;
    args.min_duration_ms := round(extract(epoch FROM min_duration) * 1000);
    args.max_duration_ms := round(extract(epoch FROM max_duration) * 1000);
    args.named_ids := named_ids;
    args.text_vector := text_vec;
    args.image_vector := image_vec;
    args.keywords := keywords;
    args.lexemes := lexemes;
    args.exclude_text_vector := exclude_text_vec;
    args.exclude_image_vector := exclude_image_vec;
    args.exclude_lexemes := exclude_lexemes;
    args.boost_ids := boost_ids;
    args.like_asset := like_asset;
    args.weights := weights;
    args.candidates := candidates;
    args.min_score := min_score;
    args.relative_cut := relative_cut;
    args.order_by := order_by;
    args.k := k;
    args."offset" := "offset";

    -- Candidates: an exact scan of a small filtered set, else HNSW per signal -------------------
    vector_filter := filter_conditions('e', args);
    IF vector_filter IS NOT NULL THEN  -- the same conditions on the documents
        filter_sql := 'FROM semsql.search_documents d WHERE ' || filter_conditions('d', args);
    END IF;
    source_sql := coalesce(filter_sql, 'FROM semsql.search_documents d WHERE true');
    IF text_vec IS NULL AND image_vec IS NULL THEN
        use_exact := true;
        IF keywords IS NOT NULL AND boost_ids IS NULL THEN
            -- Keywords alone: their matches.
            source_sql := source_sql || ' AND d.document @@ ($1).keywords';
        ELSIF keywords IS NULL AND boost_ids IS NULL THEN
            -- No query: the filtered assets by date.
            args.order_by := CASE order_by WHEN 'relevance' THEN 'newest' ELSE order_by END;
            source_sql := source_sql || format(' ORDER BY d.taken_at %s NULLS LAST, d.asset_id LIMIT %s',
                                               CASE args.order_by WHEN 'oldest' THEN 'ASC' ELSE 'DESC' END,
                                               k + "offset");
        END IF;
    ELSIF NOT use_exact AND filter_sql IS NOT NULL THEN
        -- The planner's estimate first (statistics of the GIN and B-tree indexes): counting a
        -- set far larger than the limit would cost more than the search.
        args.row_limit := greatest(exact_scan_limit(candidates), candidates);
        EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 ' || filter_sql
            INTO plan
            USING args;
        estimate := (plan -> 0 -> 'Plan' ->> 'Plan Rows')::double precision;
        IF single_signal
           AND coalesce(pg_stat_get_last_analyze_time('semsql.search_documents'::regclass),
                        pg_stat_get_last_autoanalyze_time('semsql.search_documents'::regclass))
               IS NOT NULL THEN
            -- An estimate from statistics decides, with no count: few enough are read by the
            -- exact scan through the filter indexes of the vectors themselves; more go through
            -- HNSW (counting 4,001 of 10,000 filtered assets among 100,000 first nearly
            -- doubled that search's time, p50 3.9 to 7.4 ms).
            use_exact := estimate <= args.row_limit;
        ELSIF estimate <= 4 * args.row_limit THEN
            args.row_limit := args.row_limit + 1;
            EXECUTE format('SELECT array(SELECT d.asset_id %s LIMIT ($1).row_limit)', filter_sql)
                INTO pool
                USING args;
            use_exact := cardinality(pool) < args.row_limit;
        END IF;
        IF NOT use_exact THEN
            pool := NULL;
        END IF;
    END IF;
    IF debugging THEN  -- the message's arguments cost time even when no one reads it
        RAISE DEBUG 'semsql.search: %', CASE WHEN NOT use_exact THEN 'HNSW iterative scans'
            WHEN pool IS NOT NULL THEN format('exact scan of %s filtered assets', cardinality(pool))
            ELSE 'exact scan' END;
    END IF;

    IF NOT use_exact THEN
        FOREACH embedding_space IN ARRAY ARRAY['text', 'image'] LOOP
            CONTINUE WHEN (CASE embedding_space WHEN 'text' THEN text_vec ELSE image_vec END) IS NULL;
            -- The width that finds 99 % of the nearest in this space (semsql.calibrate_ef_search),
            -- for the rows wanted; half as wide again under a filter, whose nearest that pass
            -- lie farther out among the candidates (bench/search.py: 0.989 at 10 % without). A
            -- filtered scan may visit as many tuples as the filter's estimated selectivity takes
            -- to find that many twice over, before it gives up (and the exact scan takes over).
            ef := search_ef_search(embedding_space, k + "offset", least(candidates, 1000));
            IF vector_filter IS NOT NULL THEN
                ef := least(1000, ceil(1.5 * ef));
            END IF;
            PERFORM set_config('hnsw.ef_search', ef::text, true);
            args.row_limit := wanted;
            IF vector_filter IS NOT NULL THEN
                documents := coalesce(documents, (SELECT c.reltuples FROM pg_class c
                                                  WHERE c.oid = 'semsql.search_documents'::regclass));
                PERFORM set_config('hnsw.max_scan_tuples',
                                   hnsw_scan_tuples(greatest(wanted, ef), estimate, documents,
                                                    candidates)::text,
                                   true);
            END IF;
            IF debugging THEN
                RAISE DEBUG 'HNSW scan of the % space: ef_search %, max_scan_tuples %',
                    embedding_space, ef, current_setting('hnsw.max_scan_tuples');
            END IF;
            EXECUTE nearest_sql(embedding_space,
                                CASE embedding_space WHEN 'text' THEN text_dims ELSE image_dims END,
                                vector_filter, args.media_type)
                INTO found_ids, found_similarities
                USING args;
            -- Fewer than asked: the iterative scan gave up (or few vectors pass the filters).
            use_exact := use_exact OR cardinality(found_ids) < wanted;
            pool := coalesce(pool, '{}') || found_ids;
            IF embedding_space = 'text' THEN
                text_hits := found_ids;
                text_similarities := found_similarities;
            ELSE
                image_hits := found_ids;
                image_similarities := found_similarities;
            END IF;
        END LOOP;
        IF use_exact THEN
            RAISE DEBUG 'semsql.search: HNSW found too few candidates; scanning exactly';
            pool := NULL;
            text_hits := NULL;
            text_similarities := NULL;
            image_hits := NULL;
            image_similarities := NULL;
        ELSE
            IF keywords IS NOT NULL AND weights[3] > 0 THEN
                args.row_limit := candidates;
                EXECUTE format('SELECT array(SELECT d.asset_id %s AND d.document @@ ($1).keywords '
                               'ORDER BY length(d.document) '
                               '- length(ts_delete(d.document, ($1).lexemes)) DESC, '
                               'ts_rank_cd(d.document, ($1).keywords) DESC, d.asset_id '
                               'LIMIT ($1).row_limit)',
                               source_sql)
                    INTO found_ids
                    USING args;
                pool := pool || found_ids;
            END IF;
            IF boost_ids IS NOT NULL THEN
                args.row_limit := 10 * candidates;
                EXECUTE format('SELECT array(SELECT d.asset_id %s AND d.people && ($1).boost_ids '
                               'LIMIT ($1).row_limit)',
                               source_sql)
                    INTO found_ids
                    USING args;
                pool := pool || found_ids;
            END IF;
        END IF;
    END IF;
    IF pool IS NULL AND NOT single_signal THEN
        EXECUTE format('SELECT array(SELECT d.asset_id %s)', source_sql)
            INTO pool
            USING args;
    END IF;

    IF single_signal THEN
        -- One vector signal alone: its ranked hits are the answer.
        embedding_space := CASE WHEN text_vec IS NOT NULL THEN 'text' ELSE 'image' END;
        found_ids := coalesce(text_hits, image_hits);
        found_similarities := coalesce(text_similarities, image_similarities);
        IF found_ids IS NULL THEN
            args.row_limit := wanted;
            EXECUTE exact_nearest_sql(embedding_space, vector_filter, args.media_type)
                INTO found_ids, found_similarities
                USING args;
            IF cardinality(found_ids) < k + "offset" AND NOT args.matched_only THEN
                -- Filtered assets without a vector in this space match too: after the others
                -- (from the pool counted above, if any, else read now); not a query text,
                -- which no signal of theirs matches.
                IF pool IS NULL THEN
                    EXECUTE format('SELECT array(SELECT d.asset_id %s)', source_sql)
                        INTO pool
                        USING args;
                END IF;
                found_ids := found_ids || ARRAY(
                    SELECT p.id FROM unnest(pool) AS p(id)
                    WHERE p.id <> ALL (found_ids) AND p.id IS DISTINCT FROM like_asset
                    ORDER BY p.id LIMIT k + "offset" - cardinality(found_ids));
                found_similarities := found_similarities || array_fill(
                    NULL::double precision,
                    ARRAY[cardinality(found_ids) - cardinality(found_similarities)]);
            END IF;
        END IF;
        RETURN QUERY SELECT * FROM rank_hits(args, found_ids, found_similarities, embedding_space);
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM rank_pool(args, pool, text_hits, text_similarities,
                                         image_hits, image_similarities);
END
$$;
COMMENT ON FUNCTION semsql.search(text, vector, bigint, text[], text, text[], text[], text, text, timestamptz, timestamptz, jsonb, text, integer, integer, real, real, text, boolean, real, real, real, real, real, text, text, vector, vector, real, real, text, text, text, interval, interval) IS
    'Searches the assets by a query text (CLIP and document-text vectors, keywords, names of people), '
    'a query vector or a like_asset, under exact filters (tags, emotions, people, collection, dates, '
    'metadata containment, media type, a video''s duration); returns k rows from offset with fused and per-signal scores. A query '
    'text returns only the assets a signal matched (matched_by): a keyword, a person named, or a '
    'vector at least min_text_similarity / min_image_similarity similar (NULL: '
    'semsql.match_similarity of the space, or 80 % of the best similarity when it passes that: '
    'semsql.effective_floor); without a query, the filtered assets. An article '
    '(instead of query) is read by semsql.article_query: its known people filter (any of them) '
    'or boost, its headline, central sentences (or article_summary) and keyphrases are embedded '
    'as weighted parts, its keyphrases are the keywords; semsql.explain_query shows them.';
