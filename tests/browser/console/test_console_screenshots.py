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


CONTRAST = """(selectors) => {
  const parse = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const selector of selectors) {
    for (const el of document.querySelectorAll(selector)) {
      if (!el.offsetParent) continue;  // not shown
      const [hi, lo] = [lum(parse(getComputedStyle(el).color)), lum(background(el))]
        .sort((a, b) => b - a);
      found.push([selector, el.textContent.trim().slice(0, 30), (hi + 0.05) / (lo + 0.05)]);
    }
  }
  return found;
}"""

TEXT = [
    ".who",
    ".handle",
    ".subject",
    ".preview",
    ".assignee",
    ".count",
    ".badge",
    "time",
    ".author",
    ".text",
    ".meta",
    ".delivery",
    ".profile dt",
    ".profile dd",
    ".btn",
    ".topbar nav a",
    ".hint",
    ".events td",
    ".events th",
    "label",
    "#page-info",
]


async def test_text_contrast_is_readable_in_both_colour_schemes(
    browser: Browser, stack: ConsoleStack
) -> None:
    """Every text element shown has at least 4.5:1 contrast with what is behind it (WCAG AA)."""
    await seed(stack)
    _, token = await add_operator(
        stack.pair.crm_runtime.db, "Maria Admin", now=stack.pair.clock.now(), admin=True
    )
    for scheme in ("light", "dark"):
        console = await sign_in(browser, stack.base_url, token, color_scheme=scheme)
        try:
            await console.open_ticket("Payment failed")
            await console.wait_for_delivery("Done: the order is paid now.", "failing")
            measured = await console.page.evaluate(CONTRAST, TEXT)
            await console.open_delivery_health()
            measured += await console.page.evaluate(CONTRAST, TEXT)
        finally:
            await console.close()
        assert len(measured) > 50
        low = [(s, text, round(ratio, 2)) for s, text, ratio in measured if ratio < 4.5]
        assert low == [], f"{scheme}: {low}"
