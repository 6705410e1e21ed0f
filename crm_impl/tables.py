"""The CRM's tables: the shared columns plus customers, operators and assignment."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Uuid
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
