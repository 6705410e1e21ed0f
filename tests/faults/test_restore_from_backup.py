"""A side restored from a copy of its database taken earlier in the run, while traffic and faults
go on: after `restored` and `reconcile` on both sides the two databases hold the same tickets,
messages, links and statuses, nothing twice, every reply notified (docs/design.md §10).

On SQLite the TMA is restored (a file copy), on PostgreSQL the CRM (pg_dump, pg_restore), so
each side's way back is exercised on one of the databases.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.harness import Harness, HarnessConfig
from tests.support.databases import POSTGRES_URL

pytestmark = pytest.mark.slow

MESSAGES = int(os.environ.get("FAULT_MESSAGES", "300"))


@pytest.fixture
async def harness(
    db_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    config = dataclasses.replace(
        HarnessConfig.for_kind(db_kind, MESSAGES, POSTGRES_URL),
        concurrency=20,
        min_load_seconds=30.0,
        converge_timeout_seconds=120.0,
        restore_side="tma" if db_kind == "sqlite" else "crm",
    )
    harness = Harness(config, tmp_path / "run")
    request.addfinalizer(harness.kill_processes)  # noqa: PT021
    try:
        await harness.setup()
        yield harness
    finally:
        await harness.close()


async def test_a_restored_side_and_its_peer_end_equal_after_reconcile(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        report = await harness.run()
    except BaseException:
        print(harness.logs())
        raise
    with capsys.disabled():
        print("\n" + "\n".join(report.lines()))
    restore = report.restore
    assert restore is not None
    # The restore really took something away, and reconcile gave it back.
    assert restore.lost["messages"] > 0, restore.lost
    assert "repaired: 0" not in restore.reconcile[restore.side], restore.reconcile
    verdict = report.verdict
    assert verdict.messages == MESSAGES
    assert (verdict.lost, verdict.duplicated, verdict.out_of_order) == (0, 0, 0), verdict.problems
    assert (verdict.unlinked, verdict.status_mismatches) == (0, 0), verdict.problems
    assert verdict.notifications_missing == 0
    assert verdict.notifications_unexplained == 0
    assert verdict.problems == []
    # Converged, both feeds agree: nothing left for reconcile on either side.
    assert all(line.endswith("repaired: 0") for line in restore.final.values()), restore.final
