-- 0011: semsql.search_args, the inputs of one search as one value. semsql.search builds it once
-- and passes it as the only parameter ($1) of every statement it builds, whose conditions read
-- its fields by name (($1).tags, ($1).taken_after ...); rank_pool, rank_hits and
-- filter_conditions take it in place of their long lists of arguments.
--
-- A composite type cannot be CREATE OR REPLACEd, and the functions that take it depend on it (a
-- DROP would need CASCADE, dropping them with their comments and grants on every init): it is
-- made here, once, like semsql.search_result (0003). A field that changes is changed by a later
-- migration (ALTER TYPE semsql.search_args ADD / DROP / ALTER ATTRIBUTE); sql/042 and sql/043 use
-- the fields by name, never by position.

CREATE TYPE semsql.search_args AS (
    -- Filters (normalised; NULL: not filtered on)
    tags                  text[],
    tags_match            text,
    emotions              text[],
    person_ids            bigint[],
    people_match          text,
    collection            text,
    taken_after           timestamptz,
    taken_before          timestamptz,
    metadata              jsonb,
    named_ids             bigint[],
    -- The query
    text_vector           halfvec,
    image_vector          halfvec,
    keywords              tsquery,
    lexemes               text[],
    exclude_text_vector   halfvec,
    exclude_image_vector  halfvec,
    exclude_lexemes       text[],
    boost_ids             bigint[],
    like_asset            bigint,
    -- Ranking and paging
    weights               real[],
    candidates            integer,
    min_score             real,
    relative_cut          real,
    order_by              text,
    k                     integer,
    "offset"              integer,
    -- The statement being run
    row_limit             integer
);
COMMENT ON TYPE semsql.search_args IS
    'The inputs of one semsql.search, resolved: the filters (tags and emotions lower case, person_ids '
    'of the people named by the people argument, named_ids of those named in the query when names '
    '=> filter), the unit query vectors (text, image, exclude), keywords and lexemes of the query '
    'and of exclude, boost_ids (names => boost), like_asset (left out of the results), weights '
    '(text, image, keyword, name, exclude; 0 for a signal not in play), candidates per signal, the '
    'cuts, order and page, and row_limit, the LIMIT of the statement being run. The only parameter '
    '($1) of the statements semsql.search builds; internal to it.';

-- They take a semsql.search_args now (the old signatures would stay beside the new ones).
DROP FUNCTION IF EXISTS semsql.filter_conditions(text, text[], text, text[], bigint[], text, text,
                                                 timestamptz, timestamptz, jsonb, bigint[]);
DROP FUNCTION IF EXISTS semsql.rank_pool(bigint[], halfvec, halfvec, tsquery, text[], halfvec,
                                         halfvec, text[], bigint[], double precision[], bigint[],
                                         double precision[], integer, real[], bigint[], real,
                                         real, text, integer, integer, bigint);
DROP FUNCTION IF EXISTS semsql.rank_hits(bigint[], double precision[], text, real, real, text,
                                         integer, integer);
