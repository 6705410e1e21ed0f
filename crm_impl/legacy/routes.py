"""The old CRM's route, served during the cut-over window: `POST /api/v1/support/ticket`.

The audited body (`ticket_id`, `theme`, `message`, `attachments`, `project`, `external_url`) is
mapped into the new model by the same storage rules as createTicket: the old TMA's `ticket_id`
is the ticket's link (`external_id`), so a retry of the old peer finds the ticket it created
and stores nothing (it answers 200). The old body names no customer: the ticket has the
placeholder customer until `link` copies the Telegram user from the TMA.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update

from crm_impl.integration.service import receive_ticket
from crm_impl.legacy import UNKNOWN_CUSTOMER_ID, UNKNOWN_CUSTOMER_NAME
from crm_impl.tables import LegacyTicketFields, Message, Ticket
from generated.models import Attachment, CreateTicketRequest, Customer
from integration_kit.legacy import legacy_uuid
from integration_kit.legacy_routes import LegacyRouteCalls, legacy_guard
from integration_kit.problems import IDEMPOTENCY_CONFLICT, ProblemError
from integration_kit.runtime import Runtime, SessionDep

OLD_TICKET = "/api/v1/support/ticket"
ROUTES = [OLD_TICKET]


class OldTicket(BaseModel):
    """The audit's body of the old TMA's ticket creation."""

    model_config = ConfigDict(extra="ignore")

    ticket_id: uuid.UUID
    theme: str = Field(min_length=1, max_length=255)
    message: str = Field(min_length=1, max_length=4096)
    attachments: list[Attachment] = Field(default_factory=list, max_length=10)
    project: str | None = Field(None, max_length=255)
    external_url: str | None = None


def legacy_router(runtime: Runtime, calls: LegacyRouteCalls) -> APIRouter:
    settings = runtime.settings.legacy
    router = APIRouter(dependencies=[Depends(legacy_guard(settings, calls, OLD_TICKET))])

    @router.post(OLD_TICKET, status_code=201)
    async def old_ticket(body: OldTicket, response: Response, session: SessionDep) -> Any:
        existing = await session.scalar(select(Ticket).where(Ticket.external_id == body.ticket_id))
        if existing is not None:
            # The old peer's retry: same ticket, same theme.
            if existing.subject != body.theme:
                raise ProblemError(
                    409,
                    IDEMPOTENCY_CONFLICT,
                    "Ticket already received",
                    f"Ticket {body.ticket_id} was already received with another theme.",
                )
            response.status_code = 200
            return {"ticket_id": body.ticket_id, "status": existing.status}
        request = CreateTicketRequest.model_construct(
            external_ticket_id=body.ticket_id,
            subject=body.theme,
            message=body.message,
            external_message_id=legacy_uuid(f"crm:old-route-first:{body.ticket_id}"),
            attachments=body.attachments or None,
            customer=Customer.model_construct(
                telegram_user_id=UNKNOWN_CUSTOMER_ID,
                first_name=UNKNOWN_CUSTOMER_NAME,
                last_name=None,
                username=None,
                language_code=None,
            ),
            created_at=runtime.clock.now(),
        )
        answer, _created = await receive_ticket(session, request=request, clock=runtime.clock)
        # Old bodies carry no message id: the first message stays without one, like the rows
        # converted from the old CRM, so `backfill` matches it to the TMA's copy.
        await session.execute(
            update(Message).where(Message.id == answer.message_id).values(external_message_id=None)
        )
        if body.project is not None or body.external_url is not None:
            session.add(
                LegacyTicketFields(
                    ticket_id=answer.ticket_id,
                    project=body.project,
                    external_url=body.external_url,
                )
            )
        return {"ticket_id": body.ticket_id, "status": answer.status.value}

    return router
