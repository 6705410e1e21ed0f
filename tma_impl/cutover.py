"""The TMA's side of the cut-over commands: what `link` and `backfill` need to know of it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from integration_kit.link import LinkSide
from tma_impl.legacy import peer_ticket_id
from tma_impl.tables import Message, TelegramUser, Ticket


async def _customer(session: AsyncSession, ticket: Any) -> dict[str, Any]:
    user = await session.get(TelegramUser, ticket.telegram_user_id)
    if user is None:
        return {}
    return {
        "telegram_user_id": user.id,
        "first_name": user.first_name or None,
        "last_name": user.last_name,
        "username": user.username,
        "language_code": user.language_code,
    }


LINK = LinkSide(
    name="tma",
    ticket_model=Ticket,
    message_model=Message,
    legacy_peer_id=peer_ticket_id,
    export_customer=_customer,
)
