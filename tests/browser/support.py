"""What every browser test needs: Debian's chromium driven by Playwright, a real HTTP server on
loopback for an app, and a guard that keeps the browser on this machine.

Playwright cannot download its own browser here, so it drives the system chromium
(`apt-get install -y chromium`). Without it (or without the playwright package) the browser
tests are skipped with a plain message on a developer's machine, and fail in CI (CI=true), where
`.ci/run` installs both.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
import uvicorn

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Route
    from starlette.types import ASGIApp

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}

# Viewports the screenshots are taken at: a phone (Telegram's usual case) and a desktop.
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def chromium_path() -> str | None:
    """The system chromium, or None."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_browser() -> str:
    """The chromium path; skips the test (fails it in CI) without chromium or Playwright."""
    path = chromium_path()
    problem = None
    if path is None:
        problem = "chromium not found (apt-get install -y chromium, or set CHROMIUM_PATH)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (make setup installs it)"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(f"browser tests skipped: {problem}")
    assert path is not None
    return path


@asynccontextmanager
async def launched_browser() -> AsyncIterator[Browser]:
    """Headless chromium for one test."""
    path = require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def live_server(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free loopback port, in this event loop; yields its base URL.

    The app's lifespan is not run: tests build and close the runtime themselves (see
    tests/support/pair.py), so the dispatchers run only when a test says so.
    """
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def keep_on_this_machine(
    context: BrowserContext, *, telegram_script: Callable[[], str] | None = None
) -> None:
    """Abort every request that would leave loopback; serve `telegram_script` for telegram.org.

    Telegram's own script (telegram-web-app.js) cannot be fetched here: a test double stands in
    for it at the same URL, so the page's real loading path and its CSP are what get tested.
    """

    async def route(route: Route) -> None:
        url = urlsplit(route.request.url)
        host = url.hostname or ""
        if url.scheme in {"data", "blob"} or host in LOOPBACK_HOSTS:
            await route.continue_()
        elif host == "telegram.org" and telegram_script is not None:
            await route.fulfill(
                status=200, content_type="application/javascript", body=telegram_script()
            )
        else:
            await route.abort()

    await context.route("**/*", route)


def screenshot_path(name: str) -> Path:
    """Where a screenshot named `name` goes (build/screenshots/, never compared in CI)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
