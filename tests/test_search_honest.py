"""Honest search results: a search by query text returns only what one of its signals matched
(a keyword, a person named, a vector at least as similar as a match), and nothing for a query
that matches nothing; without a query text, the filtered assets. File names, folder names,
titles and headlines are keywords of the asset's document, and words of its text."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import skimage
from click.testing import CliRunner
from fix_corpus import TEXT_MODEL
from fix_db import TEMPLATE

from semsql import database
from semsql.cli.main import cli
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.ingest import IngestOptions, create_job, run_ingest
from semsql.search import SearchRequest, run_search
from semsql.sources import iter_candidates
from semsql.testing import scratch_database

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
NONSENSE = "qwxzv blorft"

# Names as words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("grace_hopper", "grace hopper"),
        ("GraceHopper2019", "Grace Hopper 2019"),
        ("IMG_0042", "IMG 0042"),
        ("HTMLPage", "HTML Page"),
        ("3D-render 1st", "3D render 1st"),
        ("café-été", "café été"),
        ("__", None),
    ],
)
def test_a_name_is_split_into_words(conn, name: str, words: str | None) -> None:
    assert conn.execute("SELECT semsql.name_words(%s)", [name]).fetchone() == (words,)


@pytest.mark.parametrize(
    ("uri", "root", "words"),
    [
        ("/pictures/Summer_2019/beach.JPG", "/pictures", ("beach", "Summer 2019")),
        ("/pictures/beach.jpg", "/pictures/", ("beach", None)),  # the folder ingested
        ("/pictures/beach.jpg", None, ("beach", "pictures")),
        ("/archive.tar.gz", None, ("archive tar", None)),
        ("https://example.com/photos/Grace%20Hopper.jpg?size=2#top", None, ("Grace Hopper", None)),
        ("https://example.com/a/b/", None, ("b", None)),
        ("https://example.com/", None, (None, None)),
        ("file:///tmp/caf%E9.jpg", "/tmp", ("caf", None)),  # not UTF-8: a separator
    ],
)
def test_an_asset_name_gives_its_file_and_folder_words(conn, uri, root, words) -> None:
    row = conn.execute("SELECT * FROM semsql.asset_name_words(%s, %s)", [uri, root]).fetchone()
    assert row == words


def add_asset(conn: psycopg.Connection, uri: str, metadata: dict | None = None) -> int:
    return conn.execute(
        """INSERT INTO semsql.assets (uri, sha256, metadata)
           VALUES (%s, encode(sha256(convert_to(%s, 'UTF8')), 'hex'), %s) RETURNING id""",
        [uri, uri, json.dumps(metadata or {})],
    ).fetchone()[0]


def keyword_hits(conn: psycopg.Connection, query: str) -> list[tuple[int, list[str]]]:
    hits, _ = run_search(conn, SearchRequest(query=query))
    return [(hit.asset_id, hit.matched_by) for hit in hits]


def test_titles_headlines_and_names_are_keywords_and_follow_their_asset(conn, no_stages) -> None:
    titled = add_asset(conn, "/photos/IMG_0001.jpg", {"title": "Moon landing", "headline": 7})
    url = add_asset(conn, "https://example.com/people/Grace_Hopper.jpg?size=large")
    conn.commit()
    assert keyword_hits(conn, "landing") == [(titled, ["keyword"])]
    assert keyword_hits(conn, "photos") == [(titled, ["keyword"])]  # its folder
    assert keyword_hits(conn, "hopper") == [(url, ["keyword"])]
    assert keyword_hits(conn, "large") == []  # the query string is no part of the name
    assert conn.execute("SELECT semsql.asset_document(%s)", [titled]).fetchone() == (
        "Moon landing. File: IMG 0001. Folder: photos.",
    )
    # A title or headline that changes, or a new uri, rebuilds the document at commit.
    conn.execute(
        """UPDATE semsql.assets SET metadata = '{"title": "Apollo", "headline": "Eagle has landed"}'
           WHERE id = %s""",
        [titled],
    )
    conn.execute(
        "UPDATE semsql.assets SET uri = 'https://example.com/ada.png' WHERE id = %s", [url]
    )
    conn.commit()
    assert keyword_hits(conn, "moon") == []
    assert keyword_hits(conn, "apollo") == keyword_hits(conn, "eagle") == [(titled, ["keyword"])]
    assert keyword_hits(conn, "hopper") == []
    assert keyword_hits(conn, "ada") == [(url, ["keyword"])]


# An offline first run: the sample images, the text stage alone (MiniLM ships in a package) ---


@pytest.fixture(scope="module")
def samples_url(server_url, template_url, tmp_path_factory) -> Iterator[str]:
    name = f"semsql_honest_{os.getpid()}_{tmp_path_factory.mktemp('n').name}"
    with scratch_database(server_url, name, template=TEMPLATE) as url:
        with database.connect(url) as conn:
            conn.execute("UPDATE semsql.stages SET enabled = (name = 'text')")
            conn.commit()
            job = create_job(conn, "default", {})
            run_ingest(conn, job, iter_candidates([str(SKIMAGE_DATA)]), IngestOptions())
        models: dict[str, str | None] = {"text": TEXT_MODEL}
        Worker(url, WorkerOptions(until_idle=True, poll_interval=0.2), models=models).run()
        yield url


@pytest.fixture
def samples(samples_url, monkeypatch) -> Iterator[psycopg.Connection]:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", samples_url)
    monkeypatch.delenv("SEMSQL_MODEL_TEXT", raising=False)
    with database.connect(samples_url) as conn:
        yield conn


def cli_search(*args: str) -> list[dict]:
    result = CliRunner().invoke(cli, ["search", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    hits: list[dict] = json.loads(result.stdout)
    return hits


def test_a_file_name_finds_its_asset_first_by_keyword(samples) -> None:
    hits = cli_search("astronaut")
    assert Path(hits[0]["uri"]).name == "astronaut.png"
    assert "keyword" in hits[0]["matched_by"] and "text" in hits[0]["matched_by"]
    assert all(hit["matched_by"] for hit in hits)
    assert len(hits) < 10  # not the whole library
    # Without a query vector (no worker answers embed_text): the keyword alone.
    plain, notices = run_search(samples, SearchRequest(query="astronaut"))
    assert [(Path(h.uri).name, h.matched_by) for h in plain] == [("astronaut.png", ["keyword"])]
    assert any("leaves out the text signal" in notice for notice in notices)


def test_other_words_find_an_asset_by_its_text_vector(samples) -> None:
    hits = cli_search("a man in a space suit")
    assert Path(hits[0]["uri"]).name == "astronaut.png"
    assert hits[0]["matched_by"] == ["text"]


def test_a_nonsense_query_matches_nothing(samples) -> None:
    assert cli_search(NONSENSE) == []
    result = CliRunner().invoke(cli, ["search", NONSENSE], catch_exceptions=False)
    assert result.exit_code == 0 and result.stdout.strip() == "no matches"
    # So on every path: one vector signal alone (no keywords), HNSW or exact.
    vector = text_vector(samples, NONSENSE)
    for exact in (False, True):
        for keyword_weight in (0.5, 0.0):
            request = SearchRequest(
                query=NONSENSE, text_embedding=vector, exact=exact, keyword_weight=keyword_weight
            )
            assert run_search(samples, request)[0] == []


def test_a_least_similarity_given_decides_what_matches(samples) -> None:
    vector = text_vector(samples, "space exploration")
    loose = SearchRequest(query="space exploration", text_embedding=vector, k=50)
    every, _ = run_search(samples, replace(loose, min_text_similarity=-1))
    assert len(every) == 28 and all(hit.matched_by == ["text"] for hit in every)
    alone = SearchRequest(query_embedding=vector, min_text_similarity=0.99)
    assert run_search(samples, alone)[0] == []
    # The setting is the default of the call, for a database or a role.
    samples.execute("SET semsql.min_text_similarity = 0.99")
    assert run_search(samples, loose)[0] == []
    samples.execute("RESET semsql.min_text_similarity")
    assert run_search(samples, loose)[0]


def test_filters_alone_list_the_assets(samples) -> None:
    hits = cli_search("-n", "100")
    assert len(hits) == samples.execute("SELECT count(*) FROM semsql.assets").fetchone()[0] == 28
    tagged = cli_search("--tag", "nothing-has-this")
    assert tagged == []


def test_a_query_with_no_words_to_search_by_matches_nothing(samples) -> None:
    hits, notices = run_search(samples, SearchRequest(query="the", text_weight=0))
    assert hits == [] and any("nothing can match" in notice for notice in notices)


def text_vector(conn: psycopg.Connection, text: str) -> list[float]:
    from semsql.embedder.models import load_stage

    return list(load_stage("text", TEXT_MODEL, "cpu").encode([text])[0])
