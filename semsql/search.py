"""Calling semsql.search from Python: a request with named arguments, typed results, and query
vectors made on this machine (an image file, or text when no `semsql worker` answers).

    request = SearchRequest(query="children playing in snow", tags=("winter",), k=10)
    hits, notices = run_search(conn, request)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psycopg
from pgvector import Vector
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .stages import space_stage

R = TypeVar("R")

# SQL parameter -> its type, for the explicit casts of the call (a NULL needs no guessing).
PARAMETER_TYPES = {
    "query": "text",
    "query_embedding": "vector",
    "like_asset": "bigint",
    "tags": "text[]",
    "tags_match": "text",
    "emotions": "text[]",
    "people": "text[]",
    "people_match": "text",
    "collection": "text",
    "taken_after": "timestamptz",
    "taken_before": "timestamptz",
    "metadata": "jsonb",
    "exclude": "text",
    "k": "integer",
    "offset": "integer",
    "min_score": "real",
    "relative_cut": "real",
    "order_by": "text",
    "exact": "boolean",
    "image_weight": "real",
    "text_weight": "real",
    "keyword_weight": "real",
    "name_weight": "real",
    "exclude_weight": "real",
    "names": "text",
    "query_space": "text",
    "text_embedding": "vector",
    "image_embedding": "vector",
    "min_text_similarity": "real",
    "min_image_similarity": "real",
    "article": "text",
    "article_summary": "text",
    "media_type": "text",
    "min_duration": "interval",
    "max_duration": "interval",
}


@dataclass(frozen=True)
class SearchRequest:
    """The arguments of semsql.search; None (or an empty tuple) leaves one at its default."""

    query: str | None = None
    query_embedding: Sequence[float] | None = None
    query_space: str | None = None
    text_embedding: Sequence[float] | None = None
    image_embedding: Sequence[float] | None = None
    like_asset: int | None = None
    tags: Sequence[str] = ()
    tags_match: str | None = None
    emotions: Sequence[str] = ()
    people: Sequence[str] = ()
    people_match: str | None = None
    collection: str | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    metadata: Mapping[str, Any] | None = None
    exclude: str | None = None
    k: int | None = None
    offset: int | None = None
    min_score: float | None = None
    relative_cut: float | None = None
    order_by: str | None = None
    exact: bool | None = None
    image_weight: float | None = None
    text_weight: float | None = None
    keyword_weight: float | None = None
    name_weight: float | None = None
    exclude_weight: float | None = None
    names: str | None = None
    min_text_similarity: float | None = None
    min_image_similarity: float | None = None
    article: str | None = None
    article_summary: str | None = None
    media_type: str | None = None
    min_duration: timedelta | None = None
    max_duration: timedelta | None = None

    def arguments(self) -> dict[str, Any]:
        """The SQL arguments this request sets, by parameter name."""
        given = {}
        for name, kind in _REQUEST_TYPES:
            value = getattr(self, name)
            if value is None or (isinstance(value, tuple | list) and not value):
                continue
            if kind == "vector":
                value = vector_text(value)
            elif kind == "text[]":
                value = list(value)
            elif kind == "jsonb":
                value = Jsonb(dict(value))
            given[name] = value
        return given


_REQUEST_TYPES = tuple(
    (item.name, PARAMETER_TYPES[item.name]) for item in dataclasses.fields(SearchRequest)
)
"""Each field of a SearchRequest and its SQL type (once: dataclasses.fields costs a search)."""


def vector_text(value: Any) -> str:
    """A query vector as pgvector's text, so that any connection can pass it (with or without
    pgvector's types registered): pgvector's Vector as read back or any sequence of numbers."""
    as_numpy = getattr(value, "to_numpy", None)
    return Vector(np.asarray(as_numpy() if as_numpy else value, np.float32)).to_text()


@dataclass(frozen=True)
class SearchHit:
    asset_id: int
    uri: str
    score: float | None
    caption: str | None
    tags: list[str]
    emotions: list[str]
    people: list[str]
    matched_by: list[str]
    image_score: float | None
    text_score: float | None
    keyword_score: float | None
    exclude_score: float | None
    taken_at: datetime | None
    rank: int
    media_type: str = "image"
    best_at: timedelta | None = None
    """For a video: the time of its frame most like the query."""


@dataclass
class Notices:
    """What the server said while searching: signals left out, people recognised."""

    messages: list[str] = field(default_factory=list)

    def __call__(self, diagnostic: psycopg.errors.Diagnostic) -> None:
        if diagnostic.message_primary:
            hint = f" ({diagnostic.message_hint})" if diagnostic.message_hint else ""
            self.messages.append(diagnostic.message_primary + hint)


def search_statement(arguments: Mapping[str, Any]) -> sql.Composed:
    """SELECT * FROM semsql.search(name => %(name)s::type, ...); names and types are fixed,
    values are parameters."""
    unknown = set(arguments) - set(PARAMETER_TYPES)
    if unknown:
        raise ValueError(f"semsql.search has no parameter {', '.join(sorted(unknown))}")
    named = [
        sql.SQL("{} => {}::{}").format(
            sql.Identifier(name), sql.Placeholder(name), sql.SQL(PARAMETER_TYPES[name])
        )
        for name in arguments
    ]
    return sql.SQL("SELECT * FROM semsql.search({})").format(sql.SQL(", ").join(named))


def run_search(
    conn: psycopg.Connection, request: SearchRequest
) -> tuple[list[SearchHit], list[str]]:
    """The hits of a request, and the server's notices about it."""
    arguments = request.arguments()
    return _rows_and_notices(conn, search_statement(arguments), arguments, SearchHit)


def _rows_and_notices(
    conn: psycopg.Connection,
    statement: sql.SQL | sql.Composed,
    arguments: Mapping[str, Any],
    row: type[R],
) -> tuple[list[R], list[str]]:
    """The rows of a statement, each a `row`, and what the server said while it ran."""
    notices = Notices()
    conn.add_notice_handler(notices)
    try:
        rows = conn.cursor(row_factory=class_row(row)).execute(statement, arguments).fetchall()
    finally:
        conn.remove_notice_handler(notices)
    return rows, notices.messages


# Query vectors made here ----------------------------------------------------------------------


def live_query_spaces(conn: psycopg.Connection) -> set[str]:
    """The spaces for which a running `semsql worker` answers semsql.embed_text."""
    rows = conn.execute("SELECT DISTINCT unnest(query_spaces) FROM semsql.live_workers()")
    return {row[0] for row in rows}


def registered_spaces(conn: psycopg.Connection) -> dict[str, tuple[str, int]]:
    """Space -> (model, dimensions) of the stored vectors."""
    rows = conn.execute("SELECT space, model, dims FROM semsql.vector_spaces")
    return {space: (model, dims) for space, model, dims in rows}


def load_encoder(space: str, device: str = "cpu") -> Any:
    """The configured model of a space's stage (SEMSQL_MODEL_TEXT / SEMSQL_MODEL_CLIP).
    Raises ModelLoadError (which says why and how to fix it) when it cannot load."""
    from semsql.embedder.models import ModelLoadError, load_model_config, load_stage

    stage = space_stage(space).name
    model = load_model_config()[stage]
    if model is None:
        raise ModelLoadError(stage, "off", "the stage is turned off")
    return load_stage(stage, model, device)


def embed_texts_locally(
    text: str, spaces: Sequence[str], dims: Mapping[str, int], device: str = "cpu"
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The query's vector in each space whose model loads here with the stored dimensions;
    and, for the others, why not."""
    from semsql.embedder.models import ModelLoadError

    vectors, problems = {}, {}
    for space in spaces:
        try:
            vector = load_encoder(space, device).encode([text])[0]
        except ModelLoadError as error:
            problems[space] = str(error)
            continue
        if len(vector) != dims[space]:
            problems[space] = (
                f"the local model gives {len(vector)} dimensions, the stored vectors {dims[space]}"
            )
            continue
        vectors[space] = vector
    return vectors, problems


def embed_image_file(path: Path, device: str = "cpu") -> np.ndarray:
    """The CLIP image vector of a file, from the configured CLIP model. Raises ModelLoadError,
    or InputError when the file cannot be read as an image."""
    from PIL import Image

    from semsql.decode import InputError

    encoder = load_encoder("image", device)
    try:
        with Image.open(path) as image:
            image.load()
            vector: np.ndarray = encoder.encode_images([image])[0]
            return vector
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"cannot read {path} as an image: {error}") from None


# More like this: semsql.similar and semsql.similar_to -----------------------------------------

SIMILAR_BY = ("semantic", "content", "both")
SIMILAR_PRIORITIES = ("both_first", "semantic_first", "content_first")


@dataclass(frozen=True)
class SimilarHit:
    """A row of semsql.similar / similar_to (semsql.similar_result): matched_by names the
    index that found the asset ('semantic', 'content' or 'both')."""

    asset_id: int
    uri: str
    score: float | None
    caption: str | None
    tags: list[str]
    emotions: list[str]
    people: list[str]
    matched_by: str
    content_distance: int | None
    semantic_rank: int | None
    content_rank: int | None
    image_score: float | None
    text_score: float | None
    taken_at: datetime | None
    rank: int
    media_type: str = "image"
    best_at: timedelta | None = None


@dataclass(frozen=True)
class SimilarRequest:
    """Look-alikes of a stored asset (like_asset) or of an image that need not be stored (its
    content_hashes and/or CLIP image_embedding); None leaves an argument at its default."""

    like_asset: int | None = None
    content_hashes: Sequence[str] | None = None
    image_embedding: Sequence[float] | np.ndarray | None = None
    k: int | None = None
    by: str | None = None
    priority: str | None = None
    split: float | None = None
    max_distance: int | None = None


def similar_statement(request: SimilarRequest) -> tuple[sql.Composed, dict[str, Any]]:
    """The call of semsql.similar (like_asset) or semsql.similar_to, and its parameters."""
    common: dict[str, tuple[Any, str]] = {
        "k": (request.k, "integer"),
        "by": (request.by, "text"),
        "priority": (request.priority, "text"),
        "split": (request.split, "real"),
        "max_distance": (request.max_distance, "integer"),
    }
    if request.like_asset is not None:
        if request.content_hashes is not None or request.image_embedding is not None:
            raise ValueError("like_asset or an image's hashes and vector, not both")
        function = "similar"
        named = {"asset_id": (request.like_asset, "bigint"), **common}
    else:
        function = "similar_to"
        vector = None if request.image_embedding is None else vector_text(request.image_embedding)
        hashes = None if request.content_hashes is None else list(request.content_hashes)
        named = {
            "content_hashes": (hashes, "bit(256)[]"),
            "image_embedding": (vector, "vector"),
            **common,
        }
    given = {name: value for name, (value, _) in named.items() if value is not None}
    arguments = [
        sql.SQL("{} => {}::{}").format(
            sql.Identifier(name), sql.Placeholder(name), sql.SQL(named[name][1])
        )
        for name in given
    ]
    statement = sql.SQL("SELECT * FROM semsql.{}({})").format(
        sql.Identifier(function), sql.SQL(", ").join(arguments)
    )
    return statement, given


def run_similar(
    conn: psycopg.Connection, request: SimilarRequest
) -> tuple[list[SimilarHit], list[str]]:
    """The look-alikes of a request, and the server's notices (a fallback to one index)."""
    statement, arguments = similar_statement(request)
    return _rows_and_notices(conn, statement, arguments, SimilarHit)


def image_file_hashes(path: Path) -> list[str]:
    """The content hashes a search by an image file scans (each view in its canonical
    orientation), decoded as the content stage decodes stored images (no model).
    Raises InputError when the file cannot be read as an image."""
    from semsql.content_hash import DECODE_MODE, DECODE_SIDE, query_hashes
    from semsql.decode import load_image

    return query_hashes(load_image(str(path.resolve()), DECODE_SIDE, mode=DECODE_MODE).image)


# Moments: video frames, several per video ----------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """A row of semsql.search_moments: a video frame like the query."""

    asset_id: int
    uri: str
    frame_id: int
    at: timedelta
    similarity: float
    caption: str | None
    rank: int


def run_moments(
    conn: psycopg.Connection,
    *,
    query: str | None = None,
    image_embedding: Sequence[float] | None = None,
    k: int = 20,
    collection: str | None = None,
) -> tuple[list[Moment], list[str]]:
    """The k frames most like a query text or an image-space vector, and the server's notices."""
    arguments = {
        "query": query,
        "image_embedding": None if image_embedding is None else vector_text(image_embedding),
        "k": k,
        "collection": collection,
    }
    statement = sql.SQL(
        "SELECT * FROM semsql.search_moments(query => %(query)s::text, "
        "image_embedding => %(image_embedding)s::vector, k => %(k)s::integer, "
        "collection => %(collection)s::text)"
    )
    return _rows_and_notices(conn, statement, arguments, Moment)
