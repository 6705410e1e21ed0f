"""Tests for the Bot API client, against the fake Bot API in-process and over loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.tma_impl.telegram.fake_bot_api import (
    BLOCKED,
    CHAT_NOT_FOUND,
    FAKE_BOT_TOKEN,
    SERVER_ERROR,
    FakeBotApi,
    serve_fake_bot_api,
    too_many_requests,
)
from tma_impl.telegram import BotApi, LogBotApi, SendResult, reply_notification_text

BASE_URL = "http://telegram.test"
TOKEN_SECRET = FAKE_BOT_TOKEN.split(":", 1)[1]
CHAT = 4242
OPEN_URL = "https://tma.example.com/support/tickets/7"


def assert_no_token(text: str) -> None:
    assert FAKE_BOT_TOKEN not in text
    assert TOKEN_SECRET not in text


@pytest.fixture
def fake() -> FakeBotApi:
    return FakeBotApi()


@pytest.fixture
async def bot(fake: FakeBotApi) -> AsyncIterator[BotApi]:
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        yield BotApi(http=http, base_url=BASE_URL, token=FAKE_BOT_TOKEN)


async def send(bot: BotApi, chat_id: int = CHAT, open_url: str | None = None) -> SendResult:
    return await bot.send_message(
        chat_id=chat_id, text="hello", open_url=open_url, button_text="Open"
    )


async def test_sent(bot: BotApi, fake: FakeBotApi) -> None:
    result = await send(bot)

    assert result == SendResult(outcome="sent", status_code=200, message_id=1)
    [call] = fake.calls
    assert (call.token, call.chat_id, call.text, call.reply_markup) == (
        FAKE_BOT_TOKEN,
        CHAT,
        "hello",
        None,
    )


async def test_button_opens_the_mini_app(bot: BotApi, fake: FakeBotApi) -> None:
    await bot.send_message(chat_id=CHAT, text="hi", open_url=OPEN_URL, button_text="Open ticket")

    assert fake.calls[0].reply_markup == {
        "inline_keyboard": [[{"text": "Open ticket", "web_app": {"url": OPEN_URL}}]]
    }


async def test_429_is_retried_after_the_delay_telegram_asks(bot: BotApi, fake: FakeBotApi) -> None:
    fake.script(CHAT, [too_many_requests(17)])

    result = await send(bot)

    assert result.outcome == "retry"
    assert result.retry_after_seconds == 17
    assert result.status_code == 429
    assert result.description == "Too Many Requests: retry after 17"
    assert (await send(bot)).outcome == "sent"  # script used up: ok again


async def test_blocked_bot_gives_up(bot: BotApi, fake: FakeBotApi) -> None:
    fake.script(CHAT, [BLOCKED])

    result = await send(bot)

    assert result == SendResult(
        outcome="gave_up", status_code=403, description="Forbidden: bot was blocked by the user"
    )


async def test_unknown_chat_gives_up(bot: BotApi, fake: FakeBotApi) -> None:
    fake.script(CHAT, [CHAT_NOT_FOUND])
    result = await send(bot)
    assert (result.outcome, result.description) == ("gave_up", "Bad Request: chat not found")


async def test_server_error_is_retried(bot: BotApi, fake: FakeBotApi) -> None:
    fake.script(CHAT, [SERVER_ERROR])

    result = await send(bot)

    assert (result.outcome, result.status_code, result.retry_after_seconds) == ("retry", 500, None)


async def test_wrong_token_gives_up_without_leaking_either_token(fake: FakeBotApi) -> None:
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        result = await send(BotApi(http=http, base_url=BASE_URL, token="1:WrongSecret"))

    assert (result.outcome, result.status_code) == ("gave_up", 401)
    assert "WrongSecret" not in repr(result)


async def test_connection_refused_is_retried_without_the_token() -> None:
    # A bound socket that never listens refuses connections, and no one else can take its port.
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        port = closed_port.getsockname()[1]
        async with httpx.AsyncClient(trust_env=False) as http:
            bot = BotApi(http=http, base_url=f"http://127.0.0.1:{port}", token=FAKE_BOT_TOKEN)
            result = await send(bot)

    assert result.outcome == "retry"
    assert result.retry_after_seconds is None
    assert result.status_code is None
    assert result.description is not None
    assert result.description.startswith("ConnectError")
    assert_no_token(repr(result))


def raising(exc_type: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        # Some transports name the URL in their errors; the URL holds the token.
        raise exc_type(f"failed POST {request.url}", request=request)

    return handler


@pytest.mark.parametrize(
    "exc_type",
    [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.ConnectError, httpx.RemoteProtocolError],
)
async def test_transport_errors_are_retried_and_redacted(
    exc_type: type[httpx.TransportError],
) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(raising(exc_type))) as http:
        result = await send(BotApi(http=http, base_url=BASE_URL, token=FAKE_BOT_TOKEN))

    assert result.outcome == "retry"
    assert result.description == (
        f"{exc_type.__name__}: failed POST {BASE_URL}/bot<token>/sendMessage"
    )


async def test_unsupported_scheme_gives_up_and_is_redacted() -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        result = await send(BotApi(http=http, base_url="ftp://telegram.test", token=FAKE_BOT_TOKEN))

    assert result.outcome == "gave_up"
    assert_no_token(repr(result))


def answering(response: httpx.Response) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: response)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            httpx.Response(429, headers={"Retry-After": "9"}, json={"ok": False}),
            SendResult(outcome="retry", status_code=429, retry_after_seconds=9),
        ),
        (
            httpx.Response(429, text="slow down"),
            SendResult(outcome="retry", status_code=429),
        ),
        (
            httpx.Response(502, text="<html>Bad Gateway</html>"),
            SendResult(outcome="retry", status_code=502),
        ),
        (
            httpx.Response(408, json={"ok": False, "description": "Request Timeout"}),
            SendResult(outcome="retry", status_code=408, description="Request Timeout"),
        ),
        (
            httpx.Response(200, text="not json"),
            SendResult(
                outcome="retry", status_code=200, description="unexpected response (HTTP 200)"
            ),
        ),
        (
            httpx.Response(
                400, json={"ok": False, "description": "Bad Request: message is too long"}
            ),
            SendResult(
                outcome="gave_up", status_code=400, description="Bad Request: message is too long"
            ),
        ),
        (
            httpx.Response(400, json={"ok": False, "description": f"echo {FAKE_BOT_TOKEN}"}),
            SendResult(outcome="gave_up", status_code=400, description="echo <token>"),
        ),
    ],
)
async def test_odd_responses(response: httpx.Response, expected: SendResult) -> None:
    async with httpx.AsyncClient(transport=answering(response)) as http:
        result = await send(BotApi(http=http, base_url=BASE_URL, token=FAKE_BOT_TOKEN))
    assert result == expected


async def test_token_stays_out_of_logs(
    bot: BotApi, fake: FakeBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The CLI quiets httpx to WARNING; a test that ran a command before must not hide it here.
    caplog.set_level(logging.DEBUG, logger="httpx")
    fake.script(CHAT, [BLOCKED, SERVER_ERROR])

    for _ in range(3):
        await send(bot)

    # httpx logs each request's URL at INFO; the URL was there, redacted.
    assert any("/bot<token>/sendMessage" in message for message in caplog.messages)
    assert "hello" not in caplog.text
    assert_no_token(caplog.text)
    assert_no_token(repr(bot))


async def test_log_bot_api_logs_ids_not_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    result = await LogBotApi().send_message(
        chat_id=CHAT, text="secret body", open_url=OPEN_URL, button_text="Open"
    )

    assert result == SendResult(outcome="sent")
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert f"chat_id={CHAT}" in record.getMessage()
    assert "length=11" in record.getMessage()
    assert "secret body" not in caplog.text


async def test_over_loopback_http() -> None:
    fake = FakeBotApi()
    fake.script(2, [too_many_requests(3)])
    fake.script(3, [BLOCKED])
    async with (
        serve_fake_bot_api(fake) as served,
        httpx.AsyncClient(trust_env=False, timeout=5) as http,
    ):
        assert served.base_url.startswith("http://127.0.0.1:")
        bot = BotApi(http=http, base_url=served.base_url, token=FAKE_BOT_TOKEN)
        results = [await send(bot, chat_id, OPEN_URL) for chat_id in (1, 2, 3, 2)]
        async with asyncio.timeout(5):
            calls = await served.fake.wait_for_calls(4)

    assert [r.outcome for r in results] == ["sent", "retry", "gave_up", "sent"]
    assert results[1].retry_after_seconds == 3
    assert [call.chat_id for call in calls] == [1, 2, 3, 2]
    assert [call.answered for call in calls] == ["ok", "too_many_requests", "blocked", "ok"]
    assert calls[0].reply_markup["inline_keyboard"][0][0]["web_app"] == {"url": OPEN_URL}
    assert {call.token for call in calls} == {FAKE_BOT_TOKEN}


def test_reply_notification_text() -> None:
    text = reply_notification_text(subject="Payment failed", operator_name="Dana", body=" Hi!\n")
    assert text == "New reply from Dana on “Payment failed”:\n\nHi!"


def test_reply_notification_text_without_operator() -> None:
    text = reply_notification_text(subject="Login", operator_name="  ", body="Fixed.")
    assert text.startswith("New reply from Support on “Login”")


def test_reply_notification_text_stays_short() -> None:
    text = reply_notification_text(subject="s" * 255, operator_name="o" * 500, body="b" * 4096)

    assert len(text) < 1500
    assert text.endswith("b…")
    assert "o" * 64 not in text


async def test_fake_lets_tests_wait_for_background_sends(bot: BotApi, fake: FakeBotApi) -> None:
    sending = asyncio.create_task(send(bot))
    async with asyncio.timeout(5):
        [call] = await fake.wait_for_calls(1)
    assert call.chat_id == CHAT
    assert (await sending).outcome == "sent"
