"""`/api/integration/*` as the spec assigns it to the TMA: postMessage and postStatus."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from generated.models import (
    MessageAccepted,
    MessageRequest,
    SenderType,
    StatusAccepted,
    StatusRequest,
)
from integration_kit.auth import require_bearer
from integration_kit.inbound import contract_body, receive_message, receive_status
from integration_kit.runtime import Runtime, SessionDep
from tma_impl.notifications import enqueue_reply_notification
from tma_impl.tables import Message, Ticket


def integration_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(
        prefix="/api/integration",
        dependencies=[Depends(require_bearer(lambda: runtime.settings.inbound_tokens))],
    )

    @router.post("/messages", status_code=201, operation_id="postMessage")
    async def post_message(
        request: Annotated[MessageRequest, Depends(contract_body(MessageRequest))],
        response: Response,
        session: SessionDep,
    ) -> MessageAccepted:
        answer, message, ticket, created = await receive_message(
            session,
            request=request,
            caller=SenderType.crm,
            ticket_model=Ticket,
            message_model=Message,
            extra={"operator_name": request.operator_name},
        )
        if created:
            # In the same transaction: the user is told exactly once, even across replays.
            enqueue_reply_notification(
                session, ticket=ticket, message=message, now=runtime.clock.now()
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
