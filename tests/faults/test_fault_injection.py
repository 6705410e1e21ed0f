"""Under injected failures (peer restarts, lost answers, duplicated requests, resets, slow
answers, workers killed between send and acknowledge, refusals) every message is stored exactly
once on both sides, linked both ways, in the order it was written, and the statuses agree.

Both backends run as separate processes on loopback: on SQLite one API process and one worker per
side; on PostgreSQL (TEST_DATABASE_URL) two API processes and three workers per side sharing one
database. FAULT_MESSAGES sets the size (a few hundred here; `scripts/fault_run.py` for large runs).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.harness import Harness, HarnessConfig
from tests.faults.proxy import FaultKind
from tests.support.databases import POSTGRES_URL

pytestmark = pytest.mark.slow

MESSAGES = int(os.environ.get("FAULT_MESSAGES", "300"))
EVERY_FAULT = {
    FaultKind.drop_response.value,
    FaultKind.duplicate.value,
    FaultKind.reset.value,
    FaultKind.slow.value,
    FaultKind.refuse.value,
    "worker_sigkill",
    "peer_stopped_sigterm",
    "peer_killed_sigkill",
}


@pytest.fixture
async def harness(
    db_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    config = dataclasses.replace(
        HarnessConfig.for_kind(db_kind, MESSAGES, POSTGRES_URL),
        concurrency=20,
        min_load_seconds=30.0,
        converge_timeout_seconds=120.0,
    )
    harness = Harness(config, tmp_path / "run")
    # A synchronous safety net: process groups are killed even if the async teardown never runs.
    request.addfinalizer(harness.kill_processes)  # noqa: PT021
    try:
        await harness.setup()
        yield harness
    finally:
        await harness.close()


async def test_nothing_lost_duplicated_or_reordered_under_faults(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """The load converges after every kind of fault, with 0 lost, 0 duplicated, 0 out of order."""
    try:
        report = await harness.run()
    except BaseException:
        print(harness.logs())  # shown with the failure
        raise
    with capsys.disabled():
        print("\n" + "\n".join(report.lines()))
    verdict = report.verdict

    # Every kind of fault really happened, so the figures below mean something.
    assert EVERY_FAULT <= {kind for kind, n in report.faults.items() if n}, report.faults
    assert verdict.retries["tma"] + verdict.retries["crm"] > 0
    assert report.wire_resends > 0

    assert verdict.messages == MESSAGES
    assert (verdict.lost, verdict.duplicated, verdict.out_of_order) == (0, 0, 0), verdict.problems
    assert (verdict.unlinked, verdict.status_mismatches) == (0, 0), verdict.problems
    # Dead only where expected: exactly the refused deliveries went dead, and once replayed by
    # an operator they were delivered in their place in line.
    assert report.unexpected_dead == []
    assert sum(verdict.replayed.values()) == report.faults[FaultKind.refuse.value]
    for side in ("tma", "crm"):
        assert set(verdict.events[side]) == {"delivered"}, verdict.events
    # Every reply reached its user; a repeat only where a worker died between send and ack.
    assert verdict.notifications_missing == 0
    assert verdict.notifications_unexplained == 0
    assert verdict.problems == []
