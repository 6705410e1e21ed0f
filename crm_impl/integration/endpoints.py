"""`/api/integration/*` as the spec assigns it to the CRM: createTicket, postMessage, postStatus."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from crm_impl.integration.feed import FEED
from crm_impl.integration.service import receive_ticket
from crm_impl.tables import Message, Ticket
from generated.models import CreateTicketRequest, SenderType, TicketAccepted
from integration_kit import endpoints
from integration_kit.contract_body import contract_body
from integration_kit.runtime import Runtime, SessionDep


def integration_router(runtime: Runtime) -> APIRouter:
    router = endpoints.integration_router(
        runtime, caller=SenderType.tma, ticket_model=Ticket, message_model=Message, feed=FEED
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

    return router
