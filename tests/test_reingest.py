"""Re-ingest that does not read: an unchanged file (same path, size, mtime, ctime, inode and
XMP sidecars as its asset recorded) is skipped as "unchanged" unopened; any other is read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from corpus import make_jpeg, make_xmp_packet
from PIL import Image

import semsql.ingest
import semsql.signature
from semsql.cli.main import cli
from semsql.probe import probe_file


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files ingest probes (reads and decodes), in the order it does."""
    names: list[str] = []

    def counting(path: Path, **options: Any) -> Any:
        names.append(path.name)
        return probe_file(path, **options)

    monkeypatch.setattr(semsql.ingest, "probe_file", counting)
    return names


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by the test count as settled at once (no 2 s window for racy writes)."""
    monkeypatch.setattr(semsql.signature, "RACY_NS", 0)


def ingest(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["ingest", *args, "--json"], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def counts(summary: dict[str, Any]) -> tuple[int, int, int, int]:
    return summary["new"], summary["updated"], summary["skipped"], summary["failed"]


def make_bmp(path: Path, shade: int) -> None:
    """An uncompressed image: the same size in bytes whatever its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (shade, 255 - shade, 9)).save(path)


def signature(conn, name: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT file_signature FROM semsql.assets WHERE uri LIKE %s", ["%/" + name]
    ).fetchone()
    conn.commit()
    assert row is not None, name
    value: dict[str, Any] | None = row[0]
    return value


def folder_of(tmp_path: Path, count: int = 3) -> Path:
    folder = tmp_path / "photos"
    for i in range(count):
        make_jpeg(folder / f"img_{i}.jpg", (64, 48), seed=i)
    (folder / "notes.txt").write_text("not an image")
    (folder / "raw.dng").write_bytes(b"II*\x00raw")
    return folder


def test_an_unchanged_folder_is_skipped_unopened(
    semsql_env, conn, no_stages, settled, opened: list[str], tmp_path: Path
) -> None:
    folder = folder_of(tmp_path)
    first = ingest(str(folder))
    assert counts(first) == (3, 0, 2, 0)
    assert sorted(opened) == ["img_0.jpg", "img_1.jpg", "img_2.jpg"]
    recorded = signature(conn, "img_0.jpg")
    assert recorded is not None
    assert recorded["size"] == (folder / "img_0.jpg").stat().st_size
    if os.geteuid() != 0:  # root reads through chmod 000: the probe count is the proof then
        for path in folder.glob("*.jpg"):
            path.chmod(0)
    opened.clear()

    again = ingest(str(folder))

    assert opened == []
    assert counts(again) == (0, 0, 5, 0)
    assert again["skipped_reasons"] == {
        "unchanged": 3,
        "unsupported format .txt": 1,
        "unsupported format .dng": 1,
    }
    items = conn.execute(
        "SELECT ji.outcome, ji.error, ji.asset_id = a.id FROM semsql.job_items ji"
        " JOIN semsql.assets a ON a.uri = ji.uri WHERE ji.job_id = %s",
        [again["job_id"]],
    ).fetchall()
    assert items == [("skipped", "unchanged", True)] * 3  # as the sha256 path records them


def test_a_same_size_rewrite_with_a_new_mtime_is_updated(
    semsql_env, conn, no_stages, settled, opened: list[str], tmp_path: Path
) -> None:
    make_bmp(tmp_path / "a" / "one.bmp", 10)
    make_bmp(tmp_path / "a" / "two.bmp", 20)
    ingest(str(tmp_path / "a"))
    before = (tmp_path / "a" / "one.bmp").stat()
    make_bmp(tmp_path / "a" / "one.bmp", 200)
    os.utime(tmp_path / "a" / "one.bmp", ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert (tmp_path / "a" / "one.bmp").stat().st_size == before.st_size
    opened.clear()

    again = ingest(str(tmp_path / "a"))

    assert opened == ["one.bmp"]
    assert counts(again) == (0, 1, 1, 0)
    assert signature(conn, "one.bmp")["mtime_ns"] == before.st_mtime_ns + 10**9


def test_a_touched_file_is_read_once_found_unchanged_and_skipped_unread_next(
    semsql_env, conn, no_stages, settled, opened: list[str], tmp_path: Path
) -> None:
    folder = folder_of(tmp_path, 2)
    ingest(str(folder))
    old = signature(conn, "img_0.jpg")
    (folder / "img_0.jpg").touch()
    opened.clear()

    touched = ingest(str(folder))

    assert opened == ["img_0.jpg"]
    assert counts(touched) == (0, 0, 4, 0)
    assert touched["skipped_reasons"]["unchanged"] == 2
    new = signature(conn, "img_0.jpg")
    assert new is not None and new != old
    assert new["mtime_ns"] == (folder / "img_0.jpg").stat().st_mtime_ns
    opened.clear()

    assert counts(ingest(str(folder))) == (0, 0, 4, 0)
    assert opened == []


@pytest.mark.parametrize("sidecar", ["img_0.xmp", "img_0.jpg.xmp"])
def test_an_edited_added_or_removed_sidecar_updates_the_asset(
    semsql_env, conn, no_stages, settled, opened: list[str], tmp_path: Path, sidecar: str
) -> None:
    folder = folder_of(tmp_path, 2)
    ingest(str(folder))

    def caption() -> str | None:
        row = conn.execute(
            "SELECT text FROM semsql.captions WHERE source = 'user'"
            " AND asset_id = (SELECT id FROM semsql.assets WHERE uri LIKE '%/img_0.jpg')"
        ).fetchone()
        conn.commit()
        return row[0] if row else None

    (folder / sidecar).write_text(make_xmp_packet("A red kite"), encoding="utf-8")  # added
    opened.clear()
    added = ingest(str(folder))
    assert opened == ["img_0.jpg"]  # the other image is skipped unread
    assert (added["updated"], caption()) == (1, "A red kite")

    (folder / sidecar).write_text(
        make_xmp_packet("A red kite over a field"), encoding="utf-8"
    )  # edited
    opened.clear()
    edited = ingest(str(folder))
    assert opened == ["img_0.jpg"]
    assert (edited["updated"], caption()) == (1, "A red kite over a field")

    opened.clear()
    assert ingest(str(folder))["skipped_reasons"]["unchanged"] == 2
    assert opened == []

    (folder / sidecar).unlink()  # removed: read again (the user caption stays, as it did)
    opened.clear()
    ingest(str(folder))
    assert opened == ["img_0.jpg"]
    opened.clear()
    ingest(str(folder))
    assert opened == []


def test_a_replacement_with_its_size_and_mtime_restored_is_caught(
    semsql_env, conn, no_stages, settled, opened: list[str], tmp_path: Path
) -> None:
    folder = tmp_path / "a"
    make_bmp(folder / "in_place.bmp", 10)
    make_bmp(folder / "renamed.bmp", 20)
    ingest(str(folder))
    in_place, renamed = (folder / "in_place.bmp").stat(), (folder / "renamed.bmp").stat()

    # Rewritten in place, mtime set back: size, mtime and inode as recorded; ctime is not.
    make_bmp(tmp_path / "other.bmp", 111)
    with (folder / "in_place.bmp").open("r+b") as file:
        file.write((tmp_path / "other.bmp").read_bytes())
    os.utime(folder / "in_place.bmp", ns=(in_place.st_atime_ns, in_place.st_mtime_ns))
    # Replaced by another file (as rsync -a or cp -p and mv do): a new inode.
    make_bmp(tmp_path / "new.bmp", 222)
    os.utime(tmp_path / "new.bmp", ns=(renamed.st_atime_ns, renamed.st_mtime_ns))
    shutil.move(tmp_path / "new.bmp", folder / "renamed.bmp")
    for name, was in (("in_place.bmp", in_place), ("renamed.bmp", renamed)):
        now = (folder / name).stat()
        assert (now.st_size, now.st_mtime_ns) == (was.st_size, was.st_mtime_ns)
    opened.clear()

    again = ingest(str(folder))

    assert sorted(opened) == ["in_place.bmp", "renamed.bmp"]
    assert counts(again) == (0, 2, 0, 0)


def test_a_file_changed_just_before_it_is_read_gets_no_signature(
    semsql_env, conn, no_stages, opened: list[str], tmp_path: Path
) -> None:
    folder = folder_of(tmp_path, 2)  # written now: within the racy window
    ingest(str(folder))
    assert signature(conn, "img_0.jpg") is None
    opened.clear()
    again = ingest(str(folder))
    assert sorted(opened) == ["img_0.jpg", "img_1.jpg"]  # read again; sha256 says unchanged
    assert again["skipped_reasons"]["unchanged"] == 2


def test_manifest_rows_with_facts_are_read_every_time(
    semsql_env, conn, no_stages, settled, opened: list[str], tmp_path: Path
) -> None:
    folder = folder_of(tmp_path, 2)
    ingest(str(folder))  # signatures recorded by the walk
    manifest = folder / "catalog.jsonl"
    manifest.write_text(json.dumps({"uri": "img_0.jpg", "caption": "Kestrel"}) + "\n")
    opened.clear()

    stated = ingest("--manifest", str(manifest))

    assert opened == ["img_0.jpg"]
    assert stated["updated"] == 1
    assert signature(conn, "img_0.jpg") is None  # the walk must read it again: its facts differ
    manifest.write_text(json.dumps({"uri": "img_0.jpg", "caption": "Kestrel"}) + "\n")
    opened.clear()
    assert ingest("--manifest", str(manifest))["skipped_reasons"] == {"unchanged": 1}
    assert opened == ["img_0.jpg"]
    opened.clear()
    ingest(str(folder))
    assert sorted(opened) == ["img_0.jpg"]
