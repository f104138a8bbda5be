"""`semsql ingest`: read files and URLs into semsql.assets under a tracked job."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from semsql import limits
from semsql.database import fetch_value
from semsql.fetch import FetchError, TooLarge, abort_downloads, fetch
from semsql.metadata import json_safe
from semsql.probe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_PIXELS,
    Probe,
    ProbeError,
    ProbeSkipped,
    probe_bytes,
    probe_file,
)
from semsql.signature import file_signature
from semsql.sources import Candidate, uri_for_path

USER_AGENT = "semsql-ingest"
ABANDONED = "interrupted: its ingest stopped"
"""The error of a job whose `semsql ingest` died before it had read every file."""
UNCHANGED = "unchanged"
"""The skip reason of a file whose asset already holds it."""

# The connection's backend, recorded on its job: once that backend is gone, so is the ingest.
_THIS_BACKEND = """backend_pid = pg_backend_pid(), backend_start = (
    SELECT a.backend_start FROM pg_stat_activity a WHERE a.pid = pg_backend_pid())"""


class Interrupted(KeyboardInterrupt):
    """A signal (SIGTERM, SIGINT) that stops an ingest, raised in the main thread as Ctrl-C
    raises KeyboardInterrupt: psycopg answers either by cancelling the statement in progress."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name

    def __str__(self) -> str:
        return self.signal_name


@dataclass(frozen=True)
class IngestOptions:
    collection: str = "default"
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_duration: float | None = DEFAULT_MAX_DURATION
    batch_size: int = 200
    threads: int = 4
    url_timeout: float = 30.0


@dataclass
class IngestSummary:
    job_id: int
    status: str = "running"
    new: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    """Skipped files by reason: "unchanged", "duplicate", "sidecar", "unsupported format .dng",
    "video (needs the video extra)", "heic without the heif extra"."""
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.new + self.updated + self.skipped + self.failed

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def create_job(conn: psycopg.Connection, collection: str, args: dict[str, Any]) -> int:
    job_id: int = fetch_value(
        conn,
        "INSERT INTO semsql.jobs (collection, args, backend_pid, backend_start)"
        " SELECT %s, %s, a.pid, a.backend_start FROM pg_stat_activity a"
        " WHERE a.pid = pg_backend_pid() RETURNING id",
        [collection, Jsonb(args)],
    )
    conn.commit()
    return job_id


def fail_abandoned_jobs(conn: psycopg.Connection) -> list[int]:
    """Marks failed (ABANDONED) every pending or running job whose files were not all read
    and whose ingest's connection is gone: it was killed where it could not say so (SIGKILL,
    a crash, a lost machine). A job whose files were all read is left to complete as its
    assets are enriched. Returns their ids; nothing for a role that may not update jobs."""
    allowed = fetch_value(
        conn,
        "SELECT has_table_privilege('semsql.jobs', 'UPDATE')"
        " AND NOT current_setting('transaction_read_only')::boolean",
    )
    if not allowed:
        conn.commit()
        return []
    ids = [
        row[0]
        for row in conn.execute(
            """UPDATE semsql.jobs j
               SET status = 'failed', error = %s, finished_at = now()
               WHERE j.status IN ('pending', 'running') AND j.ingested_at IS NULL
                 AND j.backend_pid IS NOT NULL
                 AND NOT semsql.backend_alive(j.backend_pid, j.backend_start)
               RETURNING j.id""",
            [ABANDONED],
        )
    ]
    conn.commit()
    return sorted(ids)


def run_ingest(
    conn: psycopg.Connection,
    job_id: int,
    candidates: Iterable[Candidate],
    options: IngestOptions,
    on_progress: Callable[[int], None] = lambda done: None,
    early_probes: Mapping[str, Future[Outcome]] | None = None,
) -> IngestSummary:
    """Probe every candidate and store it; one transaction per batch, so a crash keeps the
    batches before it. Per-file problems are recorded on the job, never raised.
    `early_probes` are probe_candidate's answers begun before the job, by URI (an upload's
    files, probed as they arrived): a candidate to probe that has one takes it."""
    started = time.monotonic()
    summary = IngestSummary(job_id)
    conn.execute(
        f"UPDATE semsql.jobs SET status = 'running', started_at = now(), {_THIS_BACKEND}"
        " WHERE id = %s",
        [job_id],
    )
    conn.commit()
    pool = ThreadPoolExecutor(options.threads)
    try:
        unchanged = _skip_unchanged(conn, candidates, options)
        probed = _probe_all(pool, unchanged, options, early_probes or {})
        position = 0
        while batch := list(islice(probed, options.batch_size)):
            items = []
            for candidate, result in batch:
                items.append(_storable(_item(position, candidate, result)))
                position += 1
            _store_batch(conn, job_id, options.collection, items, summary)
            conn.commit()
            on_progress(len(batch))
        pool.shutdown()
        conn.execute("UPDATE semsql.jobs SET ingested_at = now() WHERE id = %s", [job_id])
        conn.execute("SELECT semsql.complete_jobs()")
        conn.commit()
    except BaseException as error:
        # Probe nothing more; an interrupted ingest stops its downloads too.
        pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(error, KeyboardInterrupt):
            abort_downloads()
        conn.rollback()
        if isinstance(error, KeyboardInterrupt):
            reason = f"interrupted by {error}" if str(error) else "interrupted"
        else:
            reason = str(error)
        conn.execute(
            "UPDATE semsql.jobs SET status = 'failed', error = %s, finished_at = now() "
            "WHERE id = %s",
            [reason, job_id],
        )
        conn.commit()
        raise
    _read_outcome(conn, summary)
    summary.seconds = time.monotonic() - started
    return summary


def _read_outcome(conn: psycopg.Connection, summary: IngestSummary) -> None:
    summary.status, summary.skipped_reasons = conn.execute(
        "SELECT status, skipped_reasons FROM semsql.jobs WHERE id = %s", [summary.job_id]
    ).fetchone() or (summary.status, {})
    conn.commit()


class AtomicIngest:
    """An ingest whose job and assets are committed together, or not at all, for candidates
    that come in batches as they become known (an upload's files, as its body arrives): no
    one sees the job before commit(), and rollback() leaves nothing of it. The caller's
    connection holds the transaction meanwhile. Candidates are probed as run_ingest probes
    them, taking their `early_probes`."""

    def __init__(
        self,
        conn: psycopg.Connection,
        options: IngestOptions,
        early_probes: Mapping[str, Future[Outcome]],
    ) -> None:
        self.conn = conn
        self.options = options
        self.early_probes = early_probes
        job_id: int = fetch_value(
            conn,
            "INSERT INTO semsql.jobs (collection, args, status, started_at, backend_pid,"
            " backend_start) SELECT %s, '{}', 'running', now(), a.pid, a.backend_start"
            " FROM pg_stat_activity a WHERE a.pid = pg_backend_pid() RETURNING id",
            [options.collection],
        )
        self.summary = IngestSummary(job_id)
        self._started = time.monotonic()
        self._position = 0
        self._pool = ThreadPoolExecutor(options.threads)

    def add(self, candidates: list[Candidate]) -> None:
        items = []
        for candidate, result in _probe_all(
            self._pool, candidates, self.options, self.early_probes
        ):
            items.append(_storable(_item(self._position, candidate, result)))
            self._position += 1
        _store_batch(self.conn, self.summary.job_id, self.options.collection, items, self.summary)

    def commit(self, args: dict[str, Any]) -> IngestSummary:
        """Records the job's arguments, and commits it with its assets."""
        self._pool.shutdown()
        self.conn.execute(
            "UPDATE semsql.jobs SET args = %s, ingested_at = clock_timestamp() WHERE id = %s",
            [Jsonb(args), self.summary.job_id],
        )
        self.conn.execute("SELECT semsql.complete_jobs()")
        self.conn.commit()
        _read_outcome(self.conn, self.summary)
        self.summary.seconds = time.monotonic() - self._started
        return self.summary

    def rollback(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.conn.rollback()


def _skip_unchanged(
    conn: psycopg.Connection, candidates: Iterable[Candidate], options: IngestOptions
) -> Iterator[Candidate]:
    """The candidates, each local file to read given its stat signature, and those whose asset
    recorded the same signature marked skipped as unchanged: they are not opened. One query per
    batch. A manifest row that states facts is read as before, since its facts may have changed
    (and ingest_item stores no signature for it)."""
    pending = iter(candidates)
    while batch := list(islice(pending, options.batch_size)):
        signed: list[Candidate] = []
        for candidate in batch:
            if _may_skip_unread(candidate) and candidate.path is not None:
                signature = file_signature(candidate.path)
                candidate = dataclasses.replace(candidate, signature=signature)
            signed.append(candidate)
        files = [
            {"uri": c.uri, "root": uri_for_path(c.root) if c.root else None, "signature": s}
            for c in signed
            if (s := c.signature) is not None
        ]
        unchanged: set[str] = set()
        if files:
            unchanged = {
                row[0]
                for row in conn.execute(
                    "SELECT semsql.unchanged_files(%s, %s, %s, %s)",
                    [options.collection, Jsonb(files), options.max_bytes, options.max_pixels],
                )
            }
            conn.commit()
        for candidate in signed:
            if candidate.signature is not None and candidate.uri in unchanged:
                yield dataclasses.replace(candidate, skip_reason=UNCHANGED)
            else:
                yield candidate


def _may_skip_unread(candidate: Candidate) -> bool:
    """A local file to read, with no facts of its own to store beside it."""
    return (
        candidate.path is not None
        and candidate.error_code is None
        and candidate.skip_reason is None
        and not candidate.states_facts
    )


Outcome = Probe | ProbeError | ProbeSkipped | None
"""What probing a candidate gave; None for a candidate that is not probed (an error or a skip
found before: the candidate says which)."""


def probe_candidate(candidate: Candidate, options: IngestOptions) -> Outcome:
    """Probes one candidate (reads its file or downloads its URL); its problem is its outcome,
    never raised."""
    if candidate.error_code is not None or candidate.skip_reason is not None:
        return None
    try:
        if candidate.path is not None:
            return probe_file(
                candidate.path,
                root=candidate.root,
                max_bytes=options.max_bytes,
                max_pixels=options.max_pixels,
                max_duration=options.max_duration,
            )
        data = fetch_url(candidate.uri, max_bytes=options.max_bytes, timeout=options.url_timeout)
        return probe_bytes(data, max_pixels=options.max_pixels, max_duration=options.max_duration)
    except (ProbeError, ProbeSkipped) as error:
        return error
    except Exception as error:  # one file's surprise is that file's error, not the job's
        detail = f"{type(error).__name__}: {error}"
        return ProbeError("unreadable", f"cannot probe {candidate.uri}: {detail}")


def _probe_all(
    pool: ThreadPoolExecutor,
    candidates: Iterable[Candidate],
    options: IngestOptions,
    early_probes: Mapping[str, Future[Outcome]],
) -> Iterator[tuple[Candidate, Outcome]]:
    """Probe in background threads, in order, with a bounded look-ahead."""

    def submit(candidate: Candidate) -> tuple[Candidate, Future[Outcome]]:
        early = early_probes.get(candidate.uri)
        if early is not None and candidate.error_code is None and candidate.skip_reason is None:
            return candidate, early
        return candidate, pool.submit(probe_candidate, candidate, options)

    pending = iter(candidates)
    window = [submit(c) for c in islice(pending, options.batch_size * 2)]
    while window:
        candidate, outcome = window.pop(0)
        for following in islice(pending, 1):
            window.append(submit(following))
        yield candidate, outcome.result()


def fetch_url(url: str, *, max_bytes: int, timeout: float) -> bytes:
    """The URL's bytes; the timeout bounds the whole download."""
    try:
        return fetch(url, max_bytes=max_bytes, timeout=timeout, user_agent=USER_AGENT)
    except TooLarge as error:
        raise ProbeError("too_large", str(error)) from None
    except FetchError as error:
        raise ProbeError("unreadable", str(error)) from None


def _item(position: int, candidate: Candidate, result: Outcome) -> dict[str, Any]:
    item: dict[str, Any] = {"position": position, "uri": candidate.uri}
    if result is None and candidate.skip_reason is not None:
        return {**item, "skip_reason": candidate.skip_reason, "detail": candidate.skip_reason}
    if result is None:
        return {**item, "error_code": candidate.error_code, "error": candidate.error}
    if isinstance(result, ProbeSkipped):
        return {**item, "skip_reason": result.reason, "detail": result.message}
    if isinstance(result, ProbeError):
        return {**item, "error_code": result.code, "error": result.message}
    size = len(candidate.uri.encode("utf-8", "surrogatepass"))
    if size > limits.MAX_URI_BYTES:
        message = f"the path or URL is {size:,} bytes, over the {limits.MAX_URI_BYTES:,}-byte limit"
        return {**item, "error_code": "uri_too_long", "error": message}
    warnings: list[str] = list(candidate.warnings)
    taken_at = candidate.taken_at or result.taken_at
    facts = limits.bound_facts(
        candidate.caption or result.description,
        dict.fromkeys([*candidate.tags, *result.keywords]),
        dict.fromkeys([*candidate.people, *result.persons]),
        warnings,
    )
    stated = {
        **({"catalog": candidate.metadata} if candidate.metadata else {}),
        **({"title": candidate.title} if candidate.title else {}),
    }
    metadata = limits.bound_metadata({**result.metadata, **stated}, warnings)
    if warnings:
        metadata["metadata_errors"] = limits.bound_warnings(
            [*metadata.get("metadata_errors", []), *warnings]
        )
    return {
        **item,
        "root": uri_for_path(candidate.root) if candidate.root is not None else None,
        "sha256": result.sha256,
        "media_type": result.media_type,
        "duration_ms": result.duration_ms,
        "mime": result.mime,
        "width": result.width,
        "height": result.height,
        "bytes": result.bytes,
        "taken_at": taken_at.isoformat() if taken_at else None,
        "metadata": metadata,
        "caption": facts.caption,
        "tags": list(facts.tags),
        "people": list(facts.people),
        "signature": candidate.signature,
    }


def _storable(item: dict[str, Any]) -> dict[str, Any]:
    """The item, or its failure where some text in it cannot be sent as UTF-8 (a lone
    surrogate that no reader caught): one bad string must not fail the batch."""
    try:
        _dumps(item).encode("utf-8")
    except UnicodeEncodeError as error:
        bad = error.object[error.start : error.end]
        return {
            "position": item["position"],
            "uri": json_safe(item["uri"]),
            "error_code": "bad_text",
            "error": f"holds {bad!r}, which is not text (a lone surrogate) and cannot be stored",
        }
    return item


def _store_batch(
    conn: psycopg.Connection,
    job_id: int,
    collection: str,
    items: list[dict[str, Any]],
    summary: IngestSummary,
) -> None:
    by_position = {item["position"]: item for item in items}
    rows = conn.execute(
        "SELECT * FROM semsql.ingest_batch(%s, %s, %s)",
        [job_id, collection, Jsonb(items, dumps=_dumps)],
    ).fetchall()
    for position, outcome, _asset_id, detail in rows:
        setattr(summary, outcome, getattr(summary, outcome) + 1)
        if outcome == "failed":
            item = by_position[position]
            # No error_code: the database refused the item (ingest_batch says why in detail).
            code = item.get("error_code") or "database"
            summary.errors.append({"uri": item["uri"], "code": code, "error": detail})


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)
