"""Telegram notifications of operator replies, delivered through the outbox on their own channel.

Their own channel, so a user who blocked the bot never holds back the ticket's traffic with the
CRM; a permanent refusal drops the notification (recorded), a 429 or outage retries it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from integration_kit.outbox import ClaimedEvent, Delivery, enqueue
from integration_kit.retry import Delivered, Dropped, Failure, Outcome, RetryLater
from integration_kit.schema import Channel
from tma_impl.miniapp.links import ticket_url
from tma_impl.tables import Message, Outbox, Ticket
from tma_impl.telegram import MessageSender, reply_notification_text

NOTIFY_REPLY = "notify_reply"


def enqueue_reply_notification(
    session: AsyncSession, *, ticket: Ticket, message: Message, now: datetime
) -> None:
    text = reply_notification_text(
        subject=ticket.subject, operator_name=message.operator_name, body=message.body
    )
    enqueue(
        session,
        Outbox,
        ticket_id=ticket.id,
        kind=NOTIFY_REPLY,
        now=now,
        channel=Channel.telegram,
        payload={"chat_id": ticket.telegram_user_id, "text": text, "message_id": str(message.id)},
    )


class ReplyNotificationSender:
    """Sends `notify_reply` events with the Bot API's sendMessage and an 'Open ticket' button."""

    def __init__(self, *, bot: MessageSender, webapp_url: str) -> None:
        self.bot = bot
        self.webapp_url = webapp_url

    def open_url(self, event: ClaimedEvent) -> str | None:
        if not self.webapp_url:
            return None
        return ticket_url(self.webapp_url, event.ticket_id)

    async def send(self, event: ClaimedEvent) -> Outcome:
        result = await self.bot.send_message(
            chat_id=int(event.payload["chat_id"]),
            text=str(event.payload["text"]),
            open_url=self.open_url(event),
            button_text="Open ticket",
        )
        if result.outcome == "sent":
            return Delivered(None)
        detail = f"Telegram {result.status_code or 'error'}: {result.description or ''}".strip()
        if result.outcome == "retry":
            if result.retry_after_seconds is not None:
                return RetryLater(Failure.throttled, detail, float(result.retry_after_seconds))
            return RetryLater(Failure.unavailable, detail)
        return Dropped(detail)

    async def record_deliveries(
        self, session: AsyncSession, deliveries: Sequence[Delivery]
    ) -> None:
        return None  # Telegram's message ids are of no use to us
