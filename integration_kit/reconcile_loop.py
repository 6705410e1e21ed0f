"""`reconcile` now and then inside the process that delivers (RECONCILE_INTERVAL_SECONDS > 0),
with counters for `/metrics`: differences repaired by kind, runs, failed runs (docs/design.md §10).

Reconcile is idempotent and safe beside live traffic, so running it in every delivering process
is harmless; one is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field

from integration_kit.reconcile import ReconcileSide, reconcile
from integration_kit.runtime import Runtime

log = logging.getLogger(__name__)

EXTRAS_KEY = "reconcile"


@dataclass
class ReconcileStats:
    runs: int = 0
    failures: int = 0
    repaired: Counter[str] = field(default_factory=Counter)


class ReconcileLoop:
    """Runs reconcile every `interval` seconds until stopped."""

    def __init__(self, runtime: Runtime, side: ReconcileSide, interval: float) -> None:
        self.runtime = runtime
        self.side = side
        self.interval = interval
        self.stats = ReconcileStats()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="reconcile")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def run_once(self) -> None:
        try:
            summary = await reconcile(self.runtime, self.side)
        except Exception:
            # The peer down or a database hiccup: counted and logged; the next round tries again.
            self.stats.failures += 1
            log.warning("periodic reconcile failed", exc_info=True)
            return
        self.stats.runs += 1
        self.stats.repaired.update(summary.counts)
        if summary.total:
            log.info("periodic reconcile: %s", summary.render(dry_run=False))

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)


def attach(runtime: Runtime, side: ReconcileSide) -> ReconcileLoop | None:
    """The loop the settings ask for, kept in the runtime's extras (for `/metrics`), or None."""
    interval = runtime.settings.reconcile_interval_seconds
    if interval <= 0:
        return None
    loop = ReconcileLoop(runtime, side, interval)
    runtime.extras[EXTRAS_KEY] = loop
    return loop
