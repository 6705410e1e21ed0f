"""Who is calling the operator API: a bearer token (scripts, curl) or a console session cookie.

Operator tokens are created on the command line, shown once, and stored as SHA-256 hashes. A
console session is the token exchanged for a cookie (see `sessions`); a write made with the cookie
must also carry the session's CSRF token in a header and come from this site (Origin), because
the browser attaches the cookie to requests that other sites make it send.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from crm_impl.operators import sessions
from crm_impl.tables import Operator
from integration_kit.auth import bearer_token
from integration_kit.problems import FORBIDDEN, UNAUTHORIZED, ProblemError
from integration_kit.runtime import runtime_of
from integration_kit.throttle import OPERATOR_SCOPE, enforce_rate_limit

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def new_token() -> str:
    return "op_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Declares the scheme in the API's document; the token is checked below, not by FastAPI.
OPERATOR_TOKEN = HTTPBearer(
    scheme_name="operatorToken",
    description="An operator's token, made by `python -m crm_impl operators add NAME`.",
    auto_error=False,
)


def unauthorized(detail: str = "An operator token is required.") -> ProblemError:
    return ProblemError(
        401,
        UNAUTHORIZED,
        "Unauthorized",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="crm"'},
    )


def same_origin(request: Request) -> bool:
    """The request's Origin names this host. Only the host is compared: behind a TLS proxy the
    scheme the app sees differs from the browser's."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    return bool(origin and host and urlsplit(origin).netloc == host)


async def operator_by_token(request: Request, token: str) -> Operator | None:
    async with runtime_of(request).db.sessions() as session:
        return await session.scalar(
            select(Operator).where(
                Operator.token_hash == hash_token(token), Operator.revoked_at.is_(None)
            )
        )


async def operator_by_cookie(request: Request) -> tuple[Operator, str] | None:
    """The operator of the request's console session, with the session id; None without one."""
    session_id = request.cookies.get(sessions.COOKIE)
    if not session_id:
        return None
    runtime = runtime_of(request)
    async with runtime.db.sessions() as session:
        operator = await sessions.operator_of(session, session_id, now=runtime.clock.now())
    return None if operator is None else (operator, session_id)


async def current_operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(OPERATOR_TOKEN)],
) -> Operator:
    """The calling operator, by bearer token or console session; 401 problem+json without valid
    credentials, 403 for a cookie write without the CSRF token or from another origin, 429 once
    the operator's rate limit is spent (one budget for the API and the console)."""
    token = credentials.credentials.strip() if credentials else None
    if token:
        operator = await operator_by_token(request, token)
        if operator is None:
            raise unauthorized()
    else:
        signed_in = await operator_by_cookie(request)
        if signed_in is None:
            raise unauthorized()
        operator, session_id = signed_in
        if request.method not in SAFE_METHODS:
            if not same_origin(request):
                raise ProblemError(403, FORBIDDEN, "Forbidden", "Cross-origin write refused.")
            if not sessions.csrf_matches(session_id, request.headers.get(sessions.CSRF_HEADER)):
                raise ProblemError(
                    403, FORBIDDEN, "Forbidden", "The CSRF token is missing or wrong."
                )
    # After authentication: the budget is the operator's, and a forged request spends nobody's.
    await enforce_rate_limit(request, scope=OPERATOR_SCOPE, key=str(operator.id))
    return operator


async def current_admin(operator: Annotated[Operator, Depends(current_operator)]) -> Operator:
    """The calling operator if an admin; 403 problem+json otherwise."""
    if not operator.is_admin:
        raise ProblemError(
            403, FORBIDDEN, "Forbidden", "Only admin operators may replay or skip events."
        )
    return operator


OperatorDep = Annotated[Operator, Depends(current_operator)]
AdminDep = Annotated[Operator, Depends(current_admin)]


async def still_signed_in(request: Request) -> bool:
    """Whether the credentials a stream was opened with still open anything (a revoked operator
    or an ended session is out at the stream's next look, not only at its next request)."""
    token = bearer_token(request)
    if token is not None:
        return await operator_by_token(request, token) is not None
    return await operator_by_cookie(request) is not None
