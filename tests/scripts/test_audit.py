"""`make audit` (scripts/audit.py) against a stand-in vulnerability service on loopback (OSV's
API), so each outcome is real pip-audit output: a clean pass, known vulnerabilities, and a
service that does not answer, which must never read as a pass."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from tests.support.serving import served

ROOT = Path(__file__).resolve().parents[2]
PINS = sum(1 for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line)


def fake_osv(vulnerable: str | None = None) -> tuple[FastAPI, list[str]]:
    """OSV's query endpoint: every package is clean except `vulnerable`."""
    app, asked = FastAPI(), []

    @app.post("/v1/query")
    async def query(request: Request) -> dict[str, Any]:
        body = await request.json()
        name, version = body["package"]["name"], body["version"]
        asked.append(name)
        if name != vulnerable:
            return {}
        return {
            "vulns": [
                {
                    "id": "PYSEC-0000-OPS",
                    "summary": "A made-up hole for this test",
                    "affected": [
                        {
                            "package": {"name": name, "ecosystem": "PyPI"},
                            "ranges": [
                                {
                                    "type": "ECOSYSTEM",
                                    "events": [{"introduced": "0"}, {"fixed": version + ".1"}],
                                }
                            ],
                        }
                    ],
                }
            ]
        }

    return app, asked


async def audit(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.audit",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_every_pin_checked_and_clean_passes() -> None:
    app, asked = fake_osv()
    async with served(app) as base:
        code, out, err = await audit("-s", "osv", "--osv-url", f"{base}/v1/query")
    assert code == 0, err
    assert len(asked) == PINS  # every pin was looked up, none skipped
    assert out.strip().endswith(
        f"audit: no known vulnerabilities in the {PINS} pins of requirements.lock"
    )


async def test_a_known_vulnerability_fails_and_names_the_pin_and_the_fix() -> None:
    app, _ = fake_osv(vulnerable="aiohttp")
    async with served(app) as base:
        code, out, err = await audit("-s", "osv", "--osv-url", f"{base}/v1/query")
    assert code == 1
    assert "aiohttp" in out
    assert "PYSEC-0000-OPS" in out
    assert err.strip().endswith(
        "audit: Found 1 known vulnerability in 1 package (above): upgrade those pins"
    )


async def test_an_unreachable_service_is_one_line_and_never_a_pass() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = closed.getsockname()[1]
        url = f"http://127.0.0.1:{port}/v1/query"
        code, out, err = await audit("-s", "osv", "--osv-url", url)
    assert code == 2
    assert out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: pip-audit could not get answers from its vulnerability service")
    assert "nothing was audited, which is not a pass" in line
    assert "Connection refused" in line
