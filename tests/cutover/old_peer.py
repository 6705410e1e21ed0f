"""A test double of the audited old TMA, speaking only the audited routes and bodies.

It serves the old webhooks (`POST /api/support/webhook/message`, `.../status`), recording what
it gets, and answers 404 to everything else, as the old TMA would to `/api/integration/*`. It
opens tickets on a CRM the old way: `POST /api/v1/support/ticket` with the old deploy token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


@dataclass
class OldTma:
    token: str
    webhooks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    app: Starlette = field(init=False)

    def __post_init__(self) -> None:
        async def webhook(request: Request) -> JSONResponse:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"detail": "forbidden"}, status_code=403)
            self.webhooks.append((request.url.path, await request.json()))
            return JSONResponse({"ok": True})

        async def not_found(_request: Request) -> PlainTextResponse:
            return PlainTextResponse("Not Found", status_code=404)

        self.app = Starlette(
            routes=[
                Route("/api/support/webhook/message", webhook, methods=["POST"]),
                Route("/api/support/webhook/status", webhook, methods=["POST"]),
                Route("/{path:path}", not_found, methods=["GET", "POST"]),
            ]
        )

    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self.app)

    async def open_ticket(
        self, crm: httpx.AsyncClient, *, ticket_id: uuid.UUID, theme: str, message: str
    ) -> httpx.Response:
        """What the old TMA did when a user opened a ticket (it never sent follow-ups)."""
        body = {
            "ticket_id": str(ticket_id),
            "theme": theme,
            "message": message,
            "attachments": [],
            "project": "shop",
            "external_url": f"https://shop.example/tickets/{ticket_id}",
        }
        return await crm.post(
            "/api/v1/support/ticket", json=body, headers={"Authorization": f"Bearer {self.token}"}
        )
