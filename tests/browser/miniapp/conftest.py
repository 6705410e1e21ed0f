"""Fixtures of the Mini App's browser tests: both backends wired over HTTP (tests/support/pair.py,
dispatchers run when a test says so), the TMA served on loopback for the browser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.support import live_server
from tests.support.pair import Pair, wired_pair
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN
from tma_impl.telegram import TelegramUser

if TYPE_CHECKING:
    from playwright.async_api import Browser

ANNA = TelegramUser(id=4242, first_name="Anna", username="anna_test", language_code="en")
BOT_TOKEN = FAKE_BOT_TOKEN


@dataclass
class Stack:
    pair: Pair
    tma_url: str


@pytest.fixture
async def stack(browser: Browser, tmp_path: Path) -> AsyncIterator[Stack]:
    """SQLite: the browser tests are about the page; the stream's database behaviour is tested
    on both databases in tests/tma_impl/test_conversation_stream.py."""
    async with wired_pair("sqlite", tmp_path, live_poll_seconds=0.5) as pair:
        async with live_server(pair.tma_app) as tma_url:
            try:
                yield Stack(pair=pair, tma_url=tma_url)
            finally:
                # Pages still open (a failed test) hold event streams the server would wait for.
                for context in browser.contexts:
                    await context.close()
