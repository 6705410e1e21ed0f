"""Telegram notifications of operator replies: one per reply, with a button into the Mini App,
retried after a 429's retry_after, never retried for a user who blocked the bot, and never in the
way of the messages themselves."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import httpx
import pytest

from crm_impl import tables as crm
from integration_kit.schema import Channel, OutboxState
from tests.e2e.helpers import AS_CRM, count, linked_ticket, rows
from tests.support.databases import fresh_database
from tests.support.faults import FaultyTransport
from tests.support.pair import CRM_TO_TMA_TOKEN, WEBAPP_URL, Pair
from tests.support.signed import as_its_peer
from tests.tma_impl.telegram.fake_bot_api import BLOCKED, FAKE_BOT_TOKEN, too_many_requests
from tma_impl import tables as tma
from tma_impl.app import build_runtime, create_app
from tma_impl.notifications import NOTIFY_REPLY
from tma_impl.settings import TmaSettings
from tma_impl.telegram import LogBotApi, TelegramUser, mint_init_data

USER = 4242


async def _notifications(pair: Pair) -> list[tma.Outbox]:
    return await rows(
        pair.tma_runtime, tma.Outbox, tma.Outbox.channel == Channel.telegram, order_by=tma.Outbox.id
    )


async def test_reply_is_notified_once_with_a_button_opening_the_ticket(pair: Pair) -> None:
    """One sendMessage per reply, to the ticket's user, with an inline web_app button whose URL
    opens that ticket in the Mini App."""
    linked = await linked_ticket(pair, subject="Card declined")
    await pair.operator_replies(linked.crm_id, "Please try again now.")
    await pair.sync()
    pair.clock.advance(3600)
    await pair.sync()  # nothing more is sent later

    [call] = pair.bot.calls
    assert call.token == FAKE_BOT_TOKEN
    assert call.chat_id == USER
    assert "Maria" in call.text
    assert "Card declined" in call.text
    assert call.text.endswith("Please try again now.")
    assert call.reply_markup == {
        "inline_keyboard": [
            [{"text": "Open ticket", "web_app": {"url": f"{WEBAPP_URL}?ticket={linked.tma_id}"}}]
        ]
    }
    [event] = await _notifications(pair)
    assert event.state == OutboxState.delivered


async def test_429_is_retried_after_retry_after(pair: Pair) -> None:
    """Telegram's 429 says how long to wait: not before, and then the notification goes. The
    message itself is in the Mini App all along."""
    linked = await linked_ticket(pair)
    pair.bot.script(USER, [too_many_requests(30)])
    await pair.operator_replies(linked.crm_id, "Your refund is on its way.")
    await pair.sync()
    assert [c.answered for c in pair.bot.calls] == ["too_many_requests"]
    shown = (await pair.conversation_in_tma(linked.tma_id))["messages"]
    assert shown[-1]["body"] == "Your refund is on its way."

    pair.clock.advance(29)
    await pair.sync()
    assert len(pair.bot.calls) == 1  # retry_after not over yet

    pair.clock.advance(2)
    await pair.sync()
    assert [c.answered for c in pair.bot.calls] == ["too_many_requests", "ok"]
    assert pair.bot.calls[1].text == pair.bot.calls[0].text
    [event] = await _notifications(pair)
    assert (event.state, event.attempts) == (OutboxState.delivered, 2)


async def test_blocked_user_is_not_retried_and_blocks_nothing(pair: Pair) -> None:
    """A 403 (user blocked the bot) drops that notification for good, on the record; the next
    reply's notification and the ticket's traffic with the CRM go on."""
    linked = await linked_ticket(pair)
    pair.bot.script(USER, [BLOCKED])
    await pair.operator_replies(linked.crm_id, "First reply")
    await pair.sync()
    pair.clock.advance(3600)
    await pair.sync()
    assert [c.answered for c in pair.bot.calls] == ["blocked"]  # never retried
    [dropped] = await _notifications(pair)
    assert dropped.state == OutboxState.skipped
    assert "403" in (dropped.resolution or "")

    await pair.operator_replies(linked.crm_id, "Second reply")
    await pair.sync()
    await pair.user_writes(linked.tma_id, "Got it")
    await pair.sync()

    assert [c.answered for c in pair.bot.calls] == ["blocked", "ok"]
    assert pair.bot.calls[1].text.endswith("Second reply")
    bodies = [m.body for m in await rows(pair.tma_runtime, tma.Message, order_by=tma.Message.seq)]
    assert bodies == ["I paid but the order is unpaid.", "First reply", "Second reply", "Got it"]
    assert await count(pair.crm_runtime, crm.Message, crm.Message.body == "Got it") == 1
    assert await count(pair.tma_runtime, tma.Outbox, tma.Outbox.state == OutboxState.pending) == 0


async def test_without_a_bot_token_replies_are_stored_and_notifications_logged(
    db_kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In development without a bot token the reply is stored and its notification goes to the
    log (without the message text), not to Telegram."""
    async with fresh_database(db_kind, "tma", tmp_path) as url:
        settings = TmaSettings(
            database_url=url,
            inbound_tokens=[CRM_TO_TMA_TOKEN],
            bot_token="",
            bot_api_base_url="http://127.0.0.1:9",  # would fail loudly if it were used
            _env_file=None,
        )
        runtime = build_runtime(settings, peer_transport=FaultyTransport(down=True))
        runtime.run_dispatcher = False
        assert isinstance(runtime.dispatcher.senders[NOTIFY_REPLY].bot, LogBotApi)  # type: ignore[attr-defined]
        user = TelegramUser(id=USER, first_name="Anna")
        init_data = mint_init_data(
            bot_token=settings.dev_bot_token, user=user, auth_date=runtime.clock.now()
        )
        try:
            async with httpx.AsyncClient(
                transport=as_its_peer(create_app(runtime), runtime), base_url="http://tma.test"
            ) as client:
                ticket_id = str(uuid.uuid4())
                opened = await client.post(
                    "/api/support/tickets",
                    json={
                        "id": ticket_id,
                        "subject": "No bot here",
                        "message": "Hello?",
                        "message_id": str(uuid.uuid4()),
                    },
                    headers={"Authorization": f"tma {init_data}"},
                )
                assert opened.status_code == 201, opened.text
                reply = {
                    "ticket_id": ticket_id,
                    "external_ticket_id": str(uuid.uuid4()),
                    "external_message_id": str(uuid.uuid4()),
                    "sender": "crm",
                    "message": "A private answer",
                    "created_at": runtime.clock.now().isoformat(),
                    "operator_name": "Maria",
                }
                stored = await client.post("/api/integration/messages", json=reply, headers=AS_CRM)
                assert stored.status_code == 201, stored.text
                with caplog.at_level(logging.INFO):
                    await runtime.dispatcher.run_once()

            [event] = await rows(runtime, tma.Outbox, tma.Outbox.kind == NOTIFY_REPLY)
            assert event.state == OutboxState.delivered
            [message] = await rows(runtime, tma.Message, tma.Message.sender_type == "crm")
            assert (message.body, message.operator_name) == ("A private answer", "Maria")
        finally:
            await runtime.close()
    logged = [r.getMessage() for r in caplog.records]
    assert any("no bot token, logged only" in line and str(USER) in line for line in logged)
    assert not any("A private answer" in line for line in logged)
