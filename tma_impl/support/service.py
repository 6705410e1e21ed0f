"""What Mini App users do: open tickets, read and write messages, close and reopen.

Every write stores its outbox event in the same transaction, so the CRM hears of it even if it is
down right now. Client-made ids make every write idempotent.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from generated.models import (
    Attachment,
    CreateTicketRequest,
    Customer,
    SenderType,
    TicketStatus,
)
from integration_kit import ticket_fields
from integration_kit.changelog import log_change
from integration_kit.clock import Clock
from integration_kit.hot_sql import hot_sql, row_object
from integration_kit.inbound import (
    attachments_json,
    insert_unless_stored,
    log_status,
    reject_telegram_file_urls,
    reopened_status,
    ticket_query,
    write_ticket,
)
from integration_kit.narrowing import narrowed
from integration_kit.outbound import enqueue_field_event, enqueue_message_event
from integration_kit.outbox import enqueue
from integration_kit.problems import CONFLICT, NOT_FOUND, ProblemError
from integration_kit.schema import ChangeKind
from tma_impl import telegram
from tma_impl.support import events
from tma_impl.tables import ChangeLog, Message, Outbox, TelegramUser, Ticket, TicketEvent

TICKET_CREATED = "ticket_created"


def _conflict(detail: str) -> ProblemError:
    return ProblemError(409, CONFLICT, "Conflict", detail)


async def remember_user(
    session: AsyncSession, user: telegram.TelegramUser, *, clock: Clock
) -> TelegramUser:
    """Store or refresh the user as their latest initData describes them."""
    row = await session.get(TelegramUser, user.id)
    if row is None:
        row = TelegramUser(id=user.id)
        session.add(row)
    # The initData parser has already made each field fit these columns and the contract.
    row.first_name = user.first_name
    row.last_name = user.last_name
    row.username = user.username
    row.language_code = user.language_code
    row.updated_at = clock.now()
    return row


def customer_of(user: TelegramUser) -> Customer:
    return Customer(
        telegram_user_id=user.id,
        first_name=user.first_name or "-",
        last_name=user.last_name,
        username=user.username or None,
        language_code=user.language_code,
    )


async def open_ticket(
    session: AsyncSession,
    *,
    user: telegram.TelegramUser,
    ticket_id: uuid.UUID,
    subject: str,
    body: str,
    message_id: uuid.UUID,
    attachments: list[Attachment],
    clock: Clock,
) -> tuple[Ticket, bool]:
    """Open a ticket with its first message; a retry with the same ids returns the same ticket."""
    reject_telegram_file_urls(attachments)
    existing = await session.get(Ticket, ticket_id)
    if existing is not None:
        if existing.telegram_user_id != user.id or existing.subject != subject:
            raise _conflict(f"Ticket {ticket_id} already exists with other content.")
        return existing, False
    if await session.scalar(select(Message).where(Message.id == message_id)) is not None:
        raise _conflict(f"Message id {message_id} is already used.")
    owner = await remember_user(session, user, clock=clock)
    await session.flush()
    now = clock.now()
    ticket = Ticket(
        id=ticket_id,
        subject=subject,
        status=TicketStatus.open,
        status_changed_at=now,
        created_at=now,
        updated_at=now,
        telegram_user_id=owner.id,
    )
    message = Message(
        id=message_id,
        ticket_id=ticket_id,
        sender_type=SenderType.tma,
        body=body,
        attachments=attachments_json(attachments),
        created_at=now,
    )
    session.add(ticket)
    await session.flush()  # no ORM relationship orders the inserts; the ticket must exist first
    session.add(message)
    await log_change(session, ChangeLog, kind=ChangeKind.ticket, ticket_id=ticket_id)
    await log_change(
        session, ChangeLog, kind=ChangeKind.message, ticket_id=ticket_id, message_id=message_id
    )
    await session.flush()  # the message's seq, for its event
    await events.record_event(
        session,
        ticket_id=ticket_id,
        kind=events.MESSAGE,
        status=TicketStatus.open,
        at=now,
        message_seq=message.seq,
        sender_type=SenderType.tma,
    )
    request = CreateTicketRequest(
        external_ticket_id=ticket_id,
        subject=subject,
        message=body,
        external_message_id=message_id,
        attachments=attachments or None,
        customer=customer_of(owner),
        created_at=now,
    )
    enqueue(
        session,
        Outbox,
        ticket_id=ticket_id,
        kind=TICKET_CREATED,
        now=now,
        payload={
            "message_id": str(message_id),
            "request": request.model_dump(mode="json", exclude_none=True),
        },
    )
    return ticket, True


async def users_ticket(
    session: AsyncSession, *, user_id: int, ticket_id: uuid.UUID, for_update: bool = False
) -> Ticket:
    """The user's own ticket; someone else's answers 404 like a missing one.

    `for_update` before changing it: a change from the CRM applied meanwhile by another API
    process would otherwise be overwritten from a stale read.
    """
    ticket: Ticket | None = await session.scalar(
        ticket_query(Ticket, "id", for_update), {"key": ticket_id}
    )
    if ticket is None or ticket.telegram_user_id != user_id:
        raise ProblemError(404, NOT_FOUND, "Not found", f"You have no ticket {ticket_id}.")
    return ticket


@dataclass(frozen=True)
class TicketRow:
    ticket: Ticket
    unread: int  # operator replies after the user's read marker


async def my_tickets(
    session: AsyncSession,
    *,
    user_id: int,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> tuple[list[TicketRow], tuple[datetime, uuid.UUID] | None]:
    """The user's tickets, newest activity first, `limit` at a time; `before` is the (updated_at,
    id) of the last ticket of the previous page. Returns the page and the next page's `before`."""
    unread = (
        select(func.count())
        .where(
            TicketEvent.ticket_id == Ticket.id,
            TicketEvent.sender_type == SenderType.crm.value,
            TicketEvent.seq > Ticket.read_event_seq,
        )
        .correlate(Ticket)
        .scalar_subquery()
    )
    query = select(Ticket, unread).where(Ticket.telegram_user_id == user_id)
    if before is not None:
        at, ticket_id = before
        query = query.where(
            or_(Ticket.updated_at < at, and_(Ticket.updated_at == at, Ticket.id < ticket_id))
        )
    result = await session.execute(
        query.order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(limit + 1)
    )
    rows = [(ticket, count) for ticket, count in result]
    page = [TicketRow(ticket=ticket, unread=int(count)) for ticket, count in rows[:limit]]
    more = len(rows) > limit
    return page, ((page[-1].ticket.updated_at, page[-1].ticket.id) if more else None)


async def conversation(
    session: AsyncSession, *, user_id: int, ticket_id: uuid.UUID
) -> tuple[Ticket, Sequence[events.Event]]:
    """The ticket and its whole history as events (messages and status changes), in order."""
    ticket = await users_ticket(session, user_id=user_id, ticket_id=ticket_id)
    return ticket, await events.events_after(session, ticket_id=ticket.id, after=0, limit=10_000)


async def mark_read(session: AsyncSession, *, user_id: int, ticket_id: uuid.UUID, seq: int) -> int:
    """Move the user's read marker forward to `seq` (never back, never past the last event)."""
    ticket = await users_ticket(session, user_id=user_id, ticket_id=ticket_id)
    last = await session.scalar(
        select(func.coalesce(func.max(TicketEvent.seq), 0)).where(
            TicketEvent.ticket_id == ticket.id
        )
    )
    target = min(seq, int(last or 0))
    await session.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.read_event_seq < target)
        .values(read_event_seq=target)
    )
    return max(target, ticket.read_event_seq)


async def write_message(
    session: AsyncSession,
    *,
    user: telegram.TelegramUser,
    ticket_id: uuid.UUID,
    message_id: uuid.UUID,
    body: str,
    attachments: list[Attachment],
    clock: Clock,
) -> tuple[Message, bool]:
    """Add the user's message; on a closed ticket it reopens it (on both sides, same rule)."""
    reject_telegram_file_urls(attachments)
    # The user's write path runs on the driver (integration_kit/hot_sql.py): the same
    # statements as through the ORM, at a fraction of their cost per message.
    hot = await hot_sql(session)
    found = await hot.first(_ticket_for_write(), {"key": ticket_id})
    if found is None or found[0] != user.id:
        raise ProblemError(404, NOT_FOUND, "Not found", f"You have no ticket {ticket_id}.")
    _, current_status, status_changed_at = found
    now = clock.now()
    values: dict[str, Any] = {
        "id": message_id,
        "ticket_id": ticket_id,
        "sender_type": SenderType.tma.value,
        "body": body,
        "attachments": attachments_json(attachments),
        "created_at": now,
    }
    # The client's id is the idempotency key: a retry stores nothing and gets the stored one.
    insert = insert_unless_stored(session, Message, key=("id",), returning="seq")
    stored = await hot.scalar(insert, values)
    if stored is None:
        existing = await session.scalar(select(Message).where(Message.id == message_id))
        if existing is None:  # the conflicting row is there by definition
            raise RuntimeError(f"message {message_id} conflicted but is not stored")
        if existing.ticket_id != ticket_id or existing.body != body:
            raise _conflict(f"Message {message_id} already exists with other content.")
        return existing, False
    message = row_object(Message, {"seq": stored, **values})  # the stored row; not added
    changes: dict[str, Any] = {"updated_at": now}
    status = reopened_status(current_status, status_changed_at, at=now)
    if status != current_status:
        changes["status"] = status
    await write_ticket(session, narrowed(Ticket.__table__, Table), ticket_id, changes)
    await log_change(
        session, ChangeLog, kind=ChangeKind.message, ticket_id=ticket_id, message_id=message_id
    )
    await events.record_event(
        session,
        ticket_id=ticket_id,
        kind=events.MESSAGE,
        status=status,
        at=now,
        message_seq=stored,
        sender_type=SenderType.tma,
    )
    await enqueue_message_event(session, Outbox, message=message, sender=SenderType.tma, now=now)
    return message, True


@functools.cache
def _ticket_for_write() -> Any:
    # The columns the write needs, under the row's lock (users_ticket's rule, without the ORM).
    return (
        select(Ticket.telegram_user_id, Ticket.status, Ticket.status_changed_at)
        .where(Ticket.id == bindparam("key"))
        .with_for_update()
    )


async def set_status(
    session: AsyncSession, *, user_id: int, ticket_id: uuid.UUID, status: TicketStatus, clock: Clock
) -> Ticket:
    """Close or reopen the user's ticket and tell the CRM (nothing is sent if unchanged)."""
    ticket = await users_ticket(session, user_id=user_id, ticket_id=ticket_id, for_update=True)
    if ticket.status == status.value or (
        status is TicketStatus.open and ticket.status == TicketStatus.in_progress
    ):
        return ticket
    now = clock.now()
    ticket.status, ticket.status_changed_at, ticket.updated_at = status.value, now, now
    await log_status(session, ChangeLog, ticket)
    await events.record_event(
        session, ticket_id=ticket.id, kind=events.STATUS, status=status.value, at=now
    )
    enqueue_field_event(session, Outbox, ticket_fields.STATUS, ticket=ticket, now=now)
    return ticket


def message_view(message: Message) -> dict[str, Any]:
    """A message as the Mini App shows it: delivered once the other side's id is known."""
    return {
        "id": message.id,
        "sender_type": message.sender_type,
        "operator_name": message.operator_name,
        "body": message.body,
        "attachments": message.attachments,
        "created_at": message.created_at,
        "delivered": message.external_message_id is not None,
    }
