"""Serves the Mini App: `/app/` (the page), `/app/assets/<version>/<file>`, and in development
only `/app/dev-identity` (minted initData, so the page works in an ordinary browser).

Every response of the page carries the Content-Security-Policy: no inline script, scripts from
this origin and Telegram's `telegram-web-app.js` only, requests to this origin only, and
`frame-ancestors` naming Telegram's web clients, which show a Mini App in an iframe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from integration_kit.narrowing import narrowed
from integration_kit.problems import NOT_FOUND, ProblemError
from integration_kit.runtime import Runtime
from integration_kit.settings import Environment
from tma_impl.miniapp.assets import Asset, Assets, load_assets
from tma_impl.settings import TmaSettings
from tma_impl.telegram import TelegramUser, mint_init_data

TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
# Telegram's web clients (web.telegram.org/k and /a; the older webk and webz hosts) embed the
# page in an iframe; the native apps use a web view, which frame-ancestors does not concern.
TELEGRAM_WEB_CLIENTS = (
    "https://web.telegram.org https://webk.telegram.org https://webz.telegram.org"
)
CSP = "; ".join(
    [
        "default-src 'none'",
        f"script-src 'self' {TELEGRAM_SCRIPT}",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        f"frame-ancestors 'self' {TELEGRAM_WEB_CLIENTS}",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
DEV_USER_ID = 100001


class DevIdentity(BaseModel):
    init_data: str


class DevIdentityRequest(BaseModel):
    language_code: Annotated[str, Field(max_length=35, pattern=r"^[A-Za-z-]*$")] = "en"


def _send(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {**PAGE_HEADERS, "Cache-Control": cache_control, "ETag": asset.etag}
    headers["Vary"] = "Accept-Encoding"
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.content_type, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


def miniapp_router(runtime: Runtime, assets: Assets | None = None) -> APIRouter:
    settings = narrowed(runtime.settings, TmaSettings)
    page = assets or load_assets()
    router = APIRouter(include_in_schema=False)

    @router.get("/app")
    async def without_slash() -> RedirectResponse:
        return RedirectResponse("/app/", status_code=308)

    @router.get("/app/")
    async def index(request: Request) -> Response:
        # Revalidated on every load: it names the current asset version.
        return _send(request, page.index, "no-cache")

    @router.get("/app/assets/{version}/{name}")
    async def asset(version: str, name: str, request: Request) -> Response:
        found = page.files.get(name)
        if found is None or version != page.version:
            raise ProblemError(404, NOT_FOUND, "Not found", f"No asset {version}/{name}.")
        return _send(request, found, "public, max-age=31536000, immutable")

    if settings.environment is Environment.development:
        # A development identity, like the tma.js SDK's mock environment; in production this
        # route does not exist at all (404), and the page says to open it in Telegram.
        @router.post("/app/dev-identity")
        async def dev_identity(
            body: Annotated[DevIdentityRequest, Body()] = DevIdentityRequest(),  # noqa: B008
        ) -> DevIdentity:
            user = TelegramUser(
                id=DEV_USER_ID,
                first_name="Developer",
                username="developer",
                language_code=body.language_code or "en",
            )
            now: datetime = runtime.clock.now()
            return DevIdentity(
                init_data=mint_init_data(bot_token=settings.dev_bot_token, user=user, auth_date=now)
            )

    return router
