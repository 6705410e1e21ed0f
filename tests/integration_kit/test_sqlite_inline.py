"""SQLite on the event loop's thread: another process's write lock is waited for without
stalling the loop, and a transaction is still all or nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest
from sqlalchemy import text

from integration_kit import sqlite_inline
from integration_kit.db import Database


@asynccontextmanager
async def database(path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{path}")
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    try:
        yield db
    finally:
        await db.dispose()


def hold_write_lock(path: Path, seconds: float, taken: threading.Event) -> None:
    """What another process does: BEGIN IMMEDIATE, keep the lock a while, commit."""
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO notes (body) VALUES ('from the other process')")
        taken.set()
        time.sleep(seconds)
        other.execute("COMMIT")


async def ticks_while(awaitable: asyncio.Future[object] | asyncio.Task[object]) -> int:
    """How many times a 10 ms ticker ran on the loop while `awaitable` was pending."""
    ticks = 0
    while not awaitable.done():
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks


async def test_a_transaction_waits_for_another_process_without_stalling_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    async with database(path) as db:
        taken = threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, 0.5, taken))
        holder.start()
        await asyncio.to_thread(taken.wait, 5)

        async def write() -> None:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO notes (body) VALUES ('ours')"))

        started = time.monotonic()
        writer = asyncio.ensure_future(write())
        ticks = await ticks_while(writer)
        await writer
        waited = time.monotonic() - started
        await asyncio.to_thread(holder.join, 5)

        assert waited >= 0.4  # it did wait for the other process to commit
        assert ticks >= 10  # and the loop kept running meanwhile (a blocked loop ticks ~twice)
        async with db.transaction() as session:
            bodies = (await session.scalars(text("SELECT body FROM notes ORDER BY id"))).all()
        assert bodies == ["from the other process", "ours"]


async def test_a_lock_held_past_the_wait_fails_the_transaction_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "LOCK_WAIT_SECONDS", 0.2)
    path = tmp_path / "held.db"
    async with database(path) as db:
        taken = threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, 1.0, taken))
        holder.start()
        await asyncio.to_thread(taken.wait, 5)
        with pytest.raises(Exception, match="locked"):
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO notes (body) VALUES ('lost')"))
        await asyncio.to_thread(holder.join, 5)

        # The connection is usable again and the failed write left nothing behind.
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO notes (body) VALUES ('after')"))
        async with db.transaction() as session:
            bodies = (await session.scalars(text("SELECT body FROM notes ORDER BY id"))).all()
        assert bodies == ["from the other process", "after"]


async def test_a_failed_transaction_rolls_back_every_statement(tmp_path: Path) -> None:
    async def write_twice_then_fail(db: Database) -> None:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO notes (body) VALUES ('first')"))
            async with session.begin_nested():
                await session.execute(text("INSERT INTO notes (body) VALUES ('second')"))
            raise RuntimeError("the request failed after both writes")

    async with database(tmp_path / "atomic.db") as db:
        with pytest.raises(RuntimeError):
            await write_twice_then_fail(db)
        async with db.transaction() as session:
            assert (await session.scalar(text("SELECT count(*) FROM notes"))) == 0


async def test_statements_run_on_the_loop_thread_without_helper_threads(tmp_path: Path) -> None:
    before = threading.active_count()
    async with database(tmp_path / "threads.db") as db:
        for n in range(20):
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": str(n)})
        assert threading.active_count() == before
