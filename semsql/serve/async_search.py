"""GET /api/search on the event loop: the statement semsql.search.run_search sends (its builder,
search_statement, and its row type) through an asyncio connection, so that a search waits for
the database without a hop to a worker thread and back."""

from __future__ import annotations

import psycopg
from psycopg.rows import class_row

from semsql.search import Notices, SearchHit, SearchRequest, search_statement
from semsql.serve.queries import TEXT_WORKER_MISSING, needs_text_worker, no_text_worker
from semsql.serve.services import Found


async def search(conn: psycopg.AsyncConnection, request: SearchRequest, partial: bool) -> Found:
    """services.search: semsql.search's hits and notices, or 503 for a text query that no
    running worker can embed (unless partial)."""
    if not partial and needs_text_worker(request):
        missing = await (await conn.execute(TEXT_WORKER_MISSING)).fetchone()
        if missing and missing[0]:
            raise no_text_worker()
    arguments = request.arguments()
    notices = Notices()
    conn.add_notice_handler(notices)
    try:
        cursor = conn.cursor(row_factory=class_row(SearchHit))
        hits = await (await cursor.execute(search_statement(arguments), arguments)).fetchall()
    finally:
        conn.remove_notice_handler(notices)
    return Found(hits, notices.messages)
