-- 0018: the segments stage (off by default). A semantic segmentation model labels every pixel;
-- each label that covers enough of the image is stored with its share of the image and a
-- compact mask, and also as a tag (source 'segmentation'), so that it filters searches.

CREATE TABLE semsql.segments (
    asset_id     bigint NOT NULL REFERENCES semsql.assets (id) ON DELETE CASCADE,
    label        text NOT NULL CHECK (label <> ''),
    share        real NOT NULL CHECK (share > 0 AND share <= 1),
    score        real NOT NULL CHECK (score BETWEEN 0 AND 1),
    mask_width   smallint NOT NULL CHECK (mask_width BETWEEN 1 AND 1024),
    mask_height  smallint NOT NULL CHECK (mask_height BETWEEN 1 AND 1024),
    mask_rle     integer[] NOT NULL CHECK (cardinality(mask_rle) >= 1),
    model        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, label)
);
CREATE INDEX segments_label ON semsql.segments (lower(label), share DESC);
COMMENT ON TABLE semsql.segments IS
    'Labelled regions from the segments stage''s semantic segmentation model: per asset and '
    'label, the share of the image it covers and its mask; also stored as tags with source '
    '''segmentation''.';
COMMENT ON COLUMN semsql.segments.share IS
    'The share of the image''s pixels labelled so (of the mask grid: mask_rle decodes to it).';
COMMENT ON COLUMN semsql.segments.score IS
    'The model''s mean probability over the pixels it gave this label (the tag''s confidence).';
COMMENT ON COLUMN semsql.segments.mask_rle IS
    'The mask on a mask_width x mask_height grid over the upright image, row by row from the '
    'top left: lengths of alternating runs of cells outside and inside the region, starting '
    'outside (the first may be 0); they sum to mask_width * mask_height.';
COMMENT ON COLUMN semsql.segments.model IS 'The segmentation model (id or folder) that made it.';
