"""The worker's answerer: it turns the texts that semsql.embed_text asks for into vectors.

It has a connection and a thread of its own that LISTEN on semsql_embed. Requests are answered
oldest first, in batches, each in a transaction that holds its rows (taken SKIP LOCKED, held
FOR UPDATE), so that several workers share them, a worker killed mid-batch leaves them to the
others, and a waiting caller is woken by the lock's release when the answers commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import class_row

from .queue import EMBED_CHANNEL, Listener, Wakeup

log = logging.getLogger(__name__)

BATCH = 64

# The oldest open requests no other worker holds (NO KEY UPDATE SKIP LOCKED: a waiting caller's
# momentary FOR KEY SHARE does not make us pass a row by), then held FOR UPDATE until the
# answers commit: semsql.await_query_embedding waits on that lock (FOR KEY SHARE), and so sees
# an answer the moment it commits instead of polling for it.
TAKE = """
    WITH taken AS MATERIALIZED (
        SELECT space, requested_by, text_sha256, text, requested_at
        FROM semsql.query_embeddings
        WHERE embedding IS NULL AND error IS NULL AND space = ANY (%s)
        ORDER BY requested_at LIMIT %s FOR NO KEY UPDATE SKIP LOCKED
    )
    SELECT t.space, t.requested_by, t.text_sha256, t.text
    FROM taken t JOIN semsql.query_embeddings q USING (space, requested_by, text_sha256)
    ORDER BY t.requested_at
    FOR UPDATE OF q"""


@dataclass
class QueryEncoder:
    """A model that turns texts into vectors of a space, and the lock around its use."""

    model_name: str
    encode: Callable[[Sequence[str]], np.ndarray]
    lock: threading.Lock


@dataclass(frozen=True)
class Request:
    space: str
    requested_by: str
    text_sha256: str
    text: str


def answer_requests(
    conn: psycopg.Connection,
    encoders: dict[str, QueryEncoder],
    stopping: threading.Event | None = None,
) -> int:
    """Embed the open requests of the spaces we have a model for, a batch at a time, until none
    is left or `stopping` is set; returns how many."""
    answered = 0
    while stopping is None or not stopping.is_set():
        looked_at = time.time()
        with conn.transaction():
            # A cached answer lost in a crash is only embedded again: its commit need not wait
            # for the disk, and the caller waiting on it is woken sooner.
            conn.execute("SET LOCAL synchronous_commit = off")
            requests = (
                conn.cursor(row_factory=class_row(Request))
                .execute(TAKE, [list(encoders), BATCH])
                .fetchall()
            )
            picked_at = time.time()
            spent = {
                space: _answer(conn, encoders[space], [r for r in requests if r.space == space])
                for space in {request.space for request in requests}
            }
        for space, model_s in spent.items():
            # bench/embed_latency.py reads these lines (`semsql worker -v`).
            log.debug(
                "answered %d text(s) of %s: looked at %.6f, picked up at %.6f, model %.2f ms, "
                "written at %.6f",
                sum(r.space == space for r in requests), space, looked_at, picked_at,
                model_s * 1000, time.time(),
            )  # fmt: skip
        answered += len(requests)
        if len(requests) < BATCH:
            break
    return answered


def _answer(conn: psycopg.Connection, encoder: QueryEncoder, requests: list[Request]) -> float:
    """Embeds and writes the answers to `requests`; returns the seconds the model took."""
    vectors: list[Any] = []
    errors: list[str | None] = []
    started = time.perf_counter()
    try:
        with encoder.lock:
            vectors = list(encoder.encode([request.text for request in requests]))
        errors = [None] * len(requests)
    except Exception:
        for request in requests:  # one bad text must not fail the others
            try:
                with encoder.lock:
                    vectors.append(encoder.encode([request.text])[0])
                errors.append(None)
            except Exception as error:
                vectors.append(None)
                errors.append(f"{encoder.model_name}: {type(error).__name__}: {error}"[:1000])
    model_s = time.perf_counter() - started
    conn.execute(
        """UPDATE semsql.query_embeddings q
           SET embedding = r.embedding, error = r.error, model = %s, answered_at = now()
           FROM unnest(%s::text[], %s::text[], %s::text[], %b::vector[], %s::text[])
                AS r(space, requested_by, text_sha256, embedding, error)
           WHERE (q.space, q.requested_by, q.text_sha256)
                 = (r.space, r.requested_by, r.text_sha256)""",
        [
            encoder.model_name,
            [request.space for request in requests],
            [request.requested_by for request in requests],
            [request.text_sha256 for request in requests],
            [None if v is None else np.asarray(v, dtype=np.float32) for v in vectors],
            errors,
        ],
    )
    return model_s


# A query is one short text: one thread embeds it about as fast as two, and stays fast when the
# other cores are busy, where a team of OpenMP threads waits for its slowest member (on two
# shared cores, MiniLM took 120 ms at the median with two threads, 14 ms with one).
QUERY_THREADS = 1
# Texts of a few lengths embedded at start: torch's first run of each input shape is slower.
WARM_UP = ("a", "a photo of a dog", "children playing in the snow in front of a red house " * 3)


def limit_torch_threads(threads: int) -> None:
    """This thread's torch ops use `threads` threads, other threads' as many as before."""
    try:
        import torch
    except ImportError:  # an encoder that does not use torch
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # this thread's OpenMP and MKL setting, and torch's default
    # torch.set_num_threads also sets the default that a thread's first op takes: set it back
    # from a thread of its own, so that this one keeps its setting.
    restore = threading.Thread(target=torch.set_num_threads, args=(before,))
    restore.start()
    restore.join()


class QueryAnswerer(threading.Thread):
    """Answers embed_text requests whenever semsql_embed is notified, and on a poll tick,
    on one torch thread of its own, warmed up at start."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        encoders: dict[str, QueryEncoder],
        *,
        poll_interval: float,
        name: str,
    ) -> None:
        super().__init__(name=f"semsql-answer-{name}", daemon=True)
        self.encoders = encoders
        self.poll_interval = poll_interval
        self.listener = Listener(connect, [EMBED_CHANNEL])
        self.wakeup = Wakeup()
        self.stopping = threading.Event()
        self.answered = 0

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()

    def warm_up(self) -> None:
        limit_torch_threads(QUERY_THREADS)
        for encoder in self.encoders.values():
            try:
                with encoder.lock:
                    for length in range(1, len(WARM_UP) + 1):
                        encoder.encode(WARM_UP[:length])
                        encoder.encode(WARM_UP[length - 1 : length])
            except Exception:  # a model that fails here fails each request alike, and says why
                log.exception("warming up %s", encoder.model_name)

    def run(self) -> None:
        self.warm_up()
        while not self.stopping.is_set():
            try:
                if self.listener.backend_pid is None:
                    self.listener.open()
                assert self.listener.conn is not None
                self.answered += answer_requests(self.listener.conn, self.encoders, self.stopping)
            except psycopg.Error as error:
                log.warning("embed_text answers: %s", str(error).strip())
                self.listener.close()
                self.stopping.wait(1.0)
                continue
            except Exception:  # keep answering whatever one request did
                log.exception("answering embed_text requests")
                self.stopping.wait(1.0)
                continue
            self.listener.wait(self.poll_interval, self.wakeup)
        self.listener.close()
        self.wakeup.close()
