"""Shapes of the Mini App's user API (the TMA's own API, not part of the integration contract)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from generated.models import Attachment, TicketStatus

# No NUL in text: the contract refuses it (PostgreSQL cannot store it), so it stops here.
NO_NUL = r"^[^\x00]*$"
Body = Annotated[str, Field(min_length=1, max_length=4096, pattern=NO_NUL)]
Attachments = Annotated[list[Attachment], Field(max_length=10)]


class NewTicket(BaseModel):
    """A ticket with its first message. The client makes both ids: a retry creates nothing new."""

    id: uuid.UUID
    subject: Annotated[str, Field(min_length=1, max_length=255, pattern=NO_NUL)]
    message: Body
    message_id: uuid.UUID
    attachments: Attachments = []


class NewMessage(BaseModel):
    id: uuid.UUID
    message: Body
    attachments: Attachments = []


class UserStatus(StrEnum):
    """What a user may do to their ticket: close it or reopen it."""

    open = "open"
    closed = "closed"


class StatusChange(BaseModel):
    status: UserStatus


class TicketOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    subject: str
    status: TicketStatus
    created_at: datetime
    updated_at: datetime
    # Whether the CRM has acknowledged the ticket (its id is known here).
    synced: bool = False
    # Operator replies the user has not seen (after their read marker).
    unread: int = 0


class TicketPage(BaseModel):
    """A page of the user's tickets; `next_cursor` asks for the next one (null: no more)."""

    tickets: list[TicketOut]
    next_cursor: str | None


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    sender_type: str
    operator_name: str | None
    body: str
    attachments: list[dict[str, Any]]
    created_at: datetime
    delivered: bool = False
    # The message's number in its ticket's conversation events (see `EventOut`).
    seq: int | None = None


class EventOut(BaseModel):
    """One line of a conversation's event stream: a message, or a status change. `status` is
    the ticket's status once the event happened."""

    seq: int
    kind: str
    status: TicketStatus
    at: datetime
    message: MessageOut | None = None


class StatusChangeOut(BaseModel):
    seq: int
    status: TicketStatus
    at: datetime


class Conversation(BaseModel):
    """A ticket's whole conversation; `last_seq` is where its event stream resumes."""

    ticket: TicketOut
    messages: list[MessageOut]
    status_changes: list[StatusChangeOut] = []
    last_seq: int = 0


class ReadMarker(BaseModel):
    seq: Annotated[int, Field(ge=0)]
