"""Uploaded files: stored under the media folder with sanitised names (never outside it), then
ingested as one job by the same code as `semsql ingest` (semsql.ingest.run_ingest), which
probes them as it probes any file (bombs, non-images, files over the size limit)."""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from semsql import ingest, limits
from semsql.probe import sniff
from semsql.serve.db import Database
from semsql.serve.errors import ApiError
from semsql.serve.settings import ServeSettings
from semsql.sources import Candidate, uri_for_path

log = logging.getLogger("semsql.serve")
UPLOADS = "uploads"
MAX_NAME_LENGTH = 120
CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(filename: str | None) -> str:
    """A file name that is one plain component: the last part of what the client sent,
    letters, digits, '.', '_' and '-' only, no leading dot, bounded."""
    base = re.split(r"[\\/]", filename or "")[-1]
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_name).lstrip(".-_")
    stem, dot, suffix = cleaned.rpartition(".")
    if not dot:
        stem, suffix = cleaned, ""
    suffix = suffix.lower()[:10]
    stem = stem[: MAX_NAME_LENGTH - len(suffix) - 1] or "upload"
    return f"{stem}.{suffix}" if suffix else stem


@dataclass(frozen=True)
class Facts:
    """What the uploader states about every file of the request."""

    caption: str | None = None
    tags: tuple[str, ...] = ()
    people: tuple[str, ...] = ()
    collection: str = "default"


def split_list(text: str | None) -> tuple[str, ...]:
    """Tags or people as a form field gives them: separated by commas or semicolons."""
    return tuple(item.strip() for item in re.split(r"[,;]", text or "") if item.strip())


def check_collection(collection: str) -> str:
    problem = limits.collection_problem(collection)
    if problem is not None:
        raise ApiError(400, f"collection: {problem}")
    return collection


@dataclass(frozen=True)
class Upload:
    filename: str | None
    file: BinaryIO


class Uploads:
    """Stores uploads and runs their ingest jobs in the background, one at a time."""

    def __init__(self, settings: ServeSettings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self._jobs = ThreadPoolExecutor(1, thread_name_prefix="semsql-upload")

    def close(self) -> None:
        self._jobs.shutdown(wait=True)

    def accept(self, uploads: Sequence[Upload], facts: Facts) -> int:
        """Stores the files, opens their job and queues its ingest; returns the job id.
        Refuses the whole request (storing nothing) when it holds no file, too many, a file
        over the size limit, or nothing that looks like an image."""
        if not uploads:
            raise ApiError(400, "no file: send one or more images in the 'files' field")
        if len(uploads) > self.settings.max_files:
            raise ApiError(413, f"{len(uploads)} files, over the {self.settings.max_files} limit")
        heads = [self._checked_head(upload) for upload in uploads]
        if not any(sniff(head)[0] in ("image", "heif") for head in heads):
            kinds = ", ".join(sorted({sniff(head)[1] for head in heads}))
            raise ApiError(415, f"not an image: {kinds}", "send JPEG, PNG, WebP, TIFF, HEIC ...")
        folder = self._new_folder()
        paths = [self._store(upload, folder) for upload in uploads]
        candidates = [
            Candidate(
                uri=uri_for_path(path),
                path=path,
                root=self.settings.media_dir,
                caption=facts.caption or None,
                tags=facts.tags,
                people=facts.people,
            )
            for path in paths
        ]
        options = ingest.IngestOptions(
            collection=facts.collection,
            max_bytes=self.settings.max_file_bytes,
            max_pixels=self.settings.max_pixels,
        )
        args = {"upload": folder.name, "files": [path.name for path in paths]}
        with self.database.writer() as conn:
            job_id = ingest.create_job(conn, facts.collection, args)
        self._jobs.submit(self._ingest, job_id, candidates, options)
        return job_id

    def _checked_head(self, upload: Upload) -> bytes:
        upload.file.seek(0, 2)
        size = upload.file.tell()
        upload.file.seek(0)
        if size > self.settings.max_file_bytes:
            raise ApiError(
                413,
                f"{safe_name(upload.filename)} is {size:,} bytes, over the "
                f"{self.settings.max_file_bytes:,}-byte limit",
            )
        head = upload.file.read(1024)
        upload.file.seek(0)
        return head

    def _new_folder(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        folder = self.settings.media_dir / UPLOADS / f"{stamp}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def _store(self, upload: Upload, folder: Path) -> Path:
        name = safe_name(upload.filename)
        path = folder / name
        stem, suffix = Path(name).stem, Path(name).suffix
        number = 1
        while path.exists():
            path = folder / f"{stem}-{number}{suffix}"
            number += 1
        if not path.resolve().is_relative_to(self.settings.media_dir):
            raise ApiError(400, f"refused file name {upload.filename!r}")  # cannot happen
        with path.open("xb") as out:
            while chunk := upload.file.read(CHUNK):
                out.write(chunk)
        return path

    def _ingest(
        self, job_id: int, candidates: list[Candidate], options: ingest.IngestOptions
    ) -> None:
        try:
            with self.database.writer() as conn:
                ingest.run_ingest(conn, job_id, candidates, options)
        except Exception:  # run_ingest marked the job failed, with the error
            log.exception("ingest of upload job %s failed", job_id)
