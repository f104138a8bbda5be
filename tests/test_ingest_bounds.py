"""An asset's metadata is bounded as a whole, in nesting and in size, and a manifest row that
Python cannot read (a number of 5,000 digits) fails only itself."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner
from corpus import make_jpeg, make_png

from semsql import limits
from semsql.cli.main import cli


def ingest(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["ingest", *args, "--json"])
    assert result.exit_code in (0, 1), (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return json.loads(result.stdout)


def metadata_of(conn: psycopg.Connection, name: str) -> dict:
    return conn.execute(
        "SELECT metadata FROM semsql.assets WHERE uri LIKE %s", [f"%/{name}"]
    ).fetchone()[0]


def nested(levels: int) -> str:
    return '{"k": ' * levels + '"x"' + "}" * levels


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def test_unreadable_manifest_rows_fail_alone(semsql_env, conn, no_stages, tmp_path) -> None:
    for n, name in enumerate(("good.jpg", "digits.jpg", "deep.jpg", "lists.jpg")):
        make_jpeg(tmp_path / name, seed=n)
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text(
        "\n".join(
            [
                '{"uri": "good.jpg", "caption": "a good row"}',
                '{"uri": "digits.jpg", "metadata": {"big": ' + "1" * 5000 + "}}",
                '{"uri": "deep.jpg", "metadata": ' + nested(300) + "}",
                '{"uri": "lists.jpg", "metadata": {"l": ' + "[" * 300 + "]" * 300 + "}}",
            ]
        )
        + "\n"
    )
    csv = tmp_path / "catalog.csv"
    csv.write_text('uri,metadata\ngood.jpg,"{""n"": ' + "9" * 5000 + '}"\n')

    summary = ingest("--manifest", str(manifest))
    assert (summary["new"], summary["failed"], summary["status"]) == (3, 1, "completed")
    (error,) = summary["errors"]
    assert error["error"] == (
        "catalog.jsonl line 2: a number of 5,000 digits (at most 4,300 digits are read)"
    )
    for name in ("deep.jpg", "lists.jpg"):
        metadata = metadata_of(conn, name)
        assert depth(metadata) == limits.MAX_METADATA_DEPTH
        (warning,) = metadata["metadata_errors"]
        assert warning.startswith("metadata catalog.")
        assert warning.endswith(f": nested deeper than {limits.MAX_METADATA_DEPTH} levels, dropped")

    summary = ingest("--manifest", str(csv))
    assert summary["failed"] == 1
    assert summary["errors"][0]["error"].endswith("'metadata' holds a number of 5,000 digits"
                                                  " (at most 4,300 digits are read)")  # fmt: skip


def xmp_with_properties(count: int, chars: int) -> str:
    """An XMP packet of `count` simple properties of `chars` characters each."""
    properties = "".join(f"<my:p{n}>{chr(97 + n % 26) * chars}</my:p{n}>" for n in range(count))
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF'
        ' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:my="http://example.org/my/">{properties}'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )


def test_metadata_over_the_size_limit_keeps_what_fits(
    semsql_env, conn, no_stages, tmp_path
) -> None:
    # As the tester's file: 1,000 XMP properties of 1,900 characters (1.9 MB of metadata).
    make_png(tmp_path / "many.png", xmp=xmp_with_properties(1000, 1900))
    make_jpeg(tmp_path / "small.jpg", seed=1, exif={"Make": "Canon"})

    summary = ingest(str(tmp_path))

    assert (summary["new"], summary["failed"]) == (2, 0)
    (size,) = conn.execute(
        "SELECT octet_length(metadata::text) FROM semsql.assets WHERE uri LIKE '%many.png'"
    ).fetchone()
    assert size <= limits.MAX_METADATA_BYTES + 20_000  # jsonb's text has spaces; warnings
    metadata = metadata_of(conn, "many.png")
    kept = len(metadata["xmp"])
    assert 100 < kept < 140  # 256 kB of 1.9 kB properties, the first ones kept
    assert list(metadata["xmp"]) == [f"my:p{n}" for n in range(kept)]
    (warning,) = metadata["metadata_errors"]
    assert warning.startswith(f"metadata xmp: {1000 - kept:,} of 1,000 entries dropped (the ")
    assert warning.endswith(f"; the limit is {limits.MAX_METADATA_BYTES:,})")
    assert "metadata_errors" not in metadata_of(conn, "small.jpg")


def test_bound_size_drops_the_largest_entries() -> None:
    metadata = {"small": {"a": 1}, "big": {"x": "y" * 900, "z": "w" * 50}, "list": ["q" * 700]}
    warnings: list[str] = []
    bounded = limits.bound_size(metadata, 400, warnings)
    assert bounded == {"small": {"a": 1}, "big": {"z": "w" * 50}}
    assert len(warnings) == 2
    assert warnings[0].startswith("metadata list: 704 bytes of JSON, dropped")
    assert warnings[1].startswith("metadata big: 1 of 2 entries dropped")
    assert limits.json_bytes(bounded) <= 400
    unchanged: list[str] = []
    assert limits.bound_size(metadata, 10_000, unchanged) is metadata and unchanged == []


def test_warnings_are_capped(semsql_env, conn, no_stages, tmp_path) -> None:
    make_jpeg(tmp_path / "tags.jpg")
    tags = [f"{n:04d}" + "t" * 300 for n in range(5000)]  # each over the keyword limit
    (tmp_path / "m.jsonl").write_text(json.dumps({"uri": "tags.jpg", "tags": tags}) + "\n")
    assert ingest("--manifest", str(tmp_path / "m.jsonl"))["new"] == 1
    warnings = metadata_of(conn, "tags.jpg")["metadata_errors"]
    assert len(warnings) == limits.MAX_WARNINGS
    assert warnings[-1] == f"and {5000 - limits.MAX_WARNINGS + 1:,} more warnings like these"
