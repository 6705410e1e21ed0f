"""Calling a backend's /api/integration as its peer does: every request signed."""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp

from integration_kit.runtime import Runtime
from integration_kit.signing import SigningTransport


def as_its_peer(app: ASGIApp, runtime: Runtime) -> httpx.AsyncBaseTransport:
    """A transport to `app` that signs with the first secret `runtime` accepts, at its clock."""
    return SigningTransport(
        httpx.ASGITransport(app=app),
        secret=lambda: runtime.settings.inbound_signing_secrets[0],
        clock=runtime.clock,
    )
