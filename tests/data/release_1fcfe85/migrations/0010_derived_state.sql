-- 0010: one path for what is derived from an asset's facts. Two trigger families used to keep
-- it: sql/030's requeue_document triggers queued the text vector again on every write to
-- captions, tags, faces, people links or names, and sql/040's marked the search document stale;
-- sql/045's recognition queued the text too. Now the fact triggers (sql/040) only mark the asset
-- stale, and one deferred rebuild per transaction (semsql.rebuild_assets) builds its search
-- document, its document text and that text's hash, and queues the document stages again only
-- when the hash differs from their vector's input hash.

-- The hash of the asset document text, kept with the search document: a rebuild tells from it
-- whether the text changed. Filled for the existing documents by sql/040 (rebuild_assets of
-- those without one, which queues nothing).
ALTER TABLE semsql.search_documents ADD COLUMN text_sha256 text;
COMMENT ON COLUMN semsql.search_documents.text_sha256 IS
    'Hex SHA-256 of the asset document text (semsql.asset_document): what the input_sha256 of '
    'the text vector is when that vector is current.';

-- Marks by transaction first: the rebuild at commit takes its own in one index range.
ALTER TABLE semsql.search_documents_stale
    DROP CONSTRAINT search_documents_stale_pkey,
    ADD PRIMARY KEY (transaction, asset_id);
COMMENT ON TABLE semsql.search_documents_stale IS
    'Assets whose facts the current transaction changed: their search document, document text '
    'and its hash are rebuilt once each at commit (semsql.rebuild_assets); empty between '
    'transactions.';

-- The triggers and functions of both old paths; sql/040 defines the one that replaces them
-- (its deferred trigger under the same name, search_documents_stale_refresh).
DROP TRIGGER IF EXISTS captions_requeue_document ON semsql.captions;
DROP TRIGGER IF EXISTS tags_requeue_document ON semsql.tags;
DROP TRIGGER IF EXISTS asset_people_requeue_document ON semsql.asset_people;
DROP TRIGGER IF EXISTS people_requeue_document ON semsql.people;
DROP TRIGGER IF EXISTS faces_requeue_document ON semsql.faces;  -- an older name
DROP TRIGGER IF EXISTS faces_requeue_documents ON semsql.faces;
DROP TRIGGER IF EXISTS captions_search_insert ON semsql.captions;
DROP TRIGGER IF EXISTS captions_search_update ON semsql.captions;
DROP TRIGGER IF EXISTS captions_search_delete ON semsql.captions;
DROP TRIGGER IF EXISTS tags_search_insert ON semsql.tags;
DROP TRIGGER IF EXISTS tags_search_update ON semsql.tags;
DROP TRIGGER IF EXISTS tags_search_delete ON semsql.tags;
DROP TRIGGER IF EXISTS faces_search_insert ON semsql.faces;
DROP TRIGGER IF EXISTS faces_search_update ON semsql.faces;
DROP TRIGGER IF EXISTS faces_search_delete ON semsql.faces;
DROP TRIGGER IF EXISTS asset_people_search_insert ON semsql.asset_people;
DROP TRIGGER IF EXISTS asset_people_search_update ON semsql.asset_people;
DROP TRIGGER IF EXISTS asset_people_search_delete ON semsql.asset_people;
DROP TRIGGER IF EXISTS assets_search_insert ON semsql.assets;
DROP TRIGGER IF EXISTS assets_search_update ON semsql.assets;
DROP TRIGGER IF EXISTS people_search_rename ON semsql.people;
DROP TRIGGER IF EXISTS search_documents_stale_refresh ON semsql.search_documents_stale;
DROP FUNCTION IF EXISTS semsql.requeue_document();
DROP FUNCTION IF EXISTS semsql.requeue_documents_of_faces();
DROP FUNCTION IF EXISTS semsql.search_documents_follow_facts();
DROP FUNCTION IF EXISTS semsql.search_documents_follow_assets();
DROP FUNCTION IF EXISTS semsql.search_documents_follow_people();
DROP FUNCTION IF EXISTS semsql.refresh_stale_search_document();
DROP FUNCTION IF EXISTS semsql.mark_search_documents_stale(bigint[]);
