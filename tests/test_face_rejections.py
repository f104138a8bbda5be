"""What "not this person" does in SQL (semsql.reject_face_person, migration 0026): every path of
recognition (the trigger on a new vector, a new reference, matching all faces, merging people)
leaves a rejected pair alone, and naming the face as that person by hand lifts it; undoing it
(semsql.undo_face_rejection) matches the face again as recognition would."""

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


def undone(conn: psycopg.Connection, face: int, person: str) -> tuple:
    return conn.execute(
        """SELECT restored, person, match_confidence FROM semsql.undo_face_rejection(
               %s, (SELECT id FROM semsql.people WHERE name = %s))""",
        [face, person],
    ).fetchone()


def test_undoing_a_rejection_matches_the_face_as_recognition_would(conn) -> None:
    enrol(conn, "Ana", axis(0))
    enrol(conn, "Bea", axis(1))
    face = write_face(conn, new_asset(conn, "d.jpg"), mix(0, 1, 0.8))  # 0.8 Ana, 0.6 Bea
    before = match_of(conn, face)
    assert before[0] == "Ana"
    assert rejected(conn, face) == ("Ana", "Bea")
    assert rejected(conn, face) == ("Bea", None)
    # Undoing Bea: matched at once, to the nearest person it may still be.
    restored, person, confidence = undone(conn, face, "Bea")
    assert (restored, person) == ("Bea", "Bea") and confidence == pytest.approx(0.6, abs=1e-3)
    restored, person, confidence = undone(conn, face, "Ana")
    assert (restored, person) == ("Ana", "Ana") and confidence == pytest.approx(before[1])
    assert match_of(conn, face) == before
    assert scalar(conn, "SELECT count(*) FROM semsql.face_rejections") == 0
    # Matching everything again agrees.
    conn.execute("SELECT semsql.match_faces()")
    assert match_of(conn, face) == before


def test_undoing_keeps_a_face_named_by_hand_and_the_threshold(conn) -> None:
    enrol(conn, "Ana", axis(0))
    enrol(conn, "Eve", axis(5))
    asset = new_asset(conn, "e.jpg")
    named = write_face(conn, asset, mix(0, 1, 0.9))
    far = write_face(conn, asset, mix(5, 6, 0.5))  # 0.5 like Eve
    assert rejected(conn, named)[0] == "Ana"
    conn.execute("SELECT * FROM semsql.enrol_faces('Cid', %s)", [[named]])
    assert undone(conn, named, "Ana") == ("Ana", "Cid", None)  # named by hand: stays Cid
    conn.execute("SELECT semsql.set_face_match_threshold(0.45)")
    assert rejected(conn, far) == ("Eve", None)
    conn.execute("SELECT semsql.set_face_match_threshold(0.6)")
    assert undone(conn, far, "Eve") == ("Eve", None, None)  # below the threshold now


def test_undoing_what_was_never_said_is_refused(conn) -> None:
    enrol(conn, "Ana", axis(0))
    face = write_face(conn, new_asset(conn, "f.jpg"), mix(0, 1, 0.9))
    with pytest.raises(psycopg.errors.NoDataFound, match="was not said not to be person"):
        undone(conn, face, "Ana")
    conn.rollback()
    with pytest.raises(psycopg.errors.NoDataFound, match="was not said not to be person"):
        undone(conn, 10**9, "Ana")
