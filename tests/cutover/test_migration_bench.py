"""The legacy migration benchmark runs in CI with 10,000 messages (the 1,000,000 run is by hand:
`make bench-cutover`); figures are printed, never asserted on time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not POSTGRES_URL, reason="the benchmark measures PostgreSQL")
@pytest.mark.parametrize("side", ["tma", "crm"])
def test_the_migration_benchmark_runs_on_10000_messages(tmp_path: Path, side: str) -> None:
    out = tmp_path / "legacy_migration.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "legacy_migration.py"),
            "--messages",
            "10000",
            "--side",
            side,
            "--url",
            POSTGRES_URL,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    result = json.loads(out.read_text())
    assert (result["side"], result["messages"]) == (side, 10_000)
    assert result["findings"] == 0
    # The old system wrote during the migration (the bench checks every write was carried over)
    # until its tables were gone: its statement waiting on the lock fails once they are dropped
    # (which error depends on where that statement was when they went).
    assert result["writes_during_migrate"] > 0
    assert result["writer_stopped_by"] in {
        "UndefinedColumnError",
        "UndefinedFunctionError",
        "UndefinedTableError",
    }
    for key in (
        "migrate_seconds",
        "prepare_online_seconds",
        "final_step_seconds",
        "main_chain_seconds",
        "no_writes_window_seconds",
        "writes_blocked_longest_seconds",
        "baseline_copy_seconds",
    ):
        assert result[key] >= 0
    # The window with no side taking writes runs from the final step's lock to the database at
    # head: it holds the final step and the whole main chain, each revision of which is timed.
    assert result["no_writes_window_seconds"] >= (
        result["final_step_seconds"] + result["main_chain_seconds"] - 0.02  # rounding
    )
    revisions = result["main_chain_revision_seconds"]
    assert next(iter(revisions)) == "0001 -> 0002"
    assert len(revisions) >= 4
    assert sum(revisions.values()) <= result["main_chain_seconds"] + 0.01 * len(revisions)
