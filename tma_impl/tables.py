"""The TMA's tables: the shared columns plus the Telegram users who own tickets."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Uuid
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


class TelegramUser(Base):
    """A Mini App user as Telegram last described them (refreshed from initData on each write)."""

    __tablename__ = "telegram_users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_name: Mapped[str] = mapped_column(String(64))
    last_name: Mapped[str | None] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(32))
    language_code: Mapped[str | None] = mapped_column(String(35))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Ticket(TicketColumns, Base):
    __tablename__ = "tickets"

    telegram_user_id: Mapped[int] = mapped_column(ForeignKey("telegram_users.id"), index=True)
    # The user's read marker: the last conversation event (TicketEvent.seq) they have seen.
    read_event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Message(MessageColumns, Base):
    __tablename__ = "messages"

    # For operator replies: the name the CRM sent, shown to the user.
    operator_name: Mapped[str | None] = mapped_column(String(128))


class LegacyTicketFields(LegacyTicketFieldsColumns, Base):
    __tablename__ = "legacy_ticket_fields"


class Outbox(OutboxColumns, Base):
    __tablename__ = "outbox"


class ChangeLog(ChangeLogColumns, Base):
    __tablename__ = "change_log"


class FeedState(FeedStateColumns, Base):
    __tablename__ = "feed_state"


class TicketEvent(Base):
    """What happened in a conversation, numbered per ticket: what the Mini App's live stream sends.

    `seq` is assigned while the ticket's row is locked (every write to a ticket takes that lock),
    so a ticket's events commit in `seq` order: a reader that has seen event n has seen every
    event before it, and resuming "after n" misses nothing, whichever process wrote them.
    """

    __tablename__ = "ticket_events"

    ticket_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))  # "message" or "status"
    message_seq: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("messages.seq", ondelete="CASCADE"),
    )
    # Who wrote the message (tma | crm); unread counts are the crm ones after the read marker.
    sender_type: Mapped[str | None] = mapped_column(String(8))
    # The ticket's status once this event happened.
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
