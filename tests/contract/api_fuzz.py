"""Fuzzing the backends' own APIs from their committed documents (spec/user-api.yaml,
spec/operator-api.yaml), the way tests/contract/harness.py fuzzes the contract.

The documents are made from the apps, so fuzzing the app's live schema would only check the app
against itself; the committed file is what clients read, and `make check-generated` keeps it
equal to the app. Every operation the document lists is fuzzed (an operation added later is
covered once `make generate` has written it), except those that stream or long-poll: a
stateless fuzzer waits for each answer, so an operation that says `x-long-poll: true` or answers
`text/event-stream` is left out, by that declaration and never by its path.

The caller is a seeded identity: on the TMA, Telegram user 1000 who owns the contract suite's
seeded tickets (initData minted for the backend's clock); on the CRM, an operator with a fixed
token. Generated ticket ids mostly name seeded tickets, so valid requests reach the code that
reads and stores instead of answering 404.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import schemathesis

from crm_impl import tables as crm_tables
from crm_impl.operators.auth import hash_token
from integration_kit.api_docs import LONG_POLL
from integration_kit.db import Database
from tests.contract.harness import (
    CONFIG_PATH,
    TALLY,
    AppBridge,
    Backend,
    Credentials,
    backend_settings,
    running_backend,
)
from tests.contract.seeding import SEEDED, Side
from tma_impl.telegram import TelegramUser, mint_init_data

ROOT = Path(__file__).resolve().parents[2]
Api = Literal["user-api", "operator-api"]
SIDE_OF: dict[Api, Side] = {"user-api": "tma", "operator-api": "crm"}

# The backend's clock starts here (tests.contract.harness.running_backend); initData minted for
# it stays fresh for TMA_INIT_DATA_MAX_AGE_SECONDS of that clock.
CLOCK_START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SEEDED_USER = TelegramUser(id=1000, first_name="Seeded", username="seeded_user")
OPERATOR_TOKEN = "op_fuzz-operator-token-0123456789abcdef"
OPERATOR_ID = uuid.UUID("0f0f0f0f-0000-4000-8000-00000000f00d")
# One id that recurs across generated writes: a retry (200) or the id reused with other content
# (409) happen too, not only first writes.
RECURRING_ID = uuid.UUID("0f0f0f0f-0000-4000-8000-00000000beef")


def valid_authorization(api: Api) -> str:
    """The Authorization header of the seeded caller."""
    if api == "operator-api":
        return f"Bearer {OPERATOR_TOKEN}"
    bot_token = backend_settings("tma", "sqlite://").dev_bot_token  # what the backend checks
    init_data = mint_init_data(bot_token=bot_token, user=SEEDED_USER, auth_date=CLOCK_START)
    return f"tma {init_data}"


def wrong_authorization(api: Api) -> str:
    if api == "operator-api":
        return "Bearer op_not-a-token-anybody-has"
    init_data = mint_init_data(
        bot_token="111111:another-bots-token", user=SEEDED_USER, auth_date=CLOCK_START
    )
    return f"tma {init_data}"


def _config(api: Api, *, credentials: Credentials, max_examples: int) -> Any:
    """schemathesis.toml (shared with the contract suite) with this API's credentials."""
    config: dict[str, Any] = tomllib.loads(CONFIG_PATH.read_text())
    config["generation"]["max-examples"] = max_examples
    if os.environ.get("CONTRACT_SEED"):
        config["seed"] = int(os.environ["CONTRACT_SEED"])  # to explore beyond the fixed cases
    scheme = "operatorToken" if api == "operator-api" else "telegramInitData"
    if credentials == "none":
        config["generation"]["with-security-parameters"] = False
    else:
        header = valid_authorization(api) if credentials == "valid" else wrong_authorization(api)
        if api == "operator-api":
            config["auth"] = {"openapi": {scheme: {"bearer": header.removeprefix("Bearer ")}}}
        else:
            config["auth"] = {"openapi": {scheme: {"api_key": header}}}
    if credentials == "valid":
        # The contract's 403 (a foreign sender) does not exist on these APIs; 204 is an accepted
        # write with nothing to answer (a read marker, a replay).
        config["checks"]["positive_data_acceptance"]["expected-statuses"] = [
            "200",
            "201",
            "204",
            "404",
            "409",
        ]
    else:
        config["checks"] = {
            "positive_data_acceptance": {"expected-statuses": ["401"]},
            "negative_data_rejection": {"expected-statuses": ["401"]},
        }
    return schemathesis.Config.from_dict(config)


def streams(ctx: Any) -> bool:
    """An operation that streams or long-polls, by its declaration (see the module docstring)."""
    raw = ctx.operation.definition.raw
    if raw.get(LONG_POLL) is True:
        return True
    return any(
        "text/event-stream" in response.get("content", {})
        for response in raw.get("responses", {}).values()
        if isinstance(response, dict)
    )


def _choice(case: schemathesis.Case) -> tuple[int, int]:
    """Two small numbers fixed by the generated case, so aiming repeats with the generation."""
    material = json.dumps(
        [case.path_parameters, case.query, case.body], sort_keys=True, default=str
    ).encode()
    digest = hashlib.sha256(material).digest()
    return digest[0] % 8, digest[1]


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


MAX_CURSOR = 200  # the user API's `after` (tma_impl/support/endpoints.py)


def aim(api: Api, case: schemathesis.Case) -> schemathesis.Case:
    """Point a generated request at the seeded tickets; only a valid id is replaced, by another
    valid one, so a negative case stays as invalid as it was generated. One case in eight keeps
    its random ticket id (404), one in eight reuses the recurring write id (200 or 409)."""
    slot, pick = _choice(case)
    tickets = SEEDED[SIDE_OF[api]]
    params = case.path_parameters or {}
    event_id = params.get("event_id")
    if slot != 0 and isinstance(event_id, int) and not isinstance(event_id, bool) and event_id >= 0:
        params["event_id"] = FIRST_DEAD_ID + pick % DEAD_EVENTS
    if slot != 0 and _is_uuid(params.get("ticket_id")):
        params["ticket_id"] = str(tickets[pick % len(tickets)].receiver_id)
    # A made-up page cursor is refused by design (422: the server made none such); a valid one
    # comes only from a previous page, so a schema-valid `after` is dropped to reach the list.
    query = case.query or {}
    after = query.get("after")
    if isinstance(after, str) and 0 < len(after) <= MAX_CURSOR:
        del query["after"]
    body = case.body
    if slot == 1 and isinstance(body, dict):
        for key in ("id", "message_id"):
            if _is_uuid(body.get(key)):
                body[key] = str(RECURRING_ID)
    return case


@dataclass
class ApiContract:
    """One API's committed document, loaded for one kind of credentials."""

    api: Api
    credentials: Credentials
    schema: Any
    bridge: AppBridge
    # (operationId, status) of every answer to a generated case while serving
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)

    @property
    def side(self) -> Side:
        return SIDE_OF[self.api]

    @contextmanager
    def serving(self, backend: Backend) -> Iterator[Backend]:
        self.bridge.backend = backend
        self.answers.clear()
        try:
            yield backend
        finally:
            self.bridge.backend = None

    def operations_without_success(self) -> list[str]:
        """Operations that answered some case but never with a 2xx."""
        answered = {operation for operation, _status in self.answers}
        succeeded = {op for op, status in self.answers if 200 <= status < 300}
        return sorted(answered - succeeded)


def load_api(api: Api, *, max_examples: int, credentials: Credentials = "valid") -> ApiContract:
    """The committed document of `api` (never the app's own schema), streams left out."""
    config = _config(api, credentials=credentials, max_examples=max_examples)
    schema = schemathesis.openapi.from_path(ROOT / "spec" / f"{api}.yaml", config=config)
    schema = schema.exclude(func=streams)
    bridge = AppBridge(label=api)
    schema.app = bridge

    contract = ApiContract(api, credentials, schema, bridge)

    @schema.hook("after_call")
    def _tally(_context: schemathesis.HookContext, case: Any, response: Any) -> None:
        TALLY[f"{api} cases"] += 1
        operation = str(case.operation.definition.raw.get("operationId", case.operation.label))
        contract.answers[operation, response.status_code] += 1

    @schema.hook("map_case")
    def _aim(_context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
        return aim(api, case)

    return contract


# Dead outbox events seeded on the CRM for replay and skip, with ids far above what the table's
# own sequence gives out (PostgreSQL's sequence does not move for ids set by hand).
DEAD_EVENTS = 40
FIRST_DEAD_ID = 1_000_001


async def seed_operator(db: Database) -> None:
    async with db.transaction() as session:
        # Dead events for the admin's replay and skip to reach (each only once: then 409).
        session.add_all(
            crm_tables.Outbox(
                id=FIRST_DEAD_ID + n,
                ticket_id=uuid.uuid5(uuid.NAMESPACE_URL, f"fuzz-dead-{n}"),
                kind="message",
                payload={},
                state="dead",
                attempts=1,
                created_at=CLOCK_START,
                next_attempt_at=CLOCK_START,
                last_error="seeded for fuzzing",
            )
            for n in range(DEAD_EVENTS)
        )
        session.add(
            crm_tables.Operator(
                id=OPERATOR_ID,
                name="Fuzz Operator",
                token_hash=hash_token(OPERATOR_TOKEN),
                created_at=CLOCK_START,
                # An admin, so replay and skip are reached too (a non-admin's 403 has its test).
                is_admin=True,
            )
        )


@contextmanager
def serving_api(api: Api, db_kind: str, tmp_path: Path) -> Iterator[Backend]:
    """The API's backend on a fresh database with the contract's seeded tickets (whose TMA owner
    is the seeded user) and, on the CRM, the seeded operator."""
    with running_backend(SIDE_OF[api], db_kind, tmp_path) as backend:
        if api == "operator-api":
            backend.run(seed_operator(backend.runtime.db))
        yield backend
