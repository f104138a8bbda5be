"""A scratch database for a benchmark, migrated and dropped afterwards.

It lives on the server of SEMSQL_DATABASE_URL when set, else on a throwaway embedded server.
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

from semsql import migrate
from semsql.embedded import EmbeddedServer


@contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """Yield the URL of a fresh database `name` with the semsql schema."""
    base_url = os.environ.get("SEMSQL_DATABASE_URL")
    home = None
    if base_url is None:
        home = Path(tempfile.mkdtemp(prefix="semsql-bench-"))
        base_url = EmbeddedServer(home).ensure_running()
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(base_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.init(conn)
        yield url
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(drop)
        if home is not None:
            EmbeddedServer(home).stop()
            shutil.rmtree(home, ignore_errors=True)
