"""Helpers for tests that look inside both backends: their databases, their traffic, their CLIs."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import func, select

from crm_impl import tables as crm
from generated.models import Problem
from integration_kit.cli import BackendCommands, main
from integration_kit.runtime import Runtime
from tests.support.faults import FaultyTransport
from tests.support.pair import CRM_TO_TMA_TOKEN, TMA_TO_CRM_TOKEN, Pair
from tma_impl import tables as tma

PROBLEM_JSON = "application/problem+json"
TICKET_NOT_KNOWN = "urn:tma-crm:problem:ticket-not-known"

Row = TypeVar("Row")

# For rules enforced before any database work (auth, body size, parsing, routing): running them
# on PostgreSQL too would only repeat the SQLite run at the cost of two fresh databases.
http_layer_only = pytest.mark.parametrize("db_kind", ["sqlite"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# What each side presents when it calls the other's /api/integration.
AS_TMA = bearer(TMA_TO_CRM_TOKEN)  # the TMA calling the CRM
AS_CRM = bearer(CRM_TO_TMA_TOKEN)  # the CRM calling the TMA


async def rows(runtime: Runtime, model: type[Row], *where: Any, order_by: Any = None) -> list[Row]:
    """Rows of `model` in a side's database, read through that side's own engine."""
    query = select(model).where(*where)
    if order_by is not None:
        query = query.order_by(order_by)
    async with runtime.db.sessions() as session:
        return list((await session.scalars(query)).all())


async def count(runtime: Runtime, model: type[Any], *where: Any) -> int:
    async with runtime.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def tma_messages(pair: Pair) -> list[tma.Message]:
    return await rows(pair.tma_runtime, tma.Message, order_by=tma.Message.seq)


async def crm_messages(pair: Pair) -> list[crm.Message]:
    return await rows(pair.crm_runtime, crm.Message, order_by=crm.Message.seq)


@dataclass(frozen=True)
class Linked:
    """One ticket known to both sides: the Mini App's id and the CRM's id of it."""

    tma_id: str
    crm_id: str


async def linked_ticket(pair: Pair, **kwargs: Any) -> Linked:
    """Open a ticket in the Mini App and let it reach the CRM."""
    ticket = await pair.open_ticket(**kwargs)
    await pair.sync()
    crm_ticket = await pair.crm_ticket_for(ticket["id"])
    return Linked(tma_id=ticket["id"], crm_id=crm_ticket["id"])


def assert_problem(response: httpx.Response, status: int, type_: str | None = None) -> Problem:
    """The response is an RFC 9457 problem of the spec's shape with this status (and type)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    problem = Problem.model_validate(response.json())
    assert problem.status == status
    if type_ is not None:
        assert problem.type == type_, problem
    return problem


@dataclass
class Exchange:
    """One request a dispatcher sent to the peer, and the answer it got (None if none came)."""

    path: str
    body: bytes
    status: int | None = None
    method: str = "POST"
    answer: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)  # as sent: signature included
    query: str = ""  # the URL's query string, as sent

    def request_json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def answer_json(self) -> dict[str, Any]:
        assert self.answer is not None
        return dict(json.loads(self.answer))


@dataclass
class Recorder(httpx.AsyncBaseTransport):
    """Sits between a FaultyTransport and the peer app and keeps every exchange."""

    inner: httpx.AsyncBaseTransport
    exchanges: list[Exchange] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = Exchange(
            path=request.url.path,
            body=await request.aread(),
            headers=dict(request.headers),
            method=request.method,
            query=request.url.query.decode(),
        )
        self.exchanges.append(exchange)
        response = await self.inner.handle_async_request(request)
        exchange.status, exchange.answer = response.status_code, await response.aread()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=exchange.answer,
            request=request,
        )

    def to(self, path: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.path == path]

    async def aclose(self) -> None:
        await self.inner.aclose()


def record(transport: FaultyTransport) -> Recorder:
    """Start recording what goes through `transport` (faults still apply in front of it)."""
    assert transport.inner is not None
    recorder = Recorder(inner=transport.inner)
    transport.inner = recorder
    return recorder


@contextmanager
def logging_left_as_found() -> Iterator[None]:
    """The command line sets up logging for its process; the test process gets its own back."""
    root, httpx_logger = logging.getLogger(), logging.getLogger("httpx")
    level, handlers, httpx_level = root.level, list(root.handlers), httpx_logger.level
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        httpx_logger.setLevel(httpx_level)


def run_cli_sync(commands: BackendCommands, argv: Sequence[str]) -> int:
    """Run a backend's real command line, as `python -m ...` would, in this process."""
    with logging_left_as_found():
        return main(commands, list(argv))


async def run_cli(commands: BackendCommands, argv: Sequence[str]) -> int:
    """The command line from async code: in a thread, since it runs its own event loop."""
    return await asyncio.to_thread(run_cli_sync, commands, argv)


def message_body(
    *,
    sender: str,
    external_ticket_id: str,
    created_at: datetime,
    ticket_id: str | None = None,
    text: str = "Hello from the other side",
    **extra: Any,
) -> dict[str, Any]:
    """A postMessage request body as the peer would send it."""
    body: dict[str, Any] = {
        "external_ticket_id": external_ticket_id,
        "external_message_id": str(uuid.uuid4()),
        "sender": sender,
        "message": text,
        "attachments": [],
        "created_at": created_at.isoformat(),
        **extra,
    }
    if ticket_id is not None:
        body["ticket_id"] = ticket_id
    return body
