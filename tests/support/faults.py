"""An httpx transport between the two backends that tests can break on purpose."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx


@dataclass
class FaultyTransport(httpx.AsyncBaseTransport):
    """Forwards to `inner` unless told to fail.

    - `down`: every request fails to connect, nothing reaches the peer.
    - `lose_responses`: the next N requests reach the peer and are processed, then the answer is
      lost (the sender sees a timeout): the classic cause of duplicates.
    - `hold`: requests wait on an event, so a test can order a race deterministically.
    """

    inner: httpx.AsyncBaseTransport | None = None
    down: bool = False
    lose_responses: int = 0
    hold: asyncio.Event | None = None
    requests: list[str] = field(default_factory=list)
    delivered: int = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        if self.down:
            raise httpx.ConnectError("peer down (injected)", request=request)
        if self.hold is not None:
            await self.hold.wait()
        assert self.inner is not None, "wire the transport to the peer app first"
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.delivered += 1
        if self.lose_responses > 0:
            self.lose_responses -= 1
            raise httpx.ReadTimeout("response lost (injected)", request=request)
        return response

    async def aclose(self) -> None:
        if self.inner is not None:
            await self.inner.aclose()
