"""Records whether each test body failed (see `harness.body_failed`); sums up what was sent and
how many valid cases were accepted (tests.contract.acceptance)."""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.acceptance import SESSION, table, write_report
from tests.contract.harness import BODY_FAILED, ROOT, TALLY

# Where the session's accepted counts go (tests.contract.acceptance); a pytest that the suite
# runs inside itself (test_suite_catches_drift.py) writes elsewhere.
ACCEPTED_REPORT = Path(
    os.environ.get("CONTRACT_ACCEPTED_REPORT") or ROOT / "build" / "contract" / "accepted.json"
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[BODY_FAILED] = True
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY:
        counts = ", ".join(
            f"{side}: {TALLY[f'{side} cases']} cases, {TALLY[f'{side} requests']} requests"
            for side in ("crm", "tma", "user-api", "operator-api")
            if TALLY[f"{side} cases"]
        )
        terminalreporter.write_line(f"contract tests in process ({counts})")
    if SESSION:
        terminalreporter.section("valid contract cases accepted (2xx) per operation")
        for line in table(SESSION):
            terminalreporter.write_line(line)
        write_report(SESSION, ACCEPTED_REPORT)
        terminalreporter.write_line(f"written to {ACCEPTED_REPORT}")
