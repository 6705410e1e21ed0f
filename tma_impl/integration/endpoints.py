"""`/api/integration/*` as the spec assigns it to the TMA: postMessage and postStatus."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from generated.models import SenderType, StatusAccepted
from integration_kit import endpoints
from integration_kit.narrowing import narrowed
from integration_kit.runtime import Runtime
from integration_kit.schema import MessageColumns, TicketColumns
from tma_impl.integration.feed import FEED
from tma_impl.notifications import enqueue_reply_notification
from tma_impl.support import events
from tma_impl.tables import Message, Ticket


def integration_router(runtime: Runtime) -> APIRouter:
    async def on_reply(
        session: AsyncSession, ticket: TicketColumns, message: MessageColumns
    ) -> None:
        # In the same transaction: the user is told exactly once, even across replays, and the
        # Mini App's stream gets the reply under the ticket's row lock (taken by the receiver).
        ticket, message = narrowed(ticket, Ticket), narrowed(message, Message)
        enqueue_reply_notification(session, ticket=ticket, message=message, now=runtime.clock.now())
        await events.record_message(session, ticket, message)

    async def on_status(session: AsyncSession, answer: StatusAccepted) -> None:
        await events.record_event(
            session,
            ticket_id=answer.ticket_id,
            kind=events.STATUS,
            status=answer.status.value,
            at=answer.status_changed_at,
        )

    return endpoints.integration_router(
        runtime,
        caller=SenderType.crm,
        ticket_model=Ticket,
        message_model=Message,
        feed=FEED,
        message_columns=lambda request: {"operator_name": request.operator_name},
        on_message_stored=on_reply,
        on_status_applied=on_status,
    )
