"""Mini App users authenticate with Telegram initData: `Authorization: tma <initData>`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from integration_kit.problems import UNAUTHORIZED, ProblemError
from integration_kit.runtime import runtime_of
from integration_kit.throttle import USER_SCOPE, enforce_rate_limit
from tma_impl.settings import TmaSettings
from tma_impl.telegram import (
    InitDataError,
    TelegramUser,
    parse_authorization_header,
    parse_init_data,
)


async def current_user(request: Request) -> TelegramUser:
    """The Telegram user whose signed initData the request carries; 401 problem+json otherwise,
    429 once the user's rate limit is spent."""
    # async, though it never awaits: FastAPI runs a plain `def` dependency in a worker thread.
    runtime = runtime_of(request)
    settings = runtime.settings
    assert isinstance(settings, TmaSettings)
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
    # After authentication: the budget is the user's, and a forged header spends nobody's.
    await enforce_rate_limit(request, scope=USER_SCOPE, key=str(parsed.user.id))
    return parsed.user


UserDep = Annotated[TelegramUser, Depends(current_user)]
