-- Why tasks failed, as a key that stays the same from one file to the next: the queue stores an
-- error's text alone (tasks.last_error), and texts name their file, sizes, addresses.

CREATE OR REPLACE FUNCTION semsql.failure_reason(p_error text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT btrim(regexp_replace(
        -- Numbers standing alone (not the 32 of ViT-B-32, the 264 of h264, a version's 1.2).
        regexp_replace(
        -- Long hexadecimal strings (hashes) and addresses.
        regexp_replace(regexp_replace(
        -- Quoted texts.
        regexp_replace(regexp_replace(
        -- Absolute paths (POSIX, Windows), then URLs.
        regexp_replace(regexp_replace(regexp_replace(
            p_error,
            '[A-Za-z][A-Za-z0-9+.-]*://[^\s''"]*[^\s''".,;:)\]]', '<uri>', 'g'),
            '(?<![[:alnum:]_/.<-])/[^\s''"]*[^\s''".,;:)\]]', '<path>', 'g'),
            '(?<![[:alnum:]])[A-Za-z]:\\[^\s''"]*[^\s''".,;:)\]]', '<path>', 'g'),
            '(?<![[:alnum:]])''[^'']*''', '''…''', 'g'),
            '(?<![[:alnum:]])"[^"]*"', '"…"', 'g'),
            '0x[0-9A-Fa-f]+', '0x…', 'g'),
            '(?<![[:alnum:]])[0-9A-Fa-f]{16,}(?![[:alnum:]])', '<hex>', 'g'),
            '(?<![[:alnum:]_.-])-?[0-9]+(?:\.[0-9]+)?(?![[:alnum:]_]|\.[0-9])', 'N', 'g'),
        '\s+', ' ', 'g'));
$$;
COMMENT ON FUNCTION semsql.failure_reason(text) IS
    'A failed task''s error with what changes from one file to the next taken out (URLs and '
    'paths, quoted texts, hashes and addresses, numbers): what the failed tasks are grouped by, '
    'and retried by, on the jobs page. The same for an error and its reason.';
