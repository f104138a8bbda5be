-- The content index: look-alike images by their perceptual hashes (semsql.content_hashes,
-- written by the content stage), with no model. A hash's rotated and mirrored variants are bit
-- operations on it (semsql/content_hash.py says why), done here at query time.

CREATE OR REPLACE FUNCTION semsql.content_variant(p_hash bit(256), p_variant integer)
RETURNS bit(256)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    turned bit(256) := p_hash;
    block integer;
    swap bit(256);
    upper_right bit(256);
BEGIN
    IF p_variant NOT BETWEEN 0 AND 7 THEN
        RAISE EXCEPTION 'variant must be 0 to 7, not %', p_variant
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_variant & 4 <> 0 THEN
        -- Transposed (bit 16u + v becomes bit 16v + u) by four delta swaps of bit strings, not
        -- 256 substrings: each swaps the upper-right and lower-left blocks of side 8, then 4,
        -- 2 and 1 inside them. A bit at row r, column c of such a pair moves by 15 x side.
        FOREACH block IN ARRAY ARRAY[8, 4, 2, 1] LOOP
            -- the upper-right bits: column bit `block` set, row bit `block` clear
            upper_right := repeat(repeat(repeat(repeat('0', block) || repeat('1', block),
                                                8 / block), block)
                                  || repeat('0', 16 * block), 8 / block)::bit(256);
            swap := (turned # (turned << (15 * block))) & upper_right;
            turned := turned # swap # (swap >> (15 * block));
        END LOOP;
    END IF;
    IF p_variant & 1 <> 0 THEN  -- mirrored left-right: odd horizontal frequencies change sign
        turned := turned # repeat('01', 128)::bit(256);
    END IF;
    IF p_variant & 2 <> 0 THEN  -- mirrored top-bottom: odd vertical frequencies change sign
        turned := turned # repeat(repeat('0', 16) || repeat('1', 16), 8)::bit(256);
    END IF;
    RETURN turned;
END
$$;
COMMENT ON FUNCTION semsql.content_variant(bit, integer) IS
    'The content hash of the image turned by variant 0 to 7 (bit 2 transposes, bit 0 mirrors '
    'left-right, bit 1 top-bottom): 0 itself, 3 a half turn, 5 and 6 the quarter turns, 1 and 2 '
    'the mirrors, 4 and 7 the diagonal mirrors.';

CREATE OR REPLACE FUNCTION semsql.content_neighbours(
    p_hashes bit(256)[], p_k integer DEFAULT 20, p_max_distance integer DEFAULT 256,
    p_turned boolean DEFAULT true
) RETURNS TABLE (asset_id bigint, distance integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.ef_search = 40
AS $$
#variable_conflict use_column
BEGIN
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000, not %', p_k
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_max_distance IS NULL OR p_max_distance NOT BETWEEN 0 AND 256 THEN
        RAISE EXCEPTION 'max_distance must be between 0 and 256 bits, not %', p_max_distance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Each query hash, turned every way unless p_turned is false, is one HNSW scan of at most
    -- ef_search rows; an asset's distance is its nearest view under any of them. ef_search is
    -- the rows a scan may return (p_k), at least 20: 16 scans at pgvector's 40 cost 11 ms at
    -- 12,000 assets, at 21 7 ms, finding as many copies (bench/content.py).
    PERFORM set_config('hnsw.ef_search', greatest(20, p_k)::text, true);
    RETURN QUERY
    SELECT n.asset_id, min(n.distance)::integer
    FROM (SELECT DISTINCT content_variant(q.hash, v.variant) AS hash
          FROM unnest(p_hashes) AS q (hash)
          CROSS JOIN generate_series(0, CASE WHEN p_turned THEN 7 ELSE 0 END) AS v (variant)
          OFFSET 0) AS t  -- each turned hash computed once, not once per row it is compared with
    CROSS JOIN LATERAL (
        SELECT c.asset_id, c.hash <~> t.hash AS distance
        FROM content_hashes c
        ORDER BY c.hash <~> t.hash
        LIMIT p_k) AS n
    WHERE n.distance <= p_max_distance
    GROUP BY n.asset_id
    ORDER BY 2, 1
    LIMIT p_k;
END
$$;
COMMENT ON FUNCTION semsql.content_neighbours(bit[], integer, integer, boolean) IS
    'The k assets whose content hashes (any view) are nearest to any of p_hashes (and, unless '
    'p_turned is false, to their rotated and mirrored variants), within p_max_distance bits '
    '(Hamming, 0 to 256), nearest first: the content index''s one search, with no model.';
