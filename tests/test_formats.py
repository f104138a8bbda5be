"""The formats a DAM holds: HEIC (with and without the heif extra), XMP sidecars, Lightroom's
hierarchical keywords, titles, and the job's skipped files counted by reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from corpus import gps_tags, make_jpeg, make_png, make_xmp_packet
from dam_corpus import lightroom_xmp, make_heic

from semsql import heif
from semsql.cli.main import cli
from semsql.decode import load_image
from semsql.probe import probe_file
from semsql.xmp import MAX_XMP_BYTES


def ingest(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["ingest", *args, "--json"], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def asset(conn: psycopg.Connection, name: str) -> dict:
    """What semsql knows of the asset whose file is called `name`."""
    row = conn.execute(
        """SELECT a.mime, a.width, a.height, a.taken_at, a.metadata,
                  (SELECT c.text FROM semsql.captions c
                   WHERE c.asset_id = a.id AND c.source = 'user'),
                  ARRAY(SELECT t.label FROM semsql.tags t WHERE t.asset_id = a.id ORDER BY 1),
                  ARRAY(SELECT p.name FROM semsql.asset_people ap
                        JOIN semsql.people p ON p.id = ap.person_id
                        WHERE ap.asset_id = a.id ORDER BY 1)
           FROM semsql.assets a WHERE a.uri LIKE %s""",
        [f"%/{name}"],
    ).fetchone()
    conn.commit()
    assert row is not None, f"no asset {name}"
    keys = ("mime", "width", "height", "taken_at", "metadata", "caption", "tags", "people")
    return dict(zip(keys, row, strict=True))


# --- HEIC -----------------------------------------------------------------------------------

IPHONE_EXIF = {
    "Make": "Apple",
    "Model": "iPhone 15 Pro",
    "Orientation": 6,  # held upright: stored sideways, turned by the file's irot
    "DateTimeOriginal": "2024:03:09 14:05:06",
    "OffsetTimeOriginal": "+01:00",
    **gps_tags(41.3874, 2.1686),
}


def test_heic_probes_upright_with_its_exif_and_xmp(tmp_path: Path) -> None:
    xmp = make_xmp_packet(description="La Rambla", keywords=["street"])
    path = make_heic(tmp_path / "IMG_0001.HEIC", (96, 64), exif=IPHONE_EXIF, xmp=xmp)

    probe = probe_file(path)

    assert (probe.mime, probe.width, probe.height) == ("image/heic", 64, 96)
    assert probe.taken_at == datetime(2024, 3, 9, 13, 5, 6, tzinfo=UTC)
    assert probe.metadata["camera"] == {"make": "Apple", "model": "iPhone 15 Pro"}
    assert probe.metadata["gps"] == pytest.approx({"lat": 41.3874, "lon": 2.1686}, abs=1e-4)
    assert probe.metadata["orientation"] == 1  # the pixels are upright already
    assert (probe.description, probe.keywords) == ("La Rambla", ("street",))
    # The worker reads it too, upright, with boxes in the upright original's pixels.
    decoded = load_image(str(path), 512)
    assert (decoded.image.size, decoded.scale) == ((64, 96), 1.0)


def test_heic_ingests_like_any_image(semsql_env, conn, no_stages, tmp_path: Path) -> None:
    make_heic(tmp_path / "photos" / "IMG_0001.heic", exif=IPHONE_EXIF)
    make_jpeg(tmp_path / "photos" / "IMG_0002.jpg", seed=2)

    summary = ingest(str(tmp_path / "photos"))

    assert (summary["new"], summary["failed"], summary["skipped"]) == (2, 0, 0)
    stored = asset(conn, "IMG_0001.heic")
    assert (stored["mime"], stored["width"], stored["height"]) == ("image/heic", 64, 96)
    assert stored["taken_at"] == datetime(2024, 3, 9, 13, 5, 6, tzinfo=UTC)
    assert stored["metadata"]["exif"]["Model"] == "iPhone 15 Pro"


# Runs `semsql ingest` in a Python where `import pillow_heif` fails, as on a base install.
WITHOUT_HEIF = (
    "import sys; sys.modules['pillow_heif'] = None; "
    "from semsql.cli.main import cli; cli(prog_name='semsql')"
)


def semsql_without_heif(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEMSQL_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_HEIF, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_the_heif_extra_heic_is_skipped_with_its_reason(
    db_url: str, conn, no_stages, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    make_heic(photos / "IMG_0001.heic", exif=IPHONE_EXIF)
    make_heic(photos / "IMG_0002.HEIF", seed=3)
    make_jpeg(photos / "IMG_0003.jpg", seed=4)

    done = semsql_without_heif(db_url, "ingest", str(photos), "--json")

    assert done.returncode == 0, done.stderr  # skipped is not failed
    summary = json.loads(done.stdout)
    assert (summary["new"], summary["skipped"], summary["failed"]) == (1, 2, 0)
    assert summary["skipped_reasons"] == {heif.SKIP_REASON: 2}
    details = conn.execute(
        "SELECT uri, error FROM semsql.job_items WHERE outcome = 'skipped' ORDER BY position"
    ).fetchall()
    assert [(Path(uri).name, error) for uri, error in details] == [
        ("IMG_0001.heic", "HEIC needs the heif extra: pip install 'semsql[heif]'"),
        ("IMG_0002.HEIF", "HEIC needs the heif extra: pip install 'semsql[heif]'"),
    ]
    shown = semsql_without_heif(db_url, "jobs", str(summary["job_id"]))
    assert "  skipped: 2 heic without the heif extra" in shown.stdout.splitlines()
    # Installed later, the same files are read.
    assert ingest_with(db_url, str(photos))["new"] == 2


def test_without_the_heif_extra_the_worker_says_what_to_install(tmp_path: Path) -> None:
    path = make_heic(tmp_path / "IMG_0001.heic")
    script = (
        "import sys; sys.modules['pillow_heif'] = None\n"
        "from semsql.decode import InputError, load_image\n"
        "try:\n    load_image(sys.argv[1], 224)\n"
        "except InputError as error:\n    print(error, error.permanent)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    assert done.stdout == f"cannot decode {path}: {heif.NEEDS_EXTRA} True\n"


def ingest_with(db_url: str, *args: str) -> dict:
    result = CliRunner(env={"SEMSQL_DATABASE_URL": db_url}).invoke(
        cli, ["ingest", *args, "--json"], catch_exceptions=False
    )
    return json.loads(result.stdout)


# --- XMP sidecars ---------------------------------------------------------------------------


def lightroom_shoot(folder: Path) -> None:
    """A JPEG with its own IPTC/XMP and a Lightroom sidecar `photo.xmp`; a PNG with a
    darktable-style `other.png.xmp`."""
    embedded = make_xmp_packet(description="embedded caption", keywords=["camera-keyword"])
    make_jpeg(
        folder / "photo.jpg",
        seed=1,
        xmp=embedded,
        exif={"DateTimeOriginal": "2019:07:14 18:30:00"},
        iptc={5: "IPTC object name", 105: "IPTC headline"},
    )
    (folder / "photo.xmp").write_text(
        lightroom_xmp(
            description="Ana and Joe by the Seine",
            title="Evening in Paris",
            headline="Summer trip",
            keywords=["river"],
            hierarchical=["Places|Europe|Paris", "People|Family"],
            persons=["Ana Lima", "Joe Park"],
            taken="2019-07-14T19:00:00+02:00",
            gps=("48,51.5N", "2,21.1E"),
        )
    )
    make_png(folder / "other.png", seed=2)
    (folder / "other.png.xmp").write_text(
        lightroom_xmp(title="A lighthouse", keywords=["coast"], persons=["Ana Lima"])
    )


def test_sidecar_facts_become_caption_tags_people_and_title(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    lightroom_shoot(tmp_path / "shoot")

    summary = ingest(str(tmp_path / "shoot"))

    assert (summary["new"], summary["failed"]) == (2, 0)
    assert summary["skipped_reasons"] == {"sidecar": 2}  # never assets
    photo = asset(conn, "photo.jpg")
    assert photo["caption"] == "Ana and Joe by the Seine"  # the sidecar wins
    assert photo["tags"] == sorted(
        ["camera-keyword", "river", "Places", "Europe", "Paris", "People", "Family"]
    )
    assert photo["people"] == ["Ana Lima", "Joe Park"]
    assert photo["metadata"]["title"] == "Evening in Paris"
    assert photo["metadata"]["headline"] == "Summer trip"
    assert photo["taken_at"] == datetime(2019, 7, 14, 17, 0, tzinfo=UTC)
    assert photo["metadata"]["gps"] == pytest.approx({"lat": 48.8583, "lon": 2.3517}, abs=1e-3)
    assert photo["metadata"]["xmp"]["lr:hierarchicalSubject"] == [
        "Places|Europe|Paris",
        "People|Family",
    ]
    assert [entry["file"] for entry in photo["metadata"]["sidecars"]] == ["photo.xmp"]
    other = asset(conn, "other.png")
    assert (other["metadata"]["title"], other["tags"], other["people"]) == (
        "A lighthouse",
        ["coast"],
        ["Ana Lima"],
    )
    assert "headline" not in other["metadata"]


def test_both_sidecar_namings_merge_and_the_specific_one_wins(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    make_jpeg(tmp_path / "photo.jpg", seed=1)
    (tmp_path / "photo.xmp").write_text(lightroom_xmp(title="from photo.xmp", keywords=["a"]))
    (tmp_path / "photo.jpg.xmp").write_text(
        lightroom_xmp(title="from photo.jpg.xmp", keywords=["b"], persons=["Ana Lima"])
    )

    ingest(str(tmp_path / "photo.jpg"))  # a single file finds its sidecars too

    photo = asset(conn, "photo.jpg")
    assert photo["metadata"]["title"] == "from photo.jpg.xmp"
    assert (photo["tags"], photo["people"]) == (["a", "b"], ["Ana Lima"])


def test_a_changed_sidecar_updates_the_asset(semsql_env, conn, no_stages, tmp_path) -> None:
    make_jpeg(tmp_path / "photo.jpg", seed=1)
    sidecar = tmp_path / "photo.xmp"
    sidecar.write_text(lightroom_xmp(keywords=["beach"]))
    assert ingest(str(tmp_path))["new"] == 1
    again = ingest(str(tmp_path))
    assert again["skipped_reasons"] == {"unchanged": 1, "sidecar": 1}

    sidecar.write_text(lightroom_xmp(keywords=["beach", "sunset"], title="Golden hour"))
    changed = ingest(str(tmp_path))

    assert (changed["updated"], changed["skipped_reasons"]) == (1, {"sidecar": 1})
    photo = asset(conn, "photo.jpg")
    assert (photo["tags"], photo["metadata"]["title"]) == (["beach", "sunset"], "Golden hour")
    # A sidecar's bytes count even where its facts do not (a develop setting was changed).
    sidecar.write_text(sidecar.read_text().replace('crs:Exposure2012="+0.35"', 'crs:E="1"'))
    assert ingest(str(tmp_path))["updated"] == 1


def test_bad_sidecars_are_metadata_errors_not_failed_files(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    photos, outside = tmp_path / "photos", tmp_path / "outside"
    outside.mkdir()
    make_jpeg(photos / "malformed.jpg", seed=1, xmp=make_xmp_packet(keywords=["kept"]))
    (photos / "malformed.xmp").write_text("<x:xmpmeta><rdf:RDF>not closed")
    make_jpeg(photos / "doctype.jpg", seed=2)
    (photos / "doctype.xmp").write_text('<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')
    make_jpeg(photos / "huge.jpg", seed=3)
    (photos / "huge.xmp").write_bytes(b" " * (MAX_XMP_BYTES + 1))
    make_jpeg(photos / "escape.jpg", seed=4)
    (outside / "secret.xmp").write_text(lightroom_xmp(keywords=["secret"]))
    (photos / "escape.xmp").symlink_to(outside / "secret.xmp")

    summary = ingest(str(photos))

    assert (summary["new"], summary["failed"]) == (4, 0)
    errors = {name: asset(conn, name)["metadata"]["metadata_errors"] for name in
              ("malformed.jpg", "doctype.jpg", "huge.jpg", "escape.jpg")}  # fmt: skip
    assert errors["malformed.jpg"][0].startswith("sidecar malformed.xmp: ")
    assert errors["doctype.jpg"] == [
        "sidecar doctype.xmp: DOCTYPE declarations are not allowed in XMP"
    ]
    assert errors["huge.jpg"] == [
        f"sidecar huge.xmp: {MAX_XMP_BYTES + 1:,} bytes is over the {MAX_XMP_BYTES:,}-byte "
        "XMP limit; not read"
    ]
    assert errors["escape.jpg"][0].startswith("sidecar escape.xmp: not read: ")
    assert "leads outside" in errors["escape.jpg"][0]
    assert asset(conn, "malformed.jpg")["tags"] == ["kept"]  # the file's own metadata counts
    assert asset(conn, "escape.jpg")["tags"] == []


# --- titles and hierarchical keywords in the file itself --------------------------------------


def test_titles_and_headlines_from_iptc_and_xmp(tmp_path: Path) -> None:
    # IPTC datasets 2:05 (ObjectName) and 2:105 (Headline)
    iptc_only = make_jpeg(tmp_path / "iptc.jpg", iptc={5: "Object name", 105: "Headline"})
    xmp_only = make_png(
        tmp_path / "xmp.png",
        xmp=lightroom_xmp(title="XMP title", headline="XMP headline",
                          hierarchical=["Animals|Birds|Gull"]),
    )  # fmt: skip
    bare = make_jpeg(tmp_path / "bare.jpg", seed=3)

    found = {path.name: probe_file(path) for path in (iptc_only, xmp_only, bare)}

    assert found["iptc.jpg"].title == "Object name"
    assert found["iptc.jpg"].metadata["headline"] == "Headline"
    assert found["xmp.png"].title == found["xmp.png"].metadata["title"] == "XMP title"
    assert found["xmp.png"].metadata["headline"] == "XMP headline"
    assert found["xmp.png"].keywords == ("Animals", "Birds", "Gull")
    assert found["bare.jpg"].title is None
    assert "title" not in found["bare.jpg"].metadata
    assert "headline" not in found["bare.jpg"].metadata


# --- what a walk passes over, counted -------------------------------------------------------


def test_skipped_files_are_counted_by_reason(
    semsql_env, conn, no_stages, tmp_path, monkeypatch
) -> None:
    # Counted by reason: a video where the video extra is not installed.
    monkeypatch.setattr("semsql.sources._video_available", lambda: False)
    shoot = tmp_path / "shoot"
    make_jpeg(shoot / "a.jpg", seed=1)
    make_jpeg(shoot / "copy-of-a.jpg", seed=1)
    (shoot / "a.xmp").write_text(lightroom_xmp(keywords=["k"]))
    (shoot / "raw.dng").write_bytes(b"II*\x00raw")
    (shoot / "raw2.DNG").write_bytes(b"II*\x00raw")
    (shoot / "clip.mov").write_bytes(b"\x00\x00\x00\x14ftypqt  ")
    (shoot / "notes.txt").write_text("notes")

    first = ingest(str(shoot))

    assert (first["new"], first["skipped"], first["failed"]) == (1, 6, 0)
    assert first["skipped_reasons"] == {
        "duplicate": 1,
        "sidecar": 1,
        "unsupported format .dng": 2,
        "video (needs the video extra)": 1,
        "unsupported format .txt": 1,
    }
    again = ingest(str(shoot))
    assert again["skipped_reasons"] == {**first["skipped_reasons"], "unchanged": 1}
    assert sum(again["skipped_reasons"].values()) == again["skipped"] == 7

    text = CliRunner().invoke(cli, ["ingest", str(shoot)])
    assert text.exit_code == 0
    assert text.stdout.splitlines()[1] == (
        "  skipped: 2 unsupported format .dng, 1 duplicate, 1 sidecar, 1 unchanged,"
        " 1 unsupported format .txt, 1 video (needs the video extra)"
    )
    shown = CliRunner().invoke(cli, ["jobs", str(again["job_id"]), "--json"])
    assert json.loads(shown.stdout)["skipped_reasons"] == again["skipped_reasons"]
    stored = conn.execute("SELECT skipped_count, skipped_reasons FROM semsql.jobs WHERE id = %s",
                          [again["job_id"]]).fetchone()  # fmt: skip
    assert stored == (7, again["skipped_reasons"])


def test_a_glob_takes_what_it_matches_and_sidecars_stay_sidecars(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    make_jpeg(tmp_path / "a.jpg", seed=1)
    (tmp_path / "a.jpg.xmp").write_text(lightroom_xmp(keywords=["k"]))
    (tmp_path / "notes.txt").write_text("notes")

    summary = ingest(str(tmp_path), "--glob", "a*")

    assert (summary["new"], summary["skipped_reasons"]) == (1, {"sidecar": 1})
    assert asset(conn, "a.jpg")["tags"] == ["k"]


# --- manifests: taken_at and title ----------------------------------------------------------


def test_manifest_taken_at_and_title_override_the_files_own(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    exif = {"DateTimeOriginal": "2001:01:01 00:00:00"}
    make_jpeg(tmp_path / "offset.jpg", seed=1, exif=exif, iptc={5: "File title"})
    make_jpeg(tmp_path / "naive.jpg", seed=2)
    make_jpeg(tmp_path / "bad.jpg", seed=3)
    rows = [
        {"uri": "offset.jpg", "taken_at": "2019-07-14T16:20:00+02:00", "title": "Catalog title"},
        {"uri": "naive.jpg", "taken_at": "2019-07-14 16:20"},
        {"uri": "bad.jpg", "taken_at": "14/07/2019"},
    ]
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))

    summary = ingest("--manifest", str(manifest))

    assert (summary["new"], summary["failed"]) == (2, 1)
    [error] = summary["errors"]
    assert error["code"] == "manifest"
    assert error["error"].startswith("catalog.jsonl line 3: 'taken_at' is not an ISO 8601 date")
    offset = asset(conn, "offset.jpg")
    assert offset["taken_at"] == datetime(2019, 7, 14, 14, 20, tzinfo=UTC)
    assert offset["metadata"]["title"] == "Catalog title"
    naive = asset(conn, "naive.jpg")
    assert naive["taken_at"] == datetime(2019, 7, 14, 16, 20, tzinfo=UTC)
    assert naive["taken_at"].utcoffset() == timedelta(0)
