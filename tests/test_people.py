"""Recognition in SQL with controlled vectors: thresholds, re-matching, clusters, face search.

Vectors are built from orthonormal axes, so that each similarity is known exactly:
`mix(a, b, s)` has cosine similarity s with axis a.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import psycopg
import pytest

from semsql import database

MODEL = "test-facenet"


def axis(i: int) -> np.ndarray:
    vector = np.zeros(512, dtype=np.float32)
    vector[i] = 1.0
    return vector


def mix(a: int, b: int, similarity: float) -> np.ndarray:
    """A unit vector with this cosine similarity to axis a (the rest towards axis b)."""
    return (similarity * axis(a) + math.sqrt(1 - similarity**2) * axis(b)).astype(np.float32)


def new_asset(conn: psycopg.Connection, name: str) -> int:
    sha = f"{abs(hash(name)):064x}"[-64:]
    return conn.execute(
        "INSERT INTO semsql.assets (uri, sha256) VALUES (%s, %s) RETURNING id", [f"/{name}", sha]
    ).fetchone()[0]


def write_face(
    conn: psycopg.Connection, asset_id: int, vector: np.ndarray, model: str = MODEL
) -> int:
    """As the worker writes a face: the box first, the vector in a later UPDATE."""
    face_id = conn.execute(
        "INSERT INTO semsql.faces (asset_id, box, detector) VALUES (%s, '{0,0,50,50}', 'mtcnn') "
        "RETURNING id",
        [asset_id],
    ).fetchone()[0]
    conn.execute(
        "UPDATE semsql.faces SET embedding = %s, embedding_model = %s WHERE id = %s",
        [vector, model, face_id],
    )
    return face_id


def enrol(conn: psycopg.Connection, name: str, *vectors: np.ndarray, kind: str | None = None):
    return conn.execute(
        "SELECT * FROM semsql.enrol_person(%s, %s::vector[], %s, NULL, NULL, %s)",
        [name, list(vectors), MODEL, kind],
    ).fetchone()


def match_of(conn: psycopg.Connection, face_id: int) -> tuple[str | None, float | None]:
    return conn.execute(
        """SELECT p.name, f.match_confidence FROM semsql.faces f
           LEFT JOIN semsql.people p ON p.id = f.person_id WHERE f.id = %s""",
        [face_id],
    ).fetchone()


def scalar(conn: psycopg.Connection, query: str, params: list | None = None):
    return conn.execute(query, params).fetchone()[0]


def test_match_confidence_is_one_minus_the_cosine_distance(conn) -> None:
    assert scalar(conn, "SELECT semsql.face_match_confidence(0)") == 1
    assert scalar(conn, "SELECT semsql.face_match_confidence(0.25)") == 0.75
    assert scalar(conn, "SELECT semsql.face_match_confidence(1.5)") == 0
    assert scalar(conn, "SELECT semsql.face_match_threshold()") == pytest.approx(0.4)


def test_a_face_is_recognised_when_its_vector_is_written(conn) -> None:
    enrol(conn, "Grace Hopper", axis(0))
    asset = new_asset(conn, "a.jpg")
    near = write_face(conn, asset, mix(0, 1, 0.8))
    far = write_face(conn, asset, mix(0, 1, 0.3))
    assert match_of(conn, near) == ("Grace Hopper", pytest.approx(0.8, abs=1e-5))
    assert match_of(conn, far) == (None, None)
    assert scalar(conn, "SELECT semsql.asset_person_names(%s)", [asset]) == ["Grace Hopper"]


def test_faces_of_another_model_are_not_compared(conn) -> None:
    enrol(conn, "Grace Hopper", axis(0))
    face = write_face(conn, new_asset(conn, "a.jpg"), axis(0), model="another-model")
    assert match_of(conn, face) == (None, None)


def test_enrolment_recognises_stored_faces_and_requeues_their_text(conn, db_url) -> None:
    asset = new_asset(conn, "a.jpg")
    other = new_asset(conn, "b.jpg")
    face = write_face(conn, asset, mix(3, 4, 0.7))
    write_face(conn, other, axis(9))
    conn.commit()  # the new documents (their file names) queue their text at commit
    conn.execute("UPDATE semsql.tasks SET status = 'done', finished_at = now()")
    conn.commit()
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN semsql_tasks")
        person_id, added, matched = enrol(conn, "Ada Lovelace", axis(3), axis(3))
        conn.commit()
        assert next(listener.notifies(timeout=5, stop_after=1)).channel == "semsql_tasks"
    assert (added, matched) == (1, 1)  # the same vector twice is one reference
    assert match_of(conn, face) == ("Ada Lovelace", pytest.approx(0.7, abs=1e-5))
    pending = conn.execute(
        "SELECT asset_id FROM semsql.tasks WHERE stage = 'text' AND status = 'pending'"
    ).fetchall()
    assert pending == [(asset,)]
    again = enrol(conn, "ada lovelace", axis(3))
    assert tuple(again) == (person_id, 0, 0)


def test_the_nearest_person_wins_and_the_threshold_chooses_the_operating_point(conn) -> None:
    enrol(conn, "A", axis(0))
    enrol(conn, "B", axis(1))
    both = (0.8 * axis(0) + 0.6 * axis(1)).astype(np.float32)  # 0.8 to A, 0.6 to B
    face = write_face(conn, new_asset(conn, "a.jpg"), both)
    assert match_of(conn, face)[0] == "A"

    assert scalar(conn, "SELECT semsql.set_face_match_threshold(0.85)") == 1
    assert match_of(conn, face) == (None, None)
    assert scalar(conn, "SELECT semsql.set_face_match_threshold(0.5)") == 1
    assert match_of(conn, face) == ("A", pytest.approx(0.8, abs=1e-5))
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT semsql.set_face_match_threshold(1.5)")


def test_new_references_only_win_faces_they_are_nearer_to(conn) -> None:
    enrol(conn, "A", axis(0))
    face = write_face(conn, new_asset(conn, "a.jpg"), mix(0, 1, 0.9))
    assert enrol(conn, "B", mix(0, 2, 0.7))[2] == 0  # B is 0.63 from the face: A stays
    assert match_of(conn, face)[0] == "A"
    assert enrol(conn, "C", mix(0, 1, 0.995))[2] == 1
    assert match_of(conn, face)[0] == "C"


def test_matching_all_faces_walks_from_references_and_agrees_with_per_face_lookup(conn) -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 512)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for i in range(8):  # four identities stay strangers
        enrol(conn, f"person {i}", centres[i])
    asset = new_asset(conn, "crowd.jpg")
    conn.execute("SET session_replication_role = replica")  # stored, not yet recognised
    for n in range(150):
        noisy = centres[n % 12] + rng.uniform(0.3, 1.4) * rng.standard_normal(512) / math.sqrt(512)
        write_face(conn, asset, (noisy / np.linalg.norm(noisy)).astype(np.float32))
    conn.execute("SET session_replication_role = origin")
    everything = "SELECT id, person_id, match_confidence FROM semsql.faces ORDER BY id"

    moved = scalar(conn, "SELECT semsql.match_faces()")
    walked = conn.execute(everything).fetchall()
    conn.execute("UPDATE semsql.faces SET person_id = NULL, match_confidence = NULL")
    assert scalar(conn, "SELECT semsql.match_faces(array_agg(id)) FROM semsql.faces") == moved
    looked_up = conn.execute(everything).fetchall()
    assert [(i, p) for i, p, _ in walked] == [(i, p) for i, p, _ in looked_up]
    assert [c for *_, c in walked] == pytest.approx([c for *_, c in looked_up], abs=1e-5)
    assert 0 < moved < 150


def test_faces_named_by_hand_are_kept_by_recognition(conn) -> None:
    enrol(conn, "A", axis(0))
    face = write_face(conn, new_asset(conn, "a.jpg"), mix(0, 1, 0.9))
    added, matched = conn.execute(
        "SELECT references_added, faces_matched FROM semsql.enrol_faces('B', %s)", [[face]]
    ).fetchone()
    assert (added, matched) == (1, 1)
    assert match_of(conn, face) == ("B", None)
    conn.execute("SELECT semsql.set_face_match_threshold(0.3)")
    conn.execute("UPDATE semsql.faces SET embedding = %s WHERE id = %s", [axis(0), face])
    assert match_of(conn, face) == ("B", None)
    view = conn.execute(
        "SELECT source, confidence FROM semsql.asset_people_all WHERE face_id = %s", [face]
    ).fetchone()
    assert view == ("named", 1)
    with pytest.raises(psycopg.errors.NoDataFound, match="no stored face"):
        conn.execute("SELECT * FROM semsql.enrol_faces('B', ARRAY[-1]::bigint[])")


def test_removing_a_person_unlinks_their_faces_and_matches_them_again(conn) -> None:
    enrol(conn, "A", axis(0))
    enrol(conn, "B", mix(0, 1, 0.8))
    face = write_face(conn, new_asset(conn, "a.jpg"), mix(0, 1, 0.95))
    assert match_of(conn, face)[0] == "A"
    assert scalar(conn, "SELECT semsql.remove_person('a')") == 1
    assert match_of(conn, face)[0] == "B"
    conn.execute("DELETE FROM semsql.people WHERE name = 'B'")  # plain SQL: unlinked only
    assert match_of(conn, face) == (None, None)
    assert scalar(conn, "SELECT count(*) FROM semsql.person_faces") == 0


def test_merge_and_rename(conn) -> None:
    enrol(conn, "Grace", axis(0))
    enrol(conn, "Grace Hopper", axis(1), kind="celebrity")
    asset = new_asset(conn, "a.jpg")
    face = write_face(conn, asset, axis(0))
    conn.execute(
        "INSERT INTO semsql.asset_people (asset_id, person_id, source) "
        "SELECT %s, id, 'user' FROM semsql.people WHERE name = 'Grace'",
        [asset],
    )
    assert scalar(conn, "SELECT semsql.merge_people('Grace', 'grace hopper')") == 1
    assert match_of(conn, face)[0] == "Grace Hopper"
    summary = conn.execute(
        "SELECT name, kind, reference_faces, faces, assets FROM semsql.people_summary"
    ).fetchall()
    assert summary == [("Grace Hopper", "celebrity", 2, 1, 1)]

    enrol(conn, "Alan", axis(2))
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        conn.execute("SELECT semsql.rename_person('Alan', 'GRACE HOPPER')")
    assert "merge_people" in caught.value.diag.message_hint
    conn.rollback()
    enrol(conn, "Alan", axis(2))
    conn.execute("SELECT semsql.rename_person('Alan', 'Alan Turing')")
    with pytest.raises(psycopg.errors.NoDataFound) as caught:
        conn.execute("SELECT semsql.person_by_name('Alan Turin')")
    assert caught.value.diag.message_hint == "did you mean Alan Turing?"


def test_a_name_too_long_for_its_index_is_refused_with_a_clear_error(conn) -> None:
    long_name = "Ana " * 750  # 3,000 characters (2,999 trimmed): over a B-tree entry
    for call, args in (
        ("SELECT semsql.add_person(%s)", [long_name]),
        ("SELECT * FROM semsql.enrol_person(%s, %s::vector[], %s)", [long_name, [axis(0)], MODEL]),
    ):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 200 characters"):
            conn.execute(call, args)
        conn.rollback()
    conn.execute("SELECT semsql.add_person('Ana')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="this one has 2999"):
        conn.execute("SELECT semsql.rename_person('Ana', %s)", [long_name])


FACE = "array_fill(0.1, ARRAY[512])::vector"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (f"semsql.faces_like_vector({FACE}, 2147483647)", "p_k must be between 1 and 10000"),
        (f"semsql.faces_like_vector({FACE}, NULL)", "p_k must be between 1 and 10000, not NULL"),
        ("semsql.faces_like_vector(array_fill(0, ARRAY[512])::vector)", "no direction"),
        ("semsql.faces_like(1, 2147483647)", "p_k must be between 1 and 10000"),
        (f"semsql.assets_with_face({FACE}, 0)", "p_k must be between 1 and 10000, not 0"),
        (f"semsql.assets_with_face({FACE}, 5, NULL, 'NaN')", "p_min_similarity must be a finite"),
        (f"semsql.assets_with_face({FACE}, 5, NULL, 'Infinity')", "must be a finite number"),
        (f"semsql.assets_with_face({FACE}, 5, NULL, 1.5)", "between 0 and 1, not 1.5"),
        (f"semsql.faces_near({FACE}, 'm', 'NaN')", "p_max_distance must be a finite number"),
        ("semsql.cluster_faces(NULL, 'NaN', 2)", "p_min_similarity must be a finite number"),
        ("semsql.cluster_faces(NULL, 0.5, 0)", "p_min_size must be 1 or more, not 0"),
        ("semsql.cluster_faces(NULL, 0.5, 2, 2147483647)", "p_neighbours must be between 1"),
        ("semsql.refresh_face_clusters(-0.5)", "between 0 and 1, not -0.5"),
        ("semsql.split_face_cluster(1, 'Infinity')", "p_min_similarity must be a finite"),
    ],
)
def test_face_search_and_clustering_refuse_bad_numbers_naming_the_argument(
    conn, call, message
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT * FROM {call}")


def test_faces_like_an_unknown_face_says_so(conn) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match="no face -1 with a face vector"):
        conn.execute("SELECT * FROM semsql.faces_like(-1)")


def test_who_is_in_an_asset_combines_stated_and_recognised_people(conn) -> None:
    enrol(conn, "Grace Hopper", axis(0))
    enrol(conn, "Alan Turing", axis(1))
    both = new_asset(conn, "both.jpg")
    only_grace = new_asset(conn, "grace.jpg")
    write_face(conn, both, mix(0, 5, 0.9))
    write_face(conn, only_grace, mix(0, 5, 0.6))
    conn.execute("SELECT semsql.add_user_facts(%s, NULL, '{}', '{Alan Turing}')", [both])

    rows = conn.execute(
        "SELECT name, source, round(confidence::numeric, 2)::float8 FROM semsql.asset_people_all "
        "WHERE asset_id = %s ORDER BY name",
        [both],
    ).fetchall()
    assert [tuple(r) for r in rows] == [
        ("Alan Turing", "user", 1),
        ("Grace Hopper", "recognised", 0.9),
    ]
    assert scalar(conn, "SELECT semsql.asset_person_names(%s)", [both]) == [
        "Alan Turing",
        "Grace Hopper",
    ]

    def assets(names: list[str], match_all: bool = True, least: float = 0) -> set[int]:
        found = conn.execute(
            "SELECT semsql.assets_with_people(%s, %s, %s)", [names, match_all, least]
        ).fetchall()
        return {row[0] for row in found}

    assert assets(["grace hopper"]) == {both, only_grace}
    assert assets(["Grace Hopper", "Alan Turing"]) == {both}
    assert assets(["Grace Hopper", "Alan Turing"], match_all=False) == {both, only_grace}
    assert assets(["Grace Hopper"], least=0.8) == {both}


def test_search_by_face_vector_and_by_stored_face(conn) -> None:
    enrol(conn, "Grace Hopper", axis(0))
    group = new_asset(conn, "group.jpg")
    portrait = new_asset(conn, "portrait.jpg")
    stranger = new_asset(conn, "stranger.jpg")
    in_group = write_face(conn, group, mix(0, 1, 0.7))
    second_in_group = write_face(conn, group, mix(0, 2, 0.65))
    best = write_face(conn, portrait, mix(0, 1, 0.95))
    write_face(conn, stranger, axis(7))

    hits = conn.execute(
        "SELECT asset_id, face_id, round(similarity::numeric, 2)::float8, person "
        "FROM semsql.assets_with_face(%s, 10)",
        [axis(0)],
    ).fetchall()
    assert [tuple(h) for h in hits] == [
        (portrait, best, 0.95, "Grace Hopper"),
        (group, in_group, 0.7, "Grace Hopper"),
    ]
    assert (
        scalar(conn, "SELECT count(*) FROM semsql.assets_with_face(%s, 10, NULL, 0)", [axis(0)])
        == 3
    )
    assert scalar(conn, "SELECT count(*) FROM semsql.assets_with_face(%s, 1)", [axis(0)]) == 1

    nearest = conn.execute(
        "SELECT face_id FROM semsql.faces_like_vector(%s, 3)", [axis(0)]
    ).fetchall()
    assert [r[0] for r in nearest] == [best, in_group, second_in_group]
    like_best = conn.execute("SELECT face_id FROM semsql.faces_like(%s, 2)", [best]).fetchall()
    assert [r[0] for r in like_best] == [in_group, second_in_group]


def test_unknown_faces_cluster_and_naming_a_cluster_enrols_it(conn) -> None:
    assets = [new_asset(conn, f"{i}.jpg") for i in range(4)]
    may = [write_face(conn, assets[i], mix(10, 20 + i, 0.85)) for i in range(3)]
    bob = [write_face(conn, assets[i], mix(11, 30 + i, 0.85)) for i in range(2)]
    write_face(conn, assets[3], axis(12))  # alone: no cluster

    assert scalar(conn, "SELECT semsql.refresh_face_clusters()") == 2
    clusters = conn.execute(
        "SELECT cluster_id, faces, assets, face_ids FROM semsql.face_cluster_summary "
        "ORDER BY faces DESC"
    ).fetchall()
    assert [(faces, n_assets, sorted(ids)) for _, faces, n_assets, ids in clusters] == [
        (3, 3, sorted(may)),
        (2, 2, sorted(bob)),
    ]
    may_cluster = clusters[0][0]
    added, matched = conn.execute(
        "SELECT references_added, faces_matched FROM semsql.name_face_cluster(%s, 'Aunt May')",
        [may_cluster],
    ).fetchone()
    assert (added, matched) == (3, 3)
    assert {match_of(conn, face) for face in may} == {("Aunt May", None)}
    assert scalar(conn, "SELECT count(*) FROM semsql.face_clusters") == 1
    later = write_face(conn, assets[3], mix(10, 40, 0.85))
    assert match_of(conn, later)[0] == "Aunt May"
    with pytest.raises(psycopg.errors.NoDataFound, match="no face cluster"):
        conn.execute("SELECT * FROM semsql.name_face_cluster(%s, 'x')", [may_cluster])


def test_a_wrongly_merged_cluster_can_be_split(conn) -> None:
    asset = new_asset(conn, "party.jpg")
    # Two people, and a blurry face 0.72 alike to each, which chains them at similarity 0.5.
    left = [write_face(conn, asset, mix(20, 30 + i, 0.95)) for i in range(2)]
    right = [write_face(conn, asset, mix(21, 40 + i, 0.95)) for i in range(2)]
    bridge = write_face(conn, asset, ((axis(20) + axis(21)) / math.sqrt(2)).astype(np.float32))
    assert scalar(conn, "SELECT semsql.refresh_face_clusters(0.5)") == 1
    merged = scalar(conn, "SELECT cluster_id FROM semsql.face_cluster_summary")

    pieces = [r[0] for r in conn.execute("SELECT semsql.split_face_cluster(%s)", [merged])]
    members = {
        cluster: sorted(ids)
        for cluster, ids in conn.execute(
            "SELECT cluster_id, face_ids FROM semsql.face_cluster_summary"
        )
    }
    assert sorted(members.values()) == sorted([sorted(left), sorted(right), [bridge]])
    assert set(members) == set(pieces)

    first = next(c for c, ids in members.items() if ids == sorted(left))
    old, new = [
        r[0]
        for r in conn.execute("SELECT semsql.split_face_cluster(%s, NULL, %s)", [first, [left[1]]])
    ]
    assert (old, scalar(conn, "SELECT semsql.cluster_face_ids(%s)", [new])) == (first, [left[1]])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not in cluster"):
        conn.execute("SELECT semsql.split_face_cluster(%s, NULL, %s)", [first, [right[0]]])


def test_the_people_filter_of_search_follows_recognition(conn) -> None:
    grace = new_asset(conn, "grace.jpg")
    stranger = new_asset(conn, "stranger.jpg")
    write_face(conn, grace, mix(0, 1, 0.9))
    write_face(conn, stranger, axis(2))

    def found() -> list[int]:
        rows = conn.execute("SELECT asset_id FROM semsql.search(people => '{grace hopper}')")
        return [row[0] for row in rows]

    conn.commit()  # search documents are rebuilt when a transaction commits
    assert found() == []
    enrol(conn, "Grace Hopper", axis(0))
    conn.commit()
    assert found() == [grace]
    conn.execute("SELECT semsql.remove_person('Grace Hopper')")
    conn.commit()
    assert found() == []


def wait_until_blocked(observer: psycopg.Connection, pid: int) -> None:
    for _ in range(500):
        waiting = observer.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()[0]
        if waiting == "Lock":
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")


def test_a_face_written_during_an_enrolment_is_recognised_either_way(db_url) -> None:
    with (
        database.connect(db_url, autocommit=True) as observer,
        database.connect(db_url) as worker,
        database.connect(db_url) as enroller,
    ):
        asset = new_asset(worker, "a.jpg")
        worker.commit()

        # The worker's transaction wrote a face first: the enrolment waits for it, then sees it.
        early = write_face(worker, asset, mix(0, 1, 0.9))
        thread = threading.Thread(target=lambda: (enrol(enroller, "A", axis(0)), enroller.commit()))
        thread.start()
        wait_until_blocked(observer, enroller.info.backend_pid)
        worker.commit()
        thread.join()

        # The enrolment went first: the worker's recognition waits for it, then sees it.
        enrol(enroller, "B", axis(2))
        thread = threading.Thread(
            target=lambda: (write_face(worker, asset, mix(2, 3, 0.9)), worker.commit())
        )
        thread.start()
        wait_until_blocked(observer, worker.info.backend_pid)
        enroller.commit()
        thread.join()
        names = observer.execute(
            "SELECT p.name FROM semsql.faces f JOIN semsql.people p ON p.id = f.person_id "
            "ORDER BY f.id"
        ).fetchall()
        assert names == [("A",), ("B",)]
        assert match_of(observer, early)[0] == "A"
