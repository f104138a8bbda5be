"""What `semsql ingest` was pointed at, turned into a list of candidate files and URLs.

http(s) URLs are taken in any case (their scheme stored in lower case), a file: URI as the
local path it names; any other URL scheme is that item's error.

Folders are walked for image files (by extension, or by --glob); links are followed only while
they stay inside the folder that was given; every problem becomes a candidate carrying its
error, so that the job reports it and goes on. Each file carries its root: the folder given,
a single file's own folder, or a manifest's folder (or --root). Probing opens the file only
beneath that root (semsql.safe_open), and so does the worker, later, from assets.root.

The files a walk passes over are candidates too, carrying the reason they are skipped (counted
on the job by reason): XMP sidecars ("sidecar": read with their image, never assets), videos
without the video extra ("video (needs the video extra)") and any other extension
("unsupported format .dng"). With --glob only the files it matches are taken, and a sidecar
it matches is still a sidecar.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

from PIL import Image

from semsql.fetch import SCHEMES, opaque_scheme, url_scheme, with_lower_scheme
from semsql.heif import HEIF_EXTENSIONS
from semsql.manifest import (
    ManifestError,
    ManifestRow,
    file_uri_path,
    read_manifest,
    unsupported_scheme,
)
from semsql.sidecars import SIDECAR_SUFFIX, is_sidecar

IMAGE_EXTENSIONS = HEIF_EXTENSIONS | frozenset(
    ext
    for ext, fmt in Image.registered_extensions().items()
    if fmt not in {"PDF", "EPS", "PS", "XVTHUMB", "FITS", "HDF5", "GRIB", "BUFR", "MPEG", "HEIF"}
)
VIDEO_EXTENSIONS = frozenset(
    {".mov", ".mp4", ".m4v", ".avi", ".mkv", ".webm", ".mts", ".m2ts", ".3gp", ".wmv",
     ".mpg", ".mpeg", ".insv"}
)  # fmt: skip
SIDECAR = "sidecar"
VIDEO = "video (needs the video extra)"


def skip_reason(path: Path) -> str | None:
    """Why a walk passes over this file unread, or None for an image to probe."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return None
    if suffix == SIDECAR_SUFFIX:
        return SIDECAR
    if suffix in VIDEO_EXTENSIONS:
        return None if _video_available() else VIDEO
    return f"unsupported format {suffix}" if suffix else "unsupported format (no extension)"


@cache
def _video_available() -> bool:
    """Whether PyAV is installed (found, not imported: a walk asks for every file)."""
    return importlib.util.find_spec("av") is not None


@dataclass(frozen=True)
class Candidate:
    uri: str
    path: Path | None = None  # a local file; None for a URL
    root: Path | None = None  # the folder the file must be opened beneath; None for a URL
    error_code: str | None = None
    error: str | None = None
    caption: str | None = None
    tags: tuple[str, ...] = ()
    people: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # what reading it cut, for metadata["metadata_errors"]
    skip_reason: str | None = None  # not read, for this reason (a sidecar, a video, ...)
    taken_at: datetime | None = None  # a manifest's, over the file's own
    title: str | None = None  # a manifest's, over the file's own
    signature: dict[str, Any] | None = None  # semsql.signature's, taken before it is read

    @property
    def states_facts(self) -> bool:
        """Whether it carries facts of its own (a manifest row's) to store with the file."""
        return bool(
            self.caption is not None
            or self.tags
            or self.people
            or self.metadata
            or self.warnings
            or self.taken_at is not None
            or self.title is not None
        )


def is_url(text: str) -> bool:
    """Whether `text` is an http(s) URL (the scheme in any case)."""
    return url_scheme(text) in SCHEMES


def uri_for_path(path: Path) -> str:
    """The absolute path as text; a percent-encoded file:// URI when the name is not UTF-8."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "file://" + quote(os.fsencode(path), safe="/")
    return text


def path_for_uri(uri: str) -> Path | None:
    """The local file behind a uri, or None for a URL."""
    if uri[:7].lower() == "file://":
        return Path(os.fsdecode(unquote_to_bytes(uri[len("file://") :])))
    if is_url(uri):
        return None
    return Path(uri)


def failed(uri: str, code: str, message: str) -> Candidate:
    return Candidate(uri=uri, error_code=code, error=message)


def url_problem(url: str) -> str | None:
    """Why an http(s) URL cannot be fetched as written, or None."""
    for position, char in enumerate(url):
        if char.isspace() or not " " < char <= "~":
            shown = "a space" if char == " " else repr(char)
            return f"the URL has {shown} at character {position + 1}: percent-encode it"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as error:
        return f"malformed URL: {error}"
    if not parts.hostname:
        return "the URL has no host"
    return None


def url_candidate(url: str, **facts: Any) -> Candidate:
    problem = url_problem(url)
    if problem is not None:
        return failed(url, "bad_url", problem)
    return Candidate(uri=url, **facts)


def iter_candidates(
    sources: list[str], *, recursive: bool = False, pattern: str | None = None
) -> Iterator[Candidate]:
    for source in sources:
        scheme = url_scheme(source)
        if scheme is None and not os.path.lexists(source):
            scheme = opaque_scheme(source)  # data:..., mailto:...; not a file of that name
        if scheme in SCHEMES:
            yield url_candidate(with_lower_scheme(source))
            continue
        if scheme == "file":  # that local path, as if it were given
            try:
                source = file_uri_path(source)
            except ValueError as error:
                yield failed(source, "bad_url", str(error))
                continue
        elif scheme is not None:
            yield failed(source, "bad_url", unsupported_scheme(scheme))
            continue
        path = Path(os.path.abspath(source))
        try:
            info = path.stat()
        except FileNotFoundError:
            message = "broken link" if path.is_symlink() else "no such file or folder"
            yield failed(uri_for_path(path), "not_found", message)
            continue
        except OSError as error:
            yield failed(uri_for_path(path), "unreadable", error.strerror or str(error))
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _walk(path, path, path.resolve(), recursive=recursive, pattern=pattern)
        elif is_sidecar(path):
            yield Candidate(uri=uri_for_path(path), skip_reason=SIDECAR)
        else:
            yield Candidate(uri=uri_for_path(path), path=path, root=path.parent)


def _walk(
    folder: Path, given: Path, root: Path, *, recursive: bool, pattern: str | None
) -> Iterator[Candidate]:
    """The files of `folder`, which lies in `given` (the folder named), resolved as `root`."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        yield failed(uri_for_path(folder), "unreadable", f"cannot list folder: {error.strerror}")
        return
    for entry in entries:
        path = Path(entry.path)
        uri = uri_for_path(path)
        if entry.is_symlink():
            try:
                target = path.resolve(strict=True)
            except (FileNotFoundError, RuntimeError):
                if _wanted(path, root, pattern):
                    yield failed(uri, "broken_link", f"link to {os.readlink(path)} leads nowhere")
                continue
            if not target.is_relative_to(root):
                if target.is_dir() or _wanted(path, root, pattern):
                    yield failed(uri, "outside_root", f"link leaves {root} (to {target})")
                continue
            if target.is_dir():
                continue  # reached through its real path; following it could loop
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk(path, given, root, recursive=True, pattern=pattern)
        elif pattern is None:
            reason = skip_reason(path)
            yield Candidate(uri=uri, path=path, root=given, skip_reason=reason)
        elif _matches(path, root, pattern):
            sidecar = SIDECAR if is_sidecar(path) else None
            yield Candidate(uri=uri, path=path, root=given, skip_reason=sidecar)


def _wanted(path: Path, root: Path, pattern: str | None) -> bool:
    if pattern is None:
        return path.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    return _matches(path, root, pattern)


def _matches(path: Path, root: Path, pattern: str) -> bool:
    relative = os.fsdecode(os.path.relpath(path, root))
    return fnmatch.fnmatch(path.name, pattern) or fnmatch.fnmatch(relative, pattern)


def iter_manifest_candidates(manifest: Path, *, root: Path | None = None) -> Iterator[Candidate]:
    """Rows of a catalog manifest; local files must lie inside root (default: its folder)."""
    given = Path(os.path.abspath(root or manifest.parent))
    allowed = given.resolve()
    for row in read_manifest(manifest):
        if isinstance(row, ManifestError):
            yield failed(f"{manifest}:{row.line}", "manifest", str(row))
            continue
        yield _manifest_candidate(row, given, allowed)


def _manifest_candidate(row: ManifestRow, given: Path, allowed: Path) -> Candidate:
    facts: dict[str, Any] = {
        "caption": row.caption,
        "tags": row.tags,
        "people": row.people,
        "metadata": row.metadata,
        "warnings": row.warnings,
        "taken_at": row.taken_at,
        "title": row.title,
    }
    if is_url(row.uri):
        return url_candidate(row.uri, **facts)
    path = Path(row.uri)
    try:
        resolved = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        return failed(uri_for_path(path), "not_found", "no such file (from the manifest)")
    if not resolved.is_relative_to(allowed):
        return failed(uri_for_path(path), "outside_root", f"outside {allowed} (use --root)")
    return Candidate(uri=uri_for_path(path), path=path, root=given, **facts)
