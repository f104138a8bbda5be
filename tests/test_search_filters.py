"""Filters of semsql.search are exact, never shrink a result silently, and are safe to pass
anything: over the catalog of test_search, and over synthetic vectors for the HNSW path."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from semsql import database
from semsql.search import SearchRequest, run_search

FILTERS = {
    "tags, any": (
        {"tags": ["car", "Snow"]},
        "EXISTS (SELECT 1 FROM semsql.tags t WHERE t.asset_id = a.id"
        " AND lower(t.label) IN ('car', 'snow'))",
    ),
    "tags, all": (
        {"tags": ["snow", "WINTER", "ski"], "tags_match": "all"},
        "(SELECT count(DISTINCT lower(t.label)) FROM semsql.tags t WHERE t.asset_id = a.id"
        " AND lower(t.label) IN ('snow', 'winter', 'ski')) = 3",
    ),
    "emotions": (
        {"emotions": ["sad", "Angry"]},
        "EXISTS (SELECT 1 FROM semsql.faces f WHERE f.asset_id = a.id"
        " AND f.emotion IN ('sad', 'angry'))",
    ),
    "people, any": (
        {"people": ["ana lima", "Werner Vogels"]},
        "EXISTS (SELECT 1 FROM semsql.asset_people ap JOIN semsql.people p ON p.id = ap.person_id"
        " WHERE ap.asset_id = a.id AND p.name IN ('Ana Lima', 'Werner Vogels'))",
    ),
    "people, all": (
        {"people": ["Ana Lima", "Joe Park"], "people_match": "all"},
        "(SELECT count(*) FROM semsql.asset_people ap JOIN semsql.people p ON p.id = ap.person_id"
        " WHERE ap.asset_id = a.id AND p.name IN ('Ana Lima', 'Joe Park')) = 2",
    ),
    "collection": ({"collection": "travel"}, "a.collection = 'travel'"),
    "taken between": (
        {
            "taken_after": datetime(2020, 3, 10, tzinfo=UTC),
            "taken_before": datetime(2021, 8, 8, tzinfo=UTC),
        },
        "a.taken_at >= '2020-03-10Z' AND a.taken_at < '2021-08-08Z'",
    ),
    "metadata": (  # manifest metadata lands under "catalog"
        {"metadata": {"catalog": {"camera": {"make": "Canon"}}}},
        "a.metadata -> 'catalog' -> 'camera' ->> 'make' = 'Canon'",
    ),
    "several": (
        {"tags": ["indoors"], "emotions": ["happy"], "taken_after": datetime(2020, 1, 1, tzinfo=UTC)},  # noqa: E501
        "EXISTS (SELECT 1 FROM semsql.tags t WHERE t.asset_id = a.id AND t.label = 'indoors')"
        " AND EXISTS (SELECT 1 FROM semsql.faces f WHERE f.asset_id = a.id AND f.emotion = 'happy')"
        " AND a.taken_at >= '2020-01-01Z'",
    ),
}  # fmt: skip


def expected_ids(conn: psycopg.Connection, condition: str) -> set[int]:
    """The assets that match, computed from the source tables, not from search_documents."""
    return {row[0] for row in conn.execute(f"SELECT a.id FROM semsql.assets a WHERE {condition}")}


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("query", [None, "a day out with friends"])
def test_each_filter_is_exact(corpus, name, query) -> None:
    arguments, condition = FILTERS[name]
    wanted = expected_ids(corpus.conn, condition)
    assert wanted, "the catalog has matches for every filter"
    vector = corpus.vector(query) if query else None
    for exact in (False, True):
        hits = corpus.search(**arguments, query_embedding=vector, k=100, exact=exact)
        assert {hit.asset_id for hit in hits} == wanted, (name, exact)


def test_unknown_people_match_nothing_and_say_so(corpus) -> None:
    hits, notices = run_search(corpus.conn, SearchRequest(people=("Nobody Atall",)))
    assert hits == [] and notices == ['no person is named "Nobody Atall"']
    some, _ = run_search(corpus.conn, SearchRequest(people=("Nobody Atall", "Joe Park")))
    assert {hit.people[-1] for hit in some} == {"Joe Park"}


def test_k_rows_come_back_under_a_selective_filter(corpus) -> None:
    vector = corpus.vector("outdoors in nature")
    matching = expected_ids(corpus.conn, "a.collection = 'default' AND a.taken_at IS NOT NULL")
    dated = {"collection": "default", "taken_after": datetime(1900, 1, 1, tzinfo=UTC)}
    hits = corpus.search(query_embedding=vector, **dated, k=7)
    exact = corpus.search(query_embedding=vector, **dated, k=7, exact=True)
    assert len(matching) > 7 and len(hits) == 7
    assert hits == exact


def test_assets_without_vectors_still_match_the_filters(corpus) -> None:
    harbour = corpus.ids["harbour"]
    corpus.conn.execute("DELETE FROM semsql.embeddings WHERE asset_id = %s", [harbour])
    hits, _ = run_search(
        corpus.conn,
        SearchRequest(query_embedding=corpus.vector("boats"), collection="travel", k=5),
    )
    corpus.conn.rollback()
    assert set(corpus.keys(hits)) == {"harbour", "skyline"}
    assert next(h for h in hits if h.asset_id == harbour).text_score is None


# Search documents are rebuilt when a transaction commits; this rebuilds them now.
IMMEDIATE = "SET CONSTRAINTS semsql.search_documents_stale_refresh IMMEDIATE"

HOSTILE = [
    "x'); DROP TABLE semsql.assets; --",
    'x" OR 1=1 --',
    "$1 $$ \\' %s %I",
    "'; SELECT pg_sleep(10); --",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_every_parameter_is_safe_against_sql_injection(corpus, hostile) -> None:
    count = corpus.conn.execute("SELECT count(*) FROM semsql.assets").fetchone()[0]
    corpus.conn.execute(
        "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, %s, 'user')",
        [corpus.ids["forest"], hostile],
    )
    corpus.conn.execute(IMMEDIATE)
    found = corpus.search(tags=[hostile], k=50)  # and rolls the tag back
    assert corpus.keys(found) == ["forest"]  # matched literally
    text_arguments = {
        "query": hostile, "exclude": hostile, "collection": hostile, "tags": [hostile],
        "emotions": [hostile], "people": [hostile, "Joe Park"], "metadata": {hostile: hostile},
    }  # fmt: skip
    # Each is matched as data: like a harmless value that matches nothing, except that the
    # query's words are keywords ("pg_sleep" finds "A cat sleeping ...") and the other person
    # named still counts; an exclude with nothing to push away from changes nothing.
    expected = {
        "query": ["cat_window"] if "sleep" in hostile else [],
        "exclude": corpus.keys(corpus.search(k=5)),
        "collection": [], "tags": [], "emotions": [], "metadata": [],
        "people": ["beach", "hiking", "office"],
    }  # fmt: skip
    for name, value in text_arguments.items():
        keys = corpus.keys(corpus.search(**{name: value}, k=5))
        assert (sorted(keys) if name == "people" else keys) == expected[name], name
    for name in ("tags_match", "people_match", "order_by", "names"):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            corpus.search(**{name: hostile})
        corpus.conn.rollback()
    assert corpus.conn.execute("SELECT count(*) FROM semsql.assets").fetchone()[0] == count


# The HNSW path, over synthetic vectors ------------------------------------------------------------


@pytest.fixture
def synthetic(db_url: str) -> psycopg.Connection:
    """300 assets with random unit vectors; 'half' tags 150 of them, 'sparse' 170 of which 120
    have no vector."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    conn = database.connect(db_url)
    conn.execute("UPDATE semsql.stages SET enabled = false")
    conn.execute(
        """INSERT INTO semsql.assets (uri, sha256)
           SELECT '/s/' || i || '.jpg', lpad(to_hex(i), 64, '0') FROM generate_series(1, 300) i"""
    )
    ids = [row[0] for row in conn.execute("SELECT id FROM semsql.assets ORDER BY id")]
    copy_sql = "COPY semsql.embeddings (asset_id, space, model, embedding) FROM STDIN"
    with conn.cursor().copy(copy_sql) as copy:
        copy.set_types(["int8", "text", "text", "vector"])
        for i, asset_id in enumerate(ids):
            if not 150 <= i < 270:
                copy.write_row((asset_id, "text", "random", vectors[i]))
    conn.execute(
        """INSERT INTO semsql.tags (asset_id, label, source)
           SELECT id, 'half', 'user' FROM semsql.assets WHERE id %% 2 = 0
           UNION ALL SELECT id, 'sparse', 'user' FROM unnest(%s::bigint[]) AS id""",
        [ids[100:270]],
    )
    conn.execute("SELECT semsql.register_vector_space('text', 'random', 384)")
    conn.execute("SET semsql.exact_scan_limit = 10")
    conn.commit()
    yield conn
    conn.close()


def path_notices(conn: psycopg.Connection, request: SearchRequest) -> tuple[list, list[str]]:
    conn.execute("SET client_min_messages = debug1")
    hits, notices = run_search(conn, request)
    conn.execute("RESET client_min_messages")
    return hits, [n for n in notices if n.startswith("semsql.search")]


def test_a_filtered_hnsw_search_returns_k_rows_as_an_exact_one(synthetic) -> None:
    query = synthetic.execute(
        "SELECT embedding FROM semsql.embeddings LIMIT 1 OFFSET 7"
    ).fetchone()[0]
    request = SearchRequest(query_embedding=query, tags=("half",), k=20)
    hits, path = path_notices(synthetic, request)
    assert path == ["semsql.search: HNSW iterative scans"]
    exact, exact_path = path_notices(synthetic, replace(request, exact=True))
    assert exact_path == ["semsql.search: exact scan"]
    assert len(hits) == 20 and all(hit.asset_id % 2 == 0 for hit in hits)
    assert [h.asset_id for h in hits] == [h.asset_id for h in exact]


def test_when_hnsw_finds_too_few_the_search_scans_exactly(synthetic) -> None:
    query = np.ones(384, dtype=np.float32) / np.sqrt(384)
    request = SearchRequest(query_embedding=query, tags=("sparse",), k=60)
    hits, path = path_notices(synthetic, request)
    assert path == [
        "semsql.search: HNSW iterative scans",
        "semsql.search: HNSW found too few candidates; scanning exactly",
    ]
    tagged = {row[0] for row in synthetic.execute(
        "SELECT asset_id FROM semsql.tags WHERE label = 'sparse'")}  # fmt: skip
    assert len(hits) == 60 and {hit.asset_id for hit in hits} <= tagged
    # The 50 with a vector by similarity, then 10 without one (no score, found by the filter).
    assert all(hit.text_score is not None for hit in hits[:50])
    assert all(hit.score is None and hit.matched_by == [] for hit in hits[50:])


def test_with_statistics_a_small_filtered_set_is_scanned_exactly_with_no_count(synthetic) -> None:
    synthetic.execute("ANALYZE semsql.search_documents")
    synthetic.execute("SET semsql.exact_scan_limit = 200")
    query = np.ones(384, dtype=np.float32) / np.sqrt(384)
    request = SearchRequest(query_embedding=query, tags=("sparse",), k=60)
    hits, path = path_notices(synthetic, request)
    assert path == ["semsql.search: exact scan"]
    exact, _ = path_notices(synthetic, replace(request, exact=True))
    assert hits == exact
    # The 50 with a vector by similarity, then 10 without one.
    assert [hit.score is None for hit in hits] == [False] * 50 + [True] * 10
    assert hits[0].text_score == max(hit.text_score for hit in hits[:50])


def test_with_statistics_a_larger_filtered_set_goes_to_hnsw_with_no_count(synthetic) -> None:
    # 'half' tags 200 of 400: above a limit of 100, within 4 times it, where an estimate
    # without statistics is checked by counting the documents up to the limit.
    def documents_read(request: SearchRequest) -> tuple[list, list[str], int]:
        def scans() -> int:
            synthetic.execute("SELECT pg_stat_clear_snapshot()")
            return synthetic.execute(
                "SELECT seq_scan + idx_scan FROM pg_stat_user_tables "
                "WHERE relid = 'semsql.search_documents'::regclass"
            ).fetchone()[0]

        synthetic.execute("SELECT pg_stat_force_next_flush()")
        synthetic.commit()  # what was done before is counted now
        before = scans()
        synthetic.execute("SELECT pg_stat_force_next_flush()")
        hits, path = path_notices(synthetic, request)
        synthetic.commit()
        return hits, path, scans() - before

    synthetic.execute("SET semsql.exact_scan_limit = 100")
    synthetic.commit()
    query = np.ones(384, dtype=np.float32) / np.sqrt(384)
    request = SearchRequest(query_embedding=query, tags=("half",), k=20)
    counted, path, counted_scans = documents_read(request)
    assert path == ["semsql.search: HNSW iterative scans"]
    synthetic.execute("ANALYZE semsql.search_documents")
    synthetic.commit()
    hits, path, scans = documents_read(request)
    assert path == ["semsql.search: HNSW iterative scans"]
    assert scans == counted_scans - 1  # the documents' rows for the result only
    exact, _ = path_notices(synthetic, replace(request, exact=True))
    assert len(hits) == 20 and hits == counted == exact


def test_while_the_index_is_dropped_for_a_backlog_searches_are_exact(synthetic) -> None:
    synthetic.execute(
        "INSERT INTO semsql.tasks (asset_id, stage) SELECT id, 'text' FROM semsql.assets"
    )
    assert synthetic.execute("SELECT semsql.defer_vector_index('text', 300)").fetchone() == (True,)
    assert synthetic.execute("SELECT to_regclass('semsql.embeddings_text_hnsw')").fetchone() == (
        None,
    )
    query = np.ones(384, dtype=np.float32) / np.sqrt(384)
    for tags in ((), ("half",)):
        request = SearchRequest(query_embedding=query, tags=tags, k=20)
        hits, _ = run_search(synthetic, request)
        exact, _ = run_search(synthetic, replace(request, exact=True))
        assert len(hits) == 20 and hits == exact


def test_concurrent_writers_of_one_asset_both_reach_its_document(db_url) -> None:
    add_tag = "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, %s, 'detr')"
    with database.connect(db_url) as first, database.connect(db_url) as second:
        asset_id = first.execute(
            "INSERT INTO semsql.assets (uri, sha256) VALUES ('/x', repeat('d', 64)) RETURNING id"
        ).fetchone()[0]
        first.commit()
        for one, other in ((first, second), (second, first)):
            one.execute(add_tag, [asset_id, f"one-{one is first}"])
            other.execute(add_tag, [asset_id, f"other-{one is first}"])
            other.execute(IMMEDIATE)  # rebuilt now, before `one` commits: it lacks one's tag
            with ThreadPoolExecutor(1) as pool:
                # `other` holds the document's row: `one` rebuilds it once `other` commits.
                committing = pool.submit(one.commit)
                time.sleep(0.2)
                assert not committing.done()
                other.commit()
                committing.result(timeout=10)
        tags = first.execute(
            "SELECT tags FROM semsql.search_documents WHERE asset_id = %s", [asset_id]
        ).fetchone()[0]
    assert sorted(tags) == ["one-false", "one-true", "other-false", "other-true"]


def test_a_document_is_rebuilt_once_per_transaction_at_commit(conn) -> None:
    asset_id = conn.execute(
        "INSERT INTO semsql.assets (uri, sha256) VALUES ('/y', repeat('e', 64)) RETURNING id"
    ).fetchone()[0]
    for label in ("cat", "sofa", "window"):
        conn.execute(
            "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, %s, 'user')",
            [asset_id, label],
        )
    assert conn.execute("SELECT count(*) FROM semsql.search_documents_stale").fetchone() == (1,)
    conn.commit()
    row = conn.execute(
        "SELECT tags, updated_at FROM semsql.search_documents WHERE asset_id = %s", [asset_id]
    ).fetchone()
    assert row[0] == ["cat", "sofa", "window"]
    assert conn.execute("SELECT count(*) FROM semsql.search_documents_stale").fetchone() == (0,)


def test_a_vector_written_while_its_document_changes_gets_the_new_filters(db_url) -> None:
    add_vector = """INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
                    VALUES (%s, %s, 'm', '[1,0,0]')"""
    add_tag = "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, %s, 'user')"
    with database.connect(db_url) as writer, database.connect(db_url) as tagger:
        writer.execute("UPDATE semsql.stages SET enabled = false")
        asset_id = writer.execute(
            "INSERT INTO semsql.assets (uri, sha256) VALUES ('/v', repeat('f', 64)) RETURNING id"
        ).fetchone()[0]
        writer.commit()
        # The vector first: the document's rebuild waits for it, then updates its copy.
        writer.execute(add_vector, [asset_id, "text"])
        tagger.execute(add_tag, [asset_id, "first"])
        with ThreadPoolExecutor(1) as pool:
            committing = pool.submit(tagger.commit)
            time.sleep(0.2)
            assert not committing.done()
            writer.commit()
            committing.result(timeout=10)
        # The rebuild first: the vector waits for it, then copies the new document.
        tagger.execute(add_tag, [asset_id, "second"])
        tagger.execute(IMMEDIATE)
        with ThreadPoolExecutor(1) as pool:
            inserting = pool.submit(writer.execute, add_vector, [asset_id, "image"])
            time.sleep(0.2)
            assert not inserting.done()
            tagger.commit()
            inserting.result(timeout=10)
        writer.commit()
        copies = writer.execute(
            "SELECT space, tags FROM semsql.embeddings WHERE asset_id = %s ORDER BY space",
            [asset_id],
        ).fetchall()
    assert copies == [("image", ["first", "second"]), ("text", ["first", "second"])]
