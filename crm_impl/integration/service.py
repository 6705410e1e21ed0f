"""`createTicket`, which only the CRM serves: a ticket opened in the Mini App arrives here."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_impl.tables import ChangeLog, Message, Ticket
from generated.models import CreateTicketRequest, SenderType, TicketAccepted, TicketStatus
from integration_kit.changelog import log_change
from integration_kit.clock import Clock
from integration_kit.inbound import (
    attachments_json,
    insert_unless_stored,
    reject_telegram_file_urls,
    store_inbound_message,
)
from integration_kit.problems import IDEMPOTENCY_CONFLICT, ProblemError
from integration_kit.schema import ChangeKind


async def receive_ticket(
    session: AsyncSession,
    *,
    request: CreateTicketRequest,
    clock: Clock,
    restore: tuple[uuid.UUID, uuid.UUID | None] | None = None,
) -> tuple[TicketAccepted, bool]:
    """Create the CRM ticket for a TMA ticket, once; returns (answer, created).

    `restore` (reconcile only): the ids this CRM had given the ticket and its first message
    before a restore lost them, kept so the TMA's links stay true; the rows are marked restored.
    """
    reject_telegram_file_urls(request.attachments)
    now = clock.now()
    customer = request.customer
    values = {
        "id": restore[0] if restore else uuid.uuid4(),
        "restored_at": now if restore else None,
        "external_id": request.external_ticket_id,
        "subject": request.subject,
        "status": TicketStatus.open.value,
        "status_changed_at": request.created_at,
        "created_at": now,
        "updated_at": now,
        "customer_telegram_id": customer.telegram_user_id,
        "customer_first_name": customer.first_name,
        "customer_last_name": customer.last_name,
        "customer_username": customer.username,
        "customer_language": customer.language_code,
    }
    # The link is the idempotency key: a replay, or a concurrent duplicate from another API
    # process, stores nothing and is answered from what the first one stored.
    insert = insert_unless_stored(session, Ticket, key=("external_id",), returning="id")
    if await session.scalar(insert, values) is None:
        existing = await session.scalar(
            select(Ticket).where(Ticket.external_id == request.external_ticket_id)
        )
        if existing is None:  # the conflicting row is there by definition
            raise RuntimeError(f"ticket {request.external_ticket_id} conflicted but is not stored")
        return await _replayed_ticket(session, existing, request), False
    ticket = Ticket(**values)  # the stored row, for the caller; not added to the session
    await log_change(session, ChangeLog, kind=ChangeKind.ticket, ticket_id=ticket.id)
    message, _ = await store_inbound_message(
        session,
        Message,
        ticket,
        sender=SenderType.tma,
        external_message_id=request.external_message_id,
        body=request.message,
        attachments=attachments_json(request.attachments),
        created_at=request.created_at,
        change_log=ChangeLog,
        extra={"id": restore[1], "restored_at": now} if restore and restore[1] else None,
    )
    return TicketAccepted(
        ticket_id=ticket.id,
        external_ticket_id=request.external_ticket_id,
        message_id=message.id,
        status=TicketStatus(ticket.status),
    ), True


async def _replayed_ticket(
    session: AsyncSession, ticket: Ticket, request: CreateTicketRequest
) -> TicketAccepted:
    first = await session.scalar(
        select(Message).where(
            Message.sender_type == SenderType.tma,
            Message.external_message_id == request.external_message_id,
        )
    )
    if (
        first is None
        or first.ticket_id != ticket.id
        or ticket.subject != request.subject
        or (first.body != request.message)
    ):
        raise ProblemError(
            409,
            IDEMPOTENCY_CONFLICT,
            "Idempotency key reused",
            f"Ticket {request.external_ticket_id} was already received with a different subject "
            "or first message.",
        )
    return TicketAccepted(
        ticket_id=ticket.id,
        external_ticket_id=request.external_ticket_id,
        message_id=first.id,
        status=TicketStatus(ticket.status),
    )
