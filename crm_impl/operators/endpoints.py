"""The operator API under `/api/crm` (the CRM's own API; not part of the contract)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic.json_schema import SkipJsonSchema

from crm_impl.operators import service
from crm_impl.operators.auth import OperatorDep, current_operator
from crm_impl.operators.schemas import (
    Conversation,
    LegacyFieldsOut,
    MessageOut,
    OperatorOut,
    ReplyIn,
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


def operator_router(runtime: Runtime) -> APIRouter:
    # The operator first: 401 before anything about the request, its body included.
    router = APIRouter(
        prefix="/api/crm",
        tags=["operators"],
        dependencies=[Depends(current_operator)],
    )

    @router.get("/me", operation_id="me")
    async def me(operator: OperatorDep) -> OperatorOut:
        """The operator the token belongs to."""
        return OperatorOut.model_validate(operator)

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
        ticket_id: uuid.UUID, _operator: OperatorDep, session: SessionDep
    ) -> Conversation:
        """A ticket with its messages in order."""
        ticket, messages = await service.conversation(session, ticket_id=ticket_id)
        kept = await service.legacy_fields(session, ticket_id=ticket.id)
        return Conversation(
            ticket=TicketSummary.model_validate(ticket),
            messages=[MessageOut.model_validate(m) for m in messages],
            legacy=LegacyFieldsOut.model_validate(kept) if kept is not None else None,
        )

    @router.post(
        "/tickets/{ticket_id}/messages",
        status_code=201,
        operation_id="reply",
        openapi_extra=request_body(ReplyIn),
        responses=problems(
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
        responses=problems(404),
    )
    async def change_status(
        ticket_id: uuid.UUID, body: StatusBody, _operator: OperatorDep, session: SessionDep
    ) -> TicketSummary:
        """Set the ticket's status; the Mini App is told."""
        ticket = await service.change_status(
            session, ticket_id=ticket_id, status=body.status, clock=runtime.clock
        )
        return TicketSummary.model_validate(ticket)

    @router.post("/tickets/{ticket_id}/assign", operation_id="assign", responses=problems(404))
    async def assign(
        ticket_id: uuid.UUID, operator: OperatorDep, session: SessionDep
    ) -> TicketSummary:
        """Take the ticket."""
        ticket = await service.assign(session, ticket_id=ticket_id, operator=operator)
        return TicketSummary.model_validate(ticket)

    return router
