"""URL schemes on the command line and in manifests: http and https in any case, a file: URI
as the local path it names (with the same containment rules), any other scheme that item's
error; never a relative path named "ftp:"."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
from click.testing import CliRunner
from corpus import make_jpeg

from semsql.cli.main import cli

UNSUPPORTED = "unsupported URL scheme {}: give an http(s) URL, a file:// URI or a path"


def ingest(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["ingest", *args, "--json"])
    assert result.exit_code in (0, 1), (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return json.loads(result.stdout)


def stored(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT uri, root FROM semsql.assets").fetchall())


def test_command_line_schemes(semsql_env, conn, no_stages, tmp_path: Path, monkeypatch) -> None:
    photos = tmp_path / "photos"
    one = make_jpeg(photos / "one two.jpg", seed=1)
    make_jpeg(photos / "sub" / "three.jpg", seed=3)
    named = make_jpeg(tmp_path / "x:y.jpg", seed=4)  # a file, though it looks like a URI
    monkeypatch.chdir(tmp_path)

    summary = ingest(
        "ftp://127.0.0.1/x.jpg",
        "FTP://127.0.0.1/x.jpg",
        "data:image/png;base64,AAAA",
        "file://nas/photos/x.jpg",
        "file://" + str(one).replace(" ", "%20"),
        f"FILE://localhost{photos}/sub/",
        "x:y.jpg",
    )

    assert {(e["uri"], e["code"], e["error"]) for e in summary["errors"]} == {
        ("ftp://127.0.0.1/x.jpg", "bad_url", UNSUPPORTED.format("ftp")),
        ("FTP://127.0.0.1/x.jpg", "bad_url", UNSUPPORTED.format("ftp")),
        ("data:image/png;base64,AAAA", "bad_url", UNSUPPORTED.format("data")),
        ("file://nas/photos/x.jpg", "bad_url", "file URI on another host (nas) cannot be read"),
    }
    assert (summary["new"], summary["failed"]) == (3, 4)
    assert stored(conn) == {
        str(one): str(photos),
        str(photos / "sub" / "three.jpg"): str(photos / "sub"),
        str(named): str(tmp_path),
    }


def test_a_file_uri_in_a_manifest_keeps_to_its_root(
    semsql_env, conn, no_stages, tmp_path: Path
) -> None:
    inside = make_jpeg(tmp_path / "catalog" / "in.jpg", seed=1)
    outside = make_jpeg(tmp_path / "elsewhere" / "out.jpg", seed=2)
    manifest = tmp_path / "catalog" / "m.jsonl"
    rows = [{"uri": f"FILE://{inside}", "caption": "inside"}, {"uri": f"file://{outside}"}]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))

    summary = ingest("--manifest", str(manifest))

    assert (summary["new"], summary["failed"]) == (1, 1)
    assert summary["errors"][0]["uri"] == str(outside)
    assert summary["errors"][0]["code"] == "outside_root"
    assert stored(conn) == {str(inside): str(inside.parent)}
    assert os.path.isabs(next(iter(stored(conn))))
