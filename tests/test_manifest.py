"""Catalog manifests (JSONL and CSV): good rows, and a specific error for every bad one."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from semsql import limits
from semsql.manifest import ManifestError, ManifestRow, read_manifest


def read(path: Path) -> list[ManifestRow | ManifestError]:
    return list(read_manifest(path))


def rows(path: Path) -> list[ManifestRow]:
    found = read(path)
    assert all(isinstance(item, ManifestRow) for item in found), found
    return found  # type: ignore[return-value]


def errors(path: Path) -> list[str]:
    return [str(item) for item in read(path) if isinstance(item, ManifestError)]


def write_jsonl(path: Path, *records: object) -> Path:
    lines = [record if isinstance(record, str) else json.dumps(record) for record in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- JSONL ----------------------------------------------------------------------------------


def test_jsonl_rows(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "catalog.jsonl",
        {
            "uri": "2019/beach.jpg",
            "caption": "  Kids on the beach ",
            "tags": ["sea", "Sand", "sea", " "],
            "people": ["Zoë Ångström"],
            "metadata": {"rights": "CC-BY", "rating": 4},
        },
        {"path": "dog.jpg", "tags": "dog; park;  ; Dog", "people": "Ann, Bob"},
        {"file": "https://example.com/a.jpg", "caption": None},
    )
    beach, dog, remote = rows(manifest)

    assert beach == ManifestRow(
        line=1,
        uri=str(tmp_path / "2019" / "beach.jpg"),
        caption="Kids on the beach",
        tags=("sea", "Sand"),
        people=("Zoë Ångström",),
        metadata={"rights": "CC-BY", "rating": 4},
    )
    assert (dog.uri, dog.tags, dog.people) == (
        str(tmp_path / "dog.jpg"),
        ("dog", "park"),
        ("Ann", "Bob"),
    )
    assert (remote.uri, remote.caption) == ("https://example.com/a.jpg", None)


def test_relative_uris_resolve_against_the_manifest_folder(tmp_path: Path) -> None:
    (tmp_path / "catalogs").mkdir()
    manifest = write_jsonl(
        tmp_path / "catalogs" / "m.jsonl",
        {"uri": "../photos/./a.jpg"},
        {"uri": "/srv/photos/b.jpg"},
        {"uri": "http://example.com/c.jpg"},
        {"uri": "file:///srv/photos/caf%C3%A9%20d.jpg"},
        {"uri": "file://localhost/srv/photos/caf%E9.jpg"},
    )
    assert [row.uri for row in rows(manifest)] == [
        str(tmp_path / "photos" / "a.jpg"),
        "/srv/photos/b.jpg",
        "http://example.com/c.jpg",
        "/srv/photos/café d.jpg",
        os.fsdecode(b"/srv/photos/caf\xe9.jpg"),  # not UTF-8: kept byte-exact
    ]


def test_unknown_jsonl_keys_go_into_metadata(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        {"uri": "a.jpg", "album": "Summer", "stars": 5, "metadata": {"album": "Winter"}},
    )
    (row,) = rows(manifest)
    assert row.metadata == {"album": "Winter", "stars": 5}  # explicit metadata wins


def test_blank_lines_are_skipped_and_lines_counted(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('\n{"uri": "a.jpg"}\n\n   \n{"uri": "b.jpg"}\n', encoding="utf-8")
    assert [row.line for row in rows(manifest)] == [2, 5]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"caption": "no file"}', "missing 'uri' (also accepted: 'path', 'file')"),
        ('{"uri": "  "}', "missing 'uri' (also accepted: 'path', 'file')"),
        ('{"uri": 42}', "'uri' must be a string, got a number"),
        (
            '{"uri": "s3://bucket/a.jpg"}',
            "unsupported URL scheme s3: give an http(s) URL, a file:// URI or a path",
        ),
        (
            '{"uri": "FTP://host/a.jpg"}',
            "unsupported URL scheme ftp: give an http(s) URL, a file:// URI or a path",
        ),
        (
            '{"uri": "data:image/png;base64,AAAA"}',
            "unsupported URL scheme data: give an http(s) URL, a file:// URI or a path",
        ),
        (
            '{"uri": "javascript:alert(1)"}',
            "unsupported URL scheme javascript: give an http(s) URL, a file:// URI or a path",
        ),
        (
            '{"uri": "file://nas/photos/a.jpg"}',
            "file URI on another host (nas) cannot be read",
        ),
        ('{"uri": "a.jpg", "path": "b.jpg"}', "'uri' and 'path' disagree; give the file once"),
        ('{"uri": "a.jpg", "metadata": [1, 2]}', "'metadata' must be an object, got an array"),
        ('{"uri": "a.jpg", "metadata": "x"}', "'metadata' must be an object, got a string"),
        ('{"uri": "a.jpg", "caption": 7}', "'caption' must be a string, got a number"),
        (
            '{"uri": "a.jpg", "tags": 5}',
            "'tags' must be a list of strings or a ';'-separated string",
        ),
        (
            '{"uri": "a.jpg", "people": ["Ann", 3]}',
            "'people' must be a list of strings or a ';'-separated string",
        ),
        ('{"uri": "a.jpg",', "invalid JSON: Expecting property name enclosed in double quotes"),
        ('{"uri": "a.jpg", "metadata": {"x": NaN}}', "invalid JSON: NaN is not a JSON number"),
        ('["a.jpg"]', "expected a JSON object, got an array"),
    ],
)
def test_each_bad_jsonl_row_has_its_own_message(tmp_path: Path, line: str, message: str) -> None:
    manifest = write_jsonl(tmp_path / "catalog.jsonl", {"uri": "good.jpg"}, line, {"uri": "z.jpg"})
    found = read(manifest)
    assert [type(item) for item in found] == [ManifestRow, ManifestError, ManifestRow]
    error = found[1]
    assert isinstance(error, ManifestError)
    assert error.line == 2
    assert str(error).startswith(f"catalog.jsonl line 2: {message}")


def test_url_schemes_are_case_insensitive_and_file_uris_are_paths(tmp_path: Path) -> None:
    (tmp_path / "a:b.jpg").write_bytes(b"")  # a file named like a URI is a file
    manifest = write_jsonl(
        tmp_path / "catalog.jsonl",
        {"uri": "HTTP://Example.org/A.jpg"},
        {"uri": "HttpS://example.org/b.jpg"},
        {"uri": "FILE:///srv/photos/c%20d.jpg"},
        {"uri": "file://LOCALHOST/srv/e.jpg"},
        {"uri": "file:/srv/f.jpg"},
        {"uri": "a:b.jpg"},
    )
    assert [row.uri for row in rows(manifest)] == [
        "http://Example.org/A.jpg",
        "https://example.org/b.jpg",
        "/srv/photos/c d.jpg",
        "/srv/e.jpg",
        "/srv/f.jpg",
        str(tmp_path / "a:b.jpg"),
    ]


def test_a_number_of_too_many_digits_fails_its_row_alone(tmp_path: Path) -> None:
    digits = "1" * 5000  # Python refuses to read an int of over 4,300 digits
    manifest = write_jsonl(
        tmp_path / "catalog.jsonl",
        {"uri": "a.jpg"},
        '{"uri": "b.jpg", "metadata": {"big": ' + digits + "}}",
        '{"uri": "c.jpg", "metadata": {"fine": ' + "9" * 4300 + ', "neg": -' + digits + "}}",
        {"uri": "d.jpg"},
    )
    found = read(manifest)
    assert [type(item) for item in found] == [
        ManifestRow,
        ManifestError,
        ManifestError,
        ManifestRow,
    ]
    message = "a number of 5,000 digits (at most 4,300 digits are read)"
    assert [str(item) for item in found[1:3]] == [
        f"catalog.jsonl line 2: {message}",
        f"catalog.jsonl line 3: {message}",
    ]
    csv = tmp_path / "catalog.csv"
    csv.write_text(f'uri,metadata\na.jpg,"{{""n"": {digits}}}"\nb.jpg,\n')
    assert errors(csv) == [f"catalog.csv line 2: 'metadata' holds {message}"]


def deep(levels: int, inner: object = "x") -> object:
    value = inner
    for _ in range(levels):
        value = {"k": value}
    return value


def test_metadata_nested_too_deep_is_cut_with_a_warning(tmp_path: Path) -> None:
    limit = limits.MAX_METADATA_DEPTH
    manifest = write_jsonl(
        tmp_path / "catalog.jsonl",
        {"uri": "deep.jpg", "metadata": deep(950), "note": "kept"},
        '{"uri": "list.jpg", "metadata": {"l": ' + "[" * 900 + "]" * 900 + "}}",
        {"uri": "fits.jpg", "metadata": deep(limit - 1)},
    )
    deep_row, list_row, fits = rows(manifest)
    # The row's metadata is the asset's "catalog": the top level and catalog are two levels.
    assert deep_row.metadata == {**deep(limit - 1, None), "note": "kept"}
    path = "catalog" + ".k" * (limit - 1)
    assert deep_row.warnings == (
        f"metadata {limits.shown_path(path)}: nested deeper than {limit} levels, dropped",
    )
    assert list_row.warnings[0].endswith(f": nested deeper than {limit} levels, dropped")
    assert fits.metadata == deep(limit - 1) and fits.warnings == ()


def test_metadata_is_made_jsonb_safe(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"uri": "a.jpg", "metadata": {"note": "a\\u0000b\\ud800"}}\n')
    (row,) = rows(manifest)
    assert row.metadata == {"note": "ab?"}


# --- CSV ------------------------------------------------------------------------------------


def test_csv_rows_with_bom_and_case_insensitive_header(tmp_path: Path) -> None:
    manifest = tmp_path / "catalog.csv"
    manifest.write_text(
        "\ufeffURI,Caption,Tags,People,Metadata,Photographer,Empty\n"
        'a.jpg,A beach,"sea; sand; Sea",Zoë Ångström,"{""rights"": ""CC-BY""}",Ann,\n'
        "\n"
        'https://example.com/b.jpg,"Line one\nline two","dog, park",,,,\n'
        "c.jpg,,,,,,\n",
        encoding="utf-8",
    )
    a, b, c = rows(manifest)
    assert a == ManifestRow(
        line=2,
        uri=str(tmp_path / "a.jpg"),
        caption="A beach",
        tags=("sea", "sand"),
        people=("Zoë Ångström",),
        metadata={"photographer": "Ann", "rights": "CC-BY"},
    )
    assert (b.line, b.uri, b.caption, b.tags) == (
        4,
        "https://example.com/b.jpg",
        "Line one\nline two",
        ("dog", "park"),
    )
    assert (c.line, c.caption, c.tags, c.people, c.metadata) == (6, None, (), (), {})


def test_tsv_and_path_alias(tmp_path: Path) -> None:
    manifest = tmp_path / "catalog.tsv"
    manifest.write_text("path\ttags\nx/a.jpg\tone;two\n", encoding="utf-8")
    (row,) = rows(manifest)
    assert (row.uri, row.tags) == (str(tmp_path / "x" / "a.jpg"), ("one", "two"))


def test_each_bad_csv_row_has_its_own_message(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "uri,caption,tags,metadata\n"
        "good.jpg,,,\n"
        ",no file here,,\n"
        'b.jpg,,,"[1, 2]"\n'
        'c.jpg,,,"{broken"\n'
        "d.jpg,,,,extra\n"
        "e.jpg,,,\n",
        encoding="utf-8",
    )
    assert errors(manifest) == [
        "manifest.csv line 3: missing 'uri' (also accepted: 'path', 'file')",
        "manifest.csv line 4: 'metadata' must be a JSON object, got an array",
        "manifest.csv line 5: 'metadata' is not valid JSON:"
        " Expecting property name enclosed in double quotes (column 2)",
        "manifest.csv line 6: row has 5 fields but the header has 4",
    ]
    assert [
        item.uri.rsplit("/", 1)[1] for item in read(manifest) if isinstance(item, ManifestRow)
    ] == [
        "good.jpg",
        "e.jpg",
    ]


def test_csv_without_a_uri_column(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("name,caption\na.jpg,x\n", encoding="utf-8")
    assert errors(manifest) == [
        "manifest.csv line 1: no 'uri' column (also accepted: 'path', 'file');"
        " the columns are 'name', 'caption'"
    ]


def test_csv_with_a_duplicate_column(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("uri,Tags,tags\na.jpg,x,y\n", encoding="utf-8")
    assert errors(manifest) == ["manifest.csv line 1: column 'tags' appears twice"]


# --- format and encoding --------------------------------------------------------------------


def test_unknown_extension_is_sniffed(tmp_path: Path) -> None:
    jsonl = tmp_path / "export.txt"
    jsonl.write_text('\ufeff\n  {"uri": "a.jpg", "tags": ["x"]}\n', encoding="utf-8")
    csv_file = tmp_path / "export.dat"
    csv_file.write_text("uri,tags\na.jpg,x\n", encoding="utf-8")
    assert [row.tags for row in rows(jsonl)] == [("x",)]
    assert [row.tags for row in rows(csv_file)] == [("x",)]


def test_jsonl_with_bom(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b'\xef\xbb\xbf{"uri": "a.jpg"}\n')
    assert [row.uri for row in rows(manifest)] == [str(tmp_path / "a.jpg")]


def test_non_utf8_file_is_one_error_at_line_0(tmp_path: Path) -> None:
    manifest = tmp_path / "latin1.csv"
    manifest.write_bytes("uri,caption\na.jpg,fine\nb.jpg,Café\n".encode("latin-1"))
    found = read(manifest)
    assert len(found) == 1
    (error,) = found
    assert isinstance(error, ManifestError)
    assert error.line == 0
    assert str(error) == (
        "latin1.csv: not UTF-8: byte 0xe9 at line 3 (byte offset 32) cannot be decoded;"
        " save the manifest as UTF-8"
    )


def test_missing_manifest_is_one_error(tmp_path: Path) -> None:
    (error,) = read(tmp_path / "nope.jsonl")
    assert isinstance(error, ManifestError)
    assert (error.line, str(error)) == (0, "nope.jsonl: cannot read: No such file or directory")


def test_empty_manifest_yields_nothing(tmp_path: Path) -> None:
    for name in ("empty.csv", "empty.jsonl", "empty.txt"):
        (tmp_path / name).write_text("\n\n", encoding="utf-8")
        assert read(tmp_path / name) == []


def test_json_array_gets_a_hint(tmp_path: Path) -> None:
    manifest = tmp_path / "export.json"
    manifest.write_text('[{"uri": "a.jpg"}]', encoding="utf-8")
    assert errors(manifest) == [
        "export.json: this is a JSON array; write one JSON object per line (JSONL) instead"
    ]


# --- taken_at and title ---------------------------------------------------------------------


def test_taken_at_is_iso_8601_with_or_without_an_offset_and_title_is_text(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "catalog.jsonl",
        {"uri": "a.jpg", "taken_at": "2019-07-14T16:20:00+02:00", "title": " Bastille Day "},
        {"uri": "b.jpg", "taken_at": "2019-07-14 16:20:05.5Z"},
        {"uri": "c.jpg", "taken_at": "2019-07-14"},
        {"uri": "d.jpg", "taken_at": None, "title": ""},
    )
    a, b, c, d = rows(manifest)

    assert a.taken_at == datetime(2019, 7, 14, 14, 20, tzinfo=UTC)
    assert a.taken_at.utcoffset() == timedelta(hours=2)
    assert a.title == "Bastille Day"
    assert b.taken_at == datetime(2019, 7, 14, 16, 20, 5, 500_000, tzinfo=UTC)
    assert c.taken_at == datetime(2019, 7, 14, tzinfo=UTC)  # no offset: UTC, as for EXIF
    assert (d.taken_at, d.title, d.metadata) == (None, None, {})


NOT_ISO = "'taken_at' is not an ISO 8601 date: "


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"taken_at": "14/07/2019"}, NOT_ISO + "'14/07/2019'"),
        ({"taken_at": "2019-02-30"}, NOT_ISO + "'2019-02-30'"),
        ({"taken_at": 1563114000}, "'taken_at' must be an ISO 8601 date string, got a number"),
        ({"title": ["a"]}, "'title' must be a string, got an array"),
    ],
)
def test_a_bad_date_or_title_fails_its_row_alone(tmp_path: Path, record, message) -> None:
    manifest = write_jsonl(tmp_path / "catalog.jsonl", {"uri": "a.jpg", **record}, {"uri": "b.jpg"})

    found = read(manifest)

    assert str(found[0]).startswith(f"catalog.jsonl line 1: {message}")
    assert isinstance(found[1], ManifestRow)


def test_csv_taken_at_and_title_columns(tmp_path: Path) -> None:
    manifest = tmp_path / "catalog.csv"
    manifest.write_text(
        "uri,taken_at,title\n"
        "a.jpg,2019-07-14T16:20:00-05:00,Fireworks\n"
        "b.jpg,,\n"
        "c.jpg,yesterday,x\n",
        encoding="utf-8",
    )
    a, b, bad = read(manifest)

    assert isinstance(a, ManifestRow) and isinstance(b, ManifestRow)
    assert (a.taken_at, a.title) == (datetime(2019, 7, 14, 21, 20, tzinfo=UTC), "Fireworks")
    assert (b.taken_at, b.title, b.metadata) == (None, None, {})
    assert str(bad).startswith(
        "catalog.csv line 4: 'taken_at' is not an ISO 8601 date: 'yesterday'"
    )
