"""The TMA's tables: the shared columns plus the Telegram users who own tickets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
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
