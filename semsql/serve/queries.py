"""The parameters of GET /api/search (and of the search page's URL) as a SearchRequest: every
argument of semsql.search, checked here where a mistake is the caller's (400), and the
rule that a text query needs a running `semsql worker` (503)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import Query

from semsql import limits
from semsql.search import SearchRequest
from semsql.serve.errors import ApiError

MAX_K = 1000
MAX_OFFSET = 1_000_000_000
Weight = Annotated[float | None, Query(ge=0, le=100, allow_inf_nan=False)]
Cut = Annotated[float | None, Query(allow_inf_nan=False)]
Seconds = Annotated[
    float | None, Query(ge=0, le=1e9, allow_inf_nan=False, description="A video's length, s.")
]


async def search_parameters(
    query: Annotated[str | None, Query(description="What to find, in words.")] = None,
    article: Annotated[
        str | None, Query(description="An article: its known people, central sentences.")
    ] = None,
    like_asset: Annotated[int | None, Query(ge=1, description="Assets like this one.")] = None,
    tag: Annotated[list[str], Query(description="Tags (repeat the parameter).")] = [],  # noqa: B006
    tags_match: Literal["any", "all"] | None = None,
    emotion: Annotated[list[str], Query(description="Facial emotions.")] = [],  # noqa: B006
    person: Annotated[list[str], Query(description="People shown.")] = [],  # noqa: B006
    people_match: Literal["any", "all"] | None = None,
    collection: str | None = None,
    taken_after: Annotated[str | None, Query(description="ISO 8601 date or time.")] = None,
    taken_before: Annotated[str | None, Query(description="ISO 8601 date or time.")] = None,
    metadata: Annotated[
        str | None, Query(description="A JSON object the asset's metadata contains.")
    ] = None,
    media_type: Literal["image", "video"] | None = None,
    min_duration: Seconds = None,
    max_duration: Seconds = None,
    exclude: Annotated[str | None, Query(description="Push away what this means.")] = None,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    order: Literal["relevance", "newest", "oldest"] = "relevance",
    names: Literal["filter", "boost", "off"] | None = None,
    exact: bool | None = None,
    min_score: Cut = None,
    relative_cut: Annotated[float | None, Query(ge=0, le=1, allow_inf_nan=False)] = None,
    min_text_similarity: Cut = None,
    min_image_similarity: Cut = None,
    image_weight: Weight = None,
    text_weight: Weight = None,
    keyword_weight: Weight = None,
    name_weight: Weight = None,
    exclude_weight: Weight = None,
) -> SearchRequest:
    """Every argument of semsql.search, by its SQL name (tag, emotion and person repeat).
    Async, as it does no I/O: FastAPI would run a plain function in a worker thread."""
    return SearchRequest(
        query=query or None,
        article=article or None,
        like_asset=like_asset,
        tags=tuple(tag),
        tags_match=tags_match,
        emotions=tuple(emotion),
        people=tuple(person),
        people_match=people_match,
        collection=collection or None,
        taken_after=iso_time("taken_after", taken_after),
        taken_before=iso_time("taken_before", taken_before),
        metadata=json_object(metadata),
        media_type=media_type,
        min_duration=None if min_duration is None else timedelta(seconds=min_duration),
        max_duration=None if max_duration is None else timedelta(seconds=max_duration),
        exclude=exclude or None,
        k=k,
        offset=offset,
        order_by=order,
        names=names,
        exact=exact,
        min_score=min_score,
        relative_cut=relative_cut,
        min_text_similarity=min_text_similarity,
        min_image_similarity=min_image_similarity,
        image_weight=image_weight,
        text_weight=text_weight,
        keyword_weight=keyword_weight,
        name_weight=name_weight,
        exclude_weight=exclude_weight,
    )


def iso_time(name: str, text: str | None) -> datetime | None:
    """A date or time as ISO 8601 writes it (2019-07-14, 2019-07-14T16:20:00+02:00); an
    empty field is none."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name}: not an ISO 8601 date or time: {text!r}") from None


def json_object(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise ApiError(400, f"metadata is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "metadata must be a JSON object")
    warnings: list[str] = []
    limits.bound_depth(value, limits.MAX_METADATA_DEPTH, warnings)
    if warnings:
        raise ApiError(400, f"metadata is nested deeper than {limits.MAX_METADATA_DEPTH} levels")
    return value


TEXT_WORKER_MISSING = """
SELECT EXISTS (SELECT 1 FROM semsql.vector_spaces)
   AND NOT EXISTS (SELECT 1 FROM semsql.vector_spaces s JOIN semsql.live_workers() w
                   ON s.space = ANY (w.query_spaces))"""
"""Whether vectors are stored and no running worker embeds a query text for any of their spaces
(semsql.search.registered_spaces and live_query_spaces, in one round trip)."""


def needs_text_worker(request: SearchRequest) -> bool:
    return bool(request.query or request.article or request.exclude)


def no_text_worker() -> ApiError:
    return ApiError(
        503,
        "no `semsql worker` is running to embed the query text",
        "start `semsql worker`, or add partial=true to search by keywords and names alone",
    )


def require_text_worker(conn: psycopg.Connection, request: SearchRequest) -> None:
    """A text (query, article, exclude) needs a running worker to embed it for the stored
    vector spaces: 503 when none runs (partial=true searches by keywords and names alone)."""
    if not needs_text_worker(request):
        return
    missing = conn.execute(TEXT_WORKER_MISSING).fetchone()
    if missing and missing[0]:
        raise no_text_worker()
