"""The operator API under `/api/crm` (the CRM's own API; not part of the contract), used by the
operator console (crm_impl/console/) and by scripts with an operator's token."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic.json_schema import SkipJsonSchema

from crm_impl.operators import delivery, queue, service, streams
from crm_impl.operators.auth import AdminDep, OperatorDep, current_operator
from crm_impl.operators.schemas import (
    ConversationView,
    LegacyFieldsOut,
    Me,
    MessageOut,
    OutboxEventOut,
    OutboxStateFilter,
    QueueFilter,
    QueuePage,
    ReadIn,
    ReplyIn,
    SkipIn,
    StatusIn,
    TicketSummary,
)
from generated.models import TicketStatus
from integration_kit.api_body import request_body, strict_body
from integration_kit.api_docs import problems
from integration_kit.runtime import Runtime, SessionDep

# Paging by offset past a million tickets is no use to a person, and a larger number would
# overflow the database's 64-bit OFFSET (a 500 on SQLite and PostgreSQL before it was bounded).
MAX_OFFSET = 1_000_000

# Bodies are read strictly, after authentication (integration_kit/api_body.py).
ReplyBody = Annotated[ReplyIn, Depends(strict_body(ReplyIn))]
StatusBody = Annotated[StatusIn, Depends(strict_body(StatusIn))]
ReadBody = Annotated[ReadIn, Depends(strict_body(ReadIn))]
SkipBody = Annotated[SkipIn, Depends(strict_body(SkipIn))]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# A stream answers text/event-stream: the API document says so, and the stateless fuzzing leaves
# such operations out by that content type (integration_kit/api_docs.py).
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}
}


def _stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


def operator_router(runtime: Runtime) -> APIRouter:
    # The operator first: 401 before anything about the request, its body included.
    router = APIRouter(
        prefix="/api/crm",
        tags=["operators"],
        dependencies=[Depends(current_operator)],
    )

    @router.get("/me", operation_id="me")
    async def me(operator: OperatorDep) -> Me:
        """The operator the token or console session belongs to."""
        return Me.model_validate(operator)

    @router.get("/queue", operation_id="readQueue")
    async def read_queue(
        operator: OperatorDep,
        session: SessionDep,
        status: TicketStatus | SkipJsonSchema[None] = None,
        filter: QueueFilter = QueueFilter.all,
        q: Annotated[
            str | SkipJsonSchema[None],
            Query(min_length=1, max_length=100, description="subject, name, @username"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 25,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> QueuePage:
        """The queue as the console shows it: newest activity first, with unread counts."""
        return await queue.queue_page(
            session,
            operator_id=operator.id,
            status=status,
            which=filter,
            # No stored text holds NUL, and PostgreSQL refuses it in a query: searched without.
            q=q.replace("\x00", "") if q else q,
            limit=limit,
            offset=offset,
        )

    @router.get(
        "/queue/events",
        response_class=StreamingResponse,
        operation_id="queueEvents",
        responses=EVENT_STREAM,
    )
    async def queue_events(request: Request, operator: OperatorDep) -> StreamingResponse:
        """Server-sent `queue` events whenever the queue changed: fetch /queue again."""
        return _stream(streams.queue_events(request, operator_id=operator.id))

    @router.get(
        "/tickets/{ticket_id}/events",
        response_class=StreamingResponse,
        operation_id="ticketEvents",
        responses={**EVENT_STREAM, **problems(404)},
    )
    async def ticket_events(
        request: Request,
        ticket_id: uuid.UUID,
        operator: OperatorDep,
        session: SessionDep,
        after: Annotated[int | SkipJsonSchema[None], Query(ge=0)] = None,
    ) -> StreamingResponse:
        """Server-sent `message` events after `after` (or Last-Event-ID) and `state` events."""
        await service.get_ticket(session, ticket_id)
        events = streams.conversation_events(
            request,
            operator_id=operator.id,
            ticket_id=ticket_id,
            after=streams.resume_point(request, after),
        )
        return _stream(events)

    @router.post(
        "/tickets/{ticket_id}/read",
        status_code=204,
        operation_id="markRead",
        openapi_extra=request_body(ReadIn),
        responses=problems(403, 404),
    )
    async def mark_read(
        ticket_id: uuid.UUID, body: ReadBody, operator: OperatorDep, session: SessionDep
    ) -> None:
        """The operator has seen the ticket's messages up to `seq`."""
        await queue.mark_read(session, operator_id=operator.id, ticket_id=ticket_id, seq=body.seq)

    @router.get("/outbox", operation_id="undeliveredEvents")
    async def undelivered(
        _operator: OperatorDep,
        session: SessionDep,
        state: OutboxStateFilter | SkipJsonSchema[None] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[OutboxEventOut]:
        """Events not delivered yet (pending) or given up on (dead), with their last errors."""
        return await delivery.undelivered_events(
            session, runtime.outbox, state=state.value if state else None, limit=limit
        )

    @router.post(
        "/outbox/{event_id}/replay",
        status_code=204,
        operation_id="replayEvent",
        responses=problems(403, 404, 409),
    )
    async def replay(event_id: int, admin: AdminDep, session: SessionDep) -> None:
        """Admins: put a dead event back in line (as `outbox replay`)."""
        await delivery.replay(
            session, runtime.outbox, event_id=event_id, operator=admin, now=runtime.clock.now()
        )

    @router.post(
        "/outbox/{event_id}/skip",
        status_code=204,
        operation_id="skipEvent",
        openapi_extra=request_body(SkipIn),
        responses=problems(403, 404, 409),
    )
    async def skip(event_id: int, body: SkipBody, admin: AdminDep, session: SessionDep) -> None:
        """Admins: give up on a dead event, with the reason recorded (as `outbox skip`)."""
        await delivery.skip(
            session,
            runtime.outbox,
            event_id=event_id,
            operator=admin,
            reason=body.reason,
            now=runtime.clock.now(),
        )

    @router.get("/tickets", operation_id="listTickets")
    async def list_tickets(
        operator: OperatorDep,
        session: SessionDep,
        # Left out, not null, for "any status": the document offers no null to send.
        status: TicketStatus | SkipJsonSchema[None] = None,
        mine: bool = False,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> list[TicketSummary]:
        """Tickets, most recently updated first; by status, or only the operator's own."""
        tickets = await service.list_tickets(
            session,
            status=status,
            assignee_id=operator.id if mine else None,
            limit=limit,
            offset=offset,
        )
        return [TicketSummary.model_validate(t) for t in tickets]

    @router.get("/tickets/{ticket_id}", operation_id="readConversation", responses=problems(404))
    async def read_conversation(
        ticket_id: uuid.UUID, operator: OperatorDep, session: SessionDep
    ) -> ConversationView:
        """A ticket with its customer's profile and messages, each reply's delivery, and what
        the old systems stored on it (cut-over)."""
        view = await queue.conversation_view(session, operator_id=operator.id, ticket_id=ticket_id)
        kept = await service.legacy_fields(session, ticket_id=ticket_id)
        if kept is not None:
            view.legacy = LegacyFieldsOut.model_validate(kept)
        return view

    @router.post(
        "/tickets/{ticket_id}/messages",
        status_code=201,
        operation_id="reply",
        openapi_extra=request_body(ReplyIn),
        responses=problems(
            403,
            404,
            409,
            also={200: {"model": MessageOut, "description": "A retry: the reply as stored."}},
        ),
    )
    async def reply(
        ticket_id: uuid.UUID,
        body: ReplyBody,
        response: Response,
        operator: OperatorDep,
        session: SessionDep,
    ) -> MessageOut:
        """Reply to the customer; the first reply takes the ticket and sets it in progress."""
        message, created = await service.reply(
            session,
            ticket_id=ticket_id,
            operator=operator,
            body=body.message,
            attachments=body.attachments,
            reply_id=body.id,
            clock=runtime.clock,
        )
        response.status_code = 201 if created else 200
        return MessageOut.model_validate(message)

    @router.post(
        "/tickets/{ticket_id}/status",
        operation_id="changeStatus",
        openapi_extra=request_body(StatusIn),
        responses=problems(403, 404),
    )
    async def change_status(
        ticket_id: uuid.UUID, body: StatusBody, _operator: OperatorDep, session: SessionDep
    ) -> TicketSummary:
        """Set the ticket's status; the Mini App is told."""
        ticket = await service.change_status(
            session, ticket_id=ticket_id, status=body.status, clock=runtime.clock
        )
        return TicketSummary.model_validate(ticket)

    @router.post("/tickets/{ticket_id}/assign", operation_id="assign", responses=problems(403, 404))
    async def assign(
        ticket_id: uuid.UUID, operator: OperatorDep, session: SessionDep
    ) -> TicketSummary:
        """Take the ticket."""
        ticket = await service.assign(session, ticket_id=ticket_id, operator=operator)
        return TicketSummary.model_validate(ticket)

    return router
