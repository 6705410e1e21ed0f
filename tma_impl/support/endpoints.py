"""The Mini App's user API under `/api/support` (the TMA's own API; not part of the contract)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from generated.models import TicketStatus
from integration_kit.api_body import request_body, strict_body
from integration_kit.api_docs import problems
from integration_kit.runtime import Runtime, SessionDep
from tma_impl.support import service
from tma_impl.support.auth import UserDep, current_user
from tma_impl.support.schemas import (
    Conversation,
    MessageOut,
    NewMessage,
    NewTicket,
    StatusChange,
    TicketOut,
)
from tma_impl.tables import Ticket

# Bodies are read strictly, after authentication (integration_kit/api_body.py).
NewTicketBody = Annotated[NewTicket, Depends(strict_body(NewTicket))]
NewMessageBody = Annotated[NewMessage, Depends(strict_body(NewMessage))]
StatusChangeBody = Annotated[StatusChange, Depends(strict_body(StatusChange))]


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
    # The user first: 401 before anything about the request, its body included.
    router = APIRouter(
        prefix="/api/support",
        tags=["support"],
        dependencies=[Depends(current_user)],
    )

    @router.post(
        "/tickets",
        status_code=201,
        operation_id="openTicket",
        openapi_extra=request_body(NewTicket),
        responses=problems(
            409, also={200: {"model": TicketOut, "description": "A retry: the ticket as stored."}}
        ),
    )
    async def open_ticket(
        body: NewTicketBody, response: Response, user: UserDep, session: SessionDep
    ) -> TicketOut:
        """Open a ticket with its first message; a retry with the same ids changes nothing."""
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

    @router.get("/tickets", operation_id="listMyTickets")
    async def my_tickets(user: UserDep, session: SessionDep) -> list[TicketOut]:
        """The user's tickets, most recently updated first."""
        return [ticket_view(t) for t in await service.my_tickets(session, user_id=user.id)]

    @router.get("/tickets/{ticket_id}", operation_id="readConversation", responses=problems(404))
    async def read_conversation(
        ticket_id: uuid.UUID, user: UserDep, session: SessionDep
    ) -> Conversation:
        """One of the user's tickets with its messages in order."""
        ticket, messages = await service.conversation(session, user_id=user.id, ticket_id=ticket_id)
        return Conversation(
            ticket=ticket_view(ticket),
            messages=[MessageOut.model_validate(service.message_view(m)) for m in messages],
        )

    @router.post(
        "/tickets/{ticket_id}/messages",
        status_code=201,
        operation_id="writeMessage",
        openapi_extra=request_body(NewMessage),
        responses=problems(
            404,
            409,
            also={200: {"model": MessageOut, "description": "A retry: the message as stored."}},
        ),
    )
    async def write_message(
        ticket_id: uuid.UUID,
        body: NewMessageBody,
        response: Response,
        user: UserDep,
        session: SessionDep,
    ) -> MessageOut:
        """Add a message (the client's id makes a retry harmless); a closed ticket reopens."""
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

    @router.post(
        "/tickets/{ticket_id}/status",
        operation_id="changeStatus",
        openapi_extra=request_body(StatusChange),
        responses=problems(404),
    )
    async def change_status(
        ticket_id: uuid.UUID, body: StatusChangeBody, user: UserDep, session: SessionDep
    ) -> TicketOut:
        """Close or reopen the user's ticket."""
        ticket = await service.set_status(
            session,
            user_id=user.id,
            ticket_id=ticket_id,
            status=TicketStatus(body.status.value),
            clock=runtime.clock,
        )
        return ticket_view(ticket)

    return router
