"""The Mini App's user API under `/api/support` (the TMA's own API; not part of the contract)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from generated.models import TicketStatus
from integration_kit.runtime import Runtime, SessionDep
from tma_impl.support import service
from tma_impl.support.auth import UserDep
from tma_impl.support.schemas import (
    Conversation,
    MessageOut,
    NewMessage,
    NewTicket,
    StatusChange,
    TicketOut,
)
from tma_impl.tables import Ticket


def ticket_view(ticket: Ticket) -> TicketOut:
    return TicketOut(
        id=ticket.id,
        subject=ticket.subject,
        status=TicketStatus(ticket.status),
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        synced=ticket.external_id is not None,
    )


def support_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/api/support", tags=["support"])

    @router.post("/tickets", status_code=201)
    async def open_ticket(
        body: NewTicket, response: Response, user: UserDep, session: SessionDep
    ) -> TicketOut:
        ticket, created = await service.open_ticket(
            session,
            user=user,
            ticket_id=body.id,
            subject=body.subject,
            body=body.message,
            message_id=body.message_id,
            attachments=body.attachments,
            clock=runtime.clock,
        )
        response.status_code = 201 if created else 200
        return ticket_view(ticket)

    @router.get("/tickets")
    async def my_tickets(user: UserDep, session: SessionDep) -> list[TicketOut]:
        return [ticket_view(t) for t in await service.my_tickets(session, user_id=user.id)]

    @router.get("/tickets/{ticket_id}")
    async def read_conversation(
        ticket_id: uuid.UUID, user: UserDep, session: SessionDep
    ) -> Conversation:
        ticket, messages = await service.conversation(session, user_id=user.id, ticket_id=ticket_id)
        return Conversation(
            ticket=ticket_view(ticket),
            messages=[MessageOut.model_validate(service.message_view(m)) for m in messages],
        )

    @router.post("/tickets/{ticket_id}/messages", status_code=201)
    async def write_message(
        ticket_id: uuid.UUID,
        body: NewMessage,
        response: Response,
        user: UserDep,
        session: SessionDep,
    ) -> MessageOut:
        message, created = await service.write_message(
            session,
            user=user,
            ticket_id=ticket_id,
            message_id=body.id,
            body=body.message,
            attachments=body.attachments,
            clock=runtime.clock,
        )
        response.status_code = 201 if created else 200
        return MessageOut.model_validate(service.message_view(message))

    @router.post("/tickets/{ticket_id}/status")
    async def change_status(
        ticket_id: uuid.UUID, body: StatusChange, user: UserDep, session: SessionDep
    ) -> TicketOut:
        ticket = await service.set_status(
            session,
            user_id=user.id,
            ticket_id=ticket_id,
            status=TicketStatus(body.status.value),
            clock=runtime.clock,
        )
        return ticket_view(ticket)

    return router
