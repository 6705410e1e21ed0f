"""Both backends wired to each other over in-process HTTP, each on its own fresh database.

The dispatchers do not run in the background here: tests call `sync()` (or a side's
`dispatcher.run_once()`) so every delivery happens at a point the test chose. The clock is a
ManualClock shared by both sides, so retry schedules are moved by `clock.advance()`, not sleeps.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from crm_impl.app import build_runtime as build_crm
from crm_impl.app import create_app as create_crm_app
from crm_impl.cli import add_operator
from crm_impl.integration.reconcile import reconcile_side as crm_reconcile_side
from crm_impl.settings import CrmSettings
from integration_kit.clock import ManualClock
from integration_kit.reconcile import Summary, reconcile
from integration_kit.runtime import Runtime
from integration_kit.signing import SigningTransport
from tests.support.databases import fresh_database
from tests.support.faults import FaultyTransport
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN, FakeBotApi
from tma_impl.app import build_runtime as build_tma
from tma_impl.app import create_app as create_tma_app
from tma_impl.integration.reconcile import reconcile_side as tma_reconcile_side
from tma_impl.settings import TmaSettings
from tma_impl.telegram import TelegramUser, mint_init_data

TMA_TO_CRM_TOKEN = "test-tma-to-crm"
CRM_TO_TMA_TOKEN = "test-crm-to-tma"
# Standard Webhooks signing secrets of each direction (whsec_ + base64 of 30 bytes).
TMA_TO_CRM_SECRET = "whsec_dGVzdCBwYWlyOiB0bWEtdG8tY3JtIHNlY3JldA=="
CRM_TO_TMA_SECRET = "whsec_dGVzdCBwYWlyOiBjcm0tdG8tdG1hIHNlY3JldA=="
WEBAPP_URL = "https://miniapp.example.test/support"


@dataclass
class Pair:
    clock: ManualClock
    tma_runtime: Runtime
    crm_runtime: Runtime
    tma_app: FastAPI
    crm_app: FastAPI
    to_crm: FaultyTransport  # what the TMA's dispatcher goes through
    to_tma: FaultyTransport  # what the CRM's dispatcher goes through
    bot: FakeBotApi
    tma: httpx.AsyncClient  # the Mini App's side: user API and integration API of the TMA
    crm: httpx.AsyncClient  # the operators' side: operator API and integration API of the CRM
    operator_token: str
    operator_name: str

    def user_headers(self, user_id: int = 4242, first_name: str = "Anna") -> dict[str, str]:
        user = TelegramUser(
            id=user_id, first_name=first_name, username="anna_test", language_code="en"
        )
        init_data = mint_init_data(bot_token=FAKE_BOT_TOKEN, user=user, auth_date=self.clock.now())
        return {"Authorization": f"tma {init_data}"}

    @property
    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}

    async def sync(self, rounds: int = 20) -> int:
        """Run both dispatchers until neither has anything due; returns events attempted."""
        total = 0
        for _ in range(rounds):
            handled = await self.tma_runtime.dispatcher.run_once()
            handled += await self.crm_runtime.dispatcher.run_once()
            total += handled
            if not handled:
                return total
        return total

    async def reconcile(self, side: str, **options: Any) -> Summary:
        """`python -m <side>_impl reconcile` in-process: reads the other side's feed."""
        if side == "tma":
            runtime = self.tma_runtime
            return await reconcile(runtime, tma_reconcile_side(outbox=runtime.outbox), **options)
        runtime = self.crm_runtime
        side_ = crm_reconcile_side(outbox=runtime.outbox, clock=runtime.clock)
        return await reconcile(runtime, side_, **options)

    # --- conveniences for the flows most tests need -----------------------------------------

    async def open_ticket(
        self,
        subject: str = "Payment failed",
        message: str = "I paid but the order is unpaid.",
        user_id: int = 4242,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body = {
            "id": str(uuid.uuid4()),
            "subject": subject,
            "message": message,
            "message_id": str(uuid.uuid4()),
            "attachments": attachments or [],
        }
        response = await self.tma.post(
            "/api/support/tickets", json=body, headers=self.user_headers(user_id)
        )
        assert response.status_code == 201, response.text
        return {**response.json(), "first_message_id": body["message_id"]}

    async def user_writes(self, ticket_id: str, text: str, user_id: int = 4242) -> dict[str, Any]:
        response = await self.tma.post(
            f"/api/support/tickets/{ticket_id}/messages",
            json={"id": str(uuid.uuid4()), "message": text},
            headers=self.user_headers(user_id),
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def operator_replies(self, crm_ticket_id: str, text: str) -> dict[str, Any]:
        response = await self.crm.post(
            f"/api/crm/tickets/{crm_ticket_id}/messages",
            json={"message": text},
            headers=self.operator_headers,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def crm_ticket_for(self, tma_ticket_id: str) -> dict[str, Any]:
        """The CRM's view of the ticket the Mini App knows as `tma_ticket_id`."""
        response = await self.crm.get("/api/crm/tickets?limit=200", headers=self.operator_headers)
        assert response.status_code == 200, response.text
        matches = [t for t in response.json() if t["external_id"] == tma_ticket_id]
        assert len(matches) == 1, f"CRM has {len(matches)} tickets for {tma_ticket_id}"
        return dict(matches[0])

    async def conversation_in_crm(self, crm_ticket_id: str) -> dict[str, Any]:
        response = await self.crm.get(
            f"/api/crm/tickets/{crm_ticket_id}", headers=self.operator_headers
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def conversation_in_tma(self, ticket_id: str, user_id: int = 4242) -> dict[str, Any]:
        response = await self.tma.get(
            f"/api/support/tickets/{ticket_id}", headers=self.user_headers(user_id)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


@asynccontextmanager
async def wired_pair(
    kind: str,
    tmp_path: Path,
    *,
    database: Callable[[str, str, Path], AbstractAsyncContextManager[str]] = fresh_database,
    **settings: Any,
) -> AsyncIterator[Pair]:
    """Both backends on fresh `kind` databases (or what `database` gives), wired to each other
    and to a fake Bot API."""
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0), tick_seconds=0.001)
    async with (
        database(kind, "tma", tmp_path) as tma_url,
        database(kind, "crm", tmp_path) as crm_url,
    ):
        to_crm, to_tma, bot = FaultyTransport(), FaultyTransport(), FakeBotApi()
        tma_runtime = build_tma(
            TmaSettings(
                database_url=tma_url,
                inbound_tokens=[CRM_TO_TMA_TOKEN],
                peer_url="http://crm.test",
                peer_token=TMA_TO_CRM_TOKEN,
                inbound_signing_secrets=[CRM_TO_TMA_SECRET],
                peer_signing_secret=TMA_TO_CRM_SECRET,
                bot_token=FAKE_BOT_TOKEN,
                bot_api_base_url="http://bot.test",
                webapp_url=WEBAPP_URL,
                **settings,
            ),
            clock=clock,
            peer_transport=to_crm,
            bot_transport=bot.transport(),
        )
        crm_runtime = build_crm(
            CrmSettings(
                database_url=crm_url,
                inbound_tokens=[TMA_TO_CRM_TOKEN],
                peer_url="http://tma.test",
                peer_token=CRM_TO_TMA_TOKEN,
                inbound_signing_secrets=[TMA_TO_CRM_SECRET],
                peer_signing_secret=CRM_TO_TMA_SECRET,
                **settings,
            ),
            clock=clock,
            peer_transport=to_tma,
        )
        tma_runtime.run_dispatcher = crm_runtime.run_dispatcher = False
        tma_app, crm_app = create_tma_app(tma_runtime), create_crm_app(crm_runtime)
        to_crm.inner = httpx.ASGITransport(app=crm_app)
        to_tma.inner = httpx.ASGITransport(app=tma_app)
        operator, token = await add_operator(crm_runtime.db, "Maria", now=clock.now())
        # Tests call one side's /api/integration as the other side would: signed with the
        # caller's secret (read per request, so a test may rotate it).
        async with (
            httpx.AsyncClient(
                transport=SigningTransport(
                    httpx.ASGITransport(app=tma_app),
                    secret=lambda: crm_runtime.settings.peer_signing_secret,
                    clock=clock,
                ),
                base_url="http://tma.test",
            ) as tma,
            httpx.AsyncClient(
                transport=SigningTransport(
                    httpx.ASGITransport(app=crm_app),
                    secret=lambda: tma_runtime.settings.peer_signing_secret,
                    clock=clock,
                ),
                base_url="http://crm.test",
            ) as crm,
        ):
            pair = Pair(
                clock=clock,
                tma_runtime=tma_runtime,
                crm_runtime=crm_runtime,
                tma_app=tma_app,
                crm_app=crm_app,
                to_crm=to_crm,
                to_tma=to_tma,
                bot=bot,
                tma=tma,
                crm=crm,
                operator_token=token,
                operator_name=operator.name,
            )
            try:
                yield pair
            finally:
                await tma_runtime.close()
                await crm_runtime.close()
