-- 0009: semsql.stages records what each stage reads and which vector space it fills, as
-- semsql/stages.py declares them; every `semsql init` writes those rows (semsql.write_stages),
-- so the SQL side asks this table instead of naming stages itself.

ALTER TABLE semsql.stages ADD COLUMN reads text NOT NULL DEFAULT 'image'
                              CHECK (reads IN ('image', 'faces', 'document')),
                          ADD COLUMN vector_space text UNIQUE,
                          ADD COLUMN retired boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN semsql.stages.reads IS
    'What the stage''s model is given per asset: image, faces (the image and the stored face '
    'boxes) or document (the asset document as text).';
COMMENT ON COLUMN semsql.stages.vector_space IS
    'The semsql.embeddings space whose vectors the stage writes (its model also answers '
    'semsql.embed_text there); NULL for a stage that writes no vectors.';

COMMENT ON COLUMN semsql.stages.retired IS
    'Disabled by a `semsql init` whose release does not declare the stage (not by an admin): '
    'an init that declares it again enables it again.';

UPDATE semsql.stages SET reads = 'faces' WHERE name IN ('face_vectors', 'emotion');
UPDATE semsql.stages SET reads = 'document', vector_space = 'text' WHERE name = 'text';
UPDATE semsql.stages SET vector_space = 'image' WHERE name = 'clip';
