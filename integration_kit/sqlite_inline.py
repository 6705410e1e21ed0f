"""SQLite for SQLAlchemy's async engine, run on the event loop's thread instead of a worker thread.

SQLAlchemy's aiosqlite dialect hands every call (cursor, execute, fetch, close) to aiosqlite's
worker thread and waits for the answer: four thread hand-overs per statement, each paying for the
GIL, while the one SQLite connection is held. Profiling a backlog drain put about three quarters of
the CPU there and `make bench` measured the drain twice as fast without them. SQLite calls on a WAL
database take microseconds, so this module runs them directly, behind the async interface the
aiosqlite dialect expects (given to the engine as its `async_creator` by `db.create_engine`, for
every SQLite database; the dialect still imports the aiosqlite package, so it stays installed).

The one call that can wait long is taking the write lock while another process holds it (a
`worker`, a second API process, the CLI). That call, `BEGIN IMMEDIATE`, is retried here with
asyncio sleeps instead of SQLite's own blocking busy handler, so the event loop keeps serving while
it waits. Everything else runs with a short busy timeout: in WAL mode readers and the lock holder
do not wait on other processes, so it only matters in rare moments (a WAL file being recovered).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# How long a transaction waits for another process's write lock before it fails.
LOCK_WAIT_SECONDS = 30.0
# The blocking busy timeout for every other statement; bounds how long the loop can stall.
STATEMENT_BUSY_TIMEOUT_MS = 200


class _RunNow:
    """Stands in for aiosqlite's queue to its worker thread (SQLAlchemy puts a call there to set
    the isolation level): runs the call at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineCursor:
    """An aiosqlite-shaped cursor over a sqlite3 cursor."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        self._cursor.execute(sql, parameters if parameters is not None else ())
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """An aiosqlite-shaped connection over a sqlite3 connection, used from the loop's thread."""

    def __init__(self, connection: sqlite3.Connection, lock_wait_seconds: float) -> None:
        # The attribute names below are the ones SQLAlchemy's aiosqlite adapter reads.
        self._connection: sqlite3.Connection | None = connection
        self._tx = _RunNow()
        self._lock_wait_seconds = lock_wait_seconds

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self._connection

    @property
    def sqlite_connection(self) -> sqlite3.Connection:
        """The sqlite3 connection itself, for statements run without SQLAlchemy (hot_sqlite)."""
        return self._conn

    def cursor(self) -> InlineCursor:
        # Not a coroutine: the adapter calls it plainly and then enters the cursor.
        return InlineCursor(self._conn.cursor())

    async def begin_immediate(self) -> None:
        """Take the write lock, waiting for other processes without blocking the event loop.

        `db` calls this when SQLAlchemy begins a transaction (its "begin" event)."""
        connection = self._conn
        deadline = time.monotonic() + self._lock_wait_seconds
        delay = 0.001
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    connection.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    if time.monotonic() + delay > deadline:
                        raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
        finally:
            connection.execute(f"PRAGMA busy_timeout = {STATEMENT_BUSY_TIMEOUT_MS}")

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level


def connector(
    database: str, *, uri: bool = False, lock_wait_seconds: float | None = None
) -> Callable[[], Any]:
    """An `async_creator` for `create_async_engine` opening `database` this way."""

    async def connect() -> InlineConnection:
        wait = LOCK_WAIT_SECONDS if lock_wait_seconds is None else lock_wait_seconds
        connection = sqlite3.connect(
            database,
            uri=uri,
            timeout=STATEMENT_BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,  # SQLAlchemy's pool may close it from another thread
        )
        return InlineConnection(connection, wait)

    return connect
