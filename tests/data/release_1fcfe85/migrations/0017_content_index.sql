-- 0017: the content index. The content stage (semsql/content_hash.py) stores a 256-bit
-- perceptual hash of each image per view (the whole image, and its centre), searched by Hamming
-- distance through an HNSW index; the rotated and mirrored variants of a hash are computed at
-- query time (semsql.content_variant), so one row per view is enough.

CREATE TABLE semsql.content_hashes (
    asset_id    bigint NOT NULL REFERENCES semsql.assets (id) ON DELETE CASCADE,
    view        text NOT NULL CHECK (view IN ('full', 'centre')),
    hash        bit(256) NOT NULL,
    model       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, view)
);
COMMENT ON TABLE semsql.content_hashes IS
    'How each image looks, with no model: a 256-bit DCT sign hash of the upright image (view '
    '''full'') and of its centre, 80 % of each side (view ''centre'', so that a copy cropped by '
    '10 % per side matches it); compared by Hamming distance (<~>), rotations and mirrors by '
    'semsql.content_variant.';
COMMENT ON COLUMN semsql.content_hashes.hash IS
    'Bit i (from the left, from 0): the sign of the DCT coefficient of vertical frequency i / 16 '
    'and horizontal frequency i % 16 of the view in grey at 64 x 64; bit 0 is always 0.';

CREATE INDEX content_hashes_hash_hnsw ON semsql.content_hashes
    USING hnsw (hash bit_hamming_ops);
