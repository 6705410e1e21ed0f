"""What operators watch on both backends: liveness, readiness, and delivery metrics in Prometheus
format with the right values after a scenario."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from crm_impl.app import build_runtime as build_crm
from crm_impl.app import create_app as create_crm_app
from crm_impl.settings import CrmSettings
from generated import CONTRACT_VERSION
from integration_kit.problems import VALIDATION
from tests.integration_kit.scripted_peer import ScriptedPeer, problem
from tests.support.databases import POSTGRES_URL
from tests.support.pair import Pair


def metric_values(exposition: str) -> dict[str, float]:
    """Samples by name, with labels folded in as name{label=value}."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


async def test_both_backends_are_live_and_ready_with_a_working_database(pair: Pair) -> None:
    for client in (pair.tma, pair.crm):
        live = await client.get("/health/live")
        assert (live.status_code, live.json()) == (200, {"status": "ok"})
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        # Dispatchers are run by the test here, so readiness does not ask for them.
        # No integration request has been exchanged yet: the peer's version is not known.
        assert ready.json() == {
            "status": "ok",
            "checks": {"database": "ok"},
            "contract": {"version": CONTRACT_VERSION, "peer": None},
        }


async def test_readiness_requires_the_in_process_dispatcher_where_it_should_run(
    pair: Pair,
) -> None:
    runtime = pair.tma_runtime
    runtime.run_dispatcher = True
    stopped = await pair.tma.get("/health/ready")
    assert stopped.status_code == 503
    assert stopped.json()["checks"] == {"database": "ok", "dispatcher": "stopped"}
    runtime.dispatcher.start()
    try:
        assert (await pair.tma.get("/health/ready")).status_code == 200
    finally:
        await runtime.dispatcher.stop()
    assert (await pair.tma.get("/health/ready")).status_code == 503


def unreachable_database(db_kind: str, tmp_path: Path) -> str:
    """A database URL that cannot be used: a folder for SQLite, a missing database on PostgreSQL."""
    if db_kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}"
    url = make_url(POSTGRES_URL).set(
        drivername="postgresql+asyncpg", database=f"missing_{uuid.uuid4().hex[:8]}"
    )
    return url.render_as_string(hide_password=False)


@asynccontextmanager
async def crm_on(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    runtime = build_crm(CrmSettings(database_url=database_url))
    runtime.run_dispatcher = False
    app = create_crm_app(runtime)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://crm.test"
        ) as client:
            yield client
    finally:
        await runtime.close()
        # aiosqlite stops the worker thread of a failed connection without waiting for it; let
        # those threads finish while this loop still runs, or they report to a closed loop.
        for thread in threading.enumerate():
            if "_connection_worker_thread" in thread.name:
                await asyncio.to_thread(thread.join, 5)


async def test_a_backend_without_its_database_is_live_but_not_ready(
    db_kind: str, tmp_path: Path
) -> None:
    async with crm_on(unreachable_database(db_kind, tmp_path)) as client:
        assert (await client.get("/health/live")).status_code == 200
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"].startswith("failing: ")
        assert "postgres" not in ready.text  # no URL leaks
        assert str(tmp_path) not in ready.text
        # Metrics still answer: this process's counters, and a gauge saying the outbox is unread.
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        values = metric_values(metrics.text)
        assert values["outbox_database_up"] == 0
        assert values["outbox_delivered_total"] == 0
        assert "outbox_oldest_pending_age_seconds" not in values


async def test_a_database_that_was_never_migrated_is_not_ready(tmp_path: Path) -> None:
    async with crm_on(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}") as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("failing: ")


async def test_metrics_count_delivered_retried_and_dead_events_and_the_oldest_pending_age(
    pair: Pair,
) -> None:
    first = (await pair.open_ticket(subject="one"))["id"]
    second = (await pair.open_ticket(subject="two"))["id"]
    await pair.sync()
    await pair.user_writes(first, "delivered")
    await pair.sync()
    scripted = ScriptedPeer.install(pair.to_crm)
    scripted.answer("refused", problem(422, VALIDATION, "the peer refused it"))
    await pair.user_writes(second, "refused")
    await pair.sync()
    pair.to_crm.down = True
    await pair.user_writes(first, "waiting")
    assert await pair.tma_runtime.dispatcher.run_once() == 1
    pair.clock.advance(90)

    response = await pair.tma.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    tma = metric_values(response.text)
    assert tma["outbox_delivered_total"] == 3  # two tickets and one message
    assert tma["outbox_retried_total"] == 1
    assert tma["outbox_retried_by_failure_total{failure=unavailable}"] == 1
    assert tma["outbox_retried_by_failure_total{failure=throttled}"] == 0
    assert tma["outbox_dead_total"] == 1
    assert tma["outbox_database_up"] == 1
    assert tma["outbox_events{state=pending}"] == 1
    assert tma["outbox_events{state=delivered}"] == 3
    assert tma["outbox_events{state=dead}"] == 1
    assert tma["outbox_events{state=skipped}"] == 0
    # The waiting message was written 90 s ago (plus the clock's small ticks).
    assert 90 <= tma["outbox_oldest_pending_age_seconds"] < 91

    # The CRM sent nothing: zero counters, and nothing pending means an age of 0.
    crm = metric_values((await pair.crm.get("/metrics")).text)
    assert crm["outbox_delivered_total"] == crm["outbox_dead_total"] == 0
    assert crm["outbox_oldest_pending_age_seconds"] == 0

    pair.to_crm.down = False
    pair.clock.advance(5)
    await pair.sync()
    after = metric_values((await pair.tma.get("/metrics")).text)
    assert after["outbox_delivered_total"] == 4
    assert after["outbox_oldest_pending_age_seconds"] == 0


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/metrics"])
async def test_operations_endpoints_need_no_token(pair: Pair, path: str) -> None:
    """Probes and scrapers carry no bearer token; these endpoints reveal no message data."""
    assert (await pair.crm.get(path)).status_code == 200
