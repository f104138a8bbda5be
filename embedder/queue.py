"""The work queue as a worker sees it: claim, finish, fail and release tasks; wake on NOTIFY.

The tasks table is the truth and NOTIFY only a hint: a Listener wakes the worker early, and
after every reconnect it reports a wake-up, because notifications sent while it was away are
lost. The SQL lives in sql/030_worker.sql; this module only calls it.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from semsql.database import fetch_value

log = logging.getLogger(__name__)

TASKS_CHANNEL = "semsql_tasks"
EMBED_CHANNEL = "semsql_embed"


@dataclass(frozen=True)
class Task:
    id: int
    asset_id: int
    uri: str
    sha256: str
    root: str | None
    """The folder the file must stay inside when it is read; None for a URL."""
    bytes: int | None
    """The file's size at ingest."""
    attempts: int


@dataclass(frozen=True)
class Failure:
    task_id: int
    error: str
    permanent: bool


@dataclass(frozen=True)
class QueueSettings:
    lease: timedelta = timedelta(minutes=2)
    max_attempts: int = 5
    backoff: timedelta = timedelta(seconds=10)
    backoff_cap: timedelta = timedelta(hours=1)


class Queue:
    """Task operations for one worker, on an autocommit connection the caller owns."""

    def __init__(
        self, conn: psycopg.Connection, worker: str, settings: QueueSettings | None = None
    ) -> None:
        self.conn = conn
        self.worker = worker
        self.settings = settings or QueueSettings()

    def claim(self, stage: str, limit: int) -> list[Task]:
        tasks = (
            self.conn.cursor(row_factory=class_row(Task))
            .execute(
                """SELECT task_id AS id, asset_id, uri, sha256, root, bytes, attempts
                   FROM semsql.claim_tasks(%s, %s, %s, %s)""",
                [self.worker, stage, limit, self.settings.lease],
            )
            .fetchall()
        )
        return sorted(tasks, key=lambda task: task.id)

    def lock_owned(self, task_ids: Iterable[int]) -> set[int]:
        """Inside a transaction: the tasks this worker still holds, locked until commit."""
        rows = self.conn.execute(
            "SELECT semsql.lock_owned_tasks(%s, %s)", [self.worker, list(task_ids)]
        ).fetchall()
        return {row[0] for row in rows}

    def complete(self, task_ids: Iterable[int], model: str) -> int:
        ids = list(task_ids)
        if not ids:
            return 0
        completed: int = fetch_value(
            self.conn, "SELECT semsql.complete_tasks(%s, %s, %s)", [self.worker, ids, model]
        )
        return completed

    def fail(self, failures: Sequence[Failure]) -> dict[int, str]:
        """Record failures; returns task id -> new status (failed, or pending for a retry)."""
        if not failures:
            return {}
        rows = self.conn.execute(
            "SELECT task_id, status FROM semsql.fail_tasks(%s, %s, %s, %s, %s, %s, %s)",
            [
                self.worker,
                [failure.task_id for failure in failures],
                [failure.error.replace("\x00", "")[:2000] for failure in failures],
                [failure.permanent for failure in failures],
                self.settings.max_attempts,
                self.settings.backoff,
                self.settings.backoff_cap,
            ],
        ).fetchall()
        return dict(rows)

    def finish(
        self,
        write: Callable[[psycopg.Connection, list[tuple[Task, Any]]], None],
        model: str,
        done: Sequence[tuple[Task, Any]],
        failures: Sequence[Failure],
    ) -> None:
        """In one transaction: results written (by `write`) and tasks marked done, failures
        recorded; only for the tasks this worker still holds."""
        task_ids = [task.id for task, _ in done] + [failure.task_id for failure in failures]
        if not task_ids:
            return
        with self.conn.transaction():
            owned = self.lock_owned(task_ids)
            mine = [(task, result) for task, result in done if task.id in owned]
            if mine:
                write(self.conn, mine)
                self.complete([task.id for task, _ in mine], model)
            self.fail([failure for failure in failures if failure.task_id in owned])

    def release(self, task_ids: Iterable[int]) -> int:
        ids = list(task_ids)
        if not ids:
            return 0
        released: int = fetch_value(
            self.conn, "SELECT semsql.release_tasks(%s, %s)", [self.worker, ids]
        )
        return released

    def retry_failed(self, stages: Sequence[str] | None = None) -> int:
        retried: int = fetch_value(
            self.conn, "SELECT semsql.retry_failed_tasks(%s)", [list(stages) if stages else None]
        )
        return retried

    def report_unavailable(self, stage: str, reason: str, fix: str | None) -> int:
        """This worker cannot run `stage`: unless another live worker does, it is recorded as
        unavailable and its pending tasks wait; returns how many started waiting."""
        parked: int = fetch_value(
            self.conn,
            "SELECT semsql.report_unavailable_stage(%s, %s, %s, %s)",
            [self.worker, stage, reason, fix],
        )
        return parked

    def has_work(self, stages: Sequence[str]) -> bool:
        has_work: bool = fetch_value(self.conn, "SELECT semsql.worker_has_work(%s)", [list(stages)])
        return has_work


class Wakeup:
    """A self-pipe: another thread or a signal handler makes Listener.wait return at once."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)

    def set(self) -> None:
        # BlockingIOError: already full of wake-ups; OSError: closed, nobody waits any more.
        with contextlib.suppress(OSError):
            self.writer.send(b"\0")

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self.reader.recv(4096):
                pass

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


class Listener:
    """LISTEN on some channels over a connection of its own, reconnecting when it breaks."""

    def __init__(self, connect: Callable[[], psycopg.Connection], channels: Sequence[str]) -> None:
        self._connect = connect
        self.channels = tuple(channels)
        self.conn: psycopg.Connection | None = None

    @property
    def backend_pid(self) -> int | None:
        return None if self.conn is None or self.conn.closed else self.conn.info.backend_pid

    def open(self) -> None:
        self.close()
        conn = self._connect()
        conn.autocommit = True
        for channel in self.channels:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def wait(self, timeout: float, wakeup: Wakeup | None = None) -> bool:
        """Block up to `timeout` seconds; True when woken early (a notification, a reconnect,
        the wake-up pipe), False on timeout. Never raises for a broken connection."""
        if self.conn is None or self.conn.closed:
            return self._reopen(timeout, wakeup)
        try:
            if self._received():
                return True
            readers: list[int] = [self.conn.fileno()]
            if wakeup is not None:
                readers.append(wakeup.reader.fileno())
            ready, _, _ = select.select(readers, [], [], max(timeout, 0.0))
            if wakeup is not None and wakeup.reader.fileno() in ready:
                wakeup.clear()
                return True
            if not ready:
                return False
            if self._received():
                return True
            self.conn.execute("SELECT 1")  # readable without a notification: still alive?
            return False
        except psycopg.Error as error:
            log.warning("listen connection lost (%s); reconnecting", str(error).strip())
            self.close()
            return self._reopen(timeout, wakeup)

    def _received(self) -> bool:
        assert self.conn is not None
        return len(list(self.conn.notifies(timeout=0.0))) > 0

    def _reopen(self, timeout: float, wakeup: Wakeup | None) -> bool:
        try:
            self.open()
            return True  # notifications sent while disconnected are lost: drain now
        except psycopg.Error as error:
            log.warning("cannot reconnect the listen connection yet: %s", str(error).strip())
        readers = [wakeup.reader] if wakeup is not None else []
        select.select(readers, [], [], max(timeout, 0.0))
        return False
