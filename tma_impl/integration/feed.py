"""The TMA's change feed: its tables, and customers as Telegram last described them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from generated.models import Customer
from integration_kit.feed import FeedTables
from tma_impl.support.service import customer_of
from tma_impl.tables import ChangeLog, FeedState, Message, TelegramUser, Ticket


async def _customers(session: AsyncSession, tickets: Sequence[Any]) -> dict[uuid.UUID, Customer]:
    users = {
        user.id: user
        for user in (
            await session.scalars(
                select(TelegramUser).where(
                    TelegramUser.id.in_({ticket.telegram_user_id for ticket in tickets})
                )
            )
        ).all()
    }
    return {
        ticket.id: customer_of(users[ticket.telegram_user_id])
        for ticket in tickets
        if ticket.telegram_user_id in users
    }


FEED = FeedTables(
    ticket=Ticket,
    message=Message,
    log=ChangeLog,
    state=FeedState,
    customers=_customers,
    operator_name=lambda message: message.operator_name,
)
