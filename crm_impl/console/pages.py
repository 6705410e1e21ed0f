"""The console's pages: sign-in, the queue with a conversation, and delivery health.

Pages are Jinja2 templates (autoescaped) around a few ES modules that talk to the operator API
with the session cookie; every write carries the session's CSRF token in a header. The operator
token is only ever typed into the sign-in form: it never appears in a URL or in browser storage.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from crm_impl.operators import sessions
from crm_impl.operators.auth import (
    OperatorDep,
    operator_by_cookie,
    operator_by_token,
    same_origin,
)
from crm_impl.settings import CrmSettings
from crm_impl.tables import Operator
from integration_kit.narrowing import narrowed
from integration_kit.runtime import Runtime
from integration_kit.settings import Environment as Deployment

HERE = Path(__file__).parent
STATIC = HERE / "static"
MAX_FORM_BYTES = 4096

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def _html(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    body = templates.get_template(name).render(**context)
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


async def signed_in(request: Request) -> tuple[Operator, str] | None:
    """The console session's operator and id, or None (a page then shows the sign-in form)."""
    return await operator_by_cookie(request)


SignedIn = Annotated[tuple[Operator, str] | None, Depends(signed_in)]


def console_router(runtime: Runtime) -> APIRouter:
    settings = narrowed(runtime.settings, CrmSettings)
    router = APIRouter(prefix="/console", include_in_schema=False)
    secure = settings.environment is Deployment.production

    def set_cookie(response: Response, session_id: str) -> None:
        response.set_cookie(
            sessions.COOKIE,
            session_id,
            max_age=int(settings.console_session_hours * 3600),
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure,
        )

    def app_page(page: str, signed: tuple[Operator, str], **context: Any) -> HTMLResponse:
        operator, session_id = signed
        return _html(
            f"{page}.html",
            page=page,
            operator=operator,
            csrf=sessions.csrf_token(session_id),
            **context,
        )

    @router.get("/")
    async def home(signed: SignedIn) -> HTMLResponse:
        if signed is None:
            return _html("sign_in.html", page="sign-in")
        return app_page("queue", signed, ticket_id="")

    @router.get("/tickets/{ticket_id}")
    async def ticket(ticket_id: uuid.UUID, signed: SignedIn) -> Response:
        if signed is None:
            return RedirectResponse("/console/", status_code=303)
        return app_page("queue", signed, ticket_id=str(ticket_id))

    @router.get("/delivery")
    async def delivery(signed: SignedIn) -> Response:
        if signed is None:
            return RedirectResponse("/console/", status_code=303)
        return app_page("delivery", signed)

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        """Exchange an operator token for a session cookie (a plain form post)."""
        if not same_origin(request):
            return _html(
                "sign_in.html", 403, page="sign-in", error="Sign-in must come from this page."
            )
        raw = await request.body()
        form = parse_qs(raw[:MAX_FORM_BYTES].decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        operator = await operator_by_token(request, token) if token else None
        if operator is None:
            return _html(
                "sign_in.html",
                401,
                page="sign-in",
                error="That token is not valid, or it was revoked.",
            )
        async with runtime.db.transaction() as session:
            if previous := request.cookies.get(sessions.COOKIE):
                await sessions.end(session, previous)  # signing in again replaces a session
            session_id = await sessions.start(
                session,
                operator_id=operator.id,
                now=runtime.clock.now(),
                lifetime=timedelta(hours=settings.console_session_hours),
            )
        response = RedirectResponse("/console/", status_code=303)
        set_cookie(response, session_id)
        return response

    @router.post("/sign-out", status_code=204)
    async def sign_out(request: Request, _operator: OperatorDep) -> Response:
        """End the session (the CSRF token and Origin are checked by `OperatorDep`)."""
        session_id = request.cookies.get(sessions.COOKIE, "")
        async with runtime.db.transaction() as session:
            await sessions.end(session, session_id)
        response = Response(status_code=204)
        response.delete_cookie(
            sessions.COOKIE, path="/", httponly=True, samesite="strict", secure=secure
        )
        return response

    return router
