"""One bad file, row or URL fails only itself: over-long metadata, database errors, malformed
URLs, broken text, concurrent ingests, slow servers, and files that leave their folder."""

from __future__ import annotations

import http.server
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from corpus import make_jpeg, make_png, make_xmp_packet
from psycopg.types.json import Jsonb

from semsql import limits
from semsql.cli.main import cli
from semsql.ingest import IngestOptions, create_job, fetch_url, run_ingest
from semsql.probe import ProbeError
from semsql.sources import iter_candidates, iter_manifest_candidates


def ingest(*args: str) -> dict:
    """`semsql ingest ... --json` as a user runs it; its exit status says whether any file
    failed, which each test checks in the summary."""
    result = CliRunner().invoke(cli, ["ingest", *args, "--json"], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


LETTERS = "abcdefghijklmnopqrstuvwxyz"


def words(count: int, *, seed: int = 0, alphabet: str = LETTERS) -> str:
    """`count` random words of seven letters: text whose tsvector grows with its length, and
    that does not compress (a B-tree compresses a long entry before it measures it)."""
    rng = random.Random(seed)
    return " ".join("".join(rng.choices(alphabet, k=7)) for _ in range(count))


def text_of(chars: int, *, seed: int = 0, alphabet: str = LETTERS) -> str:
    """Random words, exactly `chars` characters long, with no space at either end."""
    text = words(chars // 8 + 1, seed=seed, alphabet=alphabet)[:chars]
    return text[:-1] + alphabet[0] if text.endswith(" ") else text


def metadata_of(conn: psycopg.Connection, name: str) -> dict:
    return conn.execute(
        "SELECT metadata FROM semsql.assets WHERE uri LIKE %s", [f"%/{name}"]
    ).fetchone()[0]


def tags_of(conn: psycopg.Connection, name: str) -> set[str]:
    rows = conn.execute(
        "SELECT t.label FROM semsql.tags t JOIN semsql.assets a ON a.id = t.asset_id"
        " WHERE a.uri LIKE %s",
        [f"%/{name}"],
    )
    return {label for (label,) in rows}


def people_of(conn: psycopg.Connection, name: str) -> set[str]:
    rows = conn.execute(
        """SELECT p.name FROM semsql.asset_people ap
           JOIN semsql.people p ON p.id = ap.person_id
           JOIN semsql.assets a ON a.id = ap.asset_id WHERE a.uri LIKE %s""",
        [f"%/{name}"],
    )
    return {person for (person,) in rows}


def caption_of(conn: psycopg.Connection, name: str) -> str:
    return conn.execute(
        "SELECT c.text FROM semsql.captions c JOIN semsql.assets a ON a.id = c.asset_id"
        " WHERE a.uri LIKE %s",
        [f"%/{name}"],
    ).fetchone()[0]


# -- item 4: over-long metadata is trimmed, and every other file stored ------------------------


def test_over_long_metadata_is_trimmed_and_every_file_is_stored(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    for n in range(3):
        make_jpeg(photos / f"plain{n}.jpg", seed=n)
    long_keyword = text_of(6000, seed=5)
    make_jpeg(photos / "keyword.jpg", seed=10, xmp=make_xmp_packet(keywords=["sea", long_keyword]))
    description = words(118_000, seed=1)  # 945 kB of words, as in the report
    make_png(photos / "described.png", seed=11, xmp=make_xmp_packet(description=description))
    catalog = tmp_path / "catalog"
    make_jpeg(catalog / "named.jpg", seed=12)
    make_jpeg(catalog / "essay.jpg", seed=13)
    essay = words(300_000, seed=2)  # 2.4 MB
    rows = [
        {"uri": "named.jpg", "people": ["Ann Lee", text_of(3000, seed=6)]},
        {"uri": "essay.jpg", "caption": essay, "tags": ["essay"]},
    ]
    manifest = catalog / "catalog.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))

    summary = ingest(str(photos), "--manifest", str(manifest))

    assert (summary["new"], summary["failed"], summary["status"]) == (7, 0, "completed")
    assert tags_of(conn, "keyword.jpg") == {"sea"}
    assert metadata_of(conn, "keyword.jpg")["metadata_errors"] == [
        f"keyword of 6,000 characters dropped (the limit is 200): {long_keyword[:40]!r}..."
    ]
    assert people_of(conn, "named.jpg") == {"Ann Lee"}
    assert any(
        warning.startswith("person of 3,000 characters dropped")
        for warning in metadata_of(conn, "named.jpg")["metadata_errors"]
    )
    for name, text in (("described.png", description), ("essay.jpg", essay)):
        caption = caption_of(conn, name)
        assert 0.9 * limits.MAX_CAPTION_CHARS < len(caption) <= limits.MAX_CAPTION_CHARS
        assert text.startswith(caption) and text[len(caption)] == " "  # cut between words
        warnings = metadata_of(conn, name)["metadata_errors"]
        assert f"caption: {len(text):,} characters, trimmed to the first 10,000" in warnings
    described = metadata_of(conn, "described.png")
    assert len(described["xmp"]["dc:description"]) <= limits.MAX_METADATA_TEXT_CHARS
    assert any(w.startswith("metadata xmp.dc:description: ") for w in described["metadata_errors"])
    assert tags_of(conn, "essay.jpg") == {"essay"}
    documents = conn.execute("SELECT count(*) FROM semsql.search_documents").fetchone()[0]
    assert documents == 7

    again = ingest(str(photos), "--manifest", str(manifest))
    assert (again["skipped"], again["failed"], again["status"]) == (7, 0, "completed")


def test_every_limit_reached_at_once_fits_and_counts_are_capped(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    # Three-byte letters (CJK) make the most bytes per character in the indexes, and distinct
    # words the largest tsvector.
    cjk = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 2000))
    caption = text_of(limits.MAX_CAPTION_CHARS, seed=3, alphabet=cjk)
    tags = [text_of(limits.MAX_LABEL_CHARS, seed=100 + n, alphabet=cjk) for n in range(505)]
    people = [text_of(limits.MAX_NAME_CHARS, seed=900 + n, alphabet=cjk) for n in range(205)]
    make_jpeg(tmp_path / "full.jpg")
    manifest = tmp_path / "catalog.jsonl"
    row = {"uri": "full.jpg", "caption": caption, "tags": tags, "people": people}
    manifest.write_text(json.dumps(row, ensure_ascii=False) + "\n")

    summary = ingest("--manifest", str(manifest))

    assert (summary["new"], summary["failed"]) == (1, 0)
    assert caption_of(conn, "full.jpg") == caption
    assert tags_of(conn, "full.jpg") == set(tags[: limits.MAX_KEYWORDS])
    assert people_of(conn, "full.jpg") == set(people[: limits.MAX_PEOPLE])
    assert metadata_of(conn, "full.jpg")["metadata_errors"] == [
        "505 keywords given, the first 500 kept",
        "205 people given, the first 200 kept",
    ]
    indexed = conn.execute(
        "SELECT cardinality(tags), cardinality(people) FROM semsql.search_documents"
    ).fetchone()
    assert indexed == (limits.MAX_KEYWORDS, limits.MAX_PEOPLE)


def test_a_database_error_fails_only_its_item(conn, no_stages) -> None:
    """semsql.ingest_batch, called as ingest calls it, with items that the database refuses:
    each becomes its own failure and the rest of the batch is stored."""
    job_id = create_job(conn, "default", {})

    def probed(position: int, name: str, **overrides: object) -> dict:
        return {
            "position": position,
            "uri": f"/photos/{name}",
            "root": "/photos",
            "sha256": f"{position:064x}",
            "mime": "image/jpeg",
            "width": 64,
            "height": 48,
            "bytes": 1000,
            "metadata": {},
            "caption": f"photo {name}",
            "tags": ["kite"],
            "people": [],
            **overrides,
        }

    items = [
        probed(0, "good.jpg"),
        probed(1, "width.jpg", width="wide"),
        probed(2, "label.jpg", tags=[text_of(3000)]),  # over a B-tree entry: tags_label
        probed(3, "document.jpg", caption=words(300_000)),  # over 1 MB of tsvector
        probed(4, "also-good.jpg"),
    ]
    outcomes = conn.execute(
        "SELECT item_position, outcome, detail FROM semsql.ingest_batch(%s, 'default', %s)",
        [job_id, Jsonb(items)],
    ).fetchall()
    conn.commit()

    assert [(position, outcome) for position, outcome, _ in outcomes] == [
        (0, "new"),
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "new"),
    ]
    details = {position: detail for position, _, detail in outcomes}
    assert details[1].startswith('database error: invalid input syntax for type integer: "wide"')
    assert details[2].startswith("database error: index row size ")
    assert "tsvector" in details[3]
    stored = conn.execute("SELECT uri FROM semsql.assets ORDER BY uri").fetchall()
    assert stored == [("/photos/also-good.jpg",), ("/photos/good.jpg",)]
    assert conn.execute("SELECT count(*) FROM semsql.search_documents").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM semsql.tags").fetchone()[0] == 2
    job_items = conn.execute(
        "SELECT position, error_code FROM semsql.job_items WHERE outcome = 'failed' ORDER BY 1"
    ).fetchall()
    assert job_items == [(1, "database"), (2, "database"), (3, "database")]
    counts = conn.execute(
        "SELECT new_count, failed_count FROM semsql.jobs WHERE id = %s", [job_id]
    ).fetchone()
    assert counts == (2, 3)


# -- item 5: malformed URLs, broken text and concurrent ingests ---------------------------------

BAD_URLS = {
    "http://127.0.0.1:1/a b.jpg": "the URL has a space at character 21: percent-encode it",
    "http://127.0.0.1:abc/a.jpg": "malformed URL: Port could not be cast to integer value as 'abc'",
    "http://[::1/a.jpg": "malformed URL: Invalid IPv6 URL",
    "https://example.org/café.jpg": "the URL has 'é' at character 24: percent-encode it",
}


def test_malformed_urls_fail_alone(semsql_env, conn, no_stages, tmp_path: Path) -> None:
    good = make_jpeg(tmp_path / "good.jpg")
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("".join(json.dumps({"uri": url}) + "\n" for url in BAD_URLS))

    summary = ingest(*BAD_URLS, str(good), "--manifest", str(manifest))

    assert (summary["new"], summary["failed"], summary["status"]) == (1, 8, "completed")
    errors = [(e["uri"], e["code"], e["error"]) for e in summary["errors"]]
    expected = [(url, "bad_url", message) for url, message in BAD_URLS.items()]
    assert errors == expected + expected
    assert conn.execute("SELECT uri FROM semsql.assets").fetchall() == [(str(good),)]


def test_manifest_rows_with_lone_surrogates_fail_alone(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    for name in ("a", "b", "c", "good", "meta"):
        make_jpeg(tmp_path / f"{name}.jpg", seed=ord(name[0]))
    rows = [
        {"uri": "a.jpg", "caption": "half a pair \ud800 here"},
        {"uri": "b.jpg", "tags": ["fine", "bad \udfff"]},
        {"uri": "c.jpg", "people": "Ann; \ud83d"},
        {"uri": "missing-\ud800.jpg"},
        {"uri": "meta.jpg", "metadata": {"note": "kept \ud800 replaced"}},
        {"uri": "good.jpg", "caption": "a good row"},
    ]
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))  # "\ud800" escapes

    summary = ingest("--manifest", str(manifest))

    assert (summary["new"], summary["failed"]) == (2, 4)
    errors = {e["uri"].rsplit(":", 1)[1]: e["error"] for e in summary["errors"]}
    assert errors["1"] == (
        "catalog.jsonl line 1: 'caption' holds a lone surrogate ('\\ud800' at character 13),"
        " which is not text: the manifest was written from broken UTF-16; write it again"
    )
    assert "'tags' holds a lone surrogate ('\\udfff'" in errors["2"]
    assert "'people' holds a lone surrogate ('\\ud83d'" in errors["3"]
    assert "'uri' holds a lone surrogate ('\\ud800'" in errors["4"]
    assert {e["code"] for e in summary["errors"]} == {"manifest"}
    assert caption_of(conn, "good.jpg") == "a good row"
    assert metadata_of(conn, "meta.jpg")["catalog"] == {"note": "kept ? replaced"}


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {condition.__doc__}"
        time.sleep(0.05)


def test_two_concurrent_ingests_of_one_folder_both_finish(
    db_url, conn, no_stages, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    for n in range(5):
        make_jpeg(first / f"{n}.jpg", seed=n)
    second = tmp_path / "second"
    second.mkdir()
    shutil.copy(first / "0.jpg", second / "copy.jpg")  # the same content under another uri
    env = {**os.environ, "SEMSQL_DATABASE_URL": db_url}

    def start(*paths: Path) -> subprocess.Popen:
        command = [sys.executable, "-m", "semsql.cli", "ingest", *map(str, paths), "--json"]
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    with (
        psycopg.connect(db_url) as gate,
        psycopg.connect(db_url, autocommit=True) as observer,
    ):
        # Each ingest stores its first file, then waits here to record it; the other one's
        # first file (the same uri or the same content) waits for that one to commit.
        gate.execute("LOCK TABLE semsql.job_items IN SHARE ROW EXCLUSIVE MODE")
        ingests = [start(first), start(second, first)]

        def both_wait() -> bool:
            """both ingests wait on a lock"""
            waiting = observer.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'
                     AND query LIKE '%ingest_batch%'"""
            ).fetchone()[0]
            return waiting == 2

        wait_until(both_wait)
    results = [process.communicate(timeout=120) for process in ingests]

    summaries = []
    for process, (stdout, stderr) in zip(ingests, results, strict=True):
        assert process.returncode == 0, stderr.decode()
        summaries.append(json.loads(stdout))
    assert [s["failed"] for s in summaries] == [0, 0]
    assert [s["total"] for s in summaries] == [5, 6]
    assert sum(s["new"] for s in summaries) == 5
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    assert conn.execute("SELECT count(*) FROM semsql.assets").fetchone()[0] == 5


# -- item 6: the timeout bounds the whole download ---------------------------------------------


class Trickle(http.server.BaseHTTPRequestHandler):
    """Ten bytes every 0.2 s for ten seconds: each read comes well inside any timeout."""

    def do_GET(self) -> None:
        try:
            if self.path == "/headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for n in range(50):
                    self.wfile.write(f"X-Slow-{n}: 1\r\n".encode())
                    self.wfile.flush()
                    time.sleep(0.2)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "500")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"\xff" * 10)
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass  # the client gave up, as it should

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def trickle_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/body", "/headers"])
def test_a_trickling_server_is_cut_off_at_the_timeout(trickle_url: str, path: str) -> None:
    started = time.monotonic()
    with pytest.raises(ProbeError) as raised:
        fetch_url(trickle_url + path, max_bytes=1_000_000, timeout=1.0)
    elapsed = time.monotonic() - started
    assert raised.value.code == "unreadable"
    assert raised.value.message == (
        f"cannot fetch {trickle_url}{path}: not finished after 1 s"
        " (the timeout bounds the whole download)"
    )
    assert elapsed < 5  # the server would go on for 10 s


def test_a_trickling_url_fails_alone_in_its_job(
    conn, no_stages, trickle_url: str, tmp_path: Path
) -> None:
    good = make_jpeg(tmp_path / "good.jpg")
    candidates = list(iter_candidates([f"{trickle_url}/body", str(good)]))
    job_id = create_job(conn, "default", {})
    started = time.monotonic()
    summary = run_ingest(conn, job_id, candidates, IngestOptions(url_timeout=1.0))
    assert time.monotonic() - started < 5
    assert (summary.new, summary.failed, summary.status) == (1, 1, "completed")
    assert "not finished after 1 s" in summary.errors[0]["error"]


# -- item 7a: what is opened lies inside the folder, and assets record that folder --------------


def test_a_file_swapped_for_an_outside_link_after_listing_is_refused(
    conn, no_stages, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    make_jpeg(photos / "a.jpg", seed=1)
    make_jpeg(photos / "sub" / "b.jpg", seed=2)
    make_jpeg(photos / "c.jpg", seed=3)
    outside = tmp_path / "outside"
    secret = make_jpeg(outside / "secret.jpg", seed=4)
    make_jpeg(outside / "sub" / "b.jpg", seed=5)
    catalog = photos / "catalog.jsonl"
    catalog.write_text(json.dumps({"uri": "c.jpg", "caption": "c"}) + "\n")
    walked = list(iter_candidates([str(photos)], recursive=True))
    skipped = {c.path.name: c.skip_reason for c in walked if c.path and c.skip_reason}
    assert skipped == {"catalog.jsonl": "unsupported format .jsonl"}
    candidates = [
        *(c for c in walked if c.skip_reason is None),
        *iter_manifest_candidates(catalog),
    ]
    assert [c.path.name for c in candidates] == ["a.jpg", "c.jpg", "b.jpg", "c.jpg"]

    # Between the listing (which checked the links) and the probe (which opens the files):
    (photos / "a.jpg").unlink()
    (photos / "a.jpg").symlink_to(secret)
    shutil.rmtree(photos / "sub")
    (photos / "sub").symlink_to(outside / "sub")
    (photos / "c.jpg").unlink()
    (photos / "c.jpg").symlink_to(f"../{outside.name}/secret.jpg")

    summary = run_ingest(conn, create_job(conn, "default", {}), candidates, IngestOptions())

    assert (summary.new, summary.failed) == (0, 4)
    assert {e["code"] for e in summary.errors} == {"outside_root"}
    assert {e["error"] for e in summary.errors} == {
        f"{photos}/a.jpg: a link leads outside {photos} (to {secret})",
        f"{photos}/sub/b.jpg: a link leads outside {photos} (to {outside}/sub)",
        f"{photos}/c.jpg: a link leads outside {photos} (to ../outside/secret.jpg)",
    }
    assert conn.execute("SELECT count(*) FROM semsql.assets").fetchone()[0] == 0


def test_assets_record_the_folder_they_were_found_under(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    folder = tmp_path / "folder"
    make_jpeg(folder / "deep" / "a.jpg", seed=1)
    single = make_jpeg(tmp_path / "single" / "b.jpg", seed=2)
    catalog = tmp_path / "catalog"
    make_jpeg(catalog / "c.jpg", seed=3)
    make_jpeg(catalog / "sub" / "d.jpg", seed=4)
    (catalog / "one.jsonl").write_text('{"uri": "c.jpg"}\n')
    (catalog / "sub" / "two.jsonl").write_text('{"uri": "d.jpg"}\n')

    ingest(str(folder), "-r", str(single))
    ingest("--manifest", str(catalog / "one.jsonl"))
    ingest("--manifest", str(catalog / "sub" / "two.jsonl"), "--root", str(catalog))

    roots = dict(conn.execute("SELECT uri, root FROM semsql.assets").fetchall())
    assert roots == {
        str(folder / "deep" / "a.jpg"): str(folder),
        str(single): str(single.parent),
        str(catalog / "c.jpg"): str(catalog),
        str(catalog / "sub" / "d.jpg"): str(catalog),
    }

    # An asset from before roots were recorded gets its root on the next ingest, unchanged.
    conn.execute("UPDATE semsql.assets SET root = NULL")
    conn.commit()
    again = ingest(str(folder), "-r")
    assert (again["skipped"], again["updated"]) == (1, 0)
    root = conn.execute(
        "SELECT root FROM semsql.assets WHERE uri = %s", [str(folder / "deep" / "a.jpg")]
    ).fetchone()[0]
    assert root == str(folder)


def test_an_early_probe_is_taken_in_place_of_probing_again(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    """An upload's files are probed as they arrive; the ingest takes those outcomes (here a
    made-up error for a good file, which a second probe would not give) and probes the rest."""
    early_file = make_jpeg(tmp_path / "photos" / "early.jpg", seed=1)
    make_jpeg(tmp_path / "photos" / "later.jpg", seed=2)
    candidates = list(iter_candidates([str(tmp_path / "photos")]))
    told = Future()
    told.set_result(ProbeError("corrupt", "said by the early probe"))
    early = {c.uri: told for c in candidates if c.path == early_file}

    summary = run_ingest(
        conn, create_job(conn, "default", {}), candidates, IngestOptions(), early_probes=early
    )

    assert (summary.new, summary.failed) == (1, 1)
    assert [e["error"] for e in summary.errors] == ["said by the early probe"]
