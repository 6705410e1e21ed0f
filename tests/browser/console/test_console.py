"""The operator console in chromium: sign-in, a live queue, replies with their delivery state,
status changes, escaping, sign-out, a revoked operator, and keyboard-only use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from playwright.async_api import expect

from tests.browser.console.conftest import ConsoleStack
from tests.browser.console.support import WAIT_MS, sign_in

if TYPE_CHECKING:
    from playwright.async_api import Browser

XSS = "<img src=x onerror=alert(1)>"


async def test_a_new_ticket_appears_live_and_a_reply_goes_pending_then_delivered(
    browser: Browser, stack: ConsoleStack
) -> None:
    pair = stack.pair
    console = await sign_in(browser, stack.base_url, pair.operator_token)
    try:
        await expect(console.page.locator("#ticket-list")).to_contain_text("No conversations")
        ticket = await pair.open_ticket(subject="Payment failed", message="I paid twice")
        await pair.sync()  # the TMA delivers the new ticket to the CRM
        await console.wait_for_unread("Payment failed", 1)  # no reload: the queue stream
        await console.open_ticket("Payment failed")
        await console.wait_for_message("I paid twice")
        profile = console.page.locator("#profile")
        await expect(profile).to_contain_text("Anna")
        await expect(profile).to_contain_text("@anna_test")
        await expect(profile).to_contain_text("en")
        await console.wait_for_unread("Payment failed", 0)  # opened, so read

        await console.reply("Refund is on its way")
        line = await console.wait_for_delivery("Refund is on its way", "pending")
        assert "Pending" in line
        await console.wait_for_status("in_progress")  # a first reply takes the ticket
        await pair.sync()  # the CRM delivers the reply to the Mini App's backend
        line = await console.wait_for_delivery("Refund is on its way", "delivered")
        assert "Delivered" in line
        in_tma = await pair.conversation_in_tma(ticket["id"])
        assert [m["body"] for m in in_tma["messages"]][-1] == "Refund is on its way"

        # A customer message arrives in the open conversation without a reload.
        await pair.user_writes(ticket["id"], "Thank you!")
        await pair.sync()
        await console.wait_for_message("Thank you!")
    finally:
        await console.close()


async def test_a_reply_the_mini_app_cannot_take_shows_failing_with_its_error(
    browser: Browser, stack: ConsoleStack
) -> None:
    pair = stack.pair
    await pair.open_ticket(subject="Cannot log in")
    await pair.sync()
    console = await sign_in(browser, stack.base_url, pair.operator_token)
    try:
        await console.open_ticket("Cannot log in")
        pair.to_tma.down = True
        await console.reply("Try resetting your password")
        await pair.sync(rounds=1)
        line = await console.wait_for_delivery("Try resetting your password", "failing")
        assert "peer down" in line or "unavailable" in line.lower(), line
        assert "attempt 1" in line, line
        pair.to_tma.down = False
        pair.clock.advance(60)
        await pair.sync()
        await console.wait_for_delivery("Try resetting your password", "delivered")
    finally:
        await console.close()
