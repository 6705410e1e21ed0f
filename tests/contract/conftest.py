"""Records whether each test body failed (see `harness.body_failed`); sums up what was sent."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from tests.contract.harness import BODY_FAILED, TALLY


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
