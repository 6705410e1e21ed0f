"""A ticket's conversation events, numbered per ticket (the Mini App's live stream reads them).

Every write to a ticket holds the ticket's row lock (`SELECT ... FOR UPDATE` on PostgreSQL; on
SQLite every transaction is `BEGIN IMMEDIATE`, one writer at a time) until it commits, and the
event's number is taken inside that lock as one more than the ticket's last. So a ticket's events
commit in the order of their numbers, with no gaps, whichever API process wrote them: a reader
that has seen event n has seen every event before n, and "after n" is a resume point that never
skips a late commit.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from integration_kit.hot_sql import hot_sql
from integration_kit.narrowing import narrowed
from tma_impl.support.live import CHANNEL
from tma_impl.tables import Message, Ticket, TicketEvent

# session.info key: the tickets whose events this transaction wrote (woken after commit).
WRITTEN = "ticket_events_written"
MESSAGE = "message"
STATUS = "status"


async def record_message(session: AsyncSession, ticket: Ticket, message: Message) -> int:
    """A stored message's event on its ticket's stream; the caller holds the ticket's row lock
    (the receiving rules take it) and the message has its `seq` (it was inserted)."""
    return await record_event(
        session,
        ticket_id=ticket.id,
        kind=MESSAGE,
        status=ticket.status,
        at=message.created_at,
        message_seq=message.seq,
        sender_type=message.sender_type,
    )


async def record_event(
    session: AsyncSession,
    *,
    ticket_id: uuid.UUID,
    kind: str,
    status: str,
    at: datetime,
    message_seq: int | None = None,
    sender_type: str | None = None,
) -> int:
    """Append an event to the ticket's conversation; the caller holds the ticket's row lock
    (or has just created the ticket). Returns the event's number."""
    hot = await hot_sql(session)
    seq = await hot.scalar(
        _insert_event(),
        {
            "ticket_id": ticket_id,
            "kind": kind,
            "message_seq": message_seq,
            "sender_type": sender_type,
            "status": status,
            "created_at": at,
        },
    )
    if seq is None:  # INSERT ... RETURNING always returns the row it stored
        raise RuntimeError(f"ticket {ticket_id}: the event was not stored")
    session.info.setdefault(WRITTEN, set()).add(ticket_id)
    if hot.dialect_name == "postgresql":
        # Delivered at commit, to every process listening (see live.PostgresWakeups).
        await hot.execute(_notify(), {"payload": str(ticket_id)})
    return int(seq)


@functools.cache
def _notify() -> Any:
    return select(func.pg_notify(CHANNEL, bindparam("payload")))


@functools.cache
def _insert_event() -> Any:
    # One statement: the next number is read and used in the same INSERT, under the row lock.
    events = narrowed(TicketEvent.__table__, Table)
    next_seq = (
        select(func.coalesce(func.max(events.c.seq), 0) + 1)
        .where(events.c.ticket_id == bindparam("ticket_id"))
        .scalar_subquery()
    )
    return (
        insert(events)
        .values(
            ticket_id=bindparam("ticket_id"),
            seq=next_seq,
            kind=bindparam("kind"),
            message_seq=bindparam("message_seq"),
            sender_type=bindparam("sender_type"),
            status=bindparam("status"),
            created_at=bindparam("created_at"),
        )
        .returning(events.c.seq)
    )


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    status: str
    at: datetime
    message: Message | None


async def events_after(
    session: AsyncSession, *, ticket_id: uuid.UUID, after: int, limit: int = 200
) -> Sequence[Event]:
    """The ticket's events numbered above `after`, in order, each with its message (one
    statement, so one snapshot: what it returns is a prefix of the ticket's history)."""
    rows = await session.execute(
        select(TicketEvent, Message)
        .outerjoin(Message, Message.seq == TicketEvent.message_seq)
        .where(TicketEvent.ticket_id == ticket_id, TicketEvent.seq > after)
        .order_by(TicketEvent.seq)
        .limit(limit)
    )
    return [
        Event(seq=event.seq, kind=event.kind, status=event.status, at=event.created_at, message=m)
        for event, m in rows
    ]
