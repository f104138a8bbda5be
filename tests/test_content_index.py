"""The content index: perceptual hashes that need no model, their rotated and mirrored
variants and canonical orientation, and the worker's content stage."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import psycopg
import pytest
import skimage.data
from click.testing import CliRunner
from PIL import Image, ImageOps

from semsql import content_hash
from semsql.cli.main import cli
from semsql.decode import load_image
from semsql.embedder.models import ModelLoadError, load_stage
from semsql.embedder.models.inventory import locate
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.stages import NAMES

NEAR = 64
"""Bits (of 256) within which every copy below lies of its original, on these samples."""

TURNS = {
    "mirrored": (ImageOps.mirror, 1),
    "flipped": (ImageOps.flip, 2),
    "half turn": (lambda image: image.rotate(180), 3),
    "transposed": (lambda image: image.transpose(Image.Transpose.TRANSPOSE), 4),
    "quarter turn clockwise": (lambda image: image.rotate(-90, expand=True), 5),
    "quarter turn anticlockwise": (lambda image: image.rotate(90, expand=True), 6),
    "transversed": (lambda image: image.transpose(Image.Transpose.TRANSVERSE), 7),
}


def samples() -> dict[str, Image.Image]:
    return {
        "astronaut": Image.fromarray(skimage.data.astronaut()),
        "chelsea": Image.fromarray(skimage.data.chelsea()),
        "coffee": Image.fromarray(skimage.data.coffee()),
        "rocket": Image.fromarray(skimage.data.rocket()),
    }


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    data = io.BytesIO()
    image.save(data, "JPEG", quality=quality)
    return Image.open(io.BytesIO(data.getvalue()))


def copies(image: Image.Image) -> dict[str, Image.Image]:
    w, h = image.size
    return {
        "half size": image.resize((w // 2, h // 2)),
        "quarter size": image.resize((w // 4, h // 4)),
        "jpeg q30": jpeg(image, 30),
        "cropped 10 %": image.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "quarter turn": image.rotate(-90, expand=True),
        "half turn": image.rotate(180),
        "mirrored": ImageOps.mirror(image),
    }


def nearest(original: dict[str, str], copy: dict[str, str]) -> int:
    """What semsql.content_neighbours computes: the least distance of any view of the copy,
    turned any way, to any view of the original."""
    return min(
        content_hash.distance(content_hash.variant(bits, number), stored)
        for bits in copy.values()
        for number in range(content_hash.VARIANTS)
        for stored in original.values()
    )


@pytest.mark.parametrize("turn", TURNS)
def test_a_turned_image_hashes_to_the_turned_hash(turn: str) -> None:
    transform, number = TURNS[turn]
    image = samples()["astronaut"]
    hashed = content_hash.content_hashes(transform(image))
    for view, bits in content_hash.content_hashes(image).items():
        assert content_hash.variant(bits, number) == hashed[view], view


def test_copies_are_near_and_other_pictures_are_far() -> None:
    hashes = {name: content_hash.content_hashes(image) for name, image in samples().items()}
    for name, image in samples().items():
        for kind, copy in copies(image).items():
            assert nearest(hashes[name], content_hash.content_hashes(copy)) <= NEAR, (name, kind)
    for a in hashes:
        for b in hashes:
            if a < b:
                assert nearest(hashes[a], hashes[b]) > 1.4 * NEAR, (a, b)


def test_the_hash_keeps_bit_zero_clear_and_says_64_bits() -> None:
    for image in samples().values():
        for bits in content_hash.content_hashes(image).values():
            assert len(bits) == content_hash.BITS and set(bits) <= {"0", "1"}
            assert bits[0] == "0"


@pytest.mark.parametrize("turn", TURNS)
def test_a_turned_image_is_indexed_as_its_original(turn: str) -> None:
    """Each view is stored in its canonical orientation: the same hash, whichever way up (to a
    bit: Pillow shrinks rows before columns, so a turned image's pixels differ by rounding)."""
    transform, _ = TURNS[turn]
    for name, image in samples().items():
        original = content_hash.index_rows(image)
        turned = content_hash.index_rows(transform(image))
        for view in content_hash.VIEWS:
            nearest_pair = min(
                content_hash.distance(a.hash, b.hash)
                for a in original
                for b in turned
                if a.view == b.view == view and not b.alternate
            )
            assert nearest_pair <= 1, (name, view)


def test_an_index_row_is_its_upright_hash_turned_and_a_flat_image_one_blank_row() -> None:
    for image in samples().values():
        upright = content_hash.content_hashes(image)
        rows = content_hash.index_rows(image)
        for view in content_hash.VIEWS:  # the first of each view's rows is not an alternate
            assert next(row.alternate for row in rows if row.view == view) is False
        assert sum(not row.alternate for row in rows) == len(content_hash.VIEWS)
        for row in rows:
            assert row.hash == content_hash.variant(upright[row.view], row.turn)
        assert content_hash.query_hashes(image) == [row.hash for row in rows if not row.alternate]
    flat = content_hash.index_rows(Image.new("RGB", (300, 200), "red"))
    assert flat == [
        ("full", 0, content_hash.BLANK, False),
        ("centre", 0, content_hash.BLANK, False),
    ]


def test_a_close_call_of_orientation_is_stored_each_way() -> None:
    """A picture as wide as it is tall in detail (a square grid) has no clear transposition:
    both are stored, so that a copy tipped either way still matches."""
    grid = Image.new("L", (256, 256), 0)
    for x in range(0, 256, 64):
        grid.paste(255, (x, 0, x + 32, 256))
        grid.paste(255, (0, x, 256, x + 32))
    turns = {row.turn for row in content_hash.index_rows(grid) if row.view == "full"}
    assert any(turn & 4 for turn in turns) and any(not turn & 4 for turn in turns), turns


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("k => 0", "k must be between 1 and 1000"),
        ("k => NULL", "k must be between 1 and 1000"),
        ("p_max_distance => 257", "max_distance must be between 0 and 256"),
    ],
)
def test_content_neighbours_refuses_bad_arguments(
    conn: psycopg.Connection, arguments: str, message: str
) -> None:
    arguments = arguments.replace("k =>", "p_k =>")
    zeros = "ARRAY[repeat('0', 256)::bit(256)]"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT * FROM semsql.content_neighbours({zeros}, {arguments})")


def test_the_hash_is_builtin_and_any_other_name_is_refused() -> None:
    assert locate("content", "phash256").kind == "builtin"
    assert locate("content", "phash256").present
    rocket = samples()["rocket"]
    assert load_stage("content", "phash256", "cpu").run([rocket]) == [
        content_hash.index_rows(rocket)
    ]
    with pytest.raises(ModelLoadError, match="the only content hash is phash256"):
        load_stage("content", "openai/clip-vit-base-patch32", "cpu")


def write_library(folder: Path) -> dict[str, Path]:
    """The samples (four different pictures) and each one's copies (see `copies`), as files."""
    paths: dict[str, Path] = {}
    for name, image in samples().items():
        paths[name] = folder / f"{name}.png"
        image.save(paths[name])
        for kind, copy in copies(image).items():
            path = folder / f"{name} {kind}.jpg"
            copy.convert("RGB").save(path, quality=92)
            paths[f"{name} {kind}"] = path
    return paths


@pytest.fixture
def library(tmp_path: Path) -> dict[str, Path]:
    return write_library(tmp_path)


def test_the_worker_hashes_every_image_with_no_model_and_finds_the_copies(
    semsql_env: str, db: psycopg.Connection, library: dict[str, Path]
) -> None:
    result = CliRunner().invoke(cli, ["ingest", *map(str, library.values()), "--json"])
    assert result.exit_code == 0, result.output
    models = {name: None for name in NAMES} | {"content": "phash256"}  # every model off
    Worker(semsql_env, WorkerOptions(until_idle=True, poll_interval=0.2), models=models).run()

    assert db.execute(
        "SELECT count(DISTINCT asset_id), count(DISTINCT (asset_id, view)), min(model), "
        "max(model) FROM semsql.content_hashes"
    ).fetchone() == (len(library), 2 * len(library), "phash256", "phash256")
    ids = {
        Path(uri).stem.removesuffix(".png"): asset_id
        for uri, asset_id in db.execute("SELECT uri, id FROM semsql.assets")
    }
    for name in samples():
        found = db.execute(
            """SELECT n.asset_id, n.distance
               FROM semsql.content_neighbours(
                   ARRAY(SELECT hash FROM semsql.content_hashes WHERE asset_id = %s), 20) AS n""",
            [ids[name]],
        ).fetchall()
        own = {ids[name]} | {ids[f"{name} {kind}"] for kind in copies(samples()[name])}
        # itself and its copies come first, each within NEAR bits, before any other picture
        assert {asset_id for asset_id, _ in found[: len(own)]} == own, name
        assert all(distance <= NEAR for _, distance in found[: len(own)])
        assert all(distance > NEAR for _, distance in found[len(own) :])


def test_a_stage_new_to_a_database_is_queued_for_its_stored_assets(
    semsql_env: str, db: psycopg.Connection, library: dict[str, Path]
) -> None:
    """As an upgrade to the release that added the content stage does."""
    result = CliRunner().invoke(cli, ["ingest", str(library["rocket"]), "--json"])
    assert result.exit_code == 0, result.output
    db.execute("UPDATE semsql.tasks SET status = 'done'")
    db.execute("SELECT semsql.refresh_asset_status(array(SELECT id FROM semsql.assets))")
    db.execute("DELETE FROM semsql.tasks WHERE stage = 'content'")
    db.execute("DELETE FROM semsql.stages WHERE name = 'content'")
    db.commit()
    assert CliRunner().invoke(cli, ["init"]).exit_code == 0
    assert db.execute(
        "SELECT t.status, a.status FROM semsql.tasks t JOIN semsql.assets a ON a.id = t.asset_id "
        "WHERE t.stage = 'content'"
    ).fetchall() == [("pending", "pending")]
    db.commit()
    models = {name: None for name in NAMES} | {"content": "phash256"}
    Worker(semsql_env, WorkerOptions(until_idle=True, poll_interval=0.2), models=models).run()
    assert db.execute(
        "SELECT t.status, a.status, (SELECT count(DISTINCT view) FROM semsql.content_hashes) "
        "FROM semsql.tasks t JOIN semsql.assets a ON a.id = t.asset_id WHERE t.stage = 'content'"
    ).fetchall() == [("done", "ready", 2)]


def test_a_changed_file_loses_its_old_hashes_at_re_ingest(
    semsql_env: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Until the worker hashes the new pixels (or for ever, with the content stage off), the
    old hashes would link the asset as a copy of the picture it no longer is."""
    path = tmp_path / "picture.png"
    samples()["rocket"].save(path)
    assert CliRunner().invoke(cli, ["ingest", str(path)]).exit_code == 0
    models = {name: None for name in NAMES} | {"content": "phash256"}
    Worker(semsql_env, WorkerOptions(until_idle=True, poll_interval=0.2), models=models).run()
    assert db.execute("SELECT count(DISTINCT view) FROM semsql.content_hashes").fetchone() == (2,)
    db.commit()
    samples()["coffee"].save(path)
    assert CliRunner().invoke(cli, ["ingest", str(path)]).exit_code == 0
    assert db.execute("SELECT count(*) FROM semsql.content_hashes").fetchone() == (0,)
    Worker(semsql_env, WorkerOptions(until_idle=True, poll_interval=0.2), models=models).run()
    stored = dict(db.execute("SELECT view || turn, hash::text FROM semsql.content_hashes"))
    assert nearest(content_hash.content_hashes(samples()["coffee"]), stored) <= NEAR


def odd_encodings(image: Image.Image) -> dict[str, bytes]:
    """The picture as files the content stage must see as the same picture."""
    files: dict[str, bytes] = {}

    def save(name: str, picture: Image.Image, fmt: str, **options: object) -> None:
        out = io.BytesIO()
        picture.save(out, fmt, **options)
        files[name] = out.getvalue()

    grey = image.convert("L")
    save("16-bit", Image.fromarray(np.asarray(grey).astype(np.uint16) * 257), "PNG")
    save("cmyk", image.convert("CMYK"), "JPEG", quality=92)
    transparent = image.convert("RGBA")
    transparent.putalpha(128)
    save("transparent", transparent, "PNG")
    save("gif", image.convert("P"), "GIF", save_all=True, append_images=[grey.convert("P")])
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise: the pixels lie a quarter anticlockwise
    save("exif-rotated", image.rotate(90, expand=True), "JPEG", quality=92, exif=exif)
    return files


def test_odd_encodings_of_a_picture_hash_as_that_picture(tmp_path: Path) -> None:
    original = samples()["astronaut"]
    path = tmp_path / "original.png"
    original.save(path)
    upright = content_hash.content_hashes(
        load_image(path.as_uri(), content_hash.DECODE_SIDE, mode=content_hash.DECODE_MODE).image
    )
    other = content_hash.content_hashes(samples()["coffee"])
    for name, data in odd_encodings(original).items():
        (tmp_path / name).write_bytes(data)
        decoded = load_image(
            (tmp_path / name).as_uri(), content_hash.DECODE_SIDE, mode=content_hash.DECODE_MODE
        ).image
        hashed = content_hash.content_hashes(decoded)
        # unturned: the EXIF orientation is applied before hashing
        assert content_hash.distance(hashed["full"], upright["full"]) <= NEAR, name
        assert content_hash.distance(hashed["full"], other["full"]) > NEAR, name


def content_index_valid(db: psycopg.Connection) -> tuple[bool] | None:
    """(whether the content index is valid,), or None where there is none."""
    return db.execute(
        "SELECT i.indisvalid FROM pg_index i "
        "WHERE i.indexrelid = to_regclass('semsql.content_hashes_hash_hnsw')"
    ).fetchone()


def test_a_large_backlog_is_hashed_with_the_index_built_after_it(
    semsql_env: str, db: psycopg.Connection, library: dict[str, Path]
) -> None:
    result = CliRunner().invoke(cli, ["ingest", *map(str, library.values())])
    assert result.exit_code == 0, result.output
    db.commit()
    models = {name: None for name in NAMES} | {"content": "phash256"}
    options = WorkerOptions(until_idle=True, poll_interval=0.2, bulk_index_at=len(library))
    worker = Worker(semsql_env, options, models=models)
    worker.run()
    assert worker.indexes.rebuilt == ["content"]
    assert content_index_valid(db) == (True,)
    assert db.execute("SELECT semsql.content_index_build_steps()").fetchone() == ([],)
    rocket = db.execute("SELECT id FROM semsql.assets WHERE uri LIKE '%%/rocket.png'").fetchone()
    found = db.execute("SELECT asset_id FROM semsql.similar(%s, 7, by => 'content')", rocket)
    assert len(found.fetchall()) == len(copies(samples()["rocket"]))


def test_a_small_backlog_keeps_the_index_and_a_missing_one_is_built(
    semsql_env: str, db: psycopg.Connection, library: dict[str, Path]
) -> None:
    result = CliRunner().invoke(cli, ["ingest", str(library["rocket"])])
    assert result.exit_code == 0, result.output
    assert db.execute("SELECT semsql.defer_content_index(2)").fetchone() == (False,)
    assert db.execute("SELECT semsql.defer_content_index(1)").fetchone() == (True,)
    assert content_index_valid(db) is None
    db.commit()
    models = {name: None for name in NAMES} | {"content": "phash256"}
    worker = Worker(semsql_env, WorkerOptions(until_idle=True, poll_interval=0.2), models=models)
    worker.run()
    assert worker.indexes.rebuilt == ["content"]
    assert content_index_valid(db) == (True,)
