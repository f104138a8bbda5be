"""Uploaded files: streamed from the request body straight into a new folder under the media
folder (sanitised names, never outside it; no temporary copy first), and ingested as one job
by the same code as `semsql ingest`, which probes them as it probes any file (bombs,
non-images, files over the size limit). Each file is probed as soon as it is stored and, where
the request allows, stored as an asset while the rest of the body arrives (upload_stream.py);
otherwise the job runs semsql.ingest.run_ingest after the body, with those probes. A request
that is refused (too many files, one over the size limit, no image at all, a malformed body)
leaves nothing behind."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import shutil
import unicodedata
import uuid
import weakref
from collections.abc import AsyncIterable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from semsql import ingest, limits
from semsql.probe import sniff
from semsql.serve.db import Database
from semsql.serve.errors import ApiError
from semsql.serve.settings import ServeSettings
from semsql.serve.upload_stream import StreamedIngest, stream_executor
from semsql.sidecars import is_sidecar
from semsql.sources import SIDECAR, Candidate, uri_for_path

if TYPE_CHECKING:  # defined for type checkers only
    from python_multipart.multipart import MultipartCallbacks

log = logging.getLogger("semsql.serve")
UPLOADS = "uploads"
MAX_NAME_LENGTH = 120
HEAD_BYTES = 1024
WRITE_BUFFER = 1 << 20
"""Bytes a stored file takes in memory before they are written: few system calls per file (the
body comes in chunks of up to 64 KiB)."""
MAX_FIELD_BYTES = 100_000
FILES_FIELD = "files"
FACT_FIELDS = frozenset({"caption", "tags", "people", "collection"})
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


@dataclass
class Received:
    """An upload request's body as it was read: its files stored in `folder` (in order, each
    with its first bytes, to tell whether it looks like an image) and its other fields."""

    folder: Path
    stream: StreamedIngest
    paths: list[Path] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    probes: dict[str, Future[ingest.Outcome]] = field(default_factory=dict)
    """Each stored file's probe, begun as it was stored, by URI."""

    def facts(self) -> Facts:
        get = self.fields.get
        collection = check_collection(get("collection") or "default")
        return Facts(get("caption") or None, split_list(get("tags")), split_list(get("people")),
                     collection)  # fmt: skip

    def discard_probes(self) -> None:
        for probe in self.probes.values():
            probe.cancel()
        self.probes.clear()

    def discard(self) -> None:
        self.stream.abandon()
        self.discard_probes()
        shutil.rmtree(self.folder, ignore_errors=True)


async def receive(content_type: str, body: AsyncIterable[bytes], uploads: Uploads) -> Received:
    """Reads a multipart body as it arrives, each part of the `files` field stored in a new
    folder under the media folder meanwhile (by a thread of its own: the event loop only
    parses), then probed and streamed into its ingest; refuses (and removes what was stored)
    a body with more files than allowed or a file over the size limit as soon as it gets
    there, the rest of the body read and dropped, so that the client gets the answer."""
    _, options = parse_options_header(content_type)
    if not content_type.lower().startswith("multipart/form-data") or b"boundary" not in options:
        raise ApiError(400, "send the images as multipart/form-data in the 'files' field")
    settings = uploads.settings
    received = uploads.new_upload()

    def stored(path: Path) -> None:
        received.probes[uri_for_path(path)] = uploads.probe(path)
        received.stream.add(path)

    store = _FileStore(settings.media_dir, received.folder, stored)
    reader = _PartWriter(received, store, settings)
    parser = MultipartParser(options[b"boundary"], reader.callbacks())
    refusal: ApiError | None = None
    try:
        async for chunk in body:
            if refusal is None:
                try:
                    parser.write(chunk)
                except ApiError as error:
                    refusal = error
                except FormParserError as error:
                    refusal = ApiError(400, f"malformed multipart body: {error}")
                await store.keep_up()
        if refusal is None:
            parser.finalize()
            if reader.in_file:
                refusal = ApiError(400, "malformed multipart body: it ends inside a part")
        await store.finish()
    except BaseException:
        await store.finish(failed=True)
        reader.received.discard()
        raise
    if refusal is not None:
        reader.received.discard()
        raise refusal
    return reader.received


class _FileStore:
    """Opens, writes and closes an upload's files in one thread, in the order asked, so that a
    slow file system holds up neither the event loop nor the reading of the body."""

    BACKLOG = 8 << 20
    """Bytes asked to be written and not written yet, past which reading waits."""

    def __init__(self, media_dir: Path, folder: Path, stored: Callable[[Path], None]) -> None:
        self.folder = folder
        self._stored = stored  # called with each file's path once it is closed
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="semsql-upload-store")
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._last: Future[None] | None = None
        self._asked = 0  # bytes, counted by the event loop
        self._written = 0  # by the thread
        self._finished = False
        self._submit(self._make_folder, media_dir)

    def open(self, path: Path) -> None:
        self._submit(self._open, path)

    def write(self, data: bytes) -> None:
        self._asked += len(data)
        self._submit(self._write, data)

    def close(self) -> None:
        self._submit(self._close)

    async def keep_up(self) -> None:
        if self._asked - self._written > self.BACKLOG and self._last is not None:
            await asyncio.wrap_future(self._last)

    async def finish(self, failed: bool = False) -> None:
        """Waits for what was asked (raising its error unless `failed`); the file left open
        by a body that broke off is closed. Once."""
        if self._finished:
            return
        self._finished = True
        self.close()
        assert self._last is not None
        try:
            await asyncio.wrap_future(self._last)
        except Exception:
            if not failed:
                raise
        finally:
            self._thread.shutdown(wait=False)

    def _submit(self, step: Callable[..., None], *args: Any) -> None:
        previous = self._last

        def run() -> None:
            error = previous.exception() if previous is not None else None
            if error is not None:
                raise error  # the first error stops the rest
            step(*args)

        self._last = self._thread.submit(run)

    def _make_folder(self, media_dir: Path) -> None:
        self.folder.mkdir(parents=True)
        if not self.folder.resolve().is_relative_to(media_dir):
            raise RuntimeError(f"{self.folder} is outside the media folder (a link?)")

    def _open(self, path: Path) -> None:
        self._file = path.open("xb", buffering=WRITE_BUFFER)
        self._path = path

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._written += len(data)

    def _close(self) -> None:
        if self._file is not None and self._path is not None:
            self._file.close()
            self._stored(self._path)
            self._file = self._path = None


class _PartWriter:
    """python-multipart's callbacks: file parts to files, fields to text, limits checked."""

    def __init__(self, received: Received, store: _FileStore, settings: ServeSettings) -> None:
        self.received = received
        self.store = store
        self.settings = settings
        self.in_file = False
        self.size = 0
        self.name = ""
        self.field: bytearray | None = None
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.disposition = b""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self.header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self.disposition, self.field, self.size = b"", None, 0

    def header_end(self) -> None:
        if bytes(self.header_name).lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header_name.clear()
        self.header_value.clear()

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == FILES_FIELD and b"filename" in options:
            count = len(self.received.paths) + 1
            if count > self.settings.max_files:
                raise ApiError(
                    413, f"{count} files or more, over the {self.settings.max_files} limit"
                )
            self.name = safe_name(options[b"filename"].decode("utf-8", "replace"))
            path = unique_path(self.received.folder, self.name, self.received.paths)
            self.store.open(path)
            self.in_file = True
            self.received.paths.append(path)
            self.received.heads.append(b"")
            self.received.stream.file_begins(path, self.received.facts)
        elif name in FACT_FIELDS:
            self.name, self.field = name, bytearray()
        # anything else (another field, a file in another field) is read past, as FastAPI did

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self.size += end - start
        if self.in_file:
            if self.size > self.settings.max_file_bytes:
                raise ApiError(
                    413, f"{self.name} is over the {self.settings.max_file_bytes:,}-byte limit"
                )
            self.store.write(data[start:end])
            head = self.received.heads[-1]
            if len(head) < HEAD_BYTES:
                self.received.heads[-1] = head + data[start : start + HEAD_BYTES - len(head)]
        elif self.field is not None:
            if self.size > MAX_FIELD_BYTES:
                raise ApiError(413, f"{self.name} is over the {MAX_FIELD_BYTES:,}-byte limit")
            self.field.extend(data[start:end])

    def part_end(self) -> None:
        if self.in_file:
            self.store.close()
            self.in_file = False
        elif self.field is not None:
            try:
                self.received.fields[self.name] = self.field.decode()
            except UnicodeDecodeError:
                raise ApiError(400, f"{self.name} is not UTF-8 text") from None
            self.field = None
            self.received.stream.field_arrived()


def folder_name(media_dir: Path) -> Path:
    """A new folder of its own for one upload's files, under the media folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return media_dir / UPLOADS / f"{stamp}-{uuid.uuid4().hex[:8]}"


def unique_path(folder: Path, name: str, taken: list[Path]) -> Path:
    """folder/name, or folder/stem-N.suffix where the upload has one of that name already."""
    path = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 1
    while path in taken:
        path = folder / f"{stem}-{number}{suffix}"
        number += 1
    return path


class Uploads:
    """Probes uploaded files as they are stored, and runs the ingest jobs of received uploads
    in the background, one at a time."""

    PROBE_THREADS = 2

    def __init__(self, settings: ServeSettings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self._jobs = ThreadPoolExecutor(1, thread_name_prefix="semsql-upload")
        self._probes = ThreadPoolExecutor(self.PROBE_THREADS, thread_name_prefix="semsql-probe")
        self._streams = stream_executor()
        self._open_streams: weakref.WeakSet[StreamedIngest] = weakref.WeakSet()
        self._options = ingest.IngestOptions(
            max_bytes=settings.max_file_bytes, max_pixels=settings.max_pixels
        )

    def close(self) -> None:
        # A stream whose request is still being read (a stalled client, as the server is made
        # to stop at once) would wait for its body forever, and this wait with it.
        for stream in list(self._open_streams):
            stream.abandon()
        self._probes.shutdown(wait=True, cancel_futures=True)
        self._streams.shutdown(wait=True)
        self._jobs.shutdown(wait=True)

    def probe(self, path: Path) -> Future[ingest.Outcome]:
        """Begins probing a stored file as its ingest will (the same limits)."""
        candidate = Candidate(uri=uri_for_path(path), path=path, root=self.settings.media_dir)
        return self._probes.submit(ingest.probe_candidate, candidate, self._options)

    def new_upload(self) -> Received:
        """The folder and the streamed ingest of a new upload request."""
        probes: dict[str, Future[ingest.Outcome]] = {}
        stream = StreamedIngest(
            self._streams.submit, self.database, self._options, self._candidate, probes
        )
        self._open_streams.add(stream)
        return Received(folder_name(self.settings.media_dir), stream, probes=probes)

    async def accept(self, received: Received) -> tuple[int, str]:
        """Commits the streamed ingest of a received upload, or (where its body did not allow
        one) opens its job and queues its ingest; returns the job's id and status. Refuses it
        (and removes its files) when it holds no file, nothing that looks like an image, or
        facts that are not valid."""
        try:
            facts = received.facts()
            if not received.paths:
                raise ApiError(400, "no file: send one or more images in the 'files' field")
            if not any(sniff(head)[0] in ("image", "heif") for head in received.heads):
                kinds = ", ".join(sorted({sniff(head)[1] for head in received.heads}))
                hint = "send JPEG, PNG, WebP, TIFF, HEIC ..."
                raise ApiError(415, f"not an image: {kinds}", hint)
        except BaseException:
            received.discard()
            raise
        args = {"upload": received.folder.name, "files": [p.name for p in received.paths]}
        streamed = await received.stream.finish(args)
        if streamed is not None:
            return streamed.job_id, streamed.status
        return await run_in_threadpool(self._ingest_whole, received, facts, args), "pending"

    def _candidate(self, path: Path, facts: Facts) -> Candidate:
        return Candidate(
            uri=uri_for_path(path),
            path=path,
            root=self.settings.media_dir,
            caption=facts.caption,
            tags=facts.tags,
            people=facts.people,
            skip_reason=SIDECAR if is_sidecar(path) else None,
        )

    def _ingest_whole(self, received: Received, facts: Facts, args: dict[str, Any]) -> int:
        try:
            with self.database.writer() as conn:
                job_id = ingest.create_job(conn, facts.collection, args)
        except BaseException:
            received.discard()
            raise
        candidates = [self._candidate(path, facts) for path in received.paths]
        if any(c.skip_reason == SIDECAR for c in candidates):
            # An image probed before its sidecar arrived was probed without it: probe again.
            received.discard_probes()
        options = dataclasses.replace(self._options, collection=facts.collection)
        self._jobs.submit(self._ingest, job_id, candidates, options, received.probes)
        return job_id

    def _ingest(
        self,
        job_id: int,
        candidates: list[Candidate],
        options: ingest.IngestOptions,
        early_probes: dict[str, Future[ingest.Outcome]],
    ) -> None:
        try:
            with self.database.writer() as conn:
                ingest.run_ingest(conn, job_id, candidates, options, early_probes=early_probes)
        except Exception:  # run_ingest marked the job failed, with the error
            log.exception("ingest of upload job %s failed", job_id)
