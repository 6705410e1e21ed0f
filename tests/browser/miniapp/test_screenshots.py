"""Screenshots of every screen of the Mini App, light and dark, phone and desktop, into
build/screenshots/ (looked at by people, never compared in CI; a current set is committed under
docs/screenshots/). Each screen is also checked for what it must show."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.browser.miniapp.conftest import ANNA, BOT_TOKEN, Stack
from tests.browser.miniapp.miniapp import open_miniapp
from tests.browser.support import DESKTOP, PHONE
from tests.e2e.helpers import linked_ticket

if TYPE_CHECKING:
    from playwright.async_api import Browser


async def seed(stack: Stack) -> None:
    pair = stack.pair
    closed = await linked_ticket(pair, subject="Cannot log in on my new phone")
    await pair.operator_replies(closed.crm_id, "Please update the app to the latest version.")
    await pair.crm.post(
        f"/api/crm/tickets/{closed.crm_id}/status",
        json={"status": "closed"},
        headers=pair.operator_headers,
    )
    await pair.sync()
    pair.clock.advance(60)
    await pair.open_ticket(subject="Refund for order 1234", message="I returned the parcel.")
    pair.clock.advance(60)
    busy = await linked_ticket(pair, subject="Payment failed")
    await pair.operator_replies(busy.crm_id, "Hello Anna! We can see the payment; checking why.")
    await pair.crm.post(
        f"/api/crm/tickets/{busy.crm_id}/status",
        json={"status": "in_progress"},
        headers=pair.operator_headers,
    )
    await pair.sync()
    await pair.user_writes(busy.tma_id, "Thank you! It was order 5678, paid by card.")
    await pair.sync()
    await pair.operator_replies(busy.crm_id, "Found it: the bank held it. It is paid now.")
    await pair.sync()


@pytest.mark.parametrize("theme", ["light", "dark"])
async def test_screenshots_of_every_screen(browser: Browser, stack: Stack, theme: str) -> None:
    await seed(stack)
    rounds = (("phone", PHONE, "Great, thanks a lot!"), ("desktop", DESKTOP, "Thanks again!"))
    for size, viewport, thanks in rounds:
        app = await open_miniapp(
            browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN, theme=theme, viewport=viewport
        )
        await app.wait_for_list()
        await app.expect(app.page.locator("a.ticket")).to_have_count(3)
        await app.screenshot(f"miniapp-list-{theme}-{size}")

        await app.press_main_or(app.page.locator("#new-ticket"))
        await app.page.locator("#subject").fill("Delivery is late")
        await app.screenshot(f"miniapp-new-{theme}-{size}")
        await app.go_back()

        await app.open_from_list("Payment failed")
        await app.wait_for_message("Found it: the bank held it. It is paid now.", sender="crm")
        await app.wait_for_status("in_progress")
        await app.screenshot(f"miniapp-conversation-{theme}-{size}")

        await app.context.set_offline(True)
        await app.write(thanks)
        await app.wait_for_message(thanks, sender="tma", state="pending")
        await app.screenshot(f"miniapp-offline-{theme}-{size}")
        await app.context.set_offline(False)
        await app.wait_for_message(thanks, sender="tma")
        await app.close()


# Relative luminance and contrast ratio (WCAG 2), on the colours chromium computed; a colour's
# background is the first ancestor's that is not transparent.
CONTRAST = """
(selectors) => {
  const parse = (value) => {
    const numbers = value.match(/[\\d.]+/g).map(Number);
    const srgb = value.startsWith("color(");  // color-mix() computes to color(srgb r g b)
    const [r, g, b] = srgb ? numbers.slice(0, 3).map((n) => n * 255) : numbers.slice(0, 3);
    const alpha = numbers[3] ?? 1;
    return { r, g, b, alpha };
  };
  const luminance = ({ r, g, b }) => {
    const [R, G, B] = [r, g, b].map((c) => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  const background = (element) => {
    for (let e = element; e; e = e.parentElement) {
      const colour = parse(getComputedStyle(e).backgroundColor);
      if (colour.alpha > 0.5) return colour;
    }
    return parse(getComputedStyle(document.body).backgroundColor);
  };
  const result = {};
  for (const selector of selectors) {
    const element = document.querySelector(selector);
    if (!element) { result[selector] = null; continue; }
    const a = luminance(parse(getComputedStyle(element).color));
    const b = luminance(background(element));
    result[selector] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  }
  return result;
}
"""
TEXT = [
    "h2.subject",
    "li.message.mine p.body",
    "li.message.theirs p.body",
    "li.message.mine .meta",
    "li.message.theirs .meta",
    "li.message.theirs .who",
    "li.system",
    ".badge",
    "#status-action",
]


@pytest.mark.parametrize("theme", ["light", "dark"])
async def test_text_is_readable_in_both_themes(browser: Browser, stack: Stack, theme: str) -> None:
    """WCAG AA: every text of the conversation and the list at 4.5:1 against its background."""
    await seed(stack)
    app = await open_miniapp(browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN, theme=theme)
    await app.wait_for_list()
    ratios = await app.page.evaluate(
        CONTRAST, ["h2", ".ticket-subject", ".ticket-meta time", ".unread"]
    )
    await app.open_from_list("Payment failed")
    await app.wait_for_message("Found it: the bank held it. It is paid now.", sender="crm")
    ratios |= await app.page.evaluate(CONTRAST, TEXT)
    low = {
        selector: round(ratio, 2) for selector, ratio in ratios.items() if not ratio or ratio < 4.5
    }
    assert low == {}, low
    await app.close()
