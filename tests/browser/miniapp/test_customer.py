"""The Mini App in chromium, as Telegram opens it (a test double of telegram-web-app.js carries the
signed initData, language and theme): tickets, conversation, live replies, offline writes,
escaping, keyboard use, languages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser.miniapp.conftest import ANNA, BOT_TOKEN, Stack
from tests.browser.miniapp.miniapp import open_miniapp
from tests.e2e.helpers import rows
from tma_impl import tables as tma

if TYPE_CHECKING:
    from playwright.async_api import Browser


async def test_a_customer_opens_a_ticket_and_sees_the_conversation(
    browser: Browser, stack: Stack
) -> None:
    app = await open_miniapp(browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN)
    await app.wait_for_list()
    calls = await app.telegram_calls()
    assert ["ready"] in calls and ["expand"] in calls
    assert await app.main_button() == {"text": "New ticket", "visible": True}

    ticket_id = await app.open_ticket("Payment failed", "I paid but the order is unpaid.")
    await app.wait_for_message("I paid but the order is unpaid.", sender="tma")
    await app.wait_for_status("open")
    assert await app.main_button() == {"text": "Send", "visible": True}
    assert ["BackButton.show"] in await app.telegram_calls()
    [stored] = await rows(stack.pair.tma_runtime, tma.Ticket)
    assert str(stored.id) == ticket_id

    await app.write("Order 1234, paid by card.")
    await app.wait_for_message("Order 1234, paid by card.", sender="tma")

    await app.go_back()
    await app.wait_for_list()
    await app.expect(app.page.locator("a.ticket", has_text="Payment failed")).to_be_visible()
    assert ["BackButton.hide"] in await app.telegram_calls()
    await app.close()
