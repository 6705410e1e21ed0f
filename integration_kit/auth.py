"""Authentication of the peer on `/api/integration/*`: its bearer token, then its signature."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence

from fastapi import Request

from integration_kit.clock import Clock
from integration_kit.problems import SIGNATURE_REFUSED, UNAUTHORIZED, ProblemError
from integration_kit.signing import SignatureRefused, verify_signature


def token_matches(presented: str, accepted: Sequence[str]) -> bool:
    """True when `presented` equals one of `accepted`, in time independent of where they differ."""
    # Compare digests so every comparison has the same length, and check every token (no early
    # exit) so the position of a match does not leak either.
    digest = hashlib.sha256(presented.encode()).digest()
    found = False
    for token in accepted:
        found |= hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest())
    return found


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_bearer(
    accepted: Callable[[], Sequence[str]],
) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that answers 401 problem+json unless the token is accepted.

    `accepted` is called per request, so rotated tokens take effect with the settings object.
    """

    # async: FastAPI runs a plain `def` dependency in a worker thread, a hop per request.
    async def dependency(request: Request) -> None:
        token = bearer_token(request)
        if token is None or not token_matches(token, accepted()):
            raise ProblemError(
                401,
                UNAUTHORIZED,
                "Unauthorized",
                "A valid bearer token is required.",
                headers={"WWW-Authenticate": 'Bearer realm="integration"'},
            )

    return dependency


def require_signature(
    accepted: Callable[[], Sequence[str]], clock: Clock
) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that answers 401 problem+json (type signature-refused) unless one of
    the `accepted()` secrets signed the request within five minutes of `clock`
    (integration_kit/signing.py).

    Runs after the bearer check, so an unknown caller never costs an HMAC. The body read here is
    kept by the request, and the endpoint reads the same bytes.
    """

    async def dependency(request: Request) -> None:
        body = await request.body()
        try:
            verify_signature(request.headers, body, secrets=accepted(), now=clock.now())
        except SignatureRefused as exc:
            raise ProblemError(401, SIGNATURE_REFUSED, "Signature refused", str(exc)) from None

    return dependency
