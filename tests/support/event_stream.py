"""A client of the Mini App's conversation stream (NDJSON over a streamed GET), for tests that
cut and resume it. It records every event line and resumes after the last `seq` it saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import httpx


class StreamReader:
    def __init__(self, client: httpx.AsyncClient, ticket_id: str, headers: dict[str, str]) -> None:
        self.client = client
        self.ticket_id = ticket_id
        self.headers = headers
        self.events: list[dict[str, Any]] = []
        self.connections = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0

    async def connect(self, after: int | None = None) -> None:
        """Open the stream after `after` (default: the last event seen); returns once the server
        has answered with its first line."""
        await self.disconnect()
        opened = asyncio.Event()
        start = self.last_seq if after is None else after
        self._task = asyncio.create_task(self._read(start, opened))
        waiter = asyncio.create_task(opened.wait())
        await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task.done():
            self._task.result()  # raises what stopped it

    async def disconnect(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Until `predicate(events)` holds (at most 20 s: a hung stream fails the test)."""
        async with asyncio.timeout(20), self._changed:
            await self._changed.wait_for(lambda: predicate(self.events))

    async def _read(self, after: int, opened: asyncio.Event) -> None:
        url = f"/api/support/tickets/{self.ticket_id}/events"
        async with self.client.stream(
            "GET", url, params={"after": after}, headers=self.headers, timeout=None
        ) as response:
            response.raise_for_status()
            self.connections += 1
            async for line in response.aiter_lines():
                if not line:
                    continue
                item = json.loads(line)
                if item["kind"] == "open":
                    opened.set()
                elif item["kind"] != "ping":
                    async with self._changed:
                        self.events.append(item)
                        self._changed.notify_all()
