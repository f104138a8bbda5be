"""`semsql ingest`: read files and URLs into semsql.assets under a tracked job."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice

import psycopg
from psycopg.types.json import Jsonb

from semsql.probe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    Probe,
    ProbeError,
    probe_bytes,
    probe_file,
)
from semsql.sources import Candidate

USER_AGENT = "semsql-ingest"


@dataclass(frozen=True)
class IngestOptions:
    collection: str = "default"
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
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
    errors: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.new + self.updated + self.skipped + self.failed

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def create_job(conn: psycopg.Connection, collection: str, args: dict) -> int:
    job_id = conn.execute(
        "INSERT INTO semsql.jobs (collection, args) VALUES (%s, %s) RETURNING id",
        [collection, Jsonb(args)],
    ).fetchone()[0]
    conn.commit()
    return job_id


def run_ingest(
    conn: psycopg.Connection,
    job_id: int,
    candidates: Iterable[Candidate],
    options: IngestOptions,
    on_progress: Callable[[int], None] = lambda done: None,
) -> IngestSummary:
    """Probe every candidate and store it; one transaction per batch, so a crash keeps the
    batches before it. Per-file problems are recorded on the job, never raised."""
    started = time.monotonic()
    summary = IngestSummary(job_id)
    conn.execute(
        "UPDATE semsql.jobs SET status = 'running', started_at = now() WHERE id = %s", [job_id]
    )
    conn.commit()
    try:
        with ThreadPoolExecutor(options.threads) as pool:
            probed = _probe_all(pool, candidates, options)
            position = 0
            while batch := list(islice(probed, options.batch_size)):
                items = []
                for candidate, result in batch:
                    items.append(_item(position, candidate, result))
                    position += 1
                _store_batch(conn, job_id, options.collection, items, summary)
                on_progress(len(batch))
        conn.execute("UPDATE semsql.jobs SET ingested_at = now() WHERE id = %s", [job_id])
        conn.execute("SELECT semsql.complete_jobs()")
        conn.commit()
    except BaseException as error:
        conn.rollback()
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else str(error)
        conn.execute(
            "UPDATE semsql.jobs SET status = 'failed', error = %s, finished_at = now() "
            "WHERE id = %s",
            [reason, job_id],
        )
        conn.commit()
        raise
    summary.status = conn.execute(
        "SELECT status FROM semsql.jobs WHERE id = %s", [job_id]
    ).fetchone()[0]
    conn.commit()
    summary.seconds = time.monotonic() - started
    return summary


def _probe_all(
    pool: ThreadPoolExecutor, candidates: Iterable[Candidate], options: IngestOptions
) -> Iterator[tuple[Candidate, Probe | ProbeError | None]]:
    """Probe in background threads, in order, with a bounded look-ahead."""

    def probe(candidate: Candidate) -> tuple[Candidate, Probe | ProbeError | None]:
        if candidate.error_code is not None:
            return candidate, None
        try:
            if candidate.path is not None:
                return candidate, probe_file(
                    candidate.path, max_bytes=options.max_bytes, max_pixels=options.max_pixels
                )
            data = fetch_url(
                candidate.uri, max_bytes=options.max_bytes, timeout=options.url_timeout
            )
            return candidate, probe_bytes(data, max_pixels=options.max_pixels)
        except ProbeError as error:
            return candidate, error

    pending = iter(candidates)
    window = [pool.submit(probe, c) for c in islice(pending, options.batch_size * 2)]
    while window:
        head = window.pop(0)
        for candidate in islice(pending, 1):
            window.append(pool.submit(probe, candidate))
        yield head.result()


def fetch_url(url: str, *, max_bytes: int, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ProbeError("too_large", f"{url} is {int(declared)} bytes, over {max_bytes}")
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise ProbeError("unreadable", f"HTTP {error.code} {error.reason} from {url}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ProbeError("unreadable", f"cannot fetch {url}: {reason}") from None
    if len(data) > max_bytes:
        raise ProbeError("too_large", f"{url} is over the {max_bytes}-byte limit")
    return data


def _item(position: int, candidate: Candidate, result: Probe | ProbeError | None) -> dict:
    item: dict = {"position": position, "uri": candidate.uri}
    if result is None:
        return {**item, "error_code": candidate.error_code, "error": candidate.error}
    if isinstance(result, ProbeError):
        return {**item, "error_code": result.code, "error": result.message}
    tags = list(dict.fromkeys([*candidate.tags, *result.keywords]))
    people = list(dict.fromkeys([*candidate.people, *result.persons]))
    metadata = {
        **result.metadata,
        **({"catalog": candidate.metadata} if candidate.metadata else {}),
    }
    return {
        **item,
        "sha256": result.sha256,
        "mime": result.mime,
        "width": result.width,
        "height": result.height,
        "bytes": result.bytes,
        "taken_at": result.taken_at.isoformat() if result.taken_at else None,
        "metadata": metadata,
        "caption": candidate.caption or result.description,
        "tags": tags,
        "people": people,
    }


def _store_batch(
    conn: psycopg.Connection,
    job_id: int,
    collection: str,
    items: list[dict],
    summary: IngestSummary,
) -> None:
    by_position = {item["position"]: item for item in items}
    rows = conn.execute(
        "SELECT * FROM semsql.ingest_batch(%s, %s, %s)",
        [job_id, collection, Jsonb(items, dumps=_dumps)],
    ).fetchall()
    conn.commit()
    for position, outcome, _asset_id, detail in rows:
        setattr(summary, outcome, getattr(summary, outcome) + 1)
        if outcome == "failed":
            item = by_position[position]
            summary.errors.append({"uri": item["uri"], "code": item["error_code"], "error": detail})


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)
