"""Columns both sides share (docs/design.md §4), as mixins each backend's own tables build on."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from integration_kit.db import UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class OutboxState(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"
    skipped = "skipped"  # a dead event an operator chose to give up on; recorded, never sent


class Channel(StrEnum):
    """Where an outbox event goes. Order is kept per ticket within a channel."""

    peer = "peer"
    telegram = "telegram"


class TicketColumns:
    """The shared part of a ticket: its ids on both sides, subject and status."""

    if TYPE_CHECKING:  # the declarative base provides the keyword constructor

        def __init__(self, **kwargs: Any) -> None: ...

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # The other side's id of this ticket; null until it is known.
    external_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True)
    subject: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="open")
    # The changed_at of the status held now; a change that is not newer is ignored.
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when `reconcile` took this side's own ticket back from the peer's copy after a restore
    # (live receiving rules never create one): the audit trail of what a restore lost.
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MessageColumns:
    """The shared part of a message. (sender_type, external_message_id) is unique: dedupe key."""

    if TYPE_CHECKING:  # the declarative base provides the keyword constructor

        def __init__(self, **kwargs: Any) -> None: ...

    # An integer key gives the order messages were stored in, which UUIDs and timestamps cannot.
    seq: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)

    @declared_attr
    def ticket_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(Uuid, ForeignKey("tickets.id", ondelete="CASCADE"), index=True)

    # The other side's id of this message: the sender's id for a received message, the
    # receiver's id (once delivered) for a message written here.
    external_message_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    sender_type: Mapped[str] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when `reconcile` stored this message rather than live delivery (see TicketColumns).
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (UniqueConstraint("sender_type", "external_message_id"),)


class LegacyTicketFieldsColumns:
    """What an old system stored on a ticket that has no place in the new model (the audit's
    `project` and `external_url`), kept where an operator can still see it (docs/cutover.md)."""

    if TYPE_CHECKING:  # the declarative base provides the keyword constructor

        def __init__(self, **kwargs: Any) -> None: ...

    @declared_attr
    def ticket_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(Uuid, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)

    project: Mapped[str | None] = mapped_column(String(255))
    external_url: Mapped[str | None] = mapped_column(Text)


class OutboxColumns:
    """One event to deliver, written in the same transaction as the change it announces."""

    if TYPE_CHECKING:  # the declarative base provides the keyword constructor

        def __init__(self, **kwargs: Any) -> None: ...

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # The event's `webhook-id`: the same on every attempt, and unlike `id` it survives a restore
    # into a database whose sequence has moved on (a receiver never confuses two events).
    webhook_id: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4)
    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    channel: Mapped[str] = mapped_column(String(16), default=Channel.peer)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Why the last attempt failed: "unavailable" waits are cut short when the peer answers again.
    last_failure: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Operator actions on a dead event (replayed / skipped), recorded for the audit trail.
    resolution: Mapped[str | None] = mapped_column(Text)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (
            Index("ix_outbox_stream", "ticket_id", "channel", "state", "id"),
            Index("ix_outbox_due", "state", "next_attempt_at"),
        )


class ChangeKind(StrEnum):
    ticket = "ticket"
    message = "message"
    status = "status"


class ChangeLogColumns:
    """One change the feed serves (docs/design.md §10), written in the change's own transaction.

    `xid` is the writing transaction's id on PostgreSQL (0 on SQLite): the feed is read in
    (xid, seq) order only below the oldest transaction still in flight, so a transaction that
    took an earlier `seq` but commits later is never passed over.
    """

    if TYPE_CHECKING:  # the declarative base provides the keyword constructor

        def __init__(self, **kwargs: Any) -> None: ...

    seq: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    xid: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    message_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # A status change is not a row of its own anywhere else: the log keeps what was applied.
    status: Mapped[str | None] = mapped_column(String(16))
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (Index("ix_change_log_position", "xid", "seq"),)


class FeedStateColumns:
    """Named values of the feed: this database's epoch, the cursor saved in the peer's feed."""

    if TYPE_CHECKING:  # the declarative base provides the keyword constructor

        def __init__(self, **kwargs: Any) -> None: ...

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
