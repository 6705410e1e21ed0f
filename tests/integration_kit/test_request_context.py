"""Every API of both backends: a request id on each answer and log line, a 500 problem+json with
that id (and a rollback) for an error nobody handled, and 415 for a contract body that is not
declared JSON."""

from __future__ import annotations

import io
import logging
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_impl import tables as crm
from integration_kit import endpoints
from integration_kit.cli import LOG_FORMAT
from integration_kit.problems import INTERNAL_ERROR, UNSUPPORTED_MEDIA_TYPE
from integration_kit.request_context import RequestIdFilter, request_id
from tests.e2e.helpers import AS_CRM, AS_TMA, assert_problem, count, linked_ticket, message_body
from tests.support.pair import Pair
from tests.support.spec import operations
from tma_impl import tables as tma

HEX_ID = r"[0-9a-f]{32}"


async def test_an_unhandled_error_is_a_500_problem_naming_the_request_and_rolls_back(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The receiving code writes, logs, then fails: the caller gets problem+json with the id it
    sent, the write is gone, and the traceback and the earlier line carry that id."""
    ticket = await linked_ticket(pair)

    async def failing(session: AsyncSession, **_: Any) -> Any:
        await session.execute(update(tma.Ticket).values(subject="written before the failure"))
        logging.getLogger("tests.receiving").warning("about to fail")
        raise RuntimeError("a bug in the receiving code")

    monkeypatch.setattr(endpoints, "receive_status", failing)
    caplog.handler.addFilter(RequestIdFilter())
    body = {
        "ticket_id": ticket.tma_id,
        "external_ticket_id": ticket.crm_id,
        "status": "closed",
        "changed_at": pair.clock.now().isoformat(),
    }
    with caplog.at_level(logging.INFO):
        answer = await pair.tma.post(
            "/api/integration/status", json=body, headers={**AS_CRM, "X-Request-ID": "crm-42.a"}
        )
    problem = assert_problem(answer, 500, INTERNAL_ERROR)
    assert answer.headers["x-request-id"] == "crm-42.a"
    assert problem.instance == "urn:tma-crm:request:crm-42.a"
    assert "crm-42.a" in (problem.detail or "")
    assert "a bug in the receiving code" not in answer.text  # no internals to the caller

    async with pair.tma_runtime.db.sessions() as session:
        subjects = set((await session.scalars(select(tma.Ticket.subject))).all())
    assert "written before the failure" not in subjects
    logged = {record.getMessage(): record for record in caplog.records}
    assert logged["about to fail"].request_id == "crm-42.a"  # type: ignore[attr-defined]
    failure = logged["unhandled error in POST /api/integration/status"]
    assert failure.request_id == "crm-42.a"  # type: ignore[attr-defined]
    assert failure.exc_info is not None
    assert "a bug in the receiving code" in str(failure.exc_info[1])
    assert request_id.get() == "-"  # nothing leaks out of the request


@pytest.mark.parametrize(
    ("presented", "kept"),
    [
        ("4bf92f3577b34da6a3ce929d0e0e4736", True),
        ("req_2Lx.91:a-b", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("two words", False),
        ("forged\\nline", False),
        ("", False),
        (None, False),
    ],
)
async def test_every_api_answers_with_the_request_id_it_was_given_or_made(
    pair: Pair, presented: str | None, kept: bool
) -> None:
    """The Mini App's user API, the operator API, the integration API (refused or not), and
    health: all return X-Request-ID; a caller's id is kept only when it is a short token."""
    ticket = await linked_ticket(pair)
    headers = {} if presented is None else {"X-Request-ID": presented}
    answers = [
        await pair.tma.get(
            f"/api/support/tickets/{ticket.tma_id}", headers={**pair.user_headers(), **headers}
        ),
        await pair.crm.get("/api/crm/tickets", headers={**pair.operator_headers, **headers}),
        await pair.crm.post(
            "/api/integration/messages",
            json=message_body(
                sender="tma", external_ticket_id=ticket.tma_id, created_at=pair.clock.now()
            ),
            headers={**AS_TMA, **headers},
        ),
        await pair.crm.post("/api/integration/messages", json={}, headers=headers),  # 401
        await pair.tma.get("/health/live", headers=headers),
        await pair.tma.get("/no/such/page", headers=headers),  # 404
    ]
    assert [a.status_code for a in answers] == [200, 200, 201, 401, 200, 404]
    made = set()
    for answer in answers:
        given = answer.headers["x-request-id"]
        if kept:
            assert given == presented
        else:
            assert len(given) == 32
            assert int(given, 16) >= 0
            made.add(given)
    assert kept or len(made) == len(answers)  # a new id per request


def test_the_command_lines_log_format_writes_the_request_id() -> None:
    """`serve` and `worker` log with LOG_FORMAT and the filter: a line made during a request
    names it, one made outside says `-`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger(f"tests.request_id.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.propagate = False
    token = request_id.set("abc-123")
    try:
        logger.warning("inside")
    finally:
        request_id.reset(token)
    logger.warning("outside")
    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith("[abc-123] inside")
    assert outside.endswith("[-] outside")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", None]
)
async def test_a_contract_body_not_declared_json_is_refused_with_415(
    pair: Pair, content_type: str | None
) -> None:
    """A JSON body sent as anything but application/json (signed, with the right token) is
    refused on every operation of both sides and stores nothing; the charset parameter is fine."""
    ticket = await linked_ticket(pair)
    ticket_body = {
        "external_ticket_id": str(uuid.uuid4()),
        "subject": "Sent as text",
        "message": "Hello",
        "external_message_id": str(uuid.uuid4()),
        "customer": {"telegram_user_id": 7, "first_name": "Ivan"},
        "created_at": pair.clock.now().isoformat(),
    }
    to_crm = message_body(
        sender="tma", external_ticket_id=ticket.tma_id, created_at=pair.clock.now()
    )
    to_tma = message_body(
        sender="crm",
        external_ticket_id=ticket.crm_id,
        ticket_id=ticket.tma_id,
        created_at=pair.clock.now(),
    )
    status = {
        "ticket_id": ticket.tma_id,
        "external_ticket_id": ticket.crm_id,
        "status": "closed",
        "changed_at": pair.clock.now().isoformat(),
    }
    status_to_crm = {
        **status,
        "ticket_id": ticket.crm_id,
        "external_ticket_id": ticket.tma_id,
    }
    calls: list[tuple[httpx.AsyncClient, str, dict[str, Any], dict[str, str]]] = [
        (pair.crm, "/api/integration/tickets", ticket_body, AS_TMA),
        (pair.crm, "/api/integration/messages", to_crm, AS_TMA),
        (pair.crm, "/api/integration/status", status_to_crm, AS_TMA),
        (pair.tma, "/api/integration/messages", to_tma, AS_CRM),
        (pair.tma, "/api/integration/status", status, AS_CRM),
    ]
    # Every operation with a body on every side that serves it, by the spec: an operation
    # added there fails here until it has a body above.
    side = {id(pair.crm): "crm", id(pair.tma): "tma"}
    assert {(side[id(client)], path) for client, path, _, _ in calls} == {
        (server, op.path) for op in operations() if op.request for server in op.served_by
    }
    before = (
        await count(pair.crm_runtime, crm.Message),
        await count(pair.tma_runtime, tma.Message),
    )
    for client, path, body, auth in calls:
        headers = dict(auth)
        if content_type is not None:
            headers["Content-Type"] = content_type
        raw = httpx.Request("POST", "/", json=body).read()
        answer = await client.post(path, content=raw, headers=headers)
        assert_problem(answer, 415, UNSUPPORTED_MEDIA_TYPE)
    after = (await count(pair.crm_runtime, crm.Message), await count(pair.tma_runtime, tma.Message))
    assert after == before
    async with pair.tma_runtime.db.sessions() as session:
        held = await session.scalar(
            select(tma.Ticket.status).where(tma.Ticket.id == uuid.UUID(ticket.tma_id))
        )
    assert held != "closed"
    async with pair.crm_runtime.db.sessions() as session:
        held = await session.scalar(
            select(crm.Ticket.status).where(crm.Ticket.id == uuid.UUID(ticket.crm_id))
        )
    assert held != "closed"
    stored = await pair.crm.post(
        "/api/integration/messages",
        content=httpx.Request("POST", "/", json=to_crm).read(),
        headers={**AS_TMA, "Content-Type": "application/json; charset=utf-8"},
    )
    assert stored.status_code == 201, stored.text
