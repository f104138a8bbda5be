-- Search documents: one row per asset with its filters, keyword tsvector and display
-- columns, kept current by triggers and rebuilt once per asset when the writing transaction
-- commits.

-- The search document of each asset ------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.refresh_search_documents(p_asset_ids bigint[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public
AS $$
DECLARE
    changed integer;
BEGIN
    -- A transaction rebuilding the same documents holds their rows until it commits; waiting
    -- here, not in the INSERT, lets the INSERT's snapshot (a new one per statement, in READ
    -- COMMITTED) see what that transaction wrote.
    PERFORM 1 FROM search_documents d WHERE d.asset_id = ANY (p_asset_ids)
    ORDER BY d.asset_id FOR UPDATE;
    INSERT INTO search_documents AS s
        (asset_id, collection, uri, taken_at, tags, emotions, people, document, caption, labels,
         people_names, updated_at)
    SELECT a.id, a.collection, a.uri, a.taken_at, t.tags, f.emotions, p.people,
           setweight(to_tsvector('pg_catalog.english',
                                 concat_ws(' ', f.captions, array_to_string(p.people_names, ' '))),
                     'A')
           || setweight(to_tsvector('pg_catalog.english', array_to_string(t.tags, ' ')), 'B')
           || setweight(to_tsvector('pg_catalog.english', array_to_string(f.emotions, ' ')), 'C'),
           f.caption, t.labels, p.people_names, now()
    FROM assets a
    CROSS JOIN LATERAL (
        SELECT coalesce((SELECT array_agg(DISTINCT lower(fc.emotion)) FROM faces fc
                         WHERE fc.asset_id = a.id AND fc.emotion IS NOT NULL), '{}') AS emotions,
               (SELECT string_agg(c.text, ' ' ORDER BY c.source) FROM captions c
                WHERE c.asset_id = a.id) AS captions,
               (SELECT c.text FROM captions c WHERE c.asset_id = a.id
                ORDER BY c.source <> 'user', c.created_at DESC LIMIT 1) AS caption
    ) AS f
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(l.label ORDER BY l.best DESC, l.label), '{}') AS labels,
               coalesce(array_agg(lower(l.label) ORDER BY lower(l.label)), '{}') AS tags
        FROM (SELECT min(tg.label) AS label, max(coalesce(tg.confidence, 1)) AS best
              FROM tags tg WHERE tg.asset_id = a.id GROUP BY lower(tg.label)) AS l
    ) AS t
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(pe.id ORDER BY pe.id), '{}') AS people,
               coalesce(array_agg(pe.name ORDER BY pe.name), '{}') AS people_names
        FROM people pe
        WHERE pe.id IN (SELECT ap.person_id FROM asset_people ap WHERE ap.asset_id = a.id
                        UNION
                        SELECT fc.person_id FROM faces fc WHERE fc.asset_id = a.id)
    ) AS p
    WHERE a.id = ANY (p_asset_ids)
    ON CONFLICT (asset_id) DO UPDATE
        SET collection = EXCLUDED.collection, uri = EXCLUDED.uri, taken_at = EXCLUDED.taken_at,
            tags = EXCLUDED.tags, emotions = EXCLUDED.emotions, people = EXCLUDED.people,
            document = EXCLUDED.document, caption = EXCLUDED.caption, labels = EXCLUDED.labels,
            people_names = EXCLUDED.people_names, updated_at = now()
        WHERE (s.collection, s.uri, s.taken_at, s.tags, s.emotions, s.people, s.document,
               s.caption, s.labels, s.people_names)
              IS DISTINCT FROM (EXCLUDED.collection, EXCLUDED.uri, EXCLUDED.taken_at,
                                EXCLUDED.tags, EXCLUDED.emotions, EXCLUDED.people,
                                EXCLUDED.document, EXCLUDED.caption, EXCLUDED.labels,
                                EXCLUDED.people_names);
    GET DIAGNOSTICS changed = ROW_COUNT;
    -- The vectors carry copies of the filters, for filtered HNSW scans (migration 0005).
    UPDATE embeddings e
    SET collection = d.collection, taken_at = d.taken_at, tags = d.tags, emotions = d.emotions,
        people = d.people
    FROM search_documents d
    WHERE d.asset_id = e.asset_id AND e.asset_id = ANY (p_asset_ids)
      AND (e.collection, e.taken_at, e.tags, e.emotions, e.people)
          IS DISTINCT FROM (d.collection, d.taken_at, d.tags, d.emotions, d.people);
    RETURN changed;
END
$$;
COMMENT ON FUNCTION semsql.refresh_search_documents(bigint[]) IS
    'Rebuilds the search documents of these assets from their captions, tags, faces and people, '
    'and the copies of their filters on the vectors; returns how many documents changed.';

CREATE OR REPLACE FUNCTION semsql.embeddings_copy_filters() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public
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
    'Trigger: a new vector gets the filters of its asset''s search document.';

CREATE OR REPLACE TRIGGER embeddings_copy_filters
    BEFORE INSERT ON semsql.embeddings
    FOR EACH ROW EXECUTE FUNCTION semsql.embeddings_copy_filters();

CREATE OR REPLACE FUNCTION semsql.mark_search_documents_stale(p_asset_ids bigint[]) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, semsql, public
AS $$
    INSERT INTO search_documents_stale (asset_id)
    SELECT DISTINCT a FROM unnest(p_asset_ids) AS a WHERE a IS NOT NULL ORDER BY 1
    ON CONFLICT DO NOTHING;
$$;
COMMENT ON FUNCTION semsql.mark_search_documents_stale(bigint[]) IS
    'Notes that these assets'' search documents must be rebuilt when the transaction commits.';

CREATE OR REPLACE FUNCTION semsql.search_documents_follow_facts() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public
AS $$
BEGIN
    -- Per statement, so that a batch of tags or faces is one insert of marks.
    IF TG_OP = 'INSERT' THEN
        PERFORM mark_search_documents_stale(ARRAY(SELECT asset_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM mark_search_documents_stale(ARRAY(SELECT asset_id FROM old_rows));
    ELSE
        PERFORM mark_search_documents_stale(ARRAY(SELECT asset_id FROM new_rows
                                                  UNION SELECT asset_id FROM old_rows));
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION semsql.search_documents_follow_facts() IS
    'Trigger (per statement): marks stale the search documents of the assets whose captions, tags, faces or people changed.';

DO $$
DECLARE
    fact_table text;
    event text;
BEGIN
    FOREACH fact_table IN ARRAY ARRAY['captions', 'tags', 'faces', 'asset_people'] LOOP
        FOREACH event IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE'] LOOP
            EXECUTE format(
                'CREATE OR REPLACE TRIGGER %I AFTER %s ON semsql.%I REFERENCING %s '
                'FOR EACH STATEMENT EXECUTE FUNCTION semsql.search_documents_follow_facts()',
                fact_table || '_search_' || lower(event), event, fact_table,
                CASE event WHEN 'INSERT' THEN 'NEW TABLE AS new_rows'
                           WHEN 'DELETE' THEN 'OLD TABLE AS old_rows'
                           ELSE 'OLD TABLE AS old_rows NEW TABLE AS new_rows' END);
        END LOOP;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION semsql.search_documents_follow_assets() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM mark_search_documents_stale(ARRAY(SELECT id FROM new_assets));
    ELSE
        PERFORM mark_search_documents_stale(ARRAY[NEW.id]);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION semsql.search_documents_follow_assets() IS
    'Trigger: new assets get a search document, which follows changes of collection, uri and date taken.';

CREATE OR REPLACE TRIGGER assets_search_insert
    AFTER INSERT ON semsql.assets REFERENCING NEW TABLE AS new_assets
    FOR EACH STATEMENT EXECUTE FUNCTION semsql.search_documents_follow_assets();
CREATE OR REPLACE TRIGGER assets_search_update
    AFTER UPDATE OF collection, uri, taken_at ON semsql.assets
    FOR EACH ROW WHEN (OLD.collection IS DISTINCT FROM NEW.collection OR OLD.uri IS DISTINCT FROM NEW.uri
                       OR OLD.taken_at IS DISTINCT FROM NEW.taken_at)
    EXECUTE FUNCTION semsql.search_documents_follow_assets();

CREATE OR REPLACE FUNCTION semsql.search_documents_follow_people() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public
AS $$
BEGIN
    PERFORM mark_search_documents_stale(ARRAY(SELECT ap.asset_id FROM asset_people ap
                                              WHERE ap.person_id = NEW.id
                                              UNION
                                              SELECT f.asset_id FROM faces f
                                              WHERE f.person_id = NEW.id));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION semsql.search_documents_follow_people() IS
    'Trigger: a renamed person is found by the new name in the documents of the assets that show them.';

CREATE OR REPLACE TRIGGER people_search_rename
    AFTER UPDATE OF name ON semsql.people
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION semsql.search_documents_follow_people();

CREATE OR REPLACE FUNCTION semsql.refresh_stale_search_document() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public
AS $$
BEGIN
    PERFORM refresh_search_documents(ARRAY[NEW.asset_id]);
    DELETE FROM search_documents_stale s
    WHERE s.asset_id = NEW.asset_id AND s.transaction = NEW.transaction;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION semsql.refresh_stale_search_document() IS
    'Deferred trigger: rebuilds a stale search document when its transaction commits '
    '(SET CONSTRAINTS search_documents_stale_refresh IMMEDIATE rebuilds the pending ones now).';

-- A constraint trigger cannot be replaced: it is made once (give a changed one a new name).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                   WHERE tgrelid = 'semsql.search_documents_stale'::regclass
                     AND tgname = 'search_documents_stale_refresh') THEN
        CREATE CONSTRAINT TRIGGER search_documents_stale_refresh
            AFTER INSERT ON semsql.search_documents_stale
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION semsql.refresh_stale_search_document();
    END IF;
END
$$;

-- Assets from before search existed, or written with triggers off (bulk loads).
SELECT semsql.refresh_search_documents(ARRAY(
    SELECT a.id FROM semsql.assets a
    WHERE NOT EXISTS (SELECT 1 FROM semsql.search_documents d WHERE d.asset_id = a.id)));
