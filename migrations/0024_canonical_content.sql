-- 0024: the content index stores each view in its canonical orientation (semsql/content_hash.py,
-- index_rows), once or, where the orientation is a close call, in each candidate orientation;
-- `turn` says which variant of the upright hash a row holds, `alternate` whether it is not the
-- first candidate. A search then compares each view's first candidate with the stored rows
-- unturned: 2 HNSW scans an asset, not the 8 turns of each view (16 scans), which cost
-- 13 to 95 ms at 100,000 assets.
--
-- The stored hashes are upright, not canonical, and the orientation cannot be told from their
-- bits alone (it needs the coefficients' sizes): they are deleted and the content stage runs
-- again for every asset (about 300 images a second; look-alikes by content find those hashed so
-- far meanwhile).

DROP FUNCTION IF EXISTS semsql.content_neighbours(bit[], integer, integer, boolean);
DROP FUNCTION IF EXISTS semsql.content_variant(bit, integer);

DELETE FROM semsql.content_hashes;

ALTER TABLE semsql.content_hashes
    ADD COLUMN turn smallint NOT NULL DEFAULT 0 CHECK (turn BETWEEN 0 AND 7),
    ADD COLUMN alternate boolean NOT NULL DEFAULT false,
    DROP CONSTRAINT content_hashes_pkey,
    ADD PRIMARY KEY (asset_id, view, turn);
ALTER TABLE semsql.content_hashes ALTER COLUMN turn DROP DEFAULT;

-- Built with twice pgvector's default effort: on 100,000 drawn scenes and their copies,
-- similar(by => 'content') found 96 % of the copies with the default (m 16, ef_construction
-- 64) and 99.9 % so, at the same cost a search (bench/content.py). sql/036's
-- content_index_sql says the same.
DROP INDEX semsql.content_hashes_hash_hnsw;
CREATE INDEX content_hashes_hash_hnsw ON semsql.content_hashes
    USING hnsw (hash bit_hamming_ops) WITH (m = 16, ef_construction = 128);

COMMENT ON TABLE semsql.content_hashes IS
    'How each image looks, with no model: a 256-bit DCT sign hash of the upright image (view '
    '''full'') and of its centre, 80 % of each side (view ''centre'', so that a copy cropped by '
    '10 % per side matches it), each turned into its canonical orientation (turn), so that a '
    'rotated or mirrored copy has the same hash as its original; compared by Hamming distance '
    '(<~>).';
COMMENT ON COLUMN semsql.content_hashes.hash IS
    'Bit i (from the left, from 0): the sign of the DCT coefficient of vertical frequency i / 16 '
    'and horizontal frequency i % 16 of the view in grey at 64 x 64, turned by `turn`; bit 0 is '
    'always 0. All 0: a flat view, which says nothing and links to nothing.';
COMMENT ON COLUMN semsql.content_hashes.turn IS
    'The variant of the upright view this row holds, 0 to 7 (bit 2 transposes, then bit 0 '
    'mirrors left-right, bit 1 top-bottom; 5 and 6 are the quarter turns): the canonical '
    'orientation, one row per candidate where it is a close call.';
COMMENT ON COLUMN semsql.content_hashes.alternate IS
    'Another candidate orientation of a close call (true), stored so that a copy tipped the '
    'other way finds it; a search by the asset scans only its rows that are not alternates, '
    'one a view.';

WITH requeued AS (
    UPDATE semsql.tasks
    SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL,
        finished_at = NULL, leased_by = NULL, leased_backend = NULL, lease_expires_at = NULL
    WHERE stage = 'content' AND status = 'done'
    RETURNING asset_id)
UPDATE semsql.assets a SET status = 'pending'
WHERE a.status = 'ready' AND a.id IN (SELECT asset_id FROM requeued);
