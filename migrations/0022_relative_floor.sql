-- 0022: a vector also matches a query text when it is nearly as similar as the best match
-- (search_args.floor_ratio, sql/043): a paraphrase whose words the captions do not share is
-- often 0.25 to 0.30 similar to every photo it means, so the space's floor alone returned one
-- of them (bench/articles.py, short queries).

ALTER TYPE semsql.search_args ADD ATTRIBUTE floor_ratio real;
COMMENT ON TYPE semsql.search_args IS
    'The inputs of one semsql.search, resolved: the filters (tags and emotions lower case, person_ids '
    'of the people named by the people argument, named_ids of those named in the query when names '
    '=> filter), the unit query vectors (text, image, exclude), keywords and lexemes of the query '
    'and of exclude, boost_ids (names => boost), like_asset (left out of the results), weights '
    '(text, image, keyword, name, exclude; 0 for a signal not in play), candidates per signal, the '
    'cuts, order and page, row_limit, the LIMIT of the statement being run, the least similarity '
    'at which a text or image vector matches (text_floor, image_floor; NULL: being among the '
    'candidates best), floor_ratio (where the best similarity of a space passes its floor, a vector '
    'at least floor_ratio times as similar matches too; NULL: the floor alone), and matched_only (a '
    'search by query text: rows that no signal matched are left out). The only parameter ($1) of '
    'the statements semsql.search builds; internal to it.';
