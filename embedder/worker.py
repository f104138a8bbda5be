"""`semsql worker`: the daemon that fills captions, tags, faces, emotions and vectors.

    worker = Worker(database_url, WorkerOptions(stages=("faces", "text")))
    worker.run()            # until stop() or SIGTERM; --once / --until-idle return earlier

It drains the queue at start, after every NOTIFY and on every poll tick, one batch per stage
in turn. While the model runs on a batch, the next batch is already claimed with its images
decoding in background threads, and the batch before is being stored by another thread. A
stage whose model is off or cannot load is reported unavailable (semsql.unavailable_stages,
with the reason and the fix) and its tasks wait, unless another live worker runs it; the other
stages go on. A worker that loads the model takes the waiting tasks back when it registers.
Results and "done" commit together, so a worker killed at any instant loses nothing: its
tasks are claimed again once its connection is gone or its lease expires.
A large backlog of vectors is written with its space's HNSW index dropped, and the index is
built again on a thread of its own once the backlog is written (vector_index.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
import torch
from psycopg.conninfo import make_conninfo

from semsql import database
from semsql import stages as registry

from .background_writer import BackgroundWriter
from .heartbeat import Heartbeat, Registration
from .models import load_model_config
from .pipeline import Batch, Runner, TransientError, describe
from .query_embeddings import QueryAnswerer
from .queue import TASKS_CHANNEL, Failure, Listener, Queue, QueueSettings, Task, Wakeup
from .startup import Unavailable, enable_stages_turned_on, load_runners, query_encoders
from .vector_index import VectorIndexes

log = logging.getLogger(__name__)

MAX_RECONNECT_DELAY_S = 30.0
DEFER_CHECK_EVERY_S = 10.0


@dataclass
class WorkerOptions:
    stages: tuple[str, ...] = registry.NAMES
    batch_size: int = 16
    poll_interval: float = 5.0
    once: bool = False
    until_idle: bool = False
    retry_failed: bool = False
    device: str = "auto"
    answer_queries: bool = True
    listen: bool = True
    """False: poll only (behind a pooler in transaction mode, where LISTEN does not work)."""
    reset_spaces: tuple[str, ...] = ()
    decode_threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    heartbeat_every: float = 10.0
    """Seconds between heartbeats (each extends the leases); kept under a quarter lease."""
    bulk_index_at: int = 5000
    """A vector stage with this many tasks pending (and a quarter as many as its space holds
    vectors) has its space's HNSW index dropped, and built again once they are written (the
    content stage from 500 or this, whichever is less); 0: never."""
    name: str | None = None
    stage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per stage, options for its loader, e.g. {"tags": {"threshold": 0.5}}."""
    queue: QueueSettings = field(default_factory=QueueSettings)


class Worker:
    def __init__(
        self,
        url: str,
        options: WorkerOptions | None = None,
        models: Mapping[str, str | None] | None = None,
    ) -> None:
        self.url = url
        self.options = options or WorkerOptions()
        self.models = dict(models) if models is not None else load_model_config()
        self.name = self.options.name or (
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        )
        self.runners: dict[str, Runner] = {}
        self.unavailable: dict[str, Unavailable] = {}  # stage -> why this worker cannot run it
        self.problems: dict[str, str] = {}  # the same in one line, for the registration
        self.served: list[str] = []
        self.device = ""
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.wakeup = Wakeup()
        self.listener = Listener(self._connect, [TASKS_CHANNEL] if self.options.listen else [])
        self.pool = ThreadPoolExecutor(self.options.decode_threads, "semsql-decode")
        self.writer = BackgroundWriter(self._connect, self.name, self.options.queue)
        self.conn: psycopg.Connection | None = None
        self.queue: Queue | None = None
        self.heartbeat: Heartbeat | None = None
        self.answerer: QueryAnswerer | None = None
        self.held: dict[int, Task] = {}
        self.indexes = VectorIndexes(self._connect, [], self.options.bulk_index_at)
        self._turn = 0
        self._deferral_checked_at = float("-inf")

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self) -> None:
        restore = self._handle_signals()
        try:
            self._start()
            self._loop()
        finally:
            self._shutdown()
            restore()

    def stop(self) -> None:
        """Finish the batch in hand, give back the one claimed ahead, and return from run()."""
        self.stopping.set()
        self.wakeup.set()

    def _connect(self) -> psycopg.Connection:
        url = make_conninfo(self.url, application_name="semsql worker")
        return database.connect(url, autocommit=True)

    def _start(self) -> None:
        self._open_work_connection()
        assert self.conn is not None
        enable_stages_turned_on(self.conn, self.options.stages, self.models)
        enabled = [
            row[0]
            for row in self.conn.execute(
                "SELECT name FROM semsql.stages WHERE enabled ORDER BY position"
            )
        ]
        for stage in self.options.stages:
            if stage not in enabled:
                log.info("%s: disabled in semsql.stages; not run", stage)
        wanted = [stage for stage in enabled if stage in self.options.stages]
        loaded = load_runners(
            self.conn,
            wanted,
            self.models,
            device=self.options.device,
            pool=self.pool,
            stage_options=self.options.stage_options,
            reset_spaces=self.options.reset_spaces,
        )
        self.device = loaded.device
        self.runners, self.unavailable = loaded.runners, loaded.unavailable
        self.problems = loaded.problems
        self.served = [stage for stage in wanted if stage in self.runners]
        self.indexes.spaces = [
            space for space, spec in registry.SPACES.items() if spec.name in self.runners
        ]
        self.indexes.content = "content" in self.runners
        self._start_service()
        if self.options.retry_failed:
            count = self._queue().retry_failed(self.served)
            log.info("queued %d failed task(s) again", count)
        self.listener.open()
        self.ready.set()

    def _start_service(self) -> None:
        encoders = query_encoders(self.runners) if self.options.answer_queries else {}
        if encoders:
            self.answerer = QueryAnswerer(
                self._connect, encoders, poll_interval=self.options.poll_interval, name=self.name
            )
            self.answerer.start()
        registration = Registration(
            self.name, self.device, self.served, dict(self.problems), sorted(encoders)
        )
        lease_s = self.options.queue.lease.total_seconds()
        self.heartbeat = Heartbeat(
            self._connect,
            registration,
            every=max(0.5, min(self.options.heartbeat_every, lease_s / 4)),
            lease=self.options.queue.lease,
        )
        self.heartbeat.start()
        self.heartbeat.registered.wait(10.0)  # claims read which stages live workers serve

    def _shutdown(self) -> None:
        self.indexes.stop()
        try:
            self._forget(self.writer.wait())
        except psycopg.Error as error:
            log.warning("the last batch was not stored (it will be done again): %s", error)
        self.writer.close()
        if self.held and self.conn is not None and not self.conn.closed:
            try:
                released = self._queue().release(list(self.held))
                log.info("gave back %d task(s) not started", released)
            except psycopg.Error as error:
                log.warning("could not give back tasks (their lease will expire): %s", error)
        for thread in (self.answerer, self.heartbeat):
            if thread is not None:
                thread.stop()
        for thread in (self.answerer, self.heartbeat):
            if thread is not None:
                thread.join(30.0)  # the answerer may be inside a model call
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.listener.close()
        if self.conn is not None:
            self.conn.close()
        self.wakeup.close()

    def _handle_signals(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, frame: Any) -> None:
            if self.stopping.is_set():
                raise KeyboardInterrupt  # a second signal: stop now, leases take care of the rest
            log.info("%s: finishing the batch in hand, then stopping", signal.Signals(signum).name)
            self.stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            try:
                if self.conn is None:
                    self._open_work_connection()
                self.drain()
                self.indexes.build_deferred(self._work_connection())
                delay = 1.0
                if self.options.once or (
                    self.options.until_idle and not self._queue().has_work(self.served)
                ):
                    self.indexes.wait()
                    return
            except psycopg.OperationalError as error:
                log.warning("database: %s; retrying in %.0f s", str(error).strip(), delay)
                self._drop_work_connection()
                self.stopping.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY_S)
                continue
            self.listener.wait(self.options.poll_interval, self.wakeup)

    def drain(self) -> int:
        """Claim and run batches until no stage has a due task; returns how many tasks."""
        self._report_unavailable()
        handled = 0
        current = self._claim_next()
        while current is not None:
            upcoming = None if self.stopping.is_set() else self._claim_next()
            try:
                self._process(current)
            except psycopg.OperationalError:
                raise
            except Exception as error:  # a bug must not stop the daemon, nor loop on one task
                log.exception("%s: unexpected error", current.stage)
                message = f"{current.stage}: worker error: {describe(error)}"
                self._fail_all(current.tasks, message, permanent=False)
            handled += len(current.tasks)
            current = upcoming
            if current is not None and self.stopping.is_set():
                self._queue().release([task.id for task in current.tasks])
                self._forget(current.tasks)
                current = None
        self._forget(self.writer.wait())
        return handled

    def _report_unavailable(self) -> None:
        """The stages this worker cannot run: their tasks wait, unless another worker runs them."""
        for stage, why in self.unavailable.items():
            parked = self._queue().report_unavailable(stage, why.reason, why.fix)
            if parked:
                log.info("%s: %d task(s) wait for a worker that loads its model", stage, parked)

    def _defer_indexes(self) -> None:
        """Now and then: drop the HNSW index of a space about to receive a large backlog."""
        if time.monotonic() - self._deferral_checked_at >= DEFER_CHECK_EVERY_S:
            self._deferral_checked_at = time.monotonic()
            self.indexes.defer(self._work_connection())

    def _claim_next(self) -> Batch | None:
        """The next stage in turn with due tasks, its batch claimed and its inputs on the way."""
        self._defer_indexes()  # before the backlog's vectors are claimed, let alone written
        empty_in_a_row = 0
        while self.served and empty_in_a_row < len(self.served):
            stage = self.served[self._turn % len(self.served)]
            self._turn += 1
            started = time.perf_counter()
            tasks = self._queue().claim(stage, self.options.batch_size)
            if not tasks:
                empty_in_a_row += 1
                continue
            empty_in_a_row = 0
            self.held.update((task.id, task) for task in tasks)
            runner = self.runners[stage]
            batch = runner.prepare(self._work_connection(), tasks)
            if batch.deferred:  # too many video frames for one batch: the next ones take them
                self._queue().release([task.id for task in batch.deferred])
                for task in batch.deferred:
                    self.held.pop(task.id, None)
            runner.stats.claim_s += time.perf_counter() - started
            return batch
        return None

    def _process(self, batch: Batch) -> None:
        runner = self.runners[batch.stage]
        started = time.perf_counter()
        try:
            outcome = runner.run(batch)
        except TransientError as error:
            log.warning("%s: %s; the batch is retried later", batch.stage, error)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self._fail_all(batch.tasks, f"{batch.stage}: {error}", permanent=False)
            return
        stored = self.writer.submit(runner, batch.tasks, outcome.results, outcome.failures)
        self._forget(stored)
        runner.stats.batches += 1
        runner.stats.items += len(batch.tasks)
        runner.stats.failed += len(outcome.failures)
        log.debug(
            "%s: %d done, %d failed in %.2f s",
            batch.stage,
            len(outcome.results),
            len(outcome.failures),
            time.perf_counter() - started,
        )

    def _fail_all(self, tasks: list[Task], error: str, *, permanent: bool) -> None:
        self._queue().fail([Failure(task.id, error, permanent) for task in tasks])
        self._forget(tasks)

    def _forget(self, tasks: list[Task]) -> None:
        for task in tasks:
            self.held.pop(task.id, None)

    # -- connections ----------------------------------------------------------------------------

    def _open_work_connection(self) -> None:
        self.conn = self._connect()
        self.queue = Queue(self.conn, self.name, self.options.queue)

    def _drop_work_connection(self) -> None:
        # Tasks in hand were leased by the lost backend: any worker may claim them again.
        self.writer.reset()
        self.held.clear()
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.queue = None

    def _work_connection(self) -> psycopg.Connection:
        assert self.conn is not None
        return self.conn

    def _queue(self) -> Queue:
        assert self.queue is not None
        return self.queue
