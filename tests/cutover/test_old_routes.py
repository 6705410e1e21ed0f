"""The audited old routes during the cut-over window: off by default; when on, authenticated by
the old deploy token only, mapped into the new model with the same rules and outbox, retries
recognised, Deprecation and Sunset on every answer, calls counted per route."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from crm_impl import tables as crm
from integration_kit.legacy_routes import LegacyRouteSettings
from tests.cutover.old_peer import OldTma
from tests.e2e.helpers import AS_CRM, AS_TMA, assert_problem, bearer, linked_ticket
from tests.support.pair import Pair, wired_pair
from tma_impl import tables as tma
from tma_impl.settings import TmaSettings

OLD_TOKEN = "old-deploy"  # short, as old tokens are: accepted with a warning
AS_OLD = bearer(OLD_TOKEN)
SUNSET = datetime(2027, 1, 31, tzinfo=UTC)
WINDOW = LegacyRouteSettings(routes_enabled=True, deploy_token=OLD_TOKEN, sunset=SUNSET)


@pytest.fixture
async def window_pair(db_kind: str, tmp_path: Path) -> AsyncIterator[Pair]:
    async with wired_pair(db_kind, tmp_path, legacy=WINDOW) as wired:
        yield wired


def _old_ticket(**change: object) -> dict[str, object]:
    return {
        "ticket_id": str(uuid.uuid4()),
        "theme": "Payment failed",
        "message": "I paid but the order is unpaid.",
        "attachments": [],
        "project": "shop",
        "external_url": "https://shop.example/orders/7",
        **change,
    }


def _deprecated(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["Deprecation"] == "@1796083200"  # 2026-12-01, RFC 9745's form
    assert headers["Sunset"] == "Sun, 31 Jan 2027 00:00:00 GMT"


async def _calls(pair: Pair, side: str) -> dict[str, float]:
    client = pair.crm if side == "crm" else pair.tma
    text = (await client.get("/metrics")).text
    found = {}
    for line in text.splitlines():
        if line.startswith("legacy_route_calls_total{"):
            route = line.split('route="', 1)[1].split('"', 1)[0]
            found[route] = float(line.rsplit(" ", 1)[1])
    return found


async def test_the_old_routes_are_off_by_default(pair: Pair) -> None:
    response = await pair.crm.post("/api/v1/support/ticket", json=_old_ticket(), headers=AS_OLD)
    assert response.status_code == 404
    response = await pair.tma.post("/api/support/webhook/message", json={}, headers=AS_OLD)
    assert response.status_code in {404, 405}
    assert await _calls(pair, "crm") == {}


async def test_crm_takes_the_old_ticket_into_the_new_model_once(window_pair: Pair) -> None:
    """The old body becomes a ticket linked to the old TMA's id with its first message;
    project and external_url kept; a retry answers 200 and stores nothing; another theme under
    the same id is a 409; the new integration token does not open the old route."""
    pair = window_pair
    body = _old_ticket()
    first = await pair.crm.post("/api/v1/support/ticket", json=body, headers=AS_OLD)
    assert first.status_code == 201, first.text
    _deprecated(first)
    retry = await pair.crm.post("/api/v1/support/ticket", json=body, headers=AS_OLD)
    assert retry.status_code == 200
    _deprecated(retry)
    other = await pair.crm.post(
        "/api/v1/support/ticket", json={**body, "theme": "Other"}, headers=AS_OLD
    )
    assert_problem(other, 409)
    _deprecated(other)
    for headers in (AS_TMA, {}):
        refused = await pair.crm.post("/api/v1/support/ticket", json=body, headers=headers)
        assert_problem(refused, 401, "urn:tma-crm:problem:unauthorized")
        _deprecated(refused)
    too_long = await pair.crm.post(
        "/api/v1/support/ticket", json=_old_ticket(theme="x" * 256), headers=AS_OLD
    )
    assert_problem(too_long, 422)
    telegram = await pair.crm.post(
        "/api/v1/support/ticket",
        json=_old_ticket(attachments=[{"url": "https://api.telegram.org/file/bot1:x/a.jpg"}]),
        headers=AS_OLD,
    )
    assert_problem(telegram, 422)

    async with pair.crm_runtime.db.sessions() as session:
        [ticket] = (await session.scalars(select(crm.Ticket))).all()
        [message] = (await session.scalars(select(crm.Message))).all()
        kept = await session.get(crm.LegacyTicketFields, ticket.id)
    assert ticket.external_id == uuid.UUID(str(body["ticket_id"]))
    assert (ticket.subject, message.body, message.sender_type) == (
        body["theme"],
        body["message"],
        "tma",
    )
    assert message.external_message_id is None  # matched by backfill, as the old rows are
    assert kept is not None
    assert (kept.project, kept.external_url) == (body["project"], body["external_url"])
    assert await _calls(pair, "crm") == {"/api/v1/support/ticket": 7}
    # The operator sees the old fields with the conversation.
    shown = await pair.crm.get(f"/api/crm/tickets/{ticket.id}", headers=pair.operator_headers)
    assert shown.json()["legacy"] == {
        "project": body["project"],
        "external_url": body["external_url"],
    }


async def test_tma_takes_old_webhooks_with_the_same_rules_and_outbox(window_pair: Pair) -> None:
    """An old operator reply is stored as a crm message and the user is notified once (outbox);
    the old CRM's retry is recognised; the old status webhook closes the ticket."""
    pair = window_pair
    linked = await linked_ticket(pair)
    reply = {"ticket_id": linked.tma_id, "message": "Fixed!", "attachments": [], "project": "x"}
    first = await pair.tma.post("/api/support/webhook/message", json=reply, headers=AS_OLD)
    assert first.status_code == 201, first.text
    _deprecated(first)
    retry = await pair.tma.post("/api/support/webhook/message", json=reply, headers=AS_OLD)
    assert retry.status_code == 200
    assert retry.json()["message_id"] == first.json()["message_id"]
    unknown = await pair.tma.post(
        "/api/support/webhook/message",
        json={**reply, "ticket_id": str(uuid.uuid4())},
        headers=AS_OLD,
    )
    assert_problem(unknown, 404)
    refused = await pair.tma.post("/api/support/webhook/message", json=reply, headers=AS_CRM)
    assert_problem(refused, 401)
    closed = await pair.tma.post(
        "/api/support/webhook/status",
        json={"ticket_id": linked.tma_id, "status": "closed"},
        headers=AS_OLD,
    )
    assert closed.status_code == 200
    _deprecated(closed)

    await pair.sync()
    assert sum("Fixed!" in str(call.text) for call in pair.bot.calls) == 1
    async with pair.tma_runtime.db.sessions() as session:
        replies = (
            await session.scalars(select(tma.Message).where(tma.Message.sender_type == "crm"))
        ).all()
        ticket = await session.get(tma.Ticket, uuid.UUID(linked.tma_id))
    assert [m.body for m in replies] == ["Fixed!"]
    assert ticket is not None
    assert ticket.status == "closed"
    # Shown in the Mini App and held in the change feed, as a delivery over the contract is.
    conversation = await pair.conversation_in_tma(linked.tma_id)
    assert [m["body"] for m in conversation["messages"] if m["sender_type"] == "crm"] == ["Fixed!"]
    assert conversation["status_changes"][-1]["status"] == "closed"
    feed = await pair.tma.get("/api/integration/changes", params={"limit": 500}, headers=AS_CRM)
    assert feed.status_code == 200, feed.text
    items = feed.json()["items"]
    assert [i["message"]["message"] for i in items if i.get("message")].count("Fixed!") == 1
    assert any(i.get("status", {}).get("status") == "closed" for i in items)
    assert await _calls(pair, "tma") == {
        "/api/support/webhook/message": 4,
        "/api/support/webhook/status": 1,
    }


def test_the_window_needs_its_token_and_sunset_and_warns_of_a_short_token(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TMA_LEGACY__ROUTES_ENABLED", "true")
    with pytest.raises(ValidationError, match="deploy_token"):
        TmaSettings()
    monkeypatch.setenv("TMA_LEGACY__DEPLOY_TOKEN", "short")
    with pytest.raises(ValidationError, match="sunset"):
        TmaSettings()
    monkeypatch.setenv("TMA_LEGACY__SUNSET", "2027-01-31T00:00:00Z")
    with caplog.at_level(logging.WARNING):
        settings = TmaSettings()
    assert settings.legacy.deploy_token == "short"
    assert "shorter than 32 characters" in caplog.text
    assert "short" not in repr(settings.legacy)


async def test_outbound_is_held_while_the_peer_is_old(window_pair: Pair) -> None:
    """Why the CRM holds its outbox while the TMA is old: the old TMA answers /api/integration
    with a plain 404, which kills an event at once. Held (the CRM's dispatcher does not run
    during the window), an operator's replies wait as pending events and reach the upgraded
    TMA once, in order, after the switch, even hours later."""
    pair = window_pair
    linked, held = await linked_ticket(pair), await linked_ticket(pair)
    old = OldTma(token=OLD_TOKEN)
    new_tma = pair.to_tma.inner
    pair.to_tma.inner = old.transport()

    # Not held: the first reply goes dead against the old TMA.
    await pair.operator_replies(linked.crm_id, "Sent while not held")
    await pair.crm_runtime.dispatcher.run_once()
    async with pair.crm_runtime.db.sessions() as session:
        first = await session.scalar(select(crm.Outbox).order_by(crm.Outbox.id).limit(1))
    assert first is not None
    assert (first.state, first.last_error) == ("dead", "HTTP 404: Not Found")
    assert old.webhooks == []

    # Held: two replies written over a long window, no dispatcher round runs.
    await pair.operator_replies(held.crm_id, "Held one")
    pair.clock.advance(6 * 3600)
    await pair.operator_replies(held.crm_id, "Held two")
    pair.clock.advance(3600)

    # The switch: the TMA is the new one again; the dispatcher starts.
    pair.to_tma.inner = new_tma
    await pair.sync()
    async with pair.tma_runtime.db.sessions() as session:
        replies = (
            await session.scalars(
                select(tma.Message.body)
                .where(
                    tma.Message.sender_type == "crm",
                    tma.Message.ticket_id == uuid.UUID(held.tma_id),
                )
                .order_by(tma.Message.seq)
            )
        ).all()
    assert replies == ["Held one", "Held two"]
