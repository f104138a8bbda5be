"""Pools of connections to semsql's database: reads and searches act as the analyst role,
uploads and edits as the writer role (SET ROLE on each new connection), so the pages can do
no more than those roles may. GET /api/search reads through an asyncio pool of the same role:
it waits for the database on the event loop instead of in a thread (semsql/serve/fast.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from semsql import database
from semsql.serve.errors import ApiError


class RoleError(RuntimeError):
    """The server's login cannot act as a role it needs."""


def _acting_as(role: str) -> Callable[[psycopg.Connection], None]:
    def configure(conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        if not conn.autocommit:
            conn.commit()

    return configure


def _acting_as_async(role: str) -> Callable[[psycopg.AsyncConnection], Awaitable[None]]:
    async def configure(conn: psycopg.AsyncConnection) -> None:
        await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))

    return configure


class Database:
    def __init__(self, url: str, reader_role: str, writer_role: str, size: int) -> None:
        self.url = url
        self.reader_role = reader_role
        self.writer_role = writer_role
        self._readers = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True},
            configure=_acting_as(reader_role),
            open=False,
            name="semsql-read",
        )
        self._writers = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, size // 2),
            configure=_acting_as(writer_role),
            open=False,
            name="semsql-write",
        )
        self._async_readers = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True},
            configure=_acting_as_async(reader_role),
            open=False,
            name="semsql-read-async",
        )

    def open(self) -> None:
        """Checks that the login may act as both roles, then opens the pools."""
        with database.connect(self.url, autocommit=True) as conn:
            for role in (self.reader_role, self.writer_role):
                try:
                    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
                    conn.execute("RESET ROLE")
                except psycopg.Error as error:
                    raise RoleError(
                        f"the server's login cannot act as {role}: "
                        f"{error.diag.message_primary or error} (run `semsql init` as the "
                        f"database owner, or GRANT {role} TO the login)"
                    ) from None
        self._readers.open(wait=True, timeout=30)
        self._writers.open(wait=True, timeout=30)

    async def open_async(self) -> None:
        """Opens the asyncio pool (in the event loop that uses it; after open())."""
        await self._async_readers.open(wait=True, timeout=30)

    def close(self) -> None:
        self._readers.close()
        self._writers.close()

    async def close_async(self) -> None:
        await self._async_readers.close()

    @contextmanager
    def reader(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection with the analyst role's rights."""
        with self._checkout(self._readers) as conn:
            yield conn

    @asynccontextmanager
    async def async_reader(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """reader(), for a coroutine."""
        try:
            connection = await self._async_readers.getconn(timeout=30)
        except psycopg.OperationalError as error:
            raise ApiError(503, f"no database connection free: {error}") from None
        try:
            yield connection
        finally:
            await self._async_readers.putconn(connection)

    @contextmanager
    def writer(self) -> Iterator[psycopg.Connection]:
        """A connection with the writer role's rights: commit what it changes."""
        with self._checkout(self._writers) as conn:
            yield conn

    @contextmanager
    def _checkout(self, pool: ConnectionPool) -> Iterator[psycopg.Connection]:
        try:
            connection = pool.getconn(timeout=30)
        except psycopg.OperationalError as error:  # PoolTimeout: every connection is busy
            raise ApiError(503, f"no database connection free: {error}") from None
        try:
            yield connection
        finally:
            pool.putconn(connection)
