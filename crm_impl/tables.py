"""The CRM's tables: the shared columns plus customers, operators and assignment."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, Uuid, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from integration_kit.db import UTCDateTime, new_metadata
from integration_kit.schema import (
    ChangeLogColumns,
    FeedStateColumns,
    LegacyTicketFieldsColumns,
    MessageColumns,
    OutboxColumns,
    TicketColumns,
)


class Base(DeclarativeBase):
    metadata = new_metadata()


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128))
    # SHA-256 of the token: tokens are 256 random bits, so a fast hash is enough, and the plain
    # token is shown once when created and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Admins may replay and skip undelivered events from the console (`operators grant-admin`).
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Ticket(TicketColumns, Base):
    __tablename__ = "tickets"

    customer_telegram_id: Mapped[int] = mapped_column(BigInteger, index=True)
    customer_first_name: Mapped[str] = mapped_column(String(64))
    customer_last_name: Mapped[str | None] = mapped_column(String(64))
    customer_username: Mapped[str | None] = mapped_column(String(32))
    customer_language: Mapped[str | None] = mapped_column(String(35))
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("operators.id"))


class Message(MessageColumns, Base):
    __tablename__ = "messages"

    operator_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("operators.id"))
    author_name: Mapped[str | None] = mapped_column(String(128))


class LegacyTicketFields(LegacyTicketFieldsColumns, Base):
    __tablename__ = "legacy_ticket_fields"


class Outbox(OutboxColumns, Base):
    __tablename__ = "outbox"


class ChangeLog(ChangeLogColumns, Base):
    __tablename__ = "change_log"


class FeedState(FeedStateColumns, Base):
    __tablename__ = "feed_state"


class ConsoleSession(Base):
    """A signed-in console: the cookie holds the random id, the table only its SHA-256."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReadMarker(Base):
    """How far an operator has read a ticket: the `seq` of the last message they were shown.

    Per operator, not per ticket: two operators watching one queue each need their own unread
    counts, and one of them opening a ticket must not hide a new customer message from the other.
    """

    __tablename__ = "read_markers"

    operator_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True
    )
    ticket_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    last_read_seq: Mapped[int] = mapped_column(BigInteger)
