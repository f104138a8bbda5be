"""SQLAlchemy 2 models of semsql's tables, and semsql.search as a selectable to join with.

    from sqlalchemy import select
    from semsql import orm

    hits = orm.search("children playing in snow", tags=["winter"], k=10)
    rows = session.execute(
        select(Photo.title, hits.c.score, hits.c.uri)
        .join(hits, hits.c.asset_id == Photo.asset_id)
        .order_by(hits.c.rank)
    )

The models map the tables that `semsql init` creates; they never create tables themselves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import HALFVEC, Vector
from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Text,
    bindparam,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.selectable import Subquery

from semsql.search import PARAMETER_TYPES


class Base(DeclarativeBase):
    metadata = MetaData(schema="semsql")


class Asset(Base):
    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    collection: Mapped[str] = mapped_column(Text)
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(Text)
    media_type: Mapped[str] = mapped_column(Text)
    mime: Mapped[str | None] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # `metadata` is taken by SQLAlchemy's declarative classes.
    file_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
    status: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    captions: Mapped[list[Caption]] = relationship(back_populates="asset", viewonly=True)
    tags: Mapped[list[Tag]] = relationship(back_populates="asset", viewonly=True)
    faces: Mapped[list[Face]] = relationship(back_populates="asset", viewonly=True)
    embeddings: Mapped[list[Embedding]] = relationship(back_populates="asset", viewonly=True)
    # The people stated as shown (asset_people); recognised faces are in faces[].person.
    people: Mapped[list[Person]] = relationship(secondary="semsql.asset_people", viewonly=True)


class Caption(Base):
    __tablename__ = "captions"

    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    source: Mapped[str] = mapped_column(Text, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    asset: Mapped[Asset] = relationship(back_populates="captions", viewonly=True)


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    label: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(REAL)
    box: Mapped[list[float] | None] = mapped_column(ARRAY(REAL))
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    asset: Mapped[Asset] = relationship(back_populates="tags", viewonly=True)


class Person(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AssetPerson(Base):
    __tablename__ = "asset_people"

    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), primary_key=True)
    source: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Face(Base):
    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    box: Mapped[list[float]] = mapped_column(ARRAY(REAL))
    confidence: Mapped[float | None] = mapped_column(REAL)
    detector: Mapped[str] = mapped_column(Text)
    embedding: Mapped[Any | None] = mapped_column(Vector(512))
    embedding_model: Mapped[str | None] = mapped_column(Text)
    emotion: Mapped[str | None] = mapped_column(Text)
    emotion_scores: Mapped[dict[str, float] | None] = mapped_column(JSONB)
    emotion_model: Mapped[str | None] = mapped_column(Text)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    match_confidence: Mapped[float | None] = mapped_column(REAL)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    asset: Mapped[Asset] = relationship(back_populates="faces", viewonly=True)
    person: Mapped[Person | None] = relationship(viewonly=True)


class Embedding(Base):
    __tablename__ = "embeddings"

    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    space: Mapped[str] = mapped_column(Text, primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    embedding: Mapped[Any] = mapped_column(HALFVEC())
    input_sha256: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Copies of the asset's search_documents filters (kept current by semsql).
    collection: Mapped[str | None] = mapped_column(Text)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text))
    emotions: Mapped[list[str]] = mapped_column(ARRAY(Text))
    people: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))

    asset: Mapped[Asset] = relationship(back_populates="embeddings", viewonly=True)


class VectorSpace(Base):
    __tablename__ = "vector_spaces"

    space: Mapped[str] = mapped_column(Text, primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    dims: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    index_deferred_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    collection: Mapped[str | None] = mapped_column(Text)
    args: Mapped[dict[str, Any]] = mapped_column(JSONB)
    new_count: Mapped[int] = mapped_column(Integer)
    updated_count: Mapped[int] = mapped_column(Integer)
    skipped_count: Mapped[int] = mapped_column(Integer)
    failed_count: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ingested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# semsql.search as a selectable ------------------------------------------------------------------

RESULT_COLUMNS: dict[str, Any] = {
    "asset_id": BigInteger,
    "uri": Text,
    "score": REAL,
    "caption": Text,
    "tags": ARRAY(Text),
    "emotions": ARRAY(Text),
    "people": ARRAY(Text),
    "matched_by": ARRAY(Text),
    "image_score": REAL,
    "text_score": REAL,
    "keyword_score": REAL,
    "exclude_score": REAL,
    "taken_at": DateTime(timezone=True),
    "rank": Integer,
}

_BIND_TYPES = {
    "text": Text(),
    "vector": Vector(),
    "bigint": BigInteger(),
    "text[]": ARRAY(Text),
    "timestamptz": DateTime(timezone=True),
    "jsonb": JSONB(),
    "integer": Integer(),
    "real": Float(),
    "boolean": Boolean(),
}


def search(query: str | None = None, *, name: str = "search", **arguments: Any) -> Subquery:
    """semsql.search(...) as a subquery with typed columns (asset_id, uri, score, caption, tags,
    emotions, people, matched_by, image_score, text_score, keyword_score, exclude_score,
    taken_at, rank). Keyword arguments are those of semsql.search (k, tags, people,
    query_embedding, like_asset, offset, article, article_summary ...); None leaves one at its
    default. `search(article=text)` finds images for an article (its known people, central
    sentences and keyphrases; see semsql.explain_query)."""
    given: dict[str, Any] = {"query": query, **arguments}
    given = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in given.items()
        if value is not None
    }
    unknown = set(given) - set(PARAMETER_TYPES)
    if unknown:
        raise TypeError(f"semsql.search has no parameter {', '.join(sorted(unknown))}")
    # Names come from PARAMETER_TYPES, never from the caller; values are bound parameters.
    call = ", ".join(
        f'"{key}" => CAST(:{key} AS {PARAMETER_TYPES[key]})'
        for key in PARAMETER_TYPES
        if key in given
    )
    statement = text(f"SELECT * FROM semsql.search({call})").bindparams(
        *(
            bindparam(key, value, type_=_BIND_TYPES[PARAMETER_TYPES[key]])
            for key, value in given.items()
        )
    )
    return statement.columns(**RESULT_COLUMNS).subquery(name)


# semsql.similar as a selectable -----------------------------------------------------------------

SIMILAR_COLUMNS: dict[str, Any] = {
    "asset_id": BigInteger,
    "uri": Text,
    "score": REAL,
    "caption": Text,
    "tags": ARRAY(Text),
    "emotions": ARRAY(Text),
    "people": ARRAY(Text),
    "matched_by": Text,
    "content_distance": Integer,
    "semantic_rank": Integer,
    "content_rank": Integer,
    "image_score": REAL,
    "text_score": REAL,
    "taken_at": DateTime(timezone=True),
    "rank": Integer,
}


def similar(
    asset_id: int,
    *,
    k: int | None = None,
    by: str | None = None,
    priority: str | None = None,
    split: float | None = None,
    max_distance: int | None = None,
    name: str = "similar",
) -> Subquery:
    """semsql.similar(...) as a subquery with typed columns (semsql.similar_result): matched_by
    says which index found each asset ('semantic', 'content' or 'both'), content_distance its
    Hamming distance in bits where the content index found it."""
    given: dict[str, tuple[Any, Any]] = {
        "asset_id": (asset_id, BigInteger()),
        "k": (k, Integer()),
        "by": (by, Text()),
        "priority": (priority, Text()),
        "split": (split, Float()),
        "max_distance": (max_distance, Integer()),
    }
    casts = {"asset_id": "bigint", "k": "integer", "by": "text", "priority": "text",
             "split": "real", "max_distance": "integer"}  # fmt: skip
    present = {key: value for key, value in given.items() if value[0] is not None}
    call = ", ".join(f'"{key}" => CAST(:{key} AS {casts[key]})' for key in present)
    statement = text(f"SELECT * FROM semsql.similar({call})").bindparams(
        *(bindparam(key, value, type_=kind) for key, (value, kind) in present.items())
    )
    return statement.columns(**SIMILAR_COLUMNS).subquery(name)
