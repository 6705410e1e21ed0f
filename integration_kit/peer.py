"""The generated client, configured to call the peer."""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus

import httpx
from httpx_aiohttp import AiohttpTransport

from generated.client import AuthenticatedClient
from integration_kit.clock import Clock
from integration_kit.contract_version import ContractVersionTransport, PeerContract
from integration_kit.signing import SigningTransport

PROBLEM_JSON = "application/problem+json"
_BODY_HEADERS = {"content-type", "content-length", "content-encoding", "transfer-encoding"}


class ErrorsAsProblems(httpx.AsyncBaseTransport):
    """Turns an error answer that is not problem+json into one, keeping status and headers.

    The peer answers errors as problem+json, but a proxy in front of it (a load balancer, nginx)
    answers with HTML or nothing. The generated client fails to parse that and the status and
    Retry-After are lost: a proxy's 503 was not waited out, and its 404 or 413 was retried for
    days instead of going dead.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code < 400 or media_type == PROBLEM_JSON:
            return response
        try:
            text = (await response.aread()).decode("utf-8", "replace")
        finally:
            await response.aclose()
        try:
            title = HTTPStatus(response.status_code).phrase
        except ValueError:
            title = "Error"
        problem: dict[str, object] = {
            "type": "about:blank",
            "title": title,
            "status": response.status_code,
        }
        if text.strip():
            problem["detail"] = " ".join(text.split())[:200]
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _BODY_HEADERS
        ]
        return httpx.Response(
            response.status_code,
            headers=[*headers, ("content-type", PROBLEM_JSON)],
            content=json.dumps(problem).encode(),
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def make_peer_client(
    *,
    base_url: str,
    token: str,
    timeout_seconds: float,
    signing_secret: Callable[[], str],
    clock: Clock,
    transport: httpx.AsyncBaseTransport | None = None,
    peer_contract: PeerContract | None = None,
) -> AuthenticatedClient:
    """An AuthenticatedClient for the peer's `/api/integration`, signing every request (Standard
    Webhooks, integration_kit/signing.py) with `signing_secret()` at `clock`'s time.

    By default requests go through aiohttp under the httpx API: plain httpx used a whole core at
    32 concurrent requests on this machine (encode/httpx#3215), aiohttp about a third of one.
    Tests pass an `httpx.ASGITransport` instead to call the peer app in-process.

    Every request announces this build's contract version; the version the peer's answers
    announce is recorded in `peer_contract` (integration_kit/contract_version.py).
    """
    return AuthenticatedClient(
        base_url=base_url.rstrip("/"),
        token=token,
        timeout=httpx.Timeout(timeout_seconds),
        raise_on_unexpected_status=False,
        httpx_args={
            "transport": ErrorsAsProblems(
                ContractVersionTransport(
                    SigningTransport(
                        transport or AiohttpTransport(), secret=signing_secret, clock=clock
                    ),
                    peer=peer_contract or PeerContract(),
                )
            )
        },
    )
