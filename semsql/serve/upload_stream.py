"""An upload ingested while its body still arrives: each file, once stored (and probed), is
stored as an asset in one open transaction with its job, committed when the whole request
has been accepted and rolled back when it is refused. So the answer comes soon after the last
byte, and a refused request still leaves nothing behind.

The facts of the request (caption, tags, people, collection) are those sent before its first
file. A fact field after the files, or an XMP sidecar (which its image must be read with),
abandons the stream: the request is then ingested after its body, as before."""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from semsql import ingest
from semsql.database import fetch_value
from semsql.serve.db import Database
from semsql.sidecars import is_sidecar
from semsql.sources import Candidate

if TYPE_CHECKING:
    from semsql.serve.uploads import Facts

log = logging.getLogger("semsql.serve")


@dataclass(frozen=True)
class _End:
    args: dict[str, Any]


_ABANDON = object()
_GIVE_WAY = object()

CHECK_EVERY = 0.5
"""Seconds between two looks, by an open stream, at whether its transaction holds up another
(an upload of the same bytes waits on the unique key of its asset, `semsql ingest` too)."""

STALL_LIMIT = 10.0
"""Seconds an open stream waits for its next file before it gives way all the same: a stalled
client must not keep a writer connection and an open transaction for as long as it likes."""


class StreamedIngest:
    """One upload's ingest as its files arrive. The event loop calls file_begins and
    field_arrived as it parses, the store thread add as each file is closed, and the handler
    finish or abandon once the body is read."""

    def __init__(
        self,
        run: Callable[[Callable[[], None]], Future[None]],
        database: Database,
        options: ingest.IngestOptions,
        candidate: Callable[[Path, Facts], Candidate],
        early_probes: Mapping[str, Future[ingest.Outcome]],
    ) -> None:
        self._run = run
        self._database = database
        self._options = options
        self._candidate = candidate  # (path, facts) -> the Candidate to ingest
        self._early_probes = early_probes
        self._facts: Facts | None = None
        self._messages: queue.SimpleQueue[Path | _End | object] = queue.SimpleQueue()
        self._job: Future[None] | None = None
        self._summary: ingest.IngestSummary | None = None
        self._next_check = 0.0
        self._last_message = time.monotonic()
        self.abandoned = False

    @property
    def live(self) -> bool:
        return self._job is not None and not self.abandoned

    def file_begins(self, path: Path, facts: Callable[[], Facts]) -> None:
        """A file part starts: the first one starts the stream with the facts sent so far
        (none where they are not valid: the request will be refused after its body)."""
        if self.abandoned:
            return
        if is_sidecar(path):
            self.abandon()
        elif self._job is None:
            try:
                self._facts = facts()
            except Exception:
                self.abandoned = True
                return
            self._options = replace(self._options, collection=self._facts.collection)
            self._job = self._run(self._ingest)

    def field_arrived(self) -> None:
        """A fact field came after a file: the files stored so far lack it."""
        if self._job is not None:
            self.abandon()

    def add(self, path: Path) -> None:
        """A file is stored (called from the thread that writes them)."""
        if self.live:
            self._messages.put(path)

    def abandon(self) -> None:
        """Stops the stream; what it stored is rolled back."""
        if not self.abandoned:
            self.abandoned = True
            self._messages.put(_ABANDON)
            if self._job is not None:
                self._job.cancel()  # where it still waits its turn, it never starts

    async def finish(self, args: dict[str, Any]) -> ingest.IngestSummary | None:
        """Commits the job and its assets; what was ingested, or None where the stream had
        been abandoned, had given way or failed (the caller then ingests the request as a whole)."""
        if not self.live or self._job is None:
            return None
        if self._job.cancel():  # still waiting behind another upload's stream: not worth it
            return None
        self._messages.put(_End(args))
        try:
            await asyncio.wrap_future(self._job)
        except Exception:
            log.exception("the streamed ingest of an upload failed; ingesting it again")
            return None
        return self._summary

    def _ingest(self) -> None:
        with self._database.writer() as conn:
            atomic = ingest.AtomicIngest(conn, self._options, self._early_probes)
            try:
                while True:
                    taken = self._next(conn)
                    if _GIVE_WAY in taken:
                        # A body that is slow or stalled must not hold others up for as long
                        # as it takes: the request is ingested as a whole after its body.
                        log.info("an upload's stream gives way to a transaction it held up")
                        atomic.rollback()
                        return
                    if _ABANDON in taken:
                        atomic.rollback()
                        return
                    paths = [item for item in taken if isinstance(item, Path)]
                    if paths and self._facts is not None:
                        atomic.add([self._candidate(path, self._facts) for path in paths])
                    ends = [item for item in taken if isinstance(item, _End)]
                    if ends:
                        self._summary = atomic.commit(ends[0].args)
                        return
            except BaseException:
                atomic.rollback()
                raise

    def _next(self, conn: psycopg.Connection) -> list[Path | _End | object]:
        """The messages queued (waiting for one), or [_GIVE_WAY] once the transaction is seen
        to hold up another's, or no file came for STALL_LIMIT seconds."""
        while True:
            wait = self._next_check - time.monotonic()
            if wait <= 0:
                stalled = time.monotonic() - self._last_message > STALL_LIMIT
                if stalled or fetch_value(conn, "SELECT semsql.holds_up_others()"):
                    return [_GIVE_WAY]
                self._next_check = time.monotonic() + CHECK_EVERY
                continue
            try:
                taken = [self._messages.get(timeout=wait)]
            except queue.Empty:
                continue
            while not self._messages.empty():
                taken.append(self._messages.get())
            self._last_message = time.monotonic()
            return taken


def stream_executor() -> ThreadPoolExecutor:
    """Where streamed ingests run: one at a time, as each holds a writer connection for as
    long as its body takes. A second upload's stream waits, its files queued meanwhile; where
    its body ends first, it is ingested as a whole instead."""
    return ThreadPoolExecutor(1, thread_name_prefix="semsql-upload-stream")
