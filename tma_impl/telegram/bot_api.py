"""Telegram Bot API client for the notifications the TMA sends to its users."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeGuard
from urllib.parse import quote

import httpx

__all__ = [
    "DEFAULT_BOT_API_BASE_URL",
    "BotApi",
    "LogBotApi",
    "MessageSender",
    "SendOutcome",
    "SendResult",
    "reply_notification_text",
]

DEFAULT_BOT_API_BASE_URL = "https://api.telegram.org"

_REDACTED = "<token>"
# Statuses that say "not now" rather than "never"; the rest of 4xx never succeed on retry.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})
_BODY_LIMIT = 1000
_SUBJECT_LIMIT = 255
_OPERATOR_LIMIT = 64

logger = logging.getLogger(__name__)

SendOutcome = Literal["sent", "retry", "gave_up"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one sendMessage call; never carries the bot token."""

    outcome: SendOutcome
    retry_after_seconds: int | None = None
    status_code: int | None = None
    description: str | None = None
    message_id: int | None = None


class MessageSender(Protocol):
    """Anything that can deliver a notification to a Telegram chat."""

    async def send_message(
        self, *, chat_id: int, text: str, open_url: str | None, button_text: str
    ) -> SendResult: ...


class BotApi:
    """sendMessage over the Telegram Bot API."""

    def __init__(self, *, http: httpx.AsyncClient, base_url: str, token: str) -> None:
        if not token:
            raise ValueError("a bot token is required")
        self._http = http
        self._token = token
        self._url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"
        # httpx logs every request URL at INFO, and this URL holds the token.
        _httpx_redactor.add(token)

    def __repr__(self) -> str:
        return "BotApi(token=<token>)"

    async def send_message(
        self, *, chat_id: int, text: str, open_url: str | None, button_text: str
    ) -> SendResult:
        """Send text to chat_id, with a button opening open_url in the Mini App if given."""
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if open_url is not None:
            payload["reply_markup"] = {
                "inline_keyboard": [[{"text": button_text, "web_app": {"url": open_url}}]]
            }
        try:
            response = await self._http.post(self._url, json=payload)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            # A misconfigured base URL: retrying cannot help.
            result = SendResult(outcome="gave_up", description=self._describe(exc))
        except httpx.RequestError as exc:
            # Network trouble, timeouts, a garbled response: Telegram may do better next time.
            result = SendResult(outcome="retry", description=self._describe(exc))
        else:
            result = self._interpret(response)
        self._log(chat_id, result)
        return result

    def _interpret(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = _json_object(response)
        description = body.get("description")
        description = self._redact(description) if isinstance(description, str) else None
        if 200 <= status < 300 and body.get("ok") is True:
            result = body.get("result")
            message_id = result.get("message_id") if isinstance(result, dict) else None
            return SendResult(
                outcome="sent",
                status_code=status,
                message_id=message_id if _is_int(message_id) else None,
            )
        if status == 429:
            return SendResult(
                outcome="retry",
                status_code=status,
                retry_after_seconds=_retry_after(body, response),
                description=description,
            )
        if status >= 500 or status in _RETRYABLE_CLIENT_STATUSES:
            return SendResult(outcome="retry", status_code=status, description=description)
        if 400 <= status < 500:
            return SendResult(outcome="gave_up", status_code=status, description=description)
        # A 2xx without ok=true, or a redirect: a proxy in the way, most likely passing.
        return SendResult(
            outcome="retry",
            status_code=status,
            description=description or f"unexpected response (HTTP {status})",
        )

    def _describe(self, exc: Exception) -> str:
        detail = self._redact(str(exc))
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__

    def _redact(self, text: str) -> str:
        return _redact(text, self._token)

    def _log(self, chat_id: int, result: SendResult) -> None:
        if result.outcome == "sent":
            logger.debug("telegram notification sent chat_id=%s", chat_id)
        else:
            logger.warning(
                "telegram notification %s chat_id=%s status=%s retry_after=%s description=%s",
                result.outcome,
                chat_id,
                result.status_code,
                result.retry_after_seconds,
                result.description,
            )


class LogBotApi:
    """Stand-in for BotApi when no bot token is configured: notifications go to the log."""

    async def send_message(
        self, *, chat_id: int, text: str, open_url: str | None, button_text: str
    ) -> SendResult:
        """Log that a notification would be sent, without its text."""
        logger.info(
            "telegram notification (no bot token, logged only) chat_id=%s length=%d button=%s",
            chat_id,
            len(text),
            open_url is not None,
        )
        return SendResult(outcome="sent")


def reply_notification_text(*, subject: str, operator_name: str | None, body: str) -> str:
    """Text of the Telegram message telling a user that support replied."""
    who = _truncate(" ".join((operator_name or "").split()), _OPERATOR_LIMIT) or "Support"
    title = _truncate(" ".join(subject.split()), _SUBJECT_LIMIT)
    return f"New reply from {who} on “{title}”:\n\n{_truncate(body.strip(), _BODY_LIMIT)}"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(body: dict[str, Any], response: httpx.Response) -> int | None:
    parameters = body.get("parameters")
    if isinstance(parameters, dict):
        value = parameters.get("retry_after")
        if _is_int(value) and value >= 0:
            return value
    header = response.headers.get("retry-after", "")
    return int(header) if header.isascii() and header.isdigit() else None


def _redact(text: str, token: str) -> str:
    for form in {token, quote(token, safe="")}:
        text = text.replace(form, _REDACTED)
    return text


class _TokenRedactingFilter(logging.Filter):
    """Removes bot tokens from records of the logger it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self._tokens: set[str] = set()
        self._lock = threading.Lock()

    def add(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)

    def filter(self, record: logging.LogRecord) -> bool:
        tokens = tuple(self._tokens)
        if not tokens:
            return True
        try:
            message = record.getMessage()
        except Exception:
            # A malformed record is the logging machinery's to report, not ours to raise.
            return True
        redacted = message
        for token in tokens:
            redacted = _redact(redacted, token)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_httpx_redactor = _TokenRedactingFilter()
logging.getLogger("httpx").addFilter(_httpx_redactor)
