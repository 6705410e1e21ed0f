"""Mini App users authenticate with Telegram initData: `Authorization: tma <initData>`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from integration_kit.narrowing import narrowed
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

# Declares the scheme in the API's document; the header is checked below, not by FastAPI.
INIT_DATA = APIKeyHeader(
    name="Authorization",
    scheme_name="telegramInitData",
    description=(
        "`tma <initData>`: the launch data Telegram gives the Mini App, signed with the bot's "
        "token (https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app)."
        " Refused when older than `TMA_INIT_DATA_MAX_AGE_SECONDS` or when its user id lies "
        "outside Telegram's range."
    ),
    auto_error=False,
)


async def current_user(
    request: Request, authorization: Annotated[str | None, Security(INIT_DATA)]
) -> TelegramUser:
    """The Telegram user whose signed initData the request carries; 401 problem+json otherwise,
    429 once the user's rate limit is spent."""
    runtime = runtime_of(request)
    settings = narrowed(runtime.settings, TmaSettings)
    try:
        init_data = parse_authorization_header(authorization)
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
