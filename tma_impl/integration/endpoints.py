"""`/api/integration/*` as the spec assigns it to the TMA: postMessage and postStatus."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from generated.models import SenderType
from integration_kit import endpoints
from integration_kit.narrowing import narrowed
from integration_kit.runtime import Runtime
from integration_kit.schema import MessageColumns, TicketColumns
from tma_impl.integration.feed import FEED
from tma_impl.notifications import enqueue_reply_notification
from tma_impl.tables import Message, Ticket


def integration_router(runtime: Runtime) -> APIRouter:
    def notify_user(session: AsyncSession, ticket: TicketColumns, message: MessageColumns) -> None:
        # In the same transaction: the user is told exactly once, even across replays.
        enqueue_reply_notification(
            session,
            ticket=narrowed(ticket, Ticket),
            message=narrowed(message, Message),
            now=runtime.clock.now(),
        )

    return endpoints.integration_router(
        runtime,
        caller=SenderType.crm,
        ticket_model=Ticket,
        message_model=Message,
        feed=FEED,
        message_columns=lambda request: {"operator_name": request.operator_name},
        on_message_stored=notify_user,
    )
