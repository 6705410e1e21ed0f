"""Wakes the Mini App's open event streams when their ticket's events were committed.

In this process a commit wakes the streams at once; on PostgreSQL another API process's commits
do too (NOTIFY/LISTEN, `PostgresWakeups`). Whatever a wake-up misses (SQLite shared by several
processes, a dropped LISTEN connection) each stream's poll finds (`TMA_LIVE_POLL_SECONDS`): the
events table is the truth, a wake-up only makes it prompt, so a lost one delays an event and never
loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


class TicketEventHub:
    """Per-ticket wake-ups for the streams this process serves."""

    def __init__(self) -> None:
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = {}
        self.stopping = False

    def stop(self) -> None:
        """The server is stopping: every stream ends now (its page resumes on another process)."""
        self.stopping = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    def notify(self, ticket_ids: Iterable[uuid.UUID]) -> None:
        for ticket_id in ticket_ids:
            for waiter in self._waiters.get(ticket_id, ()):
                waiter.set()

    @contextmanager
    def listen(self, ticket_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever `ticket_id`'s events were committed here; clear it before
        reading, so a commit between the read and the wait is not slept through."""
        waiter = asyncio.Event()
        self._waiters.setdefault(ticket_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters[ticket_id]
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[ticket_id]

    @property
    def listening(self) -> int:
        return sum(len(waiters) for waiters in self._waiters.values())


CHANNEL = "tma_ticket_events"


class PostgresWakeups:
    """On PostgreSQL, other API processes' commits wake this process's streams too: every event
    is announced with NOTIFY in its own transaction (so only once committed), and one LISTEN
    connection per process passes them to the hub. Started by the first stream; if it fails or
    drops, the streams' poll still finds every event."""

    def __init__(self, dsn: str, hub: TicketEventHub) -> None:
        self.dsn = dsn
        self.hub = hub
        self._connection: Any = None  # asyncpg.Connection (asyncpg has no type hints)
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._connection is not None:
            return
        async with self._lock:
            if self._connection is not None:
                return
            try:
                connection = await asyncpg.connect(self.dsn)
                await connection.add_listener(CHANNEL, self._notified)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("live streams fall back to polling: LISTEN failed (%s)", exc)
                return
            connection.add_termination_listener(self._dropped)
            self._connection = connection

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.hub.notify([uuid.UUID(payload)])

    def _dropped(self, _connection: object) -> None:
        self._connection = None  # the next stream to open listens again

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


def plain_postgres_dsn(url: str) -> str:
    """asyncpg's own DSN for an SQLAlchemy URL (`postgresql+asyncpg://...`)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)
