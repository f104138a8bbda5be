"""Login roles in semsql's groups, and a running worker that answers semsql.embed_text.

`login_as("semsql_analyst")` makes a real login role in that group (roles are cluster-wide, so
the name carries the test database's) and returns an autocommit connection as it; the role and
what it owns are dropped after the test.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from semsql import database
from semsql.embedder.worker import Worker, WorkerOptions

LoginAs = Callable[[str], psycopg.Connection]
_roles = itertools.count()


@pytest.fixture
def login_as(db_url: str) -> Iterator[LoginAs]:
    made: list[tuple[str, psycopg.Connection]] = []

    def login(group: str) -> psycopg.Connection:
        name = f"{group}_{conninfo_to_dict(db_url)['dbname']}_{next(_roles)}"
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'login-pw' IN ROLE {}").format(
                    sql.Identifier(name), sql.Identifier(group)
                )
            )
        conn = database.connect(
            make_conninfo(db_url, user=name, password="login-pw"), autocommit=True
        )
        made.append((name, conn))
        return conn

    yield login
    with psycopg.connect(db_url, autocommit=True) as admin:
        for name, conn in made:
            conn.close()
            role = sql.Identifier(name)
            admin.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(role))


@pytest.fixture
def silent_worker(db_url: str) -> Iterator[psycopg.Connection]:
    """A worker registered as answering embed_text for the text space, that never answers: the
    connection that registered it (closing or terminating it is the worker dying)."""
    conn = database.connect(db_url, autocommit=True)
    conn.execute("SELECT semsql.register_worker('silent', 'h', 1, 'cpu', '{text}', '{text}', '{}')")
    yield conn
    conn.close()


@dataclass
class RunningWorker:
    worker: Worker
    thread: threading.Thread

    def stop(self) -> None:
        """Stops the worker and returns once it is gone (Worker.stop only asks it to)."""
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def query_worker(db_url: str, tiny_models: dict[str, str]) -> Iterator[RunningWorker]:
    """A worker that answers embed_text for the text (MiniLM) and image (tiny CLIP) spaces."""
    worker = Worker(
        db_url, WorkerOptions(stages=("clip", "text"), poll_interval=60), models=tiny_models
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.ready.wait(120)
    running = RunningWorker(worker, thread)
    try:
        yield running
    finally:
        running.stop()
