"""Driving the operator console in a browser: sign in, open a ticket, reply, change status, and
wait for what the page shows. Reusable by any browser test (the two-people test plays the
operator with it).

    console = await sign_in(browser, base_url, token)
    await console.wait_for_ticket("Payment failed")
    await console.open_ticket("Payment failed")
    await console.reply("Fixed, sorry!")
    await console.wait_for_delivery("Fixed, sorry!", "delivered")  # after the dispatcher ran
    await console.set_status("closed")
    await console.close()

Every wait is Playwright's auto-retrying `expect` on a condition, never a fixed sleep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tests.browser.support import DESKTOP, keep_on_this_machine, screenshot_path

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page

WAIT_MS = 15_000  # generous: two cores are shared by many test processes

ColorScheme = Literal["light", "dark"]
STATUS_LABELS = {"open": "Open", "in_progress": "In progress", "closed": "Closed"}


def _expect():  # type: ignore[no-untyped-def]
    from playwright.async_api import expect

    return expect


@dataclass
class ConsolePage:
    """A signed-in console tab."""

    page: Page
    context: BrowserContext
    base_url: str

    # --- where things are ----------------------------------------------------------------

    def ticket_link(self, subject: str) -> Locator:
        """The queue entry of the ticket with `subject`."""
        return self.page.locator("#ticket-list a.ticket").filter(
            has=self.page.locator(".subject", has_text=re.compile(f"^{re.escape(subject)}$"))
        )

    def message(self, text: str) -> Locator:
        """The message in the open conversation whose text is exactly `text`."""
        return self.page.locator("#thread li.msg").filter(
            has=self.page.locator(".text", has_text=re.compile(f"^{re.escape(text)}$"))
        )

    # --- actions -------------------------------------------------------------------------

    async def open_ticket(self, subject: str) -> None:
        await self.wait_for_ticket(subject)
        await self.ticket_link(subject).click()
        await _expect()(self.page.locator("#conv-subject")).to_have_text(subject, timeout=WAIT_MS)

    async def reply(self, text: str) -> None:
        """Type a reply and send it; returns once the page shows it in the thread."""
        shown = await self.message(text).count()  # the same text may be there already
        await self.page.locator("#reply").fill(text)
        await self.page.locator("#send").click()
        await _expect()(self.message(text)).to_have_count(shown + 1, timeout=WAIT_MS)

    async def set_status(self, status: str) -> None:
        """`open`, `in_progress` or `closed`; waits until the header shows it."""
        await self.page.locator("#set-status").select_option(status)
        await self.wait_for_status(status)

    async def assign_to_me(self) -> None:
        await self.page.locator("#assign").click()
        await _expect()(self.page.locator("#conv-assignee")).to_contain_text(
            "Assigned to", timeout=WAIT_MS
        )

    async def open_delivery_health(self) -> None:
        await self.page.get_by_role("link", name="Delivery health").click()
        await _expect()(self.page.locator("#health-summary")).to_contain_text(
            "event(s)", timeout=WAIT_MS
        )

    async def sign_out(self) -> None:
        await self.page.locator("#sign-out").click()
        await self.wait_for_sign_in_form()

    async def screenshot(self, name: str) -> None:
        """Into build/screenshots/ (never compared)."""
        await self.page.screenshot(path=screenshot_path(name))

    async def close(self) -> None:
        await self.context.close()

    # --- waits -------------------------------------------------------------------------

    async def wait_for_ticket(self, subject: str) -> Locator:
        link = self.ticket_link(subject)
        await _expect()(link).to_have_count(1, timeout=WAIT_MS)
        return link

    async def wait_for_message(self, text: str) -> Locator:
        message = self.message(text)
        await _expect()(message).to_have_count(1, timeout=WAIT_MS)
        return message

    async def wait_for_status(self, status: str) -> None:
        await _expect()(self.page.locator("#conv-status")).to_have_text(
            STATUS_LABELS[status], timeout=WAIT_MS
        )

    async def wait_for_delivery(self, text: str, state: str) -> str:
        """Wait until the reply `text` shows delivery `state` (pending, delivered, failing,
        skipped); returns the line the operator reads."""
        line = self.message(text).locator(".delivery")
        await _expect()(line).to_have_attribute("data-delivery", state, timeout=WAIT_MS)
        return await line.inner_text()

    async def wait_for_unread(self, subject: str, count: int) -> None:
        badge = self.ticket_link(subject).locator(".count")
        if count == 0:
            await _expect()(badge).to_have_count(0, timeout=WAIT_MS)
        else:
            await _expect()(badge).to_have_text(str(count), timeout=WAIT_MS)

    async def wait_for_sign_in_form(self) -> None:
        await _expect()(self.page.get_by_label("Operator token")).to_be_visible(timeout=WAIT_MS)


async def new_console_context(
    browser: Browser,
    *,
    viewport: dict[str, int] | None = None,
    color_scheme: ColorScheme = "light",
) -> BrowserContext:
    """A browser context kept on this machine, at `viewport` in `color_scheme`."""
    context = await browser.new_context(
        viewport=viewport or DESKTOP,  # type: ignore[arg-type]
        color_scheme=color_scheme,
        locale="en-GB",
        timezone_id="UTC",
    )
    await keep_on_this_machine(context)
    return context


async def sign_in(
    browser: Browser,
    base_url: str,
    token: str,
    *,
    viewport: dict[str, int] | None = None,
    color_scheme: ColorScheme = "light",
) -> ConsolePage:
    """Open the console in a new context and sign in with an operator token."""
    context = await new_console_context(browser, viewport=viewport, color_scheme=color_scheme)
    page = await context.new_page()
    await page.goto(f"{base_url}/console/")
    await page.get_by_label("Operator token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await _expect()(page.locator("#ticket-list")).to_be_attached(timeout=WAIT_MS)
    await _expect()(page.locator("#page-info")).to_contain_text("of", timeout=WAIT_MS)
    return ConsolePage(page=page, context=context, base_url=base_url)
