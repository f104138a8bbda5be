"""semsql.similar(by => 'semantic' | 'content' | 'both'), semsql.similar_to and
`semsql search --image/--like --by`: look-alikes by meaning, by look (the content index, no
model) or both fused by priority and split, each row saying which index found it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps
from test_content_index import NEAR, copies, samples, write_library

from semsql import database
from semsql.cli.main import cli
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.search import SimilarRequest, run_similar
from semsql.stages import NAMES
from semsql.testing import scratch_database

TEMPLATE = "semsql_test_template"


def build(url: str, folder: Path, models: dict[str, str | None]) -> None:
    result = CliRunner().invoke(
        cli,
        ["ingest", *map(str, write_library(folder).values()), "--json"],
        env={"SEMSQL_DATABASE_URL": url},
    )
    assert result.exit_code == 0, result.output
    Worker(url, WorkerOptions(until_idle=True, poll_interval=0.2), models=models).run()


@pytest.fixture(scope="module")
def looks_url(server_url, template_url, tmp_path_factory) -> Iterator[str]:
    """The library, hashed by the content stage; every model off (CLIP absent)."""
    name = f"semsql_looks_{os.getpid()}_{tmp_path_factory.mktemp('n').name}"
    with scratch_database(server_url, name, template=TEMPLATE) as url:
        build(
            url,
            tmp_path_factory.mktemp("library"),
            {n: None for n in NAMES} | {"content": "phash256"},
        )
        yield url


@pytest.fixture(scope="module")
def both_url(server_url, template_url, tmp_path_factory, tiny_models) -> Iterator[str]:
    """The library with content hashes and the tiny CLIP model's image vectors."""
    name = f"semsql_both_{os.getpid()}_{tmp_path_factory.mktemp('n').name}"
    models = {n: None for n in NAMES} | {"content": "phash256", "clip": tiny_models["clip"]}
    with scratch_database(server_url, name, template=TEMPLATE) as url:
        build(url, tmp_path_factory.mktemp("library"), models)
        yield url


def connect(url: str) -> psycopg.Connection:
    return database.connect(url, autocommit=True)


def asset_ids(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT uri, id FROM semsql.assets").fetchall()
    return {Path(uri).name.rsplit(".", 1)[0]: asset_id for uri, asset_id in rows}


CASTS = {
    "k": "integer",
    "by": "text",
    "priority": "text",
    "split": "real",
    "max_distance": "integer",
}


def similar(conn: psycopg.Connection, asset_id: int, **arguments: object) -> list[tuple]:
    named = "".join(f", {name} => %({name})s::{CASTS[name]}" for name in arguments)
    return conn.execute(
        "SELECT asset_id, matched_by, content_distance, semantic_rank, content_rank, rank "
        f"FROM semsql.similar(%(asset_id)s{named})",
        {"asset_id": asset_id, **arguments},
    ).fetchall()


# By content, with no model -----------------------------------------------------------------------


def test_similar_by_content_ranks_the_copies_first_with_clip_off(looks_url: str) -> None:
    with connect(looks_url) as conn:
        ids = asset_ids(conn)
        for name, image in samples().items():
            own = {ids[f"{name} {kind}"] for kind in copies(image)}
            rows = similar(conn, ids[name], k=20, by="content")
            # its copies, and nothing else within the default 64 bits; the others are far
            assert {row[0] for row in rows} == own, name
            assert [row[1] for row in rows] == ["content"] * len(own)
            distances = [row[2] for row in rows]
            assert distances == sorted(distances) and max(distances) <= NEAR
            assert [row[5] for row in rows] == list(range(1, len(own) + 1))
            assert [row[4] for row in rows] == [row[5] for row in rows]
            assert all(row[3] is None for row in rows)  # no semantic rank: CLIP is off
            # ... and with every distance allowed, the copies still come first
            rows = similar(conn, ids[name], k=40, by="content", max_distance=256)
            assert {row[0] for row in rows[: len(own)]} == own, name
            assert len(rows) == len(ids) - 1 and ids[name] not in {row[0] for row in rows}
        # a turned copy finds its original (and the original's other copies)
        found = [row[0] for row in similar(conn, ids["rocket quarter turn"], by="content")]
        assert ids["rocket"] in found and ids["rocket mirrored"] in found


def test_both_falls_back_to_content_with_a_notice_when_clip_is_absent(looks_url: str) -> None:
    with connect(looks_url) as conn:
        ids = asset_ids(conn)
        notices: list[str] = []
        conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary))
        both = similar(conn, ids["chelsea"], by="both", priority="semantic_first", split=0.9)
        assert both == similar(conn, ids["chelsea"], by="content")
        assert notices == [
            f"asset {ids['chelsea']} has no CLIP image vector (the image space is empty: CLIP "
            "is off or absent): similar by content alone"
        ]
        # by => semantic (the default) is as before the content index: it says why it cannot
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no vectors yet"):
            similar(conn, ids["chelsea"])


def test_similar_to_finds_a_file_that_is_not_stored_by_its_hashes(looks_url: str) -> None:
    from semsql.content_hash import query_hashes

    image = ImageOps.mirror(samples()["coffee"]).resize((200, 133))
    with connect(looks_url) as conn:
        ids = asset_ids(conn)
        hits, notices = run_similar(
            conn, SimilarRequest(content_hashes=query_hashes(image), by="content")
        )
        assert notices == []
        own = {ids["coffee"]} | {ids[f"coffee {kind}"] for kind in copies(samples()["coffee"])}
        assert {hit.asset_id for hit in hits} == own
        assert all(hit.matched_by == "content" and hit.content_distance <= NEAR for hit in hits)
        assert hits[0].score == pytest.approx(1 - hits[0].content_distance / 256)
        assert hits[0].uri.endswith(".png") or hits[0].uri.endswith(".jpg")


# The fused order, on lists given -----------------------------------------------------------------

SEMANTIC = [1, 2, 3, 4]
CONTENT = [3, 5, 1, 6]  # nearest first, at 2, 4, 6 and 8 bits
BOTH, SEM, CON = "both", "semantic", "content"


@pytest.mark.parametrize(
    ("semantic", "k", "priority", "split", "expected"),
    [
        # both_first: 1 and 3 (both indexes; rank sums 4 and 4, semantic rank breaks the tie),
        # then the 2 slots left shared by split, each by its one rank (semantic first on a tie)
        (SEMANTIC, 4, "both_first", 0.5, [(1, BOTH), (3, BOTH), (2, SEM), (5, CON)]),
        (SEMANTIC, 4, "both_first", 1.0, [(1, BOTH), (3, BOTH), (2, SEM), (4, SEM)]),
        (SEMANTIC, 4, "both_first", 0.0, [(1, BOTH), (3, BOTH), (5, CON), (6, CON)]),
        (SEMANTIC, 10, "both_first", 0.5,
         [(1, BOTH), (3, BOTH), (2, SEM), (5, CON), (4, SEM), (6, CON)]),
        # semantic_first: 2 semantic picks (1, 2), 2 content picks of the rest (3, 5); what the
        # semantic index found first, in its order, then the content hits
        (SEMANTIC, 4, "semantic_first", 0.5, [(1, BOTH), (2, SEM), (3, BOTH), (5, CON)]),
        (SEMANTIC, 4, "semantic_first", 0.25, [(1, BOTH), (3, BOTH), (5, CON), (6, CON)]),
        # content_first: 2 content picks (3, 5), then 2 semantic picks of the rest (1, 2)
        (SEMANTIC, 4, "content_first", 0.5, [(3, BOTH), (5, CON), (1, BOTH), (2, SEM)]),
        (SEMANTIC, 4, "content_first", 0.75, [(3, BOTH), (1, BOTH), (2, SEM), (4, SEM)]),
        # a list too short for its share: the other fills the slots
        ([1, 2], 5, "semantic_first", 0.8, [(1, BOTH), (2, SEM), (3, CON), (5, CON), (6, CON)]),
        # 0.625 x 4 = 2.5 rounds half up: 3 semantic slots, 1 content slot (half to even: 2, 2)
        (SEMANTIC, 4, "content_first", 0.625, [(3, BOTH), (1, BOTH), (2, SEM), (4, SEM)]),
    ],
)  # fmt: skip
def test_fuse_similar_gives_the_documented_order(
    looks_url: str, semantic: list[int], k: int, priority: str, split: float, expected: list
) -> None:
    with connect(looks_url) as conn:
        ids = sorted(asset_ids(conn).values())[:6]
        number = {asset_id: i + 1 for i, asset_id in enumerate(ids)}
        rows = conn.execute(
            """SELECT f.asset_id, f.matched_by, f.content_distance, f.semantic_rank,
                      f.content_rank, f.rank, f.uri = a.uri
               FROM semsql.fuse_similar(
                   ARRAY(SELECT ROW(s.id, NULL, 1.0 / s.i, NULL, NULL, NULL, NULL, NULL,
                                    NULL, NULL, NULL, NULL, NULL, s.i,
                                    NULL, NULL)::semsql.search_result
                         FROM unnest(%s::bigint[]) WITH ORDINALITY AS s (id, i) ORDER BY s.i),
                   %s::bigint[], %s::integer[], %s::integer, %s::text, %s::real) AS f
               JOIN semsql.assets a ON a.id = f.asset_id""",
            [[ids[n - 1] for n in semantic], [ids[n - 1] for n in CONTENT], [2, 4, 6, 8], k,
             priority, split],
        ).fetchall()  # fmt: skip
    assert [(number[row[0]], row[1]) for row in rows] == expected
    assert [row[5] for row in rows] == list(range(1, len(rows) + 1))
    assert all(row[6] for row in rows)
    for asset_id, _, distance, semantic_rank, content_rank, _, _ in rows:
        n = number[asset_id]
        assert semantic_rank == (semantic.index(n) + 1 if n in semantic else None)
        assert content_rank == (CONTENT.index(n) + 1 if n in CONTENT else None)
        assert distance == (2 * content_rank if content_rank else None)


# Both indexes, with the tiny CLIP model ----------------------------------------------------------


def reference_fusion(
    semantic: list[int], content: list[int], k: int, priority: str, split: float
) -> list[tuple[int, str]]:
    """README's rule, written again: the order semsql.fuse_similar must give."""
    srank = {a: i + 1 for i, a in enumerate(semantic)}
    crank = {a: i + 1 for i, a in enumerate(content)}
    found = {a: BOTH if a in srank and a in crank else SEM if a in srank else CON
             for a in [*semantic, *content]}  # fmt: skip
    picked: list[int] = []
    if priority == "both_first":
        both = sorted(
            (a for a in found if found[a] == BOTH), key=lambda a: (srank[a] + crank[a], srank[a], a)
        )
        picked = both[:k]
    left = k - len(picked)
    semantic_quota = int(split * left + 0.5)
    quotas = [(srank, semantic_quota), (crank, left - semantic_quota)]
    if priority == "content_first":
        quotas.reverse()
    for ranks, quota in quotas:
        rest = sorted((a for a in ranks if a not in picked), key=lambda a: (ranks[a], a))
        picked += rest[:quota]
    never = len(found) + 1
    rest = sorted(
        (a for a in found if a not in picked),
        key=lambda a: (min(srank.get(a, never), crank.get(a, never)), a not in srank, a),
    )
    picked += rest[: max(0, k - len(picked))]

    def key(a: int) -> tuple:
        if priority == "both_first":
            group = found[a] != BOTH
            own = srank[a] + crank[a] if found[a] == BOTH else srank.get(a, crank.get(a))
        else:
            first, second = (crank, srank) if priority == "content_first" else (srank, crank)
            group = a not in first
            own = first.get(a, second.get(a))
        return (group, own, a not in srank, srank.get(a, 0), a)

    return [(a, found[a]) for a in sorted(picked, key=key)]


@pytest.mark.parametrize("priority", ["both_first", "semantic_first", "content_first"])
@pytest.mark.parametrize("split", [0.0, 0.3, 0.5, 1.0])
def test_both_fuses_the_two_indexes_as_documented(
    both_url: str, priority: str, split: float
) -> None:
    with connect(both_url) as conn:
        ids = asset_ids(conn)
        # the copies alone (64 bits), and every asset (256 bits: the lists then differ)
        for name, k, bits in (("astronaut", 8, 64), ("rocket quarter turn", 12, 256)):
            semantic = [row[0] for row in similar(conn, ids[name], k=k, by="semantic")]
            content = [
                row[0] for row in similar(conn, ids[name], k=k, by="content", max_distance=bits)
            ]
            assert len(semantic) == k and content  # both indexes answer
            if bits == 256:
                assert set(semantic) - set(content) and set(content) - set(semantic)
            rows = similar(
                conn, ids[name], k=k, by="both", priority=priority, split=split, max_distance=bits
            )
            assert [(row[0], row[1]) for row in rows] == reference_fusion(
                semantic, content, k, priority, split
            ), name
            for asset_id, matched_by, distance, semantic_rank, content_rank, _ in rows:
                assert (matched_by in (BOTH, SEM)) == (asset_id in semantic)
                assert (matched_by in (BOTH, CON)) == (asset_id in content)
                assert semantic_rank == (
                    semantic.index(asset_id) + 1 if asset_id in semantic else None
                )
                assert content_rank == (
                    content.index(asset_id) + 1 if asset_id in content else None
                )
                assert (distance is None) == (asset_id not in content)


def test_semantic_is_unchanged_by_the_content_index(both_url: str) -> None:
    with connect(both_url) as conn:
        ids = asset_ids(conn)
        before = conn.execute(
            "SELECT asset_id, score FROM semsql.search(like_asset => %s, k => 5)", [ids["coffee"]]
        ).fetchall()
        after = conn.execute(
            "SELECT asset_id, score, matched_by FROM semsql.similar(%s, 5)", [ids["coffee"]]
        ).fetchall()
    assert [(a, s) for a, s, _ in after] == before
    assert {m for _, _, m in after} == {"semantic"}


# The command line -------------------------------------------------------------------------------


def test_search_image_by_content_from_the_cli_with_clip_off(
    looks_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", looks_url)
    monkeypatch.setenv("SEMSQL_MODEL_CLIP", "off")
    query = tmp_path / "scan <b>.jpg"
    samples()["astronaut"].rotate(90, expand=True).resize((256, 256)).save(query, quality=60)
    result = CliRunner().invoke(cli, ["search", "--image", str(query), "--by", "content", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    with connect(looks_url) as conn:
        ids = asset_ids(conn)
    own = {ids["astronaut"]} | {ids[f"astronaut {kind}"] for kind in copies(samples()["astronaut"])}
    assert {hit["asset_id"] for hit in hits} == own
    assert {hit["matched_by"] for hit in hits} == {"content"}

    # by both with no CLIP here: the content index alone, and the notes say why
    sheet = tmp_path / "sheet.html"
    result = CliRunner().invoke(
        cli, ["search", "--image", str(query), "--by", "both", "--priority", "content_first",
              "--html", str(sheet)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: no CLIP vector of scan <b>.jpg here" in result.stderr
    assert "similar by content alone" in result.stderr
    assert "content" in result.stdout and str(ids["astronaut"]) in result.stdout
    page = sheet.read_text()
    assert page.count('<figure class="found-content">') == len(own)
    assert "found by look (content index)" in page and "found by both indexes" in page
    assert "scan &lt;b&gt;.jpg" in page and "scan <b>" not in page

    result = CliRunner().invoke(cli, ["search", "--like", str(ids["rocket"]), "--by", "content"])
    assert result.exit_code == 0, result.output
    assert str(ids["rocket mirrored"]) in result.stdout


def test_the_contact_sheet_colours_each_index(both_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", both_url)
    with connect(both_url) as conn:
        ids = asset_ids(conn)
        found = {row[1] for row in similar(conn, ids["astronaut"], k=12, by="both", split=0.5)}
    sheet = tmp_path / "sheet.html"
    result = CliRunner().invoke(
        cli,
        [
            "search",
            "--like",
            str(ids["astronaut"]),
            "--by",
            "both",
            "-n",
            "12",
            "--html",
            str(sheet),
        ],
    )
    assert result.exit_code == 0, result.output
    page = sheet.read_text()
    for index in found:
        assert f'<figure class="found-{index}">' in page
    assert page.count("<figure") == 12


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("by => 'meaning'", "by takes semantic, content or both, not meaning"),
        ("by => NULL", "by takes semantic, content or both, not NULL"),
        (
            "by => 'both', priority => 'newest'",
            "priority takes both_first, semantic_first or content_first, not newest",
        ),
        ("by => 'both', split => 1.5", "split must be between 0 and 1, not 1.5"),
        ("by => 'both', split => 'NaN'", "split must be a finite number, not NaN"),
        ("by => 'both', split => NULL", "split must be a number, not NULL"),
        (
            "by => 'content', max_distance => 257",
            "max_distance must be between 0 and 256 bits, not 257",
        ),
        ("by => 'content', k => 1001", "k must be between 1 and 1000 with by => content, not 1001"),
        ("by => 'both', k => 0", "k must be between 1 and 1000 with by => both, not 0"),
    ],
)
def test_similar_refuses_bad_arguments(looks_url: str, arguments: str, message: str) -> None:
    with connect(looks_url) as conn:
        (asset_id,) = conn.execute("SELECT min(id) FROM semsql.assets").fetchone()
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            conn.execute(f"SELECT * FROM semsql.similar({asset_id}, {arguments})")
        with pytest.raises(psycopg.errors.NoDataFound, match="no asset has id 0"):
            conn.execute("SELECT * FROM semsql.similar(0, by => 'content')")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="needs content_hashes"):
            conn.execute("SELECT * FROM semsql.similar_to(by => 'content')")


def test_a_new_asset_without_a_hash_is_explained(looks_url: str, tmp_path: Path) -> None:
    path = tmp_path / "new.png"
    Image.new("RGB", (32, 32), "red").save(path)
    result = CliRunner().invoke(
        cli, ["ingest", str(path), "--json"], env={"SEMSQL_DATABASE_URL": looks_url}
    )
    assert result.exit_code == 0, result.output
    with connect(looks_url) as conn:
        (asset_id,) = conn.execute(
            "SELECT id FROM semsql.assets WHERE uri LIKE '%%/new.png'"
        ).fetchone()
        try:
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState,
                               match=f"asset {asset_id} has no content hash yet"):  # fmt: skip
                similar(conn, asset_id, by="both")
        finally:
            conn.execute("DELETE FROM semsql.assets WHERE id = %s", [asset_id])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--priority", "content_first"], "add --by both"),
        (["--by", "content"], "--by needs --image FILE or --like ID"),
        (
            ["--by", "content", "--like", "1", "--split", "0.5"],
            "--priority and --split need --by both",
        ),
        (["--by", "content", "--like", "1", "--tag", "x"], "drop QUERY and filters"),
        (["--by", "both", "--like", "1", "--split", "2"], "0<=x<=1"),
        (["--by", "closest", "--like", "1"], "'closest' is not one of"),
    ],
)
def test_the_cli_refuses_bad_options(
    looks_url: str, monkeypatch, arguments: list[str], message: str
) -> None:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", looks_url)
    result = CliRunner().invoke(cli, ["search", *arguments])
    assert result.exit_code == 2 and message in result.output, result.output


def test_the_cli_says_what_a_file_it_cannot_hash_is(
    looks_url: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", looks_url)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    result = CliRunner().invoke(cli, ["search", "--image", str(broken), "--by", "content"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot read") and result.stderr.count("\n") == 1
    result = CliRunner().invoke(cli, ["search", "--like", "1", "--by", "content", "-n", "5000"])
    assert result.exit_code == 1
    assert "k must be between 1 and 1000 with by => content" in result.stderr


def test_sqlalchemy_reads_which_index_found_each_row(looks_url: str) -> None:
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from semsql import orm

    with connect(looks_url) as conn:
        ids = asset_ids(conn)
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(looks_url))
    with Session(engine) as session:
        hits = orm.similar(ids["rocket"], k=5, by="content", max_distance=64)
        rows = session.execute(
            select(hits.c.asset_id, hits.c.matched_by, hits.c.content_distance).order_by(
                hits.c.rank
            )
        ).all()
    engine.dispose()
    assert len(rows) == 5 and {row.matched_by for row in rows} == {"content"}
    assert all(row.content_distance <= NEAR for row in rows)
    own = {ids[f"rocket {kind}"] for kind in copies(samples()["rocket"])}
    assert {row.asset_id for row in rows} <= own
