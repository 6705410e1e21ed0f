"""What lies under the generated client when it calls the peer: httpx's client API with little of
its machinery, over aiohttp.

The generated client calls `httpx.AsyncClient.request`. Profiled under `make bench`'s relay,
httpx's layers between that call and the transport (auth flow, redirect loop, cookie jar,
response streaming) cost more CPU per delivered message than aiohttp's own request. The peer
client uses none of them: its token is a header, it never follows redirects, the peer sets no
cookies, and every answer is read whole. So `PeerHttpClient.send` passes the built request
straight to its transport, and `AiohttpPeerTransport` reads the answer in one go. The request
is still built by httpx (base URL, headers, timeouts) from what the generated client asks.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx._client import USE_CLIENT_DEFAULT, UseClientDefault
from httpx._types import AuthTypes
from httpx_aiohttp.transport import map_aiohttp_exceptions

__all__ = ["AiohttpPeerTransport", "PeerHttpClient"]


class PeerHttpClient(httpx.AsyncClient):
    """An httpx.AsyncClient whose `send` goes straight to the transport when nothing needs
    httpx's auth flow, redirects or event hooks (the peer client's case); otherwise as httpx."""

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: AuthTypes | UseClientDefault | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        redirects = (
            self.follow_redirects
            if isinstance(follow_redirects, UseClientDefault)
            else follow_redirects
        )
        uses_auth = (self.auth if isinstance(auth, UseClientDefault) else auth) is not None
        if redirects or uses_auth or any(self.event_hooks.values()):
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        # Environment proxies and mounts still choose the transport, as in httpx.
        transport = self._transport_for_url(request.url)
        response = await transport.handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response


class AiohttpPeerTransport(httpx.AsyncBaseTransport):
    """httpx requests sent with aiohttp, each answer read whole (no streamed body)."""

    def __init__(self, limits: httpx.Limits | None = None) -> None:
        self._limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that will use it.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry,
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        with map_aiohttp_exceptions():
            async with self._client().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes, as it would with its own transport
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
            ) as answer:
                content = await answer.read()
                extensions = {"http_version": b"HTTP/1.1"}
                if answer.reason:
                    extensions["reason_phrase"] = answer.reason.encode()
                return httpx.Response(
                    answer.status,
                    headers=answer.raw_headers,
                    content=content,
                    request=request,
                    extensions=extensions,
                )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
