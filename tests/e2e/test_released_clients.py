"""A peer still on the released contract works against today's servers (docs/design.md §6).

The client is generated from the newest spec/released/<version>.yaml at test time, the way
`make generate` makes today's, and every operation of that spec is called on every side that
serves it, against the real TMA and CRM apps on real databases. Each success answer must parse
into the released client's own models: a field removed, an enum value added or a status
changed would fail here before it failed a peer in production.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from integration_kit.contract_version import UNVERSIONED
from integration_kit.signing import SigningTransport
from tests.e2e.helpers import Linked, linked_ticket
from tests.support.pair import (
    CRM_TO_TMA_SECRET,
    CRM_TO_TMA_TOKEN,
    TMA_TO_CRM_SECRET,
    TMA_TO_CRM_TOKEN,
    Pair,
)
from tests.support.released import Operation, operations, released_client, released_spec

# A call of one operation: the request body (None for a GET), its query parameters, and the
# status the server must answer.
Call = tuple[dict[str, Any] | None, dict[str, Any], int]
Cases = Callable[[str, Linked, Pair], Awaitable[list[Call]]]


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    with released_client(tmp_path_factory.mktemp("released")) as client:
        yield client


def _client(released: ModuleType, app: FastAPI, *, token: str, secret: str, pair: Pair) -> Any:
    """The released client as a peer of that version builds it: bearer token and signature
    (both in the released contract), and no Contract-Version, which came later."""
    return released.AuthenticatedClient(
        base_url="http://peer.test",
        token=token,
        raise_on_unexpected_status=True,
        httpx_args={
            "transport": SigningTransport(
                httpx.ASGITransport(app=app), secret=lambda: secret, clock=pair.clock
            )
        },
    )


def _sender(side: str) -> str:
    return "tma" if side == "crm" else "crm"


def _ids(side: str, ticket: Linked) -> dict[str, str]:
    """The ticket's ids as the caller of `side` names them: its own, and the receiver's."""
    if side == "crm":
        return {"external_ticket_id": ticket.tma_id, "ticket_id": ticket.crm_id}
    return {"external_ticket_id": ticket.crm_id, "ticket_id": ticket.tma_id}


async def _create_ticket(side: str, ticket: Linked, pair: Pair) -> list[Call]:
    body = {
        "external_ticket_id": str(uuid.uuid4()),
        "subject": "Refund",
        "message": "Where is my refund?",
        "external_message_id": str(uuid.uuid4()),
        "attachments": [
            {
                "url": "https://files.example.com/u/42/receipt.png",
                "file_name": "receipt.png",
                "mime_type": "image/png",
                "size": 48213,
            }
        ],
        "customer": {
            "telegram_user_id": 4243,
            "first_name": "Boris",
            "last_name": "P",
            "username": "boris_p",
            "language_code": "en",
        },
        "created_at": pair.clock.now().isoformat(),
    }
    return [(body, {}, 201), (body, {}, 200)]  # the first time, and a replay


async def _post_message(side: str, ticket: Linked, pair: Pair) -> list[Call]:
    body = {
        **_ids(side, ticket),
        "external_message_id": str(uuid.uuid4()),
        "sender": _sender(side),
        "message": "One more thing",
        "attachments": [],
        "created_at": pair.clock.now().isoformat(),
    }
    if side == "tma":
        body["operator_name"] = "Maria"
    return [(body, {}, 201), (body, {}, 200)]


async def _post_status(side: str, ticket: Linked, pair: Pair) -> list[Call]:
    later = pair.clock.now() + timedelta(seconds=5 if side == "crm" else 10)
    body = {**_ids(side, ticket), "status": "closed", "changed_at": later.isoformat()}
    return [(body, {}, 200)]


async def _list_changes(side: str, ticket: Linked, pair: Pair) -> list[Call]:
    return [(None, {}, 200), (None, {"limit": 1}, 200)]


# One entry per operationId of the released contract; an operation the released spec lists and
# this table lacks fails the test (the list itself comes from the spec).
CASES: dict[str, Cases] = {
    "createTicket": _create_ticket,
    "postMessage": _post_message,
    "postStatus": _post_status,
    "listChanges": _list_changes,
}


async def _call(released: ModuleType, client: Any, op: Operation, side: str, call: Call) -> Any:
    body, params, status = call
    module = __import__(
        f"{released.__name__}.api.{side}.{op.module}", fromlist=["asyncio_detailed"]
    )
    kwargs = dict(params)
    if op.request_schema is not None:
        assert body is not None
        kwargs["body"] = getattr(released.models, op.request_schema).from_dict(body)
    response = await module.asyncio_detailed(client=client, **kwargs)
    assert response.status_code == status, (op.operation_id, side, response.content)
    assert status in op.answers, f"{op.operation_id} answered {status}, not in the release"
    answer_model = getattr(released.models, op.answers[status])
    assert isinstance(response.parsed, answer_model), response.content
    return response.parsed


async def test_every_operation_of_the_released_contract_works_against_todays_servers(
    pair: Pair, released: ModuleType
) -> None:
    ticket = await linked_ticket(pair)
    await pair.user_writes(ticket.tma_id, "Still waiting")
    await pair.operator_replies(ticket.crm_id, "On it")
    await pair.sync()
    clients = {
        "crm": _client(
            released, pair.crm_app, token=TMA_TO_CRM_TOKEN, secret=TMA_TO_CRM_SECRET, pair=pair
        ),
        "tma": _client(
            released, pair.tma_app, token=CRM_TO_TMA_TOKEN, secret=CRM_TO_TMA_SECRET, pair=pair
        ),
    }
    spec_operations = operations(released_spec())
    exercised = set()
    try:
        for op in spec_operations:
            assert op.operation_id in CASES, (
                f"{op.operation_id} of the released contract is not exercised against "
                "today's servers: add its calls to CASES"
            )
            for side in op.served_by:
                answers = [
                    await _call(released, clients[side], op, side, call)
                    for call in await CASES[op.operation_id](side, ticket, pair)
                ]
                _check_answers(op.operation_id, answers)
                exercised.add((op.operation_id, side))
    finally:
        for client in clients.values():
            await client.get_async_httpx_client().aclose()
    assert exercised == {(op.operation_id, s) for op in spec_operations for s in op.served_by}
    # Both servers took these requests without a Contract-Version: a peer of the release.
    assert pair.tma_runtime.peer_contract.version == UNVERSIONED
    assert pair.crm_runtime.peer_contract.version == UNVERSIONED


def _check_answers(operation_id: str, answers: list[Any]) -> None:
    """What each answer must say beyond its shape."""
    if operation_id in {"createTicket", "postMessage"}:
        first, replay = answers
        assert first.to_dict() == replay.to_dict()  # a replay answers the same ids
    if operation_id == "postStatus":
        [answer] = answers
        assert answer.applied is True
        assert str(answer.status) == "closed"
    if operation_id == "listChanges":
        full, one = answers
        kinds = {str(item.kind) for item in full.items}
        assert {"ticket", "message"} <= kinds, kinds
        assert len(one.items) == 1
        assert one.has_more is True
