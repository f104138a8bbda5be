-- 0012: recognition thresholds per face-vector model. Each model has its own operating point:
-- recognition_settings' thresholds (0.4 / 0.5) are FaceNet's, and stay the thresholds of every
-- model without a row here. The functions that read them live in sql/045_people.sql.

CREATE TABLE semsql.face_model_settings (
    model              text PRIMARY KEY,
    match_threshold    real NOT NULL CHECK (match_threshold BETWEEN 0 AND 1),
    cluster_threshold  real NOT NULL CHECK (cluster_threshold BETWEEN 0 AND 1),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE semsql.face_model_settings IS
    'Recognition thresholds of a face-vector model (faces.embedding_model), in place of '
    'recognition_settings'' for the faces and references of that model. Change match_threshold '
    'with semsql.set_face_match_threshold(threshold, model), which matches every face again.';
COMMENT ON COLUMN semsql.face_model_settings.match_threshold IS
    'A face of this model is recognised as its nearest enrolled person when the match confidence '
    '(1 - cosine distance) is at least this.';
COMMENT ON COLUMN semsql.face_model_settings.cluster_threshold IS
    'Two unrecognised faces of this model are linked into one cluster when their similarity is '
    'at least this.';

-- dlib's face encoder: dlib's operating point is Euclidean distance 0.6 between its raw
-- descriptors, whose norms are about 1.43: on the unit vectors semsql stores, a cosine
-- similarity of about 1 - (0.6 / 1.43)^2 / 2 = 0.91. Measured on the sample faces (MTCNN boxes,
-- `python bench/people.py --calibrate`): copies of one face (flipped, cropped, brightened,
-- scaled) are 0.973 or more alike, different people 0.911 at most (most 0.82 .. 0.90). 0.92
-- matches a little more strictly than dlib's point; clusters, which chain links, link at 0.93.
INSERT INTO semsql.face_model_settings (model, match_threshold, cluster_threshold)
VALUES ('dlib', 0.92, 0.93);
