-- 0026: "not this person". A face that a user said is not someone is never recognised as them
-- again; it may still match anybody else. The functions live in sql/045_people.sql
-- (semsql.reject_face_person; recognition skips these pairs).

CREATE TABLE semsql.face_rejections (
    face_id     bigint NOT NULL REFERENCES semsql.faces (id) ON DELETE CASCADE,
    person_id   bigint NOT NULL REFERENCES semsql.people (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (face_id, person_id)
);
CREATE INDEX face_rejections_person ON semsql.face_rejections (person_id);
COMMENT ON TABLE semsql.face_rejections IS
    'Faces a user said are not this person (semsql.reject_face_person): recognition never '
    'matches the face to them again; naming the face as them (enrol_faces) lifts it.';
