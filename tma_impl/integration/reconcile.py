"""The TMA's side of `reconcile`: its own tickets taken back from the CRM's copies after a
restore, and operator replies it never received notified once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from generated.client.api.crm import list_changes
from generated.models import ChangeItem, MessageRequest, SenderType, TicketStatus
from integration_kit.changelog import log_change
from integration_kit.inbound import attachments_json
from integration_kit.narrowing import narrowed
from integration_kit.outbox import OutboxRepository
from integration_kit.reconcile import ReconcileSide
from integration_kit.schema import ChangeKind, TicketColumns
from tma_impl.integration.feed import FEED
from tma_impl.notifications import enqueue_reply_notification
from tma_impl.support import events
from tma_impl.tables import ChangeLog, Message, TelegramUser, Ticket


async def adopt_ticket(
    session: AsyncSession, item: ChangeItem, now: datetime
) -> TicketColumns | None:
    """Take back a ticket opened here and lost by a restore, from the CRM's copy."""
    request = item.ticket
    if request is None:
        raise TypeError("a ticket change without its ticket")
    if item.peer_ticket_id is None or item.peer_message_id is None:
        return None  # every CRM ticket came from here and names our ids; this one does not
    customer = request.customer
    if await session.get(TelegramUser, customer.telegram_user_id) is None:
        session.add(
            TelegramUser(
                id=customer.telegram_user_id,
                first_name=customer.first_name,
                last_name=customer.last_name,
                username=customer.username,
                language_code=customer.language_code,
                updated_at=now,
            )
        )
    at = request.created_at
    ticket = Ticket(
        id=item.peer_ticket_id,
        external_id=request.external_ticket_id,
        subject=request.subject,
        status=TicketStatus.open.value,
        status_changed_at=at,
        created_at=at,
        updated_at=at,
        telegram_user_id=customer.telegram_user_id,
        restored_at=now,
    )
    session.add(ticket)
    await session.flush()
    session.add(
        Message(
            id=item.peer_message_id,
            ticket_id=ticket.id,
            external_message_id=request.external_message_id,
            sender_type=SenderType.tma.value,
            body=request.message,
            attachments=attachments_json(request.attachments),
            created_at=at,
            restored_at=now,
        )
    )
    await session.flush()
    await log_change(session, ChangeLog, kind=ChangeKind.ticket, ticket_id=ticket.id)
    await log_change(
        session,
        ChangeLog,
        kind=ChangeKind.message,
        ticket_id=ticket.id,
        message_id=item.peer_message_id,
    )
    return ticket


async def _on_new_message(session: AsyncSession, ticket: Any, message: Any, now: datetime) -> None:
    """A reply this side never had: notified once and shown on the Mini App's stream, as on
    receipt (the receiving rule has locked the ticket's row)."""
    ticket, message = narrowed(ticket, Ticket), narrowed(message, Message)
    enqueue_reply_notification(session, ticket=ticket, message=message, now=now)
    await events.record_message(session, ticket, message)


def _message_columns(request: MessageRequest) -> dict[str, object]:
    return {"operator_name": request.operator_name} if request.sender is SenderType.crm else {}


def reconcile_side(*, outbox: OutboxRepository) -> ReconcileSide:
    return ReconcileSide(
        side=SenderType.tma,
        feed=FEED,
        outbox=outbox,
        list_changes=list_changes.asyncio_detailed,
        adopt_ticket=adopt_ticket,
        message_columns=_message_columns,
        on_new_message=_on_new_message,
    )
