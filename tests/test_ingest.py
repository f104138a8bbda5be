"""`semsql ingest` end to end: real files, a real database, the CLI as a user runs it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import skimage
from click.testing import CliRunner
from corpus import (
    make_bomb,
    make_corrupt,
    make_jpeg,
    make_text,
    make_truncated,
    make_xmp_packet,
    make_zero_byte,
)
from PIL import Image

from semsql.cli.main import cli
from semsql.sources import IMAGE_EXTENSIONS

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
MPL_SAMPLES = Path(matplotlib.get_data_path()) / "sample_data"


def ingest(*args: str) -> dict:
    """The job summary; the exit status (1 when a file failed) is the CLI's to test."""
    result = CliRunner().invoke(cli, ["ingest", *args, "--json"], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def sample_images(*folders: Path) -> tuple[dict[str, Path], set[str]]:
    """An independent look at the folders: the decodable images by content hash, and the
    names of image files that Pillow itself cannot decode."""
    decodable, undecodable = {}, set()
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                with Image.open(path) as im:
                    im.load()
            except Exception:
                undecodable.add(path.name)
                continue
            decodable.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return decodable, undecodable


def errors_by_name(summary: dict) -> dict[str, str]:
    return {Path(e["uri"]).name: e["code"] for e in summary["errors"]}


def test_sample_images_and_two_bad_files(semsql_env, conn, no_stages, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    make_corrupt(bad / "corrupt.jpg")
    make_zero_byte(bad / "empty.png")
    images, undecodable = sample_images(SKIMAGE_DATA, MPL_SAMPLES)
    assert len(images) >= 30 and undecodable == {"multipage_rgb.tif"}  # a TIFF Pillow can't read

    first = ingest(str(SKIMAGE_DATA), str(MPL_SAMPLES), str(bad))

    assert first["status"] == "completed"
    assert first["new"] == len(images)
    assert errors_by_name(first) == {
        "corrupt.jpg": "corrupt",
        "empty.png": "empty",
    }  # the TIFF Pillow cannot read is skipped: a format semsql cannot decode, not a broken file
    assert first["skipped_reasons"]["unsupported TIFF variant"] == 1
    stored = dict(conn.execute("SELECT sha256, uri FROM semsql.assets").fetchall())
    assert set(stored) == set(images)
    job = conn.execute(
        "SELECT status, new_count, failed_count, finished_at IS NOT NULL FROM semsql.jobs"
    ).fetchone()
    assert job == ("completed", len(images), 2, True)

    again = ingest(str(SKIMAGE_DATA), str(MPL_SAMPLES), str(bad))
    assert (again["new"], again["updated"], again["failed"]) == (0, 0, 2)
    assert again["skipped"] == first["new"] + first["skipped"]
    assert conn.execute("SELECT count(*) FROM semsql.assets").fetchone()[0] == len(images)


def test_astronaut_dimensions_and_mime(semsql_env, conn, no_stages) -> None:
    ingest(str(SKIMAGE_DATA / "astronaut.png"))
    row = conn.execute(
        "SELECT uri, mime, width, height, bytes, status FROM semsql.assets"
    ).fetchone()
    assert row == (
        str(SKIMAGE_DATA / "astronaut.png"),
        "image/png",
        512,
        512,
        (SKIMAGE_DATA / "astronaut.png").stat().st_size,
        "ready",
    )


def test_bad_files_each_get_a_specific_error(semsql_env, conn, no_stages, tmp_path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    make_jpeg(root / "good.jpg")
    make_truncated(root / "truncated.jpg")
    make_corrupt(root / "corrupt.jpg")
    make_zero_byte(root / "empty.jpg")
    make_text(root / "notes.jpg")
    make_bomb(root / "bomb.png")
    make_jpeg(root / "big.jpg", size=(1600, 1200), seed=3)
    (root / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    make_jpeg(outside / "secret.jpg", seed=4)
    (root / "escape.jpg").symlink_to(outside / "secret.jpg")
    (root / "escape-dir").symlink_to(outside)
    make_jpeg(root / "café 🐱.jpg", seed=5)
    non_utf8 = os.fsdecode(bytes(root) + b"/caf\xe9.jpg")
    make_jpeg(Path(non_utf8), seed=6)
    (root / "readme.txt").write_text("not picked: no image extension")

    limit = (root / "big.jpg").stat().st_size - 1
    summary = ingest(str(root), "--max-file-size", str(limit))

    assert errors_by_name(summary) == {
        "truncated.jpg": "truncated",
        "corrupt.jpg": "corrupt",
        "empty.jpg": "empty",
        "notes.jpg": "not_an_image",
        "bomb.png": "decompression_bomb",
        "big.jpg": "too_large",
        "broken.jpg": "broken_link",
        "escape.jpg": "outside_root",
        "escape-dir": "outside_root",
    }
    uris = {row[0] for row in conn.execute("SELECT uri FROM semsql.assets")}
    assert uris == {
        str(root / "good.jpg"),
        str(root / "café 🐱.jpg"),
        "file://" + str(root).replace(" ", "%20") + "/caf%E9.jpg",
    }
    assert summary["new"] == 3
    job_errors = conn.execute(
        "SELECT count(*) FROM semsql.job_items WHERE outcome = 'failed' AND error <> ''"
    ).fetchone()[0]
    assert job_errors == 9


def test_a_file_that_turns_bad_keeps_its_asset(semsql_env, conn, no_stages, tmp_path) -> None:
    photo = make_jpeg(tmp_path / "a.jpg", xmp=make_xmp_packet(description="a red kite"))
    ingest(str(photo))
    before = conn.execute("SELECT id, sha256, width FROM semsql.assets").fetchone()

    make_truncated(photo)
    summary = ingest(str(photo))

    assert errors_by_name(summary) == {"a.jpg": "truncated"}
    after = conn.execute("SELECT id, sha256, width, error FROM semsql.assets").fetchone()
    assert after[:3] == before
    assert after[3].startswith("truncated: ")
    assert conn.execute("SELECT text FROM semsql.captions").fetchone()[0] == "a red kite"


def test_changed_file_updates_its_asset_and_requeues(semsql_env, conn, tmp_path) -> None:
    photo = make_jpeg(tmp_path / "a.jpg", seed=1, xmp=make_xmp_packet(keywords=["kite"]))
    ingest(str(photo))
    asset_id = conn.execute("SELECT id FROM semsql.assets").fetchone()[0]
    conn.execute("UPDATE semsql.tasks SET status = 'done'")
    conn.execute(
        "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'blip', 'old pixels')",
        [asset_id],
    )
    conn.commit()

    make_jpeg(photo, seed=2, size=(320, 240))
    summary = ingest(str(photo))

    assert (summary["updated"], summary["new"]) == (1, 0)
    row = conn.execute("SELECT id, width, status FROM semsql.assets").fetchone()
    assert row == (asset_id, 320, "pending")
    statuses = conn.execute("SELECT DISTINCT status FROM semsql.tasks").fetchall()
    assert statuses == [("pending",)]
    assert conn.execute("SELECT source FROM semsql.captions").fetchall() == []
    assert conn.execute("SELECT label, source FROM semsql.tags").fetchall() == [("kite", "user")]


def test_same_content_at_two_paths_is_one_asset(semsql_env, conn, no_stages, tmp_path) -> None:
    make_jpeg(tmp_path / "a.jpg", seed=7)
    shutil.copy(tmp_path / "a.jpg", tmp_path / "b.jpg")
    summary = ingest(str(tmp_path))
    assert (summary["new"], summary["skipped"]) == (1, 1)
    detail = conn.execute(
        "SELECT error FROM semsql.job_items WHERE outcome = 'skipped'"
    ).fetchone()[0]
    assert detail.startswith("same content as asset ") and detail.endswith("a.jpg)")


def test_file_metadata_becomes_caption_tags_people(semsql_env, conn, no_stages, tmp_path):
    xmp = make_xmp_packet(
        description="Zoë and Grace at the harbour",
        keywords=["harbour", "boats"],
        persons=["Zoë Ångström", "Grace Hopper"],
    )
    exif = {
        "DateTimeOriginal": "2019:07:14 18:30:00",
        "OffsetTimeOriginal": "+02:00",
        "Make": "Canon",
        "Model": "EOS R",
    }
    make_jpeg(tmp_path / "harbour.jpg", xmp=xmp, exif=exif)
    ingest(str(tmp_path / "harbour.jpg"))

    assert conn.execute("SELECT text, source FROM semsql.captions").fetchall() == [
        ("Zoë and Grace at the harbour", "user")
    ]
    tags = conn.execute("SELECT label FROM semsql.tags WHERE source = 'user' ORDER BY label")
    assert [t for (t,) in tags] == ["boats", "harbour"]
    people = conn.execute(
        """SELECT p.name FROM semsql.asset_people ap JOIN semsql.people p ON p.id = ap.person_id
           ORDER BY 1"""
    )
    assert [p for (p,) in people] == ["Grace Hopper", "Zoë Ångström"]
    taken_at, make = conn.execute(
        "SELECT taken_at, metadata->'camera'->>'make' FROM semsql.assets"
    ).fetchone()
    assert taken_at.isoformat() == "2019-07-14T16:30:00+00:00"
    assert make == "Canon"


def test_manifest_imports_a_catalog(semsql_env, conn, no_stages, tmp_path: Path) -> None:
    (tmp_path / "2019").mkdir()
    make_jpeg(tmp_path / "2019" / "beach.jpg", seed=1)
    make_jpeg(tmp_path / "2019" / "dog.jpg", seed=2)
    outside = make_jpeg(tmp_path.parent / f"{tmp_path.name}-outside.jpg", seed=3)
    rows = [
        {
            "uri": "2019/beach.jpg",
            "caption": "Ana and Joe at the beach",
            "tags": ["beach", "summer"],
            "people": ["Ana Lima", "Joe Park"],
            "metadata": {"rights": "CC-BY"},
        },
        {"uri": "2019/dog.jpg", "caption": "a dog; asleep", "tags": "dog; sofa"},
        {"uri": str(outside), "caption": "should not be read"},
        {"caption": "no uri"},
    ]
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    summary = ingest("--manifest", str(manifest))

    assert (summary["new"], summary["failed"]) == (2, 2)
    codes = sorted(e["code"] for e in summary["errors"])
    assert codes == ["manifest", "outside_root"]
    captions = dict(
        conn.execute(
            "SELECT a.uri, c.text FROM semsql.captions c JOIN semsql.assets a ON a.id = c.asset_id"
        ).fetchall()
    )
    assert captions == {
        str(tmp_path / "2019" / "beach.jpg"): "Ana and Joe at the beach",
        str(tmp_path / "2019" / "dog.jpg"): "a dog; asleep",
    }
    labels = {label for (label,) in conn.execute("SELECT label FROM semsql.tags")}
    assert labels == {"beach", "summer", "dog", "sofa"}
    assert (
        conn.execute(
            "SELECT metadata->'catalog'->>'rights' FROM semsql.assets WHERE uri LIKE '%beach.jpg'"
        ).fetchone()[0]
        == "CC-BY"
    )

    assert ingest("--manifest", str(manifest))["skipped"] == 2


def test_urls(semsql_env, conn, no_stages, tmp_path: Path) -> None:
    make_jpeg(tmp_path / "cat.jpg", seed=9)
    command = [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            port = int(server.stdout.readline().split(" port ")[1].split()[0])
            base = f"http://127.0.0.1:{port}"
            summary = ingest(f"{base}/cat.jpg", f"{base}/missing.jpg")
        finally:
            server.terminate()
    assert summary["new"] == 1
    assert summary["errors"] == [
        {
            "uri": f"{base}/missing.jpg",
            "code": "unreadable",
            "error": f"HTTP 404 File not found from {base}/missing.jpg",
        }
    ]
    assert conn.execute("SELECT uri, width FROM semsql.assets").fetchone() == (
        f"{base}/cat.jpg",
        640,
    )


def test_an_unreadable_folder_is_reported(semsql_env, conn, no_stages, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "locked").mkdir(parents=True)
    make_jpeg(root / "open.jpg")
    make_jpeg(root / "locked" / "hidden.jpg", seed=2)
    (root / "locked").chmod(0)
    command = [sys.executable, "-m", "semsql.cli", "ingest", str(root), "-r", "--json"]
    if os.geteuid() == 0:  # root reads everything, unless it gives up the capability to
        no_override = "-dac_override,-dac_read_search"
        command = [
            "setpriv",
            f"--bounding-set={no_override}",
            f"--inh-caps={no_override}",
            *command,
        ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr
    summary = json.loads(result.stdout)
    (root / "locked").chmod(0o755)
    assert summary["new"] == 1
    assert errors_by_name(summary) == {"locked": "unreadable"}


def test_hostile_collection_names_are_data(semsql_env, conn, no_stages, tmp_path) -> None:
    hostile = "x'); DROP TABLE semsql.assets; --"
    make_jpeg(tmp_path / "a.jpg")
    ingest(str(tmp_path / "a.jpg"), "--collection", hostile)
    assert conn.execute("SELECT collection FROM semsql.assets").fetchone()[0] == hostile


def test_job_waits_for_enrichment(semsql_env, conn, tmp_path: Path) -> None:
    make_jpeg(tmp_path / "a.jpg")
    summary = ingest(str(tmp_path / "a.jpg"))
    assert summary["status"] == "running"  # seven stages queued, no worker yet

    conn.execute("UPDATE semsql.tasks SET status = 'done'")
    completed = conn.execute("SELECT semsql.complete_jobs()").fetchall()
    conn.commit()
    assert completed == [(summary["job_id"],)]

    result = CliRunner().invoke(cli, ["jobs", str(summary["job_id"]), "--json"])
    assert json.loads(result.stdout)["status"] == "completed"


def test_jobs_lists_and_shows(semsql_env, no_stages, tmp_path: Path) -> None:
    make_zero_byte(tmp_path / "empty.jpg")
    job_id = ingest(str(tmp_path))["job_id"]
    listing = CliRunner().invoke(cli, ["jobs"]).stdout
    assert f"job {job_id} completed" in listing and "1 failed" in listing
    shown = CliRunner().invoke(cli, ["jobs", str(job_id)]).stdout
    assert "empty.jpg: empty:" in shown
    missing = CliRunner().invoke(cli, ["jobs", "999999"])
    assert missing.exit_code == 1 and "no job 999999" in missing.output
