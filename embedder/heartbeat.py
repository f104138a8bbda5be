"""The worker's heartbeat: it keeps the worker registered as alive and its leases extended.

It has a connection and a thread of its own, which nothing else uses, so that no amount of
other work (a flood of embed_text requests, a long model call) can make it miss a beat and
let the worker's leases expire while it lives. Its backend is the one semsql.workers records:
embed_text and `semsql status` tell a live worker by it. On the same beat it trims the cache
of query vectors.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)


@dataclass
class Registration:
    """What semsql.workers says about this worker."""

    name: str
    device: str
    stages: list[str]
    """The stages it runs, their models loaded: registering makes them available again (their
    waiting tasks pending)."""
    problems: dict[str, str] = field(default_factory=dict)
    """Stage -> why it cannot run it (its model is off or did not load)."""
    query_spaces: list[str] = field(default_factory=list)


class Heartbeat(threading.Thread):
    """Registers the worker, then beats every `every` seconds until stopped."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        registration: Registration,
        *,
        every: float,
        lease: timedelta,
    ) -> None:
        super().__init__(name=f"semsql-heartbeat-{registration.name}", daemon=True)
        self._connect = connect
        self.registration = registration
        self.every = every
        self.lease = lease
        self.stopping = threading.Event()
        self.registered = threading.Event()
        self._conn: psycopg.Connection | None = None

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                    self._register(self._conn)
                self._beat(self._conn)
            except psycopg.Error as error:
                log.warning("heartbeat connection: %s", str(error).strip())
                self._close()
                self.stopping.wait(1.0)
                continue
            self.stopping.wait(self.every)
        self._unregister()
        self._close()

    def _register(self, conn: psycopg.Connection) -> None:
        reg = self.registration
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
        self.registered.set()

    def _beat(self, conn: psycopg.Connection) -> None:
        row = conn.execute(
            "SELECT semsql.worker_heartbeat(%s, %s)", [self.registration.name, self.lease]
        ).fetchone()
        if not (row and row[0]):
            self._register(conn)  # forgotten (by register_worker of another, after a restart)
        if self.registration.query_spaces:
            conn.execute("SELECT semsql.trim_query_cache()")

    def _unregister(self) -> None:
        if self._conn is None or self._conn.closed:
            return
        try:
            self._conn.execute("SELECT semsql.unregister_worker(%s)", [self.registration.name])
        except psycopg.Error as error:
            log.warning("could not unregister the worker: %s", str(error).strip())

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
