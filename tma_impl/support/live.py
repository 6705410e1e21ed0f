"""Wakes the Mini App's open event streams when their ticket's events were committed.

In this process a commit wakes the streams at once. Another API process's commits are found by
each stream's fallback poll (`TMA_LIVE_POLL_SECONDS`): the events table is the truth, the wake-up
only makes it prompt, so a lost wake-up delays an event and never loses it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class TicketEventHub:
    """Per-ticket wake-ups for the streams this process serves."""

    def __init__(self) -> None:
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = {}

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
