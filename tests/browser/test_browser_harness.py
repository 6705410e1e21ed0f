"""The harness itself: pages are served over real HTTP and nothing leaves this machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from tests.browser.support import keep_on_this_machine, live_server

if TYPE_CHECKING:
    from playwright.async_api import Browser

PAGE = """<!doctype html><title>t</title>
<script src="https://telegram.org/js/telegram-web-app.js"></script>
<img id="outside" src="https://example.com/x.png">
<p id="out">waiting</p>"""

DOUBLE = "window.Telegram = {WebApp: {version: 'test-double'}};"


def page_app() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(PAGE)

    return app


async def test_telegram_script_comes_from_the_double_and_other_hosts_are_cut(
    browser: Browser,
) -> None:
    async with live_server(page_app()) as base_url:
        context = await browser.new_context()
        await keep_on_this_machine(context, telegram_script=lambda: DOUBLE)
        failed: list[str] = []
        page = await context.new_page()
        page.on("requestfailed", lambda request: failed.append(request.url))
        await page.goto(base_url + "/")
        assert await page.evaluate("window.Telegram.WebApp.version") == "test-double"
        await page.wait_for_function("document.readyState === 'complete'")
        assert failed == ["https://example.com/x.png"]
        await context.close()
