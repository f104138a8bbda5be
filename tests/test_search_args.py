"""semsql.search passes its inputs as one semsql.search_args value: every statement it builds binds
that value alone ($1) and reads its fields by name; and a search with every filter set returns
the rows that a plain SQL query over the source tables picks, on each of its paths (exact scan,
counted pool, HNSW iterative scans) and when it fuses signals."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from fix_db import TEMPLATE
from psycopg.types.json import Jsonb

from semsql import database
from semsql.search import SearchRequest, run_search
from semsql.testing import scratch_database

# The functions that build or run the statements of a search.
SEARCH_FUNCTIONS = (
    "search",
    "filter_conditions",
    "nearest_sql",
    "exact_nearest_sql",
    "rank_pool",
    "rank_hits",
)
RAISE_OPTIONS = r"ERRCODE|MESSAGE|DETAIL|HINT|COLUMN|CONSTRAINT|DATATYPE|TABLE|SCHEMA"
FIELD = re.compile(r"\(\$1\)\.(\"?\w+\"?)")


def search_args_fields(conn: psycopg.Connection) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            """SELECT quote_ident(a.attname) FROM pg_attribute a
               WHERE a.attrelid = 'semsql.search_args'::regclass AND a.attnum > 0
                 AND NOT a.attisdropped"""
        )
    }


def every_filter_args(conn: psycopg.Connection, match: str) -> str:
    """A semsql.search_args literal with every filter (and every other field) set."""
    return conn.execute(
        """SELECT ROW(ARRAY['red'], %(m)s, ARRAY['happy'], ARRAY[1::bigint], %(m)s, 'travel',
                      now(), now(), '{"a": 1}', ARRAY[2::bigint], '[1,0]', '[0,1]', 'x'::tsquery,
                      ARRAY['x'], '[1,1]', '[1,-1]', ARRAY['y'], ARRAY[3::bigint], 4,
                      ARRAY[1, 1, 0.5, 0.5, 0.5]::real[], 40, 0.1, 0.5, 'newest', 20, 5, 41, 0.3,
                      0.2, true, 0.8, 'video', 1000, 60000
                  )::semsql.search_args::text""",
        {"m": match},
    ).fetchone()[0]


def test_every_statement_of_a_search_binds_its_search_args_alone(conn) -> None:
    sources = dict(
        conn.execute(
            """SELECT p.proname, p.prosrc FROM pg_proc p
               WHERE p.pronamespace = 'semsql'::regnamespace AND p.proname = ANY (%s)""",
            [list(SEARCH_FUNCTIONS)],
        ).fetchall()
    )
    assert set(sources) == set(SEARCH_FUNCTIONS)
    search = sources["search"]
    # Every EXECUTE of semsql.search has a USING list, and each is the one value `args`.
    using_lists = re.findall(rf"\bUSING\s+(?!(?:{RAISE_OPTIONS})\b)([^;]*);", search)
    assert len(using_lists) == len(re.findall(r"\bEXECUTE\b", search)) >= 7
    assert {" ".join(values.split()) for values in using_lists} == {"args"}

    # What semsql.search runs is its own literals and the generators' text: $1 is the only
    # parameter there, read by fields of semsql.search_args.
    conditions, statements = {}, []
    for match in ("any", "all"):
        args = every_filter_args(conn, match)
        for alias in ("d", "e"):
            conditions[match, alias] = conn.execute(
                "SELECT semsql.filter_conditions(%s, %s::semsql.search_args)", [alias, args]
            ).fetchone()[0]
        statements += conn.execute(
            """SELECT semsql.nearest_sql('text', 384, %(c)s),
                      semsql.nearest_sql('image', 512, NULL),
                      semsql.exact_nearest_sql('image', %(c)s),
                      semsql.exact_nearest_sql('text', NULL)""",
            {"c": conditions[match, "e"]},
        ).fetchone()
    generated = [*conditions.values(), *statements]
    assert all(text.count("($1).") >= 3 for text in statements)
    # nine filters, and inside the metadata and media (type, durations) ones 1 and 3 more
    assert all(text.count(" AND ") == 12 for text in conditions.values())
    numbers = {n for text in [*generated, *sources.values()] for n in re.findall(r"\$(\d+)", text)}
    assert numbers == {"1"}
    read = {f for text in [*generated, search] for f in FIELD.findall(text)}
    assert read <= search_args_fields(conn)
    assert {"tags", "person_ids", "named_ids", "metadata", "taken_after", "row_limit"} <= read
    # The text depends only on which filters are set and how they match, never on a value.
    assert "d.tags && ($1).tags" in conditions["any", "d"]
    assert "e.people @> ($1).person_ids" in conditions["all", "e"]
    assert not re.search(r"\b(travel|red|happy|newest|video)\b", " ".join(generated))


def test_search_args_is_a_commented_type_that_the_internal_functions_take(conn) -> None:
    comment, analyst_may_use = conn.execute(
        """SELECT obj_description('semsql.search_args'::regtype, 'pg_type'),
                  has_type_privilege('semsql_analyst', 'semsql.search_args', 'USAGE')"""
    ).fetchone()
    assert comment and analyst_may_use
    takers = conn.execute(
        """SELECT p.proname, p.pronargs FROM pg_proc p
           WHERE p.pronamespace = 'semsql'::regnamespace
             AND 'semsql.search_args'::regtype = ANY (p.proargtypes)"""
    ).fetchall()
    assert dict(takers) == {"filter_conditions": 2, "rank_pool": 6, "rank_hits": 4}
    # No long list of arguments is left but the public semsql.search's own.
    long_lists = conn.execute(
        """SELECT p.proname FROM pg_proc p
           WHERE p.pronamespace = 'semsql'::regnamespace AND p.pronargs > 8"""
    ).fetchall()
    assert long_lists == [("search",)]


# Every filter at once, against plain SQL over the source tables ---------------------------------

N = 3000
DIMS = 32
LABELS = ["red", "green", "blue", "cat", "dog"]
EMOTIONS = ["happy", "sad", "angry"]
PEOPLE = ["Ana Lima", "Joe Park", "Mia Chen"]
WORDS = ["boat", "harbour", "mountain", "snow", "market", "garden", "river", "city"]
EXCLUDE = "snow"
START = datetime(2015, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def space_url(server_url, template_url, tmp_path_factory) -> Iterator[str]:
    """N assets with random tags (some in capitals), faces with emotions, people shown (stated
    or recognised), two collections, dates (some unknown), metadata and captions; random text
    and image vectors (a few assets lack one); cached vectors of EXCLUDE in both spaces."""
    name = f"semsql_search_args_{os.getpid()}_{tmp_path_factory.mktemp('n').name}"
    with scratch_database(server_url, name, template=TEMPLATE) as url:
        _fill_space(url)
        yield url


def _fill_space(url: str) -> None:
    rng = np.random.default_rng(11)
    with database.connect(url) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = false")
        people = [
            conn.execute(
                "INSERT INTO semsql.people (name) VALUES (%s) RETURNING id", [p]
            ).fetchone()[0]
            for p in PEOPLE
        ]
        with conn.cursor().copy(
            "COPY semsql.assets (uri, sha256, collection, taken_at, metadata) FROM STDIN"
        ) as copy:
            for i in range(N):
                taken = None if i % 17 == 0 else START + timedelta(days=int(rng.integers(3650)))
                camera = {"camera": "Canon" if rng.random() < 0.7 else "Nikon", "n": i}
                collection = "travel" if rng.random() < 0.2 else "default"
                copy.write_row((f"/args/{i}.jpg", f"{i:064x}", collection, taken, Jsonb(camera)))
        ids = [row[0] for row in conn.execute("SELECT id FROM semsql.assets ORDER BY id")]
        tags, faces, shown, captions = [], [], [], []
        for asset_id in ids:
            for label in rng.choice(LABELS, 2, replace=False):
                tags.append((asset_id, label.upper() if rng.random() < 0.1 else label))
            for _ in range(int(rng.integers(0, 3))):
                person = people[int(rng.integers(3))] if rng.random() < 0.3 else None
                faces.append((asset_id, str(rng.choice(EMOTIONS)), person))
            for person in rng.choice(people, int(rng.integers(0, 3)), replace=False):
                shown.append((asset_id, int(person)))
            captions.append((asset_id, "a " + " and ".join(rng.choice(WORDS, 2))))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, %s, 'user')",
                tags,
            )
            cur.executemany(
                """INSERT INTO semsql.faces (asset_id, box, detector, emotion, person_id)
                   VALUES (%s, '{1,1,20,20}', 'test', %s, %s)""",
                faces,
            )
            cur.executemany(
                """INSERT INTO semsql.asset_people (asset_id, person_id, source)
                   VALUES (%s, %s, 'user') ON CONFLICT DO NOTHING""",
                shown,
            )
            cur.executemany(
                "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'user', %s)",
                captions,
            )
        for space, dims, gap in (("text", DIMS, 23), ("image", DIMS // 2, 29)):
            copy_sql = "COPY semsql.embeddings (asset_id, space, model, embedding) FROM STDIN"
            with conn.cursor().copy(copy_sql) as copy:
                copy.set_types(["int8", "text", "text", "vector"])
                for i, asset_id in enumerate(ids):
                    if i % gap != 5:
                        copy.write_row((asset_id, space, "random", rng.standard_normal(dims)))
            conn.execute("SELECT semsql.register_vector_space(%s, 'random', %s)", [space, dims])
            conn.execute(
                """INSERT INTO semsql.query_embeddings
                       (space, text_sha256, text, model, embedding)
                   VALUES (%s, semsql.query_text_digest(%s), %s, 'random', %s)""",
                [space, EXCLUDE, EXCLUDE, rng.standard_normal(dims)],
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


@pytest.fixture
def space(space_url) -> Iterator[psycopg.Connection]:
    with database.connect(space_url) as conn:
        yield conn


SHOWN = """SELECT ap.person_id FROM semsql.asset_people ap WHERE ap.asset_id = a.id
           UNION SELECT f.person_id FROM semsql.faces f WHERE f.asset_id = a.id"""


def plain_condition(arguments: dict[str, Any], named: list[str] = ()) -> tuple[str, dict]:
    """The filters of semsql.search as a condition on semsql.assets a, from the tags, faces,
    people and assets tables (not from search_documents, nor the copies on the vectors)."""
    tags = [t.lower() for t in arguments["tags"]]
    people = [p.lower() for p in arguments["people"]]
    tag_match = "EXISTS (SELECT FROM semsql.tags t WHERE t.asset_id = a.id AND lower(t.label) = w)"
    person_match = (
        f"EXISTS (SELECT FROM semsql.people p WHERE lower(p.name) = w AND p.id IN ({SHOWN}))"
    )

    def matching(how: str, element: str, values: str) -> str:
        if how == "all":
            return f"NOT EXISTS (SELECT FROM unnest({values}::text[]) w WHERE NOT {element})"
        return f"EXISTS (SELECT FROM unnest({values}::text[]) w WHERE {element})"

    condition = " AND ".join(
        [
            matching(arguments["tags_match"], tag_match, "%(tags)s"),
            "EXISTS (SELECT FROM semsql.faces f WHERE f.asset_id = a.id"
            " AND lower(f.emotion) = ANY (%(emotions)s))",
            matching(arguments["people_match"], person_match, "%(people)s"),
            matching("all", person_match, "%(named)s"),
            "a.collection = %(collection)s",
            "a.taken_at >= %(after)s",
            "a.taken_at < %(before)s",
            "a.metadata @> %(metadata)s",
        ]
    )
    return condition, {
        "tags": tags,
        "emotions": arguments["emotions"],
        "people": people,
        "named": [n.lower() for n in named],
        "collection": arguments["collection"],
        "after": arguments["taken_after"],
        "before": arguments["taken_before"],
        "metadata": Jsonb(arguments["metadata"]),
    }


def similarities(conn, condition: str, params: dict, space: str, vector) -> dict[int, float]:
    """Each matching asset's cosine similarity (as search compares: unit query, halfvec) to a
    query vector in a space; None without a vector there."""
    rows = conn.execute(
        f"""SELECT a.id, (1 - (e.embedding <=> l2_normalize(%(q)s::vector)::halfvec))::real
            FROM semsql.assets a
            LEFT JOIN semsql.embeddings e ON e.asset_id = a.id AND e.space = %(space)s
            WHERE {condition}""",
        {**params, "q": vector, "space": space},
    ).fetchall()
    return dict(rows)


def searched(conn: psycopg.Connection, **arguments) -> tuple[list, list[str]]:
    """The hits, and which way the search went (its debug messages)."""
    conn.execute("SET client_min_messages = debug1")
    hits, notices = run_search(conn, SearchRequest(**arguments))
    conn.execute("RESET client_min_messages")
    conn.rollback()
    return hits, [n for n in notices if n.startswith("semsql.search")]


BROAD = {
    "tags": ["RED", "green", "blue"],
    "tags_match": "any",
    "emotions": ["happy", "sad"],
    "people": ["ana lima", "Joe Park"],
    "people_match": "any",
    "collection": "default",
    "taken_after": START + timedelta(days=300),
    "taken_before": START + timedelta(days=3400),
    "metadata": {"camera": "Canon"},
}
# Tags and people, all of them: fewer assets, so wider filters otherwise.
NARROW = BROAD | {
    "tags": ["red", "Cat"],
    "tags_match": "all",
    "people_match": "all",
    "emotions": EMOTIONS,
    "taken_after": START,
    "taken_before": START + timedelta(days=3650),
}

CASES = {
    # filters, semsql.exact_scan_limit, exact => the way semsql.search goes
    "hnsw": (BROAD, "10", False, "HNSW iterative scans"),
    "few by the estimate": (BROAD, "100000", False, "exact scan"),
    "exact": (BROAD, "10", True, "exact scan"),
    "all of, few by the estimate": (NARROW, "100000", False, "exact scan"),
    "all of, exact": (NARROW, "10", True, "exact scan"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_search_with_every_filter_gives_the_rows_of_plain_sql(space, case) -> None:
    filters, limit, exact, way = CASES[case]
    condition, params = plain_condition(filters)
    query = np.random.default_rng(5).standard_normal(DIMS)
    expected = similarities(space, condition, params, "text", query)
    assert 10 < len(expected) < N / 5  # the filters leave most out (see the test below)
    wanted = sorted(expected, key=lambda a: (expected[a] is None, -(expected[a] or 0), a))

    space.execute("SELECT set_config('semsql.exact_scan_limit', %s, false)", [limit])
    space.commit()  # for the session: searched() rolls back
    for k, offset in ((20, 0), (10, 7)):
        hits, notices = searched(
            space, **filters, query_embedding=query, k=k, offset=offset, exact=exact
        )
        assert notices == [f"semsql.search: {way}"]
        assert [hit.asset_id for hit in hits] == wanted[offset : offset + k]
        assert [hit.score for hit in hits] == pytest.approx(
            [expected[a] for a in wanted[offset : offset + k]], abs=1e-6
        )
        assert all(hit.matched_by == ["text"] for hit in hits)


def test_each_filter_of_the_plain_query_leaves_assets_out(space) -> None:
    """So that a search that dropped (or loosened) any one of BROAD's filters would fail the
    tests above and below."""

    def matching(filters: dict, without: str | None = None) -> int:
        condition, params = plain_condition(filters)
        if without:
            assert without in condition
            condition = condition.replace(without, "true")
        query = f"SELECT count(*) FROM semsql.assets a WHERE {condition}"
        return space.execute(query, params).fetchone()[0]

    every = matching(BROAD)
    assert every < matching(BROAD | {"tags": LABELS})
    assert every < matching(BROAD | {"emotions": EMOTIONS})
    assert every < matching(BROAD | {"people": PEOPLE})
    assert every < matching(BROAD, "a.collection = %(collection)s")
    assert every < matching(BROAD, "a.taken_at >= %(after)s")
    assert every < matching(BROAD, "a.taken_at < %(before)s")
    assert every < matching(BROAD | {"metadata": {}})
    assert matching(NARROW) < matching(NARROW | {"tags_match": "any"})
    assert matching(NARROW) < matching(NARROW | {"people_match": "any"})


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("names", ["filter", "boost"])
def test_a_fused_search_with_every_filter_scores_the_rows_of_plain_sql(space, names, exact) -> None:
    """Text and image vectors, keywords, a name in the query, exclude (its vectors from the
    cache) and every filter: the assets of plain SQL, each with its own similarities, fused;
    the pool is every filtered asset, counted (exact => false) or scanned (exact => true)."""
    rng = np.random.default_rng(8)
    text_query, image_query = rng.standard_normal(DIMS), rng.standard_normal(DIMS // 2)
    query = "Mia Chen by a boat in the harbour"
    named = ["Mia Chen"] if names == "filter" else []
    condition, params = plain_condition(BROAD, named)
    text = similarities(space, condition, params, "text", text_query)
    image = similarities(space, condition, params, "image", image_query)
    text_away = similarities(space, condition, params, "text", vector(space, "text"))
    image_away = similarities(space, condition, params, "image", vector(space, "image"))
    excluded = {
        a: max((s for s in (text_away[a], image_away[a]) if s is not None), default=None)
        for a in text
    }
    (mia,) = space.execute("SELECT id FROM semsql.people WHERE name = 'Mia Chen'").fetchone()
    shows_mia = {
        row[0]
        for row in space.execute(
            f"SELECT a.id FROM semsql.assets a WHERE {condition} AND %(mia)s IN ({SHOWN})",
            {**params, "mia": mia},
        )
    }
    assert 20 < len(text) < N / 4 and (names == "filter") == (shows_mia == set(text))

    space.execute("SET semsql.exact_scan_limit = 100000")
    space.commit()
    hits, notices = searched(
        space,
        **BROAD,
        query=query,
        text_embedding=text_query,
        image_embedding=image_query,
        exclude=EXCLUDE,
        names=names,
        k=1000,
        exact=exact,
    )
    way = "exact scan" if exact else f"exact scan of {len(text)} filtered assets"
    assert notices == [f"semsql.search: {way}"]
    assert {hit.asset_id for hit in hits} == set(text)
    name_weight = 0.5 if names == "boost" else 0
    for hit in hits:
        assert hit.text_score == pytest.approx(text[hit.asset_id], abs=1e-6)
        assert hit.image_score == pytest.approx(image[hit.asset_id], abs=1e-6)
        if excluded[hit.asset_id] is not None:
            assert hit.exclude_score >= excluded[hit.asset_id] - 1e-6
        fused = (
            (hit.text_score or 0)
            + (hit.image_score or 0)
            + 0.5 * (hit.keyword_score or 0)
            + name_weight * (hit.asset_id in shows_mia)
        ) / (2.5 + name_weight) - 0.5 * (hit.exclude_score or 0)
        assert hit.score == pytest.approx(fused, abs=1e-5)
        assert ("name" in hit.matched_by) == (names == "boost" and hit.asset_id in shows_mia)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def vector(conn: psycopg.Connection, space: str):
    """The cached vector of EXCLUDE in a space."""
    return conn.execute(
        "SELECT embedding FROM semsql.query_embeddings WHERE space = %s AND text = %s",
        [space, EXCLUDE],
    ).fetchone()[0]
