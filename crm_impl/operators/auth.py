"""Operator tokens: created on the command line, shown once, stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from crm_impl.tables import Operator
from integration_kit.problems import UNAUTHORIZED, ProblemError
from integration_kit.runtime import runtime_of
from integration_kit.throttle import OPERATOR_SCOPE, enforce_rate_limit


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


async def current_operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(OPERATOR_TOKEN)],
) -> Operator:
    """The operator whose bearer token the request carries; 401 problem+json otherwise, 429 once
    the operator's rate limit is spent."""
    token = credentials.credentials.strip() if credentials else None
    if token:
        async with runtime_of(request).db.sessions() as session:
            operator = await session.scalar(
                select(Operator).where(
                    Operator.token_hash == hash_token(token), Operator.revoked_at.is_(None)
                )
            )
        if operator is not None:
            # After authentication: the budget is the operator's (shared with the console).
            await enforce_rate_limit(request, scope=OPERATOR_SCOPE, key=str(operator.id))
            return operator
    raise ProblemError(
        401,
        UNAUTHORIZED,
        "Unauthorized",
        "An operator token is required.",
        headers={"WWW-Authenticate": 'Bearer realm="crm"'},
    )


OperatorDep = Annotated[Operator, Depends(current_operator)]
