"""A dispatcher whose database goes away (a `worker`, or the one inside `serve`) keeps trying
with a short capped backoff, one log line per attempt and no traceback, and delivers again by
itself once the database is back.

Real parts: the backend runs as a process on PostgreSQL, reached through a loopback TCP proxy
the test stops (every connection cut, new ones refused) and starts again; the receiving CRM is
served by uvicorn on loopback; tickets are opened through the Mini App's user API.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from crm_impl import tables as crm
from crm_impl.app import build_runtime as build_crm
from crm_impl.app import create_app as create_crm_app
from crm_impl.settings import CrmSettings
from integration_kit.runtime import Runtime
from tests.support.databases import POSTGRES_URL, fresh_database
from tests.support.serving import served
from tests.support.tcp_proxy import TcpProxy
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN
from tma_impl.app import build_runtime as build_tma
from tma_impl.app import create_app as create_tma_app
from tma_impl.settings import TmaSettings
from tma_impl.telegram import TelegramUser, mint_init_data

ROOT = Path(__file__).resolve().parents[2]
TMA_TO_CRM = "outage-tma-to-crm"
BASE, CAP = 0.2, 1.6  # the database backoff here: 0.2, 0.4, 0.8, 1.6, 1.6, ...
ATTEMPT = re.compile(
    r"database unavailable \(attempt (\d+)\): (.+); next attempt in ([\d.]+) s$", re.MULTILINE
)

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for(condition: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    """Until `condition()` holds (polled: the process under test tells us nothing else)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"not within {within:g} s")


async def _crm_has(crm_runtime: Runtime, tma_ticket_id: str) -> bool:
    async with crm_runtime.db.sessions() as session:
        found = await session.scalar(
            select(func.count())
            .select_from(crm.Ticket)
            .where(crm.Ticket.external_id == uuid.UUID(tma_ticket_id))
        )
    return bool(found)


async def _open_ticket(tma: httpx.AsyncClient, subject: str) -> str:
    user = TelegramUser(id=4242, first_name="Anna", username=None, language_code="en")
    init_data = mint_init_data(bot_token=FAKE_BOT_TOKEN, user=user, auth_date=datetime.now(UTC))
    ticket_id = str(uuid.uuid4())
    response = await tma.post(
        "/api/support/tickets",
        json={
            "id": ticket_id,
            "subject": subject,
            "message": "It broke.",
            "message_id": str(uuid.uuid4()),
            "attachments": [],
        },
        headers={"Authorization": f"tma {init_data}"},
    )
    assert response.status_code == 201, response.text
    return ticket_id


@pytest.mark.parametrize(
    "command",
    [["worker"], ["serve", "--no-migrate", "--port", "PORT"]],
    ids=["worker", "serve"],
)
async def test_the_dispatcher_rides_out_a_database_outage_and_delivers_after_it(
    tmp_path: Path, command: list[str]
) -> None:
    async with (
        fresh_database("postgresql", "tma", tmp_path) as tma_url,
        fresh_database("sqlite", "crm", tmp_path) as crm_url,
    ):
        crm_runtime = build_crm(
            CrmSettings(
                database_url=crm_url,
                inbound_tokens=[TMA_TO_CRM],
                peer_url="http://127.0.0.1:9",  # the CRM sends nothing back in this test
                _env_file=None,
            )
        )
        crm_runtime.run_dispatcher = False
        upstream = make_url(tma_url)
        proxy = TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432)
        await proxy.start()
        through_proxy = upstream.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        # The Mini App's API in this process writes straight to the database; only the
        # process under test goes through the proxy.
        writer = build_tma(
            TmaSettings(database_url=tma_url, bot_token=FAKE_BOT_TOKEN, _env_file=None)
        )
        writer.run_dispatcher = False
        log_path = tmp_path / "backend.log"
        async with (
            served(create_crm_app(crm_runtime)) as crm_base,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_tma_app(writer)),
                base_url="http://tma.test",
            ) as tma,
        ):
            env = {k: v for k, v in os.environ.items() if not k.startswith(("TMA_", "CRM_"))}
            env.update(
                {
                    "PYTHONUNBUFFERED": "1",
                    "TMA_DATABASE_URL": through_proxy,
                    "TMA_DATA_DIR": str(tmp_path),
                    "TMA_PEER_URL": crm_base,
                    "TMA_PEER_TOKEN": TMA_TO_CRM,
                    "TMA_DISPATCHER_POLL_SECONDS": "0.1",
                    "TMA_DATABASE_RETRY_BASE_SECONDS": str(BASE),
                    "TMA_DATABASE_RETRY_CAP_SECONDS": str(CAP),
                }
            )
            args = [str(_free_port()) if word == "PORT" else word for word in command]
            with log_path.open("wb") as log:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tma_impl",
                    *args,
                    cwd=tmp_path,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                before = await _open_ticket(tma, "Before the outage")
                await _wait_for(lambda: _crm_has(crm_runtime, before))

                await proxy.stop()  # the database goes away
                during = await _open_ticket(tma, "Written during the outage")

                def attempts() -> list[tuple[int, str, float]]:
                    return [
                        (int(n), why, float(delay))
                        for n, why, delay in ATTEMPT.findall(log_path.read_text())
                    ]

                async def five_attempts() -> bool:
                    assert process.returncode is None, log_path.read_text()
                    return len(attempts()) >= 5

                await _wait_for(five_attempts)
                assert not await _crm_has(crm_runtime, during)

                await proxy.start()  # the database is back, on the same address
                await _wait_for(lambda: _crm_has(crm_runtime, during))
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(30):
                        returncode = await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()
                    raise
                await proxy.stop()
                await writer.close()
        text = log_path.read_text()
        # A graceful stop: the worker returns 0; uvicorn (serve) re-raises the SIGTERM it
        # handled once it has shut down, as servers are expected to.
        assert returncode in {0, -signal.SIGTERM}, text
        failed = attempts()
        # One line per attempt, numbered 1, 2, 3, ... and the delay doubling up to its cap.
        assert [n for n, _, _ in failed] == list(range(1, len(failed) + 1)), text
        assert [delay for _, _, delay in failed[:5]] == [0.2, 0.4, 0.8, 1.6, 1.6], text
        assert all(delay <= CAP for _, _, delay in failed)
        assert all(
            "connection refused" in why.lower() or "connection" in why.lower()
            for _, why, _ in failed
        ), text
        assert f"dispatcher works again after {len(failed)} failed attempt(s)" in text
        assert "Traceback" not in text
        assert through_proxy not in text  # nor its host and port with a password, were there one
