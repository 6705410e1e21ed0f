"""`make contract` (scripts/contract.py): the schemathesis command line against both backends,
each served by uvicorn on loopback, finds nothing and says so in its JUnit reports."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.contract.harness import ROOT

OPERATIONS = {
    "crm": {
        "POST /api/integration/tickets",
        "POST /api/integration/messages",
        "POST /api/integration/status",
        "GET /api/integration/changes",
    },
    "tma": {
        "POST /api/integration/messages",
        "POST /api/integration/status",
        "GET /api/integration/changes",
    },
}


def test_make_contract_passes_against_both_served_backends(tmp_path: Path) -> None:
    """Exit code 0, one JUnit report per backend covering its operations and the links."""
    env = {**os.environ, "CONTRACT_EXAMPLES": "5", "CONTRACT_REPORTS": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "scripts.contract"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    for side, operations in OPERATIONS.items():
        suites = ET.parse(tmp_path / f"{side}.xml").getroot()
        assert (suites.get("failures"), suites.get("errors")) == ("0", "0")
        tested = {case.get("name") for case in suites.iter("testcase")}
        assert tested == operations | {"Stateful tests"}
        # Served on loopback, and stopped when the script ended.
        log = (tmp_path / f"{side}-server.log").read_text()
        port = int(re.search(r"listening on http://127\.0\.0\.1:(\d+)", log)[1])  # type: ignore[index]
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
