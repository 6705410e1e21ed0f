"""The contract version each side announces, and what it learns of the peer's (docs/design.md §6).

Every integration request and answer carries `Contract-Version`: the `info.version` of the spec
this build was generated from (`generated.CONTRACT_VERSION`, written by `make generate`, so the
version is stated once, in the spec). The peer's version arrives on its requests (read by
`require_contract_version` after authentication) and on its answers (read by
`ContractVersionTransport` under the peer client); `PeerContract` keeps the last one for
`/health/ready` and `/metrics`, and logs each change.

The header is informational and never a reason to refuse a request: a major is served under its
own base path, so the path says how a request is read, and a peer announcing a newer major speaks
this one on these paths until both sides have moved (docs/design.md §6). Refusing on it would
only add a way for events to die. A different major is logged as a warning, once per change.

The hot path is one string comparison: a peer on the same version sends the same bytes as ours.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from generated import CONTRACT_VERSION

log = logging.getLogger(__name__)

HEADER = "contract-version"
# The paths of the contract: their answers announce the version (the pages' APIs are not in it).
INTEGRATION_PREFIX = "/api/integration"
# MAJOR.MINOR.PATCH, no leading zeros (what the spec's answer header admits).
_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
# The major the paths of this build serve.
MAJOR = int(CONTRACT_VERSION.split(".", 1)[0])
# What a peer is recorded as when it sends no header: it was built on 1.0.0, which predates it.
UNVERSIONED = "unversioned"
# What a peer is recorded as when its header is not a version (never echoed raw into logs).
MALFORMED = "malformed"

_ANNOUNCED = (HEADER.encode(), CONTRACT_VERSION.encode())


def major_of(version: str) -> int | None:
    """The major of a MAJOR.MINOR.PATCH version, or None when `version` is not one."""
    match = _VERSION.fullmatch(version)
    return int(match.group(1)) if match else None


@dataclass
class PeerContract:
    """The peer's contract version as this process last saw it (None before any exchange)."""

    version: str | None = None

    def saw(self, announced: str | None) -> None:
        """Record the version the peer announced on a request or an answer."""
        if announced == self.version:
            return
        if announced is None:
            version = UNVERSIONED
        elif major_of(announced) is None:
            version = MALFORMED
        else:
            version = announced
        if version == self.version:
            return
        previous, self.version = self.version, version
        major = major_of(version)
        if version == MALFORMED or (major is not None and major != MAJOR):
            log.warning(
                "peer contract version %s (was %s); this side implements %s, major %d: "
                "the two sides must come to one major (docs/design.md §6)",
                version,
                previous,
                CONTRACT_VERSION,
                MAJOR,
            )
        else:
            log.info(
                "peer contract version %s (was %s); this side implements %s",
                version,
                previous,
                CONTRACT_VERSION,
            )


def record_contract_version(peer: PeerContract) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency, run after authentication (a stranger's header teaches nothing):
    records the caller's `Contract-Version` in `peer`."""

    async def dependency(request: Request) -> None:
        peer.saw(request.headers.get(HEADER))

    return dependency


class AnnounceContractVersion:
    """ASGI middleware: every answer under `/api/integration`, errors included, carries this
    build's `Contract-Version`. Installed outermost, so the last-resort 500 carries it too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(INTEGRATION_PREFIX):
            await self.app(scope, receive, send)
            return

        async def announce(message: Message) -> None:
            if message["type"] == "http.response.start":
                # No route sets this header itself, so it is appended, not replaced.
                message = {**message, "headers": [*message.get("headers", []), _ANNOUNCED]}
            await send(message)

        await self.app(scope, receive, announce)


class ContractVersionTransport(httpx.AsyncBaseTransport):
    """Under the peer client: announces this build's version on every request and records the
    version the peer's answer announces."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, peer: PeerContract) -> None:
        self.inner = inner
        self.peer = peer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers[HEADER] = CONTRACT_VERSION
        response = await self.inner.handle_async_request(request)
        announced = response.headers.get(HEADER)
        # An answer without it may come from a proxy in front of the peer, so only a present
        # header counts; a peer of 1.0.0 shows as unversioned through its own requests.
        if announced is not None:
            self.peer.saw(announced)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
