"""Liveness, readiness and Prometheus metrics for operators; not part of the contract."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from integration_kit.runtime import Runtime, runtime_of

router = APIRouter(tags=["operations"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up and serving requests."""
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    """The database answers (and the in-process dispatcher runs, where it should)."""
    runtime = runtime_of(request)
    checks: dict[str, str] = {}
    try:
        async with runtime.db.sessions() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"failing: {type(exc).__name__}"
    if runtime.run_dispatcher:
        checks["dispatcher"] = "ok" if runtime.dispatcher.running else "stopped"
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )


class _OutboxCollector(Collector):
    def __init__(self, runtime: Runtime, stats: dict[str, float]) -> None:
        self.runtime = runtime
        self.db_stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        counters = self.runtime.dispatcher.stats
        for name, value, doc in [
            ("outbox_delivered", counters.delivered, "Events delivered by this process."),
            ("outbox_retried", counters.retried, "Failed attempts scheduled for retry."),
            ("outbox_dead", counters.dead, "Events this process parked as dead."),
        ]:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], float(value))
            yield family
        events = GaugeMetricFamily("outbox_events", "Outbox events by state.", labels=["state"])
        for state in ("pending", "delivered", "dead", "skipped"):
            events.add_metric([state], self.db_stats.get(state, 0.0))
        yield events
        oldest = GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds", "Age of the oldest pending event."
        )
        oldest.add_metric([], self.db_stats.get("oldest_pending_age_seconds", 0.0))
        yield oldest


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Delivery health in Prometheus text format."""
    runtime = runtime_of(request)
    async with runtime.db.sessions() as session:
        stats = await runtime.outbox.stats(session, now=runtime.clock.now())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OutboxCollector(runtime, stats))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
