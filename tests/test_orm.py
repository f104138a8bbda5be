"""SQLAlchemy: typed models of the tables, and semsql.search as a selectable that an
application joins with its own tables."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fix_corpus import CATALOG
from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from semsql import orm


@pytest.fixture
def session(corpus_url) -> Iterator[Session]:
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(corpus_url))
    with Session(engine) as session:
        yield session
        session.rollback()
    engine.dispose()


def test_models_map_the_tables(session) -> None:
    asset = session.scalars(select(orm.Asset).where(orm.Asset.uri.like("%/beach.jpg"))).one()
    assert asset.collection == "default" and asset.width == 64
    assert asset.file_metadata == {}
    assert [caption.text for caption in asset.captions] == ["Ana and Joe laughing at the beach"]
    assert sorted(tag.label for tag in asset.tags) == ["beach", "sea", "summer"]
    assert sorted(person.name for person in asset.people) == ["Ana Lima", "Joe Park"]
    assert sorted(face.emotion for face in asset.faces) == ["happy", "happy"]
    (embedding,) = asset.embeddings
    assert embedding.space == "text" and len(embedding.embedding) == 384


def test_search_joins_with_application_tables(session, corpus) -> None:
    photos = Table(
        "app_photos",
        MetaData(),
        Column("asset_id", BigInteger, primary_key=True),
        Column("title", Text),
        prefixes=["TEMPORARY"],
    )
    photos.create(session.connection())
    session.execute(
        insert(photos),
        [
            {"asset_id": corpus.ids["snowman"], "title": "Snowman, 2021"},
            {"asset_id": corpus.ids["sledging"], "title": "Sledging"},
            {"asset_id": corpus.ids["pasta"], "title": "Dinner"},
        ],
    )
    query = "youngsters playing in the snow"
    hits = orm.search(query, text_embedding=corpus.vector(query).tolist(), k=10)
    rows = session.execute(
        select(photos.c.title, hits.c.score, hits.c.matched_by, hits.c.tags)
        .join(hits, hits.c.asset_id == photos.c.asset_id)
        .order_by(hits.c.rank)
    ).all()
    assert [row.title for row in rows[:2]] == ["Snowman, 2021", "Sledging"]
    assert rows[0].score > rows[1].score and "text" in rows[0].matched_by
    assert rows[0].tags == ["children", "snow", "winter"]
    assert isinstance(hits.c.tags.type, ARRAY)


def test_search_filters_and_named_arguments(session) -> None:
    hits = orm.search(tags=("winter",), people=None, order_by="oldest", offset=1, k=5)
    uris = session.scalars(select(hits.c.uri).order_by(hits.c.taken_at)).all()
    assert [uri.rsplit("/", 1)[1] for uri in uris] == ["snowman.jpg", "sledging.jpg"]


def test_search_values_are_bound_never_spliced(session) -> None:
    hostile = "x'); DROP TABLE semsql.assets; --"
    statement = select(orm.search(hostile, collection=hostile, tags=[hostile]))
    assert hostile not in str(statement.compile())
    assert session.execute(statement).all() == []
    assert session.scalar(select(func.count()).select_from(orm.Asset)) == len(CATALOG)
    with pytest.raises(TypeError, match="no parameter"):
        orm.search(query="x", tag=["y"])
