"""Catalog manifests: what an existing DAM already knows about its files (JSONL or CSV).

`read_manifest` yields one `ManifestRow` per good row and one `ManifestError` per bad row, and
goes on; a file that cannot be read at all gives a single error at line 0. http(s) URLs are
kept as they are (their scheme in lower case); paths and file: URIs become absolute paths,
relative ones resolved against the manifest's folder (the file need not exist yet); any other
URL scheme fails its row.

JSONL, one object per line:
    {"uri": "2019/beach.jpg", "caption": "...", "tags": ["sea", "sand"] or "sea; sand",
     "people": [...], "taken_at": "2019-07-14T16:20:00+02:00", "title": "...",
     "metadata": {...}}                            ("path" and "file" are aliases of "uri")
CSV (or TSV), header names case-insensitive:
    uri,caption,tags,people,taken_at,title,metadata (tags/people ";"-separated, or "," if no
                                                    ";"; metadata a JSON object; other columns
                                                    go into metadata as strings)

taken_at is ISO 8601: a date, or a date and time with or without a UTC offset (without one it
is taken as UTC, as EXIF dates without an offset are). It and title override the file's own.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from semsql import limits
from semsql.fetch import SCHEMES, opaque_scheme, url_scheme, with_lower_scheme
from semsql.metadata import json_safe
from semsql.xmp import unique_stripped

JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json-lines"})
CSV_SUFFIXES = frozenset({".csv", ".tsv"})
URI_KEYS = ("uri", "path", "file")
KNOWN_KEYS = frozenset({*URI_KEYS, "caption", "tags", "people", "taken_at", "title", "metadata"})

_MISSING_URI = "missing 'uri' (also accepted: 'path', 'file')"
_CHUNK = 1024 * 1024
MAX_NUMBER_DIGITS = 4_300
"""Digits of a JSON integer: Python's own limit for turning text into an int (a longer one
would cost quadratic time); no catalog has a use for more."""


@dataclass(frozen=True, slots=True)
class ManifestRow:
    line: int
    uri: str
    caption: str | None
    tags: tuple[str, ...] = ()
    people: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    """What was cut from the row's metadata (nesting deeper than limits.MAX_METADATA_DEPTH)."""
    taken_at: datetime | None = None
    title: str | None = None


class ManifestError(Exception):
    def __init__(self, line: int, message: str, source: str = "manifest") -> None:
        where = f"{source} line {line}" if line else source
        super().__init__(f"{where}: {message}")
        self.line = line
        self.message = message
        self.source = source


class _RowError(Exception):
    """A problem with one row; becomes a ManifestError with the row's line."""


def read_manifest(path: Path) -> Iterator[ManifestRow | ManifestError]:
    path = Path(path)
    try:
        problem = _utf8_problem(path)
    except OSError as error:
        yield ManifestError(0, f"cannot read: {error.strerror or error}", path.name)
        return
    if problem:
        yield ManifestError(0, problem, path.name)
        return
    folder = Path(os.path.abspath(path.parent))
    with path.open(encoding="utf-8-sig", newline="") as file:
        manifest_format = _format(path, file)
        if manifest_format == "jsonl":
            yield from _read_jsonl(file, folder, path.name)
        elif manifest_format == "csv":
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            yield from _read_csv(file, folder, path.name, delimiter)
        else:
            message = "this is a JSON array; write one JSON object per line (JSONL) instead"
            yield ManifestError(0, message, path.name)


def _utf8_problem(path: Path) -> str | None:
    """Check the whole file before yielding any row, so that a file in another encoding gives
    one clear error rather than some rows and then a failure."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, offset = 1, 0
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                bad_at = error.start
                line += chunk.count(b"\n", 0, max(0, bad_at))
                byte = chunk[bad_at] if 0 <= bad_at < len(chunk) else None
                shown = f"byte 0x{byte:02x}" if byte is not None else "a byte"
                return (
                    f"not UTF-8: {shown} at line {line} (byte offset {offset + max(0, bad_at)})"
                    " cannot be decoded; save the manifest as UTF-8"
                )
            line += chunk.count(b"\n")
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return f"not UTF-8: the file ends inside a multi-byte character (line {line})"
    return None


def _format(path: Path, file: Any) -> str:
    """ "jsonl" or "csv" by extension; otherwise by the first non-blank character."""
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CSV_SUFFIXES:
        return "csv"
    head = file.read(4096)
    file.seek(0)
    first = head.lstrip("\ufeff \t\r\n")[:1]
    return {"{": "jsonl", "[": "json-array"}.get(first, "csv")


# --- JSONL ----------------------------------------------------------------------------------


def _read_jsonl(file: Any, folder: Path, source: str) -> Iterator[ManifestRow | ManifestError]:
    for line_number, text in enumerate(file, start=1):
        if not text.strip():
            continue
        try:
            record = _parse_json(text)
            if not isinstance(record, dict):
                raise _RowError(f"expected a JSON object, got {_json_type(record)}")
            yield _row(line_number, record, folder, extra_values=dict)
        except _RowError as error:
            yield ManifestError(line_number, str(error), source)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except json.JSONDecodeError as error:
        raise _RowError(f"invalid JSON: {error.msg} (column {error.colno})") from None
    except RecursionError:
        raise _RowError("invalid JSON: nested too deeply") from None
    except ValueError as error:  # any other refusal of a value, never the whole manifest
        raise _RowError(f"invalid JSON: {error}") from None


def _parse_int(digits: str) -> int:
    count = len(digits.lstrip("-"))
    if count > MAX_NUMBER_DIGITS:
        raise _RowError(
            f"a number of {count:,} digits (at most {MAX_NUMBER_DIGITS:,} digits are read)"
        )
    return int(digits)


def _reject_constant(name: str) -> Any:
    raise _RowError(f"invalid JSON: {name} is not a JSON number")


def _json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }
    return names.get(type(value), "a number")


# --- CSV ------------------------------------------------------------------------------------


def _read_csv(
    file: Any, folder: Path, source: str, delimiter: str
) -> Iterator[ManifestRow | ManifestError]:
    reader = csv.reader(file, delimiter=delimiter)
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)  # blank lines before the header
    except csv.Error as error:
        yield ManifestError(reader.line_num, f"invalid CSV: {error}", source)
        return
    if header is None:
        return
    header_line = reader.line_num
    columns = [name.strip().lstrip("\ufeff").lower() for name in header]
    if problem := _header_problem(header, columns):
        yield ManifestError(header_line, problem, source)
        return

    previous_end = header_line
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield ManifestError(previous_end + 1, f"invalid CSV: {error}", source)
            if reader.line_num == previous_end:
                return  # the reader cannot move past it
            previous_end = reader.line_num
            continue
        line_number, previous_end = previous_end + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            message = f"row has {len(cells)} fields but the header has {len(columns)}"
            yield ManifestError(line_number, message, source)
            continue
        record: dict[str, Any] = {
            name: cell for name, cell in zip(columns, cells, strict=False) if name
        }
        try:
            if record.get("metadata", "").strip():
                record["metadata"] = _csv_metadata(record["metadata"])
            else:
                record.pop("metadata", None)
            yield _row(line_number, record, folder, extra_values=_non_empty_strings)
        except _RowError as error:
            yield ManifestError(line_number, str(error), source)


def _header_problem(header: list[str], columns: list[str]) -> str | None:
    if not any(name in URI_KEYS for name in columns):
        found = ", ".join(repr(name.strip()) for name in header if name.strip()) or "none"
        return f"no 'uri' column (also accepted: 'path', 'file'); the columns are {found}"
    seen: set[str] = set()
    for original, name in zip(header, columns, strict=True):
        if name and name in seen:
            return f"column {original.strip()!r} appears twice"
        seen.add(name)
    return None


def _csv_metadata(text: str) -> dict[str, Any]:
    try:
        value = _parse_json(text)
    except _RowError as error:
        message = str(error)
        if not message.startswith("invalid JSON: "):
            raise _RowError(f"'metadata' holds {message}") from None
        detail = message.removeprefix("invalid JSON: ")
        raise _RowError(f"'metadata' is not valid JSON: {detail}") from None
    if not isinstance(value, dict):
        raise _RowError(f"'metadata' must be a JSON object, got {_json_type(value)}")
    return value


def _non_empty_strings(extra: dict[str, Any]) -> dict[str, Any]:
    return {key: value.strip() for key, value in extra.items() if value.strip()}


# --- one row, either format -----------------------------------------------------------------


def _row(
    line: int,
    record: dict[str, Any],
    folder: Path,
    *,
    extra_values: Callable[[dict[str, Any]], dict[str, Any]],
) -> ManifestRow:
    metadata = record.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise _RowError(f"'metadata' must be an object, got {_json_type(metadata)}")
    extra = extra_values({key: value for key, value in record.items() if key not in KNOWN_KEYS})
    # Cut before anything walks it: the row's metadata becomes the asset's "catalog", a level
    # below the top of assets.metadata.
    warnings: list[str] = []
    catalog = limits.bound_depth(
        {**extra, **metadata}, limits.MAX_METADATA_DEPTH - 1, warnings, "catalog"
    )
    return ManifestRow(
        line=line,
        uri=_resolve(_uri(record), folder),
        caption=_text(record.get("caption"), "caption"),
        tags=_names(record.get("tags"), "tags"),
        people=_names(record.get("people"), "people"),
        metadata=json_safe(catalog),
        warnings=tuple(warnings),
        taken_at=_taken_at(record.get("taken_at")),
        title=_text(record.get("title"), "title"),
    )


def _uri(record: dict[str, Any]) -> str:
    given = {key: record[key] for key in URI_KEYS if record.get(key) not in (None, "")}
    if not given:
        raise _RowError(_MISSING_URI)
    if len(given) > 1 and len({str(value).strip() for value in given.values()}) > 1:
        names = " and ".join(repr(key) for key in given)
        raise _RowError(f"{names} disagree; give the file once")
    key, value = next(iter(given.items()))
    if not isinstance(value, str):
        raise _RowError(f"{key!r} must be a string, got {_json_type(value)}")
    if not value.strip():
        raise _RowError(_MISSING_URI)
    if "\x00" in value:
        raise _RowError(f"{key!r} contains a NUL character")
    try:
        os.fsencode(value)  # surrogateescape: a JSON "\udce9" is the byte 0xe9 of a file name
    except UnicodeEncodeError as error:
        raise _lone_surrogate(key, value, error) from None
    return value.strip()


def _resolve(uri: str, folder: Path) -> str:
    scheme = url_scheme(uri)
    if scheme is None:
        # abspath normalises ".." without touching the file system: the file may not exist.
        path = os.path.abspath(folder / os.path.expanduser(uri))
        opaque = opaque_scheme(uri)
        if opaque is None or os.path.lexists(path):
            return path  # a path, even one named like "a:b.jpg"
        scheme = opaque
    if scheme in SCHEMES:
        return with_lower_scheme(uri)
    if scheme == "file":
        try:
            return file_uri_path(uri)
        except ValueError as error:
            raise _RowError(str(error)) from None
    raise _RowError(unsupported_scheme(scheme))


def unsupported_scheme(scheme: str) -> str:
    return f"unsupported URL scheme {scheme}: give an http(s) URL, a file:// URI or a path"


def file_uri_path(uri: str) -> str:
    """The absolute local path of a file: URI (file:///a/b.jpg, file://localhost/a/b.jpg or
    file:/a/b.jpg), percent-decoded; ValueError for a URI on another host."""
    parsed = urlsplit(uri)
    if parsed.netloc.lower() not in ("", "localhost"):
        raise ValueError(f"file URI on another host ({parsed.netloc}) cannot be read")
    # surrogateescape keeps names that are not UTF-8 byte-exact (os.fsencode undoes it).
    return os.path.abspath(unquote(parsed.path, errors="surrogateescape"))


def _text(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _RowError(f"{key!r} must be a string, got {_json_type(value)}")
    _check_text(value, key)
    return value.replace("\x00", "").strip() or None


def _taken_at(value: Any) -> datetime | None:
    """ISO 8601 (datetime.fromisoformat's: a date, or a date and time, "T" or a space between,
    seconds and fractions optional, an offset or "Z"); UTC when it has no offset."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise _RowError(f"'taken_at' must be an ISO 8601 date string, got {_json_type(value)}")
    try:
        found = datetime.fromisoformat(value.strip())
    except ValueError:
        shown = value.strip() if len(value) <= 60 else value.strip()[:60] + "..."
        raise _RowError(
            f"'taken_at' is not an ISO 8601 date: {shown!r} (write e.g. 2019-07-14, "
            "2019-07-14T16:20:00 or 2019-07-14T16:20:00+02:00)"
        ) from None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _names(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        _check_text(value, key)
        separator = ";" if ";" in value else ","
        return unique_stripped(value.split(separator))
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        for item in value:
            _check_text(item, key)
        return unique_stripped(value)
    raise _RowError(f"{key!r} must be a list of strings or a ';'-separated string")


def _check_text(value: str, key: str) -> None:
    """JSON can write half of a UTF-16 pair ("\\ud800"), which is no text and cannot be stored."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _lone_surrogate(key, value, error) from None


def _lone_surrogate(key: str, value: str, error: UnicodeEncodeError) -> _RowError:
    char = value[error.start]
    return _RowError(
        f"{key!r} holds a lone surrogate ({char!r} at character {error.start + 1}), which is"
        " not text: the manifest was written from broken UTF-16; write it again"
    )
