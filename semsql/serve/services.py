"""What both the API and the pages do: search, look-alikes of an upload, an asset's facts with
its look-alikes. Each calls semsql.search / similar / similar_to through semsql.search's
statement builders; nothing here ranks anything itself."""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from semsql.decode import InputError
from semsql.probe import ProbeError, ProbeSkipped, probe_bytes
from semsql.search import (
    SearchHit,
    SearchRequest,
    SimilarHit,
    SimilarRequest,
    image_file_hashes,
    run_search,
    run_similar,
)
from semsql.serve import date_facets, facts
from semsql.serve.errors import ApiError, database_error
from semsql.serve.queries import require_text_worker

PROBE_STATUS = {"too_large": 413, "decompression_bomb": 413, "not_an_image": 415}


@dataclass(frozen=True)
class Found:
    hits: list[SearchHit] | list[SimilarHit]
    notices: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"hits": [hit_dict(hit) for hit in self.hits], "notices": self.notices}


_HIT_FIELDS = {
    kind: tuple(item.name for item in dataclasses.fields(kind)) for kind in (SearchHit, SimilarHit)
}


def hit_dict(hit: SearchHit | SimilarHit) -> dict[str, Any]:
    """A hit as JSON gives it: a video's best_at in seconds. Its fields as they are (numbers,
    texts, lists of texts): dataclasses.asdict would copy each of them deeply."""
    found = {name: getattr(hit, name) for name in _HIT_FIELDS[type(hit)]}
    found["best_at"] = None if hit.best_at is None else hit.best_at.total_seconds()
    return found


def search(conn: psycopg.Connection, request: SearchRequest, partial: bool = False) -> Found:
    if not partial:
        require_text_worker(conn, request)
    hits, notices = run_search(conn, request)
    return Found(hits, notices)


FACET_WINDOW = 500
"""How many of a search's results (from the first) its facets count."""
FACET_VALUES = {"tag": 30, "person": 30, "emotion": 12, "collection": 30, "media_type": 2}


KNOBS = frozenset({
    "k", "offset", "order_by", "exact", "names", "tags_match", "people_match", "query_space",
    "min_score", "relative_cut", "min_text_similarity", "min_image_similarity",
    "image_weight", "text_weight", "keyword_weight", "name_weight", "exclude_weight",
})  # fmt: skip
"""SearchRequest fields that rank or page what the others find (or cut it by score, which
needs something to score by); every other field is a text, an example or a filter."""


def narrows(request: SearchRequest) -> bool:
    """Whether a request asks for less than the whole library (a text, an example, a filter:
    any field of SearchRequest but the KNOBS)."""
    return any(
        _given(getattr(request, item.name))
        for item in dataclasses.fields(request)
        if item.name not in KNOBS
    )


def _given(value: Any) -> bool:
    """Set, as SearchRequest.arguments() sees it: not None, not an empty tuple or list."""
    return value is not None and not (isinstance(value, tuple | list) and not value)


def result_facets(conn: psycopg.Connection, request: SearchRequest) -> dict[str, Any]:
    """The filter values of a search's results, with how many of them have each: counted over
    its first FACET_WINDOW results (the same semsql.search call from offset 0), or over the
    whole library when the request narrows nothing. `counted`: how many results were counted,
    `complete`: whether they are all of them."""
    if not narrows(request):
        counts: dict[str, Any] = facts.facets(conn)
        return {**counts, "counted": None, "complete": True}
    hits, _ = run_search(conn, replace(request, k=FACET_WINDOW, offset=0))
    counted: dict[str, Counter[str]] = {name: Counter() for name in FACET_VALUES}
    for hit in hits:
        counted["tag"].update(set(hit.tags))
        counted["person"].update(set(hit.people))
        counted["emotion"].update(set(hit.emotions))
        counted["media_type"][hit.media_type] += 1
    counted["collection"].update(facts.collections_of(conn, [hit.asset_id for hit in hits]))
    result: dict[str, Any] = {
        name: _top(values, FACET_VALUES[name]) for name, values in counted.items()
    }
    result["date"] = date_facets.of_results((hit.taken_at for hit in hits), request)
    return {**result, "counted": len(hits), "complete": len(hits) < FACET_WINDOW}


def _top(counts: Counter[str], n: int) -> list[dict[str, Any]]:
    """The n values found most often (then alphabetically), with their counts."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0].lower(), item[0]))
    return [{"value": value, "assets": found} for value, found in ranked[:n]]


def with_chosen(facets: dict[str, Any], request: SearchRequest) -> dict[str, Any]:
    """The facets with every value the request filters on, counted 0 when no result has it
    (so that the page can still offer to take the filter off)."""
    chosen = {
        "tag": request.tags,
        "person": request.people,
        "emotion": request.emotions,
        "collection": [request.collection] if request.collection else [],
        "media_type": [request.media_type] if request.media_type else [],
    }
    shown = dict(facets)
    for name, values in chosen.items():
        present = {str(facet["value"]).lower() for facet in facets.get(name, [])}
        missing = [{"value": v, "assets": 0} for v in values if v.lower() not in present]
        shown[name] = [*facets.get(name, []), *missing]
    return shown


def asset_with_similar(conn: psycopg.Connection, asset_id: int, k: int = 12) -> dict[str, Any]:
    """An asset's facts, and its look-alikes by meaning and by content (each index alone, so
    the page can show both; either may be missing, with a note)."""
    result = facts.asset(conn, asset_id)
    result["similar"] = {}
    result["notices"] = []
    for by in ("semantic", "content"):
        try:
            hits, notices = run_similar(conn, SimilarRequest(like_asset=asset_id, k=k, by=by))
        except psycopg.Error as error:
            known = database_error(error)
            if known is None:
                raise
            hits, notices = [], [known.message]
        result["similar"][by] = [hit_dict(hit) for hit in hits]
        result["notices"].extend(notices)
    return result


@functools.cache
def _clip_encoder() -> Any:
    """The configured CLIP model (SEMSQL_MODEL_CLIP), loaded once per process."""
    from semsql.search import load_encoder

    return load_encoder("image")


def similar_to_upload(
    conn: psycopg.Connection,
    data: bytes,
    request: SimilarRequest,
    max_pixels: int,
) -> Found:
    """Look-alikes of an uploaded image that need not be stored: its content hashes (no model)
    and its CLIP vector (when this process can load the CLIP model), by request.by."""
    try:
        probe_bytes(data, max_pixels=max_pixels)
    except ProbeError as error:
        raise ApiError(PROBE_STATUS.get(error.code, 400), str(error)) from None
    except ProbeSkipped as error:
        raise ApiError(415, str(error)) from None
    by = request.by or "both"
    notices: list[str] = []
    handle, name = tempfile.mkstemp(suffix=".upload")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        hashes = image_file_hashes(path) if by != "semantic" else None
        vector = None
        if by != "content":
            vector, problem = _image_vector(path)
            if problem is not None and by == "semantic":
                raise ApiError(503, f"cannot embed the image here: {problem}")
            if problem is not None:
                notices.append(f"by content alone: no CLIP vector here ({problem})")
                hashes = hashes or image_file_hashes(path)
                by = "content"
    except InputError as error:
        raise ApiError(415, str(error)) from None
    finally:
        path.unlink(missing_ok=True)
    asked = replace(request, by=by, content_hashes=hashes, image_embedding=vector)
    if by != "both":
        asked = replace(asked, priority=None, split=None)
    hits, said = run_similar(conn, asked)
    return Found(hits, notices + said)


def _image_vector(path: Path) -> tuple[Any, str | None]:
    """The CLIP vector of a file, or why there is none (no models extra, no model)."""
    from PIL import Image

    try:
        encoder = _clip_encoder()
    except ModuleNotFoundError as error:
        return None, f"{error.name} is not installed (pip install 'semsql[models]')"
    except Exception as error:  # ModelLoadError: says why and how to fix it
        return None, str(error)
    with Image.open(path) as image:
        image.load()
        return encoder.encode_images([image.convert("RGB")])[0], None


def retry_failed_reason(
    conn: psycopg.Connection, stage: str, error: str | None, until: datetime | None = None
) -> int:
    """Queues again the failed tasks of one stage whose error has this one's reason
    (semsql.failure_reason; None: with no error), that failed at `until` or before (the group
    as GET /api/tasks/failed showed it), through semsql.requeue_tasks, and refreshes their
    assets' status; returns how many. 400 for an unknown stage, 404 when none is left."""
    failed = conn.execute(
        """SELECT asset_id FROM semsql.tasks
           WHERE status = 'failed' AND stage = %(stage)s
             AND coalesce(semsql.failure_reason(last_error), '')
                 = coalesce(semsql.failure_reason(%(error)s), '')
             AND (%(until)s::timestamptz IS NULL OR finished_at IS NULL
                  OR finished_at <= %(until)s::timestamptz)
           ORDER BY asset_id FOR UPDATE""",
        {"stage": stage, "error": error, "until": until},
    ).fetchall()
    if not failed:
        known = conn.execute("SELECT 1 FROM semsql.stages WHERE name = %s", [stage]).fetchone()
        if known is None:
            raise ApiError(400, f"no stage is named {stage!r}")
        raise ApiError(404, f"no {stage} task failed for this reason (retried already?)")
    asset_ids = [row[0] for row in failed]
    queued = conn.execute(
        "SELECT semsql.requeue_tasks(%s::bigint[], ARRAY[%s::text])", [asset_ids, stage]
    ).fetchone()
    conn.execute("SELECT semsql.refresh_asset_status(%s::bigint[])", [asset_ids])
    return int(queued[0]) if queued else 0
