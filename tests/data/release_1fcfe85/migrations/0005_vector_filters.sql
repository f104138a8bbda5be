-- 0005: vectors in half precision, with the filterable facts of their asset beside them.
--
-- halfvec halves each vector (776 instead of 1,544 bytes at 384 dimensions): HNSW inserts and
-- scans touch half the memory, and cosine similarities stay within about 1e-3. The copies of
-- collection, taken_at, tags, emotions and people (kept equal to search_documents by
-- semsql.refresh_search_documents) let a filtered HNSW scan test the row it has just read
-- instead of looking the asset up for every candidate, and let an exact scan of a small
-- filtered set read just its vectors through these columns' own indexes. The copies are set
-- when a vector is written, which in the pipeline is after its asset's tags, faces and people;
-- a later change of them writes a new row version (and HNSW entry) for each vector of the asset.

-- The HNSW indexes are built again below, on halfvec.
DROP INDEX IF EXISTS semsql.embeddings_image_hnsw;
DROP INDEX IF EXISTS semsql.embeddings_text_hnsw;

ALTER TABLE semsql.embeddings
    ALTER COLUMN embedding TYPE halfvec USING embedding::halfvec,
    ADD COLUMN collection text,
    ADD COLUMN taken_at   timestamptz,
    ADD COLUMN tags       text[] NOT NULL DEFAULT '{}',
    ADD COLUMN emotions   text[] NOT NULL DEFAULT '{}',
    ADD COLUMN people     bigint[] NOT NULL DEFAULT '{}';

UPDATE semsql.embeddings e
SET collection = d.collection, taken_at = d.taken_at, tags = d.tags, emotions = d.emotions,
    people = d.people
FROM semsql.search_documents d
WHERE d.asset_id = e.asset_id;

CREATE INDEX embeddings_tags ON semsql.embeddings USING gin (tags);
CREATE INDEX embeddings_emotions ON semsql.embeddings USING gin (emotions);
CREATE INDEX embeddings_people ON semsql.embeddings USING gin (people);
CREATE INDEX embeddings_collection ON semsql.embeddings (collection);
CREATE INDEX embeddings_taken_at ON semsql.embeddings (taken_at);

COMMENT ON COLUMN semsql.embeddings.embedding IS
    'The vector, in half precision; its space''s HNSW index is on embedding::halfvec(dims).';
COMMENT ON COLUMN semsql.embeddings.collection IS
    'Copies of the asset''s search_documents filters (collection, taken_at, tags, emotions, people), '
    'checked by filtered HNSW scans.';

DO $$
DECLARE
    registered record;
BEGIN
    FOR registered IN SELECT v.space, v.dims FROM semsql.vector_spaces v LOOP
        EXECUTE format('CREATE INDEX %I ON semsql.embeddings USING hnsw '
                       '((embedding::halfvec(%s)) halfvec_cosine_ops) WHERE space = %L',
                       'embeddings_' || registered.space || '_hnsw', registered.dims,
                       registered.space);
    END LOOP;
END
$$;

-- Replaced by semsql.filter_conditions, which writes the filters for either table.
DROP FUNCTION IF EXISTS semsql.search_filter_sql(text[], text, text[], bigint[], text, text,
                                                 timestamptz, timestamptz, jsonb, bigint[]);
-- Its vector parameters are halfvec now (the old signature would stay beside the new one).
DROP FUNCTION IF EXISTS semsql.rank_pool(bigint[], vector, vector, tsquery, text[], vector,
                                         vector, text[], bigint[], double precision[], bigint[],
                                         double precision[], integer, real[], bigint[], real,
                                         real, text, integer, integer, bigint);
-- Its third parameter is now the conditions on e, not a FROM clause.
DROP FUNCTION IF EXISTS semsql.nearest_sql(text, integer, text);
-- It takes the conditions on e now (the filters themselves, or a pool).
DROP FUNCTION IF EXISTS semsql.exact_nearest_sql(text);
