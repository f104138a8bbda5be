"""The parameters of GET /api/search (and of the search page's URL) as a SearchRequest: every
argument of semsql.search, checked here where a mistake is the caller's (400), and the
rule that a text query needs a running `semsql worker` (503)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl

import psycopg
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import QueryParams

from semsql import limits
from semsql.search import SearchRequest
from semsql.serve.errors import ApiError

MAX_K = 1000
MAX_OFFSET = 1_000_000_000
Weight = Annotated[float | None, Field(ge=0, le=100, allow_inf_nan=False)]
Cut = Annotated[float | None, Field(allow_inf_nan=False)]
Seconds = Annotated[
    float | None, Field(ge=0, le=1e9, allow_inf_nan=False, description="A video's length, s.")
]
LIST_PARAMETERS = frozenset({"tag", "emotion", "person"})


class SearchQuery(BaseModel):
    """Every argument of semsql.search, by its SQL name (tag, emotion and person repeat), as
    the query string gives them. Validated as one model, by search_request: FastAPI checks
    declared query parameters one by one, which cost more than the search's own Python."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    query: str | None = Field(None, description="What to find, in words.")
    article: str | None = Field(
        None, description="An article: its known people, central sentences."
    )
    like_asset: int | None = Field(None, ge=1, description="Assets like this one.")
    tag: list[str] = Field([], description="Tags (repeat the parameter).")
    tags_match: Literal["any", "all"] | None = None
    emotion: list[str] = Field([], description="Facial emotions.")
    person: list[str] = Field([], description="People shown.")
    people_match: Literal["any", "all"] | None = None
    collection: str | None = None
    taken_after: str | None = Field(None, description="ISO 8601 date or time.")
    taken_before: str | None = Field(None, description="ISO 8601 date or time.")
    metadata: str | None = Field(None, description="A JSON object the asset's metadata contains.")
    media_type: Literal["image", "video"] | None = None
    min_duration: Seconds = None
    max_duration: Seconds = None
    exclude: str | None = Field(None, description="Push away what this means.")
    k: int = Field(20, ge=1, le=MAX_K)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    order: Literal["relevance", "newest", "oldest"] = "relevance"
    names: Literal["filter", "boost", "off"] | None = None
    exact: bool | None = None
    min_score: Cut = None
    relative_cut: Annotated[float | None, Field(ge=0, le=1, allow_inf_nan=False)] = None
    min_text_similarity: Cut = None
    min_image_similarity: Cut = None
    image_weight: Weight = None
    text_weight: Weight = None
    keyword_weight: Weight = None
    name_weight: Weight = None
    exclude_weight: Weight = None

    def request(self) -> SearchRequest:
        return SearchRequest(
            query=self.query or None,
            article=self.article or None,
            like_asset=self.like_asset,
            tags=tuple(self.tag),
            tags_match=self.tags_match,
            emotions=tuple(self.emotion),
            people=tuple(self.person),
            people_match=self.people_match,
            collection=self.collection or None,
            taken_after=iso_time("taken_after", self.taken_after),
            taken_before=iso_time("taken_before", self.taken_before),
            metadata=json_object(self.metadata),
            media_type=self.media_type,
            min_duration=None
            if self.min_duration is None
            else timedelta(seconds=self.min_duration),
            max_duration=None
            if self.max_duration is None
            else timedelta(seconds=self.max_duration),
            exclude=self.exclude or None,
            k=self.k,
            offset=self.offset,
            order_by=self.order,
            names=self.names,
            exact=self.exact,
            min_score=self.min_score,
            relative_cut=self.relative_cut,
            min_text_similarity=self.min_text_similarity,
            min_image_similarity=self.min_image_similarity,
            image_weight=self.image_weight,
            text_weight=self.text_weight,
            keyword_weight=self.keyword_weight,
            name_weight=self.name_weight,
            exclude_weight=self.exclude_weight,
        )


class ApiSearchQuery(SearchQuery):
    partial: bool = Field(
        False, description="Without a worker: search by keywords and names alone."
    )


Q = TypeVar("Q", bound=SearchQuery)


def parse_query(model: type[Q], params: QueryParams | bytes) -> Q:
    """The model of a query string (the last value of a parameter given twice, as FastAPI
    takes it; unknown parameters ignored); 400 with every problem, as the app's handler of
    invalid requests says them. `params` as Starlette parsed them, or the raw query string
    (an ASGI scope's), parsed as Starlette parses it."""
    pairs = (
        parse_qsl(params.decode("latin-1"), keep_blank_values=True)
        if isinstance(params, bytes)
        else params.multi_items()
    )
    fields = model.model_fields
    given: dict[str, Any] = {}
    for name, value in pairs:
        if name in LIST_PARAMETERS:
            given.setdefault(name, []).append(value)
        elif name in fields:
            given[name] = value
    try:
        return model.model_validate(given)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        ]
        raise ApiError(400, "; ".join(problems)) from None


def openapi_parameters(model: type[SearchQuery]) -> list[dict[str, Any]]:
    """The query parameters of a model as OpenAPI lists them (for routes that parse it)."""
    properties = model.model_json_schema()["properties"]
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {key: value for key, value in schema.items() if key != "description"},
            **({"description": schema["description"]} if "description" in schema else {}),
        }
        for name, schema in properties.items()
    ]


async def search_parameters(request: Request) -> SearchRequest:
    """The dependency of the routes that take a search's parameters (async, as it does no I/O:
    FastAPI runs a plain function in a worker thread)."""
    return parse_query(SearchQuery, request.query_params).request()


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
