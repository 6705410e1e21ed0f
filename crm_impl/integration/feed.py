"""The CRM's change feed: its tables, and the customer profile each ticket keeps."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_impl.tables import ChangeLog, FeedState, Message, Ticket
from generated.models import Customer
from integration_kit.feed import FeedTables


def customer_of(ticket: Ticket) -> Customer:
    return Customer(
        telegram_user_id=ticket.customer_telegram_id,
        first_name=ticket.customer_first_name or "-",
        last_name=ticket.customer_last_name,
        username=ticket.customer_username,
        language_code=ticket.customer_language,
    )


async def _customers(_session: AsyncSession, tickets: Sequence[Any]) -> dict[uuid.UUID, Customer]:
    return {ticket.id: customer_of(ticket) for ticket in tickets}


FEED = FeedTables(
    ticket=Ticket,
    message=Message,
    log=ChangeLog,
    state=FeedState,
    customers=_customers,
    operator_name=lambda message: message.author_name,
)
