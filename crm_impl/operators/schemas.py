"""Shapes of the operator API (the CRM's own API, not part of the integration contract)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
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


class ReplyIn(BaseModel):
    """An operator's reply. `id` is optional; when sent, a retried request stores one reply."""

    # Left out rather than null when the client makes no id (a body has no nulls).
    id: uuid.UUID | SkipJsonSchema[None] = None
    # No NUL: the contract refuses it (PostgreSQL cannot store it), so it stops here.
    message: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]*$")]
    attachments: Annotated[list[Attachment], Field(max_length=10)] = []


class StatusIn(BaseModel):
    status: TicketStatus


class Me(BaseModel):
    """The calling operator, with what the console needs to know about their rights."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    is_admin: bool


class QueueItem(TicketSummary):
    """A ticket in the queue: its summary plus what the list shows."""

    customer_last_name: str | None
    assignee_name: str | None
    unread: int = Field(description="Customer messages the calling operator has not read.")
    preview: str | None = Field(description="The start of the last message.")


class QueuePage(BaseModel):
    items: list[QueueItem]
    total: int
    limit: int
    offset: int


class QueueFilter(StrEnum):
    all = "all"
    mine = "mine"
    unassigned = "unassigned"


class Customer(BaseModel):
    """The customer's Telegram profile, as the Mini App sent it with the ticket."""

    telegram_user_id: int
    first_name: str
    last_name: str | None
    username: str | None
    language_code: str | None


class DeliveryState(StrEnum):
    pending = "pending"  # written, not yet accepted by the Mini App's backend
    delivered = "delivered"  # the Mini App's backend stored it (its message id is recorded)
    failing = "failing"  # attempts failed; retried, or dead until an admin replays it
    skipped = "skipped"  # an admin gave up on it


class Delivery(BaseModel):
    state: DeliveryState
    attempts: int = 0
    last_error: str | None = None
    dead: bool = False
    event_id: int | None = None
    held_back_by: int | None = Field(
        default=None, description="An earlier event of the ticket that fails; order is kept."
    )


class ConversationMessage(MessageOut):
    seq: int = Field(description="Order within the ticket; the event stream resumes after it.")
    delivery: Delivery | None = Field(description="Operator replies only.")


class ConversationView(BaseModel):
    """A ticket as the console shows it."""

    ticket: QueueItem
    customer: Customer
    messages: list[ConversationMessage]
    last_seq: int = Field(description="Pass as `after` to the ticket's event stream.")
    legacy: LegacyFieldsOut | None = None


class ReadIn(BaseModel):
    # Bounded by the database's 64-bit integers (a larger number was a 500, not a 422).
    seq: Annotated[int, Field(ge=0, le=2**63 - 1)]


class OutboxStateFilter(StrEnum):
    """Which undelivered events to list (both when left out)."""

    pending = "pending"
    dead = "dead"


class OutboxEventOut(BaseModel):
    """An event not yet delivered (pending) or given up on by the dispatcher (dead)."""

    id: int
    ticket_id: uuid.UUID
    ticket_subject: str | None
    kind: str
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_failure: str | None
    last_error: str | None
    resolution: str | None


class SkipIn(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]*\S[^\x00]*$")]
