"""Mini App users authenticate with Telegram initData: `Authorization: tma <initData>`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from integration_kit.narrowing import narrowed
from integration_kit.problems import UNAUTHORIZED, ProblemError
from integration_kit.runtime import runtime_of
from tma_impl.settings import TmaSettings
from tma_impl.telegram import (
    InitDataError,
    TelegramUser,
    parse_authorization_header,
    parse_init_data,
)


async def current_user(request: Request) -> TelegramUser:
    """The Telegram user whose signed initData the request carries; 401 problem+json otherwise."""
    # async, though it never awaits: FastAPI runs a plain `def` dependency in a worker thread.
    runtime = runtime_of(request)
    settings = narrowed(runtime.settings, TmaSettings)
    try:
        init_data = parse_authorization_header(request.headers.get("authorization"))
        parsed = parse_init_data(
            init_data,
            bot_token=settings.dev_bot_token,
            max_age_seconds=settings.init_data_max_age_seconds,
            now=runtime.clock.now(),
        )
    except InitDataError as exc:
        raise ProblemError(
            401,
            UNAUTHORIZED,
            "Unauthorized",
            f"Telegram initData refused: {exc.reason}.",
            headers={"WWW-Authenticate": "tma"},
        ) from None
    return parsed.user


UserDep = Annotated[TelegramUser, Depends(current_user)]
