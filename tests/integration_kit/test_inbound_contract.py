"""The receiving rules of the contract (docs/design.md §3), checked on each backend over HTTP:
auth and token rotation, sender, unknown tickets, contradicting ids, last-writer-wins status,
reopening, size and shape limits, and problem+json for every error."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_impl import tables as crm
from crm_impl.app import build_runtime as build_crm
from crm_impl.app import create_app as create_crm_app
from crm_impl.settings import CrmSettings
from generated.models import MessageAccepted, StatusAccepted
from integration_kit.runtime import Runtime
from tests.e2e.helpers import (
    AS_CRM,
    AS_TMA,
    TICKET_NOT_KNOWN,
    assert_problem,
    bearer,
    count,
    http_layer_only,
    linked_ticket,
    message_body,
    rows,
)
from tests.support.databases import fresh_database
from tests.support.faults import FaultyTransport
from tests.support.pair import Pair
from tests.support.signed import as_its_peer
from tests.support.spec import served_by
from tma_impl import tables as tma
from tma_impl.app import build_runtime as build_tma
from tma_impl.app import create_app as create_tma_app
from tma_impl.settings import TmaSettings

INTEGRATION = "/api/integration"
VALIDATION = "urn:tma-crm:problem:validation"
TELEGRAM_FILE_URL = "https://api.telegram.org/file/bot123456:SECRET/photos/file_1.jpg"


@dataclass
class Receiver:
    """One backend's /api/integration as its peer calls it, with a ticket both sides know."""

    side: str
    pair: Pair
    client: httpx.AsyncClient
    headers: dict[str, str]
    caller: str  # the only `sender` the caller may name
    own_id: str  # the receiver's id of the ticket
    peer_id: str  # the caller's id of the ticket
    runtime: Runtime
    tickets: type[Any]
    messages: type[Any]

    def message(self, **overrides: Any) -> dict[str, Any]:
        base = message_body(
            sender=self.caller,
            ticket_id=self.own_id,
            external_ticket_id=self.peer_id,
            created_at=self.pair.clock.now(),
        )
        return {**base, **overrides}

    def status(self, status: str, changed_at: datetime, **overrides: Any) -> dict[str, Any]:
        return {
            "ticket_id": self.own_id,
            "external_ticket_id": self.peer_id,
            "status": status,
            "changed_at": changed_at.isoformat(),
            **overrides,
        }

    async def post(
        self, operation: str, body: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.post(
            f"{INTEGRATION}/{operation}",
            json=body,
            headers=self.headers if headers is None else headers,
        )

    async def ticket(self) -> Any:
        [row] = await rows(self.runtime, self.tickets, self.tickets.id == uuid.UUID(self.own_id))
        return row

    async def stored_messages(self) -> int:
        return await count(self.runtime, self.messages)

    @property
    def operations(self) -> list[str]:
        """The operations with a body this side serves, from the spec (`tickets`, ...)."""
        return [op.name for op in served_by(self.side, method="POST")]


@pytest.fixture(params=["crm", "tma"])
async def receiver(request: pytest.FixtureRequest, pair: Pair) -> Receiver:
    linked = await linked_ticket(pair)
    if request.param == "crm":
        return Receiver(
            "crm",
            pair,
            pair.crm,
            AS_TMA,
            "tma",
            linked.crm_id,
            linked.tma_id,
            pair.crm_runtime,
            crm.Ticket,
            crm.Message,
        )
    return Receiver(
        "tma",
        pair,
        pair.tma,
        AS_CRM,
        "crm",
        linked.tma_id,
        linked.crm_id,
        pair.tma_runtime,
        tma.Ticket,
        tma.Message,
    )


# --- authentication -----------------------------------------------------------------------------


@http_layer_only
async def test_missing_or_wrong_token_is_401_problem(receiver: Receiver) -> None:
    """No token, a wrong one, another scheme, or the token of the other direction: 401
    problem+json with WWW-Authenticate, and nothing is stored."""
    before = await receiver.stored_messages()
    wrong_direction = AS_CRM if receiver.side == "crm" else AS_TMA
    refusals: list[dict[str, str]] = [
        {},
        bearer("not-the-token"),
        bearer(""),
        {"Authorization": receiver.headers["Authorization"].replace("Bearer", "Basic")},
        wrong_direction,
    ]
    for operation in receiver.operations:
        for headers in refusals:
            response = await receiver.post(operation, receiver.message(), headers=headers)
            assert_problem(response, 401, "urn:tma-crm:problem:unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert await receiver.stored_messages() == before


@asynccontextmanager
async def lone_backend(
    side: str, db_kind: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """One backend alone, its settings read from the environment, its peer unreachable."""
    async with fresh_database(db_kind, side, tmp_path) as url:
        runtime: Runtime
        if side == "crm":
            runtime = build_crm(
                CrmSettings(database_url=url, _env_file=None),
                peer_transport=FaultyTransport(down=True),
            )
            app = create_crm_app(runtime)
        else:
            runtime = build_tma(
                TmaSettings(database_url=url, _env_file=None),
                peer_transport=FaultyTransport(down=True),
            )
            app = create_tma_app(runtime)
        runtime.run_dispatcher = False
        try:
            async with httpx.AsyncClient(
                transport=as_its_peer(app, runtime), base_url="http://backend.test"
            ) as client:
                yield client, runtime
        finally:
            await runtime.close()


@pytest.mark.parametrize("side", ["crm", "tma"])
async def test_two_inbound_tokens_are_both_accepted_during_rotation(
    side: str, db_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With INBOUND_TOKENS=new,old both the new and the old token open the API, nothing else
    does, so a token is rotated without downtime."""
    monkeypatch.setenv(f"{side.upper()}_INBOUND_TOKENS", "token-new-2027, token-old-2026")
    async with lone_backend(side, db_kind, tmp_path) as (client, runtime):
        assert runtime.settings.inbound_tokens == ["token-new-2027", "token-old-2026"]
        if side == "crm":
            ticket = {
                "external_ticket_id": str(uuid.uuid4()),
                "subject": "Rotation",
                "message": "Hello",
                "external_message_id": str(uuid.uuid4()),
                "customer": {"telegram_user_id": 7, "first_name": "Ivan"},
                "created_at": "2026-11-27T10:00:00Z",
            }
            first = await client.post(
                f"{INTEGRATION}/tickets", json=ticket, headers=bearer("token-new-2027")
            )
            again = await client.post(
                f"{INTEGRATION}/tickets", json=ticket, headers=bearer("token-old-2026")
            )
            assert (first.status_code, again.status_code) == (201, 200), again.text
            assert first.json() == again.json()
            operation, body = "tickets", ticket
        else:
            # No ticket to name here: passing the token check shows as "ticket not known".
            operation = "status"
            body = {
                "external_ticket_id": str(uuid.uuid4()),
                "status": "closed",
                "changed_at": "2026-11-27T10:00:00Z",
            }
            for token in ("token-new-2027", "token-old-2026"):
                response = await client.post(
                    f"{INTEGRATION}/status", json=body, headers=bearer(token)
                )
                assert_problem(response, 404, TICKET_NOT_KNOWN)
        for token in ("token-retired-2025", "dev-tma-to-crm", "dev-crm-to-tma"):
            response = await client.post(
                f"{INTEGRATION}/{operation}", json=body, headers=bearer(token)
            )
            assert_problem(response, 401, "urn:tma-crm:problem:unauthorized")


# --- naming the sender and the ticket -----------------------------------------------------------


async def test_sender_that_is_not_the_caller_is_403(receiver: Receiver) -> None:
    """A side may only deliver its own messages: naming the other side as sender is 403."""
    before = await receiver.stored_messages()
    other = "crm" if receiver.caller == "tma" else "tma"
    response = await receiver.post("messages", receiver.message(sender=other))
    assert_problem(response, 403, "urn:tma-crm:problem:forbidden-sender")
    assert await receiver.stored_messages() == before


async def test_unknown_ticket_is_404_ticket_not_known(receiver: Receiver) -> None:
    """A ticket the receiver cannot resolve, by either id, answers the retry-later 404."""
    unknown = str(uuid.uuid4())
    requests = [
        ("messages", receiver.message(ticket_id=None, external_ticket_id=unknown)),
        ("messages", receiver.message(ticket_id=unknown, external_ticket_id=unknown)),
        ("status", receiver.status("closed", receiver.pair.clock.now(), ticket_id=unknown)),
    ]
    for operation, body in requests:
        body = {key: value for key, value in body.items() if value is not None}
        response = await receiver.post(operation, body)
        assert_problem(response, 404, TICKET_NOT_KNOWN)


async def test_a_message_named_only_by_the_senders_id_is_resolved(receiver: Receiver) -> None:
    """Without the receiver's ticket id, the sender's id finds the linked ticket."""
    body = receiver.message()
    del body["ticket_id"]
    response = await receiver.post("messages", body)
    assert response.status_code == 201, response.text
    assert MessageAccepted.model_validate(response.json()).ticket_id == uuid.UUID(receiver.own_id)


async def test_contradicting_ticket_ids_are_409(receiver: Receiver) -> None:
    """Ids that contradict the stored link answer 409 and change nothing."""
    other = await linked_ticket(receiver.pair, subject="A second ticket")
    others_peer_id = other.crm_id if receiver.side == "tma" else other.tma_id
    before = await receiver.stored_messages()
    for peer_id in (str(uuid.uuid4()), others_peer_id):
        for operation, body in (
            ("messages", receiver.message(external_ticket_id=peer_id)),
            (
                "status",
                receiver.status("closed", receiver.pair.clock.now(), external_ticket_id=peer_id),
            ),
        ):
            response = await receiver.post(operation, body)
            assert_problem(response, 409, "urn:tma-crm:problem:ticket-link-conflict")
    assert await receiver.stored_messages() == before
    ticket = await receiver.ticket()
    assert (str(ticket.external_id), ticket.status) == (receiver.peer_id, "open")


# --- status: last writer wins ----------------------------------------------------------------


async def test_status_last_writer_wins(receiver: Receiver) -> None:
    """A newer change is applied; an older or equal one is acknowledged with applied=false and
    changes nothing."""
    held = (await receiver.ticket()).status_changed_at
    newer = held + timedelta(minutes=5)

    applied = await receiver.post("status", receiver.status("closed", newer))
    assert applied.status_code == 200, applied.text
    answer = StatusAccepted.model_validate(applied.json())
    assert (answer.applied, answer.status, answer.status_changed_at) == (True, "closed", newer)

    for stale in (newer - timedelta(seconds=1), newer):
        ignored = await receiver.post("status", receiver.status("in_progress", stale))
        assert ignored.status_code == 200, ignored.text
        answer = StatusAccepted.model_validate(ignored.json())
        assert (answer.applied, answer.status, answer.status_changed_at) == (False, "closed", newer)
    ticket = await receiver.ticket()
    assert (ticket.status, ticket.status_changed_at) == ("closed", newer)


async def test_customer_message_on_a_closed_ticket_reopens_it_on_both_sides(pair: Pair) -> None:
    """The operator closes, the user writes again: the ticket is open on both sides, and no
    status event was needed for it."""
    linked = await linked_ticket(pair)
    closed = await pair.crm.post(
        f"/api/crm/tickets/{linked.crm_id}/status",
        json={"status": "closed"},
        headers=pair.operator_headers,
    )
    assert closed.status_code == 200
    await pair.sync()
    assert (await pair.conversation_in_tma(linked.tma_id))["ticket"]["status"] == "closed"
    status_events = await count(pair.tma_runtime, tma.Outbox, tma.Outbox.kind == "status")

    await pair.user_writes(linked.tma_id, "It happened again")
    await pair.sync()

    in_tma = (await pair.conversation_in_tma(linked.tma_id))["ticket"]
    in_crm = (await pair.conversation_in_crm(linked.crm_id))["ticket"]
    assert in_tma["status"] == in_crm["status"] == "open"
    assert await count(pair.tma_runtime, tma.Outbox, tma.Outbox.kind == "status") == status_events
    [tma_ticket] = await rows(pair.tma_runtime, tma.Ticket)
    [crm_ticket] = await rows(pair.crm_runtime, crm.Ticket)
    # Same rule, same moment on both sides: a later status change compares the same everywhere.
    assert tma_ticket.status_changed_at == crm_ticket.status_changed_at


# --- limits and shapes -----------------------------------------------------------------------


@http_layer_only
async def test_body_over_one_mebibyte_is_413(receiver: Receiver) -> None:
    """Over 1 MiB is refused before parsing, whether the length is declared or streamed."""
    huge = receiver.message(message="x" * (1024 * 1024))
    response = await receiver.post("messages", huge)
    assert_problem(response, 413, "urn:tma-crm:problem:payload-too-large")

    content = httpx.Request("POST", "/", json=huge).read()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(content), 64 * 1024):
            yield content[start : start + 64 * 1024]

    streamed = await receiver.client.post(
        f"{INTEGRATION}/messages",
        content=chunks(),
        headers={**receiver.headers, "Content-Type": "application/json"},
    )
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413, "urn:tma-crm:problem:payload-too-large")
    assert await count(receiver.runtime, receiver.messages, receiver.messages.body == "x") == 0


@http_layer_only
async def test_malformed_json_is_400(receiver: Receiver) -> None:
    for operation in receiver.operations:
        response = await receiver.client.post(
            f"{INTEGRATION}/{operation}",
            content=b'{"external_ticket_id": ',
            headers={**receiver.headers, "Content-Type": "application/json"},
        )
        assert_problem(response, 400, "urn:tma-crm:problem:malformed-request")


INVALID_FIELDS: list[tuple[str, Any]] = [
    ("message", ""),
    ("message", "m" * 4097),
    ("external_message_id", "not-a-uuid"),
    ("external_ticket_id", 42),
    ("created_at", "yesterday"),
    ("created_at", None),  # required and missing
    ("attachments", [{}]),
    (
        "attachments",
        [{"url": "http://x.example/a", "file_name": "a", "mime_type": "a/b", "size": 1}],
    ),
    (
        "attachments",
        [{"url": "https://x.example/a", "file_name": "a", "mime_type": "a/b", "size": 1}] * 11,
    ),
    ("operator_name", ""),
]


@http_layer_only
async def test_invalid_fields_are_422_naming_them(receiver: Receiver) -> None:
    """A field that breaks the schema answers 422 problem+json whose `errors` name it; nothing
    is stored."""
    before = await receiver.stored_messages()
    for field, value in INVALID_FIELDS:
        body = receiver.message(**{field: value})
        if value is None:
            del body[field]
        response = await receiver.post("messages", body)
        problem = assert_problem(response, 422, VALIDATION)
        assert problem.errors, field
        assert all(error.msg and error.type for error in problem.errors)
        assert ("body", field) in {tuple(error.loc[:2]) for error in problem.errors}, (field, value)
    assert await receiver.stored_messages() == before


@http_layer_only
async def test_invalid_status_is_422_naming_it(receiver: Receiver) -> None:
    bad = await receiver.post("status", receiver.status("reopened", receiver.pair.clock.now()))
    assert ["body", "status"] in [e.loc for e in assert_problem(bad, 422, VALIDATION).errors or []]
    assert (await receiver.ticket()).status == "open"


@http_layer_only
async def test_telegram_file_urls_are_refused(receiver: Receiver) -> None:
    """A Telegram file URL embeds the bot token: an attachment with one is refused, not stored."""
    attachment = {
        "url": TELEGRAM_FILE_URL,
        "file_name": "file_1.jpg",
        "mime_type": "image/jpeg",
        "size": 1000,
    }
    before = await receiver.stored_messages()
    response = await receiver.post("messages", receiver.message(attachments=[attachment]))
    problem = assert_problem(response, 422, VALIDATION)
    assert [e.loc for e in problem.errors or []] == [["body", "attachments", 0, "url"]]
    assert "SECRET" not in response.text
    assert await receiver.stored_messages() == before
    if receiver.side == "crm":
        ticket = {
            "external_ticket_id": str(uuid.uuid4()),
            "subject": "Photo",
            "message": "See the photo",
            "external_message_id": str(uuid.uuid4()),
            "attachments": [attachment],
            "customer": {"telegram_user_id": 7, "first_name": "Ivan"},
            "created_at": receiver.pair.clock.now().isoformat(),
        }
        assert_problem(await receiver.post("tickets", ticket), 422, VALIDATION)
        assert await count(receiver.runtime, crm.Ticket) == 1


@http_layer_only
async def test_every_error_is_problem_json(receiver: Receiver) -> None:
    """Errors outside the operations too (wrong method, unknown path) are problem+json."""
    wrong_method = await receiver.client.get(f"{INTEGRATION}/messages", headers=receiver.headers)
    assert_problem(wrong_method, 405)
    unknown = await receiver.client.post(
        f"{INTEGRATION}/nothing-here", json={}, headers=receiver.headers
    )
    assert_problem(unknown, 404)
