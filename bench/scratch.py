"""A scratch database for a benchmark, with the semsql schema, dropped afterwards.

It lives on the server of SEMSQL_DATABASE_URL when set, else on a throwaway embedded server
(see semsql.testing, which the tests use too).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from semsql import migrate
from semsql.testing import scratch_database, scratch_server


@contextmanager
def bench_database(name: str, settings: dict[str, str] | None = None) -> Iterator[str]:
    """Yield the URL of a fresh database `name` with the semsql schema. `settings` are the
    postgresql.conf settings of the embedded server, when one is made."""
    with scratch_server(settings=settings) as server, scratch_database(server, name) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.init(conn)
        yield url
