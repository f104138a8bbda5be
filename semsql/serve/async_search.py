"""GET /api/search on the event loop: the statement semsql.search.run_search sends (its builder,
search_statement, and its row type) through an asyncio connection, so that a search waits for
the database without a hop to a worker thread and back.

A text query that needs a running worker is checked in the same statement (one round trip,
not two): the check's row gates the search, which does not run when no worker could embed
the text (it would wait for one)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import RowMaker, class_row

from semsql.search import Notices, SearchHit, SearchRequest, search_statement
from semsql.serve.queries import TEXT_WORKER_MISSING, needs_text_worker, no_text_worker
from semsql.serve.services import Found

GatedRow = tuple[bool, SearchHit | None]


async def search(conn: psycopg.AsyncConnection, request: SearchRequest, partial: bool) -> Found:
    """services.search: semsql.search's hits and notices, or 503 for a text query that no
    running worker can embed (unless partial)."""
    arguments = request.arguments()
    notices = Notices()
    conn.add_notice_handler(notices)
    try:
        if partial or not needs_text_worker(request):
            cursor = conn.cursor(row_factory=class_row(SearchHit))
            await cursor.execute(statement(tuple(arguments)), arguments)
            hits = await cursor.fetchall()
        else:
            gated = conn.cursor(row_factory=gated_row)
            await gated.execute(statement(tuple(arguments), gated=True), arguments)
            rows = await gated.fetchall()
            if rows[0][0]:
                raise no_text_worker()
            hits = [hit for _, hit in rows if hit is not None]
    finally:
        conn.remove_notice_handler(notices)
    return Found(hits, notices.messages)


@lru_cache(maxsize=256)
def statement(names: tuple[str, ...], gated: bool = False) -> bytes:
    """search_statement of these arguments, as bytes: it depends on their names only, so it
    is composed once per set of names. Gated: `missing, <the hit's columns>`, a row of NULL
    hit columns when the search has no hit or does not run (OFFSET 0 keeps each subquery
    whole, so the gate is a one-time filter evaluated before the search)."""
    search = search_statement(dict.fromkeys(names))
    if gated:
        search = sql.SQL(
            "SELECT g.missing, s.* FROM (SELECT ({}) AS missing OFFSET 0) AS g"
            " LEFT JOIN LATERAL ({} WHERE NOT g.missing OFFSET 0) AS s ON true"
        ).format(sql.SQL(TEXT_WORKER_MISSING), search)
    return search.as_bytes(None)


def gated_row(cursor: Any) -> RowMaker[GatedRow]:
    """(missing, the hit or None) of a gated statement's row (the names read as class_row
    reads them: cursor.description would make a Column object of each)."""
    result = cursor.pgresult
    names = [bytes(result.fname(i)).decode() for i in range(1, result.nfields)]
    asset_id = names.index("asset_id") + 1

    def make(values: Sequence[Any]) -> GatedRow:
        if values[asset_id] is None:  # the row of no hit
            return bool(values[0]), None
        return bool(values[0]), SearchHit(**dict(zip(names, values[1:], strict=True)))

    return make
