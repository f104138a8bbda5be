"""Where the database is and how to connect to it."""

from __future__ import annotations

import contextlib
import os

import psycopg
from pgvector.psycopg import register_vector

from semsql import config
from semsql.embedded import EmbeddedServer


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
