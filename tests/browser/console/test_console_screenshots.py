"""Screenshots of every console screen, light and dark, phone and desktop, into
build/screenshots/console-*.png (never compared; a current set is kept in docs/screenshots/)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from playwright.async_api import expect

from crm_impl.cli import add_operator
from tests.browser.console.conftest import ConsoleStack
from tests.browser.console.support import new_console_context, sign_in
from tests.browser.console.test_console_access import refusing_tma
from tests.browser.support import DESKTOP, PHONE, screenshot_path

if TYPE_CHECKING:
    from playwright.async_api import Browser


async def seed(stack: ConsoleStack) -> None:
    """A queue worth looking at: new, answered, failing and dead conversations."""
    pair = stack.pair
    payment = await pair.open_ticket(
        subject="Payment failed", message="I paid but the order is still unpaid. Order #4411."
    )
    await pair.open_ticket(
        subject="Где мой заказ?", message="Заказ не пришёл уже неделю", user_id=7
    )
    delivery = await pair.open_ticket(subject="Delivery address", message="Can I change it?")
    await pair.open_ticket(subject="<b>Refund</b> please", message="<img src=x onerror=alert(1)>")
    await pair.sync()
    crm_payment = await pair.crm_ticket_for(payment["id"])
    await pair.operator_replies(crm_payment["id"], "Sorry about that! I can see the payment.")
    await pair.sync()
    await pair.user_writes(payment["id"], "Thanks, when will it be marked paid?")
    await pair.sync()
    await pair.operator_replies(crm_payment["id"], "Within the hour; I have asked billing.")
    crm_delivery = await pair.crm_ticket_for(delivery["id"])
    await pair.operator_replies(crm_delivery["id"], "Yes: which address should we use?")
    working, pair.to_tma.inner = pair.to_tma.inner, httpx.MockTransport(refusing_tma)
    try:
        await pair.sync(rounds=1)
    finally:
        pair.to_tma.inner = working
    pair.to_tma.down = True
    await pair.operator_replies(crm_payment["id"], "Done: the order is paid now.")
    await pair.sync(rounds=1)


async def test_screenshots_of_every_screen(browser: Browser, stack: ConsoleStack) -> None:
    await seed(stack)
    _, token = await add_operator(
        stack.pair.crm_runtime.db, "Maria Admin", now=stack.pair.clock.now(), admin=True
    )
    for scheme in ("light", "dark"):
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            suffix = f"{scheme}-{size}"
            context = await new_console_context(browser, viewport=viewport, color_scheme=scheme)
            page = await context.new_page()
            await page.goto(f"{stack.base_url}/console/")
            await page.get_by_label("Operator token").focus()
            await page.screenshot(path=screenshot_path(f"console-sign-in-{suffix}"))
            await context.close()

            console = await sign_in(
                browser, stack.base_url, token, viewport=viewport, color_scheme=scheme
            )
            try:
                await console.wait_for_ticket("Payment failed")
                await expect(console.page.locator("#ticket-list li")).to_have_count(4)
                await console.screenshot(f"console-queue-{suffix}")
                await console.open_ticket("Payment failed")
                await console.wait_for_delivery("Done: the order is paid now.", "failing")
                await console.wait_for_delivery(
                    "Sorry about that! I can see the payment.", "delivered"
                )
                await console.screenshot(f"console-conversation-{suffix}")
                if size == "phone":
                    await console.page.locator("#back").click()
                    await console.page.goto(f"{stack.base_url}/console/delivery")
                else:
                    await console.open_delivery_health()
                await expect(console.page.locator("#health-summary")).to_contain_text("2 dead")
                await console.screenshot(f"console-delivery-health-{suffix}")
            finally:
                await console.close()
