"""A fake Telegram Bot API that records sendMessage calls and answers as scripted."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

FAKE_BOT_TOKEN = "123456789:AAFakeTokenForTestsOnly-abcdefghijkl"

Behaviour = Literal["ok", "too_many_requests", "blocked", "chat_not_found", "server_error"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One scripted answer; retry_after only matters for too_many_requests."""

    behaviour: Behaviour
    retry_after: int = 5


OK = Answer("ok")
BLOCKED = Answer("blocked")
CHAT_NOT_FOUND = Answer("chat_not_found")
SERVER_ERROR = Answer("server_error")


def too_many_requests(retry_after: int) -> Answer:
    """A 429 answer carrying parameters.retry_after."""
    return Answer("too_many_requests", retry_after=retry_after)


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One sendMessage request as the fake received it, and what it answered."""

    token: str
    chat_id: Any
    text: Any
    reply_markup: Any
    answered: Behaviour


class FakeBotApi:
    """Records sendMessage calls; answers per chat_id from a script, then ok."""

    def __init__(self, *, token: str = FAKE_BOT_TOKEN) -> None:
        self.token = token
        self.calls: list[RecordedCall] = []
        self.app = Starlette(routes=[Route("/bot{token}/{method}", self._handle, methods=["POST"])])
        self._scripts: defaultdict[Any, deque[Answer]] = defaultdict(deque)
        self._message_ids = itertools.count(1)
        # Event objects bind to a loop only when awaited, so one made here is safe.
        self._recorded = asyncio.Event()

    def script(self, chat_id: int, answers: Iterable[Answer]) -> None:
        """Queue answers for chat_id; once used up the chat is answered ok again."""
        self._scripts[chat_id].extend(answers)

    def calls_for(self, chat_id: int) -> list[RecordedCall]:
        """The calls made for one chat, oldest first."""
        return [call for call in self.calls if call.chat_id == chat_id]

    async def wait_for_calls(self, count: int) -> list[RecordedCall]:
        """Wait until at least count calls were recorded; bound it with asyncio.timeout."""
        while len(self.calls) < count:
            self._recorded.clear()
            await self._recorded.wait()
        return list(self.calls)

    def transport(self) -> httpx.ASGITransport:
        """An in-process transport to give an httpx.AsyncClient."""
        return httpx.ASGITransport(app=self.app)

    async def _handle(self, request: Request) -> JSONResponse:
        token = request.path_params["token"]
        if token != self.token:
            return _error(401, "Unauthorized")
        if request.path_params["method"] != "sendMessage":
            return _error(404, "Not Found")
        try:
            payload = await request.json()
        except ValueError:
            return _error(400, "Bad Request: invalid JSON")
        if not isinstance(payload, dict):
            return _error(400, "Bad Request: invalid JSON")
        chat_id = payload.get("chat_id")
        queue = self._scripts.get(chat_id)
        answer = queue.popleft() if queue else OK
        self.calls.append(
            RecordedCall(
                token=token,
                chat_id=chat_id,
                text=payload.get("text"),
                reply_markup=payload.get("reply_markup"),
                answered=answer.behaviour,
            )
        )
        self._recorded.set()
        return self._answer(answer, chat_id=chat_id, text=payload.get("text"))

    def _answer(self, answer: Answer, *, chat_id: Any, text: Any) -> JSONResponse:
        match answer.behaviour:
            case "ok":
                message = {
                    "message_id": next(self._message_ids),
                    "chat": {"id": chat_id, "type": "private"},
                    "date": 1_700_000_000,
                    "text": text,
                }
                return JSONResponse({"ok": True, "result": message})
            case "too_many_requests":
                return _error(
                    429,
                    f"Too Many Requests: retry after {answer.retry_after}",
                    parameters={"retry_after": answer.retry_after},
                )
            case "blocked":
                return _error(403, "Forbidden: bot was blocked by the user")
            case "chat_not_found":
                return _error(400, "Bad Request: chat not found")
            case "server_error":
                return _error(500, "Internal Server Error")


def _error(status: int, description: str, **extra: Any) -> JSONResponse:
    body = {"ok": False, "error_code": status, "description": description, **extra}
    return JSONResponse(body, status_code=status)


class _QuietServer(uvicorn.Server):
    # uvicorn would take over SIGINT/SIGTERM of the test process otherwise.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class ServedFakeBotApi:
    """A FakeBotApi listening on 127.0.0.1."""

    base_url: str
    fake: FakeBotApi


@contextlib.asynccontextmanager
async def serve_fake_bot_api(fake: FakeBotApi | None = None) -> AsyncIterator[ServedFakeBotApi]:
    """Serve a FakeBotApi with uvicorn on a free loopback port for the duration of the block."""
    fake = fake or FakeBotApi()
    config = uvicorn.Config(
        fake.app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", access_log=False
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # surfaces why uvicorn could not start
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield ServedFakeBotApi(base_url=f"http://127.0.0.1:{port}", fake=fake)
    finally:
        server.should_exit = True
        await task
