-- 0025: videos. A video asset (media_type 'video') has a duration; the `frames` stage samples
-- its frames (semsql/video.py) into semsql.frames, each with its time and a JPEG of it, and the
-- image stages run on those frames: CLIP vectors per frame (semsql.frame_vectors, with an HNSW
-- index of their own), faces and detected objects per frame (faces.frame_id, tags.frame_id),
-- captions per frame (frames.caption, gathered into the video's caption), so that filters and
-- the document treat a video as one asset. Deleting a video deletes its frames and everything that hangs from them.

ALTER TABLE semsql.assets ADD COLUMN duration_ms integer CHECK (duration_ms >= 0);
COMMENT ON COLUMN semsql.assets.duration_ms IS
    'A video''s length in milliseconds, from its container; NULL for an image.';

ALTER TABLE semsql.stages
    DROP CONSTRAINT IF EXISTS stages_reads_check,
    ADD CONSTRAINT stages_reads_check CHECK (reads IN ('image', 'faces', 'document', 'video')),
    ADD COLUMN media_types text[] NOT NULL DEFAULT '{image,video}';
COMMENT ON COLUMN semsql.stages.media_types IS
    'The media types whose assets get this stage''s task: frames reads videos only; the image '
    'stages read an image, or a video''s sampled frames.';

CREATE TABLE semsql.frames (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id   bigint NOT NULL REFERENCES semsql.assets (id) ON DELETE CASCADE,
    at_ms      integer NOT NULL CHECK (at_ms >= 0),
    scene_cut  boolean NOT NULL DEFAULT false,
    width      integer NOT NULL CHECK (width > 0),
    height     integer NOT NULL CHECK (height > 0),
    jpeg       bytea NOT NULL,
    caption    text,
    model      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (asset_id, at_ms)
);
-- The JPEGs are read whole, by the image stages and the pages: no compression of what is
-- compressed already.
ALTER TABLE semsql.frames ALTER COLUMN jpeg SET STORAGE EXTERNAL;
COMMENT ON TABLE semsql.frames IS
    'The frames of a video that the image stages read: its time (at_ms from the start), whether '
    'it was kept for a scene cut, and the upright frame as a JPEG (long side at most 1280).';
COMMENT ON COLUMN semsql.frames.caption IS 'The captioning model''s caption of this frame.';

ALTER TABLE semsql.faces
    ADD COLUMN frame_id bigint REFERENCES semsql.frames (id) ON DELETE CASCADE;
CREATE INDEX faces_frame ON semsql.faces (frame_id) WHERE frame_id IS NOT NULL;
COMMENT ON COLUMN semsql.faces.frame_id IS
    'For a face in a video: the frame it was found in (its box is in that frame''s pixels).';

ALTER TABLE semsql.tags
    ADD COLUMN frame_id bigint REFERENCES semsql.frames (id) ON DELETE CASCADE;
CREATE INDEX tags_frame ON semsql.tags (frame_id) WHERE frame_id IS NOT NULL;
COMMENT ON COLUMN semsql.tags.frame_id IS
    'For an object detected in a video: the frame it was seen in (its box is in that frame''s pixels).';

CREATE TABLE semsql.frame_vectors (
    frame_id   bigint PRIMARY KEY REFERENCES semsql.frames (id) ON DELETE CASCADE,
    asset_id   bigint NOT NULL REFERENCES semsql.assets (id) ON DELETE CASCADE,
    model      text NOT NULL,
    embedding  halfvec NOT NULL,
    -- Copies of the asset's filters, as on semsql.embeddings: filtered HNSW scans test them.
    collection text,
    taken_at   timestamptz,
    tags       text[] NOT NULL DEFAULT '{}',
    emotions   text[] NOT NULL DEFAULT '{}',
    people     bigint[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX frame_vectors_asset ON semsql.frame_vectors (asset_id);
-- The filter copies' indexes, as on semsql.embeddings (0005): an exact scan of a filtered set
-- of videos reads their frames, not every frame.
CREATE INDEX frame_vectors_tags ON semsql.frame_vectors USING gin (tags);
CREATE INDEX frame_vectors_emotions ON semsql.frame_vectors USING gin (emotions);
CREATE INDEX frame_vectors_people ON semsql.frame_vectors USING gin (people);
CREATE INDEX frame_vectors_collection ON semsql.frame_vectors (collection);
CREATE INDEX frame_vectors_taken_at ON semsql.frame_vectors (taken_at);
COMMENT ON TABLE semsql.frame_vectors IS
    'The image-space (CLIP) vector of each video frame, with copies of its asset''s filters; '
    'searches in the image space scan these beside semsql.embeddings.';

-- Search results say what each asset is and, for a video, its best moment: the time of the
-- frame most like the query (semsql.best_moment).
ALTER TYPE semsql.search_result ADD ATTRIBUTE media_type text, ADD ATTRIBUTE best_at interval;
ALTER TYPE semsql.similar_result ADD ATTRIBUTE media_type text, ADD ATTRIBUTE best_at interval;
DROP FUNCTION IF EXISTS semsql.assets_with_face(vector, integer, text, double precision);

-- Searches filter by media type and a video's duration (semsql.search gains media_type,
-- min_duration and max_duration: its old signature would stay beside the new one).
ALTER TYPE semsql.search_args
    ADD ATTRIBUTE media_type text,
    ADD ATTRIBUTE min_duration_ms integer,
    ADD ATTRIBUTE max_duration_ms integer;
DROP FUNCTION IF EXISTS semsql.search(text, vector, bigint, text[], text, text[], text[], text,
                                      text, timestamptz, timestamptz, jsonb, text, integer,
                                      integer, real, real, text, boolean, real, real, real, real,
                                      real, text, text, vector, vector, real, real, text, text);
DROP FUNCTION IF EXISTS semsql.nearest_sql(text, integer, text);
DROP FUNCTION IF EXISTS semsql.exact_nearest_sql(text, text);
