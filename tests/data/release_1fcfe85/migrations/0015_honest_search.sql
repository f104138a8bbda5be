-- 0015: honest search results. A search by query text returns only the assets that one of its
-- signals matches: a keyword, a person named, or a vector at least as similar as the space's
-- least similarity of a match (semsql.match_similarity, or the call's min_text_similarity and
-- min_image_similarity). The asset's file name, folder name, title and headline join its
-- document (sql/040).

ALTER TYPE semsql.search_args
    ADD ATTRIBUTE text_floor real,
    ADD ATTRIBUTE image_floor real,
    ADD ATTRIBUTE matched_only boolean;
COMMENT ON TYPE semsql.search_args IS
    'The inputs of one semsql.search, resolved: the filters (tags and emotions lower case, person_ids '
    'of the people named by the people argument, named_ids of those named in the query when names '
    '=> filter), the unit query vectors (text, image, exclude), keywords and lexemes of the query '
    'and of exclude, boost_ids (names => boost), like_asset (left out of the results), weights '
    '(text, image, keyword, name, exclude; 0 for a signal not in play), candidates per signal, the '
    'cuts, order and page, row_limit, the LIMIT of the statement being run, the least similarity '
    'at which a text or image vector matches (text_floor, image_floor; NULL: being among the '
    'candidates best), and matched_only (a search by query text: rows that no signal matched are '
    'left out). The only parameter ($1) of the statements semsql.search builds; internal to it.';

-- semsql.search takes min_text_similarity and min_image_similarity now (sql/043); the old
-- signature would stay beside the new one.
DROP FUNCTION IF EXISTS semsql.search(text, vector, bigint, text[], text, text[], text[], text,
                                      text, timestamptz, timestamptz, jsonb, text, integer,
                                      integer, real, real, text, boolean, real, real, real, real,
                                      real, text, text, vector, vector);

-- Every document is built again by sql/040 (which rebuilds those without a text hash, queueing
-- nothing), so that existing assets' names and titles become keywords at once.
UPDATE semsql.search_documents SET text_sha256 = NULL;
