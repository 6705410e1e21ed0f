"""The TMA's one event the CRM side does not have: a ticket created in the Mini App."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from generated.client import AuthenticatedClient
from generated.client.api.crm import create_ticket
from generated.client.models import CreateTicketRequest, TicketAccepted
from integration_kit.clock import Clock
from integration_kit.outbound import (
    accepted_as,
    outcome_of,
    record_peer_message_ids,
    record_peer_ticket_ids,
)
from integration_kit.outbox import ClaimedEvent, Delivery
from integration_kit.retry import Outcome
from tma_impl.tables import Message, Ticket


class TicketCreatedSender:
    """Sends `ticket_created` with `createTicket`; stores the CRM's ticket and message ids."""

    def __init__(self, *, client: AuthenticatedClient, clock: Clock) -> None:
        self.client = client
        self.clock = clock

    async def send(self, event: ClaimedEvent) -> Outcome:
        body = CreateTicketRequest.from_dict(event.payload["request"])
        response = await create_ticket.asyncio_detailed(client=self.client, body=body)
        return outcome_of(response, expected=TicketAccepted, now=self.clock.now())

    async def record_deliveries(
        self, session: AsyncSession, deliveries: Sequence[Delivery]
    ) -> None:
        accepted = [(event, accepted_as(result, TicketAccepted)) for event, result in deliveries]
        await record_peer_ticket_ids(
            session, Ticket, [(event, result.ticket_id) for event, result in accepted]
        )
        await record_peer_message_ids(
            session,
            Message,
            [(event.payload["message_id"], result.message_id) for event, result in accepted],
        )
