-- What is derived from an asset's facts (captions, tags, faces, people and the asset's own
-- columns), kept on one path: the search document (one row per asset with its filters, keyword
-- tsvector and display columns), the asset document text that the text vector embeds, and that
-- text's hash.
--
-- A write to a fact table only marks its assets stale (semsql.mark_stale, per statement). When
-- the writing transaction commits, one deferred trigger rebuilds the assets it marked, each
-- once, in one set (semsql.rebuild_assets), and queues the document stages (text) of an asset
-- again only when the new text's hash differs from its vector's input hash.
-- `SET CONSTRAINTS semsql.search_documents_stale_refresh IMMEDIATE` rebuilds the marked ones now.

-- Names as words ------------------------------------------------------------------------------------
--
-- An asset's file name, its folder's name (when that is not the folder ingested, which every
-- asset of the ingest shares) and its title and headline are part of its document: keywords, and
-- text that the text vector embeds.

CREATE OR REPLACE FUNCTION semsql.percent_decode_char(p_escapes text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    RETURN convert_from(decode(replace(p_escapes, '%', ''), 'hex'), 'UTF8');
EXCEPTION
    -- Bytes that are not UTF-8 (a file:// URI of a name that is not) or NUL: a separator.
    WHEN character_not_in_repertoire OR untranslatable_character THEN
        RETURN ' ';
END
$$;
COMMENT ON FUNCTION semsql.percent_decode_char(text) IS
    'The character that these %XX escapes (one UTF-8 sequence) encode, or a space when they '
    'are not one (a lone or stray byte, NUL).';

CREATE OR REPLACE FUNCTION semsql.percent_decode(p_text text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF strpos(p_text, '%') = 0 THEN
        RETURN p_text;
    END IF;
    -- One character at a time (a UTF-8 lead byte with as many continuation bytes as it says,
    -- else one byte), so that a byte that is not UTF-8 spoils only itself.
    RETURN (SELECT string_agg(CASE WHEN r.m[1] IS NOT NULL THEN percent_decode_char(r.m[1])
                                   ELSE r.m[2] END, '' ORDER BY r.n)
            FROM regexp_matches(p_text,
                                '(%[CDcd][0-9A-Fa-f]%[89ABab][0-9A-Fa-f]'
                                '|%[Ee][0-9A-Fa-f](?:%[89ABab][0-9A-Fa-f]){2}'
                                '|%[Ff][0-9A-Fa-f](?:%[89ABab][0-9A-Fa-f]){3}'
                                '|%[0-9A-Fa-f]{2})|([^%]+|%)', 'g')
                 WITH ORDINALITY AS r(m, n));
END
$$;
COMMENT ON FUNCTION semsql.percent_decode(text) IS
    'A URL path segment with its %XX escapes decoded as UTF-8 (escapes of bytes that are not '
    'UTF-8, and NUL, become spaces, each alone).';

CREATE OR REPLACE FUNCTION semsql.name_words(p_name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- Split at camelCase ("GraceHopper", "HTMLPage") and before digits ("photo2019"), never
    -- after them ("3D", "1st"); ASCII punctuation and white space separate words.
    SELECT nullif(btrim(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
               p_name,
               '([a-z])([A-Z])', '\1 \2', 'g'),
               '([A-Z]+)([A-Z][a-z])', '\1 \2', 'g'),
               '([^0-9\s])([0-9])', '\1 \2', 'g'),
               '[\s_.,;:!?()\[\]{}<>''"`+=&~^$@#%*/\\|-]+', ' ', 'g')), '');
$$;
COMMENT ON FUNCTION semsql.name_words(text) IS
    'The words of a file or folder name: grace_hopper -> grace hopper, GraceHopper2019 -> Grace '
    'Hopper 2019; NULL when it has none.';

CREATE OR REPLACE FUNCTION semsql.asset_name_words(
    p_uri text, p_root text, OUT file_name text, OUT folder text
)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- A URL's (or file:// URI's) last path segment, without its query and fragment; of a path,
    -- its file name and its folder's name. Either without its extension.
    SELECT name_words(regexp_replace(
               CASE WHEN s.is_url THEN percent_decode(s.segments[cardinality(s.segments)])
                    ELSE s.segments[cardinality(s.segments)] END,
               '(.)\.[^.]*$', '\1')),
           CASE WHEN NOT s.is_url AND cardinality(s.segments) > 1
                     AND s.parent IS DISTINCT FROM rtrim(p_root, '/')
                THEN name_words(s.segments[cardinality(s.segments) - 1]) END
    FROM (SELECT u.is_url,
                 array_remove(string_to_array(u.path, '/'), '') AS segments,
                 nullif(regexp_replace(u.path, '/+[^/]*/*$', ''), '') AS parent
          FROM (SELECT p_uri ~ '^[A-Za-z][A-Za-z0-9+.-]*:' AS is_url,
                       CASE WHEN p_uri ~ '^[A-Za-z][A-Za-z0-9+.-]*:'
                            THEN regexp_replace(regexp_replace(p_uri, '[?#].*$', ''),
                                                '^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?', '')
                            ELSE p_uri END AS path) AS u) AS s;
$$;
COMMENT ON FUNCTION semsql.asset_name_words(text, text) IS
    'The words of an asset''s file name (a URL''s last path segment) and of its folder''s name '
    '(a path''s only, and not when that folder is the asset''s root, the folder ingested).';

-- Everything derived, from scratch ----------------------------------------------------------------
--
-- derived_state and rebuild_assets use generic plans: ingest rebuilds one asset at a time, and
-- planning these statements for each call took longer than running them. Their plan is the
-- same for any number of assets (index scans per asset, the LATERAL aggregates per asset).

CREATE OR REPLACE FUNCTION semsql.derived_state(p_asset_ids bigint[])
RETURNS TABLE (asset_id bigint, collection text, uri text, taken_at timestamptz, tags text[],
               emotions text[], people bigint[], document tsvector, caption text,
               labels text[], people_names text[], document_text text, text_sha256 text,
               media_type text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
    SELECT a.id, a.collection, a.uri, a.taken_at, t.tags, f.emotions, p.people,
           setweight(to_tsvector('pg_catalog.english',
                                 concat_ws(' ', n.title, n.headline, c.captions,
                                           array_to_string(p.people_names, ' '))),
                     'A')
           || setweight(to_tsvector('pg_catalog.english', array_to_string(t.tags, ' ')), 'B')
           || setweight(to_tsvector('pg_catalog.english', array_to_string(f.emotions, ' ')), 'C')
           || setweight(to_tsvector('pg_catalog.english', concat_ws(' ', n.file_name, n.folder)),
                        'D'),
           c.caption, t.labels, p.people_names, x.document_text,
           encode(sha256(convert_to(x.document_text, 'UTF8')), 'hex'), a.media_type
    FROM assets a
    CROSS JOIN LATERAL (
        -- The title and headline (metadata strings, from the file's EXIF/IPTC/XMP or a
        -- manifest), the headline only when it says more than the title; the name's words.
        SELECT m.title, nullif(m.headline, m.title) AS headline, w.file_name, w.folder
        FROM (SELECT CASE WHEN jsonb_typeof(a.metadata -> 'title') = 'string'
                          THEN nullif(btrim(a.metadata ->> 'title'), '') END AS title,
                     CASE WHEN jsonb_typeof(a.metadata -> 'headline') = 'string'
                          THEN nullif(btrim(a.metadata ->> 'headline'), '') END AS headline
             ) AS m
        CROSS JOIN LATERAL asset_name_words(a.uri, a.root) AS w
    ) AS n
    CROSS JOIN LATERAL (
        -- The user's caption first, then the models' (by source); shown: the user's, else the
        -- newest model caption.
        SELECT string_agg(cp.text, ' ' ORDER BY cp.source) AS captions,
               (array_agg(cp.text ORDER BY cp.source <> 'user', cp.created_at DESC, cp.source))[1]
                   AS caption,
               string_agg(rtrim(btrim(cp.text), '.') || '.', ' '
                          ORDER BY cp.source <> 'user', cp.source)
                   FILTER (WHERE btrim(cp.text) <> '') AS sentences
        FROM captions cp WHERE cp.asset_id = a.id
    ) AS c
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(DISTINCT lower(e.emotion)), '{}') AS emotions,
               string_agg(e.emotion, ', ' ORDER BY e.n DESC, e.emotion) AS listed
        FROM (SELECT fc.emotion, count(*) AS n FROM faces fc
              WHERE fc.asset_id = a.id AND fc.emotion IS NOT NULL GROUP BY fc.emotion) AS e
    ) AS f
    CROSS JOIN LATERAL (
        -- One per lower-case label, as written (the least spelling), the most confident first.
        SELECT coalesce(array_agg(l.label ORDER BY l.best DESC, l.label), '{}') AS labels,
               coalesce(array_agg(lower(l.label) ORDER BY lower(l.label)), '{}') AS tags
        FROM (SELECT min(tg.label) AS label, max(coalesce(tg.confidence, 1)) AS best
              FROM tags tg WHERE tg.asset_id = a.id GROUP BY lower(tg.label)) AS l
    ) AS t
    CROSS JOIN LATERAL (
        -- Stated (asset_people) or recognised (faces).
        SELECT coalesce(array_agg(pe.id ORDER BY pe.id), '{}') AS people,
               coalesce(array_agg(pe.name ORDER BY pe.name), '{}') AS people_names
        FROM people pe
        WHERE pe.id IN (SELECT ap.person_id FROM asset_people ap WHERE ap.asset_id = a.id
                        UNION
                        SELECT fc.person_id FROM faces fc WHERE fc.asset_id = a.id)
    ) AS p
    CROSS JOIN LATERAL (
        SELECT concat_ws(' ', rtrim(n.title, '.') || '.', rtrim(n.headline, '.') || '.',
                         c.sentences,
                         'Tags: ' || nullif(array_to_string(t.labels, ', '), '') || '.',
                         'Emotions: ' || f.listed || '.',
                         'People: ' || nullif(array_to_string(p.people_names, ', '), '') || '.',
                         'File: ' || n.file_name || '.',
                         'Folder: ' || n.folder || '.')
                   AS document_text
    ) AS x
    WHERE a.id = ANY (p_asset_ids);
$$;
COMMENT ON FUNCTION semsql.derived_state(bigint[]) IS
    'Everything derived from these assets'' facts, built from scratch: their search document '
    'columns, their document text (what the text vector embeds) and its hex SHA-256. The facts '
    'are the captions, tags, faces, people, and of the asset itself its collection, uri, root, '
    'date taken and metadata title and headline (the uri''s file and folder names are words).';

-- The asset document: what the text vector is made of -------------------------------------------

CREATE OR REPLACE FUNCTION semsql.asset_documents(p_asset_ids bigint[])
RETURNS TABLE (asset_id bigint, document text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT d.asset_id, d.document_text FROM derived_state(p_asset_ids) d;
$$;
COMMENT ON FUNCTION semsql.asset_documents(bigint[]) IS
    'The text that the text vector embeds, per asset: title and headline, captions, tags, facial '
    'emotions, people shown, file and folder name.';

CREATE OR REPLACE FUNCTION semsql.asset_document(p_asset_id bigint) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT document FROM asset_documents(ARRAY[p_asset_id]);
$$;
COMMENT ON FUNCTION semsql.asset_document(bigint) IS
    'The text that the asset''s text vector embeds: title and headline, captions, tags, facial '
    'emotions, people shown, file and folder name.';

-- The rebuild ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.rebuild_assets(p_asset_ids bigint[], p_requeue boolean DEFAULT true)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    changed integer;
    due_stages text[];
    due_assets bigint[];
    due_stage text;
    pending_changed boolean;
BEGIN
    IF coalesce(cardinality(p_asset_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    -- Locks, in the order every writer takes them (a transaction that finishes tasks locks its
    -- task rows before it reads documents): waiting here, not in the INSERT, lets the INSERT's
    -- snapshot (a new one per statement, in READ COMMITTED) see what the other wrote.
    -- 1. The people the assets show: a rename in flight is waited for, so that one of the two
    --    transactions sees the other's write (a rename marks only the links it can see).
    PERFORM 1 FROM people p
    WHERE p.id IN (SELECT ap.person_id FROM asset_people ap WHERE ap.asset_id = ANY (p_asset_ids)
                   UNION
                   SELECT fc.person_id FROM faces fc WHERE fc.asset_id = ANY (p_asset_ids))
    ORDER BY p.id FOR SHARE;
    -- 2. The tasks of the stages that read the document: a pending one cannot be claimed (and
    --    its old text read) until this commits; a running one is seen as running, and reruns.
    IF p_requeue THEN
        PERFORM 1 FROM tasks t JOIN stages st ON st.name = t.stage AND st.reads = 'document'
        WHERE t.asset_id = ANY (p_asset_ids)
        ORDER BY t.id FOR UPDATE OF t;
    END IF;
    -- 3. The documents, held by a transaction rebuilding the same assets until it commits.
    PERFORM 1 FROM search_documents d WHERE d.asset_id = ANY (p_asset_ids)
    ORDER BY d.asset_id FOR UPDATE;
    -- One statement, so that `due` reads the documents as they were before it (o).
    WITH fresh AS MATERIALIZED (
        SELECT * FROM derived_state(p_asset_ids)),
    stored AS (
        INSERT INTO search_documents AS s
            (asset_id, collection, uri, taken_at, tags, emotions, people, document, caption,
             labels, people_names, text_sha256, media_type, updated_at)
        SELECT f.asset_id, f.collection, f.uri, f.taken_at, f.tags, f.emotions, f.people,
               f.document, f.caption, f.labels, f.people_names, f.text_sha256, f.media_type,
               now()
        FROM fresh f
        ORDER BY f.asset_id
        ON CONFLICT (asset_id) DO UPDATE
            SET collection = EXCLUDED.collection, uri = EXCLUDED.uri,
                taken_at = EXCLUDED.taken_at, tags = EXCLUDED.tags, emotions = EXCLUDED.emotions,
                people = EXCLUDED.people, document = EXCLUDED.document,
                caption = EXCLUDED.caption, labels = EXCLUDED.labels,
                people_names = EXCLUDED.people_names, text_sha256 = EXCLUDED.text_sha256,
                media_type = EXCLUDED.media_type, updated_at = now()
            WHERE (s.collection, s.uri, s.taken_at, s.tags, s.emotions, s.people, s.document,
                   s.caption, s.labels, s.people_names, s.text_sha256, s.media_type)
                  IS DISTINCT FROM (EXCLUDED.collection, EXCLUDED.uri, EXCLUDED.taken_at,
                                    EXCLUDED.tags, EXCLUDED.emotions, EXCLUDED.people,
                                    EXCLUDED.document, EXCLUDED.caption, EXCLUDED.labels,
                                    EXCLUDED.people_names, EXCLUDED.text_sha256,
                                    EXCLUDED.media_type)
        RETURNING s.asset_id),
    document_tasks AS (
        -- The tasks of the stages that read the document (text), with what changed for them.
        SELECT t.stage, t.asset_id, t.status,
               o.text_sha256 IS DISTINCT FROM f.text_sha256 AS text_changed,
               -- its vector is not of this text (an empty text has none)
               e.input_sha256 IS DISTINCT FROM
                   CASE WHEN f.document_text <> '' THEN f.text_sha256 END AS vector_outdated
        FROM tasks t
        JOIN stages st ON st.name = t.stage AND st.reads = 'document'
        JOIN fresh f ON f.asset_id = t.asset_id
        LEFT JOIN search_documents o ON o.asset_id = t.asset_id
        LEFT JOIN embeddings e ON e.asset_id = t.asset_id AND e.space = st.vector_space
        WHERE p_requeue AND t.asset_id = ANY (p_asset_ids)),
    due AS (
        -- Those whose input is no longer current.
        SELECT dt.stage, dt.asset_id
        FROM document_tasks dt
        WHERE CASE dt.status
            -- It may have read the text before this change: it runs again when it finishes.
            WHEN 'running' THEN dt.text_changed
            WHEN 'done' THEN dt.vector_outdated
            -- Likewise, and the text is new: the same text would fail the same way.
            WHEN 'failed' THEN dt.vector_outdated AND dt.text_changed
            ELSE false END)  -- pending: it reads the new text when it runs
    SELECT (SELECT count(*) FROM stored), d.stages, d.assets,
           -- A pending one whose text changed: a worker that tried to claim it while it was
           -- locked above skipped it, and must hear that it is due.
           EXISTS (SELECT 1 FROM document_tasks dt
                   WHERE dt.status = 'pending' AND dt.text_changed)
    INTO changed, due_stages, due_assets, pending_changed
    FROM (SELECT array_agg(stage) AS stages, array_agg(asset_id) AS assets FROM due) AS d;
    IF pending_changed THEN
        PERFORM notify('semsql_tasks');
    END IF;
    -- The vectors carry copies of the filters, for filtered HNSW scans (migration 0005).
    UPDATE embeddings e
    SET collection = d.collection, taken_at = d.taken_at, tags = d.tags, emotions = d.emotions,
        people = d.people
    FROM search_documents d
    WHERE d.asset_id = e.asset_id AND e.asset_id = ANY (p_asset_ids)
      AND (e.collection, e.taken_at, e.tags, e.emotions, e.people)
          IS DISTINCT FROM (d.collection, d.taken_at, d.tags, d.emotions, d.people);
    UPDATE frame_vectors e
    SET collection = d.collection, taken_at = d.taken_at, tags = d.tags, emotions = d.emotions,
        people = d.people
    FROM search_documents d
    WHERE d.asset_id = e.asset_id AND e.asset_id = ANY (p_asset_ids)
      AND (e.collection, e.taken_at, e.tags, e.emotions, e.people)
          IS DISTINCT FROM (d.collection, d.taken_at, d.tags, d.emotions, d.people);
    FOR due_stage IN SELECT DISTINCT u.stage FROM unnest(due_stages) AS u(stage) LOOP
        PERFORM requeue_tasks(ARRAY(SELECT u.asset_id FROM unnest(due_stages, due_assets)
                                                         AS u(stage, asset_id)
                                    WHERE u.stage = due_stage),
                              ARRAY[due_stage]);
    END LOOP;
    RETURN changed;
END
$$;
COMMENT ON FUNCTION semsql.rebuild_assets(bigint[], boolean) IS
    'Stores what is derived from these assets'' facts (semsql.derived_state): their search '
    'documents with the hash of their document text, and the copies of their filters on the '
    'vectors; with p_requeue, queues a done document task (text) again when its vector''s '
    'input_sha256 is not the new text''s, a failed one when besides the text changed, and has a '
    'running one run again when the text changed. Returns how many documents changed.';

CREATE OR REPLACE FUNCTION semsql.refresh_search_documents(p_asset_ids bigint[]) RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT rebuild_assets(p_asset_ids, false);
$$;
COMMENT ON FUNCTION semsql.refresh_search_documents(bigint[]) IS
    'Rebuilds the search documents of these assets from their captions, tags, faces and people, '
    'and the copies of their filters on the vectors, queueing nothing (rebuild_assets); returns '
    'how many documents changed.';

CREATE OR REPLACE FUNCTION semsql.embeddings_copy_filters() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    document record;
BEGIN
    -- FOR SHARE: a transaction rebuilding this document is waited for, and the next one waits
    -- until this vector is committed, so that its UPDATE of the copies sees it.
    SELECT d.collection, d.taken_at, d.tags, d.emotions, d.people INTO document
    FROM search_documents d WHERE d.asset_id = NEW.asset_id FOR SHARE;
    IF FOUND THEN
        NEW.collection := document.collection;
        NEW.taken_at := document.taken_at;
        NEW.tags := document.tags;
        NEW.emotions := document.emotions;
        NEW.people := document.people;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION semsql.embeddings_copy_filters() IS
    'Trigger: a new vector (of semsql.embeddings or semsql.frame_vectors) gets the filters of '
    'its asset''s search document.';

CREATE OR REPLACE TRIGGER embeddings_copy_filters
    BEFORE INSERT ON semsql.embeddings
    FOR EACH ROW EXECUTE FUNCTION semsql.embeddings_copy_filters();

CREATE OR REPLACE TRIGGER frame_vectors_copy_filters
    BEFORE INSERT ON semsql.frame_vectors
    FOR EACH ROW EXECUTE FUNCTION semsql.embeddings_copy_filters();

-- Fact triggers: they only mark assets stale ---------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.mark_assets_stale(p_asset_ids bigint[]) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    INSERT INTO search_documents_stale (asset_id)
    SELECT DISTINCT a FROM unnest(p_asset_ids) AS a WHERE a IS NOT NULL ORDER BY 1
    ON CONFLICT DO NOTHING;
$$;
COMMENT ON FUNCTION semsql.mark_assets_stale(bigint[]) IS
    'Notes that what is derived from these assets'' facts must be rebuilt when the transaction commits.';

CREATE OR REPLACE FUNCTION semsql.mark_stale() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN  -- a fact table emptied: every asset
        PERFORM mark_assets_stale(ARRAY(SELECT a.id FROM assets a));
    ELSIF TG_TABLE_NAME = 'people' THEN  -- renamed: the assets that show them
        PERFORM mark_assets_stale(ARRAY(SELECT ap.asset_id FROM asset_people ap
                                        WHERE ap.person_id = NEW.id
                                        UNION
                                        SELECT fc.asset_id FROM faces fc
                                        WHERE fc.person_id = NEW.id));
    ELSIF TG_LEVEL = 'ROW' THEN  -- an asset's collection, uri, root, date taken, title, headline
                                 -- or media type
        PERFORM mark_assets_stale(ARRAY[NEW.id]);
    ELSIF TG_TABLE_NAME = 'assets' THEN  -- new assets
        PERFORM mark_assets_stale(ARRAY(SELECT n.id FROM new_rows n));
    -- Per statement, so that a batch of tags or faces is one insert of marks.
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM mark_assets_stale(ARRAY(SELECT n.asset_id FROM new_rows n));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM mark_assets_stale(ARRAY(SELECT o.asset_id FROM old_rows o));
    ELSIF TG_TABLE_NAME = 'faces' THEN
        -- Of a face, documents show its emotion and person; writing its vector or its match
        -- confidence changes neither.
        PERFORM mark_assets_stale(ARRAY(
            SELECT x.asset_id
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            CROSS JOIN LATERAL (VALUES (n.asset_id), (o.asset_id)) AS x(asset_id)
            WHERE (n.asset_id, n.person_id, n.emotion)
                  IS DISTINCT FROM (o.asset_id, o.person_id, o.emotion)));
    ELSE
        PERFORM mark_assets_stale(ARRAY(SELECT n.asset_id FROM new_rows n
                                        UNION SELECT o.asset_id FROM old_rows o));
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION semsql.mark_stale() IS
    'Trigger: marks stale (semsql.mark_assets_stale) the assets whose captions, tags, faces '
    '(emotion, person), people links, people''s names, collection, uri, root, date taken, '
    'media type or metadata title or headline a write '
    'changed, and new assets; the rebuild at commit does the rest.';

DO $$
DECLARE
    fact_table text;
    event text;
BEGIN
    FOREACH fact_table IN ARRAY ARRAY['captions', 'tags', 'faces', 'asset_people'] LOOP
        FOREACH event IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'] LOOP
            EXECUTE format(
                'CREATE OR REPLACE TRIGGER %I AFTER %s ON semsql.%I %s '
                'FOR EACH STATEMENT EXECUTE FUNCTION semsql.mark_stale()',
                fact_table || '_stale_' || lower(event), event, fact_table,
                CASE event WHEN 'INSERT' THEN 'REFERENCING NEW TABLE AS new_rows'
                           WHEN 'DELETE' THEN 'REFERENCING OLD TABLE AS old_rows'
                           WHEN 'UPDATE' THEN 'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                           ELSE '' END);
        END LOOP;
    END LOOP;
END
$$;

CREATE OR REPLACE TRIGGER assets_stale_insert
    AFTER INSERT ON semsql.assets REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION semsql.mark_stale();
CREATE OR REPLACE TRIGGER assets_stale_update
    AFTER UPDATE OF collection, uri, root, taken_at, metadata, media_type ON semsql.assets
    FOR EACH ROW WHEN (OLD.collection IS DISTINCT FROM NEW.collection OR OLD.uri IS DISTINCT FROM NEW.uri
                       OR OLD.root IS DISTINCT FROM NEW.root
                       OR OLD.taken_at IS DISTINCT FROM NEW.taken_at
                       OR OLD.media_type IS DISTINCT FROM NEW.media_type
                       OR OLD.metadata -> 'title' IS DISTINCT FROM NEW.metadata -> 'title'
                       OR OLD.metadata -> 'headline' IS DISTINCT FROM NEW.metadata -> 'headline')
    EXECUTE FUNCTION semsql.mark_stale();
CREATE OR REPLACE TRIGGER people_stale_rename
    AFTER UPDATE OF name ON semsql.people
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION semsql.mark_stale();

-- The rebuild at commit --------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.rebuild_marked_assets() RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    stale bigint[];
BEGIN
    WITH taken AS (
        DELETE FROM search_documents_stale s WHERE s.transaction = pg_current_xact_id()
        RETURNING s.asset_id)
    SELECT array_agg(asset_id ORDER BY asset_id) INTO stale FROM taken;
    IF stale IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM rebuild_assets(stale);
    RETURN cardinality(stale);
END
$$;
COMMENT ON FUNCTION semsql.rebuild_marked_assets() IS
    'Rebuilds (semsql.rebuild_assets) now the assets this transaction marked stale, and takes '
    'their marks; the number rebuilt. The deferred trigger calls it at commit, settle_assets '
    'before it takes its mutex.';

CREATE OR REPLACE FUNCTION semsql.rebuild_stale_assets() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    -- One event per marked asset: the first rebuilds every asset its transaction marked, in one
    -- set; the others find their marks taken.
    PERFORM rebuild_marked_assets();
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION semsql.rebuild_stale_assets() IS
    'Deferred trigger: when a transaction commits, rebuilds (semsql.rebuild_assets) the assets '
    'it marked stale, once each (SET CONSTRAINTS search_documents_stale_refresh IMMEDIATE '
    'rebuilds the marked ones now).';

-- A constraint trigger cannot be replaced: it is made once (give a changed one a new name).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                   WHERE tgrelid = 'semsql.search_documents_stale'::regclass
                     AND tgname = 'search_documents_stale_refresh') THEN
        CREATE CONSTRAINT TRIGGER search_documents_stale_refresh
            AFTER INSERT ON semsql.search_documents_stale
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION semsql.rebuild_stale_assets();
    END IF;
END
$$;

-- Assets from before search existed, or written with triggers off (bulk loads), and documents
-- from before their text's hash was kept (migration 0010): rebuilt, queueing nothing.
SELECT semsql.rebuild_assets(ARRAY(
    SELECT a.id FROM semsql.assets a
    WHERE NOT EXISTS (SELECT 1 FROM semsql.search_documents d
                      WHERE d.asset_id = a.id AND d.text_sha256 IS NOT NULL)), false);
