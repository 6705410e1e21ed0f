"""The tickets list's page cursor: a page's last (updated_at, id), opaque to clients."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

from generated.models import FieldError
from integration_kit.problems import VALIDATION, ProblemError


def encode(updated_at: datetime, ticket_id: uuid.UUID) -> str:
    raw = json.dumps([updated_at.isoformat(), str(ticket_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names; 422 problem+json for anything this module did not make."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        at, ticket_id = json.loads(raw)
        position = datetime.fromisoformat(at), uuid.UUID(ticket_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _bad_cursor() from exc
    if position[0].tzinfo is None:
        raise _bad_cursor()
    return position


def _bad_cursor() -> ProblemError:
    return ProblemError(
        422,
        VALIDATION,
        "Validation failed",
        "The cursor is not one this API gave out.",
        errors=[FieldError(loc=["query", "after"], msg="unknown cursor", type="value_error")],
    )
