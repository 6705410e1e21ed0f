"""Rate limits on the APIs: 429 problem+json with Retry-After (RFC 6585) once a caller's budget is
spent. The limiter itself (storage, strategy, failing open) is integration_kit/ratelimit.py.

Every API checks after it has authenticated the caller, so the key is a caller it knows and an
unauthenticated flood cannot spend a real caller's budget or fill the storage with keys:

- user API: `await enforce_rate_limit(request, scope=USER_SCOPE, key=str(user.id))`
- operator API and console (one budget per operator, whichever way they come in):
  `await enforce_rate_limit(request, scope=OPERATOR_SCOPE, key=str(operator.id))` in the
  dependency that resolves the operator
- integration API: `per_token_limit`, after `require_bearer`.
"""

from __future__ import annotations

import hashlib

from fastapi import Request

from integration_kit.auth import bearer_token
from integration_kit.problems import RATE_LIMITED, ProblemError
from integration_kit.ratelimit import INTEGRATION_SCOPE, OPERATOR_SCOPE, USER_SCOPE
from integration_kit.runtime import runtime_of

__all__ = [
    "INTEGRATION_SCOPE",
    "OPERATOR_SCOPE",
    "USER_SCOPE",
    "enforce_rate_limit",
    "per_token_limit",
    "token_fingerprint",
]


async def enforce_rate_limit(request: Request, *, scope: str, key: str) -> None:
    """Count this request against `key`'s budget in `scope`; 429 problem+json when it is spent.

    A scope without a configured limit, or a storage that is down, lets the request through.
    """
    retry_after = await runtime_of(request).limiter.check(scope, key)
    if retry_after is not None:
        raise ProblemError(
            429,
            RATE_LIMITED,
            "Too many requests",
            f"The rate limit is reached; retry after {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


def token_fingerprint(token: str) -> str:
    """What a token's budget is stored under: a hash, so the token itself is never in the storage
    (Redis) or in a metric."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


async def per_token_limit(request: Request) -> None:
    """Dependency for /api/integration, placed after `require_bearer`: one budget per token."""
    token = bearer_token(request)
    if token is not None:  # require_bearer has refused a request without one already
        await enforce_rate_limit(request, scope=INTEGRATION_SCOPE, key=token_fingerprint(token))
