"""The operator API under `/api/crm` (the CRM's own API; not part of the contract)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from crm_impl.operators import delivery, queue, service, streams
from crm_impl.operators.auth import AdminDep, OperatorDep
from crm_impl.operators.schemas import (
    ConversationView,
    Me,
    MessageOut,
    OutboxEventOut,
    QueueFilter,
    QueuePage,
    ReadIn,
    ReplyIn,
    SkipIn,
    StatusIn,
    TicketSummary,
    problem_responses,
)
from generated.models import TicketStatus
from integration_kit.runtime import Runtime, SessionDep

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}
}


def _stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


def operator_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/api/crm", tags=["operators"], responses=problem_responses(401))

    @router.get("/me")
    async def me(operator: OperatorDep) -> Me:
        return Me.model_validate(operator)

    @router.get("/queue", responses=problem_responses(422))
    async def read_queue(
        operator: OperatorDep,
        session: SessionDep,
        status: TicketStatus | None = None,
        filter: QueueFilter = QueueFilter.all,
        q: Annotated[
            str | None, Query(max_length=100, description="subject, name, @username")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 25,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> QueuePage:
        """The queue as the console shows it: newest activity first, with unread counts."""
        return await queue.queue_page(
            session,
            operator_id=operator.id,
            status=status,
            which=filter,
            q=q,
            limit=limit,
            offset=offset,
        )

    @router.get("/queue/events", response_class=StreamingResponse, responses=EVENT_STREAM)
    async def queue_events(request: Request, operator: OperatorDep) -> StreamingResponse:
        """Server-sent `queue` events whenever the queue changed: fetch /queue again."""
        return _stream(streams.queue_events(request, operator_id=operator.id))

    @router.get(
        "/tickets/{ticket_id}/events",
        response_class=StreamingResponse,
        responses={**EVENT_STREAM, **problem_responses(404)},
    )
    async def ticket_events(
        request: Request,
        ticket_id: uuid.UUID,
        operator: OperatorDep,
        session: SessionDep,
        after: Annotated[int | None, Query(ge=0)] = None,
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
        "/tickets/{ticket_id}/read", status_code=204, responses=problem_responses(403, 404, 422)
    )
    async def mark_read(
        ticket_id: uuid.UUID, body: ReadIn, operator: OperatorDep, session: SessionDep
    ) -> None:
        """The operator has seen the ticket's messages up to `seq`."""
        await queue.mark_read(session, operator_id=operator.id, ticket_id=ticket_id, seq=body.seq)

    @router.get("/outbox", responses=problem_responses(422))
    async def undelivered(
        _operator: OperatorDep,
        session: SessionDep,
        state: Annotated[str | None, Query(pattern="^(pending|dead)$")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[OutboxEventOut]:
        """Events not delivered yet (pending) or given up on (dead), with their last errors."""
        return await delivery.undelivered_events(session, runtime.outbox, state=state, limit=limit)

    @router.post(
        "/outbox/{event_id}/replay", status_code=204, responses=problem_responses(403, 404, 409)
    )
    async def replay(event_id: int, admin: AdminDep, session: SessionDep) -> None:
        """Admins: put a dead event back in line (as `outbox replay`)."""
        await delivery.replay(
            session, runtime.outbox, event_id=event_id, operator=admin, now=runtime.clock.now()
        )

    @router.post(
        "/outbox/{event_id}/skip", status_code=204, responses=problem_responses(403, 404, 409, 422)
    )
    async def skip(event_id: int, body: SkipIn, admin: AdminDep, session: SessionDep) -> None:
        """Admins: give up on a dead event, with the reason recorded (as `outbox skip`)."""
        await delivery.skip(
            session,
            runtime.outbox,
            event_id=event_id,
            operator=admin,
            reason=body.reason,
            now=runtime.clock.now(),
        )

    @router.get("/tickets")
    async def list_tickets(
        operator: OperatorDep,
        session: SessionDep,
        status: TicketStatus | None = None,
        mine: bool = False,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[TicketSummary]:
        tickets = await service.list_tickets(
            session,
            status=status,
            assignee_id=operator.id if mine else None,
            limit=limit,
            offset=offset,
        )
        return [TicketSummary.model_validate(t) for t in tickets]

    @router.get("/tickets/{ticket_id}", responses=problem_responses(404))
    async def read_conversation(
        ticket_id: uuid.UUID, operator: OperatorDep, session: SessionDep
    ) -> ConversationView:
        """A ticket with its customer's profile and messages, and each reply's delivery."""
        return await queue.conversation_view(session, operator_id=operator.id, ticket_id=ticket_id)

    @router.post(
        "/tickets/{ticket_id}/messages",
        status_code=201,
        responses=problem_responses(403, 404, 409, 422),
    )
    async def reply(
        ticket_id: uuid.UUID,
        body: ReplyIn,
        response: Response,
        operator: OperatorDep,
        session: SessionDep,
    ) -> MessageOut:
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

    @router.post("/tickets/{ticket_id}/status", responses=problem_responses(403, 404, 422))
    async def change_status(
        ticket_id: uuid.UUID, body: StatusIn, _operator: OperatorDep, session: SessionDep
    ) -> TicketSummary:
        ticket = await service.change_status(
            session, ticket_id=ticket_id, status=body.status, clock=runtime.clock
        )
        return TicketSummary.model_validate(ticket)

    @router.post("/tickets/{ticket_id}/assign", responses=problem_responses(403, 404))
    async def assign(
        ticket_id: uuid.UUID, operator: OperatorDep, session: SessionDep
    ) -> TicketSummary:
        ticket = await service.assign(session, ticket_id=ticket_id, operator=operator)
        return TicketSummary.model_validate(ticket)

    return router
