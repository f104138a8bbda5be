"""semsql.search over a small catalog: human captions, tags and people imported by manifest,
document vectors from the real MiniLM. Read-only tests share one database per module."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from click.testing import Result as CliResult
from corpus import make_jpeg
from fix_corpus import TEXT_MODEL, build_corpus

from semsql import database
from semsql.cli.main import cli
from semsql.embedder.models import default_models, load_stage
from semsql.ingest import IngestOptions, create_job, run_ingest
from semsql.search import SearchRequest, run_search
from semsql.sources import iter_candidates

# Meaning ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "intended"),
    [
        ("youngsters playing in the snow", {"snowman", "sledging"}),
        ("a pet dog", {"puppy", "retriever"}),
        ("something to eat for dinner", {"pasta"}),
        ("ships in a port", {"harbour"}),
        ("a marriage celebration", {"wedding"}),
    ],
)
def test_a_query_in_other_words_finds_the_intended_assets(corpus, query, intended) -> None:
    hits = corpus.search(query=query, text_embedding=corpus.vector(query), k=5)
    assert set(corpus.keys(hits)[: len(intended)]) == intended
    assert all("text" in hit.matched_by for hit in hits[: len(intended)])
    # Only what a signal matched: the rest of the catalog is too far from the query.
    assert all(hit.matched_by for hit in hits) and len(hits) < 5
    assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    assert hits[0].score == pytest.approx(
        (hits[0].text_score + 0.5 * hits[0].keyword_score) / 1.5, abs=1e-5
    )


def test_result_columns_describe_the_asset(corpus) -> None:
    query = "Ana and Joe at the seaside"
    (hit,) = corpus.search(query=query, text_embedding=corpus.vector(query), k=1, names="off")
    assert corpus.keys([hit]) == ["beach"]
    assert hit.uri.endswith("/default/beach.jpg")
    assert hit.caption == "Ana and Joe laughing at the beach"
    assert hit.tags == ["beach", "sea", "summer"]
    assert hit.emotions == ["happy"]
    assert hit.people == ["Ana Lima", "Joe Park"]
    assert hit.taken_at == datetime(2019, 7, 20, tzinfo=UTC)
    assert hit.image_score is None and hit.exclude_score is None


def test_query_text_alone_uses_embed_text_from_its_cache(corpus) -> None:
    query = "youngsters playing in the snow"
    corpus.conn.execute(
        """INSERT INTO semsql.query_embeddings (space, text_sha256, text, model, embedding)
           VALUES ('text', %s, %s, %s, %s)""",
        [hashlib.sha256(query.encode()).hexdigest(), query, TEXT_MODEL, corpus.vector(query)],
    )
    hits, notices = run_search(corpus.conn, SearchRequest(query=query, k=3))
    corpus.conn.rollback()
    assert set(corpus.keys(hits)[:2]) == {"snowman", "sledging"}
    assert "text" in hits[0].matched_by
    assert notices == []


def test_a_signal_that_cannot_be_embedded_is_left_out_with_a_notice(corpus) -> None:
    hits, notices = run_search(corpus.conn, SearchRequest(query="snowy hill", k=3))
    assert any("leaves out the text signal" in n and "semsql worker" in n for n in notices)
    assert corpus.keys(hits)[0] == "sledging"  # found by its keywords
    assert hits[0].matched_by == ["keyword"] and hits[0].text_score is None


def test_exclude_pushes_what_it_means_away(corpus) -> None:
    query = "a cat"
    plain = corpus.search(query=query, text_embedding=corpus.vector(query), k=2)
    assert set(corpus.keys(plain)) == {"cat_window", "cat_meadow"}
    away = corpus.search(query=query, text_embedding=corpus.vector(query), k=2, exclude="indoors")
    assert corpus.keys(away) == ["cat_meadow", "cat_window"]
    assert away[1].exclude_score > away[0].exclude_score


def test_exact_scan_gives_the_same_ranking(corpus) -> None:
    query = "people having a good time together"
    vector = corpus.vector(query)
    approximate = corpus.search(query=query, text_embedding=vector, k=10)
    exact = corpus.search(query=query, text_embedding=vector, k=10, exact=True)
    assert [(h.asset_id, h.score) for h in exact] == [(h.asset_id, h.score) for h in approximate]


def test_relevance_cuts_and_date_order(corpus) -> None:
    query = "winter sports in the snow"
    vector = corpus.vector(query)
    ranked = corpus.search(query_embedding=vector, k=10)
    best = ranked[0].score
    cut = corpus.search(query_embedding=vector, k=10, relative_cut=0.6)
    assert cut == [hit for hit in ranked if hit.score >= 0.6 * best]
    assert 0 < len(cut) < 10
    floor = corpus.search(query_embedding=vector, k=10, min_score=ranked[2].score)
    assert floor == ranked[:3]
    newest = corpus.search(query_embedding=vector, k=3, relative_cut=0.6, order_by="newest")
    assert [h.taken_at for h in newest] == sorted((h.taken_at for h in cut), reverse=True)[:3]
    page = corpus.search(query_embedding=vector, k=3, offset=2)
    assert page == ranked[2:5]


# Names --------------------------------------------------------------------------------------------


def test_names_in_the_query_become_a_person_filter(corpus) -> None:
    query = "Werner Vogels loved travelling around the globe in his Toyota"
    vector = corpus.vector(query)
    hits, notices = run_search(corpus.conn, SearchRequest(query=query, text_embedding=vector, k=10))
    corpus.conn.rollback()
    assert any("Werner Vogels" in notice for notice in notices)
    assert {hit.people[0] for hit in hits} == {"Werner Vogels"}
    assert set(corpus.keys(hits)[:2]) == {"vogels_convertible", "vogels_pickup"}  # cars

    boosted = corpus.search(query=query, text_embedding=vector, k=10, names="boost")
    # Only what a signal matched: the four of Vogels (named), and others only if the text
    # vector or a keyword matched them.
    assert all("name" in h.matched_by for h in boosted[:4])
    assert 4 <= len(boosted) <= 10 and all(h.matched_by for h in boosted)
    assert set(corpus.keys(boosted)[:2]) == {"vogels_convertible", "vogels_pickup"}


def test_match_people_is_fuzzy_and_says_which_words_matched(corpus) -> None:
    rows = corpus.conn.execute(
        "SELECT name, matched_text, first_word, last_word FROM semsql.match_people(%s)",
        ["photos of werner vogles and ANA LIMA, by Grace"],
    ).fetchall()
    assert rows == [("Werner Vogels", "werner vogles", 3, 4), ("Ana Lima", "ANA LIMA,", 6, 7)]


# More like this -----------------------------------------------------------------------------------


def test_similar_finds_neighbours_without_the_asset_itself(corpus) -> None:
    rows = corpus.conn.execute(
        "SELECT asset_id FROM semsql.similar(%s, 3)", [corpus.ids["snowman"]]
    ).fetchall()
    neighbours = corpus.keys(row[0] for row in rows)
    assert neighbours[0] == "sledging" and "skiing" in neighbours and "snowman" not in neighbours


def test_near_duplicates_are_grouped(corpus) -> None:
    conn = corpus.conn
    copy_id = conn.execute(
        "INSERT INTO semsql.assets (uri, sha256) VALUES ('/copy.jpg', repeat('c', 64)) RETURNING id"
    ).fetchone()[0]
    conn.execute(
        """INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
           SELECT %s, 'text', model, embedding FROM semsql.embeddings
           WHERE asset_id = %s AND space = 'text'""",
        [copy_id, corpus.ids["puppy"]],
    )
    rows = conn.execute(
        "SELECT group_id, asset_id, kind, distance FROM semsql.duplicates(0.01, space => 'text')"
    ).fetchall()
    conn.rollback()
    puppy = corpus.ids["puppy"]
    assert [(g, a, k) for g, a, k, _ in rows] == [(puppy, puppy, "exact"), (puppy, copy_id, "near")]
    assert rows[1][3] == pytest.approx(0, abs=1e-6)


def test_exact_duplicates_by_hash(semsql_env, conn, tmp_path) -> None:
    make_jpeg(tmp_path / "a" / "one.jpg", seed=1)
    make_jpeg(tmp_path / "a" / "copy.jpg", seed=1)
    make_jpeg(tmp_path / "b" / "one.jpg", seed=1)
    make_jpeg(tmp_path / "b" / "other.jpg", seed=2)
    for collection in ("a", "b"):
        job = create_job(conn, collection, {})
        candidates = iter_candidates([str(tmp_path / collection)])
        run_ingest(conn, job, candidates, IngestOptions(collection))
    rows = conn.execute(
        "SELECT collection, uri, stored FROM semsql.exact_duplicates() ORDER BY 1, 2"
    ).fetchall()
    assert [(c, Path(u).relative_to(tmp_path).as_posix(), s) for c, u, s in rows] == [
        ("a", "a/copy.jpg", True),  # ingested first
        ("a", "a/one.jpg", False),  # skipped by ingest: the same content
        ("b", "b/one.jpg", True),
    ]
    assert [r[1] for r in conn.execute("SELECT * FROM semsql.exact_duplicates('b')")] == []


# embed_text through a running worker, as the analyst --------------------------------------------


def wait_for_query_worker(url: str, worker: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            assert worker.poll() is None, "the worker exited"
            spaces = conn.execute("SELECT query_spaces FROM semsql.live_workers()").fetchall()
            if any("text" in row[0] for row in spaces):
                return
            time.sleep(0.2)
    raise AssertionError("no worker answers embed_text")


# Slow (a `semsql worker` process with the real MiniLM). Fast: the worker answers embed_text
# for an analyst (test_worker.py's embed_text tests), and a search uses its answer
# (test_query_text_alone_uses_embed_text_from_its_cache).
@pytest.mark.slow
def test_a_running_worker_embeds_the_query_text_for_the_analyst(db_url, tmp_path, text_encoder):
    build_corpus(db_url, tmp_path, text_encoder)
    models_off = {f"SEMSQL_MODEL_{stage.upper()}": "off" for stage in default_models()}
    env = {**os.environ, **models_off, "SEMSQL_MODEL_TEXT": TEXT_MODEL}
    env |= {"SEMSQL_DATABASE_URL": db_url, "SEMSQL_WORKER_TASKS": "text"}
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "semsql.cli", "worker", "--device", "cpu"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for_query_worker(db_url, worker)
            with database.connect(db_url) as conn:
                conn.execute("SET ROLE semsql_analyst")
                query = SearchRequest(query="youngsters playing in the snow", k=3)
                hits, notices = run_search(conn, query)
                again, _ = run_search(conn, query)  # from the cache now
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    assert notices == []
    assert {"snowman", "sledging"} <= {Path(hit.uri).stem for hit in hits}
    assert all("text" in hit.matched_by for hit in hits)
    assert again == hits


# The command line ---------------------------------------------------------------------------------


def cli_search(*args: str) -> CliResult:
    result = CliRunner().invoke(cli, ["search", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def corpus_env(corpus_url, monkeypatch) -> str:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", corpus_url)
    monkeypatch.delenv("SEMSQL_MODEL_TEXT", raising=False)
    return corpus_url


def test_cli_embeds_the_query_here_when_no_worker_runs(corpus_env) -> None:
    result = cli_search("youngsters playing in the snow", "--json", "-n", "3")
    hits = json.loads(result.stdout)
    assert {Path(hit["uri"]).stem for hit in hits[:2]} == {"snowman", "sledging"}
    assert hits[0]["matched_by"] == ["text", "keyword"]
    assert "embedding the query here (text)" in result.stderr


def test_cli_filters_and_orders_without_a_query(corpus_env) -> None:
    result = cli_search("--tag", "WINTER", "--order", "oldest", "--json")
    assert [Path(h["uri"]).stem for h in json.loads(result.stdout)] == [
        "skiing",
        "snowman",
        "sledging",
    ]
    table = cli_search("--person", "Joe Park", "--after", "2021-01-01", "--emotion", "angry").stdout
    assert "Joe frowning at a laptop in the office" in table
    assert "hiking" not in table


def test_cli_like_and_contact_sheet(corpus, corpus_env, tmp_path) -> None:
    sheet = tmp_path / "sheet.html"
    result = cli_search("--like", str(corpus.ids["cat_window"]), "-n", "2", "--html", str(sheet))
    assert "A cat hunting in the tall grass of a meadow" in result.stdout
    page = sheet.read_text()
    assert page.count("<figure>") == 2
    assert page.count('src="data:image/jpeg;base64,') == 2
    assert "#1 &middot; 0." in page and "text" in page


def test_cli_searches_by_image_file(semsql_env, conn, tmp_path, monkeypatch) -> None:
    from fix_models import build_clip_model

    model = str(build_clip_model(tmp_path / "clip"))
    monkeypatch.setenv("SEMSQL_MODEL_CLIP", model)
    files = [make_jpeg(tmp_path / "photos" / f"{i}.jpg", seed=10 + i) for i in range(3)]
    run_ingest(conn, create_job(conn, "default", {}), iter_candidates([str(tmp_path / "photos")]),
               IngestOptions())  # fmt: skip
    clip = load_stage("clip", model, "cpu")
    from PIL import Image

    vectors = clip.encode_images([Image.open(path) for path in files])
    for path, vector in zip(files, vectors, strict=True):
        conn.execute(
            """INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
               SELECT id, 'image', %s, %s FROM semsql.assets WHERE uri = %s""",
            [model, vector, str(path)],
        )
    conn.execute("SELECT semsql.register_vector_space('image', %s, %s)", [model, len(vectors[0])])
    conn.commit()
    hits = json.loads(cli_search("--image", str(files[1]), "--json").stdout)
    assert hits[0]["uri"] == str(files[1])
    assert hits[0]["image_score"] == pytest.approx(1, abs=1e-4)
    assert hits[0]["matched_by"] == ["image"]
