"""The seven audit items of docs/design.md §2: each test fails if its bug comes back."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import inspect, select

from crm_impl import tables as crm
from generated import models
from integration_kit.runtime import Runtime
from tests.e2e.helpers import (
    AS_CRM,
    AS_TMA,
    assert_problem,
    count,
    crm_messages,
    http_layer_only,
    linked_ticket,
    message_body,
    record,
    rows,
    tma_messages,
)
from tests.support.pair import Pair
from tests.support.spec import operations, served_by
from tma_impl import tables as tma

ROOT = Path(__file__).resolve().parents[2]
INTEGRATION = "/api/integration"


# --- 1. both sides store each other's ticket id ---------------------------------------------


async def test_audit_1_each_side_stores_the_others_ticket_id(pair: Pair) -> None:
    """The TMA's tickets.external_id is the CRM's ticket id, and the CRM's is the TMA's."""
    ticket = await pair.open_ticket()
    await pair.sync()

    [tma_ticket] = await rows(pair.tma_runtime, tma.Ticket)
    [crm_ticket] = await rows(pair.crm_runtime, crm.Ticket)
    assert str(tma_ticket.id) == ticket["id"]
    assert tma_ticket.external_id == crm_ticket.id
    assert crm_ticket.external_id == tma_ticket.id
    assert (await pair.conversation_in_tma(ticket["id"]))["ticket"]["synced"] is True


# --- 2. both sides store each other's message ids; a re-sent message is stored once ---------


async def test_audit_2_each_side_stores_the_others_message_ids(pair: Pair) -> None:
    """Every message, whichever side wrote it, carries the other side's id of it on both sides."""
    linked = await linked_ticket(pair)
    await pair.operator_replies(linked.crm_id, "Looking into it.")
    await pair.user_writes(linked.tma_id, "Thanks!")
    await pair.sync()

    in_tma, in_crm = await tma_messages(pair), await crm_messages(pair)
    assert len(in_tma) == len(in_crm) == 3
    tma_by_id = {m.id: m for m in in_tma}
    for crm_message in in_crm:
        tma_message = tma_by_id[crm_message.external_message_id]  # the CRM knows the TMA's id
        assert tma_message.external_message_id == crm_message.id  # and the TMA the CRM's
        assert (tma_message.sender_type, tma_message.body) == (
            crm_message.sender_type,
            crm_message.body,
        )


@pytest.mark.parametrize("direction", ["tma_to_crm", "crm_to_tma"])
async def test_audit_2_a_resent_message_is_stored_once(pair: Pair, direction: str) -> None:
    """Replaying the exact postMessage body answers 200 with the same message id, no new row;
    reusing its id with another body answers 409."""
    to_crm, to_tma = record(pair.to_crm), record(pair.to_tma)
    linked = await linked_ticket(pair)
    if direction == "tma_to_crm":
        await pair.user_writes(linked.tma_id, "The order is still unpaid.")
        recorder, receiver, headers = to_crm, pair.crm, AS_TMA
        runtime, model = pair.crm_runtime, crm.Message
    else:
        await pair.operator_replies(linked.crm_id, "We are on it.")
        recorder, receiver, headers = to_tma, pair.tma, AS_CRM
        runtime, model = pair.tma_runtime, tma.Message
    await pair.sync()
    [first] = recorder.to(f"{INTEGRATION}/messages")
    assert first.status == 201
    stored = await count(runtime, model)
    notified = len(pair.bot.calls)

    replay = await receiver.post(
        f"{INTEGRATION}/messages",
        content=first.body,
        headers={**headers, "Content-Type": "application/json"},
    )

    assert replay.status_code == 200, replay.text
    assert replay.json()["message_id"] == first.answer_json()["message_id"]
    assert await count(runtime, model) == stored
    assert len(pair.bot.calls) == notified  # the user is not told twice about one reply

    changed = {**first.request_json(), "message": "Something else entirely"}
    conflict = await receiver.post(f"{INTEGRATION}/messages", json=changed, headers=headers)
    assert_problem(conflict, 409, "urn:tma-crm:problem:idempotency-conflict")
    assert await count(runtime, model) == stored


async def test_audit_2_a_resent_ticket_is_stored_once(pair: Pair) -> None:
    """Replaying createTicket answers 200 with the same CRM ticket and first message ids."""
    to_crm = record(pair.to_crm)
    await linked_ticket(pair)
    [first] = to_crm.to(f"{INTEGRATION}/tickets")

    replay = await pair.crm.post(
        f"{INTEGRATION}/tickets",
        content=first.body,
        headers={**AS_TMA, "Content-Type": "application/json"},
    )

    assert replay.status_code == 200, replay.text
    assert replay.json() == first.answer_json()
    assert await count(pair.crm_runtime, crm.Ticket) == 1
    assert await count(pair.crm_runtime, crm.Message) == 1


# --- 3. a message written in the TMA reaches the CRM ----------------------------------------


async def test_audit_3_a_message_written_in_the_mini_app_reaches_the_crm(pair: Pair) -> None:
    """The Mini App user's follow-up shows up in the operator's view of the ticket."""
    linked = await linked_ticket(pair)
    written = await pair.user_writes(linked.tma_id, "Here is my order number: 1234")
    await pair.sync()

    conversation = await pair.conversation_in_crm(linked.crm_id)
    last = conversation["messages"][-1]
    assert (last["sender_type"], last["body"]) == ("tma", "Here is my order number: 1234")
    assert last["external_message_id"] == written["id"]
    mine = (await pair.conversation_in_tma(linked.tma_id))["messages"][-1]
    assert mine["delivered"] is True


# --- 4. the field is `subject` everywhere ---------------------------------------------------


async def test_audit_4_the_ticket_request_carries_subject(pair: Pair) -> None:
    """What the TMA sends and what both databases store is `subject`; nothing is named theme."""
    to_crm = record(pair.to_crm)
    await linked_ticket(pair, subject="Refund please")
    [created] = to_crm.to(f"{INTEGRATION}/tickets")
    assert created.request_json()["subject"] == "Refund please"
    assert "theme" not in created.request_json()
    assert "subject" in models.CreateTicketRequest.model_fields
    assert "theme" not in models.CreateTicketRequest.model_fields
    for runtime in (pair.tma_runtime, pair.crm_runtime):
        columns = await _columns(runtime, "tickets")
        assert "subject" in columns
        assert "theme" not in columns


@http_layer_only
async def test_audit_4_a_theme_field_is_not_taken_for_subject(pair: Pair) -> None:
    """A createTicket that says `theme` instead of `subject` is missing its subject: 422."""
    body = {
        "external_ticket_id": str(uuid.uuid4()),
        "theme": "Payment did not go through",
        "message": "I paid but the order is unpaid.",
        "external_message_id": str(uuid.uuid4()),
        "customer": {"telegram_user_id": 42, "first_name": "Anna"},
        "created_at": pair.clock.now().isoformat(),
    }
    response = await pair.crm.post(f"{INTEGRATION}/tickets", json=body, headers=AS_TMA)
    problem = assert_problem(response, 422, "urn:tma-crm:problem:validation")
    assert [e.loc for e in problem.errors or []] == [["body", "subject"]]
    assert await count(pair.crm_runtime, crm.Ticket) == 0


# The cut-over's description of the audited old systems (docs/cutover.md): the one place the old
# names may appear.
LEGACY_PACKAGES = ("tma_impl/legacy/", "crm_impl/legacy/")


def test_audit_4_theme_is_gone_from_the_data_model_and_the_contract() -> None:
    """No table, migration, contract, generated model or integration payload mentions `theme`.

    Only there: the word meant the ticket's subject in the audit's data model. Telegram's theme
    (`themeParams`, the Mini App's colours) is another thing and lives in the page's code."""
    sources = [ROOT / "spec" / "integration.yaml", *(ROOT / "generated").rglob("*.py")]
    for package in ("integration_kit", "tma_impl", "crm_impl"):
        folder = ROOT / package
        sources += folder.glob("migrations/**/*.py")
        sources += [
            *folder.glob("tables.py"),
            *folder.glob("schema.py"),
            *folder.glob("*/schemas.py"),
        ]
        sources += folder.glob("integration/*.py")  # what goes over /api/integration
    sources += [
        ROOT / "integration_kit" / name for name in ("inbound.py", "outbound.py", "endpoints.py")
    ]
    sources += [ROOT / "tma_impl" / "outbound.py"]
    found = {str(path.relative_to(ROOT)) for path in sources}
    for must in ("tma_impl/tables.py", "crm_impl/tables.py", "integration_kit/schema.py"):
        assert must in found  # the globs above still find the data model
    assert any("migrations/versions" in name for name in found)
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources
        if not path.relative_to(ROOT).as_posix().startswith(LEGACY_PACKAGES)
        and re.search(r"\btheme\b", path.read_text(), re.IGNORECASE)
    ]
    assert offenders == []


async def _columns(runtime: Runtime, table: str) -> set[str]:
    async with runtime.db.engine.connect() as connection:
        found = await connection.run_sync(lambda sync: inspect(sync).get_columns(table))
    return {column["name"] for column in found}


# --- 5. sender_type is tma | crm ------------------------------------------------------------


@pytest.mark.parametrize("side", ["crm", "tma"])
async def test_audit_5_sender_local_is_refused(pair: Pair, side: str) -> None:
    """`sender: "local"` is not a sender any more: 422 naming the field, nothing stored."""
    linked = await linked_ticket(pair)
    client, headers, runtime, model = (
        (pair.crm, AS_TMA, pair.crm_runtime, crm.Message)
        if side == "crm"
        else (pair.tma, AS_CRM, pair.tma_runtime, tma.Message)
    )
    own, other = (linked.crm_id, linked.tma_id) if side == "crm" else (linked.tma_id, linked.crm_id)
    before = await count(runtime, model)
    body = message_body(
        sender="local", ticket_id=own, external_ticket_id=other, created_at=pair.clock.now()
    )

    response = await client.post(f"{INTEGRATION}/messages", json=body, headers=headers)

    problem = assert_problem(response, 422, "urn:tma-crm:problem:validation")
    assert ["body", "sender"] in [e.loc for e in problem.errors or []]
    assert await count(runtime, model) == before


async def test_audit_5_stored_messages_are_only_tma_or_crm(pair: Pair) -> None:
    """After a conversation both databases hold sender_type tma and crm, nothing else."""
    linked = await linked_ticket(pair)
    await pair.operator_replies(linked.crm_id, "Hello!")
    await pair.user_writes(linked.tma_id, "Hi")
    await pair.sync()
    # A deliberate tripwire (audit item 5): the spec's senders, copied by hand.
    assert {s.value for s in models.SenderType} == {"tma", "crm"}
    for runtime, model in ((pair.tma_runtime, tma.Message), (pair.crm_runtime, crm.Message)):
        async with runtime.db.sessions() as session:
            kinds = set((await session.scalars(select(model.sender_type).distinct())).all())
        assert kinds == {"tma", "crm"}


# --- 6. one set of system-to-system routes --------------------------------------------------


def _spec_operations(side: str) -> set[tuple[str, str]]:
    return {(op.method, op.path) for op in served_by(side)}


def _routes(app: FastAPI, prefix: str) -> set[tuple[str, str]]:
    """What the app serves under `prefix`, from the routes it was built with."""
    return {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        if path.startswith(prefix)
        for method in item
    }


@http_layer_only
@pytest.mark.parametrize("side", ["crm", "tma"])
async def test_audit_6_integration_routes_are_exactly_the_spec(pair: Pair, side: str) -> None:
    """Each backend serves under /api/integration exactly what the spec's x-served-by gives it,
    and nothing under the audit's old prefixes."""
    app = pair.crm_app if side == "crm" else pair.tma_app
    expected = _spec_operations(side)
    assert expected  # the spec gives every backend something to serve
    assert _routes(app, INTEGRATION) == expected
    assert _routes(app, "/api/v1") == set()
    if side == "crm":
        assert _routes(app, "/api/support") == set()
    client, headers = (pair.crm, AS_TMA) if side == "crm" else (pair.tma, AS_CRM)
    # Probe over HTTP too: what the spec assigns answers (422 for an empty body; a GET without
    # parameters, 200), the rest not.
    for method, path in _spec_operations("crm") | _spec_operations("tma"):
        if method == "GET":
            response = await client.get(path, headers=headers)
        else:
            response = await client.post(path, json={}, headers=headers)
        answered = 200 if method == "GET" else 422
        served = (method, path) in expected
        assert response.status_code == (answered if served else 404), (path, response.status_code)
    for old in ("/api/v1/support/messages", "/api/v1/support/tickets", "/api/support/messages"):
        response = await client.post(old, json={}, headers=headers)
        assert response.status_code in {404, 405}, (old, response.status_code)


@http_layer_only
async def test_audit_6_the_mini_app_api_does_not_open_to_an_integration_token(pair: Pair) -> None:
    """/api/support is the Mini App's user API: the CRM's bearer token opens none of it."""
    ticket = await pair.open_ticket()
    routes = _routes(pair.tma_app, "/api/support")
    assert routes  # the user API is there, so this checks something
    for method, path in sorted(routes):
        url = path.replace("{ticket_id}", ticket["id"])
        response = await pair.tma.request(
            method, url, json={} if method == "POST" else None, headers=AS_CRM
        )
        assert_problem(response, 401, "urn:tma-crm:problem:unauthorized")


# --- 7. one contract --------------------------------------------------------------------------

# Each operation's request and answer types, as the spec names them (tests/support/spec.py).
REQUESTS: dict[str, type[BaseModel]] = {
    op.path.removeprefix(INTEGRATION): op.request for op in operations() if op.request is not None
}
ANSWERS: dict[str, type[BaseModel]] = {
    op.path.removeprefix(INTEGRATION): op.answer for op in operations()
}


def _conforms(model: type[BaseModel], body: dict[str, Any]) -> None:
    model.model_validate(body)
    # The spec's shape exactly: no field the contract does not define.
    assert set(body) <= set(model.model_fields), (model.__name__, body)


async def test_audit_7_both_sides_speak_the_one_contract(pair: Pair) -> None:
    """Every request and answer between the two backends in a whole conversation has the
    spec's shape, in both directions, for every operation."""
    to_crm, to_tma = record(pair.to_crm), record(pair.to_tma)
    linked = await linked_ticket(pair)
    await pair.operator_replies(linked.crm_id, "Fixed, please check.")
    await pair.user_writes(linked.tma_id, "Works now")
    await pair.sync()
    closed = await pair.tma.post(
        f"/api/support/tickets/{linked.tma_id}/status",
        json={"status": "closed"},
        headers=pair.user_headers(),
    )
    assert closed.status_code == 200
    await pair.sync()
    # Each side reads the other's change feed (reconcile): nothing differs after live delivery.
    assert (await pair.reconcile("tma")).total == 0
    assert (await pair.reconcile("crm")).total == 0

    seen: dict[str, set[tuple[str, str]]] = {"crm": set(), "tma": set()}
    for side, recorder in (("crm", to_crm), ("tma", to_tma)):
        for exchange in recorder.exchanges:
            operation = exchange.path.removeprefix(INTEGRATION)
            assert exchange.status is not None
            assert 200 <= exchange.status < 300, exchange
            if exchange.method == "GET":
                assert exchange.body == b""
            else:
                _conforms(REQUESTS[operation], exchange.request_json())
            _conforms(ANSWERS[operation], exchange.answer_json())
            seen[side].add((exchange.method, exchange.path))
    # Every operation each side serves was exercised.
    assert seen == {"crm": _spec_operations("crm"), "tma": _spec_operations("tma")}
    # And the one ticket is linked across both systems.
    [tma_ticket] = await rows(pair.tma_runtime, tma.Ticket)
    [crm_ticket] = await rows(pair.crm_runtime, crm.Ticket)
    assert (tma_ticket.external_id, crm_ticket.external_id) == (crm_ticket.id, tma_ticket.id)
    assert tma_ticket.status == crm_ticket.status == "closed"
