"""Duplicate review: semsql.duplicate_review picks the copy to keep in one documented order,
semsql.delete_assets removes the other copies' rows and everything hanging from them (never a
file), only for writers; `semsql duplicates` shows the groups (text, JSON, HTML) and deletes
with --keep best --delete-others, or lists with --dry-run."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
import skimage.data
from click.testing import CliRunner, Result
from PIL import Image, ImageOps
from psycopg import sql

from semsql import content_hash
from semsql.cli.main import cli
from semsql.duplicates import DuplicateQuery, delete_assets, review
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.stages import NAMES

# Tables whose asset_id is no reference: marks that live for one transaction.
TRANSIENT = {"search_documents_stale"}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def add_asset(
    conn: psycopg.Connection,
    uri: str,
    vector: list[float],
    *,
    content: str | None = None,
    size: tuple[int, int] | None = None,
    stored_bytes: int | None = None,
    taken_at: str | None = None,
    caption: str | None = None,
    tags: tuple[str, ...] = (),
) -> int:
    """An asset with an image vector (space `image`, 3 dimensions), as the worker leaves it."""
    width, height = size or (None, None)
    asset_id: int = conn.execute(
        """INSERT INTO semsql.assets (uri, sha256, width, height, bytes, taken_at)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
        [
            uri,
            hashlib.sha256((content or uri).encode()).hexdigest(),
            width,
            height,
            stored_bytes,
            taken_at,
        ],
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO semsql.embeddings (asset_id, space, model, embedding) "
        "VALUES (%s, 'image', 'm', %s)",
        [asset_id, np.array(vector, dtype=np.float32)],
    )
    if caption:
        conn.execute(
            "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'user', %s)",
            [asset_id, caption],
        )
    for tag in tags:
        conn.execute(
            "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, %s, 'user')",
            [asset_id, tag],
        )
    return asset_id


def register(conn: psycopg.Connection) -> None:
    conn.execute("SELECT semsql.register_vector_space('image', 'm', 3)")
    conn.commit()


TYPES = {"max_distance": "real", "collection": "text", "neighbours": "integer", "by": "text"}


def review_rows(conn: psycopg.Connection, **arguments: object) -> list[dict]:
    cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
    named = ", ".join(f"{name} => %({name})s::{TYPES[name]}" for name in arguments)
    return cursor.execute(f"SELECT * FROM semsql.duplicate_review({named})", arguments).fetchall()


# The order of preference ------------------------------------------------------------------------


def test_the_copy_to_keep_is_largest_then_heaviest_then_oldest_then_most_described(
    conn, no_stages
) -> None:
    # Each group's candidates differ first in one criterion: the one that must decide.
    groups = {
        "pixels": [
            dict(size=(800, 600), stored_bytes=100),
            dict(size=(1600, 1200), stored_bytes=90, taken_at="2024-01-01"),
            dict(size=None, stored_bytes=900),  # size unknown: last
        ],
        "bytes": [
            dict(size=(800, 600), stored_bytes=100, taken_at="2001-01-01"),
            dict(size=(600, 800), stored_bytes=300),  # rotated: as many pixels
        ],
        "taken": [
            dict(size=(800, 600), stored_bytes=100, caption="a lot said", tags=("a", "b")),
            dict(size=(800, 600), stored_bytes=100, taken_at="2010-05-01"),
            dict(size=(800, 600), stored_bytes=100, taken_at="2009-05-01"),
        ],
        "facts": [
            dict(size=(800, 600), stored_bytes=100, taken_at="2010-05-01", tags=("a",)),
            dict(size=(800, 600), stored_bytes=100, taken_at="2010-05-01", caption="c",
                 tags=("a",)),
        ],
        "alike": [dict(size=(80, 60), stored_bytes=10), dict(size=(80, 60), stored_bytes=10)],
    }  # fmt: skip
    winners = {"pixels": 1, "bytes": 1, "taken": 2, "facts": 1, "alike": 0}
    ids: dict[str, list[int]] = {}
    for axis, (name, copies) in enumerate(groups.items()):
        vector = [0.0, 0.0, 0.0]
        vector[axis % 3] = 1.0 + axis  # far apart: each group alone
        vector[(axis + 1) % 3] = axis * 7.0
        ids[name] = [
            add_asset(conn, f"/{name}/{n}.jpg", vector, **copy) for n, copy in enumerate(copies)
        ]
    register(conn)
    rows = review_rows(conn, max_distance=0.001)
    kept = {row["asset_id"] for row in rows if row["keep"]}
    assert kept == {ids[name][winners[name]] for name in groups}
    assert len(rows) == sum(map(len, groups.values()))
    by_id = {row["asset_id"]: row for row in rows}
    assert by_id[ids["pixels"][1]]["reason"] == "largest: 1600x1200 px (next 800x600)"
    assert by_id[ids["pixels"][0]]["reason"] == "smaller: 800x600 px (kept 1600x1200)"
    assert by_id[ids["pixels"][2]]["reason"] == "smaller: size unknown (kept 1600x1200)"
    assert by_id[ids["pixels"][2]]["rank"] == 3
    assert by_id[ids["bytes"][1]]["reason"] == "as large, most bytes: 300 (next 100)"
    assert by_id[ids["taken"][2]]["reason"].startswith("same size, taken first: 2009-05-01")
    assert by_id[ids["taken"][0]]["reason"].startswith("same size, taken later: date unknown")
    assert by_id[ids["taken"][0]]["user_facts"] == 3
    assert by_id[ids["facts"][1]]["reason"] == "same size and date, most user metadata: 2 (next 1)"
    alike = ("alike, ingested first", "alike, the first asset id")
    assert by_id[ids["alike"][0]]["reason"] in alike
    # The Python helper reads the same rows, kept first.
    groups_found = review(conn, DuplicateQuery(by="semantic", max_distance=0.001))
    assert {group.kept.asset_id for group in groups_found} == kept
    assert all(group.copies[0].keep for group in groups_found)


def test_max_distance_null_is_each_kind_s_default_and_bad_arguments_are_refused(conn) -> None:
    conn.execute("UPDATE semsql.stages SET enabled = false")
    first = add_asset(conn, "/a.jpg", [1.0, 0.0, 0.0])
    second = add_asset(conn, "/b.jpg", [1.0, 0.2, 0.0])  # cosine distance 0.0194
    add_asset(conn, "/c.jpg", [0.0, 1.0, 0.0])
    register(conn)
    default = conn.execute("SELECT group_id, asset_id FROM semsql.duplicates()").fetchall()
    assert default == [(first, first), (first, second)]
    explicit = "SELECT group_id, asset_id FROM semsql.duplicates(max_distance => NULL)"
    assert conn.execute(explicit).fetchall() == default
    refused = {
        "by => 'pixels'": "by takes semantic or content, not pixels",
        "by => NULL": "by takes semantic or content, not <NULL>",
        "max_distance => 3, by => 'semantic'": "max_distance must be between 0 and 2, not 3",
    }
    for arguments, message in refused.items():
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            conn.execute(f"SELECT * FROM semsql.duplicates({arguments})")
        conn.rollback()


# Deleting asset rows ----------------------------------------------------------------------------


def tables_with_asset_ids(conn: psycopg.Connection) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            """SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               WHERE c.relnamespace = 'semsql'::regnamespace AND c.relkind = 'r'
                 AND a.attname = 'asset_id' AND NOT a.attisdropped ORDER BY 1"""
        )
    ]


def rows_of(conn: psycopg.Connection, asset_ids: list[int]) -> dict[str, int]:
    """Per table with an asset_id, how many of its rows name these assets."""
    return {
        table: conn.execute(
            sql.SQL("SELECT count(*) FROM semsql.{} WHERE asset_id = ANY (%s)").format(
                sql.Identifier(table)
            ),
            [asset_ids],
        ).fetchone()[0]
        for table in tables_with_asset_ids(conn)
    }


def test_every_table_with_an_asset_id_follows_the_asset_when_it_is_deleted(conn) -> None:
    """A guard for tables to come: each asset_id references assets, cascading (or set to NULL,
    for history), unless it is a mark of one transaction."""
    actions = dict(
        conn.execute(
            """SELECT r.relname, c.confdeltype
               FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
               WHERE c.contype = 'f' AND c.confrelid = 'semsql.assets'::regclass
                 AND a.attname = 'asset_id'"""
        ).fetchall()
    )
    for table in set(tables_with_asset_ids(conn)) - TRANSIENT:
        assert actions.get(table) in ("c", "n"), table
    assert actions["job_items"] == "n"  # history keeps its rows


def build_library(conn: psycopg.Connection) -> dict[str, int]:
    """A kept original and two copies, each with something in every table that can hang from an
    asset: user facts, a face in a cluster and enrolled as a reference, vectors, tasks, its
    search document, a job item of a job still waiting for its enrichment."""
    conn.execute("UPDATE semsql.stages SET enabled = (name = 'text')")
    job = conn.execute(
        "INSERT INTO semsql.jobs (status, ingested_at) VALUES ('running', now()) RETURNING id"
    ).fetchone()[0]
    person = conn.execute("INSERT INTO semsql.people (name) VALUES ('Ada') RETURNING id")
    person_id = person.fetchone()[0]
    cluster = conn.execute(
        "INSERT INTO semsql.face_clusters (seed_face_id, min_similarity) VALUES (0, 0.9) "
        "RETURNING id"
    ).fetchone()[0]
    ids = {}
    for n, (name, size) in enumerate([("original", (900, 600)), ("half", (450, 300)),
                                      ("quarter", (225, 150))]):  # fmt: skip
        asset_id = add_asset(
            conn, f"/lib/{name}.jpg", [1.0, 0.01 * n, 0.0], size=size, caption=f"{name} cap",
            tags=("beach",),
        )  # fmt: skip
        ids[name] = asset_id
        conn.execute("UPDATE semsql.assets SET job_id = %s WHERE id = %s", [job, asset_id])
        conn.execute(
            "INSERT INTO semsql.job_items (job_id, position, uri, outcome, asset_id) "
            "VALUES (%s, %s, %s, 'new', %s)",
            [job, n, f"/lib/{name}.jpg", asset_id],
        )
        conn.execute(
            "INSERT INTO semsql.asset_people (asset_id, person_id, source) VALUES (%s, %s, 'user')",
            [asset_id, person_id],
        )
        face = conn.execute(
            """INSERT INTO semsql.faces (asset_id, box, detector, embedding, embedding_model)
               VALUES (%s, '{0,0,9,9}', 'mtcnn', array_fill(0.1, ARRAY[512])::vector, 'dlib')
               RETURNING id""",
            [asset_id],
        ).fetchone()[0]
        if name == "half":
            conn.execute(
                "INSERT INTO semsql.face_cluster_members (face_id, cluster_id) VALUES (%s, %s)",
                [face, cluster],
            )
            conn.execute(
                """INSERT INTO semsql.person_faces (person_id, embedding, model, face_id)
                   VALUES (%s, array_fill(0.1, ARRAY[512])::vector, 'dlib', %s)""",
                [person_id, face],
            )
        conn.execute(
            "INSERT INTO semsql.embeddings (asset_id, space, model, embedding) "
            "VALUES (%s, 'text', 'minilm', '[1,0,0]')",
            [asset_id],
        )
    conn.execute("SELECT semsql.register_vector_space('text', 'minilm', 3)")
    register(conn)  # commits: the documents are built, their text tasks queued
    # The original's enrichment is done; the job waits only for the copies'.
    conn.execute("UPDATE semsql.tasks SET status = 'done' WHERE asset_id = %s", [ids["original"]])
    conn.commit()
    return ids


def test_delete_assets_removes_every_row_that_hangs_from_them(conn) -> None:
    ids = build_library(conn)
    copies = [ids["half"], ids["quarter"]]
    before = rows_of(conn, copies)
    hanging = {"captions", "tags", "asset_people", "faces", "embeddings", "tasks", "job_items",
               "search_documents"}  # fmt: skip
    assert {table for table, count in before.items() if count} >= hanging
    kept_before = rows_of(conn, [ids["original"]])

    deleted = delete_assets(conn, [*copies, 10**9])  # an unknown id is no error
    conn.commit()
    assert sorted((d.asset_id, d.uri) for d in deleted) == [
        (ids["half"], "/lib/half.jpg"),
        (ids["quarter"], "/lib/quarter.jpg"),
    ]
    assert rows_of(conn, copies) == dict.fromkeys(before, 0)
    assert rows_of(conn, [ids["original"]]) == kept_before
    assert conn.execute("SELECT count(*) FROM semsql.face_cluster_members").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM semsql.face_clusters").fetchone()[0] == 0
    # The person and the reference stay (it keeps its vector); the people link of the kept one.
    assert conn.execute("SELECT face_id FROM semsql.person_faces").fetchall() == [(None,)]
    # Job history: the items stay with their uri and outcome, the job waited only for the copies.
    items = conn.execute(
        "SELECT uri, outcome, asset_id FROM semsql.job_items ORDER BY position"
    ).fetchall()
    assert items == [
        ("/lib/original.jpg", "new", ids["original"]),
        ("/lib/half.jpg", "new", None),
        ("/lib/quarter.jpg", "new", None),
    ]
    assert conn.execute("SELECT status, new_count FROM semsql.jobs").fetchone()[0] == "completed"
    assert delete_assets(conn, []) == []


def test_only_a_writer_can_delete(db, login_as) -> None:
    ids = build_library(db)
    analyst = login_as("semsql_analyst")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="needs a writer role"):
        analyst.execute("SELECT * FROM semsql.delete_assets(%s)", [[ids["half"]]])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute("DELETE FROM semsql.assets WHERE id = %s", [ids["half"]])
    # The analyst reviews all the same.
    assert len(analyst.execute("SELECT * FROM semsql.duplicate_review(0.01)").fetchall()) == 3
    assert db.execute("SELECT count(*) FROM semsql.assets").fetchone()[0] == 3
    worker = login_as("semsql_worker")
    found = worker.execute("SELECT * FROM semsql.delete_assets(%s)", [[ids["half"]]]).fetchall()
    assert found == [(ids["half"], "/lib/half.jpg")]


# The command line -------------------------------------------------------------------------------


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_command_lists_groups_and_deletes_only_rows(
    conn, semsql_env, tmp_path
) -> None:  # fmt: skip
    ids = build_library(conn)
    conn.commit()
    listed = invoke("duplicates", "--by", "semantic", "--max-distance", "0.01")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()[1:]
    assert lines[0] == f"group {ids['original']}: 3 copies"
    assert lines[1].split()[:3] == ["keep", str(ids["original"]), "first"]
    assert "900x600" in lines[1] and lines[3].strip().startswith("largest: 900x600 px")
    assert "2 other cop(ies) to delete" in listed.stdout

    groups = json.loads(invoke("duplicates", "--by", "semantic", "--json").stdout)
    assert [[c["asset_id"] for c in g["copies"] if c["keep"]] for g in groups] == [
        [ids["original"]]
    ]

    dry = invoke("duplicates", "--by", "semantic", "--keep", "best", "--delete-others", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("would delete 2 asset row(s) (asset rows only: no file on disk")
    assert conn.execute("SELECT count(*) FROM semsql.assets").fetchone()[0] == 3
    conn.rollback()

    done = invoke("duplicates", "--by", "semantic", "--delete-others", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["dry_run"] is False and report["files_on_disk"] == "untouched"
    assert sorted(d["asset_id"] for d in report["deleted"]) == [ids["half"], ids["quarter"]]
    assert {d["kept_asset_id"] for d in report["deleted"]} == {ids["original"]}
    assert conn.execute("SELECT id FROM semsql.assets").fetchall() == [(ids["original"],)]
    assert invoke("duplicates", "--by", "semantic").stdout == "no duplicates\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--dry-run"], "--dry-run goes with --delete-others"),
        (["--by", "semantic", "--max-distance", "3"], "is not a cosine distance"),
        (["--max-distance", "nan"], "is not a number"),
        (["--max-distance", "-1"], "is not in the range"),
        (["--max-distance", "257"], "is not in the range"),
        (["--neighbours", "0"], "is not in the range"),
        (["--by", "pixels"], "'pixels' is not one of"),
        (["--keep", "newest"], "'newest' is not 'best'"),
    ],
)
def test_bad_options_are_usage_errors(semsql_env, arguments: list[str], message: str) -> None:
    result = invoke("duplicates", *arguments)
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_without_vectors_or_hashes_each_kind_says_what_is_missing(db, semsql_env) -> None:
    result = invoke("duplicates", "--by", "semantic")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no vectors in the image space yet (hint: by => 'content' needs no model)\n"
    )
    result = invoke("duplicates")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no content hashes yet (hint: run `semsql worker`: the content stage needs no "
        "model)\n"
    )


def test_the_page_shows_each_group_side_by_side_escaped(conn, semsql_env, tmp_path) -> None:
    photo = tmp_path / "<i>copy&.png"
    Image.new("RGB", (64, 48), "red").save(photo)
    conn.execute("UPDATE semsql.stages SET enabled = false")
    add_asset(conn, str(photo), [1.0, 0.0, 0.0], size=(64, 48), caption="x")
    add_asset(conn, "/gone/<script>alert(1)</script>.jpg", [1.0, 0.001, 0.0], size=(32, 24))
    register(conn)
    page = tmp_path / "dupes.html"
    result = invoke("duplicates", "--by", "semantic", "--html", str(page))
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;i&gt;copy&amp;.png" in text
    assert text.count('<figure class="keep">') == 1 and text.count('<figure class="other">') == 1
    assert text.count("data:image/jpeg;base64,") == 1  # the readable file; the other is missing
    assert 'class="missing"' in text


# Content duplicates of the sample images, with no model --------------------------------------

CONTENT_ONLY = {name: None for name in NAMES} | {"content": "phash256"}  # every model off


def originals() -> dict[str, Image.Image]:
    return {
        "astronaut": Image.fromarray(skimage.data.astronaut()),
        "chelsea": Image.fromarray(skimage.data.chelsea()),
        "coffee": Image.fromarray(skimage.data.coffee()),
        "rocket": Image.fromarray(skimage.data.rocket()),
    }


def others() -> dict[str, Image.Image]:
    """Different pictures: none may join a group."""
    return {
        "camera": Image.fromarray(skimage.data.camera()),
        "coins": Image.fromarray(skimage.data.coins()),
        "motorcycle": Image.fromarray(skimage.data.stereo_motorcycle()[0]),
        "hubble": Image.fromarray(skimage.data.hubble_deep_field()),
        "moon": Image.fromarray(skimage.data.moon()),
    }


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    data = io.BytesIO()
    image.convert("RGB").save(data, "JPEG", quality=quality)
    return Image.open(io.BytesIO(data.getvalue()))


def copies(image: Image.Image) -> dict[str, Image.Image]:
    w, h = image.size
    return {
        "half": image.resize((w // 2, h // 2)),
        "quarter": image.resize((w // 4, h // 4)),
        "jpeg q30": jpeg(image, 30),
        "cropped 10 %": image.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "quarter turn": image.rotate(-90, expand=True),
        "half turn": image.rotate(180),
        "mirrored": ImageOps.mirror(image),
    }


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each original as PNG with its copies as JPEG (quality 92, smaller files), and the other
    pictures."""
    folder = tmp_path_factory.mktemp("samples")
    for name, image in originals().items():
        image.save(folder / f"{name}.png")
        for kind, copy in copies(image).items():
            copy.convert("RGB").save(folder / f"{name} {kind}.jpg", quality=92)
    for name, image in others().items():
        image.save(folder / f"{name}.png")
    return folder


def ingest_and_hash(folder: Path, url: str) -> dict[str, int]:
    """Ingest the folder, run the content stage alone; asset id by file name."""
    result = invoke("ingest", str(folder), "--json")
    assert result.exit_code == 0, result.output
    Worker(url, WorkerOptions(until_idle=True, poll_interval=0.2), models=CONTENT_ONLY).run()
    with psycopg.connect(url) as conn:
        return {Path(uri).name: asset_id for uri, asset_id in conn.execute(
            "SELECT uri, id FROM semsql.assets")}  # fmt: skip


def expected_groups() -> list[set[str]]:
    return [
        {f"{name}.png"} | {f"{name} {kind}.jpg" for kind in copies(image)}
        for name, image in originals().items()
    ]


def test_content_duplicates_group_each_original_with_its_copies_and_nothing_else(
    db, semsql_env, sample_folder
) -> None:
    ids = ingest_and_hash(sample_folder, semsql_env)
    assert db.execute("SELECT count(*) FROM semsql.embeddings").fetchone() == (0,)  # no model
    names = {asset_id: name for name, asset_id in ids.items()}
    rows = db.execute(
        "SELECT group_id, asset_id, kind, distance FROM semsql.duplicates(by => 'content')"
    ).fetchall()
    found: dict[int, set[str]] = {}
    for group_id, asset_id, _, _ in rows:
        found.setdefault(group_id, set()).add(names[asset_id])
    assert sorted(map(sorted, found.values())) == sorted(map(sorted, expected_groups()))
    assert all(kind == "near" for group_id, asset_id, kind, _ in rows if group_id != asset_id)
    limit = db.execute("SELECT semsql.default_content_distance()").fetchone()[0]
    assert all(distance <= limit for *_, distance in rows)
    # The copy to keep is each original: the most pixels, then the most bytes (PNG).
    review = db.execute("SELECT asset_id FROM semsql.duplicate_review(by => 'content') WHERE keep")
    assert {names[asset_id] for (asset_id,) in review} == {f"{name}.png" for name in originals()}
    # The same grouping within a collection, none in another.
    assert db.execute(
        "SELECT count(*) FROM semsql.duplicates(by => 'content', collection => 'default')"
    ).fetchone() == (len(rows),)
    assert db.execute(
        "SELECT count(*) FROM semsql.duplicates(by => 'content', collection => 'other')"
    ).fetchone() == (0,)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="between 0 and 256, not 257"):
        db.execute("SELECT * FROM semsql.duplicates(257, by => 'content')")


def nearest(original: dict[str, str], copy: dict[str, str]) -> int:
    """As duplicates(by => 'content') links two assets: the whole view of one, turned the best
    way, against the nearest view of the other (either way round)."""
    return min(
        content_hash.distance(content_hash.variant(one["full"], turn), view)
        for one, other in ((original, copy), (copy, original))
        for turn in range(content_hash.VARIANTS)
        for view in other.values()
    )


def test_the_default_distance_lies_between_copies_and_other_pictures(conn) -> None:
    """The measurement behind semsql.default_content_distance() (run with -s to see it)."""
    default = conn.execute("SELECT semsql.default_content_distance()").fetchone()[0]
    hashes = {name: content_hash.content_hashes(image) for name, image in originals().items()}
    hashes |= {name: content_hash.content_hashes(image) for name, image in others().items()}
    worst: dict[str, int] = {}
    for name, image in originals().items():
        for kind, copy in copies(image).items():
            distance = nearest(hashes[name], content_hash.content_hashes(copy))
            worst[kind] = max(worst.get(kind, 0), distance)
    apart = min(nearest(hashes[a], hashes[b]) for a in hashes for b in hashes if a < b)
    print(f"\ncopies, farthest from their original (bits of 256): {worst}")
    print(f"different pictures, nearest pair: {apart} bits; default max_distance: {default}")
    assert max(worst.values()) < default < apart
    assert default - max(worst.values()) >= 15 and apart - default >= 40  # room both ways


def test_deleting_the_other_copies_keeps_files_and_leaves_no_rows(
    db, semsql_env, sample_folder
) -> None:
    ids = ingest_and_hash(sample_folder, semsql_env)
    files = folder_digest(sample_folder)
    every_id = sorted(ids.values())
    counts = rows_of(db, every_id)

    dry = invoke("duplicates", "--keep", "best", "--delete-others", "--dry-run")
    assert dry.exit_code == 0, dry.output
    copies_count = sum(len(group) - 1 for group in expected_groups())
    assert dry.stdout.splitlines()[0] == (
        f"would delete {copies_count} asset row(s) (asset rows only: no file on disk was touched):"
    )
    assert rows_of(db, every_id) == counts and folder_digest(sample_folder) == files

    page = sample_folder.parent / "dupes.html"
    done = invoke("duplicates", "--keep", "best", "--delete-others", "--html", str(page))
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"deleted {copies_count} asset row(s) (asset rows only")
    assert page.read_text().count("data:image/jpeg;base64,") == copies_count + len(originals())
    assert folder_digest(sample_folder) == files  # not a byte of any file changed
    kept = {f"{name}.png" for name in originals()} | {f"{name}.png" for name in others()}
    assert {Path(uri).name for (uri,) in db.execute("SELECT uri FROM semsql.assets")} == kept
    deleted = [asset_id for name, asset_id in ids.items() if name not in kept]
    assert set(rows_of(db, deleted).values()) == {0}
    assert rows_of(db, [ids[name] for name in kept]) == rows_of(db, [ids[name] for name in kept])
    assert db.execute(
        "SELECT count(DISTINCT (asset_id, view)) FROM semsql.content_hashes"
    ).fetchone() == (2 * len(kept),)
    assert invoke("duplicates").stdout == "no duplicates\n"


def turned_views(hashes: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The whole view turned the 8 ways, and both views, as rows of bits."""

    def bits(text: str) -> np.ndarray:
        return np.frombuffer(text.encode(), dtype=np.uint8) == ord("1")

    turns = [bits(content_hash.variant(hashes["full"], n)) for n in range(content_hash.VARIANTS)]
    return np.array(turns), np.array([bits(view) for view in hashes.values()])


def nearest_pairs(hashes: list[dict[str, str]]) -> np.ndarray:
    """nearest() between every two of these, vectorised: a matrix of bits."""
    turns, views = zip(*map(turned_views, hashes), strict=True)
    turned, stored = np.array(turns), np.array(views)  # (n, 8, 256), (n, 2, 256)
    one_way = (turned[:, None, :, None, :] != stored[None, :, None, :, :]).sum(-1).min((2, 3))
    return np.minimum(one_way, one_way.T)


@pytest.mark.slow
def test_the_default_distance_on_every_sample_image_and_the_lfw_faces(conn) -> None:
    """The wider measurement behind the default (run with -s to see it): every scikit-image
    sample, its copies, JPEG quality 10, and 200 aligned faces (lfw_subset), hard negatives."""
    default = conn.execute("SELECT semsql.default_content_distance()").fetchone()[0]
    folder = Path(skimage.data_dir)
    samples = {
        path.name: Image.open(path).convert("RGB")
        for path in sorted(folder.iterdir())
        if path.suffix in (".png", ".jpg") and not path.name.startswith("chessboard")
    }
    hashes = {name: content_hash.content_hashes(image) for name, image in samples.items()}
    worst: dict[str, tuple[int, str]] = {}
    for name, image in samples.items():
        edits = copies(image) | {"jpeg q10": jpeg(image, 10)}
        for kind, copy in edits.items():
            distance = nearest(hashes[name], content_hash.content_hashes(copy))
            worst[kind] = max(worst.get(kind, (0, "")), (distance, name))
    names = list(hashes)
    apart = nearest_pairs([hashes[name] for name in names])
    np.fill_diagonal(apart, 256)
    closest = np.unravel_index(apart.argmin(), apart.shape)
    faces = np.load(folder / "lfw_subset.npy")
    face_hashes = [
        content_hash.content_hashes(Image.fromarray((face * 255).astype(np.uint8)).resize((96, 96)))
        for face in faces
    ]
    face_apart = nearest_pairs(face_hashes)
    np.fill_diagonal(face_apart, 256)
    print(f"\n{len(samples)} samples; copies, farthest from their original: {worst}")
    print(f"different samples, nearest pair: {apart.min()} bits {[names[i] for i in closest]}")
    print(f"{len(faces)} lfw faces, nearest pair: {face_apart.min()} bits; default: {default}")
    ordinary = {kind: value for kind, value in worst.items() if kind != "jpeg q10"}
    assert max(value for value, _ in ordinary.values()) < default < apart.min()
    assert face_apart.min() > default


def test_flat_images_of_different_colours_are_no_duplicates(db, semsql_env, tmp_path) -> None:
    """A flat image has no structure for the hash to describe: every colour used to hash to the
    same signs of rounding error (black alone to all 0), so a white page, a grey card and a red
    one were one group at distance 0, and --delete-others deleted all but one."""
    flat = {
        "white.png": ((255, 255, 255), (300, 200)),
        "grey.png": ((128, 128, 128), (64, 64)),
        "red.png": ((255, 0, 0), (1, 5000)),
        "black.png": ((0, 0, 0), (1, 1)),
    }
    for name, (colour, size) in flat.items():
        hashed = content_hash.content_hashes(Image.new("RGB", size, colour))
        assert hashed == {"full": content_hash.BLANK, "centre": content_hash.BLANK}, name
        Image.new("RGB", size, colour).save(tmp_path / name)
    ids = ingest_and_hash(tmp_path, semsql_env)
    assert db.execute("SELECT count(*) FROM semsql.content_hashes").fetchone() == (2 * len(ids),)
    assert db.execute("SELECT count(*) FROM semsql.content_hashes WHERE turn = 0").fetchone() == (
        2 * len(ids),
    )
    assert db.execute("SELECT * FROM semsql.duplicates(by => 'content')").fetchall() == []


def test_content_duplicates_take_the_largest_neighbours_allowed(conn) -> None:
    """neighbours 999 and 1000 asked HNSW for 1001 and 1002 rows, past its 1000."""
    conn.execute("UPDATE semsql.stages SET enabled = false")
    first = add_asset(conn, "/a.jpg", [1.0, 0.0, 0.0])
    second = add_asset(conn, "/b.jpg", [0.0, 1.0, 0.0])
    conn.execute(
        "INSERT INTO semsql.content_hashes (asset_id, view, turn, hash, model) "
        "SELECT a.id, v.view, 0, repeat('01', 128)::bit(256), 'phash256' "
        "FROM semsql.assets a CROSS JOIN (VALUES ('full'), ('centre')) AS v (view)"
    )
    for neighbours in (999, 1000):
        found = conn.execute(
            "SELECT group_id, asset_id FROM semsql.duplicates(by => 'content', neighbours => %s)",
            [neighbours],
        ).fetchall()
        assert found == [(first, first), (first, second)]


def test_a_page_that_cannot_be_written_deletes_nothing(db, semsql_env, tmp_path) -> None:
    """The rows were deleted first, then the page failed: exit 1 with an error and no word that
    anything had been deleted."""
    add_asset(db, "/a.jpg", [1.0, 0.0, 0.0])
    add_asset(db, "/b.jpg", [1.0, 0.001, 0.0])
    register(db)
    page = tmp_path / "missing folder" / "dupes.html"
    result = invoke("duplicates", "--by", "semantic", "--delete-others", "--html", str(page))
    assert result.exit_code == 1, result.output
    assert "error: " in result.output
    assert db.execute("SELECT count(*) FROM semsql.assets").fetchone() == (2,)
