"""schemathesis command-line hooks for `make contract` (loaded through SCHEMATHESIS_HOOKS).

The same hooks and checks as the pytest contract tests: generated requests mostly name the tickets
scripts/contract.py seeded into the server under test (CONTRACT_SIDE says which), so messages and
status changes are stored rather than answered 404; valid cases get fresh ids, status changes
dated near the server's clock, and keep to the instants the spec allows. Every request is signed
(Standard Webhooks) with CONTRACT_SIGNING_SECRET, the server's inbound secret, over the exact
bytes sent.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import requests
import schemathesis
from schemathesis.core.parameters import ParameterLocation

from integration_kit.signing import signature_headers
from tests.contract import checks  # noqa: F401  (registers the checks of the spec's prose)
from tests.contract.seeding import (
    CaseClock,
    aim_at_seeded_tickets,
    names_representable_instants,
)

SIDE = os.environ.get("CONTRACT_SIDE", "")
if SIDE not in ("crm", "tma"):
    raise RuntimeError("set CONTRACT_SIDE to the side under test: crm or tma")
SECRET = os.environ.get("CONTRACT_SIGNING_SECRET", "")
if not SECRET:
    raise RuntimeError("set CONTRACT_SIGNING_SECRET to the inbound signing secret of the server")


# Valid status changes are dated from the server's clock on: the wall clock here.
CLOCK = CaseClock(datetime.now(UTC))


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: Any) -> Any:
    return aim_at_seeded_tickets("crm" if SIDE == "crm" else "tma", case, clock=CLOCK)


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: Any) -> bool:
    return names_representable_instants(case)


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Any, kwargs: dict[str, Any]) -> None:
    """Sign the request over the bytes it will carry: the body is serialised here, as the
    transport (requests) would, and passed on as those bytes, so nothing re-encodes it.

    A case made negative in its headers (a webhook-* header left out or mangled on purpose) goes
    as it is: signing it would turn the rejection schemathesis expects into an acceptance.
    """
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        return
    prepared = case.as_transport_kwargs(base_url="http://signing.invalid")
    body = (
        requests.Request(
            method=prepared["method"],
            url=prepared["url"],
            json=prepared.get("json"),
            data=prepared.get("data"),
        )
        .prepare()
        .body
    )
    raw = body.encode() if isinstance(body, str) else (body or b"")
    if body is not None:
        kwargs["data"] = raw
    case.headers = {
        **(case.headers or {}),
        **signature_headers(SECRET, msg_id=str(uuid.uuid4()), timestamp=int(time.time()), body=raw),
    }
