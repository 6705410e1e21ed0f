"""A stand-in for the Telegram Bot API on 127.0.0.1 that records every notification the TMA's
workers send, so the run can count how often each operator reply reached its user."""

from __future__ import annotations

import time
from collections import defaultdict

from aiohttp import web

from tests.faults.cluster import BOT_TOKEN, free_port


class FakeTelegram:
    """Answers sendMessage like Telegram and records when each reply's text was sent."""

    def __init__(self) -> None:
        # Reply text (what follows the first blank line of a notification) -> send times.
        self.sends: dict[str, list[float]] = defaultdict(list)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._next_id = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(f"/bot{BOT_TOKEN}/sendMessage", self._send_message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _send_message(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ConnectionError:
            return web.Response(status=400)  # the sending worker was killed mid-request
        self.sends[str(body["text"]).split("\n\n", 1)[-1]].append(time.monotonic())
        self._next_id += 1
        return web.json_response(
            {"ok": True, "result": {"message_id": self._next_id, "chat": {"id": body["chat_id"]}}}
        )
