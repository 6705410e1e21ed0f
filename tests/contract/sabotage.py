"""Deliberate contract drift, for the test that proves the contract suite catches it.

With CONTRACT_SABOTAGE=1 in the environment, the fuzz tests (test_fuzz.py) serve each backend
wrapped in `Sabotage`, which breaks one promise of the spec per operation the way a careless change
to a backend would. test_suite_catches_drift.py runs the fuzz tests that way and expects each
breakage to be reported. Never set outside that test.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from generated.models import MessageRequest
from integration_kit.signing import signature_headers
from tests.contract.seeding import CLOCK_START, Side

ENV = "CONTRACT_SABOTAGE"

# Which promise breaks where, and what the suite must then report.
BREAKAGES: dict[tuple[Side, str], str] = {
    # A required field of the answer disappears (someone renamed it in the response model).
    ("crm", "/api/integration/tickets"): "drop message_id from 2xx answers",
    # The CRM crashes on one kind of valid request.
    ("crm", "/api/integration/status"): "answer 500 to every close",
    # The TMA reads bodies the lax pydantic way again ("5" for an integer, 0 for a date-time).
    ("tma", "/api/integration/messages"): "read bodies laxly",
    # The TMA forgets to check the token (and the signature) on one operation.
    ("tma", "/api/integration/status"): "skip the token check",
}


def from_environment(side: Side, token: str, secret: str) -> Any:
    """The wrapper the fuzz tests put around `side`'s app: sabotage when asked, else none."""
    if not os.environ.get(ENV):
        return None
    return lambda app: Sabotage(app, side=side, token=token, secret=secret)


class Sabotage:
    """ASGI middleware that breaks the spec as BREAKAGES says, on buffered requests/answers."""

    def __init__(self, app: ASGIApp, *, side: Side, token: str, secret: str) -> None:
        self.app, self.side, self.token, self.secret = app, side, token, secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        breakage = BREAKAGES.get((self.side, scope.get("path", "")))
        if scope["type"] != "http" or breakage is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if breakage == "skip the token check":
            # Whatever came, the app sees the right token and a valid signature.
            headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
            headers.append((b"authorization", f"Bearer {self.token}".encode()))
            scope = {**scope, "headers": self._signed(headers, body)}
        if breakage == "read bodies laxly":
            try:
                body = (
                    MessageRequest.model_validate_json(body)
                    .model_dump_json(exclude_none=True)
                    .encode()
                )
            except ValueError:
                pass
            else:
                # The rewritten body, signed as if it had been sent so (a signature only over
                # the original would turn every request into a 401, hiding the laxity).
                scope = {**scope, "headers": self._signed(scope["headers"], body)}
        if breakage == "answer 500 to every close" and b'"closed"' in body:
            await _answer(send, 500, [(b"content-type", b"text/plain")], b"Internal Server Error")
            return
        status, headers, answer = await _call(self.app, scope, body)
        if breakage == "drop message_id from 2xx answers" and 200 <= status < 300:
            data = json.loads(answer)
            data.pop("message_id", None)
            answer = json.dumps(data).encode()
        await _answer(send, status, headers, answer)

    def _signed(self, headers: list[Any], body: bytes) -> list[Any]:
        """`headers` with the webhook-* ones replaced by a valid signature of `body`."""
        signature = signature_headers(
            self.secret,
            msg_id=str(uuid.uuid4()),
            timestamp=int(CLOCK_START.timestamp()),
            body=body,
        )
        return [
            *((k, v) for k, v in headers if not k.startswith(b"webhook-")),
            *((k.encode(), v.encode()) for k, v in signature.items()),
        ]


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _call(app: ASGIApp, scope: Scope, body: bytes) -> tuple[int, list[Any], bytes]:
    sent = False
    answer: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], message.get("headers", [])
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["headers"], answer["body"]


async def _answer(send: Send, status: int, headers: list[Any], body: bytes) -> None:
    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
