-- 0021: semsql.similar searches the semantic index (CLIP and document vectors), the content
-- index (perceptual hashes, no model) or both, and says of each row which one found it. Its
-- rows are semsql.similar_result now, not semsql.search_result: matched_by names the index
-- ('semantic', 'content' or 'both'), and content_distance, semantic_rank and content_rank say
-- where each index placed the asset. CREATE OR REPLACE cannot change a function's result, and
-- the old signature would stay beside the new one (sql/047 makes it), so it goes here.

DROP FUNCTION IF EXISTS semsql.similar(bigint, integer);

CREATE TYPE semsql.similar_result AS (
    asset_id          bigint,
    uri               text,
    score             real,
    caption           text,
    tags              text[],
    emotions          text[],
    people            text[],
    matched_by        text,
    content_distance  integer,
    semantic_rank     integer,
    content_rank      integer,
    image_score       real,
    text_score        real,
    taken_at          timestamptz,
    rank              integer
);
COMMENT ON TYPE semsql.similar_result IS
    'A row of semsql.similar and semsql.similar_to: the asset, which index found it (matched_by: '
    'semantic, content or both), its content distance in bits where the content index found it, '
    'its place in each index''s list (semantic_rank, content_rank; NULL: not found there), the '
    'semantic scores, and rank, its place in the fused list. score is the semantic score where '
    'the semantic index found the asset, else the share of equal bits (1 - distance / 256).';
