-- 0001: the tables of semsql. Run once, inside one transaction, by `semsql init`.
-- Extensions (vector, dblink, pg_trgm) and the schema itself are created by the runner.

-- Ingest calls --------------------------------------------------------------------------------

CREATE TABLE semsql.jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL DEFAULT 'ingest',
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    collection    text,
    args          jsonb NOT NULL DEFAULT '{}',
    new_count     integer NOT NULL DEFAULT 0,
    updated_count integer NOT NULL DEFAULT 0,
    skipped_count integer NOT NULL DEFAULT 0,
    failed_count  integer NOT NULL DEFAULT 0,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    ingested_at   timestamptz,  -- every file seen; enrichment may still be running
    finished_at   timestamptz
);
COMMENT ON TABLE semsql.jobs IS
    'One row per `semsql ingest` call: pending -> running -> completed | failed, with counts.';
COMMENT ON COLUMN semsql.jobs.ingested_at IS
    'When every file of the job was read; the job completes once its assets are enriched.';

-- Assets and what is known about them ---------------------------------------------------------

CREATE TABLE semsql.assets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection  text NOT NULL DEFAULT 'default',
    uri         text NOT NULL,
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    media_type  text NOT NULL DEFAULT 'image' CHECK (media_type IN ('image', 'video')),
    mime        text,
    width       integer CHECK (width > 0),
    height      integer CHECK (height > 0),
    bytes       bigint CHECK (bytes >= 0),
    taken_at    timestamptz,
    metadata    jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    error       text,
    job_id      bigint REFERENCES semsql.jobs (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection, uri),
    UNIQUE (collection, sha256)
);
CREATE INDEX assets_taken_at ON semsql.assets (taken_at);
CREATE INDEX assets_metadata ON semsql.assets USING gin (metadata jsonb_path_ops);
CREATE INDEX assets_job ON semsql.assets (job_id);
COMMENT ON TABLE semsql.assets IS
    'One image (or video) per row; uri is an absolute path, a file:// URI for names that are not UTF-8, or an http(s) URL.';
COMMENT ON COLUMN semsql.assets.status IS
    'Enrichment: pending (stages queued), ready (all done), failed (a stage failed; see semsql.tasks).';
COMMENT ON COLUMN semsql.assets.error IS
    'The last problem with this asset, e.g. its file became unreadable on a later ingest.';

CREATE TABLE semsql.job_items (
    job_id      bigint NOT NULL REFERENCES semsql.jobs (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    uri         text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('new', 'updated', 'skipped', 'failed')),
    asset_id    bigint REFERENCES semsql.assets (id) ON DELETE SET NULL,
    error_code  text,
    error       text,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX job_items_asset ON semsql.job_items (asset_id);
COMMENT ON TABLE semsql.job_items IS
    'What a job did with each file: new, updated, skipped (with the reason) or failed (with the error).';

CREATE TABLE semsql.captions (
    asset_id    bigint NOT NULL REFERENCES semsql.assets (id) ON DELETE CASCADE,
    source      text NOT NULL,
    text        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, source)
);
COMMENT ON TABLE semsql.captions IS
    'Captions by source: ''user'' (file metadata or a catalog manifest) or the captioning model''s name.';

CREATE TABLE semsql.tags (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id    bigint NOT NULL REFERENCES semsql.assets (id) ON DELETE CASCADE,
    label       text NOT NULL CHECK (label <> ''),
    confidence  real CHECK (confidence BETWEEN 0 AND 1),
    box         real[] CHECK (box IS NULL OR cardinality(box) = 4),
    source      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tags_asset ON semsql.tags (asset_id);
CREATE INDEX tags_label ON semsql.tags (lower(label), asset_id);
COMMENT ON TABLE semsql.tags IS
    'Keywords (source ''user'') and detected objects (source = detector model, with confidence and box x0,y0,x1,y1 in pixels).';

CREATE TABLE semsql.people (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (btrim(name) <> ''),
    kind        text NOT NULL DEFAULT 'person' CHECK (kind IN ('person', 'celebrity')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX people_name ON semsql.people (lower(name));
CREATE INDEX people_name_trgm ON semsql.people USING gin (name gin_trgm_ops);
COMMENT ON TABLE semsql.people IS 'Named people: enrolled persons and celebrities.';

CREATE TABLE semsql.faces (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id          bigint NOT NULL REFERENCES semsql.assets (id) ON DELETE CASCADE,
    box               real[] NOT NULL CHECK (cardinality(box) = 4),
    confidence        real CHECK (confidence BETWEEN 0 AND 1),
    detector          text NOT NULL,
    embedding         vector(512),
    embedding_model   text,
    emotion           text,
    emotion_scores    jsonb,
    emotion_model     text,
    person_id         bigint REFERENCES semsql.people (id) ON DELETE SET NULL,
    match_confidence  real CHECK (match_confidence BETWEEN 0 AND 1),
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX faces_asset ON semsql.faces (asset_id);
CREATE INDEX faces_person ON semsql.faces (person_id);
CREATE INDEX faces_embedding ON semsql.faces USING hnsw (embedding vector_cosine_ops);
COMMENT ON TABLE semsql.faces IS
    'Detected faces: box, detection confidence, face vector, facial emotion and the recognised person.';

CREATE TABLE semsql.asset_people (
    asset_id    bigint NOT NULL REFERENCES semsql.assets (id) ON DELETE CASCADE,
    person_id   bigint NOT NULL REFERENCES semsql.people (id) ON DELETE CASCADE,
    source      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, person_id, source)
);
CREATE INDEX asset_people_person ON semsql.asset_people (person_id);
COMMENT ON TABLE semsql.asset_people IS
    'People shown in an asset by statement (source ''user'': IPTC PersonInImage, a manifest).';

-- Vectors ---------------------------------------------------------------------------------------

CREATE TABLE semsql.vector_spaces (
    space       text PRIMARY KEY CHECK (space IN ('image', 'text')),
    model       text NOT NULL,
    dims        integer NOT NULL CHECK (dims BETWEEN 1 AND 4000),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE semsql.vector_spaces IS
    'The model and dimension of each embedding space; its HNSW index is built for that dimension.';

CREATE TABLE semsql.embeddings (
    asset_id      bigint NOT NULL REFERENCES semsql.assets (id) ON DELETE CASCADE,
    space         text NOT NULL CHECK (space IN ('image', 'text')),
    model         text NOT NULL,
    embedding     vector NOT NULL,
    input_sha256  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, space)
);
COMMENT ON TABLE semsql.embeddings IS
    'One vector per asset and space: image (CLIP) and text (the asset document: caption, tags, emotions, people).';
COMMENT ON COLUMN semsql.embeddings.input_sha256 IS
    'Hash of the text that was embedded, so an unchanged document is not embedded again.';

-- Work queue ----------------------------------------------------------------------------------

CREATE TABLE semsql.stages (
    name        text PRIMARY KEY,
    position    integer NOT NULL UNIQUE,
    enabled     boolean NOT NULL DEFAULT true,
    depends_on  text[] NOT NULL DEFAULT '{}',
    description text NOT NULL
);
COMMENT ON TABLE semsql.stages IS
    'Enrichment stages; an enabled stage gets a task for every new or changed asset.';

INSERT INTO semsql.stages (name, position, depends_on, description) VALUES
    ('caption',      1, '{}',                      'a caption from the captioning model'),
    ('tags',         2, '{}',                      'objects from the object detector'),
    ('faces',        3, '{}',                      'face boxes from MTCNN'),
    ('face_vectors', 4, '{faces}',                 'a vector per face'),
    ('emotion',      5, '{faces}',                 'a facial emotion per face'),
    ('clip',         6, '{}',                      'the CLIP image vector'),
    ('text',         7, '{caption,tags,emotion}',  'the vector of the asset document');

CREATE TABLE semsql.tasks (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id         bigint NOT NULL REFERENCES semsql.assets (id) ON DELETE CASCADE,
    stage            text NOT NULL REFERENCES semsql.stages (name) ON UPDATE CASCADE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    leased_by        text,
    leased_backend   integer,
    lease_expires_at timestamptz,
    model            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    UNIQUE (asset_id, stage)
);
CREATE INDEX tasks_claimable ON semsql.tasks (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX tasks_leased ON semsql.tasks (lease_expires_at) WHERE status = 'running';
COMMENT ON TABLE semsql.tasks IS
    'The work queue: one task per asset and stage, claimed with FOR UPDATE SKIP LOCKED under a lease.';
COMMENT ON COLUMN semsql.tasks.leased_backend IS
    'pg_backend_pid() of the claiming connection: once that backend is gone the task can be claimed again before the lease expires.';
