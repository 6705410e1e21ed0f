"""What the contract tests share: the spec loaded for one backend, and that backend running
in-process on a fresh migrated database with the seeded tickets.

schemathesis sends its requests (those of its checks included: `ignored_auth` re-sends each
accepted request without the token and with a wrong one) to the app attached to the schema. Its
own ASGI client would run the app on a background event loop that lives until the interpreter
exits, out of reach of the fixtures that create and drop the database. So the schema gets an
`AppBridge` instead: schemathesis calls it synchronously (as it calls a WSGI app), and it runs
each request through the backend's ASGI app on the backend's own event loop, an `asyncio.Runner`
owned by the fixture. Migrating, seeding, every request, resets and shutdown all happen on that
one loop, so the database engine never sees another and each run ends cleanly.
"""

from __future__ import annotations

import asyncio
import copy
import os
import tomllib
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from sqlalchemy import func, select
from starlette.types import ASGIApp

from crm_impl import tables as crm_tables
from crm_impl.app import build_runtime as build_crm
from crm_impl.app import create_app as create_crm_app
from crm_impl.settings import CrmSettings
from integration_kit.clock import ManualClock
from integration_kit.runtime import Runtime
from integration_kit.signing import SigningTransport, signature_headers
from tests.contract import checks  # noqa: F401  (registers the checks of the spec's prose)
from tests.contract.acceptance import Counts, Suite, record
from tests.contract.seeding import (
    CLOCK_START,
    SEEDED,
    SEEDED_STATUS_AT,
    CaseClock,
    Side,
    aim_at_seeded_tickets,
    names_representable_instants,
    reset,
    seed,
)
from tests.support.databases import fresh_database
from tma_impl import tables as tma_tables
from tma_impl.app import build_runtime as build_tma
from tma_impl.app import create_app as create_tma_app
from tma_impl.settings import TmaSettings

T = TypeVar("T")
# The credentials a run presents: the backend's own inbound token, a wrong one, or none at all;
# or the right token on an unsigned request, or on one signed six minutes ago (stale).
Credentials = Literal["valid", "wrong", "none", "unsigned", "stale"]
# What the hook points generated requests at: seeded tickets and the caller as sender; only the
# sender (links supply the ids); or nothing.
Aim = Literal["tickets", "sender", "nothing"]

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "spec" / "integration.yaml"
CONFIG_PATH = ROOT / "schemathesis.toml"

TOKENS: dict[Side, str] = {"crm": "contract-tma-to-crm", "tma": "contract-crm-to-tma"}
WRONG_TOKEN = "contract-wrong-token"
# Each side's inbound signing secret (Standard Webhooks), what its caller signs with.
SECRETS: dict[Side, str] = {
    "crm": "whsec_Y29udHJhY3QtdGVzdHMgdG1hLXRvLWNybSBzaWduaW5nIHNlY3JldA==",
    "tma": "whsec_Y29udHJhY3QtdGVzdHMgY3JtLXRvLXRtYSBzaWduaW5nIHNlY3JldA==",
}
# Older than the receiver's 5-minute window.
STALE_SECONDS = 6 * 60
BASE_URLS: dict[Side, str] = {"crm": "http://crm.test", "tma": "http://tma.test"}
TABLES = {"crm": crm_tables, "tma": tma_tables}
# Cases generated and requests sent (checks send probes of their own) per side, this session.
TALLY: Counter[str] = Counter()


def contract_config(side: Side, *, credentials: Credentials, max_examples: int) -> Any:
    """schemathesis.toml (shared with `make contract`), with this run's credentials.

    With a wrong token or none, unsigned or stale, every request must be answered 401, valid
    data or not.
    """
    config: dict[str, Any] = tomllib.loads(CONFIG_PATH.read_text())
    config["generation"]["max-examples"] = max_examples
    if os.environ.get("CONTRACT_SEED"):
        config["seed"] = int(os.environ["CONTRACT_SEED"])  # to explore beyond the fixed cases
    if credentials == "none":
        # Not even a generated token: the `Authorization` header is left out altogether.
        config["generation"]["with-security-parameters"] = False
    else:
        token = TOKENS[side] if credentials in ("valid", "unsigned", "stale") else WRONG_TOKEN
        # The webhook-* schemes need values of their own (without them schemathesis sends the
        # bearer token empty too); the bridge replaces them with the real signature, or drops
        # them for an unsigned or stale run.
        config["auth"] = {
            "openapi": {
                "bearerAuth": {"bearer": token},
                "webhookId": {"api_key": "replaced-by-the-bridge"},
                "webhookTimestamp": {"api_key": "0"},
                "webhookSignature": {"api_key": "v1,cmVwbGFjZWQtYnktdGhlLWJyaWRnZQ=="},
            }
        }
    if credentials != "valid":
        config["checks"] = {
            "positive_data_acceptance": {"expected-statuses": ["401"]},
            "negative_data_rejection": {"expected-statuses": ["401"]},
        }
    return schemathesis.Config.from_dict(config)


def served_by(side: Side, *, writes_only: bool = False) -> Callable[[Any], bool]:
    """A schemathesis filter: the operations the spec assigns to `side` (`x-served-by`), only
    those that change something with `writes_only`."""

    def matcher(ctx: Any) -> bool:
        if writes_only and ctx.operation.method.upper() == "GET":
            return False
        return side in ctx.operation.definition.raw.get("x-served-by", [])

    matcher.__name__ = f"served_by_{side}" + ("_writes" if writes_only else "")
    return matcher


class AppBridge:
    """The callable schemathesis sends every request to (see the module docstring).

    It signs each request as the backend's peer would (Standard Webhooks, over the bytes sent),
    unless the run is meant to be unsigned or stale: a hook on schemathesis's side could only sign
    the body before it is serialised, and the probes of its checks (`ignored_auth`) bypass
    hooks. It also counts the answers by path and status, so a run can show what it reached.
    """

    def __init__(self, credentials: Credentials = "valid", label: str | None = None) -> None:
        self.backend: Backend | None = None
        self.credentials = credentials
        self.label = label  # what TALLY counts the requests as; the backend's side if None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        backend = self.backend
        assert backend is not None, "no backend is serving this contract: use its fixture"
        headers = [
            (name[5:].replace("_", "-").lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in environ.items()
            if name.startswith("HTTP_")
        ]
        for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(name):
                headers.append((name.replace("_", "-").lower().encode(), environ[name].encode()))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        target = environ.get("RAW_URI") or environ.get("PATH_INFO") or "/"
        if environ.get("QUERY_STRING") and "?" not in target:
            target += "?" + environ["QUERY_STRING"]
        if self.credentials in ("unsigned", "stale"):
            # The values schemathesis generated for the webhook-* security parameters go too.
            headers = [(n, v) for n, v in headers if not n.startswith(b"webhook-")]
        if self.credentials == "stale":
            signed_at = int(backend.runtime.clock.now().timestamp()) - STALE_SECONDS
            headers += [
                (name.encode(), value.encode())
                for name, value in signature_headers(
                    SECRETS[backend.side], msg_id=str(uuid.uuid4()), timestamp=signed_at, body=body
                ).items()
            ]
        client = backend.client if self.credentials not in ("unsigned", "stale") else backend.raw
        answer = backend.run(
            client.request(
                environ["REQUEST_METHOD"], backend.base_url + target, headers=headers, content=body
            )
        )
        backend.answers[(environ.get("PATH_INFO", ""), answer.status_code)] += 1
        TALLY[f"{self.label or backend.side} requests"] += 1
        start_response(
            f"{answer.status_code} {answer.reason_phrase}",
            [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in answer.headers.raw
            ],
        )
        return [answer.content]


@dataclass
class Backend:
    """One backend on a fresh database, with HTTP clients that call its app in-process: `client`
    signs every request as the peer does, `raw` sends requests as they are."""

    side: Side
    runtime: Runtime
    app: FastAPI
    runner: asyncio.Runner
    client: httpx.AsyncClient
    raw: httpx.AsyncClient
    base_url: str
    db_kind: str
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    # Cases of each operation and how many valid ones were accepted (tests.contract.acceptance).
    acceptance: dict[str, Counts] = field(default_factory=dict)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this backend's event loop."""
        return self.runner.run(coroutine)

    def count(self, table: str, *criteria: Any) -> int:
        """Rows of one of this backend's tables (`tickets`, `messages`, `outbox`)."""
        model = {
            "tickets": TABLES[self.side].Ticket,
            "messages": TABLES[self.side].Message,
            "outbox": TABLES[self.side].Outbox,
        }[table]

        async def query() -> int:
            async with self.runtime.db.sessions() as session:
                statement = select(func.count()).select_from(model).where(*criteria)
                return int(await session.scalar(statement) or 0)

        return self.run(query())

    def stored_messages(self, *, sender: str) -> int:
        """Messages stored as received from `sender`."""
        return self.count("messages", TABLES[self.side].Message.sender_type == sender)

    def messages_present(self, message_ids: Iterable[str]) -> int:
        """How many of these message ids (this backend's) are stored."""
        message = TABLES[self.side].Message
        return self.count("messages", message.id.in_([uuid.UUID(i) for i in message_ids]))

    def statuses(self, ticket_ids: list[str]) -> dict[str, str]:
        """The status each of these tickets holds now."""
        ticket = TABLES[self.side].Ticket

        async def query() -> dict[str, str]:
            async with self.runtime.db.sessions() as session:
                ids = [uuid.UUID(ticket_id) for ticket_id in ticket_ids]
                rows = await session.execute(
                    select(ticket.id, ticket.status).where(ticket.id.in_(ids))
                )
                return {str(ticket_id): status for ticket_id, status in rows}

        return self.run(query())

    def statuses_applied(self) -> int:
        """Seeded tickets whose status a request changed."""
        ticket = TABLES[self.side].Ticket
        seeded = [t.receiver_id for t in SEEDED[self.side]]
        return self.count(
            "tickets", ticket.id.in_(seeded), ticket.status_changed_at > SEEDED_STATUS_AT
        )

    def reset(self) -> None:
        """Back to the seeded state: what requests stored goes, seeded tickets are reset."""
        self.run(reset(self.side, self.runtime.db))


@dataclass
class Contract:
    """The spec restricted to one side, with the bridge its requests go through."""

    side: Side
    credentials: Credentials
    schema: Any
    bridge: AppBridge
    clock: CaseClock  # the dates of valid cases (tests.contract.seeding)

    @contextmanager
    def serving(self, backend: Backend) -> Iterator[Backend]:
        """Send this contract's requests to `backend` while the block runs."""
        self.bridge.backend = backend
        try:
            yield backend
        finally:
            self.bridge.backend = None


def load_contract(
    side: Side,
    *,
    max_examples: int,
    credentials: Credentials = "valid",
    aim: Aim = "tickets",
    writes_only: bool = False,
    suite: Suite = "stateless",
) -> Contract:
    """The spec file (never an app's own schema), restricted to the operations `side` serves.

    With valid credentials, each case's answer is counted for tests.contract.acceptance under
    `suite`."""
    config = contract_config(side, credentials=credentials, max_examples=max_examples)
    schema = schemathesis.openapi.from_path(SPEC_PATH, config=config).include(
        served_by(side, writes_only=writes_only)
    )
    bridge = AppBridge(credentials)
    schema.app = bridge

    @schema.hook("after_call")
    def _tally(_context: schemathesis.HookContext, case: Any, response: Any) -> None:
        TALLY[f"{side} cases"] += 1
        backend = bridge.backend
        if credentials == "valid" and backend is not None:
            record(
                backend.acceptance,
                db=backend.db_kind,
                suite=suite,
                side=side,
                case=case,
                status=response.status_code,
                answer=response.json() if response.status_code in (200, 201) else None,
            )

    @schema.hook("filter_case")
    def _representable(_context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
        return names_representable_instants(case)

    clock = CaseClock(CLOCK_START)
    if aim != "nothing":

        @schema.hook("map_case")
        def _aim(_context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
            return aim_at_seeded_tickets(side, case, ids=aim == "tickets", clock=clock)

    return Contract(side, credentials, schema, bridge, clock)


def backend_settings(side: Side, url: str) -> CrmSettings | TmaSettings:
    common: dict[str, Any] = {
        "database_url": url,
        "inbound_tokens": [TOKENS[side]],
        "inbound_signing_secrets": [SECRETS[side]],
        # Nothing is delivered: the dispatcher is not started and the peer URL leads nowhere.
        "peer_url": "http://peer.invalid",
        "peer_token": "contract-peer-token",
        # Fuzzing checks answers, not budgets: one seeded caller sends hundreds of requests a
        # second. The limits have their own tests (tests/integration_kit/test_rate_limits.py).
        "integration_rate_limit": "",
    }
    if side == "crm":
        return CrmSettings(**common, operator_rate_limit="")
    return TmaSettings(**common, user_rate_limit="")


@contextmanager
def running_backend(
    side: Side,
    db_kind: str,
    tmp_path: Path,
    *,
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
) -> Iterator[Backend]:
    """`side` on a fresh migrated `db_kind` database with the seeded tickets; closed afterwards.

    `wrap` puts a middleware around the app (the tests of the suite itself break it that way).
    """
    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        try:
            url = runner.run(stack.enter_async_context(fresh_database(db_kind, side, tmp_path)))
            clock = ManualClock(CLOCK_START, tick_seconds=0.001)
            settings = backend_settings(side, url)
            runtime = (
                build_crm(settings, clock=clock)
                if isinstance(settings, CrmSettings)
                else build_tma(settings, clock=clock)
            )
            runtime.run_dispatcher = False
            stack.push_async_callback(runtime.close)
            app = create_crm_app(runtime) if side == "crm" else create_tma_app(runtime)
            served = wrap(app) if wrap else app
            client = httpx.AsyncClient(
                transport=SigningTransport(
                    httpx.ASGITransport(app=served), secret=lambda: SECRETS[side], clock=clock
                )
            )
            raw = httpx.AsyncClient(transport=httpx.ASGITransport(app=served))
            stack.push_async_callback(client.aclose)
            stack.push_async_callback(raw.aclose)
            runner.run(seed(side, runtime.db))
            yield Backend(side, runtime, app, runner, client, raw, BASE_URLS[side], db_kind)
        finally:
            runner.run(stack.aclose())


def own_case(case: schemathesis.Case) -> schemathesis.Case:
    """A copy of `case` for this run to send, so the next run gets `case` as it was generated.

    schemathesis builds the cases of the coverage and examples phases once, when pytest collects
    the test, and Hypothesis hands the same objects to every parametrisation: on SQLite, then on
    PostgreSQL. Sending a case changes it in place (its metadata freezes at the call, and after
    the first run's checks the headers of many valid coverage cases were labelled invalid), so
    the second run used to send the first run's leftovers (CRM postMessage: 39 valid coverage
    cases of 156 on the first database, 9 on the second). Everything is copied but the operation
    and the auth object, which are the schema's and are never changed by a call.
    """
    memo: dict[int, Any] = {id(case.operation): case.operation, id(case._auth): case._auth}
    copied = object.__new__(type(case))
    for name in type(case).__slots__:
        # object.__setattr__: Case.__setattr__ would mark the containers as edited.
        object.__setattr__(copied, name, copy.deepcopy(getattr(case, name), memo))
    return copied


def examples_per_operation(default: int) -> int:
    """CONTRACT_EXAMPLES, else `default`: cases the fuzzing phase generates per operation (the
    examples and coverage phases add their own). Raise it to fuzz harder than `make test` does."""
    return int(os.environ.get("CONTRACT_EXAMPLES", default))


BODY_FAILED = pytest.StashKey[bool]()


def body_failed(request: pytest.FixtureRequest) -> bool:
    """True when the test body failed: a fixture's own checks would then only add noise."""
    return request.node.stash.get(BODY_FAILED, False)
