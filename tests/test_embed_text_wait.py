"""How an embed_text caller waits for its answer: on the row lock of the worker answering it
(not by polling), without ever making a worker pass its request by; and the answerer's own
torch thread. No wall-clock thresholds: the waits below only bound how long a broken protocol
may hang a test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg
import torch

from semsql import database
from semsql.embedder.query_embeddings import (
    TAKE,
    QueryEncoder,
    answer_requests,
    limit_torch_threads,
)

LOOPBACK_WAITS_ON_A_LOCK = """SELECT count(*) FROM pg_stat_activity
    WHERE application_name = 'semsql_embed_text' AND wait_event_type = 'Lock'"""

WORKER_WAITS_ON_A_LOCK = """SELECT count(*) FROM pg_stat_activity
    WHERE wait_event_type = 'Lock' AND query LIKE '%%FOR UPDATE OF q%%'"""


def wait_until(condition: Callable[[], Any], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.02)


def requested(db: psycopg.Connection, text: str) -> bool:
    row = db.execute("SELECT count(*) FROM semsql.query_embeddings WHERE text = %s", [text])
    return bool(row.fetchone()[0])


def call_embed_text(pool: ThreadPoolExecutor, url: str, text: str) -> Future[str]:
    def call() -> str:
        with database.connect(url, autocommit=True) as conn:
            return conn.execute(
                "SELECT semsql.embed_text(%s, timeout => '60 s')::text", [text]
            ).fetchone()[0]

    return pool.submit(call)


def test_the_caller_waits_on_the_answering_workers_lock_and_has_the_answer_at_its_commit(
    db, db_url, silent_worker
) -> None:
    with ThreadPoolExecutor(1) as pool, database.connect(db_url) as taker:
        answer = call_embed_text(pool, db_url, "a lake at dawn")
        wait_until(lambda: requested(db, "a lake at dawn"))
        # As a worker does: take the request and hold it while "embedding".
        [taken] = taker.execute(TAKE, [["text"], 64]).fetchall()
        assert taken[3] == "a lake at dawn"
        wait_until(lambda: db.execute(LOOPBACK_WAITS_ON_A_LOCK).fetchone()[0] == 1)
        assert not answer.done()
        taker.execute(
            """UPDATE semsql.query_embeddings SET embedding = '[1,2,3]', answered_at = now()
               WHERE (space, requested_by, text_sha256) = (%s, %s, %s)""",
            list(taken[:3]),
        )
        taker.commit()
        assert answer.result(timeout=30) == "[1,2,3]"


def test_the_callers_wait_never_makes_a_worker_pass_its_request_by(db, db_url) -> None:
    """A caller waiting holds FOR KEY SHARE on its request for a moment: a worker taking
    requests then still takes it (it waits that moment out), never skips it."""
    db.execute(
        """INSERT INTO semsql.query_embeddings (space, requested_by, text_sha256, text)
           VALUES ('text', 'someone', semsql.query_text_digest('held'), 'held')"""
    )
    encoder = QueryEncoder("fake", lambda texts: np.ones((len(texts), 3)), threading.Lock())
    with ThreadPoolExecutor(1) as pool, database.connect(db_url) as caller:
        caller.execute("SELECT 1 FROM semsql.query_embeddings FOR KEY SHARE")  # held until commit

        def answer() -> int:
            with database.connect(db_url, autocommit=True) as worker:
                return answer_requests(worker, {"text": encoder})

        answered = pool.submit(answer)
        wait_until(lambda: db.execute(WORKER_WAITS_ON_A_LOCK).fetchone()[0] == 1)
        caller.commit()
        assert answered.result(timeout=30) == 1
    assert db.execute("SELECT embedding::text FROM semsql.query_embeddings").fetchone() == (
        "[1,1,1]",
    )


def test_the_answerers_torch_threads_are_its_own() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: dict[str, int] = {}

        def answerer() -> None:
            limit_torch_threads(1)
            torch.ones(4).sum()
            seen["answerer"] = torch.get_num_threads()

        def another() -> None:
            torch.ones(4).sum()  # a thread's first op takes torch's default
            seen["another"] = torch.get_num_threads()

        for target in (answerer, another):
            thread = threading.Thread(target=target)
            thread.start()
            thread.join()
        assert seen == {"answerer": 1, "another": 2}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
