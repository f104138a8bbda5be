"""What "not this person" does in SQL (semsql.reject_face_person, migration 0026): every path of
recognition (the trigger on a new vector, a new reference, matching all faces, merging people)
leaves a rejected pair alone, and naming the face as that person by hand lifts it."""

from __future__ import annotations

import psycopg
import pytest
from test_people import axis, enrol, match_of, mix, new_asset, scalar, write_face


def rejected(conn: psycopg.Connection, face: int) -> tuple:
    return conn.execute(
        "SELECT rejected, person FROM semsql.reject_face_person(%s)", [face]
    ).fetchone()


def test_a_rejected_face_is_never_matched_to_that_person_again(conn) -> None:
    enrol(conn, "Ana", axis(0))
    face = write_face(conn, new_asset(conn, "a.jpg"), mix(0, 1, 0.9))
    assert match_of(conn, face)[0] == "Ana"
    assert rejected(conn, face) == ("Ana", None)
    # A new vector for the face (the trigger), a new reference (match_references), matching
    # everything (match_faces): none gives it back to Ana.
    conn.execute("UPDATE semsql.faces SET embedding = %s WHERE id = %s", [mix(0, 2, 0.95), face])
    assert match_of(conn, face) == (None, None)
    enrol(conn, "Ana", mix(0, 3, 0.99))
    conn.execute("SELECT semsql.match_faces()")
    conn.execute("SELECT semsql.set_face_match_threshold(0.3)")
    assert match_of(conn, face) == (None, None)
    # Another person may still have it, and naming it Ana by hand lifts the rejection.
    enrol(conn, "Cid", mix(0, 2, 0.9))
    assert match_of(conn, face)[0] == "Cid"
    conn.execute("SELECT * FROM semsql.enrol_faces('Ana', %s)", [[face]])
    assert match_of(conn, face) == ("Ana", None)
    assert scalar(conn, "SELECT count(*) FROM semsql.face_rejections") == 0


def test_rejecting_a_reference_face_drops_the_reference_and_its_matches(conn) -> None:
    asset = new_asset(conn, "b.jpg")
    named = write_face(conn, asset, mix(5, 6, 0.99))
    conn.execute("SELECT * FROM semsql.enrol_faces('Dee', %s)", [[named]])
    won = write_face(conn, asset, mix(5, 7, 0.9))  # recognised through that reference alone
    assert match_of(conn, won)[0] == "Dee"
    assert rejected(conn, named) == ("Dee", None)
    assert scalar(conn, "SELECT count(*) FROM semsql.person_faces") == 0
    assert match_of(conn, won) == (None, None)


def test_a_face_that_is_nobody_or_unknown_cannot_be_rejected(conn) -> None:
    face = write_face(conn, new_asset(conn, "c.jpg"), axis(9))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not linked"):
        rejected(conn, face)
    conn.rollback()
    with pytest.raises(psycopg.errors.NoDataFound, match="no face has id"):
        rejected(conn, 10**9)
