"""Bodies are read as the spec's JSON Schema reads them, on both backends: the edges a fuzzer
rarely reaches, each one a way an implementation drifts from the contract unnoticed.

pydantic alone takes "5" and false for integers, unix times and dates without seconds for
date-times, UUIDs without hyphens and null for optional fields; JSON Schema takes none of them, but
does take 5.0 as an integer, lower-case `t`/`z` and leap seconds. A NUL in text is refused (the
spec says so; PostgreSQL could not store it), and unknown fields are ignored whatever they hold.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.harness import SPEC_PATH, TOKENS, Backend, running_backend
from tests.contract.seeding import CALLER, SEEDED, Side
from tests.support.pair import Pair


@pytest.fixture(params=["crm", "tma"])
def backend(request: pytest.FixtureRequest, db_kind: str, tmp_path: Path) -> Iterator[Backend]:
    with running_backend(request.param, db_kind, tmp_path) as served:
        yield served


def _post(backend: Backend, path: str, body: Any, *, raw: bytes | None = None) -> Any:
    headers = {"Authorization": f"Bearer {TOKENS[backend.side]}"}
    if raw is not None:
        headers["Content-Type"] = "application/json"
    url = f"{backend.base_url}/api/integration/{path}"
    return backend.run(
        backend.client.post(url, headers=headers, content=raw)
        if raw is not None
        else backend.client.post(url, headers=headers, json=body)
    )


def _status(side: Side, index: int, **fields: Any) -> dict[str, Any]:
    ticket = SEEDED[side][index]
    body = {
        "ticket_id": str(ticket.receiver_id),
        "external_ticket_id": str(ticket.sender_id),
        "status": "in_progress",
        "changed_at": "2026-11-27T10:00:00Z",
    }
    return {**body, **fields}


def _message(side: Side, **fields: Any) -> dict[str, Any]:
    ticket = SEEDED[side][0]
    body = {
        "ticket_id": str(ticket.receiver_id),
        "external_ticket_id": str(ticket.sender_id),
        "external_message_id": str(uuid.uuid4()),
        "sender": CALLER[side],
        "message": "Hello",
        "created_at": "2026-11-27T10:00:00Z",
    }
    return {**body, **fields}


def _attachment(size: Any) -> list[dict[str, Any]]:
    return [
        {
            "url": "https://f.example/a.png",
            "file_name": "a.png",
            "mime_type": "image/png",
            "size": size,
        }
    ]


ACCEPTED_DATE_TIMES = {
    # sent -> held afterwards (a leap second is held as the last microsecond of its minute)
    "2016-12-31T23:59:60Z": "2016-12-31T23:59:59.999999Z",
    "2016-12-31T20:59:60-03:00": "2016-12-31T20:59:59.999999-03:00",
    "2026-11-27t10:00:00z": "2026-11-27T10:00:00Z",
    "2026-11-27T10:00:00.123456789Z": "2026-11-27T10:00:00.123456Z",
    "2026-11-27T11:30:00+01:30": "2026-11-27T11:30:00+01:30",
}
REFUSED_DATE_TIMES = [
    0,
    1700000000,
    "1700000000",
    "2026-11-27",
    "2026-11-27 10:00:00Z",
    "2026-11-27T10:00Z",
    "2026-11-27T10:00:00",
    "2026-02-30T10:00:00Z",
    "2026-11-27T12:30:60Z",
    "2026-11-27T10:00:00+24:00",
    "2026-11-27T10:00:00+01:75",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+00:01",
    "9999-12-31T23:59:59-00:01",
    None,
]


def test_date_times_are_read_as_rfc_3339(backend: Backend) -> None:
    """Leap seconds and lower case are accepted; anything else JSON Schema refuses is a 422."""
    wrong = []
    for index, (sent, held) in enumerate(ACCEPTED_DATE_TIMES.items()):
        answer = _post(backend, "status", _status(backend.side, index, changed_at=sent))
        if answer.status_code != 200 or answer.json()["status_changed_at"] != held:
            wrong.append((sent, answer.status_code, answer.text))
    for sent in REFUSED_DATE_TIMES:
        answer = _post(backend, "status", _status(backend.side, 5, changed_at=sent))
        errors = answer.json().get("errors", [])
        if answer.status_code != 422 or [e["loc"] for e in errors] != [["body", "changed_at"]]:
            wrong.append((sent, answer.status_code, answer.text))
    assert wrong == []
    assert backend.statuses_applied() == len(ACCEPTED_DATE_TIMES)


STRICT_IDS_AND_ENUMS = [
    ({"ticket_id": None}, "ticket_id"),
    ({"ticket_id": "0b6f6c3e7f1e4d579a435c1f3f5c2a10"}, "ticket_id"),
    ({"ticket_id": "{0b6f6c3e-7f1e-4d57-9a43-5c1f3f5c2a10}"}, "ticket_id"),
    ({"external_ticket_id": "urn:uuid:0b6f6c3e-7f1e-4d57-9a43-5c1f3f5c2a10"}, "external_ticket_id"),
    ({"status": "CLOSED"}, "status"),
    ({"status": None}, "status"),
]


def test_ids_and_enums_are_read_strictly(backend: Backend) -> None:
    """null for an optional field, UUIDs in other spellings, enum values in other case: 422."""
    wrong = []
    for fields, field in STRICT_IDS_AND_ENUMS:
        answer = _post(backend, "status", _status(backend.side, 0, **fields))
        errors = answer.json().get("errors", [])
        if answer.status_code != 422 or [error["loc"] for error in errors] != [["body", field]]:
            wrong.append((fields, answer.status_code, answer.text))
    assert wrong == []
    # Upper-case hex is a UUID all the same.
    upper = _status(backend.side, 0, ticket_id=str(SEEDED[backend.side][0].receiver_id).upper())
    assert _post(backend, "status", upper).status_code == 200


def test_a_422_lists_every_field_error_at_once(backend: Backend) -> None:
    """A malformed date-time, a null and a missing field in one body: one answer names all three."""
    body = _message(backend.side, created_at="yesterday", attachments=None)
    del body["message"]
    answer = _post(backend, "messages", body)
    assert answer.status_code == 422, answer.text
    places = sorted(tuple(error["loc"]) for error in answer.json()["errors"])
    assert places == [("body", "attachments"), ("body", "created_at"), ("body", "message")]


def test_integers_are_json_integers(backend: Backend) -> None:
    """5.0 is an integer; "5", false, 1e40 and a 5000-digit number are not acceptable sizes."""
    accepted = _post(backend, "messages", _message(backend.side, attachments=_attachment(5.0)))
    assert accepted.status_code == 201, accepted.text
    for size in ["5", False, 1e40]:
        answer = _post(backend, "messages", _message(backend.side, attachments=_attachment(size)))
        assert answer.status_code == 422, (size, answer.text)
    huge = _message(backend.side, attachments=_attachment(0))
    raw = json.dumps(huge).replace('"size": 0', '"size": ' + "9" * 5000)
    answer = _post(backend, "messages", None, raw=raw.encode())
    assert answer.status_code == 422, answer.text
    assert backend.stored_messages(sender=CALLER[backend.side]) == 1


def test_nul_in_text_is_refused_on_every_database(backend: Backend) -> None:
    """A NUL is a 422 on SQLite and PostgreSQL alike (never a 500), and nothing is stored."""
    for fields in [{"message": "a\x00b"}, {"operator_name": "\x00"}]:
        answer = _post(backend, "messages", _message(backend.side, **fields))
        assert answer.status_code == 422, answer.text
    assert backend.count("messages") == 0


def test_unknown_fields_are_ignored_whatever_they_hold(backend: Backend) -> None:
    """Tolerant reader: null, NUL, nesting or huge numbers in unknown fields change nothing."""
    extra = {"future": None, "note": "\x00", "nested": {"a": [1, None]}, "big": 10**30}
    answer = _post(backend, "messages", _message(backend.side, **extra))
    assert answer.status_code == 201, answer.text


def test_a_body_that_is_not_json_is_a_400(backend: Backend) -> None:
    """Malformed JSON, JavaScript's NaN, undecodable bytes, an empty body: 400 problem+json."""
    for raw in [b"{", b'{"status": NaN}', b"\xff\xfe\xfd", b""]:
        answer = _post(backend, "status", None, raw=raw)
        assert answer.status_code == 400, (raw, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"] == "urn:tma-crm:problem:malformed-request"


def test_no_request_property_of_the_spec_is_nullable() -> None:
    """The strict reading refuses null for known fields; that holds only while the spec agrees."""
    schemas = yaml.safe_load(SPEC_PATH.read_text())["components"]["schemas"]
    nullable = []
    for name in (
        "CreateTicketRequest",
        "MessageRequest",
        "StatusRequest",
        "Customer",
        "Attachment",
    ):
        for field, schema in schemas[name]["properties"].items():
            text = json.dumps(schema)
            if '"null"' in text or schema.get("nullable"):
                nullable.append(f"{name}.{field}")
    assert nullable == []


async def test_user_facing_apis_refuse_text_the_contract_cannot_carry(pair: Pair) -> None:
    """A NUL typed in the Mini App or by an operator is a 422 there, not an undeliverable event."""
    ticket = await pair.open_ticket()
    await pair.sync()
    nul_ticket = {
        "id": str(uuid.uuid4()),
        "subject": "a\x00",
        "message": "b",
        "message_id": str(uuid.uuid4()),
    }
    opened = await pair.tma.post(
        "/api/support/tickets", json=nul_ticket, headers=pair.user_headers()
    )
    written = await pair.tma.post(
        f"/api/support/tickets/{ticket['id']}/messages",
        json={"id": str(uuid.uuid4()), "message": "a\x00b"},
        headers=pair.user_headers(),
    )
    crm_ticket = await pair.crm_ticket_for(ticket["id"])
    replied = await pair.crm.post(
        f"/api/crm/tickets/{crm_ticket['id']}/messages",
        json={"message": "\x00"},
        headers=pair.operator_headers,
    )
    assert [opened.status_code, written.status_code, replied.status_code] == [422, 422, 422]
    assert await pair.sync() == 0  # nothing was queued for the peer
