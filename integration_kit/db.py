"""Database plumbing: engines tuned per dialect, a UTC datetime type, the request session."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_only

from integration_kit import sqlite_inline
from integration_kit.narrowing import narrowed

if TYPE_CHECKING:
    from integration_kit.settings import IntegrationSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    """A MetaData with the naming convention, so migrations name constraints predictably."""
    return MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


SQLITE_SCHEMES = {"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"}
POSTGRESQL_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg"}


def database_url_problem(url: str) -> str | None:
    """Why `url` is not a database URL this project can use (never repeating it: it may hold a
    password), or None."""
    try:
        scheme = make_url(url).drivername
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return "is not a database URL"
    if scheme not in SQLITE_SCHEMES | POSTGRESQL_SCHEMES:
        return f"has an unsupported scheme {scheme!r}"
    return None


def async_url(url: str) -> str:
    """Map plain URLs to the async drivers: sqlite -> aiosqlite, postgresql -> asyncpg."""
    parsed = make_url(url)
    if parsed.drivername in {"sqlite", "sqlite+pysqlite"}:
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    """An engine for the URL. SQLite gets one connection: it has one writer anyway, and a pool of
    writers only adds lock-wait back-off (p99 of about a second measured here). Its calls run on
    the event loop's thread (see sqlite_inline)."""
    url = async_url(url)
    if url.startswith("sqlite"):
        parsed = make_url(url)
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # The aiosqlite dialect's own reading of the URL (relative paths, `?uri=true&mode=ro`).
        (filename,), options = SQLiteDialect_aiosqlite().create_connect_args(parsed)
        engine = create_async_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
            async_creator=sqlite_inline.connector(filename, uri=bool(options.get("uri"))),
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL is a property of the file, set once by `migrate`. Switching to it needs an exclusive
    # lock and fails at once (no busy wait) when another process holds the file: only switch a
    # file that is not in WAL yet, and retry briefly if processes start together.
    for attempt in range(50):
        try:
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if attempt == 49 or "locked" not in str(exc):
                raise
            time.sleep(0.1)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # Transactions are begun by us (`_sqlite_begin`), not by the driver: pysqlite and aiosqlite
    # only BEGIN before an INSERT/UPDATE/DELETE, so a SAVEPOINT issued before any write began
    # the transaction itself and releasing it committed it; a request that failed after such a
    # savepoint left its first write committed without the rest (say, a message without its
    # outbox row).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock at once (sqlite_inline waits for another process's lock
    # without blocking the event loop): a deferred transaction that read first would fail
    # outright with SQLITE_BUSY when it came to write after another process (an API process
    # beside a worker) had committed meanwhile. Straight to the driver: a statement through
    # SQLAlchemy costs more than the BEGIN itself.
    driver = narrowed(connection.connection.driver_connection, sqlite_inline.InlineConnection)
    await_only(driver.begin_immediate())


class Database:
    """An engine with its session factory, and the hook that wakes the dispatcher after commits."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10) -> None:
        """`pool_size` and `max_overflow` size a PostgreSQL pool; SQLite has one connection."""
        self.url = async_url(url)
        self.engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._after_outbox_commit: list[Callable[[], None]] = []
        self._after_commit: dict[str, list[Callable[[Any], None]]] = {}

    @classmethod
    def for_backend(cls, settings: IntegrationSettings, name: str) -> Database:
        """The database of backend `name` ("tma", "crm") as its settings describe it."""
        return cls(
            settings.resolved_database_url(name),
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def on_outbox_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` after every commit that wrote outbox rows (wakes the dispatcher)."""
        self._after_outbox_commit.append(callback)

    def on_commit(self, key: str, callback: Callable[[Any], None]) -> None:
        """Call `callback(session.info[key])` after every commit of a session that set that key
        (the Mini App's live streams are woken this way when a ticket's events were written)."""
        self._after_commit.setdefault(key, []).append(callback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on any error.

        Services never commit; this does, once, so a change and its outbox row land together.
        """
        async with self.sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            if session.info.pop("outbox_written", False):
                for callback in self._after_outbox_commit:
                    callback()
            for key, callbacks in self._after_commit.items():
                if (value := session.info.pop(key, None)) is not None:
                    for after in callbacks:
                        after(value)

    async def dispose(self) -> None:
        await self.engine.dispose()
