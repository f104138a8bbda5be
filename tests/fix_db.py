"""Database fixtures: a real PostgreSQL, a migrated template, a fresh database per test.

The server is SEMSQL_TEST_DATABASE_URL when set (it needs pgvector >= 0.8, dblink and
pg_trgm, and the right to create databases), else an embedded server started for the session.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from semsql import database, migrate
from semsql.embedded import EmbeddedServer

TEMPLATE = "semsql_test_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    configured = os.environ.get("SEMSQL_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    home = Path(tempfile.mkdtemp(prefix="semsql-test-"))
    # Durability is not under test here; fsync off makes CREATE DATABASE and commits fast. A
    # NOTIFY queue of 1 MB (not 8 GB) lets a test fill it.
    settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    server = EmbeddedServer(home, settings={**settings, "max_notify_queue_pages": "128"})
    try:
        yield server.ensure_running()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    url = make_conninfo(server_url, dbname=TEMPLATE)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate.init(conn)
    return url


@pytest.fixture
def db_url(server_url: str, template_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test (a copy of the template)."""
    name = f"semsql_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with database.connect(db_url) as connection:
        yield connection


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's database: each statement commits at once."""
    with database.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def semsql_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at the test database."""
    monkeypatch.setenv("SEMSQL_DATABASE_URL", db_url)
    return db_url
