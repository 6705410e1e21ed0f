"""How the two sides learn each other's contract version (docs/design.md §6): `Contract-Version`
on every integration request and answer, the peer's last announced version in readiness and
metrics, and a log line per change; the header never refuses a request."""

from __future__ import annotations

import logging

import httpx
import pytest
import yaml

from generated import CONTRACT_VERSION
from integration_kit.contract_version import MAJOR, MALFORMED, UNVERSIONED
from integration_kit.problems import UNAUTHORIZED
from tests.e2e.helpers import AS_CRM, AS_TMA, assert_problem, linked_ticket, message_body, record
from tests.integration_kit.scripted_peer import ScriptedPeer
from tests.integration_kit.test_health import metric_values
from tests.support.pair import Pair
from tests.test_spec import SPEC_PATH

HEADER = "contract-version"


def test_the_announced_version_is_the_specs_own() -> None:
    """Generated from the spec's info.version by `make generate`, never written by hand."""
    assert CONTRACT_VERSION == yaml.safe_load(SPEC_PATH.read_text())["info"]["version"]


async def _ready(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    return dict(response.json()["contract"])


async def test_both_sides_announce_their_version_and_learn_the_peers(pair: Pair) -> None:
    """The TMA learns the CRM's version from the CRM's answer, the CRM the TMA's from its
    request; each says so in readiness and metrics."""
    to_crm, to_tma = record(pair.to_crm), record(pair.to_tma)
    assert await _ready(pair.tma) == {"version": CONTRACT_VERSION, "peer": None}
    ticket = await linked_ticket(pair)
    await pair.operator_replies(ticket.crm_id, "On it")
    await pair.sync()

    for exchange in [*to_crm.exchanges, *to_tma.exchanges]:
        assert exchange.headers[HEADER] == CONTRACT_VERSION
    for client in (pair.tma, pair.crm):
        assert await _ready(client) == {"version": CONTRACT_VERSION, "peer": CONTRACT_VERSION}
        metrics = metric_values((await client.get("/metrics")).text)
        assert metrics[f"contract_version_info{{version={CONTRACT_VERSION}}}"] == 1
        assert metrics[f"peer_contract_version_info{{version={CONTRACT_VERSION}}}"] == 1


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_every_integration_answer_announces_the_version_and_no_other_does(
    pair: Pair,
) -> None:
    ticket = await linked_ticket(pair)
    body = message_body(sender="crm", external_ticket_id=ticket.crm_id, created_at=pair.clock.now())
    answers = [
        await pair.tma.post("/api/integration/messages", json=body, headers=AS_CRM),  # 201
        await pair.tma.post("/api/integration/messages", json=body, headers=AS_TMA),  # 401
        await pair.tma.get("/api/integration/messages", headers=AS_CRM),  # 405
        await pair.crm.post("/api/integration/tickets", content=b"{", headers=AS_TMA),  # 400/422
        await pair.crm.get("/api/integration/changes?limit=0", headers=AS_TMA),  # 422
    ]
    assert [a.status_code for a in answers][:3] == [201, 401, 405]
    for answer in answers:
        assert answer.headers[HEADER] == CONTRACT_VERSION, answer
    # The pages' own APIs are not the contract.
    pages = await pair.tma.get(f"/api/support/tickets/{ticket.tma_id}", headers=pair.user_headers())
    assert pages.status_code == 200
    assert HEADER not in pages.headers
    assert HEADER not in (await pair.tma.get("/health/live")).headers


async def test_a_peer_that_sends_no_version_is_served_and_shown_as_unversioned(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    """A sender built on 1.0.0 predates the header: it is served as before."""
    ticket = await linked_ticket(pair)
    body = message_body(sender="crm", external_ticket_id=ticket.crm_id, created_at=pair.clock.now())
    with caplog.at_level(logging.INFO, logger="integration_kit.contract_version"):
        stored = await pair.tma.post("/api/integration/messages", json=body, headers=AS_CRM)
        await pair.tma.post("/api/integration/messages", json=body, headers=AS_CRM)
    assert stored.status_code == 201, stored.text
    assert (await _ready(pair.tma))["peer"] == UNVERSIONED
    changes = [r for r in caplog.records if "peer contract version" in r.getMessage()]
    assert len(changes) == 1, "one log line per change, not per request"
    assert changes[0].levelno == logging.INFO
    # The CRM answered the ticket's creation with its version; now a 1.0.0 sender (a rollback).
    assert f"{UNVERSIONED} (was {CONTRACT_VERSION})" in changes[0].getMessage()


async def test_a_peer_on_a_newer_major_is_served_with_a_warning(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    """Mid-upgrade the newer side speaks this major on these paths; refusing it would make every
    major upgrade a lockstep one."""
    ticket = await linked_ticket(pair)
    newer = f"{MAJOR + 1}.0.0"
    body = message_body(sender="crm", external_ticket_id=ticket.crm_id, created_at=pair.clock.now())
    with caplog.at_level(logging.INFO, logger="integration_kit.contract_version"):
        answer = await pair.tma.post(
            "/api/integration/messages", json=body, headers={**AS_CRM, HEADER: newer}
        )
    assert answer.status_code == 201, answer.text
    assert (await _ready(pair.tma))["peer"] == newer
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"peer contract version {newer}" in warning.getMessage()


@pytest.mark.parametrize("db_kind", ["sqlite"])
@pytest.mark.parametrize("announced", ["1.0", "01.0.0", "v1.1.0", "1.1.0-rc.1", "", "x" * 300])
async def test_a_value_that_is_no_version_is_served_and_shown_as_malformed(
    pair: Pair, caplog: pytest.LogCaptureFixture, announced: str
) -> None:
    """The header is informational: the path says how a request is read, so a bad value never
    costs an event; it shows as `malformed`, never echoed into the log."""
    ticket = await linked_ticket(pair)
    body = message_body(sender="crm", external_ticket_id=ticket.crm_id, created_at=pair.clock.now())
    with caplog.at_level(logging.INFO, logger="integration_kit.contract_version"):
        answer = await pair.tma.post(
            "/api/integration/messages", json=body, headers={**AS_CRM, HEADER: announced}
        )
    assert answer.status_code == 201, answer.text
    assert (await _ready(pair.tma))["peer"] == MALFORMED
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"version {MALFORMED} (was {CONTRACT_VERSION})" in warning.getMessage()
    assert "x" * 300 not in warning.getMessage()


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_a_strangers_version_is_not_recorded(pair: Pair) -> None:
    """Authentication comes first: a refused caller teaches this side nothing."""
    ticket = await linked_ticket(pair)
    before = (await _ready(pair.tma))["peer"]
    body = message_body(sender="crm", external_ticket_id=ticket.crm_id, created_at=pair.clock.now())
    stranger = await pair.tma.post(
        "/api/integration/messages",
        json=body,
        headers={"Authorization": "Bearer wrong", HEADER: "9.0.0"},
    )
    assert_problem(stranger, 401, UNAUTHORIZED)
    assert before == CONTRACT_VERSION
    assert (await _ready(pair.tma))["peer"] == before


async def test_the_sender_records_what_the_peers_answers_announce(pair: Pair) -> None:
    """A peer upgraded first shows in this side's readiness before this side is upgraded."""
    scripted = ScriptedPeer.install(pair.to_crm)
    newer = f"{MAJOR + 1}.0.0"
    inner = scripted.inner

    class Upgraded(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            response.headers[HEADER] = newer
            return response

    scripted.inner = Upgraded()
    await linked_ticket(pair)
    assert (await _ready(pair.tma))["peer"] == newer
