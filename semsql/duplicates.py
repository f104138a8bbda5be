"""Duplicate review from Python: semsql.duplicate_review's groups with the copy to keep, and
semsql.delete_assets, which removes asset rows (never files).

    groups = review(conn, DuplicateQuery(by="content"))
    others = [copy.asset_id for group in groups for copy in group.copies if not copy.keep]
    deleted = delete_assets(conn, others)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

import psycopg
from psycopg.rows import class_row

BY = ("content", "semantic")
SPACES = ("image", "text")
MAX_COSINE_DISTANCE = 2.0
SEMANTIC_DEFAULT_DISTANCE = 0.05


@dataclass(frozen=True)
class DuplicateQuery:
    """The arguments of semsql.duplicate_review; max_distance None: the default of `by`."""

    by: str = "content"
    max_distance: float | None = None
    collection: str | None = None
    space: str = "image"
    neighbours: int = 10


@dataclass(frozen=True)
class DuplicateCopy:
    """One asset of a group, as semsql.duplicate_review returns it."""

    group_id: int
    asset_id: int
    uri: str
    kind: str
    distance: float
    width: int | None
    height: int | None
    pixels: int | None
    bytes: int | None
    taken_at: datetime | None
    ingested_at: datetime
    user_facts: int
    rank: int
    keep: bool
    reason: str


@dataclass(frozen=True)
class DuplicateGroup:
    group_id: int
    copies: tuple[DuplicateCopy, ...]

    @property
    def kept(self) -> DuplicateCopy:
        return next(copy for copy in self.copies if copy.keep)

    @property
    def others(self) -> tuple[DuplicateCopy, ...]:
        return tuple(copy for copy in self.copies if not copy.keep)


@dataclass(frozen=True)
class DeletedAsset:
    asset_id: int
    uri: str


def review(conn: psycopg.Connection, query: DuplicateQuery) -> list[DuplicateGroup]:
    """The groups of duplicates, each with its copies in order of preference (kept first)."""
    rows = (
        conn.cursor(row_factory=class_row(DuplicateCopy))
        .execute(
            """SELECT * FROM semsql.duplicate_review(
                   max_distance => %s::real, collection => %s::text, space => %s::text,
                   neighbours => %s::integer, by => %s::text)""",
            [query.max_distance, query.collection, query.space, query.neighbours, query.by],
        )
        .fetchall()
    )
    return [
        DuplicateGroup(group_id, tuple(copies))
        for group_id, copies in groupby(rows, key=lambda copy: copy.group_id)
    ]


def delete_assets(conn: psycopg.Connection, asset_ids: Sequence[int]) -> list[DeletedAsset]:
    """Deletes these assets' rows and all that hangs from them; the files stay on disk."""
    return (
        conn.cursor(row_factory=class_row(DeletedAsset))
        .execute("SELECT * FROM semsql.delete_assets(%s::bigint[])", [list(asset_ids)])
        .fetchall()
    )
