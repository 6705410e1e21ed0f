"""A request id on every request, answer and log line, and 500 problem+json for what nobody caught.

Every API of both backends runs inside `RequestContext` (installed by the app factory):

- `X-Request-ID` is taken from the request when it is a short token (1 to 128 of
  `A-Z a-z 0-9 . _ : -`, as proxies and tracing systems make them); anything else (too long,
  spaces, control characters that would forge log lines) is replaced by a fresh id;
- the id is returned as `X-Request-ID` on every answer, and `RequestIdFilter` writes it into every
  log line made while the request runs (a context variable, so concurrent requests never mix);
- an exception nothing else handled is logged with its traceback and answered 500 problem+json
  naming the id (`instance` and `detail`), so a caller's report leads to the log line. The
  request's transaction has been rolled back by then: the session dependency ends with the error.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from generated.models import Problem
from integration_kit.problems import INTERNAL_ERROR, PROBLEM_JSON

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
NO_REQUEST = "-"

request_id: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to each record (`-` outside a request); attach it to handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def accepted_request_id(presented: bytes | None) -> str:
    """The caller's id if it is a short token, else a new one."""
    if presented is not None:
        try:
            text = presented.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if _ACCEPTED_ID.fullmatch(text):
            return text
    return uuid.uuid4().hex


class RequestContext:
    """ASGI middleware: the request id (see the module docstring) and the last-resort 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode())
        rid = accepted_request_id(presented)
        token = request_id.set(rid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != REQUEST_ID_HEADER.encode()
                ]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # the answer is half sent: only closing the connection is left
            await _internal_error(send_with_id, rid)
        finally:
            request_id.reset(token)


async def _internal_error(send: Send, rid: str) -> None:
    problem = Problem(
        type=INTERNAL_ERROR,
        title="Internal server error",
        status=500,
        detail=f"An unexpected error occurred. Request id: {rid}.",
        instance=f"urn:tma-crm:request:{rid}",
    )
    body = json.dumps(problem.model_dump(mode="json", exclude_none=True)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
