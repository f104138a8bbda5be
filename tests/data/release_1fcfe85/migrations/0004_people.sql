-- 0004: recognising people. Reference face vectors per person, the settings of recognition,
-- and the clusters of faces that match nobody. The functions live in sql/045_people.sql.

CREATE TABLE semsql.recognition_settings (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    match_threshold    real NOT NULL DEFAULT 0.4 CHECK (match_threshold BETWEEN 0 AND 1),
    cluster_threshold  real NOT NULL DEFAULT 0.5 CHECK (cluster_threshold BETWEEN 0 AND 1),
    min_cluster_size   integer NOT NULL DEFAULT 2 CHECK (min_cluster_size >= 2),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO semsql.recognition_settings DEFAULT VALUES;
COMMENT ON TABLE semsql.recognition_settings IS
    'One row: how faces are recognised. Change match_threshold with semsql.set_face_match_threshold, '
    'which matches every face again.';
COMMENT ON COLUMN semsql.recognition_settings.match_threshold IS
    'A face is recognised as its nearest enrolled person when the match confidence '
    '(1 - cosine distance) is at least this. 0.4 = cosine distance 0.6, about the Euclidean '
    'distance 1.1 between unit FaceNet vectors that FaceNet uses as its operating point.';
COMMENT ON COLUMN semsql.recognition_settings.cluster_threshold IS
    'Two unrecognised faces are linked into one cluster when their similarity is at least this.';
COMMENT ON COLUMN semsql.recognition_settings.min_cluster_size IS
    'Unrecognised faces in smaller groups than this form no cluster.';

CREATE TABLE semsql.person_faces (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES semsql.people (id) ON DELETE CASCADE,
    embedding   vector(512) NOT NULL,
    model       text NOT NULL,
    source_uri  text,
    box         real[] CHECK (box IS NULL OR cardinality(box) = 4),
    face_id     bigint UNIQUE REFERENCES semsql.faces (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Inline: matching reads every reference vector many times; TOAST would fetch it each time.
ALTER TABLE semsql.person_faces ALTER COLUMN embedding SET STORAGE PLAIN;
CREATE INDEX person_faces_person ON semsql.person_faces (person_id);
CREATE INDEX person_faces_embedding ON semsql.person_faces USING hnsw (embedding vector_cosine_ops);
COMMENT ON TABLE semsql.person_faces IS
    'Reference face vectors of enrolled people: from enrolment images (source_uri, box) or from '
    'stored faces that a user named (face_id). Faces are matched against these.';
COMMENT ON COLUMN semsql.person_faces.model IS
    'The face-vector model that made the vector; faces are only compared with vectors of their own model.';
COMMENT ON COLUMN semsql.person_faces.face_id IS
    'The stored face this reference was taken from, if any (NULL once that face is deleted; the vector stays).';

CREATE TABLE semsql.face_clusters (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seed_face_id    bigint NOT NULL,
    min_similarity  real NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE semsql.face_clusters IS
    'Groups of unrecognised faces that look alike (connected components of faces whose similarity '
    'reaches min_similarity); semsql.name_face_cluster enrols one as a person.';
COMMENT ON COLUMN semsql.face_clusters.seed_face_id IS 'The smallest face id of the cluster when it was made.';

CREATE TABLE semsql.face_cluster_members (
    face_id     bigint PRIMARY KEY REFERENCES semsql.faces (id) ON DELETE CASCADE,
    cluster_id  bigint NOT NULL REFERENCES semsql.face_clusters (id) ON DELETE CASCADE
);
CREATE INDEX face_cluster_members_cluster ON semsql.face_cluster_members (cluster_id);
COMMENT ON TABLE semsql.face_cluster_members IS 'Which unrecognised face is in which cluster.';

-- Recognition rewrites faces.person_id and match_confidence in bulk (an enrolment, a new
-- threshold). An update that changes an indexed column, or finds no room on its page, is not
-- HOT and inserts the row into every index again, the faces HNSW index included: about 3 ms a
-- face at 100k faces (a full re-match of 60k faces: 3 minutes), against ~3 us for a HOT update.
-- So person_id is not indexed, and pages keep half their room for updated rows (the face
-- vectors themselves are TOASTed, so rows are small). Lookups by person scan faces instead
-- (~15 ms per 100k faces).
DROP INDEX semsql.faces_person;
ALTER TABLE semsql.faces SET (fillfactor = 50);
