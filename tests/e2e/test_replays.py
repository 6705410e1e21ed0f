"""A captured signed request replayed inside the five-minute window changes nothing, for each
operation of the contract; outside the window it is refused. No replay cache does this: the
idempotency keys do (`external_ticket_id`, the message ids, last-writer-wins status).

Each test lets the real sender deliver, keeps the exact request it sent (headers and bytes), then
sends it again to the receiver and compares both databases before and after, row by row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from crm_impl import tables as crm
from integration_kit.problems import SIGNATURE_REFUSED
from integration_kit.runtime import Runtime
from tests.e2e.helpers import Exchange, assert_problem, linked_ticket, record
from tests.support.pair import Pair
from tma_impl import tables as tma

INSIDE_WINDOW = 240  # seconds after the capture
OUTSIDE_WINDOW = 301


async def _rows(runtime: Runtime, tables: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of a side's tickets, messages and outbox, as plain tuples."""
    found = {}
    async with runtime.db.sessions() as session:
        for name, model in [
            ("tickets", tables.Ticket),
            ("messages", tables.Message),
            ("outbox", tables.Outbox),
        ]:
            table = model.__table__
            result = await session.execute(select(table).order_by(*table.primary_key.columns))
            found[name] = [tuple(row) for row in result.all()]
    return found


async def _both(pair: Pair) -> dict[str, Any]:
    return {
        "tma": await _rows(pair.tma_runtime, tma),
        "crm": await _rows(pair.crm_runtime, crm),
    }


async def _replay(app: FastAPI, exchange: Exchange) -> httpx.Response:
    """The captured request again, byte for byte, straight to the receiver's app."""
    headers = {k: v for k, v in exchange.headers.items() if k not in ("host", "content-length")}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://replay.test"
    ) as client:
        return await client.post(exchange.path, content=exchange.body, headers=headers)


def _signed_ago(pair: Pair, exchange: Exchange, seconds: int) -> None:
    """Set the clock (both sides share it) `seconds` after the moment `exchange` was signed."""
    signed_at = int(exchange.headers["webhook-timestamp"])
    pair.clock.set(datetime.fromtimestamp(signed_at + seconds, UTC))


async def _replays_change_nothing(
    pair: Pair, app: FastAPI, exchange: Exchange, **answer_changes: Any
) -> None:
    """Inside the window: the first answer again (but for `answer_changes`), with 200, and no
    row changed anywhere; outside it: 401 signature-refused, and still no row changed."""
    assert exchange.status in (200, 201), exchange.answer
    before = await _both(pair)
    _signed_ago(pair, exchange, INSIDE_WINDOW)
    again = await _replay(app, exchange)
    assert again.status_code == 200, again.text
    assert again.json() == {**exchange.answer_json(), **answer_changes}
    await pair.sync()  # a replay that had enqueued anything would send it now
    assert await _both(pair) == before
    _signed_ago(pair, exchange, OUTSIDE_WINDOW)
    late = await _replay(app, exchange)
    assert_problem(late, 401, SIGNATURE_REFUSED)
    assert await _both(pair) == before


async def test_a_replayed_create_ticket_changes_nothing(pair: Pair) -> None:
    to_crm = record(pair.to_crm)
    await pair.open_ticket()
    await pair.sync()
    [created] = to_crm.to("/api/integration/tickets")
    assert created.status == 201
    await _replays_change_nothing(pair, pair.crm_app, created)


async def test_a_replayed_message_changes_nothing_on_either_side(pair: Pair) -> None:
    """The Mini App user's message to the CRM, and the operator's reply to the TMA (whose
    replay must not notify the user on Telegram a second time)."""
    ticket = await linked_ticket(pair)
    to_crm, to_tma = record(pair.to_crm), record(pair.to_tma)
    await pair.user_writes(ticket.tma_id, "Still unpaid")
    await pair.operator_replies(ticket.crm_id, "Refunded")
    await pair.sync()
    [from_user] = to_crm.to("/api/integration/messages")
    [from_operator] = to_tma.to("/api/integration/messages")
    notified = len(pair.bot.calls)
    await _replays_change_nothing(pair, pair.crm_app, from_user)
    await _replays_change_nothing(pair, pair.tma_app, from_operator)
    assert len(pair.bot.calls) == notified == 1


async def test_a_replayed_status_change_changes_nothing_even_after_a_newer_one(
    pair: Pair,
) -> None:
    """The operator closes, then takes the ticket back in progress: a replay of the close (or
    of the newer change) is acknowledged and ignored, last writer wins."""
    ticket = await linked_ticket(pair)
    to_tma = record(pair.to_tma)
    for status in ("closed", "in_progress"):
        answer = await pair.crm.post(
            f"/api/crm/tickets/{ticket.crm_id}/status",
            json={"status": status},
            headers=pair.operator_headers,
        )
        assert answer.status_code == 200, answer.text
        await pair.sync()
    close, newer = to_tma.to("/api/integration/status")
    # Equal to the change applied: acknowledged, not applied again (the spec's wording).
    await _replays_change_nothing(pair, pair.tma_app, newer, applied=False)
    # The close's first answer said applied; its replay, now stale, must not re-apply it.
    assert close.answer_json()["applied"] is True
    _signed_ago(pair, close, INSIDE_WINDOW)
    before = await _both(pair)
    again = await _replay(pair.tma_app, close)
    assert again.status_code == 200, again.text
    assert again.json()["applied"] is False
    assert again.json()["status"] == "in_progress"
    assert await _both(pair) == before
    async with pair.tma_runtime.db.sessions() as session:
        held = await session.scalar(
            select(tma.Ticket.status).where(tma.Ticket.id == uuid.UUID(ticket.tma_id))
        )
    assert held == "in_progress"
