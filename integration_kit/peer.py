"""The generated client, configured to call the peer."""

from __future__ import annotations

import httpx
from httpx_aiohttp import AiohttpTransport

from generated.client import AuthenticatedClient


def make_peer_client(
    *,
    base_url: str,
    token: str,
    timeout_seconds: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AuthenticatedClient:
    """An AuthenticatedClient for the peer's `/api/integration`.

    By default requests go through aiohttp under the httpx API: plain httpx used a whole core at
    32 concurrent requests on this machine (encode/httpx#3215), aiohttp about a third of one.
    Tests pass an `httpx.ASGITransport` instead to call the peer app in-process.
    """
    return AuthenticatedClient(
        base_url=base_url.rstrip("/"),
        token=token,
        timeout=httpx.Timeout(timeout_seconds),
        raise_on_unexpected_status=False,
        httpx_args={"transport": transport or AiohttpTransport()},
    )
