"""Telegram-specific pieces of the Mini App backend: initData auth and Bot API notifications."""

from __future__ import annotations

from tma_impl.telegram.bot_api import (
    DEFAULT_BOT_API_BASE_URL,
    BotApi,
    LogBotApi,
    MessageSender,
    SendOutcome,
    SendResult,
    reply_notification_text,
)
from tma_impl.telegram.initdata import (
    FUTURE_SKEW_SECONDS,
    InitData,
    InitDataError,
    TelegramUser,
    mint_init_data,
    parse_authorization_header,
    parse_init_data,
)

__all__ = [
    "DEFAULT_BOT_API_BASE_URL",
    "FUTURE_SKEW_SECONDS",
    "BotApi",
    "InitData",
    "InitDataError",
    "LogBotApi",
    "MessageSender",
    "SendOutcome",
    "SendResult",
    "TelegramUser",
    "mint_init_data",
    "parse_authorization_header",
    "parse_init_data",
    "reply_notification_text",
]
