"""The worker's service thread: answers semsql.embed_text, and keeps the worker known as alive.

It has a connection of its own that LISTENs on semsql_embed. Its backend is the one
semsql.workers records, so embed_text can tell at once whether a worker is there to answer;
on the same beat it extends the leases of the tasks the worker holds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from .queue import EMBED_CHANNEL, Listener, Wakeup

log = logging.getLogger(__name__)

BATCH = 64
SPACE_STAGES = {"text": "text", "image": "clip"}


@dataclass
class QueryEncoder:
    """A model that turns texts into vectors of a space, and the lock around its use."""

    model_name: str
    encode: Callable[[Sequence[str]], np.ndarray]
    lock: threading.Lock


@dataclass
class Registration:
    """What semsql.workers says about this worker."""

    name: str
    device: str
    stages: list[str]
    problems: dict[str, str] = field(default_factory=dict)
    query_spaces: list[str] = field(default_factory=list)


def answer_requests(conn: psycopg.Connection, encoders: dict[str, QueryEncoder]) -> int:
    """Embed every open request of the spaces we have a model for; returns how many."""
    answered = 0
    while True:
        with conn.transaction():
            rows = conn.execute(
                """SELECT space, text_sha256, text FROM semsql.query_embeddings
                   WHERE embedding IS NULL AND error IS NULL AND space = ANY (%s)
                   ORDER BY requested_at LIMIT %s FOR UPDATE SKIP LOCKED""",
                [list(encoders), BATCH],
            ).fetchall()
            for space in {row[0] for row in rows}:
                wanted = [(digest, text) for s, digest, text in rows if s == space]
                _answer(conn, space, encoders[space], wanted)
        answered += len(rows)
        if len(rows) < BATCH:
            return answered


def _answer(
    conn: psycopg.Connection, space: str, encoder: QueryEncoder, wanted: list[tuple[str, str]]
) -> None:
    vectors: list[Any] = []
    errors: list[str | None] = []
    try:
        with encoder.lock:
            vectors = list(encoder.encode([text for _, text in wanted]))
        errors = [None] * len(wanted)
    except Exception:
        for _, text in wanted:  # one bad text must not fail the others
            try:
                with encoder.lock:
                    vectors.append(encoder.encode([text])[0])
                errors.append(None)
            except Exception as error:
                vectors.append(None)
                errors.append(f"{encoder.model_name}: {type(error).__name__}: {error}"[:1000])
    conn.execute(
        """UPDATE semsql.query_embeddings q
           SET embedding = r.embedding, error = r.error, model = %s, answered_at = now()
           FROM unnest(%s::text[], %b::vector[], %s::text[]) AS r(text_sha256, embedding, error)
           WHERE q.space = %s AND q.text_sha256 = r.text_sha256""",
        [
            encoder.model_name,
            [digest for digest, _ in wanted],
            [None if v is None else np.asarray(v, dtype=np.float32) for v in vectors],
            errors,
            space,
        ],
    )


class ServiceThread(threading.Thread):
    """Answers embed_text requests; registers the worker and beats its heartbeat."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        registration: Registration,
        encoders: dict[str, QueryEncoder],
        *,
        heartbeat_every: float,
        lease: timedelta,
    ) -> None:
        super().__init__(name=f"semsql-service-{registration.name}", daemon=True)
        self.registration = registration
        self.encoders = encoders
        self.heartbeat_every = heartbeat_every
        self.lease = lease
        self.listener = Listener(connect, [EMBED_CHANNEL])
        self.wakeup = Wakeup()
        self.stopping = threading.Event()
        self.registered = threading.Event()
        self.answered = 0
        self._registered_backend: int | None = None

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()

    def run(self) -> None:
        next_beat = 0.0
        while not self.stopping.is_set():
            try:
                if self.listener.backend_pid is None:
                    self.listener.open()
                conn = self.listener.conn
                assert conn is not None
                if self._registered_backend != self.listener.backend_pid:
                    self._register(conn)
                if self.encoders:
                    self.answered += answer_requests(conn, self.encoders)
                if time.monotonic() >= next_beat:
                    self._beat(conn)
                    next_beat = time.monotonic() + self.heartbeat_every
            except psycopg.Error as error:
                log.warning("service connection: %s", str(error).strip())
                self.listener.close()
                self.stopping.wait(1.0)
                continue
            except Exception:  # keep answering and beating whatever one request did
                log.exception("answering embed_text requests")
                self.stopping.wait(1.0)
                continue
            self.listener.wait(max(next_beat - time.monotonic(), 0.0), self.wakeup)
        self._unregister()
        self.listener.close()
        self.wakeup.close()

    def _register(self, conn: psycopg.Connection) -> None:
        reg = self.registration
        reg.query_spaces = sorted(self.encoders)
        conn.execute(
            "SELECT semsql.register_worker(%s, %s, %s, %s, %s, %s, %s)",
            [
                reg.name,
                socket.gethostname(),
                os.getpid(),
                reg.device,
                reg.stages,
                reg.query_spaces,
                Jsonb(reg.problems),
            ],
        )
        self._registered_backend = self.listener.backend_pid
        self.registered.set()

    def _beat(self, conn: psycopg.Connection) -> None:
        found = conn.execute(
            "SELECT semsql.worker_heartbeat(%s, %s)", [self.registration.name, self.lease]
        ).fetchone()[0]
        if not found:
            self._register(conn)
        if self.encoders:
            conn.execute("SELECT semsql.trim_query_cache()")

    def _unregister(self) -> None:
        conn = self.listener.conn
        if conn is None or conn.closed:
            return
        try:
            conn.execute("SELECT semsql.unregister_worker(%s)", [self.registration.name])
        except psycopg.Error as error:
            log.warning("could not unregister the worker: %s", str(error).strip())
