"""semsql.calibrate_ef_search measures the hnsw.ef_search that finds the target recall, and
semsql.search uses it; a filtered HNSW scan may visit as many tuples as its filter's
estimated selectivity needs (semsql.hnsw_scan_tuples); filtered sets up to
semsql.exact_scan_rows are ranked by an exact scan, which groups vectors by asset only where an
asset has several (video frames)."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from semsql import database
from semsql.search import SearchRequest, run_search


@pytest.fixture
def space(db_url: str) -> psycopg.Connection:
    """400 assets with random unit vectors in the text space; 'half' tags 200 of them."""
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((400, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    conn = database.connect(db_url)
    conn.execute("UPDATE semsql.stages SET enabled = false")
    conn.execute(
        """INSERT INTO semsql.assets (uri, sha256)
           SELECT '/t/' || i || '.jpg', lpad(to_hex(i), 64, '0') FROM generate_series(1, 400) i"""
    )
    ids = [row[0] for row in conn.execute("SELECT id FROM semsql.assets ORDER BY id")]
    with conn.cursor().copy(
        "COPY semsql.embeddings (asset_id, space, model, embedding) FROM STDIN"
    ) as copy:
        copy.set_types(["int8", "text", "text", "vector"])
        for asset_id, vector in zip(ids, vectors, strict=True):
            copy.write_row((asset_id, "text", "random", vector))
    conn.execute(
        "INSERT INTO semsql.tags (asset_id, label, source) "
        "SELECT id, 'half', 'user' FROM unnest(%s::bigint[]) AS id",
        [ids[::2]],
    )
    conn.execute("SELECT semsql.register_vector_space('text', 'random', 384)")
    conn.commit()
    yield conn
    conn.close()


def tuning(conn: psycopg.Connection) -> tuple:
    return conn.execute(
        "SELECT ef_search, k, target_recall, measured_recall, sample, vectors "
        "FROM semsql.search_tuning WHERE space = 'text'"
    ).fetchone()


def test_calibration_keeps_the_least_ef_search_that_reaches_the_target(space) -> None:
    # ef_search 1 returns one row of the 20 asked for: far below the target. 400 visits
    # (nearly) every vector of 400.
    ef = space.execute(
        "SELECT semsql.calibrate_ef_search('text', 20, 0.99, 30, '{1000,1,400}')"
    ).fetchone()[0]
    assert ef == 400
    assert tuning(space)[:3] == (400, 20, pytest.approx(0.99)) and tuning(space)[4:] == (30, 400)
    assert tuning(space)[3] >= 0.99
    # A target that nothing tried reaches keeps the largest tried, with what it measured.
    ef = space.execute(
        "SELECT semsql.calibrate_ef_search('text', 20, 0.99, 30, '{1,2}')"
    ).fetchone()[0]
    assert ef == 2
    assert tuning(space)[0] == 2 and tuning(space)[3] < 0.99
    # Query vectors given (of any length; those of other dimensions left out) are the sample.
    queries = [np.ones(384, dtype=np.float32), np.arange(384, dtype=np.float32), np.ones(5)]
    ef = space.execute(
        "SELECT semsql.calibrate_ef_search('text', 20, 0.99, 30, '{1000}', %s::vector[])",
        [queries],
    ).fetchone()[0]
    assert ef == 1000 and tuning(space)[4] == 2


def test_where_no_width_reaches_the_target_the_narrowest_that_finds_as_much_is_kept(
    db_url: str,
) -> None:
    """Each vector stored twice, and k = 21: the 21st nearest is one of two equals, and the
    exact scan and HNSW may take different ones, so no width finds them all. 999 and 1000
    both visit every vector and find the same: 999 is kept, not the widest."""
    rng = np.random.default_rng(8)
    vectors = rng.standard_normal((150, 384)).astype(np.float32)
    with database.connect(db_url) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = false")
        conn.execute(
            """INSERT INTO semsql.assets (uri, sha256) SELECT '/t/' || i || '.jpg',
               lpad(to_hex(i), 64, '0') FROM generate_series(1, 300) i"""
        )
        conn.execute(
            "INSERT INTO semsql.embeddings (asset_id, space, model, embedding) "
            "SELECT a.id, 'text', 'random', (%s::vector[])[(a.id - 1) %% 150 + 1] "
            "FROM semsql.assets a",
            [list(vectors)],
        )
        conn.execute("SELECT semsql.register_vector_space('text', 'random', 384)")
        queries = list(rng.standard_normal((40, 384)).astype(np.float32))
        ef = conn.execute(
            "SELECT semsql.calibrate_ef_search('text', 21, 0.99, 40, '{999,1000}', %s::vector[])",
            [queries],
        ).fetchone()[0]
        measured = tuning(conn)[3]
    assert measured < 0.99
    assert ef == 999


def test_a_width_passes_on_the_recall_its_queries_reach_with_95_percent_confidence(
    db_url: str,
) -> None:
    with database.connect(db_url) as conn:

        def bound(recalls: list[float]) -> float | None:
            sql = "SELECT semsql.confident_recall(%s::double precision[])"
            return conn.execute(sql, [recalls]).fetchone()[0]

        assert bound([1.0] * 50) == pytest.approx(1.0)
        assert bound([0.95]) == pytest.approx(0.95)  # one query: its recall
        assert bound([]) is None
        # A mean of 0.99 from one hard query among 50 is not 0.99 with confidence ...
        one_hard = [1.0] * 49 + [0.5]
        assert np.mean(one_hard) == pytest.approx(0.99)
        assert bound(one_hard) == pytest.approx(0.99 - 1.645 * np.std(one_hard, ddof=1) / 50**0.5)
        assert bound(one_hard) < 0.98
        # ... where the same mean from queries alike is.
        assert bound([0.99] * 50) == pytest.approx(0.99)


def test_searches_use_the_calibrated_ef_search_scaled_to_the_rows_wanted(space) -> None:
    def ef_for(rows: int) -> int:
        return space.execute("SELECT semsql.search_ef_search('text', %s, 40)", [rows]).fetchone()[0]

    assert ef_for(20) == 40  # not calibrated: the search's candidates
    space.execute("SELECT semsql.calibrate_ef_search('text', 20, 0.99, 10, '{1,150}')")
    assert ef_for(20) == 150
    assert ef_for(10) == 150
    assert ef_for(60) == 450  # 3 times the rows it was measured for
    assert ef_for(400) == 1000  # pgvector's most
    # The space changed since (another model): the calibration no longer counts.
    space.execute("UPDATE semsql.vector_spaces SET updated_at = now() + interval '1 hour'")
    assert ef_for(20) == 40

    space.execute("UPDATE semsql.vector_spaces SET updated_at = now() - interval '1 hour'")
    space.execute("SET client_min_messages = debug1")
    query = space.execute("SELECT embedding FROM semsql.embeddings LIMIT 1 OFFSET 3").fetchone()[0]
    hits, notices = run_search(space, SearchRequest(query_embedding=query, k=20))
    assert "HNSW scan of the text space: ef_search 150, max_scan_tuples 20000" in notices
    exact, _ = run_search(space, SearchRequest(query_embedding=query, k=20, exact=True))
    assert [h.asset_id for h in hits] == [h.asset_id for h in exact]


def test_a_filtered_scan_visits_as_many_tuples_as_its_selectivity_needs(space) -> None:
    def scan_tuples(scan_limit: int, estimate: float | None, documents: float) -> int:
        return space.execute(
            "SELECT semsql.hnsw_scan_tuples(%s, %s, %s, 40)", [scan_limit, estimate, documents]
        ).fetchone()[0]

    assert scan_tuples(100, 50_000, 100_000) == 20_000  # half pass: pgvector's default is ample
    assert scan_tuples(100, 1_000, 1_000_000) == 200_000  # 0.1 %: 1,000 tuples per row, twice
    assert scan_tuples(100, 0, 1_000_000) == 200_000_000  # none estimated: as if one
    assert scan_tuples(100, None, 1_000_000) == 20_000  # no estimate: every asset passes
    assert scan_tuples(10**6, 1, 10**9) == 2147483647  # pgvector's most

    # A filtered search is half as wide again as the calibration (100), and sets the tuples its
    # scan may visit from the planner's estimate.
    space.execute("ANALYZE semsql.search_documents")
    space.execute("SET semsql.exact_scan_limit = 10")  # 200 assets: HNSW
    space.execute("SELECT semsql.calibrate_ef_search('text', 20, 0.99, 10, '{1,100}')")
    space.execute("SET client_min_messages = debug1")
    query = space.execute("SELECT embedding FROM semsql.embeddings LIMIT 1 OFFSET 9").fetchone()[0]
    request = SearchRequest(query_embedding=query, tags=("half",), k=5)
    hits, notices = run_search(space, request)
    plan = space.execute(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM semsql.search_documents d WHERE d.tags && '{half}'"
    ).fetchone()[0]
    estimate = plan[0]["Plan"]["Plan Rows"]
    tuples = scan_tuples(150, estimate, 400)
    assert f"HNSW scan of the text space: ef_search 150, max_scan_tuples {tuples}" in notices
    exact, _ = run_search(
        space, SearchRequest(query_embedding=query, tags=("half",), k=5, exact=True)
    )
    assert all(hit.asset_id % 2 == 1 for hit in hits)
    assert len(hits) == 5 and [h.asset_id for h in hits] == [h.asset_id for h in exact]


def test_an_unfiltered_search_returns_the_rows_of_the_filtered_and_the_exact_path(space) -> None:
    # At an ef_search as wide as the space (400), HNSW finds the exact nearest: the unfiltered
    # scan, the filtered one (a filter that every asset passes) and the exact scan must then
    # return the same rows, every column of them, paged and cut alike.
    space.execute(
        "INSERT INTO semsql.tags (asset_id, label, source) "
        "SELECT id, 'all', 'user' FROM semsql.assets"
    )
    space.execute("SELECT semsql.refresh_search_documents(ARRAY(SELECT id FROM semsql.assets))")
    space.execute("ANALYZE semsql.search_documents")
    space.execute("SET semsql.exact_scan_limit = 10")  # 400 assets pass the filter: HNSW
    space.execute("SELECT semsql.calibrate_ef_search('text', 20, 0.99, 10, '{400}')")
    space.execute("SET client_min_messages = debug1")
    notices: list[str] = []
    space.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    paths = {
        "unfiltered": ("", "ef_search 400, max_scan_tuples 20000"),
        "filtered": (", tags => '{all}'", "ef_search 600, max_scan_tuples"),
        "exact": (", exact => true", None),
    }
    for query in ("query_embedding => %(vector)s", "like_asset => %(asset)s"):
        for asset_id, vector in space.execute(
            "SELECT asset_id, embedding::vector FROM semsql.embeddings ORDER BY asset_id "
            "LIMIT 3 OFFSET 7"
        ).fetchall():
            rows = {}
            for name, (extra, scan) in paths.items():
                notices.clear()
                rows[name] = space.execute(
                    f"""SELECT * FROM semsql.search({query}, k => 12, "offset" => 3,
                                                    min_score => -0.5{extra})""",
                    {"vector": vector, "asset": asset_id},
                ).fetchall()
                way = "exact scan" if scan is None else "HNSW iterative scans"
                assert f"semsql.search: {way}" in notices, (name, notices)
                assert scan is None or any(scan in n for n in notices), (name, notices)
            assert len(rows["exact"]) == 12
            assert rows["unfiltered"] == rows["filtered"] == rows["exact"]
            if query.startswith("like_asset"):
                assert asset_id not in {row[0] for row in rows["exact"]}


def test_an_exact_scan_switches_at_the_root_of_four_times_candidates_by_assets(space) -> None:
    def rows(candidates: int, documents: float | None) -> int:
        return space.execute(
            "SELECT semsql.exact_scan_rows(%s, %s)", [candidates, documents]
        ).fetchone()[0]

    assert rows(40, 100_000) == 4_000  # 1 % filters exactly, 10 % through HNSW
    assert rows(40, 1_000_000) == 12_649  # and 1 % of a million too
    assert rows(400, 1_000_000) == 40_000
    assert rows(40, 400) == rows(40, -1) == rows(40, None) == 1_000  # never analysed: reltuples -1
    space.execute("ANALYZE semsql.search_documents")
    assert space.execute("SELECT semsql.exact_scan_limit(40)").fetchone()[0] == 1_000
    space.execute("SET semsql.exact_scan_limit = 7")
    assert space.execute("SELECT semsql.exact_scan_limit(40)").fetchone()[0] == 7


def test_an_exact_scan_of_one_vector_per_asset_ranks_it_without_grouping(space) -> None:
    def statement(space_name: str, media_type: str | None = None) -> str:
        return space.execute(
            "SELECT semsql.exact_nearest_sql(%s, NULL, %s)", [space_name, media_type]
        ).fetchone()[0]

    # semsql.embeddings has one vector per asset and space; a video has many frames.
    assert "GROUP BY" not in statement("text") and "frame_vectors" not in statement("text")
    assert "GROUP BY" not in statement("image", "image")
    assert "GROUP BY" in statement("image") and "frame_vectors" in statement("image")
    assert "GROUP BY" in statement("image", "video")

    query = space.execute("SELECT embedding FROM semsql.embeddings LIMIT 1 OFFSET 11").fetchone()[0]
    hits, _ = run_search(
        space, SearchRequest(query_embedding=query, tags=("half",), k=20, exact=True)
    )
    plain = space.execute(
        """SELECT e.asset_id, max(1 - (e.embedding <=> %(q)s::halfvec))
           FROM semsql.embeddings e JOIN semsql.tags t ON t.asset_id = e.asset_id
           WHERE e.space = 'text' AND t.label = 'half'
           GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20""",
        {"q": query},
    ).fetchall()
    assert [h.asset_id for h in hits] == [row[0] for row in plain]
    assert [h.score for h in hits] == pytest.approx([row[1] for row in plain], abs=1e-6)
