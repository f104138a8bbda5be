"""The numbers given to semsql.search, similar, duplicates and match_people are checked: NaN,
infinities, out-of-range and overflowing values are refused with invalid_parameter_value and a
message naming the argument (the command line refuses them before, as usage errors:
tests/test_cli_errors.py); and over-long query texts are refused before they are read."""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest

REALS = ["image_weight", "text_weight", "keyword_weight", "name_weight", "exclude_weight",
         "min_score", "relative_cut", "min_text_similarity", "min_image_similarity"]  # fmt: skip
NOT_FINITE = ["NaN", "Infinity", "-Infinity"]


def refused(conn: psycopg.Connection, statement: str, params: list, message: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(statement, params).fetchall()
    conn.rollback()
    assert caught.value.diag.message_primary == message


@pytest.mark.parametrize("name", REALS)
@pytest.mark.parametrize("value", NOT_FINITE)
def test_search_refuses_numbers_that_are_not_finite(conn, name: str, value: str) -> None:
    statement = f"SELECT * FROM semsql.search('snow', {name} => %s::real)"
    refused(conn, statement, [value], f"{name} must be a finite number, not {value}")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("k => 2147483647", "k must be between 1 and 10000, not 2147483647"),
        ("k => 10000, \"offset\" => 2147483647",
         "offset must be between 0 and 1000000000, not 2147483647"),
        ("\"offset\" => -1", "offset must be between 0 and 1000000000, not -1"),
        ("text_weight => -1", "text_weight must be 0 or more, not -1"),
        ("exclude_weight => -0.5", "exclude_weight must be 0 or more, not -0.5"),
        ("image_weight => NULL", "image_weight must be a number, not NULL"),
        ("relative_cut => 1.5", "relative_cut must be between 0 and 1, not 1.5"),
        ("relative_cut => -0.1", "relative_cut must be between 0 and 1, not -0.1"),
        ("min_text_similarity => 1.5", "min_text_similarity must be between -1 and 1, not 1.5"),
        ("min_image_similarity => -2",
         "min_image_similarity must be between -1 and 1, not -2"),
    ],
)  # fmt: skip
def test_search_refuses_numbers_out_of_range(conn, arguments: str, message: str) -> None:
    refused(conn, f"SELECT * FROM semsql.search('snow', {arguments})", [], message)


@pytest.mark.parametrize("name", ["query_embedding", "text_embedding", "image_embedding"])
def test_a_query_vector_of_zeros_is_refused(conn, name: str) -> None:
    statement = f"SELECT * FROM semsql.search({name} => %s::vector)"
    refused(conn, statement, ["[0,0,0]"], f"{name} has no direction: all its values are 0")


@pytest.mark.parametrize("value", NOT_FINITE)
def test_duplicates_refuses_a_distance_that_is_not_finite(conn, value: str) -> None:
    statement = "SELECT * FROM semsql.duplicates(%s::real)"
    refused(conn, statement, [value], f"max_distance must be a finite number, not {value}")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("max_distance => -0.01", "max_distance must be between 0 and 2, not -0.01"),
        ("max_distance => 2.5", "max_distance must be between 0 and 2, not 2.5"),
        ("neighbours => 0", "neighbours must be between 1 and 1000, not 0"),
        ("neighbours => 2147483647", "neighbours must be between 1 and 1000, not 2147483647"),
        ("neighbours => NULL", "neighbours must be between 1 and 1000, not <NULL>"),
        ("space => 'faces'", "space takes image or text, not faces"),
    ],
)
def test_duplicates_refuses_bad_arguments(conn, arguments: str, message: str) -> None:
    refused(conn, f"SELECT * FROM semsql.duplicates({arguments})", [], message)


def test_similar_needs_an_asset(conn) -> None:
    message = "asset_id must be the id of an asset, not NULL"
    refused(conn, "SELECT * FROM semsql.similar(NULL)", [], message)
    refused(conn, "SELECT * FROM semsql.similar(1, 2147483647)", [],
            "k must be between 1 and 10000, not 2147483647")  # fmt: skip


@pytest.mark.parametrize("value", [*NOT_FINITE, "1.5"])
def test_match_people_refuses_a_similarity_outside_0_to_1(conn, value: str) -> None:
    message = (
        f"min_similarity must be a finite number, not {value}"
        if value in NOT_FINITE
        else f"min_similarity must be between 0 and 1, not {value}"
    )
    refused(conn, "SELECT * FROM semsql.match_people('Ana', %s::real)", [value], message)


def test_a_long_vector_is_compared_by_direction(conn) -> None:
    """Values past halfvec's 65504 once failed the search; cosine needs only the direction."""
    conn.execute("UPDATE semsql.stages SET enabled = false")
    asset_id = conn.execute(
        "INSERT INTO semsql.assets (uri, sha256) VALUES ('/a.jpg', repeat('a', 64)) RETURNING id"
    ).fetchone()[0]
    conn.execute(
        """INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
           VALUES (%s, 'image', 'm', '[1,2,2]')""",
        [asset_id],
    )
    conn.execute("SELECT semsql.register_vector_space('image', 'm', 3)")
    conn.commit()  # search reads the asset's document, made at commit
    rows = conn.execute(
        "SELECT asset_id, score FROM semsql.search(query_embedding => '[1e6,2e6,2e6]')"
    ).fetchall()
    assert rows[0][0] == asset_id and rows[0][1] == pytest.approx(1, abs=1e-3)


def test_duplicates_looks_as_far_as_the_neighbours_asked_for(conn) -> None:
    """A and B (collection c) are near duplicates, each with 50 nearer copies in another
    collection: only a scan of more than 50 neighbours links them, past HNSW's default 40."""
    conn.execute("UPDATE semsql.stages SET enabled = false")
    rng = np.random.default_rng(5)
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.96, 0.0, 0.28])  # cosine distance 0.04
    rows = [("c", a), ("c", b)]
    for centre in (a, b):
        for offset in rng.uniform(0.01, 0.05, 50):
            rows.append(("other", centre + np.array([0.0, offset, 0.0])))
    ids = []
    for number, (collection, vector) in enumerate(rows):
        asset_id = conn.execute(
            "INSERT INTO semsql.assets (uri, sha256, collection) VALUES (%s, %s, %s) RETURNING id",
            [f"/{number}.jpg", f"{number:064x}", collection],
        ).fetchone()[0]
        conn.execute(
            """INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
               VALUES (%s, 'image', 'm', %s)""",
            [asset_id, vector.astype(np.float32)],
        )
        ids.append(asset_id)
    conn.execute("SELECT semsql.register_vector_space('image', 'm', 3)")
    conn.execute("SET enable_seqscan = off")  # the HNSW index, as on a large library
    found = conn.execute(
        "SELECT asset_id FROM semsql.duplicates(0.05, collection => 'c', neighbours => 100)"
    ).fetchall()
    assert sorted(row[0] for row in found) == ids[:2]
    assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "40"  # restored


# Over-long query texts are refused first, before any of them is read -------------------------

LONG_TEXT = "word " * 10_000  # 50,000 characters; names were matched in quadratic time


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM semsql.search(%s)",
        "SELECT * FROM semsql.search('snow', exclude => %s)",
        "SELECT * FROM semsql.search(%s, k => 0)",  # the text is checked before anything else
        "SELECT * FROM semsql.match_people(%s)",
        "SELECT * FROM semsql.query_words(%s)",
        "SELECT semsql.query_lexemes(%s)",
        "SELECT semsql.keyword_query(%s)",
    ],
)
def test_an_over_long_query_text_is_refused_at_once(conn, statement: str) -> None:
    conn.execute("INSERT INTO semsql.people (name) VALUES ('Ana Lima')")
    started = time.monotonic()
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as caught:
        conn.execute(statement, [LONG_TEXT]).fetchall()
    elapsed = time.monotonic() - started
    conn.rollback()
    assert caught.value.diag.message_primary == (
        "the query text is 50000 characters long; a query text has at most 10000"
    )
    assert "semsql.check_query_text" in caught.value.diag.context
    assert elapsed < 2  # it took 11 to 24 s, before the refusal, to read the words


def test_names_in_a_query_of_the_longest_length_are_found_quickly(conn) -> None:
    conn.execute("INSERT INTO semsql.people (name) VALUES ('Ana Lima'), ('Joe Park')")
    longest = conn.execute("SELECT semsql.max_query_text_length()").fetchone()[0]
    text = "w " * ((longest - 22) // 2) + "Ana Lima and joe park"
    assert len(text) <= longest
    started = time.monotonic()
    found = conn.execute(
        "SELECT name, matched_text, last_word - first_word FROM semsql.match_people(%s)", [text]
    ).fetchall()
    assert time.monotonic() - started < 2  # 5.8 s with the words joined to themselves
    assert found == [("Ana Lima", "Ana Lima", 1), ("Joe Park", "joe park", 1)]
