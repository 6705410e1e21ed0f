"""Outside Telegram: in development the page gets a development identity (minted initData) and
works in an ordinary browser; in production that route does not exist and the page says to open
it in Telegram."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.browser.miniapp.miniapp import open_miniapp
from tests.browser.support import live_server
from tests.support.databases import fresh_database
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN
from tma_impl.app import build_runtime, create_app
from tma_impl.settings import TmaSettings

if TYPE_CHECKING:
    from playwright.async_api import Browser


@asynccontextmanager
async def served_tma(tmp_path: Path, environment: str) -> AsyncIterator[str]:
    async with fresh_database("sqlite", "tma", tmp_path) as url:
        runtime = build_runtime(
            TmaSettings(
                environment=environment,
                database_url=url,
                inbound_tokens=["inbound-7f3a9c2e5b8d4f1a6c0e9b3d7a2f5c8e"],
                peer_url="https://crm.example.test",
                peer_token="peer-4c1d8e6b2a9f7c3e5d0b8a6f4e2c9d1b",
                # Standard Webhooks secrets, for versions that sign integration requests.
                inbound_signing_secrets=["whsec_dMIn+dgOCeYm9vg0arxqQd5UuYU9xn2SybrScQEVsRY="],
                peer_signing_secret="whsec_CpUp4dBVGjbx9m4sjEdWuvZt52GE/Dw+5MS8P99wO+I=",
                bot_token=FAKE_BOT_TOKEN,
            )
        )
        runtime.run_dispatcher = False
        try:
            async with live_server(create_app(runtime)) as base_url:
                yield base_url
        finally:
            await runtime.close()


async def test_production_refuses_the_development_identity(
    browser: Browser, tmp_path: Path
) -> None:
    async with served_tma(tmp_path, "production") as base_url:
        app = await open_miniapp(browser, base_url, user=None)
        refusal = app.page.locator("#outside-telegram")
        await app.expect(refusal).to_contain_text("Open this page from the bot in Telegram.")
        answer = await app.page.request.post(base_url + "/app/dev-identity", data={})
        assert answer.status == 404
        await app.screenshot("miniapp-outside-telegram-light-phone")
        await app.close()


async def test_development_gives_an_ordinary_browser_an_identity(
    browser: Browser, tmp_path: Path
) -> None:
    async with served_tma(tmp_path, "development") as base_url:
        app = await open_miniapp(browser, base_url, user=None, language="ru")
        await app.wait_for_list()
        assert await app.page.locator("html").get_attribute("data-identity") == "development"
        await app.expect(app.page.locator("#new-ticket")).to_be_visible()  # no MainButton here
        await app.page.locator("#new-ticket").click()
        await app.expect(app.page.locator("#back")).to_be_visible()  # nor a BackButton
        await app.page.locator("#subject").fill("From a browser")
        await app.page.locator("#message").fill("Developing the page.")
        await app.page.locator("#create").click()
        await app.wait_for_message("Developing the page.", sender="tma")
        storage = await app.page.evaluate("JSON.stringify(Object.assign({}, localStorage))")
        assert "hash=" not in storage
        await app.close()
