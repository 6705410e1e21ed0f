"""Rate limits on the three APIs, in process: per Telegram user, per operator, per peer token;
429 problem+json with Retry-After; a 429 from the peer is retried; a storage that is down fails
open. The Redis half (two API processes, Redis going away) is in test_rate_limits_redis.py."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from crm_impl.cli import add_operator
from crm_impl.settings import CrmSettings
from integration_kit.problems import PROBLEM_JSON, RATE_LIMITED, UNAUTHORIZED
from integration_kit.ratelimit import RateLimiter
from integration_kit.retry import Failure
from integration_kit.schema import OutboxState
from tests.integration_kit.test_delivery import crm_bodies, message_event, open_tickets
from tests.integration_kit.test_health import metric_values
from tests.support.pair import CRM_TO_TMA_TOKEN, TMA_TO_CRM_TOKEN, Pair, wired_pair
from tests.support.redis import free_port
from tests.test_spec import SPEC_PATH
from tma_impl.settings import TmaSettings

PairFactory = Callable[..., AbstractAsyncContextManager[Pair]]


@pytest.fixture
def pair_with(db_kind: str, tmp_path: Path) -> PairFactory:
    """Both backends wired as in `pair`, with the given settings on both sides."""

    def make(**settings: Any) -> AbstractAsyncContextManager[Pair]:
        return wired_pair(db_kind, tmp_path, **settings)

    return make


def assert_rate_limited(response: httpx.Response, *, at_most: int) -> int:
    """A 429 problem+json of the rate-limit type with a Retry-After in 1..at_most seconds."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == RATE_LIMITED
    assert body["status"] == 429
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= at_most
    assert f"retry after {retry_after} s" in body["detail"]
    return retry_after


# --- per Telegram user, per operator, per token -------------------------------------------------


async def test_the_user_api_limits_each_telegram_user_on_their_own(pair_with: PairFactory) -> None:
    async with pair_with(user_rate_limit="3/hour") as pair:
        anna, boris = pair.user_headers(1001), pair.user_headers(1002, "Boris")
        for _ in range(3):
            assert (await pair.tma.get("/api/support/tickets", headers=anna)).status_code == 200
        assert_rate_limited(await pair.tma.get("/api/support/tickets", headers=anna), at_most=3600)
        # Every route of the user API counts against the same budget.
        refused = await pair.tma.post(
            "/api/support/tickets",
            json={
                "id": str(uuid.uuid4()),
                "subject": "s",
                "message": "m",
                "message_id": str(uuid.uuid4()),
            },
            headers=anna,
        )
        assert_rate_limited(refused, at_most=3600)
        assert (await pair.tma.get("/api/support/tickets", headers=boris)).status_code == 200
        # A request that fails authentication spends nobody's budget and is answered 401.
        forged = {"Authorization": "tma user=%7B%22id%22%3A1002%7D&hash=00"}
        for _ in range(5):
            response = await pair.tma.get("/api/support/tickets", headers=forged)
            assert response.json()["type"] == UNAUTHORIZED
        for _ in range(2):
            assert (await pair.tma.get("/api/support/tickets", headers=boris)).status_code == 200
        assert_rate_limited(await pair.tma.get("/api/support/tickets", headers=boris), at_most=3600)
        metrics = metric_values((await pair.tma.get("/metrics")).text)
        assert metrics["rate_limited_total{scope=user}"] == 3
        # Anna's five requests in the window, the refused ones included: the headroom figure.
        assert metrics["rate_limit_peak_count{limit=3 per 1 hour,scope=user}"] == 5
        assert metrics["rate_limit_storage_up"] == 1


async def test_the_operator_api_limits_each_operator_on_their_own(
    pair_with: PairFactory,
) -> None:
    async with pair_with(operator_rate_limit="2/minute") as pair:
        _, other_token = await add_operator(pair.crm_runtime.db, "Ivan", now=pair.clock.now())
        other = {"Authorization": f"Bearer {other_token}"}
        for _ in range(2):
            response = await pair.crm.get("/api/crm/me", headers=pair.operator_headers)
            assert response.status_code == 200
        response = await pair.crm.get("/api/crm/tickets", headers=pair.operator_headers)
        assert_rate_limited(response, at_most=60)
        assert (await pair.crm.get("/api/crm/me", headers=other)).status_code == 200
        # An unknown token is a 401, whatever the operators' budgets.
        stranger = {"Authorization": "Bearer op_not-a-token"}
        assert (await pair.crm.get("/api/crm/me", headers=stranger)).status_code == 401


async def test_the_integration_api_limits_each_token_on_its_own(pair_with: PairFactory) -> None:
    second_token = "test-tma-to-crm-rotated"
    async with pair_with(integration_rate_limit="2/hour") as pair:
        pair.crm_runtime.settings.inbound_tokens.append(second_token)
        status = {
            "external_ticket_id": str(uuid.uuid4()),
            "status": "closed",
            "changed_at": pair.clock.now().isoformat(),
        }

        async def post(token: str) -> httpx.Response:
            return await pair.crm.post(
                "/api/integration/status",
                json=status,
                headers={"Authorization": f"Bearer {token}"},
            )

        # A refused answer (404: no such ticket) still spends the budget: the request was served.
        assert [(await post(TMA_TO_CRM_TOKEN)).status_code for _ in range(2)] == [404, 404]
        assert_rate_limited(await post(TMA_TO_CRM_TOKEN), at_most=3600)
        assert (await post(second_token)).status_code == 404
        for _ in range(3):
            assert (await post("not-a-token")).status_code == 401
        assert (await post(second_token)).status_code == 404
        assert_rate_limited(await post(second_token), at_most=3600)
        # Every operation of the contract counts: createTicket too.
        response = await pair.crm.post(
            "/api/integration/tickets",
            json={},
            headers={"Authorization": f"Bearer {TMA_TO_CRM_TOKEN}"},
        )
        assert_rate_limited(response, at_most=3600)
        # The other direction has its own token and budget.
        response = await pair.tma.post(
            "/api/integration/status",
            json=status,
            headers={"Authorization": f"Bearer {CRM_TO_TMA_TOKEN}"},
        )
        assert response.status_code == 404


async def test_a_429_from_the_peer_is_retried_after_its_retry_after(
    pair_with: PairFactory,
) -> None:
    """The CRM's own limiter throttles the TMA's dispatcher: the event waits out Retry-After as
    a throttled retry, is never parked as dead, and arrives once the window is over."""
    async with pair_with(integration_rate_limit="1/hour") as pair:
        [ticket] = await open_tickets(pair, 1)  # createTicket spends the hour's one request
        await pair.user_writes(ticket, "over the limit")
        asked_at = pair.clock.now()
        assert await pair.tma_runtime.dispatcher.run_once() == 1
        row = await message_event(pair, "over the limit")
        assert row.state == OutboxState.pending
        assert row.last_failure == Failure.throttled
        assert row.last_error is not None
        assert row.last_error.startswith(f"HTTP 429 {RATE_LIMITED}")
        waited = (row.next_attempt_at - asked_at).total_seconds()
        assert 3500 < waited <= 3601

        pair.clock.advance(waited - 60)  # far past any backoff, short of Retry-After
        assert await pair.tma_runtime.dispatcher.run_once() == 0
        # The hour is over on the CRM (a fresh window) and on the TMA's clock.
        pair.crm_runtime.limiter = RateLimiter(limits={"integration": "1/hour"})
        pair.clock.advance(61)
        assert await pair.tma_runtime.dispatcher.run_once() == 1
        assert (await crm_bodies(pair, ticket))[1:] == ["over the limit"]
        assert (await message_event(pair, "over the limit")).state == OutboxState.delivered


# --- a storage that is down ---------------------------------------------------------------------


async def test_an_unreachable_storage_fails_open_with_one_log_line_and_a_metric(
    pair_with: PairFactory, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    caplog.set_level(logging.WARNING, logger="integration_kit.ratelimit")
    async with pair_with(user_rate_limit="2/hour", rate_limit_storage_url=closed) as pair:
        headers = pair.user_headers()
        for _ in range(20):
            assert (await pair.tma.get("/api/support/tickets", headers=headers)).status_code == 200
        ticket = await pair.open_ticket()
        await pair.sync()  # the integration API, limited per token, serves the CRM's requests too
        crm_ticket = await pair.crm_ticket_for(ticket["id"])
        await pair.operator_replies(crm_ticket["id"], "served without limits")
        assert await pair.sync() >= 1
        metrics = metric_values((await pair.tma.get("/metrics")).text)
    lines = [r for r in caplog.records if r.name == "integration_kit.ratelimit"]
    # One line per backend process (both have the storage URL), not one per request.
    assert len(lines) <= 2
    assert "unreachable" in lines[0].getMessage()
    assert closed.split("//")[1] not in lines[0].getMessage()
    assert metrics["rate_limit_storage_up"] == 0
    assert metrics["rate_limit_unchecked_total"] >= 22
    assert metrics["rate_limit_storage_errors_total"] >= 1
    assert metrics["rate_limited_total{scope=user}"] == 0


# --- settings -----------------------------------------------------------------------------------


def test_limits_are_settings_with_their_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMA_USER_RATE_LIMIT", "5/second;100/minute")
    monkeypatch.setenv("TMA_INTEGRATION_RATE_LIMIT", "")
    monkeypatch.setenv("CRM_OPERATOR_RATE_LIMIT", "7/minute")
    monkeypatch.setenv("CRM_RATE_LIMIT_STORAGE_URL", "redis://127.0.0.1:6379/3")
    tma, crm = TmaSettings(_env_file=None), CrmSettings(_env_file=None)  # type: ignore[call-arg]
    assert tma.user_rate_limit == "5/second;100/minute"
    assert tma.integration_rate_limit == ""
    assert crm.operator_rate_limit == "7/minute"
    assert crm.rate_limit_storage_url == "redis://127.0.0.1:6379/3"
    limiter = RateLimiter(limits={"user": tma.user_rate_limit, "integration": ""})
    assert [str(item) for item in limiter.limits["user"]] == ["5 per 1 second", "100 per 1 minute"]
    assert limiter.limits["integration"] == []


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("user_rate_limit", "lots", "is not a rate limit"),
        ("integration_rate_limit", "10 per fortnight", "is not a rate limit"),
        ("rate_limit_storage_url", "memcached://127.0.0.1:11211", "redis://"),
    ],
)
def test_a_malformed_limit_or_storage_is_refused_at_start(
    field: str, value: str, says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        TmaSettings(_env_file=None, **{field: value})  # type: ignore[call-arg]


async def test_defaults_are_in_force_without_settings(pair_with: PairFactory) -> None:
    """Out of the box every API is limited, in process, with the documented defaults."""
    async with pair_with() as pair:
        tma, crm = pair.tma_runtime.limiter, pair.crm_runtime.limiter
        assert [str(i) for i in tma.limits["user"]] == ["100 per 1 second"]
        assert [str(i) for i in tma.limits["integration"]] == ["10000 per 1 second"]
        assert [str(i) for i in crm.limits["operator"]] == ["1000 per 1 second"]
        assert [str(i) for i in crm.limits["integration"]] == ["10000 per 1 second"]
        assert not tma.shared
        assert not crm.shared


def test_the_contract_documents_429_with_retry_after_on_every_operation() -> None:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    # Every operation the spec has, read from it (not a count that a new operation breaks).
    operations = [op for item in spec["paths"].values() for op in item.values()]
    assert operations
    for operation in operations:
        ref = operation["responses"]["429"]["$ref"]
        assert ref == "#/components/responses/TooManyRequests", operation["operationId"]
    response = spec["components"]["responses"]["TooManyRequests"]
    assert response["headers"]["Retry-After"]["required"] is True
    assert response["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    assert set(response["content"]) == {PROBLEM_JSON}
    assert RATE_LIMITED in spec["info"]["description"]
