"""GET /api/search on the event loop: the statement semsql.search.run_search sends (its builder,
search_statement, and its row type) through an asyncio connection, so that a search waits for
the database without a hop to a worker thread and back.

A text query that needs a running worker is checked in the same statement (one round trip,
not two): the check's row gates the search, which does not run when no worker could embed
the text (it would wait for one).

Each row is read straight into the dict that the answer's JSON shows (a video's best_at in
seconds, taken_at as str writes it), in the columns' order, which is SearchHit's: a SearchHit
made of it and turned into a dict again would cost more than the rest of the search's Python."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from psycopg import sql

from semsql.search import Notices, SearchHit, SearchRequest, search_statement
from semsql.serve.queries import TEXT_WORKER_MISSING, needs_text_worker, no_text_worker

Hit = dict[str, Any]
HIT_DEFAULTS = {
    item.name: item.default
    for item in dataclasses.fields(SearchHit)
    if item.default is not dataclasses.MISSING
}
HIT_FIELDS = frozenset(item.name for item in dataclasses.fields(SearchHit))


async def search(conn: psycopg.AsyncConnection, request: SearchRequest, partial: bool) -> Hit:
    """services.search's Found.as_dict(): semsql.search's hits and notices, or 503 for a text
    query that no running worker can embed (unless partial)."""
    arguments = request.arguments()
    gated = not partial and needs_text_worker(request)
    notices = Notices()
    conn.add_notice_handler(notices)
    try:
        cursor = cursor_of(conn)
        await cursor.execute(statement(tuple(arguments), gated), arguments)
        rows = await cursor.fetchall()
    finally:
        conn.remove_notice_handler(notices)
    if gated and rows[0][0]:
        raise no_text_worker()
    return {"hits": hits(cursor, rows, 1 if gated else 0), "notices": notices.messages}


_cursors: WeakKeyDictionary[psycopg.AsyncConnection, psycopg.AsyncCursor[Any]] = WeakKeyDictionary()


def cursor_of(conn: psycopg.AsyncConnection) -> psycopg.AsyncCursor[Any]:
    """The connection's cursor for searches, reused: its adapters' caches (the loaders of a
    hit's columns, the dumper of a list of texts) are made once, not for each search."""
    cursor = _cursors.get(conn)
    if cursor is None or cursor.closed:
        cursor = _cursors[conn] = conn.cursor()
    return cursor


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


def hits(cursor: Any, rows: list[tuple[Any, ...]], first: int) -> list[Hit]:
    """The hits of the rows' columns from `first` on (a gated statement's row of no hit left
    out), as services.hit_dict and api.hits_response write a SearchHit: its fields and no
    other. Names read as class_row reads them (cursor.description would make a Column
    object of each)."""
    result = cursor.pgresult
    names = [bytes(result.fname(i)).decode() for i in range(first, result.nfields)]
    unknown = set(names) - HIT_FIELDS
    if unknown:
        raise TypeError(f"SearchHit has no field {', '.join(sorted(unknown))}")
    asset_id = names.index("asset_id") + first
    found = [
        dict(zip(names, row[first:], strict=True)) for row in rows if row[asset_id] is not None
    ]
    defaults = {name: value for name, value in HIT_DEFAULTS.items() if name not in names}
    for hit in found:
        if defaults:
            hit.update(defaults)
        if hit["best_at"] is not None:
            hit["best_at"] = hit["best_at"].total_seconds()
        if hit["taken_at"] is not None:
            hit["taken_at"] = str(hit["taken_at"])
    return found
