"""The operator console in chromium: sign-in, a live queue, replies with their delivery state,
status changes, escaping, sign-out, a revoked operator, and keyboard-only use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from playwright.async_api import expect

from crm_impl.cli import add_operator
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


async def test_status_changes_reach_the_mini_app(browser: Browser, stack: ConsoleStack) -> None:
    pair = stack.pair
    ticket = await pair.open_ticket(subject="Wrong size")
    await pair.sync()
    console = await sign_in(browser, stack.base_url, pair.operator_token)
    try:
        await console.open_ticket("Wrong size")
        await console.wait_for_status("open")
        await console.assign_to_me()
        await console.set_status("closed")
        await pair.sync()
        assert (await pair.conversation_in_tma(ticket["id"]))["ticket"]["status"] == "closed"
        # The customer writes again: the ticket reopens, live in the open conversation.
        await pair.user_writes(ticket["id"], "Still wrong")
        await pair.sync()
        await console.wait_for_status("open")
    finally:
        await console.close()


async def test_user_text_is_shown_as_text_never_as_html(
    browser: Browser, stack: ConsoleStack
) -> None:
    pair = stack.pair
    await pair.open_ticket(subject=XSS, message=XSS)
    await pair.sync()
    # The operator's own name is user text too (the server-rendered header, the reply's author).
    _, token = await add_operator(pair.crm_runtime.db, XSS, now=pair.clock.now())
    console = await sign_in(browser, stack.base_url, token)
    dialogs: list[str] = []
    console.page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    try:
        await console.open_ticket(XSS)
        await console.wait_for_message(XSS)
        await console.reply(XSS)
        assert await console.message(XSS).count() == 2
        await expect(console.page.locator("#conv-subject")).to_have_text(XSS)
        await expect(console.page.locator(".me-name")).to_have_text(XSS)
        await expect(console.message(XSS).locator(".author")).to_have_text(["Customer", XSS])
        await expect(console.page.locator("img")).to_have_count(0)
        assert dialogs == []
    finally:
        await console.close()


async def test_keyboard_only_reply(browser: Browser, stack: ConsoleStack) -> None:
    """From the queue to a sent reply with the keyboard alone: Tab, Enter, typing, Ctrl+Enter."""
    pair = stack.pair
    await pair.open_ticket(subject="Keyboard please")
    await pair.sync()
    console = await sign_in(browser, stack.base_url, pair.operator_token)
    page = console.page
    try:
        await console.wait_for_ticket("Keyboard please")

        async def tab_to(selector: str) -> None:
            for _ in range(40):
                await page.keyboard.press("Tab")
                if await page.evaluate(
                    "(s) => document.activeElement?.matches(s) ?? false", selector
                ):
                    # Focus is visible: the focus ring is drawn (an outline wider than 0).
                    outline = await page.evaluate(
                        "() => getComputedStyle(document.activeElement).outlineWidth"
                    )
                    assert outline not in ("0px", ""), outline
                    return
            raise AssertionError(f"Tab never reached {selector}")

        await tab_to("#ticket-list a.ticket")
        await page.keyboard.press("Enter")
        await expect(page.locator("#conv-subject")).to_have_text("Keyboard please")
        await tab_to("#reply")
        await page.keyboard.type("Typed without a mouse")
        await page.keyboard.press("Control+Enter")
        await console.wait_for_message("Typed without a mouse")
    finally:
        await console.close()


async def test_sign_out_ends_the_session(browser: Browser, stack: ConsoleStack) -> None:
    pair = stack.pair
    console = await sign_in(browser, stack.base_url, pair.operator_token)
    try:
        cookies = await console.context.cookies()
        (cookie,) = [c for c in cookies if c["name"] == "crm_console"]
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert await console.page.evaluate("document.cookie") == ""  # HttpOnly: out of reach
        assert await console.page.evaluate("localStorage.length") == 0
        await console.sign_out()
        # The old cookie opens nothing any more, even if someone kept it.
        async with httpx.AsyncClient(base_url=stack.base_url) as client:
            response = await client.get(
                "/api/crm/me", headers={"Cookie": f"crm_console={cookie['value']}"}
            )
        assert response.status_code == 401
        await console.page.goto(f"{stack.base_url}/console/")
        await console.wait_for_sign_in_form()
    finally:
        await console.close()


async def test_a_wrong_token_is_refused_on_the_sign_in_page(
    browser: Browser, stack: ConsoleStack
) -> None:
    from tests.browser.console.support import new_console_context

    context = await new_console_context(browser)
    try:
        page = await context.new_page()
        await page.goto(f"{stack.base_url}/console/")
        await page.get_by_label("Operator token").fill("op_not-a-real-token")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("not valid", timeout=WAIT_MS)
        assert "op_not-a-real-token" not in page.url
    finally:
        await context.close()
