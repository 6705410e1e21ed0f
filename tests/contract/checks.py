"""Checks of what the spec says in words, beyond its schemas.

Registered with schemathesis on import, so the pytest contract tests and the command-line run
(which loads them through cli_hooks) both apply them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import schemathesis


def _operation(case: Any) -> str:
    return str(case.operation.definition.raw.get("operationId", ""))


def _same_id(a: object, b: object) -> bool:
    # UUIDs may arrive in upper case; the answer spells them in lower case.
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


def instant(value: object) -> datetime | None:
    # A leap second (":60") is held as the last microsecond of its minute: not compared here.
    if not isinstance(value, str) or ":60" in value:
        return None
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:
        return None


@schemathesis.check
def answers_name_what_was_asked(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 2xx answer echoes the ids it was asked about; status changes are last-writer-wins."""
    body = case.body
    if not 200 <= response.status_code < 300 or not isinstance(body, dict):
        return None
    operation = _operation(case)
    if operation not in {"createTicket", "postMessage", "postStatus"}:
        return None  # other APIs' answers (a 204 has no body at all) are not about these ids
    answer = response.json()
    if operation == "createTicket":
        assert _same_id(answer["external_ticket_id"], body["external_ticket_id"]), "not echoed"
    if operation == "postMessage":
        assert _same_id(answer["external_message_id"], body["external_message_id"]), "not echoed"
        if "ticket_id" in body:
            assert _same_id(answer["ticket_id"], body["ticket_id"]), "answered for another ticket"
    if operation == "postStatus":
        if "ticket_id" in body:
            assert _same_id(answer["ticket_id"], body["ticket_id"]), "answered for another ticket"
        asked, held = instant(body.get("changed_at")), instant(answer["status_changed_at"])
        if answer["applied"]:
            # A close is answered `open` when a customer message written after it reopened it.
            reopened = body["status"] == "closed" and answer["status"] == "open"
            assert answer["status"] == body["status"] or reopened, "applied, holds another status"
            assert asked is None or held == asked, "applied, but holds another changed_at"
        else:
            assert asked is None or held is None or asked <= held, "a newer change was ignored"
    return None
