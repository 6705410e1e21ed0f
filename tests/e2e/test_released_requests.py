"""What today's senders send is valid under the released contract (docs/design.md §6), so a peer
still on that release reads it during a rolling upgrade.

Both real backends talk to each other through every kind of event they send (a ticket opened, a
message each way, a status change each way) and read each other's change feed (`reconcile`).
Every request on the wire is then checked against the newest spec/released/<version>.yaml: its
path and method name an operation the receiving side serves there, the security headers it
requires are present, its parameters and JSON body validate against that operation's schemas
(formats included). The operations to cover come from the released spec: one it lists that no
sender exercised fails the test, and so does a request to an operation it lacks (a peer of the
release would answer 404 and the event would die).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from tests.e2e.helpers import Exchange, record
from tests.support.pair import Pair
from tests.support.released import Operation, operations, released_spec, validator


def _problems(spec: Mapping[str, Any], op: Operation, exchange: Exchange) -> list[str]:
    """Every way `exchange` breaks the released contract's request for `op`."""
    problems = []
    for header in op.security_headers:
        if not exchange.headers.get(header, "").strip():
            problems.append(f"header {header} missing")
    if not exchange.headers.get("authorization", "").startswith("Bearer "):
        problems.append("no bearer token")
    query = dict(parse_qsl(exchange.query, keep_blank_values=True))
    values = {("query", name): value for name, value in query.items()}
    values.update({("header", name): value for name, value in exchange.headers.items()})
    for name in query:
        if ("query", name) not in op.parameters:
            problems.append(f"query parameter {name} is not in the release")
    for (where, name), parameter in op.parameters.items():
        raw = values.get((where, name))
        if raw is None:
            if parameter.get("required"):
                problems.append(f"{where} parameter {name} missing")
            continue
        schema = parameter["schema"]
        value: Any = int(raw) if schema.get("type") == "integer" and raw.isdigit() else raw
        problems += [
            f"{where} parameter {name}: {error.message}"
            for error in validator(spec, schema).iter_errors(value)
        ]
    if op.request_schema is None:
        if exchange.body:
            problems.append("a body where the release has none")
        return problems
    if not exchange.headers.get("content-type", "").startswith("application/json"):
        problems.append(f"content-type {exchange.headers.get('content-type')}")
    schema = {"$ref": f"#/components/schemas/{op.request_schema}"}
    problems += [
        f"body at /{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator(spec, schema).iter_errors(json.loads(exchange.body))
    ]
    return problems


async def _every_kind_of_traffic(pair: Pair) -> None:
    """Each side sends each event it can, and reads the other's feed."""
    ticket = await pair.open_ticket(
        attachments=[
            {
                "url": "https://files.example.com/u/42/receipt.png",
                "file_name": "receipt.png",
                "mime_type": "image/png",
                "size": 48213,
            }
        ]
    )
    await pair.sync()
    crm_ticket = await pair.crm_ticket_for(ticket["id"])
    await pair.user_writes(ticket["id"], "Any news?")
    await pair.operator_replies(crm_ticket["id"], "We are on it")
    for status in ("in_progress", "closed"):
        pair.clock.advance(1)
        changed = await pair.crm.post(
            f"/api/crm/tickets/{crm_ticket['id']}/status",
            json={"status": status},
            headers=pair.operator_headers,
        )
        assert changed.status_code == 200, changed.text
    await pair.sync()
    for status in ("open", "closed"):  # the customer reopens, then closes it
        pair.clock.advance(1)
        changed = await pair.tma.post(
            f"/api/support/tickets/{ticket['id']}/status",
            json={"status": status},
            headers=pair.user_headers(),
        )
        assert changed.status_code == 200, changed.text
    await pair.sync()
    for side in ("tma", "crm"):
        await pair.reconcile(side)  # from the start, then from its saved cursor
        await pair.reconcile(side)


async def test_what_todays_senders_send_validates_against_the_released_contract(
    pair: Pair,
) -> None:
    spec = released_spec()
    spec_operations = operations(spec)
    by_route = {(op.method, op.path): op for op in spec_operations}
    to_crm, to_tma = record(pair.to_crm), record(pair.to_tma)
    await _every_kind_of_traffic(pair)

    exercised: set[tuple[str, str]] = set()
    problems: list[str] = []
    for receiver, recorder in (("crm", to_crm), ("tma", to_tma)):
        for exchange in recorder.exchanges:
            where = f"{exchange.method} {exchange.path} to the {receiver}"
            # Real traffic that succeeded, so what it shows is what the senders really send.
            assert 200 <= (exchange.status or 0) < 300, f"{where}: {exchange.answer!r}"
            op = by_route.get((exchange.method, exchange.path))
            if op is None or receiver not in op.served_by:
                problems.append(f"{where}: no such operation served there in the release")
                continue
            exercised.add((op.operation_id, receiver))
            problems += [f"{where}: {problem}" for problem in _problems(spec, op, exchange)]
    assert not problems, "\n".join(problems)
    expected = {(op.operation_id, side) for op in spec_operations for side in op.served_by}
    assert not expected - exercised, f"not sent by today's senders: {sorted(expected - exercised)}"


def test_the_check_finds_what_a_release_peer_would_refuse() -> None:
    """Not vacuous: a body, a parameter and a header that break the release are each found."""
    spec = released_spec()
    ops = {op.operation_id: op for op in operations(spec)}
    headers = {
        "authorization": "Bearer t",
        "webhook-id": "msg_1",
        "webhook-timestamp": "1",
        "webhook-signature": "v1,x",
        "content-type": "application/json",
    }
    good = {
        "external_ticket_id": "0b6f6c3e-7f1e-4d57-9a43-5c1f3f5c2a10",
        "status": "closed",
        "changed_at": "2026-11-27T10:30:00Z",
    }
    status = ops["postStatus"]
    path = status.path
    assert _problems(spec, status, Exchange(path, json.dumps(good).encode(), headers=headers)) == []
    for broken in (
        {**good, "status": "reopened"},  # an enum value the release lacks
        {**good, "changed_at": "yesterday"},  # the format is checked
        {key: value for key, value in good.items() if key != "changed_at"},  # required
    ):
        exchange = Exchange(path, json.dumps(broken).encode(), headers=headers)
        assert _problems(spec, status, exchange), broken
    unsigned = {k: v for k, v in headers.items() if k != "webhook-signature"}
    exchange = Exchange(path, json.dumps(good).encode(), headers=unsigned)
    assert _problems(spec, status, exchange) == ["header webhook-signature missing"]
    feed = ops["listChanges"]
    for query in ("limit=0", "limit=501", "after=UPPER", "since=1"):
        exchange = Exchange(feed.path, b"", method="GET", headers=headers, query=query)
        assert _problems(spec, feed, exchange), query
