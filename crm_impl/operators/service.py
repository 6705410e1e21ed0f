"""What operators do: find tickets, read conversations, reply, change status, take tickets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_impl.tables import ChangeLog, LegacyTicketFields, Message, Operator, Outbox, Ticket
from generated.models import Attachment, SenderType, TicketStatus
from integration_kit import ticket_fields
from integration_kit.changelog import log_change
from integration_kit.clock import Clock
from integration_kit.inbound import attachments_json, log_status, reject_telegram_file_urls
from integration_kit.outbound import enqueue_field_event, enqueue_message_event
from integration_kit.problems import CONFLICT, NOT_FOUND, ProblemError
from integration_kit.schema import ChangeKind


async def list_tickets(
    session: AsyncSession,
    *,
    status: TicketStatus | None,
    assignee_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> Sequence[Ticket]:
    """Tickets, most recently updated first, optionally filtered."""
    query = select(Ticket).order_by(Ticket.updated_at.desc(), Ticket.id).limit(limit).offset(offset)
    if status is not None:
        query = query.where(Ticket.status == status.value)
    if assignee_id is not None:
        query = query.where(Ticket.assignee_id == assignee_id)
    return (await session.scalars(query)).all()


async def get_ticket(
    session: AsyncSession, ticket_id: uuid.UUID, *, for_update: bool = False
) -> Ticket:
    """`for_update` before changing it: a change from the TMA applied meanwhile by another API
    process would otherwise be overwritten from a stale read."""
    ticket = await session.get(Ticket, ticket_id, with_for_update=for_update)
    if ticket is None:
        raise ProblemError(404, NOT_FOUND, "Not found", f"No ticket {ticket_id}.")
    return ticket


async def legacy_fields(
    session: AsyncSession, *, ticket_id: uuid.UUID
) -> LegacyTicketFields | None:
    """The old CRM's project and external URL of a ticket from before the cut-over, if any."""
    return await session.get(LegacyTicketFields, ticket_id)


async def reply(
    session: AsyncSession,
    *,
    ticket_id: uuid.UUID,
    operator: Operator,
    body: str,
    attachments: list[Attachment],
    reply_id: uuid.UUID | None,
    clock: Clock,
) -> tuple[Message, bool]:
    """Store an operator's reply and its outbox event together; returns (message, created)."""
    reject_telegram_file_urls(attachments)
    ticket = await get_ticket(session, ticket_id, for_update=True)
    if reply_id is not None:
        existing = await session.scalar(select(Message).where(Message.id == reply_id))
        if existing is not None:
            if existing.ticket_id != ticket.id or existing.body != body:
                raise ProblemError(
                    409, CONFLICT, "Conflict", f"Message {reply_id} exists with another body."
                )
            return existing, False
    now = clock.now()
    message = Message(
        id=reply_id or uuid.uuid4(),
        ticket_id=ticket.id,
        sender_type=SenderType.crm,
        body=body,
        attachments=attachments_json(attachments),
        created_at=now,
        operator_id=operator.id,
        author_name=operator.name,
    )
    session.add(message)
    if ticket.assignee_id is None:
        ticket.assignee_id = operator.id  # whoever answers first takes the ticket
    if ticket.status == TicketStatus.open:
        ticket.status, ticket.status_changed_at = TicketStatus.in_progress, now
        await log_status(session, ChangeLog, ticket)
        enqueue_field_event(session, Outbox, ticket_fields.STATUS, ticket=ticket, now=now)
    ticket.updated_at = now
    await session.flush()
    await log_change(
        session, ChangeLog, kind=ChangeKind.message, ticket_id=ticket.id, message_id=message.id
    )
    enqueue_message_event(
        session,
        Outbox,
        message=message,
        sender=SenderType.crm,
        now=now,
        operator_name=operator.name,
    )
    return message, True


async def change_status(
    session: AsyncSession, *, ticket_id: uuid.UUID, status: TicketStatus, clock: Clock
) -> Ticket:
    """Set a ticket's status and announce it to the Mini App (nothing is sent if unchanged)."""
    ticket = await get_ticket(session, ticket_id, for_update=True)
    if ticket.status == status.value:
        return ticket
    now = clock.now()
    ticket.status, ticket.status_changed_at, ticket.updated_at = status.value, now, now
    await log_status(session, ChangeLog, ticket)
    enqueue_field_event(session, Outbox, ticket_fields.STATUS, ticket=ticket, now=now)
    return ticket


async def assign(session: AsyncSession, *, ticket_id: uuid.UUID, operator: Operator) -> Ticket:
    """Take a ticket (local to the CRM; the Mini App is not told)."""
    ticket = await get_ticket(session, ticket_id, for_update=True)
    ticket.assignee_id = operator.id
    return ticket
