"""The CRM served on loopback for the browser, wired to a real TMA backend (tests/support/pair.py);
the dispatchers run only when a test calls `pair.sync()`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm_impl.settings import CrmSettings
from tests.browser.support import live_server
from tests.support.pair import Pair, wired_pair


@dataclass
class ConsoleStack:
    pair: Pair
    base_url: str  # the CRM, serving /console/ and /api/crm


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[ConsoleStack]:
    async with wired_pair("sqlite", tmp_path) as pair:
        settings = pair.crm_runtime.settings
        assert isinstance(settings, CrmSettings)
        # Streams look often, and end soon so the server can stop after a test.
        settings.console_poll_seconds = 0.05
        settings.console_stream_seconds = 3
        async with live_server(pair.crm_app) as base_url:
            yield ConsoleStack(pair=pair, base_url=base_url)
