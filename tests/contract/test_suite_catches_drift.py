"""The contract suite itself: against deliberately broken backends it must fail, each breakage
with the finding that names it, so it cannot quietly turn into a suite that passes anything.

It runs the real fuzz tests (test_fuzz.py) in a separate pytest with CONTRACT_SABOTAGE set, which
wraps each backend in `sabotage.Sabotage`: a required answer field dropped, a 500, lax body
reading, a skipped token check (see `sabotage.BREAKAGES`). The one operation left intact passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.contract.harness import ROOT
from tests.contract.sabotage import BREAKAGES, ENV

SERVES = "test_{side}_serves_its_operations_as_the_spec_says[POST {path}][sqlite]"
# What the suite must report for each breakage of sabotage.BREAKAGES.
EXPECTED = {
    "drop message_id from 2xx answers": ['"message_id" is a required property'],
    # 500 is documented (problem+json with a request id); a bare text/plain 500 is not.
    "answer 500 to every close": ["Server error", "Undocumented Content-Type"],
    "read bodies laxly": ["Schema-violating request accepted"],
    # ignored_auth (ST401), titled "invalid" or "without" authentication by the first case that
    # shows it, which moves whenever the spec changes what is generated.
    "skip the token check": ["ST401 API accepts"],
}


def test_broken_backends_fail_the_contract_suite(tmp_path: Path) -> None:
    """Each sabotaged operation fails with its own finding; the untouched one still passes."""
    report = tmp_path / "report.xml"
    # SQLite, the fixed seed, few cases: the breakages are found at once or not at all.
    unset = {"TEST_DATABASE_URL", "CONTRACT_SEED"}
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env |= {ENV: "1", "CONTRACT_EXAMPLES": "10"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/contract/test_fuzz.py",
        "-k",
        "serves_its_operations or tma_refuses_a_wrong_token",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--junitxml={report}",
    ]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]

    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problems = [*case.iter("failure"), *case.iter("error")]
        outcomes[case.get("name")] = "\n".join(
            f"{p.get('message', '')}\n{p.text or ''}" for p in problems
        )
    for (side, path), breakage in BREAKAGES.items():
        found = outcomes[SERVES.format(side=side, path=path)]
        for finding in EXPECTED[breakage]:
            assert finding in found, f"{side} {path} ({breakage}): no {finding!r} in\n{found}"
    # The wrong-token test sees the skipped token check too.
    assert outcomes["test_tma_refuses_a_wrong_token[POST /api/integration/status][sqlite]"]
    assert outcomes["test_tma_refuses_a_wrong_token[POST /api/integration/messages][sqlite]"] == ""
    # Nothing was done to the CRM's postMessage: it passes, so the failures above are the drift.
    intact = SERVES.format(side="crm", path="/api/integration/messages")
    assert outcomes[intact] == ""
