"""Signed integration requests between the two real backends (docs/delivery.md, "Signed
requests"): what the senders put on the wire, what the receivers refuse, and how a refused
signature is retried and reported instead of killing the event."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from integration_kit.problems import SIGNATURE_REFUSED, UNAUTHORIZED
from integration_kit.retry import Failure
from integration_kit.schema import OutboxState
from integration_kit.signing import signature_headers, verify_signature
from tests.e2e.helpers import AS_CRM, AS_TMA, assert_problem, linked_ticket, message_body, record
from tests.integration_kit.outbox_rows import outbox_rows
from tests.integration_kit.test_delivery import run_cli
from tests.integration_kit.test_health import metric_values
from tests.support.pair import Pair
from tests.support.spec import operations
from tma_impl import tables as tma

NEW_SECRET = "whsec_" + base64.b64encode(b"the crm's next inbound signing secret").decode()


async def test_every_request_is_signed_and_keeps_its_events_id_on_every_retry(
    pair: Pair,
) -> None:
    """createTicket, postMessage and postStatus carry a valid signature over the bytes sent;
    `webhook-id` is the outbox row's stable id, the same on a retry, new for each event."""
    to_crm, to_tma = record(pair.to_crm), record(pair.to_tma)
    pair.to_crm.lose_responses = 1  # the first createTicket is processed, its answer lost
    ticket = await pair.open_ticket()
    await pair.tma_runtime.dispatcher.run_once()
    pair.clock.advance(5)
    await pair.sync()
    crm_ticket = await pair.crm_ticket_for(ticket["id"])
    await pair.user_writes(ticket["id"], "Any news?")
    await pair.operator_replies(crm_ticket["id"], "Fixed")
    closed = await pair.crm.post(
        f"/api/crm/tickets/{crm_ticket['id']}/status",
        json={"status": "closed"},
        headers=pair.operator_headers,
    )
    assert closed.status_code == 200, closed.text
    await pair.sync()

    first, retry = to_crm.to("/api/integration/tickets")
    [created] = await outbox_rows(pair.tma_runtime, kind="ticket_created")
    assert first.headers["webhook-id"] == retry.headers["webhook-id"] == str(created.webhook_id)
    assert int(retry.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    exchanges = [*to_crm.exchanges, *to_tma.exchanges]
    # Every operation a sender calls (each one with a body, by the spec) was signed here.
    assert {e.path for e in exchanges} == {op.path for op in operations() if op.request}
    for exchange, secrets in [
        *((e, pair.crm_runtime.settings.inbound_signing_secrets) for e in to_crm.exchanges),
        *((e, pair.tma_runtime.settings.inbound_signing_secrets) for e in to_tma.exchanges),
    ]:
        assert exchange.headers["authorization"].startswith("Bearer ")
        moment = datetime.fromtimestamp(int(exchange.headers["webhook-timestamp"]), UTC)
        verify_signature(exchange.headers, exchange.body, secrets=secrets, now=moment)
    ids = [e.headers["webhook-id"] for e in exchanges if e is not first]
    assert len(set(ids)) == len(ids)  # one id per event
    every_event = [
        *await outbox_rows(pair.tma_runtime),
        *await outbox_rows(pair.crm_runtime),
    ]
    assert len({row.webhook_id for row in every_event}) == len(every_event)


async def test_the_receiver_judges_the_timestamp_by_its_own_clock(pair: Pair) -> None:
    """The pair's clock is moved a year from today: a request signed by the wall clock is stale
    to the receiver, one signed by the receiver's (injected) clock is fresh."""
    ticket = await linked_ticket(pair)
    pair.clock.advance(365 * 24 * 3600)
    raw = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=pair.crm_app), base_url="http://crm.test"
    )
    secret = pair.tma_runtime.settings.peer_signing_secret
    async with raw:
        for signed_at, expected in [
            (datetime.now(UTC), 401),
            (pair.clock.now() - timedelta(seconds=360), 401),
            (pair.clock.now() - timedelta(seconds=60), 201),
        ]:
            body = message_body(
                sender="tma",
                external_ticket_id=ticket.tma_id,
                ticket_id=ticket.crm_id,
                created_at=pair.clock.now(),
            )
            content = httpx.Request("POST", "/", json=body).read()
            headers = signature_headers(
                secret,
                msg_id=str(uuid.uuid4()),
                timestamp=int(signed_at.timestamp()),
                body=content,
            )
            answer = await raw.post(
                "/api/integration/messages",
                content=content,
                headers={**AS_TMA, **headers, "Content-Type": "application/json"},
            )
            if expected == 401:
                problem = assert_problem(answer, 401, SIGNATURE_REFUSED)
                assert "behind the receiver's clock" in (problem.detail or "")
            else:
                assert answer.status_code == 201, answer.text


async def test_the_token_is_checked_before_the_signature(pair: Pair) -> None:
    """No token, or a wrong one: 401 unauthorized whatever the signature; the right token
    without a signature: 401 signature-refused. Neither stores anything."""
    raw = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=pair.tma_app), base_url="http://tma.test"
    )
    body = {"external_ticket_id": str(uuid.uuid4()), "status": "closed", "changed_at": "x"}
    async with raw:
        unsigned = await raw.post("/api/integration/status", json=body, headers=AS_CRM)
        no_token = await raw.post("/api/integration/status", json=body)
    assert_problem(unsigned, 401, SIGNATURE_REFUSED)
    assert "headers are required" in unsigned.json()["detail"]
    assert_problem(no_token, 401, UNAUTHORIZED)


async def test_a_refused_signature_is_retried_not_dead_and_shows_in_metrics_and_outbox_list(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CRM drops the secret the TMA signs with (a slip during a rotation): the TMA's event
    waits with backoff, `last_failure = signature`, counted by its own metric label and named in
    `outbox list`; once the CRM accepts the secret again it is delivered, once."""
    ticket = await linked_ticket(pair)
    accepted = pair.crm_runtime.settings.inbound_signing_secrets
    pair.crm_runtime.settings.inbound_signing_secrets = [NEW_SECRET]
    await pair.user_writes(ticket.tma_id, "Signed with the old secret")
    for _ in range(3):
        await pair.sync()
        pair.clock.advance(30)
    [event] = [
        row
        for row in await outbox_rows(pair.tma_runtime, kind="message")
        if row.payload["request"]["message"] == "Signed with the old secret"
    ]
    assert (event.state, event.last_failure) == (OutboxState.pending, Failure.signature)
    assert event.attempts == 3
    assert (event.last_error or "").startswith("signature refused, retried")
    assert SIGNATURE_REFUSED in (event.last_error or "")

    metrics = metric_values((await pair.tma.get("/metrics")).text)
    assert metrics["outbox_retried_by_failure_total{failure=signature}"] == 3
    assert metrics["outbox_dead_total"] == 0
    listing = await run_cli(pair.tma_runtime, ["outbox", "list"], capsys)
    [line] = [line for line in listing.splitlines() if line.startswith(f"{event.id:>8}")]
    assert "pending" in line
    assert "signature refused, retried" in line

    pair.crm_runtime.settings.inbound_signing_secrets = [NEW_SECRET, *accepted]
    pair.clock.advance(600)
    await pair.sync()
    conversation = await pair.conversation_in_crm(ticket.crm_id)
    bodies = [m["body"] for m in conversation["messages"]]
    assert bodies.count("Signed with the old secret") == 1
    async with pair.tma_runtime.db.sessions() as session:
        state = await session.scalar(select(tma.Outbox.state).where(tma.Outbox.id == event.id))
    assert state == OutboxState.delivered
