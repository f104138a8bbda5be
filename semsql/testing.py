"""Throwaway PostgreSQL databases, for the tests and the benchmarks.

The one place that creates and drops a scratch database (tests/fix_db.py and bench/ both use
it). It needs psycopg and the embedded server only: no pytest, no model library.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from semsql.embedded import EmbeddedServer


@contextmanager
def scratch_database(
    server_url: str,
    name: str,
    *,
    template: str | None = None,
    owner: str | None = None,
    keep: bool = False,
) -> Iterator[str]:
    """Yield the URL of a new, empty database `name` on the server of `server_url` (a copy of
    `template` when given, owned by `owner` when given), and drop it at the end, its open
    connections with it. A leftover of the same name (from a run that was killed) is dropped
    first; `keep` leaves the database in place at the end."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    if owner is not None:
        create += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(create)
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        if not keep:
            with psycopg.connect(server_url, autocommit=True) as admin:
                admin.execute(drop)


@contextmanager
def scratch_server(
    variable: str = "SEMSQL_DATABASE_URL", settings: dict[str, str] | None = None
) -> Iterator[str]:
    """Yield the URL of the server named by the environment variable `variable` when it is set,
    else of a throwaway embedded server (with these postgresql.conf `settings`), which is
    stopped and removed at the end."""
    configured = os.environ.get(variable)
    if configured:
        yield configured
        return
    home = Path(tempfile.mkdtemp(prefix="semsql-scratch-"))
    server = EmbeddedServer(home, settings=settings)
    try:
        yield server.ensure_running()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


# The closure that semsql.duplicates computed until it used a union-find: every (root, asset)
# pair of a component, n^2 of them. The same links, groups and columns, in the same order.
DUPLICATES_BY_CLOSURE = """
    WITH RECURSIVE members AS (
        SELECT e.asset_id, e.embedding::halfvec({dims}) AS embedding
        FROM semsql.embeddings e JOIN semsql.assets a ON a.id = e.asset_id
        WHERE e.space = 'image' AND (%(collection)s::text IS NULL
                                     OR a.collection = %(collection)s::text)),
    links AS (
        SELECT m.asset_id AS a, n.asset_id AS b
        FROM members m
        CROSS JOIN LATERAL (
            SELECT e.asset_id, e.embedding::halfvec({dims}) <=> m.embedding AS distance
            FROM semsql.embeddings e
            WHERE e.space = 'image' AND e.asset_id <> m.asset_id
            ORDER BY e.embedding::halfvec({dims}) <=> m.embedding
            LIMIT %(neighbours)s) AS n
        WHERE n.distance <= %(max_distance)s::real
          AND n.asset_id IN (SELECT asset_id FROM members)),
    edges AS (SELECT a, b FROM links UNION SELECT b, a FROM links),
    reach (root, asset_id) AS (
        SELECT a, a FROM edges
        UNION
        SELECT r.root, e.b FROM reach r JOIN edges e ON e.a = r.asset_id),
    groups AS (SELECT asset_id, min(root) AS group_id FROM reach GROUP BY asset_id)
    SELECT g.group_id, g.asset_id, a.uri,
           CASE WHEN a.sha256 = ga.sha256 THEN 'exact' ELSE 'near' END,
           (m.embedding <=> gm.embedding)::real
    FROM groups g
    JOIN semsql.assets a ON a.id = g.asset_id
    JOIN semsql.assets ga ON ga.id = g.group_id
    JOIN members m ON m.asset_id = g.asset_id
    JOIN members gm ON gm.asset_id = g.group_id
    ORDER BY g.group_id, 5, g.asset_id
"""
