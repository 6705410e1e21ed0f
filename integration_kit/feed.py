"""`listChanges`: the change log rendered as the contract's own request shapes (docs/design.md §10).

Rows name what changed; an item shows the ticket or message as it is held now (a link learnt
after the change shows), and a status change as it was applied (the log keeps it).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from generated.models import (
    Attachment,
    ChangeItem,
    ChangePage,
    CreateTicketRequest,
    Customer,
    MessageRequest,
    SenderType,
    StatusRequest,
    TicketStatus,
)
from generated.models import ChangeKind as ContractKind
from integration_kit import changelog
from integration_kit.changelog import Cursor, LogRow, Position
from integration_kit.schema import (
    ChangeKind,
    ChangeLogColumns,
    FeedStateColumns,
    MessageColumns,
    TicketColumns,
)

# The customers of tickets, by ticket id (the TMA reads its users, the CRM its own columns).
Customers = Callable[[AsyncSession, Sequence[Any]], Awaitable[dict[uuid.UUID, Customer]]]


@dataclass(frozen=True)
class FeedTables:
    """One side's tables the feed reads, and what differs between the sides."""

    ticket: type[TicketColumns]
    message: type[MessageColumns]
    log: type[ChangeLogColumns]
    state: type[FeedStateColumns]
    customers: Customers
    operator_name: Callable[[Any], str | None]


async def list_changes(
    session: AsyncSession, tables: FeedTables, *, after: str | None, limit: int, now: datetime
) -> ChangePage:
    """A page of the feed after the cursor `after` (from the start when None)."""
    epoch = await changelog.current_epoch(session, tables.state, now=now)
    start = Position(0, 0)
    if after is not None:
        cursor = changelog.decode_cursor(after)
        changelog.check_cursor_epoch(cursor, epoch)
        start = cursor.position
    rows = await changelog.read_log(session, tables.log, after=start, limit=limit)
    if not rows and start > await changelog.last_position(session, tables.log):
        # A position this database never reached: it was restored without `restored` being run.
        raise changelog.epoch_changed(
            "The cursor is past the last change held here: this database was rewound (restored "
            "from a backup). Read again from the start."
        )
    items = await _render(session, tables, rows, epoch)
    return ChangePage(
        items=items,
        next_cursor=Cursor(epoch, changelog.page_positions(rows, start)).encode(),
        has_more=len(rows) == limit,
    )


async def _render(
    session: AsyncSession, tables: FeedTables, rows: Sequence[LogRow], epoch: str
) -> list[ChangeItem]:
    ticket_ids = {row.ticket_id for row in rows}
    tickets = {
        t.id: t
        for t in (
            await session.scalars(select(tables.ticket).where(tables.ticket.id.in_(ticket_ids)))
        ).all()
    }
    message_ids = {row.message_id for row in rows if row.message_id is not None}
    opened = [row.ticket_id for row in rows if row.kind is ChangeKind.ticket]
    messages = {
        m.id: m
        for m in (
            await session.scalars(select(tables.message).where(tables.message.id.in_(message_ids)))
        ).all()
    }
    firsts = await _first_messages(session, tables.message, opened)
    customers = await tables.customers(session, [tickets[t] for t in opened if t in tickets])
    items: list[ChangeItem] = []
    for row in rows:
        ticket = tickets.get(row.ticket_id)
        if ticket is None:
            continue  # deleted since (tests' resets); the feed shows what is held
        position = Cursor(epoch, row.position).encode()
        if row.kind is ChangeKind.ticket:
            first = firsts.get(ticket.id)
            customer = customers.get(ticket.id)
            if first is None or customer is None:
                continue
            items.append(
                ChangeItem(
                    kind=ContractKind.ticket,
                    position=position,
                    ticket=CreateTicketRequest(
                        external_ticket_id=ticket.id,
                        subject=ticket.subject,
                        message=first.body,
                        external_message_id=first.id,
                        attachments=_attachments(first),
                        customer=customer,
                        created_at=first.created_at,
                    ),
                    peer_ticket_id=ticket.external_id,
                    peer_message_id=first.external_message_id,
                )
            )
        elif row.kind is ChangeKind.message:
            message = messages.get(row.message_id) if row.message_id else None
            if message is None:
                continue
            items.append(
                ChangeItem(
                    kind=ContractKind.message,
                    position=position,
                    message=MessageRequest(
                        ticket_id=ticket.external_id,
                        external_ticket_id=ticket.id,
                        external_message_id=message.id,
                        sender=SenderType(message.sender_type),
                        message=message.body,
                        attachments=_attachments(message),
                        created_at=message.created_at,
                        operator_name=tables.operator_name(message) or None,
                    ),
                    peer_ticket_id=ticket.external_id,
                    peer_message_id=message.external_message_id,
                )
            )
        elif row.status is not None and row.changed_at is not None:
            items.append(
                ChangeItem(
                    kind=ContractKind.status,
                    position=position,
                    status=StatusRequest(
                        ticket_id=ticket.external_id,
                        external_ticket_id=ticket.id,
                        status=TicketStatus(row.status),
                        changed_at=row.changed_at,
                    ),
                    peer_ticket_id=ticket.external_id,
                )
            )
    return items


def _attachments(message: MessageColumns) -> list[Attachment] | None:
    return [Attachment.model_validate(a) for a in message.attachments] or None


async def _first_messages(
    session: AsyncSession, model: type[MessageColumns], ticket_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    if not ticket_ids:
        return {}
    first = (
        select(func.min(model.seq)).where(model.ticket_id.in_(ticket_ids)).group_by(model.ticket_id)
    )
    rows = await session.scalars(select(model).where(model.seq.in_(first)))
    return {m.ticket_id: m for m in rows.all()}
