"""`/api/integration/*` as the spec assigns it to the CRM: createTicket, postMessage, postStatus."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from crm_impl.integration.service import receive_ticket
from crm_impl.tables import Message, Ticket
from generated.models import (
    CreateTicketRequest,
    MessageAccepted,
    MessageRequest,
    SenderType,
    StatusAccepted,
    StatusRequest,
    TicketAccepted,
)
from integration_kit.auth import require_bearer
from integration_kit.inbound import contract_body, receive_message, receive_status
from integration_kit.runtime import Runtime, SessionDep


def integration_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(
        prefix="/api/integration",
        dependencies=[Depends(require_bearer(lambda: runtime.settings.inbound_tokens))],
    )

    @router.post("/tickets", status_code=201, operation_id="createTicket")
    async def create_ticket(
        request: Annotated[CreateTicketRequest, Depends(contract_body(CreateTicketRequest))],
        response: Response,
        session: SessionDep,
    ) -> TicketAccepted:
        answer, created = await receive_ticket(session, request=request, clock=runtime.clock)
        response.status_code = 201 if created else 200
        return answer

    @router.post("/messages", status_code=201, operation_id="postMessage")
    async def post_message(
        request: Annotated[MessageRequest, Depends(contract_body(MessageRequest))],
        response: Response,
        session: SessionDep,
    ) -> MessageAccepted:
        answer, _message, _ticket, created = await receive_message(
            session,
            request=request,
            caller=SenderType.tma,
            ticket_model=Ticket,
            message_model=Message,
        )
        response.status_code = 201 if created else 200
        return answer

    @router.post("/status", operation_id="postStatus")
    async def post_status(
        request: Annotated[StatusRequest, Depends(contract_body(StatusRequest))],
        session: SessionDep,
    ) -> StatusAccepted:
        return await receive_status(
            session, request=request, ticket_model=Ticket, message_model=Message
        )

    return router
