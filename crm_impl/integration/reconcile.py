"""The CRM's side of `reconcile`: a missing TMA ticket is created by createTicket's own rule."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from crm_impl.integration.feed import FEED
from crm_impl.integration.service import receive_ticket
from crm_impl.tables import Ticket
from generated.client.api.tma import list_changes
from generated.models import ChangeItem, MessageRequest, SenderType
from integration_kit.clock import Clock
from integration_kit.outbox import OutboxRepository
from integration_kit.reconcile import ReconcileSide
from integration_kit.schema import TicketColumns


def reconcile_side(*, outbox: OutboxRepository, clock: Clock) -> ReconcileSide:
    async def adopt_ticket(
        session: AsyncSession, item: ChangeItem, _now: datetime
    ) -> TicketColumns | None:
        if item.ticket is None:
            raise TypeError("a ticket change without its ticket")
        # The TMA knows our id when we had stored the ticket before: a restore lost it here.
        restore = (item.peer_ticket_id, item.peer_message_id) if item.peer_ticket_id else None
        answer, _created = await receive_ticket(
            session, request=item.ticket, clock=clock, restore=restore
        )
        return await session.get(Ticket, answer.ticket_id)

    def message_columns(request: MessageRequest) -> dict[str, object]:
        return {"author_name": request.operator_name} if request.sender is SenderType.crm else {}

    return ReconcileSide(
        side=SenderType.crm,
        feed=FEED,
        outbox=outbox,
        list_changes=list_changes.asyncio_detailed,
        adopt_ticket=adopt_ticket,
        message_columns=message_columns,
    )
