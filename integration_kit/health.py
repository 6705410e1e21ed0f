"""Liveness, readiness and Prometheus metrics for operators; not part of the contract.

- `/health/live`: the process serves requests (restart it if not).
- `/health/ready`: it can do its work: the database answers in time, and the in-process dispatcher
  runs where it should (take it out of the load balancer if not). It also says which contract
  version this build implements and which the peer last announced (docs/design.md §6), which
  does not decide readiness: the two sides run different versions during every upgrade.
- `/metrics`: delivery counters of this process and the outbox as the database holds it; rate
  limiting (429s answered, whether the rate-limit storage answers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from sqlalchemy import select

from generated import CONTRACT_VERSION
from integration_kit.reconcile_loop import EXTRAS_KEY, ReconcileLoop
from integration_kit.retry import Failure
from integration_kit.runtime import Runtime, runtime_of
from integration_kit.schema import OutboxState

log = logging.getLogger(__name__)

# A probe must answer before the orchestrator's own timeout: a database that hangs is not ready.
DATABASE_CHECK_SECONDS = 3.0

router = APIRouter(tags=["operations"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up and serving requests."""
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    """The database answers with its schema in place (and the in-process dispatcher runs, where
    it should)."""
    runtime = runtime_of(request)
    checks: dict[str, str] = {}
    outbox = runtime.outbox.model
    try:
        async with asyncio.timeout(DATABASE_CHECK_SECONDS), runtime.db.sessions() as session:
            # The outbox table, not just SELECT 1: a database that was never migrated is not ready.
            await session.execute(select(outbox.id).limit(1))
        checks["database"] = "ok"
    except Exception as exc:
        # The exception's class only: its text may carry the database URL.
        checks["database"] = f"failing: {type(exc).__name__}"
    if runtime.run_dispatcher:
        checks["dispatcher"] = "ok" if runtime.dispatcher.running else "stopped"
    healthy = all(value == "ok" for value in checks.values())
    contract = {"version": CONTRACT_VERSION, "peer": runtime.peer_contract.version}
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks, "contract": contract},
        status_code=200 if healthy else 503,
    )


class _OutboxCollector(Collector):
    def __init__(self, runtime: Runtime, stats: dict[str, float] | None) -> None:
        self.runtime = runtime
        self.db_stats = stats

    def collect(self) -> Iterator[Metric]:
        counters = self.runtime.dispatcher.stats
        for name, value, doc in [
            ("outbox_delivered", counters.delivered, "Events this process delivered."),
            ("outbox_retried", counters.retried, "Failed attempts this process scheduled again."),
            ("outbox_dead", counters.dead, "Events this process parked as dead."),
            ("outbox_dropped", counters.dropped, "Events the receiver refused for good (skipped)."),
        ]:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], float(value))
            yield family
        by_failure = CounterMetricFamily(
            "outbox_retried_by_failure",
            "Failed attempts scheduled again, by why they failed.",
            labels=["failure"],
        )
        failures = {
            Failure.unavailable,
            Failure.failing,
            Failure.throttled,
            Failure.not_known,
            Failure.signature,
        }
        for failure in sorted(failures | set(counters.by_failure)):
            by_failure.add_metric([failure], float(counters.by_failure.get(failure, 0)))
        yield by_failure
        yield from self._reconcile()
        yield from self._contract()

        up = GaugeMetricFamily("outbox_database_up", "1 if the outbox could be read just now.")
        up.add_metric([], 0.0 if self.db_stats is None else 1.0)
        yield up
        if self.db_stats is None:
            return  # no figures rather than wrong ones
        events = GaugeMetricFamily("outbox_events", "Outbox events by state.", labels=["state"])
        for state in OutboxState:
            events.add_metric([state.value], self.db_stats.get(state.value, 0.0))
        yield events
        oldest = GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest event not yet delivered (0 when none is pending).",
        )
        oldest.add_metric([], self.db_stats.get("oldest_pending_age_seconds", 0.0))
        yield oldest

    def _contract(self) -> Iterator[Metric]:
        own = InfoMetricFamily("contract_version", "The contract version this build implements.")
        own.add_metric([], {"version": CONTRACT_VERSION})
        yield own
        peer = InfoMetricFamily(
            "peer_contract_version",
            "The contract version the peer last announced to this process ('unversioned': a "
            "peer of 1.0.0, which sends none); absent before the first exchange.",
        )
        if self.runtime.peer_contract.version is not None:
            peer.add_metric([], {"version": self.runtime.peer_contract.version})
        yield peer

    def _reconcile(self) -> Iterator[Metric]:
        loop = self.runtime.extras.get(EXTRAS_KEY)
        if not isinstance(loop, ReconcileLoop):
            return  # not run periodically in this process
        stats = loop.stats
        for name, value, doc in [
            ("reconcile_runs", stats.runs, "Periodic reconcile runs that finished."),
            ("reconcile_failures", stats.failures, "Periodic reconcile runs that failed."),
        ]:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], float(value))
            yield family
        repaired = CounterMetricFamily(
            "reconcile_repaired",
            "Differences with the peer's change feed found and repaired, by kind.",
            labels=["kind"],
        )
        for kind, count in sorted(stats.repaired.items()):
            repaired.add_metric([kind], float(count))
        yield repaired


class _RateLimitCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.limiter = runtime.limiter

    def collect(self) -> Iterator[Metric]:
        stats = self.limiter.stats
        limited = CounterMetricFamily(
            "rate_limited", "Requests this process answered 429, by scope.", labels=["scope"]
        )
        for scope in sorted(set(self.limiter.limits) | set(stats.limited)):
            limited.add_metric([scope], float(stats.limited.get(scope, 0)))
        yield limited
        peak = GaugeMetricFamily(
            "rate_limit_peak_count",
            "The most requests one caller made in one window of the limit, since start.",
            labels=["scope", "limit"],
        )
        for (scope, limit), count in sorted(stats.peak.items()):
            peak.add_metric([scope, limit], float(count))
        yield peak
        up = GaugeMetricFamily(
            "rate_limit_storage_up",
            "1 if the rate-limit storage answered at its last use; 0 while it fails (fail open).",
        )
        up.add_metric([], 1.0 if stats.storage_up else 0.0)
        yield up
        for name, value, doc in [
            ("rate_limit_storage_errors", stats.storage_errors, "Checks the storage failed."),
            (
                "rate_limit_unchecked",
                stats.unchecked,
                "Requests served without a rate-limit check because the storage failed.",
            ),
        ]:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], float(value))
            yield family


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Delivery health in Prometheus text format; counters still come if the database is down."""
    runtime = runtime_of(request)
    stats: dict[str, float] | None
    try:
        async with asyncio.timeout(DATABASE_CHECK_SECONDS), runtime.db.sessions() as session:
            stats = await runtime.outbox.stats(session, now=runtime.clock.now())
    except Exception as exc:
        log.warning("metrics: the outbox could not be read: %s", type(exc).__name__)
        stats = None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OutboxCollector(runtime, stats))
    for collector in runtime.extras.get("collectors", []):  # the old routes' calls, if served
        registry.register(collector)
    registry.register(_RateLimitCollector(runtime))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)
