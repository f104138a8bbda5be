"""The bulk path for a large backlog of vectors (sql/035_vector_index.sql) and of content
hashes (sql/036_content_index.sql).

Indexing vectors one by one into HNSW runs at 500 to 700 a second on two cores; writing them
to a bare table and building the index once, at 3,000 to 4,200 all told. Before it drains
the queue, the worker asks the database to drop the index of a space (or the content index)
whose backlog is large beside what it holds (`defer`); once the backlog is written, it builds
the index again on a thread and connection of its own (`build_deferred`), while it goes on
with new work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from semsql.database import fetch_value

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_S = 60.0
CONTENT = "content"
"""The name the content index goes by here, beside the vector spaces."""
CONTENT_MIN_BACKLOG = 500
"""The content index is deferred from a smaller backlog than vectors are: a hash costs 1 to
2 ms of CPU to index row by row and a tenth of that in a build (2.7 rows an image), so even a
folder of 500 images is hashed faster with the index built after it."""


class VectorIndexes:
    """The deferred HNSW indexes of the vector spaces one worker writes."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        spaces: Sequence[str],
        min_backlog: int,
        content: bool = False,
    ) -> None:
        self._connect = connect
        self.spaces = list(spaces)
        self.content = content
        """Whether this worker writes content hashes (then the content index is its too)."""
        self.min_backlog = min_backlog
        self._thread: threading.Thread | None = None
        self._building: psycopg.Connection | None = None
        self._stopping = threading.Event()
        self._failed_at: dict[str, float] = {}
        self.rebuilt: list[str] = []

    def defer(self, conn: psycopg.Connection) -> list[str]:
        """Drop the index of each space whose backlog warrants a bulk build; those spaces."""
        if self.min_backlog <= 0:
            return []
        deferred = []
        for space in self.spaces:
            if fetch_value(
                conn, "SELECT semsql.defer_vector_index(%s, %s)", [space, self.min_backlog]
            ):
                log.info(
                    "%s space: index dropped for a backlog of %d or more vectors; "
                    "it is built again once they are written",
                    space,
                    self.min_backlog,
                )
                deferred.append(space)
        content_backlog = min(self.min_backlog, CONTENT_MIN_BACKLOG)
        if self.content and fetch_value(
            conn, "SELECT semsql.defer_content_index(%s)", [content_backlog]
        ):
            log.info(
                "content index dropped for a backlog of %d or more images; it is built again "
                "once their hashes are written",
                content_backlog,
            )
            deferred.append(CONTENT)
        return deferred

    def build_deferred(self, conn: psycopg.Connection) -> None:
        """Start building the deferred indexes of these spaces (and the content index),
        unless a build is running."""
        if not (self.spaces or self.content) or self.building():
            return
        now = time.monotonic()
        due = [
            row[0]
            for row in conn.execute(
                """SELECT space FROM semsql.vector_spaces
                   WHERE space = ANY (%s) AND index_deferred_since IS NOT NULL""",
                [self.spaces],
            )
            if now >= self._failed_at.get(row[0], 0.0) + RETRY_AFTER_FAILURE_S
        ]
        if (
            self.content
            and now >= self._failed_at.get(CONTENT, 0.0) + RETRY_AFTER_FAILURE_S
            and fetch_value(conn, "SELECT semsql.content_index_build_steps()")
        ):
            due.append(CONTENT)
        if due:
            self._thread = threading.Thread(
                target=self._build_all, args=(due,), name="semsql-index", daemon=True
            )
            self._thread.start()

    def building(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def stop(self) -> None:
        """Cancel a build in progress (the index stays deferred; the next worker builds it)."""
        self._stopping.set()
        building = self._building
        if building is not None:
            building.cancel_safe()
        self.wait()

    def _build_all(self, spaces: list[str]) -> None:
        for space in spaces:
            if self._stopping.is_set():
                return
            try:
                self._build(space)
            except psycopg.Error as error:
                self._failed_at[space] = time.monotonic()
                log.warning("%s space: the index was not built (%s)", space, str(error).strip())

    def _build(self, space: str) -> None:
        # The steps record this connection as the space's builder, until it closes.
        with self._connect() as conn:
            self._building = conn
            if self._stopping.is_set():
                return
            try:
                if space == CONTENT:
                    steps = fetch_value(conn, "SELECT semsql.content_index_build_steps()")
                else:
                    steps = fetch_value(conn, "SELECT semsql.vector_index_build_steps(%s)", [space])
                started = time.perf_counter()
                for step in steps:
                    conn.execute(sql.SQL(step))
                if space == CONTENT:
                    finished = bool(steps)
                else:
                    finished = fetch_value(conn, "SELECT semsql.finish_vector_index(%s)", [space])
                if finished:
                    self.rebuilt.append(space)
                    log.info("%s index built in %.1f s", space, time.perf_counter() - started)
                if finished and space != CONTENT:
                    self._calibrate(conn, space)
            finally:
                self._building = None

    def _calibrate(self, conn: psycopg.Connection, space: str) -> None:
        """After a bulk load the library is another: measure the search width it needs now
        (semsql.calibrate_ef_search on 300 queries: a few minutes at a million vectors, on this
        thread)."""
        try:
            ef = fetch_value(conn, "SELECT semsql.calibrate_ef_search(%s)", [space])
        except psycopg.Error as error:
            log.warning("%s space: ef_search not calibrated (%s)", space, str(error).strip())
            return
        log.info("%s space: searches use ef_search %s (calibrated)", space, ef)
