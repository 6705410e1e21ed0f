"""The operator API under `/api/crm` (the CRM's own API; not part of the contract)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from crm_impl.operators import service
from crm_impl.operators.auth import OperatorDep
from crm_impl.operators.schemas import (
    Conversation,
    MessageOut,
    OperatorOut,
    ReplyIn,
    StatusIn,
    TicketSummary,
)
from generated.models import TicketStatus
from integration_kit.runtime import Runtime, SessionDep

# Paging by offset past a million tickets is no use to a person, and a larger number would
# overflow the database's 64-bit OFFSET (a 500 on SQLite and PostgreSQL before it was bounded).
MAX_OFFSET = 1_000_000


def operator_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/api/crm", tags=["operators"])

    @router.get("/me")
    async def me(operator: OperatorDep) -> OperatorOut:
        return OperatorOut.model_validate(operator)

    @router.get("/tickets")
    async def list_tickets(
        operator: OperatorDep,
        session: SessionDep,
        status: TicketStatus | None = None,
        mine: bool = False,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> list[TicketSummary]:
        tickets = await service.list_tickets(
            session,
            status=status,
            assignee_id=operator.id if mine else None,
            limit=limit,
            offset=offset,
        )
        return [TicketSummary.model_validate(t) for t in tickets]

    @router.get("/tickets/{ticket_id}")
    async def read_conversation(
        ticket_id: uuid.UUID, _operator: OperatorDep, session: SessionDep
    ) -> Conversation:
        ticket, messages = await service.conversation(session, ticket_id=ticket_id)
        return Conversation(
            ticket=TicketSummary.model_validate(ticket),
            messages=[MessageOut.model_validate(m) for m in messages],
        )

    @router.post("/tickets/{ticket_id}/messages", status_code=201)
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

    @router.post("/tickets/{ticket_id}/status")
    async def change_status(
        ticket_id: uuid.UUID, body: StatusIn, _operator: OperatorDep, session: SessionDep
    ) -> TicketSummary:
        ticket = await service.change_status(
            session, ticket_id=ticket_id, status=body.status, clock=runtime.clock
        )
        return TicketSummary.model_validate(ticket)

    @router.post("/tickets/{ticket_id}/assign")
    async def assign(
        ticket_id: uuid.UUID, operator: OperatorDep, session: SessionDep
    ) -> TicketSummary:
        ticket = await service.assign(session, ticket_id=ticket_id, operator=operator)
        return TicketSummary.model_validate(ticket)

    return router
