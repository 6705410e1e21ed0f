"""RFC 9457 problem+json errors: one exception type, and handlers that turn every error into it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from generated.models import FieldError, Problem
from integration_kit.narrowing import narrowed

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
MAX_BODY_BYTES = 1024 * 1024

UNAUTHORIZED = "urn:tma-crm:problem:unauthorized"
SIGNATURE_REFUSED = "urn:tma-crm:problem:signature-refused"
FORBIDDEN_SENDER = "urn:tma-crm:problem:forbidden-sender"
FORBIDDEN = "urn:tma-crm:problem:forbidden"
TICKET_NOT_KNOWN = "urn:tma-crm:problem:ticket-not-known"
NOT_FOUND = "urn:tma-crm:problem:not-found"
TICKET_LINK_CONFLICT = "urn:tma-crm:problem:ticket-link-conflict"
IDEMPOTENCY_CONFLICT = "urn:tma-crm:problem:idempotency-conflict"
CONFLICT = "urn:tma-crm:problem:conflict"
PAYLOAD_TOO_LARGE = "urn:tma-crm:problem:payload-too-large"
VALIDATION = "urn:tma-crm:problem:validation"
MALFORMED_REQUEST = "urn:tma-crm:problem:malformed-request"
UNAVAILABLE = "urn:tma-crm:problem:unavailable"
METHOD_NOT_ALLOWED = "urn:tma-crm:problem:method-not-allowed"
UNSUPPORTED_MEDIA_TYPE = "urn:tma-crm:problem:unsupported-media-type"
HTTP_ERROR = "urn:tma-crm:problem:http-error"
INTERNAL_ERROR = "urn:tma-crm:problem:internal-error"
RATE_LIMITED = "urn:tma-crm:problem:rate-limited"
CURSOR_NOT_VALID = "urn:tma-crm:problem:cursor-not-valid"
CURSOR_EPOCH_CHANGED = "urn:tma-crm:problem:cursor-epoch-changed"


class ProblemError(Exception):
    """An error answered as problem+json with the given status and type."""

    def __init__(
        self,
        status: int,
        type_: str,
        title: str,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.problem = Problem(
            type=type_, title=title, status=status, detail=detail, errors=list(errors) or None
        )
        self.headers = headers or {}


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    """Serialise a problem; absent optional fields are left out, never sent as null."""
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _field_errors(errors: Sequence[Any]) -> list[FieldError]:
    return [
        FieldError(
            loc=[part if isinstance(part, int | str) else str(part) for part in err["loc"]][:32],
            msg=str(err["msg"]),
            type=str(err["type"]),
        )
        for err in errors
    ]


_STATUS_TYPES = {
    401: (UNAUTHORIZED, "Unauthorized"),
    403: (FORBIDDEN, "Forbidden"),
    404: (NOT_FOUND, "Not found"),
    405: (METHOD_NOT_ALLOWED, "Method not allowed"),
    409: (CONFLICT, "Conflict"),
    413: (PAYLOAD_TOO_LARGE, "Payload too large"),
    415: (UNSUPPORTED_MEDIA_TYPE, "Unsupported media type"),
    429: (RATE_LIMITED, "Too many requests"),
}


async def _on_problem(_request: Request, exc: Exception) -> JSONResponse:
    exc = narrowed(exc, ProblemError)
    return problem_response(exc.problem, exc.headers)


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    exc = narrowed(exc, RequestValidationError)
    errors = exc.errors()
    # FastAPI reports a body that is not JSON as a validation error of type json_invalid.
    if any(err.get("type") == "json_invalid" for err in errors):
        problem = Problem(
            type=MALFORMED_REQUEST,
            title="Malformed request",
            status=400,
            detail="The request body is not valid JSON.",
        )
        return problem_response(problem)
    problem = Problem(
        type=VALIDATION,
        title="Validation failed",
        status=422,
        detail="The request does not match the schema; see errors.",
        errors=_field_errors(errors),
    )
    return problem_response(problem)


async def _on_http_exception(_request: Request, exc: Exception) -> JSONResponse:
    exc = narrowed(exc, StarletteHTTPException)
    type_, title = _STATUS_TYPES.get(exc.status_code, (HTTP_ERROR, "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else None
    problem = Problem(type=type_, title=title, status=exc.status_code, detail=detail)
    return problem_response(problem, dict(exc.headers or {}))


async def _on_database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # A locked or unreachable database is temporary: the caller retries, nothing was half-written
    # because the request's transaction rolled back.
    log.warning("database unavailable: %s", type(exc).__name__)
    problem = Problem(
        type=UNAVAILABLE,
        title="Temporarily unavailable",
        status=503,
        detail="The database is unavailable; retry later.",
    )
    return problem_response(problem, {"Retry-After": "1"})


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error the app can return a problem+json body, and cap request bodies at 1 MiB."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(OperationalError, _on_database_unavailable)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)


class BodySizeLimit:
    """Answer 413 for a body over the limit, by Content-Length or by counting a streamed body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        received = 0
        too_large = started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # FastAPI catches the error raised while it reads the body and answers 400; once the
            # body is cut off, that answer is replaced by the 413 below.
            if too_large and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if too_large and not started:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        problem = Problem(
            type=PAYLOAD_TOO_LARGE,
            title="Payload too large",
            status=413,
            detail=f"Request bodies are limited to {self.max_bytes} bytes.",
        )
        body = json.dumps(problem.model_dump(mode="json", exclude_none=True)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass
