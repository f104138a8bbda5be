-- Views for BI tools and analysts: one row per thing, plain column types (text, numbers,
-- timestamps, booleans, text arrays), no vectors or jsonb.

CREATE OR REPLACE VIEW semsql.asset_overview AS
SELECT a.id AS asset_id,
       a.uri,
       a.collection,
       a.media_type,
       a.mime,
       a.width,
       a.height,
       a.bytes,
       a.taken_at,
       a.created_at AS added_at,
       a.status,
       a.error,
       d.caption,
       coalesce(d.labels, '{}') AS tags,
       coalesce(d.emotions, '{}') AS emotions,
       coalesce(d.people_names, '{}') AS people,
       (SELECT count(*) FROM semsql.faces f WHERE f.asset_id = a.id)::integer AS faces,
       EXISTS (SELECT 1 FROM semsql.embeddings e
               WHERE e.asset_id = a.id AND e.space = 'image') AS has_image_vector,
       EXISTS (SELECT 1 FROM semsql.embeddings e
               WHERE e.asset_id = a.id AND e.space = 'text') AS has_text_vector
FROM semsql.assets a
LEFT JOIN semsql.search_documents d ON d.asset_id = a.id;
COMMENT ON VIEW semsql.asset_overview IS
    'One row per asset in plain types: where it is, when taken, enrichment status, caption '
    '(the user''s, else the model''s), tags, facial emotions, people shown, faces, which vectors exist.';

CREATE OR REPLACE VIEW semsql.asset_tags AS
SELECT t.asset_id, a.uri, a.collection, a.taken_at, t.label AS tag, lower(t.label) AS tag_key,
       t.source, t.confidence, t.source = 'user' AS stated
FROM semsql.tags t
JOIN semsql.assets a ON a.id = t.asset_id;
COMMENT ON VIEW semsql.asset_tags IS
    'One row per tag of an asset (long form, for BI tools without arrays): stated keywords and '
    'detected objects with their confidence.';

CREATE OR REPLACE VIEW semsql.tag_summary AS
SELECT lower(t.label) AS tag,
       min(t.label) AS example_label,
       count(DISTINCT t.asset_id) AS assets,
       count(DISTINCT t.asset_id) FILTER (WHERE t.source = 'user') AS stated_assets,
       count(DISTINCT t.asset_id) FILTER (WHERE t.source <> 'user') AS detected_assets,
       avg(t.confidence) FILTER (WHERE t.source <> 'user')::real AS mean_confidence,
       min(a.taken_at) AS first_taken_at,
       max(a.taken_at) AS last_taken_at
FROM semsql.tags t
JOIN semsql.assets a ON a.id = t.asset_id
GROUP BY lower(t.label);
COMMENT ON VIEW semsql.tag_summary IS
    'Per tag (case-insensitive): how many assets have it, stated or detected, and when they were taken.';

CREATE OR REPLACE VIEW semsql.emotion_summary AS
SELECT f.emotion,
       count(*) AS faces,
       count(DISTINCT f.asset_id) AS assets,
       min(a.taken_at) AS first_taken_at,
       max(a.taken_at) AS last_taken_at
FROM semsql.faces f
JOIN semsql.assets a ON a.id = f.asset_id
WHERE f.emotion IS NOT NULL
GROUP BY f.emotion;
COMMENT ON VIEW semsql.emotion_summary IS
    'Per facial emotion: how many faces and assets show it, and when they were taken.';
