"""The worker's answerer: it turns the texts that semsql.embed_text asks for into vectors.

It has a connection and a thread of its own that LISTEN on semsql_embed. Requests are answered
oldest first, in batches, each in a transaction that holds its rows (FOR UPDATE SKIP LOCKED),
so that several workers share them and a worker killed mid-batch leaves them to the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import class_row

from .queue import EMBED_CHANNEL, Listener, Wakeup

log = logging.getLogger(__name__)

BATCH = 64


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
        with conn.transaction():
            requests = (
                conn.cursor(row_factory=class_row(Request))
                .execute(
                    """SELECT space, requested_by, text_sha256, text FROM semsql.query_embeddings
                       WHERE embedding IS NULL AND error IS NULL AND space = ANY (%s)
                       ORDER BY requested_at LIMIT %s FOR UPDATE SKIP LOCKED""",
                    [list(encoders), BATCH],
                )
                .fetchall()
            )
            for space in {request.space for request in requests}:
                _answer(conn, encoders[space], [r for r in requests if r.space == space])
        answered += len(requests)
        if len(requests) < BATCH:
            break
    return answered


def _answer(conn: psycopg.Connection, encoder: QueryEncoder, requests: list[Request]) -> None:
    vectors: list[Any] = []
    errors: list[str | None] = []
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


class QueryAnswerer(threading.Thread):
    """Answers embed_text requests whenever semsql_embed is notified, and on a poll tick."""

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

    def run(self) -> None:
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
