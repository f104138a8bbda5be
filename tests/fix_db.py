"""Database fixtures: a real PostgreSQL, a migrated template, a fresh database per test.

The server is SEMSQL_TEST_DATABASE_URL when set (it needs pgvector >= 0.8, dblink and
pg_trgm, and the right to create databases), else an embedded server started for the session.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import psycopg
import pytest

from semsql import database, migrate
from semsql.testing import scratch_database, scratch_server

TEMPLATE = "semsql_test_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    # Durability is not under test here; fsync off makes CREATE DATABASE and commits fast. A
    # NOTIFY queue of 1 MB (not 8 GB) lets a test fill it.
    settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    settings["max_notify_queue_pages"] = "128"
    with scratch_server("SEMSQL_TEST_DATABASE_URL", settings) as url:
        yield url


@pytest.fixture(scope="session")
def template_url(server_url: str) -> Iterator[str]:
    with scratch_database(server_url, TEMPLATE) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.init(conn)
        yield url


@pytest.fixture
def db_url(server_url: str, template_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test (a copy of the template)."""
    name = f"semsql_test_{os.getpid()}_{next(_counter)}"
    with scratch_database(server_url, name, template=TEMPLATE) as url:
        yield url


@pytest.fixture
def fresh_database(server_url: str) -> Iterator[Callable[[str], str]]:
    """Make empty databases (no semsql schema) by name: `fresh_database(name)` is the URL of
    one; all are dropped after the test."""
    with ExitStack() as made:
        yield lambda name: made.enter_context(scratch_database(server_url, name))


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


@pytest.fixture
def no_stages(conn: psycopg.Connection) -> None:
    """Models off: a job completes as soon as its files are read."""
    conn.execute("UPDATE semsql.stages SET enabled = false")
    conn.commit()
