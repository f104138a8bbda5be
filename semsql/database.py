"""Where the database is and how to connect to it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import Any, LiteralString, TypeAlias

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from semsql import config
from semsql.embedded import EmbeddedServer

Query: TypeAlias = LiteralString | bytes | sql.SQL | sql.Composed
Params: TypeAlias = Sequence[Any] | Mapping[str, Any] | None


def embedded_server() -> EmbeddedServer:
    return EmbeddedServer(config.home())


def database_url() -> str:
    """SEMSQL_DATABASE_URL, or the embedded server's DSN (starting it when needed)."""
    url = os.environ.get(config.DATABASE_URL_ENV)
    if url:
        return url
    return embedded_server().ensure_running()


def connect(url: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection with pgvector's types registered (once `semsql init` has run)."""
    conn = psycopg.connect(url or database_url(), autocommit=autocommit)
    # Before `semsql init` the vector extension may not exist yet; init creates it.
    with contextlib.suppress(psycopg.ProgrammingError):
        register_vector(conn)
    return conn


def fetch_row(conn: psycopg.Connection, query: Query, params: Params = None) -> tuple[Any, ...]:
    """The one row a query returns; LookupError when it returns none (a bug, not bad input:
    use this for a SELECT of function calls or aggregates, which always give a row)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise LookupError(f"the query returned no row: {query!r}")
    return row


def fetch_value(conn: psycopg.Connection, query: Query, params: Params = None) -> Any:
    """The first column of the one row a query returns (see fetch_row)."""
    return fetch_row(conn, query, params)[0]
