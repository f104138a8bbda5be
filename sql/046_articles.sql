-- Articles as queries: the people an article names, the sentences that carry its subject and
-- its keyphrases, which semsql.search(article => ...) embeds as several weighted query parts;
-- semsql.explain_query shows what a query or an article becomes. Sentence vectors come from
-- the worker in one request (semsql.embed_texts).

-- Many texts embedded in one request ------------------------------------------------------------
--
-- As semsql.embed_text (sql/030, whose comments explain the loopback connection), for a list:
-- the cached vectors are read, the others are filed in one dblink call and waited for there
-- together, so that the worker embeds them in one batch. SECURITY DEFINER: search_path is
-- pg_catalog, pg_temp and every semsql name is qualified.

CREATE OR REPLACE FUNCTION semsql.max_texts_per_request() RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The worker's batch (embedder/query_embeddings.py), well below max_waiting_queries().
    SELECT 64;
$$;
COMMENT ON FUNCTION semsql.max_texts_per_request() IS
    'The most texts one semsql.embed_texts call embeds.';

CREATE OR REPLACE FUNCTION semsql.embed_texts(
    queries text[], space text DEFAULT 'text', timeout interval DEFAULT '5 seconds'
) RETURNS text[]
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    asker text := session_user;
    deadline timestamptz := clock_timestamp() + timeout;
    digests text[];
    answers text[];
    waiting text[];
    request text := '';
    answer record;
BEGIN
    IF timeout < interval '0' OR timeout > interval '10 minutes' THEN
        RAISE EXCEPTION 'timeout must be between 0 and 10 minutes, not %', timeout
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF cardinality(queries) > semsql.max_texts_per_request() THEN
        RAISE EXCEPTION 'embed_texts embeds at most % texts at once, not %',
            semsql.max_texts_per_request(), cardinality(queries)
            USING ERRCODE = 'program_limit_exceeded';
    ELSIF array_position(queries, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'embed_texts cannot embed NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM semsql.check_query_text(embed_texts.space, q) FROM unnest(queries) AS q;
    digests := ARRAY(SELECT semsql.query_text_digest(q) FROM unnest(queries) WITH ORDINALITY AS u(q, i)
                     ORDER BY u.i);
    answers := ARRAY(SELECT c.embedding::text
                     FROM unnest(digests) WITH ORDINALITY AS d(digest, i)
                     LEFT JOIN semsql.query_embeddings c
                       ON c.space = embed_texts.space AND c.requested_by = asker
                      AND c.text_sha256 = d.digest AND c.embedding IS NOT NULL
                     ORDER BY d.i);
    waiting := ARRAY(SELECT DISTINCT digests[i] FROM generate_subscripts(answers, 1) AS i
                     WHERE answers[i] IS NULL);
    IF cardinality(waiting) = 0 THEN
        RETURN answers;
    END IF;
    PERFORM semsql.require_query_worker(embed_texts.space);
    SELECT string_agg(format('CALL semsql.request_query_embedding(%L, %L, %L); ',
                             embed_texts.space, queries[i], asker), '')
        INTO request
    FROM (SELECT DISTINCT ON (digests[i]) i FROM generate_subscripts(queries, 1) AS i
          WHERE answers[i] IS NULL) AS w;
    request := request || 'COMMIT; ';
    LOOP
        -- One connection awaits every answer in turn: the worker answers them in one batch.
        FOR answer IN
            SELECT r[1] AS digest, r[2] AS embedding, r[3] AS error
            FROM semsql.loopback_rows(request || format(
                'SELECT ARRAY[d.digest, a.embedding, a.error] FROM unnest(%L::text[]) AS d(digest) '
                'CROSS JOIN LATERAL semsql.await_query_embedding(%L, %L, d.digest, %L) AS a',
                waiting, embed_texts.space, asker,
                greatest(interval '0', least(interval '0.25 seconds', deadline - clock_timestamp()))))
                AS r
        LOOP
            IF answer.error IS NOT NULL THEN
                RAISE EXCEPTION 'semsql worker could not embed a text in the % space: %',
                    embed_texts.space, answer.error;
            END IF;
            IF answer.embedding IS NOT NULL THEN
                answers := ARRAY(SELECT CASE WHEN digests[i] = answer.digest THEN answer.embedding
                                             ELSE answers[i] END
                                 FROM generate_subscripts(digests, 1) AS i ORDER BY i);
            END IF;
        END LOOP;
        request := '';
        waiting := ARRAY(SELECT DISTINCT digests[i] FROM generate_subscripts(answers, 1) AS i
                         WHERE answers[i] IS NULL);
        EXIT WHEN cardinality(waiting) = 0;
        IF clock_timestamp() >= deadline THEN
            RAISE EXCEPTION 'no answer from `semsql worker` within % (space %)',
                timeout, embed_texts.space
                USING HINT = 'the worker may be busy or loading its models: try again, or pass '
                             'a longer timeout => interval';
        END IF;
    END LOOP;
    RETURN answers;
END
$$;
COMMENT ON FUNCTION semsql.embed_texts(text[], text, interval) IS
    'The vectors (as text, in the order of queries) of many texts in a space, from the caller''s '
    'cache or asked of a running `semsql worker` in one request, so that it embeds them in one '
    'batch; at most max_texts_per_request() texts, waiting at most timeout.';

CREATE OR REPLACE FUNCTION semsql.weighted_vector_sum(p_vectors vector[], p_weights real[])
RETURNS vector
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- Unit vectors, weighted: the cosine of the sum with a document is the weighted mean of the
    -- parts' cosines with it, up to a factor that is the same for every document.
    SELECT CASE WHEN count(*) > 0 THEN l2_normalize(array_agg(s.total ORDER BY s.d)::real[]::vector) END
    FROM (SELECT u.d, sum(u.x * w.weight) AS total
          FROM unnest(p_vectors, p_weights) AS w(v, weight)
          CROSS JOIN LATERAL unnest(l2_normalize(w.v)::real[]) WITH ORDINALITY AS u(x, d)
          WHERE w.v IS NOT NULL AND w.weight > 0
          GROUP BY u.d) AS s;
$$;
COMMENT ON FUNCTION semsql.weighted_vector_sum(vector[], real[]) IS
    'The unit vector of the weighted sum of unit vectors (NULL vectors and weights <= 0 left out; '
    'NULL when none is left).';

-- Reading an article ----------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.max_article_length() RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- A long feature is about 5,000 words.
    SELECT 40000;
$$;
COMMENT ON FUNCTION semsql.max_article_length() IS
    'The longest article (in characters) that semsql.search and explain_query read.';

CREATE OR REPLACE FUNCTION semsql.check_article(p_article text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF length(p_article) > max_article_length() THEN
        RAISE EXCEPTION 'the article is % characters long; an article has at most %',
            length(p_article), max_article_length()
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'pass the headline and the first paragraphs';
    END IF;
END
$$;
COMMENT ON FUNCTION semsql.check_article(text) IS
    'Raises program_limit_exceeded for an article longer than max_article_length().';

CREATE OR REPLACE FUNCTION semsql.article_sentences(article text)
RETURNS TABLE (sentence_number integer, sentence text, is_headline boolean)
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    body text := btrim(replace(article, E'\r', ''), E' \t\n');
    first_line text := btrim(split_part(body, E'\n', 1));
    headline text;
BEGIN
    PERFORM check_article(article);
    -- A short first line of its own (no full stop at its end) is the headline; otherwise the
    -- first sentence stands in for it.
    IF position(E'\n' IN body) > 0 AND first_line <> ''
       AND cardinality(regexp_split_to_array(first_line, '\s+')) <= 25
       AND first_line !~ '[.]$' THEN
        headline := first_line;
        body := substr(body, length(split_part(body, E'\n', 1)) + 2);
    END IF;
    RETURN QUERY
    WITH pieces AS (
        SELECT headline AS piece, 0::bigint AS n WHERE headline IS NOT NULL
        UNION ALL
        -- A sentence ends at . ! ? (and closing quotes) before white space and a capital,
        -- a digit or an opening quote; paragraphs (blank lines, line breaks) end them too.
        SELECT s.piece, s.n
        FROM regexp_split_to_table(body,
                 '(?:(?<=[.!?])|(?<=[.!?]["”’)]))\s+(?=["“‘(]?[[:upper:][:digit:]])|\n\s*\n|\n')
             WITH ORDINALITY AS s(piece, n)),
    cleaned AS (
        SELECT btrim(regexp_replace(p.piece, '\s+', ' ', 'g')) AS piece, p.n FROM pieces p)
    SELECT (row_number() OVER (ORDER BY c.n))::integer, left(c.piece, 1000),
           headline IS NOT NULL AND c.n = 0 OR headline IS NULL AND c.n = 1
    FROM cleaned c
    WHERE c.piece ~ '[[:alpha:]]'
    ORDER BY c.n;
END
$$;
COMMENT ON FUNCTION semsql.article_sentences(text) IS
    'The sentences of an article in order (at most 1,000 characters each); is_headline marks its '
    'first line when that is short and stands alone, else its first sentence.';

CREATE OR REPLACE FUNCTION semsql.article_words(article text)
RETURNS TABLE (word_number integer, word text, normalized text, starts_sentence boolean,
               possessive boolean)
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- Words are letters with inner apostrophes and hyphens (O'Brien, Jean-Luc); a trailing 's
    -- or ' is the possessive, which the normalized word drops.
    SELECT m.n::integer, m.t[2],
           regexp_replace(lower(m.t[2]), '[''-]+s?$', ''),
           m.t[1] IS NOT NULL,
           m.t[2] ~ '[a-zA-Z]''s?$'
    FROM regexp_matches(replace(article, '’', ''''),
                        '((?:^|[.!?:]["”)]*\s+|\n)\s*)?([[:alpha:]][[:alpha:]''-]*)', 'g')
         WITH ORDINALITY AS m(t, n);
$$;
COMMENT ON FUNCTION semsql.article_words(text) IS
    'The words of a text in order: as written, normalized (lower case, possessive dropped), '
    'whether each begins a sentence and whether it is a possessive.';

CREATE OR REPLACE FUNCTION semsql.article_people(article text)
RETURNS TABLE (person_id bigint, name text, matched_text text, how text, mentions integer)
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM check_article(article);
    -- Every run of 1 to 4 words equal to a person's whole name, in any case and possessive or
    -- not (exact words: "Anna Lima" is not "Ana Lima"). A name of one word is also a common word
    -- often (Grace, Will, Hope): it counts only capitalised, and at the start of a sentence only
    -- as a possessive. Of overlapping runs the longest wins (Jo Parker over Jo Park's first
    -- word, were there a person Jo).
    RETURN QUERY
    WITH words AS (
        SELECT w.*, ARRAY[w.normalized, lead(w.normalized, 1) OVER next,
                          lead(w.normalized, 2) OVER next, lead(w.normalized, 3) OVER next]
                        AS following,
               ARRAY[w.word, lead(w.word, 1) OVER next, lead(w.word, 2) OVER next,
                     lead(w.word, 3) OVER next] AS written,
               ARRAY[w.possessive, lead(w.possessive, 1) OVER next, lead(w.possessive, 2) OVER next,
                     lead(w.possessive, 3) OVER next] AS possessives
        FROM article_words(article) AS w
        WINDOW next AS (ORDER BY w.word_number)),
    spans AS (
        SELECT w.word_number AS first_word, w.word_number + len - 1 AS last_word, len,
               array_to_string(w.following[1:len], ' ') AS span,
               array_to_string(w.written[1:len], ' ') AS written,
               w.possessives[len] AS possessive, w.starts_sentence, w.word
        FROM words w CROSS JOIN generate_series(1, 4) AS len
        WHERE w.following[len] IS NOT NULL
          -- No possessive inside a name: "Ana's Lima" is not Ana Lima.
          AND NOT coalesce(true = ANY (w.possessives[1:len - 1]), false)),
    found AS (
        SELECT p.id, p.name, s.*
        FROM spans s
        JOIN people p ON lower(p.name) = s.span
        WHERE s.len > 1
           OR s.word ~ '^[[:upper:]]' AND (NOT s.starts_sentence OR s.possessive)),
    kept AS (
        SELECT f.* FROM found f
        WHERE NOT EXISTS (SELECT 1 FROM found o
                          WHERE o.first_word <= f.first_word AND o.last_word >= f.last_word
                            AND o.len > f.len))
    SELECT k.id, min(k.name),
           (array_agg(k.written ORDER BY k.first_word))[1],
           concat_ws(', ',
                     CASE WHEN bool_or(regexp_replace(k.written, '''s?$', '') = k.name)
                          THEN 'as written' END,
                     CASE WHEN bool_or(regexp_replace(k.written, '''s?$', '') <> k.name)
                          THEN 'in another case' END,
                     CASE WHEN bool_or(k.possessive) THEN 'possessive' END,
                     CASE WHEN min(k.len) = 1 THEN 'one-word name, capitalised' END),
           count(*)::integer
    FROM kept k
    GROUP BY k.id
    ORDER BY min(k.first_word);
END
$$;
COMMENT ON FUNCTION semsql.article_people(text) IS
    'The known people (semsql.people) an article names: whole names in any case, possessive or '
    'not (a one-word name only capitalised), with the first mention, how it matched and how often.';

CREATE OR REPLACE FUNCTION semsql.without_names(p_text text, p_names text[]) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- A name filters or boosts; its words would only pull the vector towards other people of
    -- that name. Each name's words (any case; one-word names as written) and a possessive go.
    SELECT btrim(regexp_replace(regexp_replace(coalesce((
        SELECT r.result FROM (
            WITH RECURSIVE strip(i, result) AS (
                SELECT 0, replace(p_text, '’', '''')
                UNION ALL
                SELECT s.i + 1, regexp_replace(s.result,
                    '\m' || array_to_string(ARRAY(
                        SELECT regexp_replace(w, '([.^$*+?()[\]{}|\\-])', '\\\1', 'g')
                        FROM regexp_split_to_table(btrim(p_names[s.i + 1]), '\s+') AS w), '\s+')
                        || '(?:''s?)?(?![[:alnum:]])',
                    '', CASE WHEN btrim(p_names[s.i + 1]) ~ '\s' THEN 'gi' ELSE 'g' END)
                FROM strip s WHERE s.i < coalesce(cardinality(p_names), 0))
            SELECT st.result FROM strip st ORDER BY st.i DESC LIMIT 1) AS r), p_text),
        '\s+([,.;:!?])', '\1', 'g'), '^[\s,.;:!?–—-]+|\s{2,}', ' ', 'g'));
$$;
COMMENT ON FUNCTION semsql.without_names(text, text[]) IS
    'A text with the given names (and their possessives) taken out.';

CREATE OR REPLACE FUNCTION semsql.article_keyphrases(p_headline text, p_body text, p_count integer DEFAULT 5)
RETURNS TABLE (lexeme text, word text, score real)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- The lexemes said most often (English stems, stop words dropped), a headline's thrice, and
    -- each with the word that first said it; one not in the headline must be said three times
    -- (twice is what filler does: "said", "city").
    WITH counted AS (
        SELECT t.lexeme, sum(CASE w.weight WHEN 'A' THEN 3 ELSE 1 END)::real AS score,
               bool_or(w.weight = 'A') AS in_headline
        FROM unnest(setweight(to_tsvector('pg_catalog.english', coalesce(p_headline, '')), 'A')
                    || to_tsvector('pg_catalog.english', coalesce(p_body, ''))) AS t
        CROSS JOIN LATERAL unnest(t.weights) AS w(weight)
        WHERE length(t.lexeme) >= 3 AND t.lexeme !~ '\d'
        GROUP BY t.lexeme),
    picked AS (
        SELECT c.* FROM counted c WHERE c.in_headline OR c.score >= 3
        ORDER BY c.score DESC, c.lexeme LIMIT p_count),
    said AS (
        SELECT DISTINCT ON (l.lexeme) l.lexeme, lower(w.word) AS word
        FROM regexp_split_to_table(coalesce(p_headline, '') || ' ' || coalesce(p_body, ''),
                                   '[^[:alpha:]''-]+') WITH ORDINALITY AS w(word, n)
        CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('pg_catalog.english', w.word))) AS l(lexeme)
        WHERE l.lexeme IN (SELECT p.lexeme FROM picked p)
        ORDER BY l.lexeme, w.n)
    SELECT p.lexeme, coalesce(s.word, p.lexeme), p.score
    FROM picked p LEFT JOIN said s ON s.lexeme = p.lexeme
    ORDER BY p.score DESC, p.lexeme;
$$;
COMMENT ON FUNCTION semsql.article_keyphrases(text, text, integer) IS
    'The p_count keyphrases of an article: lexemes by how often they are said (in the headline '
    'thrice), each with the word that first said it.';

-- The parts of an article's query ---------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.article_texts(
    article text, summary text DEFAULT NULL,
    OUT texts text[], OUT headline_at integer, OUT sentence_count integer,
    OUT kw_lexemes text[], OUT kw_words text[], OUT kw_scores real[]
)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    names text[];
    sentences text[];
    keyphrase text;
BEGIN
    PERFORM check_article(article);
    PERFORM check_article(summary);
    names := ARRAY(SELECT p.name FROM article_people(article) AS p);
    SELECT array_agg(without_names(s.sentence, names) ORDER BY s.sentence_number),
           min(s.sentence_number) FILTER (WHERE s.is_headline)
        INTO sentences, headline_at
    FROM article_sentences(article) AS s;
    IF sentences IS NULL THEN
        RETURN;  -- no sentence: NULLs
    END IF;
    IF nullif(btrim(summary), '') IS NOT NULL THEN
        -- A summary replaces the extraction: the headline and its sentences.
        sentences := sentences[headline_at:headline_at] || ARRAY(
            SELECT without_names(s.sentence, names) FROM article_sentences(summary) AS s
            ORDER BY s.sentence_number);
        headline_at := 1;
    END IF;
    sentences := sentences[1:max_texts_per_request() - 1];
    SELECT array_agg(k.lexeme ORDER BY k.score DESC, k.lexeme),
           array_agg(k.word ORDER BY k.score DESC, k.lexeme),
           array_agg(k.score ORDER BY k.score DESC, k.lexeme)
        INTO kw_lexemes, kw_words, kw_scores
    FROM article_keyphrases(sentences[headline_at],
                            array_to_string(sentences[headline_at + 1:], ' ')) AS k;
    keyphrase := array_to_string(kw_words, ' ');
    -- A sentence that was a name alone is left empty (a dash): it still holds its place.
    texts := ARRAY(SELECT coalesce(nullif(t, ''), '-') FROM unnest(sentences) AS t);
    IF keyphrase IS NOT NULL THEN
        texts := texts || keyphrase;
    END IF;
    sentence_count := cardinality(sentences);
END
$$;
COMMENT ON FUNCTION semsql.article_texts(text, text) IS
    'The texts of an article that semsql.article_parts embeds, in order: its sentences (or the '
    'headline and a summary''s sentences) with known people''s names taken out, then its keyphrases '
    'joined; which is the headline, how many are sentences, and the keyphrases (lexeme, the word '
    'that said it, score).';

CREATE OR REPLACE FUNCTION semsql.article_parts(
    article text, summary text DEFAULT NULL, spaces text[] DEFAULT ARRAY['text']
) RETURNS TABLE (kind text, part text, weight real, detail text, lexeme text,
                 text_vector vector, image_vector vector)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    headline_weight constant real := 1.0;
    sentence_weight constant real := 0.6;
    keyphrase_weight constant real := 0.4;
    picks constant integer := 3;
    lead_bonus constant real := 0.1;
    diversity constant real := 0.3;
    pieces record;
    sentence_count integer;
    headline_at integer;
    texts text[];
    vectors vector[];
    kw_lexemes text[];
    kw_words text[];
    kw_scores real[];
    keyphrase text;
    keyphrase_lexemes text;
    centrality real[];
    chosen integer[] := '{}';
    reasons text[] := '{}';
    best integer;
    best_score real;
    candidate_score real;
    text_dims integer := (SELECT vs.dims FROM vector_spaces vs WHERE vs.space = 'text');
    image_dims integer := (SELECT vs.dims FROM vector_spaces vs WHERE vs.space = 'image');
    image_vectors vector[];
    subject vector;
    average_centrality real;
    i integer;
BEGIN
    PERFORM check_article(article);
    PERFORM check_article(summary);
    SELECT * INTO pieces FROM article_texts(article, summary);
    IF pieces.texts IS NULL THEN
        RETURN;
    END IF;
    texts := pieces.texts;
    headline_at := pieces.headline_at;
    sentence_count := pieces.sentence_count;
    kw_lexemes := pieces.kw_lexemes;
    kw_words := pieces.kw_words;
    kw_scores := pieces.kw_scores;
    keyphrase := CASE WHEN cardinality(texts) > sentence_count THEN texts[cardinality(texts)] END;
    keyphrase_lexemes := array_to_string(kw_lexemes, ', ');

    IF text_dims IS NOT NULL AND 'text' = ANY (spaces) THEN
        BEGIN
            vectors := embed_texts(texts, 'text')::vector[];
            IF vector_dims(vectors[1]) <> text_dims THEN
                RAISE NOTICE 'search leaves out the text signal: the query vectors have % '
                             'dimensions, the stored vectors %', vector_dims(vectors[1]), text_dims;
                vectors := NULL;
            END IF;
        EXCEPTION WHEN object_not_in_prerequisite_state OR raise_exception THEN
            RAISE NOTICE 'search leaves out the text signal: %', SQLERRM;
            vectors := NULL;
        END;
    END IF;

    -- The headline first, then the sentences most central to the article's subject: the mean
    -- of its sentence vectors with the headline as heavy as all the others together (news
    -- states its subject there; filler, however much of it, is only half). The lead's first
    -- two count a little more; each pick is less what it repeats of the sentences picked
    -- before it, and one less central than the average sentence is filler. Without vectors:
    -- the lead.
    chosen := ARRAY[headline_at];
    reasons := ARRAY['headline'];
    IF nullif(btrim(summary), '') IS NOT NULL THEN
        chosen := ARRAY(SELECT g FROM generate_series(1, sentence_count) AS g);
        reasons := ARRAY['headline'] || array_fill('summary'::text, ARRAY[sentence_count - 1]);
    ELSIF vectors IS NULL THEN
        FOR i IN headline_at + 1 .. least(headline_at + picks, sentence_count) LOOP
            chosen := chosen || i;
            reasons := reasons || 'lead (no sentence vectors)'::text;
        END LOOP;
    ELSE
        subject := weighted_vector_sum(
            vectors[1:sentence_count],
            ARRAY(SELECT CASE WHEN g = headline_at THEN greatest(sentence_count - 1, 1)::real
                              ELSE 1 END
                  FROM generate_series(1, sentence_count) AS g));
        centrality := ARRAY(SELECT (1 - (v <=> subject))::real
                            FROM unnest(vectors[1:sentence_count]) WITH ORDINALITY AS u(v, n)
                            ORDER BY u.n);
        average_centrality := (SELECT avg(c) FROM unnest(centrality) AS c);
        FOR pick IN 1 .. picks LOOP
            best := NULL;
            FOR i IN 1 .. sentence_count LOOP
                CONTINUE WHEN i = ANY (chosen) OR centrality[i] < average_centrality;
                candidate_score := centrality[i]
                    + CASE WHEN i - headline_at BETWEEN 1 AND 2 THEN lead_bonus ELSE 0 END
                    - diversity * coalesce((SELECT max(1 - (vectors[i] <=> vectors[c]))
                                            FROM unnest(chosen[2:]) AS c), 0);
                IF best IS NULL OR candidate_score > best_score THEN
                    best := i;
                    best_score := candidate_score;
                END IF;
            END LOOP;
            EXIT WHEN best IS NULL;
            chosen := chosen || best;
            reasons := reasons || format('sentence %s, centrality %s', best,
                                         round(centrality[best]::numeric, 2));
        END LOOP;
    END IF;

    IF image_dims IS NOT NULL AND 'image' = ANY (spaces) THEN
        BEGIN
            image_vectors := embed_texts(
                ARRAY(SELECT texts[c] FROM unnest(chosen) AS c)
                    || CASE WHEN keyphrase IS NOT NULL THEN ARRAY[keyphrase] ELSE '{}' END,
                'image')::vector[];
            IF vector_dims(image_vectors[1]) <> image_dims THEN
                RAISE NOTICE 'search leaves out the image signal: the query vectors have % '
                             'dimensions, the stored vectors %', vector_dims(image_vectors[1]),
                             image_dims;
                image_vectors := NULL;
            END IF;
        EXCEPTION WHEN object_not_in_prerequisite_state OR raise_exception THEN
            RAISE NOTICE 'search leaves out the image signal: %', SQLERRM;
            image_vectors := NULL;
        END;
    END IF;

    RETURN QUERY
    SELECT CASE WHEN c.n = 1 THEN 'headline' WHEN reasons[c.n] = 'summary' THEN 'summary'
                ELSE 'sentence' END,
           texts[c.i],
           CASE WHEN c.n = 1 THEN headline_weight ELSE sentence_weight END,
           reasons[c.n], NULL::text, vectors[c.i], image_vectors[c.n]
    FROM unnest(chosen) WITH ORDINALITY AS c(i, n)
    UNION ALL
    SELECT 'keyphrases', keyphrase, keyphrase_weight, 'lexemes: ' || keyphrase_lexemes, NULL,
           vectors[cardinality(texts)], image_vectors[cardinality(chosen) + 1]
    WHERE keyphrase IS NOT NULL
    UNION ALL
    SELECT 'keyword', k.word, k.score, format('score %s (1 a mention, 3 in the headline)', k.score),
           k.lexeme,
           NULL, NULL
    FROM unnest(kw_lexemes, kw_words, kw_scores) AS k(lexeme, word, score);
END
$$;
COMMENT ON FUNCTION semsql.article_parts(text, text, text[]) IS
    'The query parts of an article, with their weights: its headline (highest), the sentences most '
    'central to it and diverse (or a given summary''s sentences), and its keyphrases, with known '
    'people''s names taken out; and their vectors in the spaces asked for (from the worker, in '
    'one request per space; NULL with a notice when none answers).';

CREATE OR REPLACE FUNCTION semsql.article_query(
    article text, summary text, names text, people_given boolean, want_text boolean,
    want_image boolean,
    OUT person_ids bigint[], OUT found_names text, OUT filters boolean, OUT text_vector vector,
    OUT image_vector vector, OUT lexemes text[]
)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    -- The people named filter (any of them) unless names => boost, or the people argument
    -- filters already; then they boost.
    IF names <> 'off' THEN
        SELECT array_agg(p.person_id), string_agg(p.name, ', ') INTO person_ids, found_names
        FROM article_people(article) AS p;
    END IF;
    filters := names = 'filter' AND NOT coalesce(people_given, false);
    -- The parts' vectors, fused: the weighted sum of unit vectors ranks documents as the weighted
    -- mean of the parts' cosines would, in one index scan instead of one per part.
    SELECT weighted_vector_sum(array_agg(p.text_vector), array_agg(p.weight)),
           weighted_vector_sum(array_agg(p.image_vector), array_agg(p.weight)),
           array_agg(p.lexeme) FILTER (WHERE p.kind = 'keyword')
        INTO text_vector, image_vector, lexemes
    FROM article_parts(article, summary,
                       array_remove(ARRAY[CASE WHEN want_text THEN 'text' END,
                                          CASE WHEN want_image THEN 'image' END], NULL)) AS p;
END
$$;
COMMENT ON FUNCTION semsql.article_query(text, text, text, boolean, boolean, boolean) IS
    'What semsql.search makes of an article: the ids and names of the people it names, whether '
    'they filter (else boost), the fused text and image vectors of its parts (semsql.article_parts) '
    'and its keyphrase lexemes.';

-- What a query becomes --------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.explain_query(
    query text DEFAULT NULL, article text DEFAULT NULL, article_summary text DEFAULT NULL,
    exclude text DEFAULT NULL, names text DEFAULT 'filter', people text[] DEFAULT NULL
) RETURNS TABLE (kind text, item text, weight real, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    person_role text := CASE names WHEN 'filter' THEN
                            CASE WHEN article IS NOT NULL
                                 THEN 'filter: only assets showing one of the people named'
                                 ELSE 'filter: only assets showing every person named' END
                        ELSE 'boost: assets showing them rank higher' END;
    semantic text := nullif(btrim(query), '');
    recognised record;
    embedded boolean;
BEGIN
    IF nullif(btrim(query), '') IS NOT NULL AND nullif(btrim(article), '') IS NOT NULL THEN
        RAISE EXCEPTION 'pass query or article, not both' USING ERRCODE = 'invalid_parameter_value';
    ELSIF names IS NULL OR names NOT IN ('filter', 'boost', 'off') THEN
        RAISE EXCEPTION 'names takes filter, boost or off, not %', names
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM check_query_text('text', query);
    PERFORM check_query_text('text', exclude);
    IF article IS NOT NULL AND cardinality(people) > 0 AND names = 'filter' THEN
        person_role := 'boost: the people argument filters already';
    END IF;
    IF nullif(btrim(article), '') IS NOT NULL THEN
        IF names <> 'off' THEN
            RETURN QUERY
            SELECT 'person', p.name, NULL::real,
                   format('matched "%s" (%s), %s mention(s); %s', p.matched_text, p.how,
                          p.mentions, person_role)
            FROM article_people(article) AS p;
        END IF;
        embedded := false;
        FOR recognised IN SELECT * FROM article_parts(article, article_summary) LOOP
            embedded := embedded OR recognised.text_vector IS NOT NULL;
            kind := CASE recognised.kind WHEN 'keyword' THEN 'keyword' ELSE 'part' END;
            item := recognised.part;
            weight := recognised.weight;
            detail := CASE recognised.kind
                          WHEN 'keyword' THEN format('lexeme %s, %s', recognised.lexeme,
                                                     recognised.detail)
                          ELSE recognised.kind || ': ' || recognised.detail END;
            RETURN NEXT;
        END LOOP;
        IF NOT embedded THEN
            kind := 'note';
            item := 'no sentence vectors';
            weight := NULL;
            detail := 'no `semsql worker` embedded the sentences: the lead stands in for the '
                      'central sentences, and search has no text vector';
            RETURN NEXT;
        END IF;
    ELSIF semantic IS NOT NULL THEN
        IF names <> 'off' THEN
            FOR recognised IN SELECT * FROM match_people(query) LOOP
                kind := 'person';
                item := recognised.name;
                weight := NULL;
                detail := format('matched "%s" (similarity %s); %s', recognised.matched_text,
                                 round(recognised.similarity::numeric, 2),
                                 CASE WHEN cardinality(people) > 0 AND names = 'filter'
                                      THEN 'filter, with the people argument'
                                      ELSE person_role END);
                RETURN NEXT;
                semantic := (SELECT string_agg(w.word, ' ' ORDER BY w.word_number)
                             FROM query_words(semantic) AS w
                             WHERE lower(w.word) <> ALL (
                                 SELECT lower(x) FROM regexp_split_to_table(recognised.matched_text, '\s+') AS x)
                               AND w.word ~ '\w');
            END LOOP;
        END IF;
        kind := 'part';
        item := coalesce(semantic, btrim(query));
        weight := 1;
        detail := 'query: embedded whole (text and image vectors)';
        RETURN NEXT;
        RETURN QUERY
        SELECT 'keyword', l, 1::real, 'lexeme of the query: any of them matches'
        FROM unnest(query_lexemes(query)) AS l;
    END IF;
    IF nullif(btrim(exclude), '') IS NOT NULL THEN
        kind := 'exclude';
        item := btrim(exclude);
        weight := NULL;
        detail := 'pushed away: its text and image vectors, and its lexemes '
                  || coalesce(array_to_string(query_lexemes(exclude), ', '), '(none)');
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION semsql.explain_query(text, text, text, text, text, text[]) IS
    'What semsql.search does with a query text or an article: the people it names and how they '
    'matched (person), the texts it embeds with their weights (part), its keywords (keyword), what '
    'exclude pushes away (exclude), and notes. Takes the search arguments that change these.';
