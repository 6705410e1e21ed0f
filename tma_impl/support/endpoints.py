"""The Mini App's user API under `/api/support` (the TMA's own API; not part of the contract)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse

from generated.models import TicketStatus
from integration_kit.api_body import request_body, strict_body
from integration_kit.api_docs import LONG_POLL, problems
from integration_kit.narrowing import narrowed
from integration_kit.runtime import Runtime, SessionDep
from tma_impl.settings import TmaSettings
from tma_impl.support import cursor, service
from tma_impl.support.auth import UserDep, current_user
from tma_impl.support.events import STATUS
from tma_impl.support.live import PostgresWakeups, TicketEventHub
from tma_impl.support.schemas import (
    Conversation,
    MessageOut,
    NewMessage,
    NewTicket,
    ReadMarker,
    StatusChange,
    StatusChangeOut,
    TicketOut,
    TicketPage,
)
from tma_impl.support.stream import conversation_stream
from tma_impl.tables import Ticket

# Bodies are read strictly, after authentication (integration_kit/api_body.py).
NewTicketBody = Annotated[NewTicket, Depends(strict_body(NewTicket))]
NewMessageBody = Annotated[NewMessage, Depends(strict_body(NewMessage))]
StatusChangeBody = Annotated[StatusChange, Depends(strict_body(StatusChange))]
ReadMarkerBody = Annotated[ReadMarker, Depends(strict_body(ReadMarker))]

HUB = "ticket_event_hub"  # Runtime.extras keys
WAKEUPS = "ticket_event_wakeups"


def ticket_view(ticket: Ticket, unread: int = 0) -> TicketOut:
    return TicketOut(
        id=ticket.id,
        subject=ticket.subject,
        status=TicketStatus(ticket.status),
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        synced=ticket.external_id is not None,
        unread=unread,
    )


def support_router(runtime: Runtime) -> APIRouter:
    # The user first: 401 before anything about the request, its body included.
    router = APIRouter(
        prefix="/api/support",
        tags=["support"],
        dependencies=[Depends(current_user)],
    )
    settings = narrowed(runtime.settings, TmaSettings)

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

    @router.get("/tickets", operation_id="listMyTickets", responses=problems(422))
    async def my_tickets(
        user: UserDep,
        session: SessionDep,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        after: Annotated[str | None, Query(max_length=200)] = None,
    ) -> TicketPage:
        """Newest activity first; `after` is the `next_cursor` of the previous page."""
        page, following = await service.my_tickets(
            session,
            user_id=user.id,
            limit=limit,
            before=cursor.decode(after) if after else None,
        )
        return TicketPage(
            tickets=[ticket_view(row.ticket, row.unread) for row in page],
            next_cursor=cursor.encode(*following) if following else None,
        )

    @router.get("/tickets/{ticket_id}", operation_id="readConversation", responses=problems(404))
    async def read_conversation(
        ticket_id: uuid.UUID, user: UserDep, session: SessionDep
    ) -> Conversation:
        """One of the user's tickets with its messages and status changes in order."""
        ticket, history = await service.conversation(session, user_id=user.id, ticket_id=ticket_id)
        messages = [
            MessageOut.model_validate({**service.message_view(e.message), "seq": e.seq})
            for e in history
            if e.message is not None
        ]
        changes = [
            StatusChangeOut(seq=e.seq, status=TicketStatus(e.status), at=e.at)
            for e in history
            if e.kind == STATUS
        ]
        return Conversation(
            ticket=ticket_view(ticket),
            messages=messages,
            status_changes=changes,
            last_seq=history[-1].seq if history else 0,
        )

    # A stream: left out of the stateless fuzzing by its x-long-poll mark (api_docs.py).
    @router.get(
        "/tickets/{ticket_id}/events",
        response_class=StreamingResponse,
        operation_id="conversationEvents",
        openapi_extra={LONG_POLL: True},
        responses=problems(404),
    )
    async def conversation_events(
        ticket_id: uuid.UUID,
        user: UserDep,
        after: Annotated[int, Query(ge=0)] = 0,
    ) -> StreamingResponse:
        """The conversation's events after `after`, then new ones as they happen: one JSON object
        a line (NDJSON), read with fetch() so the request can carry `Authorization`."""
        async with runtime.db.transaction() as session:  # 404 before the stream starts
            await service.users_ticket(session, user_id=user.id, ticket_id=ticket_id)
        hub = narrowed(runtime.extras[HUB], TicketEventHub)
        wakeups = runtime.extras.get(WAKEUPS)
        if isinstance(wakeups, PostgresWakeups):
            await wakeups.start()  # before the first read: no commit falls between the two
        return StreamingResponse(
            conversation_stream(
                db=runtime.db,
                hub=hub,
                ticket_id=ticket_id,
                after=after,
                poll_seconds=settings.live_poll_seconds,
                stream_seconds=settings.live_stream_seconds,
            ),
            media_type="application/x-ndjson",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.post(
        "/tickets/{ticket_id}/read",
        operation_id="markRead",
        openapi_extra=request_body(ReadMarker),
        responses=problems(404),
    )
    async def mark_read(
        ticket_id: uuid.UUID, body: ReadMarkerBody, user: UserDep, session: SessionDep
    ) -> ReadMarker:
        """The user has seen the conversation up to event `seq`: its replies are no longer
        unread. The marker only moves forward."""
        seq = await service.mark_read(session, user_id=user.id, ticket_id=ticket_id, seq=body.seq)
        return ReadMarker(seq=seq)

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
