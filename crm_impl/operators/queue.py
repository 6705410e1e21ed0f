"""The queue and conversation as an operator sees them: filters, search, unread counts, profile.

Unread counts come from per-operator read markers (see `ReadMarker`): a marker holds the `seq` of
the last message shown to that operator. Within one ticket `seq` grows in commit order, because
every message of a ticket is written while the ticket's row is locked (`FOR UPDATE` in
`crm_impl.operators.service` and `integration_kit.inbound`), or in the transaction that creates
the ticket; so "seq greater than the marker" never misses a message committed late.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crm_impl.operators.delivery import delivery_states
from crm_impl.operators.schemas import (
    ConversationMessage,
    ConversationView,
    Customer,
    MessageOut,
    QueueFilter,
    QueueItem,
    QueuePage,
)
from crm_impl.operators.service import get_ticket
from crm_impl.tables import Message, Operator, ReadMarker, Ticket
from generated.models import SenderType, TicketStatus
from integration_kit.problems import NOT_FOUND, ProblemError

PREVIEW_CHARS = 140


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search(q: str) -> Any:
    """Subject, customer name or @username containing `q` (case-insensitive)."""
    pattern = _like(q.strip())
    username = _like(q.strip().removeprefix("@"))
    return or_(
        Ticket.subject.ilike(pattern, escape="\\"),
        Ticket.customer_first_name.ilike(pattern, escape="\\"),
        Ticket.customer_last_name.ilike(pattern, escape="\\"),
        (Ticket.customer_first_name + " " + func.coalesce(Ticket.customer_last_name, "")).ilike(
            pattern, escape="\\"
        ),
        Ticket.customer_username.ilike(username, escape="\\"),
    )


def _filters(
    *, operator_id: uuid.UUID, status: TicketStatus | None, which: QueueFilter, q: str | None
) -> list[Any]:
    where: list[Any] = []
    if status is not None:
        where.append(Ticket.status == status.value)
    if which is QueueFilter.mine:
        where.append(Ticket.assignee_id == operator_id)
    elif which is QueueFilter.unassigned:
        where.append(Ticket.assignee_id.is_(None))
    if q and q.strip():
        where.append(_search(q))
    return where


def _queue_query(operator_id: uuid.UUID) -> Select[Any]:
    """Tickets with their assignee's name, the operator's unread count and a preview."""
    marker = aliased(ReadMarker)
    assignee = aliased(Operator)
    unread = (
        select(func.count(Message.seq))
        .where(
            Message.ticket_id == Ticket.id,
            Message.sender_type == SenderType.tma.value,
            Message.seq > func.coalesce(marker.last_read_seq, 0),
        )
        .correlate(Ticket, marker)
        .scalar_subquery()
    )
    preview = (
        select(func.substr(Message.body, 1, PREVIEW_CHARS))
        .where(Message.ticket_id == Ticket.id)
        .order_by(Message.seq.desc())
        .limit(1)
        .correlate(Ticket)
        .scalar_subquery()
    )
    query = (
        select(Ticket, assignee.name, unread, preview)
        .outerjoin(marker, and_(marker.ticket_id == Ticket.id, marker.operator_id == operator_id))
        .outerjoin(assignee, assignee.id == Ticket.assignee_id)
    )
    return query


def _item(ticket: Ticket, assignee_name: str | None, unread: int, preview: str | None) -> QueueItem:
    return QueueItem.model_validate(
        {
            **{k: getattr(ticket, k) for k in QueueItem.model_fields if hasattr(ticket, k)},
            "assignee_name": assignee_name,
            "unread": unread or 0,
            "preview": preview,
        }
    )


async def queue_page(
    session: AsyncSession,
    *,
    operator_id: uuid.UUID,
    status: TicketStatus | None,
    which: QueueFilter,
    q: str | None,
    limit: int,
    offset: int,
) -> QueuePage:
    """One page of the queue, newest activity first."""
    where = _filters(operator_id=operator_id, status=status, which=which, q=q)
    total = await session.scalar(select(func.count()).select_from(Ticket).where(*where))
    rows = await session.execute(
        _queue_query(operator_id)
        .where(*where)
        .order_by(Ticket.updated_at.desc(), Ticket.id)
        .limit(limit)
        .offset(offset)
    )
    return QueuePage(
        items=[_item(*row) for row in rows.all()],
        total=int(total or 0),
        limit=limit,
        offset=offset,
    )


async def queue_item(
    session: AsyncSession, *, operator_id: uuid.UUID, ticket_id: uuid.UUID
) -> QueueItem:
    """One ticket as the queue shows it to the operator; 404 problem if there is none."""
    row = (
        await session.execute(_queue_query(operator_id).where(Ticket.id == ticket_id))
    ).one_or_none()
    if row is None:
        raise ProblemError(404, NOT_FOUND, "Not found", f"No ticket {ticket_id}.")
    return _item(*row)


def conversation_message(message: Message, deliveries: dict[uuid.UUID, Any]) -> ConversationMessage:
    return ConversationMessage(
        **MessageOut.model_validate(message).model_dump(),
        seq=message.seq,
        delivery=deliveries.get(message.id),
    )


async def conversation_view(
    session: AsyncSession, *, operator_id: uuid.UUID, ticket_id: uuid.UUID
) -> ConversationView:
    """A ticket with its customer's profile, its messages and each reply's delivery state."""
    item = await queue_item(session, operator_id=operator_id, ticket_id=ticket_id)
    ticket = await get_ticket(session, ticket_id)
    messages = (
        await session.scalars(
            select(Message).where(Message.ticket_id == ticket_id).order_by(Message.seq)
        )
    ).all()
    deliveries = await delivery_states(session, ticket_id=ticket_id, messages=messages)
    return ConversationView(
        ticket=item,
        customer=Customer(
            telegram_user_id=ticket.customer_telegram_id,
            first_name=ticket.customer_first_name,
            last_name=ticket.customer_last_name,
            username=ticket.customer_username,
            language_code=ticket.customer_language,
        ),
        messages=[conversation_message(m, deliveries) for m in messages],
        last_seq=messages[-1].seq if messages else 0,
    )


async def mark_read(
    session: AsyncSession, *, operator_id: uuid.UUID, ticket_id: uuid.UUID, seq: int
) -> None:
    """Move the operator's read marker forward to `seq` (never back)."""
    await get_ticket(session, ticket_id)
    marker = await session.get(ReadMarker, (operator_id, ticket_id), with_for_update=True)
    if marker is None:
        session.add(ReadMarker(operator_id=operator_id, ticket_id=ticket_id, last_read_seq=seq))
    elif seq > marker.last_read_seq:
        marker.last_read_seq = seq
