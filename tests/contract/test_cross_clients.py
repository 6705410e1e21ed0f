"""Each side's generated client against the other side's server, in-process over ASGI.

The client the TMA uses (`generated.client.api.crm`) calls the CRM app; the client the CRM uses
(`generated.client.api.tma`) calls the TMA app. Every operation round-trips into the generated
answer models, and every error the spec lists (401, 403, 404, 409, 413, 422) parses into the
generated `Problem` model, so neither side is surprised by what the other sends back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_impl.app import build_runtime as build_crm
from crm_impl.app import create_app as create_crm_app
from crm_impl.settings import CrmSettings
from generated.client import AuthenticatedClient
from generated.client.api import crm as crm_api
from generated.client.api import tma as tma_api
from generated.client.models import (
    Attachment,
    CreateTicketRequest,
    Customer,
    MessageAccepted,
    MessageRequest,
    Problem,
    SenderType,
    StatusAccepted,
    StatusRequest,
    TicketAccepted,
    TicketStatus,
)
from integration_kit.clock import SystemClock
from integration_kit.peer import make_peer_client
from tests.contract.harness import BASE_URLS, SECRETS, TOKENS, WRONG_TOKEN, backend_settings
from tests.contract.seeding import SEEDED, Side, seed
from tests.support.databases import fresh_database
from tma_impl.app import build_runtime as build_tma
from tma_impl.app import create_app as create_tma_app
from tma_impl.settings import TmaSettings

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


async def _serve(side: Side, db_kind: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    async with fresh_database(db_kind, side, tmp_path) as url:
        settings = backend_settings(side, url)
        if isinstance(settings, CrmSettings):
            runtime = build_crm(settings)
            app = create_crm_app(runtime)
        else:
            assert isinstance(settings, TmaSettings)
            runtime = build_tma(settings)
            app = create_tma_app(runtime)
        runtime.run_dispatcher = False
        await seed(side, runtime.db)
        try:
            yield app
        finally:
            await runtime.close()


@pytest.fixture
async def crm_app(db_kind: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    async for app in _serve("crm", db_kind, tmp_path):
        yield app


@dataclass
class Server:
    """One side's app, and the generated client module its peer calls it with."""

    side: Side
    app: FastAPI
    api: ModuleType


@pytest.fixture(params=["crm", "tma"])
async def server(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> AsyncIterator[Server]:
    side: Side = request.param
    async for app in _serve(side, db_kind, tmp_path):
        yield Server(side, app, crm_api if side == "crm" else tma_api)


def _client(app: FastAPI, side: Side, token: str | None = None) -> AuthenticatedClient:
    """The generated client as the peer builds it (`make_peer_client`), wired to `app`."""
    return make_peer_client(
        base_url=BASE_URLS[side],
        token=token or TOKENS[side],
        timeout_seconds=10,
        signing_secret=lambda: SECRETS[side],
        clock=SystemClock(),  # the app's own clock: build_runtime's default
        transport=httpx.ASGITransport(app=app),
    )


def _problem(response: Any, status: int, type_: str) -> Problem:
    assert response.status_code == status, response.content
    problem = response.parsed
    assert isinstance(problem, Problem), response.content
    assert (problem.status, problem.type_) == (status, type_)
    assert problem.title
    return problem


def _ticket(**changes: Any) -> CreateTicketRequest:
    request = CreateTicketRequest(
        external_ticket_id=uuid.uuid4(),
        subject="Payment did not go through",
        message="I paid for the order but it still says unpaid.",
        external_message_id=uuid.uuid4(),
        customer=Customer(telegram_user_id=123456789, first_name="Anna", username="anna_iv"),
        created_at=NOW,
        attachments=[
            Attachment(
                url="https://files.example.com/u/42/receipt.png",
                file_name="receipt.png",
                mime_type="image/png",
                size=48213,
            )
        ],
    )
    for name, value in changes.items():
        setattr(request, name, value)
    return request


def _message(side: Side, ticket_index: int = 0, **changes: Any) -> MessageRequest:
    """A message to `side` on one of its seeded tickets, from the side that calls it."""
    ticket = SEEDED[side][ticket_index]
    request = MessageRequest(
        ticket_id=ticket.receiver_id,
        external_ticket_id=ticket.sender_id,
        external_message_id=uuid.uuid4(),
        sender=SenderType.TMA if side == "crm" else SenderType.CRM,
        message="Thanks, we see the payment.",
        created_at=NOW,
    )
    if side == "tma":
        request.operator_name = "Maria"
    for name, value in changes.items():
        setattr(request, name, value)
    return request


def _status(
    side: Side, status: TicketStatus, changed_at: datetime, index: int = 0
) -> StatusRequest:
    ticket = SEEDED[side][index]
    return StatusRequest(
        ticket_id=ticket.receiver_id,
        external_ticket_id=ticket.sender_id,
        status=status,
        changed_at=changed_at,
    )


async def test_the_tma_client_opens_a_ticket_in_the_crm_once(crm_app: FastAPI) -> None:
    """createTicket: 201, a replay 200 with the same ids, another body under the same id 409."""
    async with _client(crm_app, "crm") as client:
        request = _ticket()
        first = await crm_api.create_ticket.asyncio_detailed(client=client, body=request)
        assert first.status_code == 201
        created = first.parsed
        assert isinstance(created, TicketAccepted)
        assert created.external_ticket_id == request.external_ticket_id
        assert created.status == TicketStatus.OPEN

        replay = await crm_api.create_ticket.asyncio_detailed(client=client, body=request)
        assert replay.status_code == 200
        assert replay.parsed == created

        changed = _ticket(external_ticket_id=request.external_ticket_id, subject="Other")
        conflict = await crm_api.create_ticket.asyncio_detailed(client=client, body=changed)
        _problem(conflict, 409, "urn:tma-crm:problem:idempotency-conflict")


async def test_messages_round_trip_with_every_documented_error(server: Server) -> None:
    """postMessage: 201, replay 200, and 403, 404, 409, 413, 422 as parsed Problems."""
    side, app, api = server.side, server.app, server.api
    async with _client(app, side) as client:
        request = _message(side)
        stored = await api.post_message.asyncio_detailed(client=client, body=request)
        assert stored.status_code == 201
        answer = stored.parsed
        assert isinstance(answer, MessageAccepted)
        assert (answer.ticket_id, answer.external_message_id) == (
            request.ticket_id,
            request.external_message_id,
        )
        replay = await api.post_message.asyncio_detailed(client=client, body=request)
        assert (replay.status_code, replay.parsed) == (200, answer)

        async def send(body: MessageRequest) -> Any:
            return await api.post_message.asyncio_detailed(client=client, body=body)

        reused = _message(side, external_message_id=request.external_message_id, message="Other")
        _problem(await send(reused), 409, "urn:tma-crm:problem:idempotency-conflict")
        mixed = _message(side, ticket_id=SEEDED[side][1].receiver_id)
        _problem(await send(mixed), 409, "urn:tma-crm:problem:ticket-link-conflict")
        other_side = SenderType.CRM if side == "crm" else SenderType.TMA
        _problem(
            await send(_message(side, sender=other_side)),
            403,
            "urn:tma-crm:problem:forbidden-sender",
        )
        unknown = _message(side, ticket_id=uuid.uuid4(), external_ticket_id=uuid.uuid4())
        _problem(await send(unknown), 404, "urn:tma-crm:problem:ticket-not-known")
        too_long = _message(side, message="x" * 4097)
        problem = _problem(await send(too_long), 422, "urn:tma-crm:problem:validation")
        assert [error.loc for error in problem.errors or []] == [["body", "message"]]
        too_large = _message(side, message="x" * (1024 * 1024 + 1))
        _problem(await send(too_large), 413, "urn:tma-crm:problem:payload-too-large")


async def test_status_changes_round_trip_with_every_documented_error(server: Server) -> None:
    """postStatus: applied, an older change acknowledged but ignored, 404, 409, 422."""
    side, app, api = server.side, server.app, server.api
    async with _client(app, side) as client:

        async def send(body: StatusRequest) -> Any:
            return await api.post_status.asyncio_detailed(client=client, body=body)

        closed = await send(_status(side, TicketStatus.CLOSED, NOW))
        assert closed.status_code == 200
        assert closed.parsed == StatusAccepted(
            ticket_id=SEEDED[side][0].receiver_id,
            status=TicketStatus.CLOSED,
            status_changed_at=NOW,
            applied=True,
        )
        older = await send(_status(side, TicketStatus.IN_PROGRESS, NOW - timedelta(minutes=1)))
        assert older.status_code == 200
        assert isinstance(older.parsed, StatusAccepted)
        assert (older.parsed.applied, older.parsed.status) == (False, TicketStatus.CLOSED)

        unknown = _status(side, TicketStatus.OPEN, NOW)
        unknown.ticket_id, unknown.external_ticket_id = uuid.uuid4(), uuid.uuid4()
        _problem(await send(unknown), 404, "urn:tma-crm:problem:ticket-not-known")
        mixed = _status(side, TicketStatus.OPEN, NOW, index=1)
        mixed.external_ticket_id = SEEDED[side][2].sender_id
        _problem(await send(mixed), 409, "urn:tma-crm:problem:ticket-link-conflict")
        naive = _status(side, TicketStatus.OPEN, datetime(2026, 11, 27, 10, 0))  # no offset
        problem = _problem(await send(naive), 422, "urn:tma-crm:problem:validation")
        assert [error.loc for error in problem.errors or []] == [["body", "changed_at"]]


async def test_a_wrong_token_is_a_parsed_401_on_every_operation(server: Server) -> None:
    """Every operation of each side answers a wrong token with a 401 Problem."""
    side, app, api = server.side, server.app, server.api
    async with _client(app, side, token=WRONG_TOKEN) as client:
        answers = [
            await api.post_message.asyncio_detailed(client=client, body=_message(side)),
            await api.post_status.asyncio_detailed(
                client=client, body=_status(side, TicketStatus.CLOSED, NOW)
            ),
        ]
        if side == "crm":
            answers.append(
                await crm_api.create_ticket.asyncio_detailed(client=client, body=_ticket())
            )
    for answer in answers:
        _problem(answer, 401, "urn:tma-crm:problem:unauthorized")
        assert answer.headers["www-authenticate"].startswith("Bearer")
