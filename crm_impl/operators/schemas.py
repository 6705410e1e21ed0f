"""Shapes of the operator API (the CRM's own API, not part of the integration contract)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from generated.models import Attachment, TicketStatus


class TicketSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    external_id: uuid.UUID | None
    subject: str
    status: TicketStatus
    status_changed_at: datetime
    customer_telegram_id: int
    customer_first_name: str
    customer_username: str | None
    assignee_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    external_message_id: uuid.UUID | None
    sender_type: str
    author_name: str | None
    body: str
    attachments: list[dict[str, Any]]
    created_at: datetime


class LegacyFieldsOut(BaseModel):
    """What the old systems stored on the ticket with no place in the new model (cut-over)."""

    model_config = ConfigDict(from_attributes=True)

    project: str | None
    external_url: str | None


class Conversation(BaseModel):
    ticket: TicketSummary
    messages: list[MessageOut]
    legacy: LegacyFieldsOut | None = None


class ReplyIn(BaseModel):
    """An operator's reply. `id` is optional; when sent, a retried request stores one reply."""

    # Left out rather than null when the client makes no id (a body has no nulls).
    id: uuid.UUID | SkipJsonSchema[None] = None
    # No NUL: the contract refuses it (PostgreSQL cannot store it), so it stops here.
    message: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]*$")]
    attachments: Annotated[list[Attachment], Field(max_length=10)] = []


class StatusIn(BaseModel):
    status: TicketStatus


class OperatorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
