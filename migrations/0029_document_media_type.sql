-- 0029: a search document says its asset's media type, so that the last step of a search
-- (semsql.rank_hits, rank_pool) reads its rows from semsql.search_documents alone and reads
-- semsql.assets only for a video's best moment: the join with assets took half of rank_hits'
-- time. rebuild_assets keeps it (sql/040_search_documents.sql), from a change of the asset's
-- media_type too.

ALTER TABLE semsql.search_documents
    ADD COLUMN media_type text NOT NULL DEFAULT 'image' CHECK (media_type IN ('image', 'video'));
COMMENT ON COLUMN semsql.search_documents.media_type IS
    'The asset''s media_type (image or video), as semsql.assets has it.';
UPDATE semsql.search_documents d SET media_type = a.media_type
FROM semsql.assets a
WHERE a.id = d.asset_id AND a.media_type <> d.media_type;

-- Its result gains media_type: the sql/ files create it again.
DROP FUNCTION IF EXISTS semsql.derived_state(bigint[]);
