"""The customer's side in a browser: `open_miniapp(...)` opens the Mini App as Telegram would (the
test double of telegram-web-app.js carries the user's signed initData, language and theme) and
returns a page object that does what a customer does. Reusable by any browser test, including one
that plays the customer and an operator at once:

    app = await open_miniapp(browser, tma_url, user=ANNA, bot_token=BOT_TOKEN, theme="dark")
    ticket_id = await app.open_ticket("Payment failed", "I paid but the order is unpaid.")
    await app.wait_for_message("Fixed, sorry!", sender="crm")
    await app.wait_for_status("in_progress")

Every wait is on a condition in the page (Playwright's auto-waiting `expect`), never a sleep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.browser.miniapp.telegram_double import TelegramLaunch
from tests.browser.support import PHONE, keep_on_this_machine, screenshot_path
from tma_impl.telegram import TelegramUser

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page

TIMEOUT_MS = 15_000


@dataclass
class MiniApp:
    context: BrowserContext
    page: Page
    launch: TelegramLaunch | None
    base_url: str

    # --- where the customer is -----------------------------------------------------------

    async def wait_for_list(self) -> None:
        await self.expect(
            self.page.locator("section.list-screen[data-loaded=true]")
        ).to_be_visible()

    async def wait_for_conversation(self, ticket_id: str | None = None) -> str:
        """Until a conversation is shown (loaded from the server); returns its ticket id."""
        selector = "section.conversation-screen[data-loaded=true]"
        if ticket_id:
            selector = f"section.conversation-screen[data-ticket='{ticket_id}'][data-loaded=true]"
        screen = self.page.locator(selector)
        await self.expect(screen).to_be_visible()
        return str(await screen.get_attribute("data-ticket"))

    async def wait_for_live(self) -> None:
        """Until the conversation's event stream is connected."""
        await self.expect(
            self.page.locator("section.conversation-screen[data-live=true]")
        ).to_be_attached()

    # --- what the customer does ------------------------------------------------------------

    async def open_ticket(self, subject: str, message: str) -> str:
        """From the tickets list: New ticket, fill in, send (with Telegram's MainButton when
        there is one). Returns the new ticket's id once the server has it."""
        await self.wait_for_list()
        await self.press_main_or(self.page.locator("#new-ticket"))
        await self.page.locator("#subject").fill(subject)
        await self.page.locator("#message").fill(message)
        await self.press_main_or(self.page.locator("#create"))
        return await self.wait_for_conversation()

    async def open_from_list(self, subject: str) -> str:
        await self.wait_for_list()
        await self.page.locator("a.ticket", has_text=subject).first.click()
        return await self.wait_for_conversation()

    async def write(self, text: str) -> None:
        """Write in the open conversation and send."""
        await self.page.locator("#reply").fill(text)
        await self.press_main_or(self.page.locator("#send"))

    async def close_ticket(self) -> None:
        await self.page.get_by_role("button", name=re.compile("Close ticket|Закрыть")).click()
        await self.wait_for_status("closed")

    async def reopen_ticket(self) -> None:
        await self.page.get_by_role(
            "button", name=re.compile("Reopen ticket|Открыть снова")
        ).click()
        await self.wait_for_status("open")

    async def go_back(self) -> None:
        """Telegram's BackButton when there is one, else the page's own."""
        if self.launch is not None:
            await self.page.evaluate("window.__telegram.pressBack()")
        else:
            await self.page.locator("#back").click()

    async def press_main_or(self, fallback: Locator) -> None:
        if self.launch is not None:
            await self.expect_main_button_visible()
            await self.page.evaluate("window.__telegram.pressMain()")
        else:
            await fallback.click()

    # --- what the customer sees ------------------------------------------------------------

    def message(self, text: str, *, sender: str | None = None) -> Locator:
        classes = {"tma": ".mine", "crm": ".theirs", None: ""}[sender]
        return self.page.locator(
            f"li.message{classes}", has=self.page.locator("p.body", has_text=text)
        )

    async def wait_for_message(
        self, text: str, *, sender: str | None = None, state: str = "sent"
    ) -> Locator:
        """Until a message with `text` is shown once, in `state` (sent, pending, sending)."""
        found = self.message(text, sender=sender)
        await self.expect(found).to_have_count(1)
        await self.expect(found).to_have_attribute("data-state", state)
        return found

    async def wait_for_status(self, status: str) -> None:
        await self.expect(self.page.locator("section.conversation-screen")).to_have_attribute(
            "data-status", status
        )

    async def message_texts(self) -> list[str]:
        return [str(t) for t in await self.page.locator("li.message p.body").all_text_contents()]

    async def main_button(self) -> dict[str, Any]:
        state = await self.page.evaluate(
            "({text: __telegram.mainButton.text, visible: __telegram.mainButton.isVisible})"
        )
        return dict(state)

    async def expect_main_button_visible(self) -> None:
        await self.page.wait_for_function(
            "window.__telegram.mainButton.isVisible", timeout=TIMEOUT_MS
        )

    async def telegram_calls(self) -> list[list[Any]]:
        return list(await self.page.evaluate("window.__telegram.calls"))

    async def screenshot(self, name: str) -> None:
        await self.page.screenshot(path=screenshot_path(name), full_page=False)

    def expect(self, locator: Locator) -> Any:
        from playwright.async_api import expect

        expect.set_options(timeout=TIMEOUT_MS)
        return expect(locator)

    async def close(self) -> None:
        await self.context.close()


async def open_miniapp(
    browser: Browser,
    base_url: str,
    *,
    user: TelegramUser | None,
    bot_token: str = "",
    theme: str = "light",
    language: str | None = None,
    viewport: dict[str, int] = PHONE,
    start_param: str | None = None,
    path: str = "/app/",
    platform: str = "android",
) -> MiniApp:
    """Open the Mini App at `base_url + path` in a new browser context.

    With `user`, as Telegram opens it: the test double carries that user's initData signed with
    `bot_token`, `language` (default: the user's language_code) and `theme` (light or dark).
    With `user=None`, as an ordinary browser outside Telegram (no Telegram script at all).
    """
    launch = None
    if user is not None:
        if language is not None:
            user = TelegramUser(
                id=user.id,
                first_name=user.first_name,
                last_name=user.last_name,
                username=user.username,
                language_code=language,
            )
        launch = TelegramLaunch(
            bot_token=bot_token, user=user, theme=theme, start_param=start_param, platform=platform
        )
    context = await browser.new_context(
        viewport=viewport,
        color_scheme="dark" if theme == "dark" else "light",
        locale=language or "en-US",
    )
    await keep_on_this_machine(context, telegram_script=launch.script if launch else _absent)
    page = await context.new_page()
    await page.goto(base_url + path)
    return MiniApp(context=context, page=page, launch=launch, base_url=base_url)


def _absent() -> str:
    # Outside Telegram the real script loads but finds no launch data; so does this.
    return (
        "window.Telegram = {WebApp: {initData: '', initDataUnsafe: {}, themeParams: {},"
        " onEvent() {}, ready() {}, expand() {}}};"
    )
