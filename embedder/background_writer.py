"""Stores one batch at a time on a connection and thread of its own, while the model runs on
the next: the results, written by the stage's writer, and the tasks marked done, in one
transaction (queue.Queue.finish)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg

from .pipeline import Runner
from .queue import Failure, Queue, QueueSettings, Task

log = logging.getLogger(__name__)


class BackgroundWriter:
    """Stores one batch at a time on its own connection and thread, while the model runs on the
    next. It raises only OperationalError (the database is gone); any other problem fails the
    tasks concerned instead."""

    def __init__(
        self, connect: Callable[[], psycopg.Connection], worker: str, settings: QueueSettings
    ) -> None:
        self._connect = connect
        self._worker = worker
        self._settings = settings
        self._thread = ThreadPoolExecutor(1, "semsql-write")
        self._queue: Queue | None = None
        self._pending: tuple[Future[None], list[Task]] | None = None

    def submit(
        self, runner: Runner, tasks: list[Task], results: dict[int, Any], failures: list[Failure]
    ) -> list[Task]:
        """Wait until the batch before is stored (returning its tasks), then store this one."""
        stored = self.wait()
        future = self._thread.submit(self._store, runner, tasks, results, failures)
        self._pending = (future, tasks)
        return stored

    def wait(self) -> list[Task]:
        """The tasks of the batch in flight once it is stored; [] when there was none."""
        if self._pending is None:
            return []
        future, tasks = self._pending
        self._pending = None
        future.result()
        return tasks

    def reset(self) -> None:
        """After the database went away: drop what was in flight and the connection."""
        with contextlib.suppress(psycopg.Error):
            self.wait()
        self._thread.submit(self._disconnect).result()

    def close(self) -> None:
        self.reset()
        self._thread.shutdown()

    def _disconnect(self) -> None:
        if self._queue is not None:
            self._queue.conn.close()
            self._queue = None

    def _store(
        self, runner: Runner, tasks: list[Task], results: dict[int, Any], failures: list[Failure]
    ) -> None:
        started = time.perf_counter()
        done = [(task, results[task.id]) for task in tasks if task.id in results]
        try:
            if self._queue is None or self._queue.conn.closed:
                self._queue = Queue(self._connect(), self._worker, self._settings)
            try:
                self._queue.finish(runner.write, runner.model_name, done, failures)
            except psycopg.OperationalError:
                raise
            except (psycopg.Error, ValueError) as error:
                log.warning(
                    "%s: storing the batch failed (%s); one task at a time",
                    runner.stage,
                    str(error).strip(),
                )
                self._store_one_by_one(runner, done, failures)
        except psycopg.OperationalError:
            self._disconnect()
            raise
        except Exception as error:  # a bug must neither stop the daemon nor lose the tasks
            log.exception("%s: storing the batch failed", runner.stage)
            message = f"{runner.stage}: could not store the results: {error}"
            self._fail(tasks, message, permanent=False)
        finally:
            runner.stats.write_s += time.perf_counter() - started

    def _store_one_by_one(
        self, runner: Runner, done: list[tuple[Task, Any]], failures: list[Failure]
    ) -> None:
        assert self._queue is not None
        for task, result in done:
            try:
                self._queue.finish(runner.write, runner.model_name, [(task, result)], [])
            except psycopg.OperationalError:
                raise
            except (psycopg.Error, ValueError) as error:
                message = f"{runner.stage}: the database refused the result: {error}".strip()
                self._fail([task], message, permanent=True)
        self._queue.finish(runner.write, runner.model_name, [], failures)

    def _fail(self, tasks: list[Task], error: str, *, permanent: bool) -> None:
        assert self._queue is not None
        self._queue.fail([Failure(task.id, error[:1000], permanent) for task in tasks])
