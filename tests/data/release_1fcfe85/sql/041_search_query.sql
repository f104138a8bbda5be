-- Reading a search query: words, lexemes, names of people, and its vectors; and checking the
-- numbers that the search functions are given.

-- Checking arguments -----------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.check_real(
    p_name text, p_value real, p_least real DEFAULT NULL, p_most real DEFAULT NULL,
    p_required boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    -- NaN compares greater than every number in PostgreSQL, so a range test alone lets NaN and
    -- Infinity through; they would give NaN scores or cut everything.
    IF p_value IS NULL THEN
        IF p_required THEN
            RAISE EXCEPTION '% must be a number, not NULL', p_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSIF p_value IN ('NaN', 'Infinity', '-Infinity') THEN
        RAISE EXCEPTION '% must be a finite number, not %', p_name, p_value
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_value < p_least OR p_value > p_most THEN
        RAISE EXCEPTION '% must be %, not %', p_name,
            CASE WHEN p_most IS NULL THEN format('%s or more', p_least)
                 WHEN p_least IS NULL THEN format('%s or less', p_most)
                 ELSE format('between %s and %s', p_least, p_most) END,
            p_value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION semsql.check_real(text, real, real, real, boolean) IS
    'Raises invalid_parameter_value naming the argument p_name when p_value is NaN, infinite, '
    'outside p_least..p_most (either may be NULL: no bound), or NULL when p_required.';

CREATE OR REPLACE FUNCTION semsql.check_query_vector(p_name text, p_vector vector) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    -- pgvector refuses NaN and infinite values itself; a vector of zeros has no direction, and
    -- its cosine distance to anything is NaN.
    IF vector_norm(p_vector) = 0 THEN
        RAISE EXCEPTION '% has no direction: all its values are 0', p_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION semsql.check_query_vector(text, vector) IS
    'Raises invalid_parameter_value naming the argument p_name when a query vector is all zeros.';


-- Reading a query ------------------------------------------------------------------------------
--
-- Every function here that reads a query text first refuses one longer than
-- semsql.max_query_text_length() (semsql.check_query_text): matching names costs time that
-- grows with the square of the words, and none of it is worth doing for a text that
-- semsql.embed_text would refuse anyway.

CREATE OR REPLACE FUNCTION semsql.query_lexemes(p_text text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    PERFORM check_query_text('text', p_text);
    RETURN tsvector_to_array(to_tsvector('pg_catalog.english', p_text));
END
$$;
COMMENT ON FUNCTION semsql.query_lexemes(text) IS
    'The distinct English lexemes of a query text (stemmed, stop words dropped), as keyword search compares them.';

CREATE OR REPLACE FUNCTION semsql.keyword_query(p_text text) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    -- Any word may match (OR): a long natural-language query rarely has all its words in one
    -- document. Lexemes are quoted for tsquery input (quotes doubled, backslashes escaped).
    -- query_lexemes refuses an over-long text.
    RETURN (SELECT string_agg('''' || replace(replace(l, '\', '\\'), '''', '''''') || '''', ' | ')::tsquery
            FROM unnest(query_lexemes(p_text)) AS l);
END
$$;
COMMENT ON FUNCTION semsql.keyword_query(text) IS
    'A full-text query matching documents that contain any of the text''s lexemes; NULL when it has none.';

CREATE OR REPLACE FUNCTION semsql.query_words(p_text text)
RETURNS TABLE (word_number integer, word text)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    PERFORM check_query_text('text', p_text);
    RETURN QUERY
    SELECT w.n::integer, w.word
    FROM regexp_split_to_table(btrim(p_text), '\s+') WITH ORDINALITY AS w(word, n)
    WHERE w.word <> '';
END
$$;
COMMENT ON FUNCTION semsql.query_words(text) IS
    'The words of a query text (split at white space) with their positions from 1.';

CREATE OR REPLACE FUNCTION semsql.match_people(query text, min_similarity real DEFAULT 0.5)
RETURNS TABLE (person_id bigint, name text, matched_text text, similarity real,
               first_word integer, last_word integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM check_query_text('text', query);  -- first, before any word is read
    PERFORM check_real('min_similarity', min_similarity, 0, 1, true);
    -- Every run of 1 to 4 words is compared with the names by trigram similarity (pg_trgm,
    -- through the people_name_trgm index, so at least pg_trgm.similarity_threshold); each
    -- person keeps its best run, and of overlapping runs the most similar wins. The runs come
    -- from each word and the three after it (a window, in one pass: a join of the words with
    -- themselves took time that grew with the square of their number).
    RETURN QUERY
    WITH words AS (
        SELECT w.word_number, ARRAY[w.word, lead(w.word, 1) OVER next, lead(w.word, 2) OVER next,
                                    lead(w.word, 3) OVER next] AS following
        FROM query_words(query) AS w
        WINDOW next AS (ORDER BY w.word_number)),
    spans AS (
        SELECT w.word_number AS first_word, w.word_number + len - 1 AS last_word,
               array_to_string(w.following[1:len], ' ') AS span
        FROM words w
        CROSS JOIN generate_series(1, 4) AS len
        WHERE w.following[len] IS NOT NULL),
    best AS (
        SELECT DISTINCT ON (p.id) p.id, p.name, sp.span, sp.first_word, sp.last_word,
               similarity(sp.span, p.name) AS score
        FROM spans sp
        JOIN people p ON p.name % sp.span
        WHERE similarity(sp.span, p.name) >= min_similarity
        ORDER BY p.id, 6 DESC, sp.last_word - sp.first_word DESC)
    SELECT b.id, b.name, b.span, b.score::real, b.first_word, b.last_word
    FROM best b
    WHERE NOT EXISTS (
        SELECT 1 FROM best o
        WHERE o.id <> b.id AND o.first_word <= b.last_word AND o.last_word >= b.first_word
          AND (o.score > b.score OR (o.score = b.score AND o.id < b.id)))
    ORDER BY b.first_word;
END
$$;
COMMENT ON FUNCTION semsql.match_people(text, real) IS
    'The people whose names appear in a text, fuzzily (pg_trgm similarity >= min_similarity), '
    'with the words that matched.';

CREATE OR REPLACE FUNCTION semsql.embed_text_or_null(p_text text, p_space text, p_dims integer)
RETURNS vector
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    embedded vector;
    hint text;
BEGIN
    embedded := embed_text(p_text, p_space);
    IF vector_dims(embedded) <> p_dims THEN
        RAISE NOTICE 'search leaves out the % signal: the query vector has % dimensions, the '
                     'stored vectors %', p_space, vector_dims(embedded), p_dims;
        RETURN NULL;
    END IF;
    RETURN embedded;
EXCEPTION
    -- What embed_text raises when no worker answers, its model failed, or it timed out.
    WHEN object_not_in_prerequisite_state OR raise_exception THEN
        GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
        RAISE NOTICE 'search leaves out the % signal: %', p_space, SQLERRM
            USING HINT = coalesce(hint, '');
        RETURN NULL;
END
$$;
COMMENT ON FUNCTION semsql.embed_text_or_null(text, text, integer) IS
    'semsql.embed_text, or NULL with a notice when the space''s model cannot answer: the signal is left out of the search.';

-- What counts as a match -----------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.match_similarity(p_space text) RETURNS real
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    setting text := nullif(current_setting('semsql.min_' || p_space || '_similarity', true), '');
    floor real;
    model text;
BEGIN
    IF setting IS NOT NULL THEN
        BEGIN
            floor := setting::real;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            RAISE EXCEPTION 'semsql.min_%_similarity must be a number, not %', p_space, setting
                USING ERRCODE = 'invalid_parameter_value';
        END;
        -- As the min_<space>_similarity argument: NaN or 2 would match nothing, silently.
        PERFORM check_real('semsql.min_' || p_space || '_similarity', floor, -1, 1);
        RETURN floor;
    END IF;
    SELECT vs.model INTO model FROM vector_spaces vs WHERE vs.space = p_space;
    -- MiniLM (text space), measured by bench/match_floor.py: the asset a real query means is
    -- 0.39 to 0.77 similar over the scikit-image samples (documents of file names alone) and
    -- 0.21 to 0.70 over the test catalog (captions, tags, people); the best match of random
    -- letters is at least 0.30 for 12 % of them over the samples, 0.7 % over the catalog. 0.30
    -- keeps 100 % and 93 % of the intended assets. CLIP ViT-B/32 (image space): not measured
    -- here (no weights offline); 0.2 lies between the similarities published for unrelated
    -- (about 0.15) and matching (0.25 to 0.35) text-image pairs.
    RETURN CASE
        WHEN p_space = 'text' AND lower(model) ~ 'all[-_]minilm[-_]l6[-_]v2' THEN 0.30
        WHEN p_space = 'image' AND lower(model) ~ 'clip-vit-base-patch32' THEN 0.2
    END;
END
$$;
COMMENT ON FUNCTION semsql.match_similarity(text) IS
    'The least cosine similarity to a query text at which a vector of this space (text, image) '
    'matches it in semsql.search: the setting semsql.min_<space>_similarity, else the value '
    'measured for the space''s default model, else NULL (a vector matches when it is among the '
    'search''s candidates best).';
