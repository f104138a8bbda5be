"""Several face-vector models in one library: each its own thresholds, never compared with each
other, and a switch of model that embeds the faces again. Controlled vectors, as in
test_people.py: `mix(a, b, s)` has cosine similarity s with axis a."""

from __future__ import annotations

import psycopg
import pytest
from test_people import MODEL, axis, match_of, mix, new_asset, scalar, write_face

DLIB = "dlib"


def enrol_vectors(conn: psycopg.Connection, name: str, model: str, *vectors) -> tuple:
    return conn.execute(
        "SELECT * FROM semsql.enrol_person(%s, %s::vector[], %s)", [name, list(vectors), model]
    ).fetchone()


def test_each_model_has_its_own_match_threshold(conn) -> None:
    assert scalar(conn, "SELECT semsql.face_match_threshold('dlib')") == pytest.approx(0.92)
    assert scalar(conn, "SELECT semsql.face_match_threshold(%s::text)", [MODEL]) == (
        pytest.approx(0.4)
    )
    enrol_vectors(conn, "A", DLIB, axis(0))
    enrol_vectors(conn, "A", MODEL, axis(0))
    asset = new_asset(conn, "a.jpg")
    dlib_face = write_face(conn, asset, mix(0, 1, 0.9), model=DLIB)
    facenet_face = write_face(conn, asset, mix(0, 1, 0.9), model=MODEL)
    assert match_of(conn, dlib_face) == (None, None)  # 0.9 is below dlib's 0.92
    assert match_of(conn, facenet_face) == ("A", pytest.approx(0.9, abs=1e-5))

    assert scalar(conn, "SELECT semsql.set_face_match_threshold(0.85, 'dlib')") == 1
    assert match_of(conn, dlib_face) == ("A", pytest.approx(0.9, abs=1e-5))
    # The general threshold is that of the models without their own: dlib keeps 0.85.
    assert scalar(conn, "SELECT semsql.set_face_match_threshold(0.95)") == 1
    assert match_of(conn, facenet_face) == (None, None)
    assert match_of(conn, dlib_face)[0] == "A"
    assert scalar(conn, "SELECT semsql.set_face_match_threshold(0.5, %s)", [MODEL]) == 1
    assert match_of(conn, facenet_face)[0] == "A"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="between 0 and 1"):
        conn.execute("SELECT semsql.set_face_match_threshold('NaN', 'dlib')")


def test_rematching_and_new_references_use_the_threshold_of_their_model(conn) -> None:
    asset = new_asset(conn, "a.jpg")
    near = write_face(conn, asset, mix(0, 1, 0.95), model=DLIB)
    far = write_face(conn, asset, mix(0, 2, 0.9), model=DLIB)
    facenet = write_face(conn, asset, mix(0, 3, 0.5), model=MODEL)
    _, _, matched = enrol_vectors(conn, "A", DLIB, axis(0))
    assert matched == 1 and match_of(conn, near)[0] == "A" and match_of(conn, far)[0] is None
    enrol_vectors(conn, "A", MODEL, axis(0))
    assert match_of(conn, facenet)[0] == "A"
    conn.execute("UPDATE semsql.faces SET person_id = NULL, match_confidence = NULL")
    assert scalar(conn, "SELECT semsql.match_faces()") == 2
    assert [match_of(conn, f)[0] for f in (near, far, facenet)] == ["A", None, "A"]
    conn.execute("UPDATE semsql.faces SET person_id = NULL, match_confidence = NULL")
    assert scalar(conn, "SELECT semsql.match_faces(%s)", [[near, far, facenet]]) == 2
    assert [match_of(conn, f)[0] for f in (near, far, facenet)] == ["A", None, "A"]


def test_vectors_of_two_models_are_never_compared(conn) -> None:
    """The same numbers in two models' vectors say nothing about each other."""
    first, second = new_asset(conn, "a.jpg"), new_asset(conn, "b.jpg")
    enrol_vectors(conn, "A", MODEL, axis(0))
    dlib_face = write_face(conn, first, axis(0), model=DLIB)
    facenet_face = write_face(conn, second, mix(0, 1, 0.7), model=MODEL)
    assert match_of(conn, dlib_face) == (None, None)
    assert match_of(conn, facenet_face)[0] == "A"
    dlib_near = write_face(conn, first, mix(0, 2, 0.99), model=DLIB)
    facenet_near = write_face(conn, second, mix(0, 3, 0.99), model=MODEL)

    # Without a model, face search keeps to the model of the nearest stored face.
    nearest = conn.execute(
        "SELECT face_id FROM semsql.faces_like_vector(%s, 10) ORDER BY distance", [axis(0)]
    ).fetchall()
    models = conn.execute(
        "SELECT DISTINCT embedding_model FROM semsql.faces WHERE id = ANY (%s)",
        [[row[0] for row in nearest]],
    ).fetchall()
    assert models == [(DLIB,)] and len(nearest) == 2
    assert {
        row[0]
        for row in conn.execute(
            "SELECT face_id FROM semsql.faces_like_vector(%s, 10, %s)", [axis(0), MODEL]
        )
    } == {facenet_face, facenet_near}
    hits = conn.execute(
        "SELECT asset_id, face_id FROM semsql.assets_with_face(%s, 10)", [axis(0)]
    ).fetchall()
    assert hits == [(first, dlib_face)]  # 0.99-alike dlib face of the same asset: one row
    like = conn.execute("SELECT face_id FROM semsql.faces_like(%s)", [dlib_face]).fetchall()
    assert like == [(dlib_near,)]

    # Clusters: identical vectors of two models are two clusters' worth of nothing.
    conn.execute("UPDATE semsql.faces SET person_id = NULL, match_confidence = NULL")
    conn.execute("DELETE FROM semsql.person_faces")
    assert scalar(conn, "SELECT semsql.refresh_face_clusters()") == 2
    groups = conn.execute(
        """SELECT array_agg(DISTINCT f.embedding_model) FROM semsql.face_cluster_members m
           JOIN semsql.faces f ON f.id = m.face_id GROUP BY m.cluster_id"""
    ).fetchall()
    assert sorted(groups) == [([DLIB],), ([MODEL],)]


def test_clusters_link_faces_at_their_models_cluster_threshold(conn) -> None:
    asset = new_asset(conn, "a.jpg")
    for model in (DLIB, MODEL):
        write_face(conn, asset, mix(0, 1, 0.9), model=model)
        write_face(conn, asset, mix(0, 2, 0.9), model=model)  # 0.81 alike
        write_face(conn, asset, mix(5, 6, 0.97), model=model)
        write_face(conn, asset, mix(5, 7, 0.97), model=model)  # 0.94 alike
    assert scalar(conn, "SELECT semsql.face_cluster_threshold('dlib')") == pytest.approx(0.93)
    assert scalar(conn, "SELECT semsql.refresh_face_clusters()") == 3
    sizes = conn.execute(
        """SELECT f.embedding_model, c.min_similarity, count(*) FROM semsql.face_clusters c
           JOIN semsql.face_cluster_members m ON m.cluster_id = c.id
           JOIN semsql.faces f ON f.id = m.face_id
           GROUP BY c.id, f.embedding_model, c.min_similarity ORDER BY 1, 2, 3"""
    ).fetchall()
    assert sizes == [
        (DLIB, pytest.approx(0.93), 2),
        (MODEL, pytest.approx(0.5), 2),
        (MODEL, pytest.approx(0.5), 2),
    ]
    # A similarity given applies to every model.
    assert scalar(conn, "SELECT semsql.refresh_face_clusters(0.8)") == 4


def test_a_new_model_queues_the_faces_of_others_and_references_follow_their_face(conn) -> None:
    first, second, third = (new_asset(conn, name) for name in ("a.jpg", "b.jpg", "c.jpg"))
    named = write_face(conn, first, axis(0))
    other = write_face(conn, second, mix(0, 1, 0.7))
    write_face(conn, third, axis(4), model=DLIB)
    conn.execute("SELECT * FROM semsql.enrol_faces('A', %s)", [[named]])
    assert match_of(conn, other)[0] == "A"
    conn.execute("UPDATE semsql.tasks SET status = 'done', finished_at = now()")

    assert scalar(conn, "SELECT semsql.requeue_faces_of_other_models('dlib')") == 2
    pending = conn.execute(
        "SELECT asset_id FROM semsql.tasks WHERE stage = 'face_vectors' AND status = 'pending'"
        " ORDER BY asset_id"
    ).fetchall()
    assert pending == [(first,), (second,)]

    # The worker re-embeds the other face first: no dlib reference yet, so it matches nobody.
    conn.execute(
        "UPDATE semsql.faces SET embedding = %s, embedding_model = 'dlib' WHERE id = %s",
        [mix(2, 1, 0.96), other],
    )
    assert match_of(conn, other) == (None, None)
    # Then the named face: its reference follows, and wins the other face.
    conn.execute(
        "UPDATE semsql.faces SET embedding = %s, embedding_model = 'dlib' WHERE id = %s",
        [axis(2), named],
    )
    reference = conn.execute(
        "SELECT model, embedding FROM semsql.person_faces WHERE face_id = %s", [named]
    ).fetchone()
    assert reference[0] == DLIB and reference[1].to_list()[2] == 1
    assert match_of(conn, named) == ("A", None)  # named by hand, still
    assert match_of(conn, other) == ("A", pytest.approx(0.96, abs=1e-5))
    assert scalar(conn, "SELECT semsql.requeue_faces_of_other_models('dlib')") == 0
