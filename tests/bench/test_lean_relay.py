"""The lean reference relay of `make bench` (bench/lean_relay.py) does the product's work on the
measured path: a yardstick that skipped a check or a row would flatter itself. Both sides are
served as the bench serves them, on databases migrated by the product's migrations, over real
HTTP; what they store and refuse is checked, never how fast."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crm_impl.settings import CrmSettings
from generated import CONTRACT_VERSION
from integration_kit.migrate import upgrade
from integration_kit.signing import signature_headers
from tma_impl.settings import TmaSettings
from tma_impl.telegram import TelegramUser, mint_init_data

ROOT = Path(__file__).resolve().parents[2]
LEAN = ROOT / "bench" / "lean_relay.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Lean:
    tma_url: str
    crm_url: str
    tma_db: Path
    crm_db: Path
    session: aiohttp.ClientSession

    def count(self, db: Path, query: str, *params: Any) -> int:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return int(conn.execute(query, params).fetchone()[0])

    async def until(self, db: Path, query: str, target: int) -> None:
        deadline = time.monotonic() + 30  # a generous bound for a loaded machine, not a figure
        while self.count(db, query) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"{query} never reached {target}")
            await asyncio.sleep(0.05)


def user_header(user_id: int = 4242) -> dict[str, str]:
    init_data = mint_init_data(
        bot_token=TmaSettings().dev_bot_token,
        user=TelegramUser(id=user_id, first_name="Anna"),
        auth_date=datetime.now(UTC),
    )
    return {"Authorization": f"tma {init_data}"}


@pytest.fixture
async def lean(tmp_path: Path) -> AsyncIterator[Lean]:
    tma, crm = TmaSettings(), CrmSettings()
    env = {
        **os.environ,
        "LEAN_BOT_TOKEN": tma.dev_bot_token,
        "LEAN_PEER_TOKEN": tma.peer_token,
        "LEAN_SIGNING_SECRET": tma.peer_signing_secret,
        "LEAN_ACCEPTED_SECRETS": ",".join(crm.inbound_signing_secrets),
        "LEAN_INBOUND_TOKENS": ",".join(crm.inbound_tokens),
        "LEAN_CONTRACT_VERSION": CONTRACT_VERSION,
    }
    ports = {"tma": free_port(), "crm": free_port()}
    processes = []
    for side, peer in (("crm", "tma"), ("tma", "crm")):
        db = tmp_path / f"{side}.db"
        await asyncio.to_thread(upgrade, ROOT / f"{side}_impl" / "migrations", f"sqlite:///{db}")
        command = [sys.executable, str(LEAN), side, "--port", str(ports[side]), "--db", str(db)]
        command += ["--peer-url", f"http://127.0.0.1:{ports[peer]}"]
        processes.append(subprocess.Popen(command, env=env, cwd=tmp_path))  # noqa: ASYNC220
    try:
        async with aiohttp.ClientSession() as session:
            wired = Lean(
                f"http://127.0.0.1:{ports['tma']}",
                f"http://127.0.0.1:{ports['crm']}",
                tmp_path / "tma.db",
                tmp_path / "crm.db",
                session,
            )
            for url in (wired.crm_url, wired.tma_url):
                deadline = time.monotonic() + 30
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{url}/health/ready") as response:
                            if response.status == 200:
                                break
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{url} did not start")
                    await asyncio.sleep(0.05)
            yield wired
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=20)


async def post(lean: Lean, url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    async with lean.session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_a_message_is_relayed_with_every_row_the_product_writes(lean: Lean) -> None:
    ticket, first, second = (str(uuid.uuid4()) for _ in range(3))
    tickets = f"{lean.tma_url}/api/support/tickets"
    opened = {"id": ticket, "subject": "Help", "message": "first", "message_id": first}
    assert (await post(lean, tickets, opened, user_header()))[0] == 201
    status, _ = await post(
        lean, f"{tickets}/{ticket}/messages", {"id": second, "message": "second"}, user_header()
    )
    assert status == 201

    await lean.until(lean.crm_db, "SELECT count(*) FROM messages", 2)
    await lean.until(lean.tma_db, "SELECT count(*) FROM outbox WHERE state = 'delivered'", 2)
    # TMA: each message's change-log row and Mini App event, both linked once delivered.
    assert lean.count(lean.tma_db, "SELECT count(*) FROM change_log") == 3  # ticket + 2 messages
    assert lean.count(lean.tma_db, "SELECT max(seq) FROM ticket_events") == 2
    assert lean.count(lean.tma_db, "SELECT count(*) FROM tickets WHERE external_id IS NULL") == 0
    await lean.until(
        lean.tma_db, "SELECT count(*) FROM messages WHERE external_message_id IS NOT NULL", 2
    )
    # CRM: the change-log rows of the ticket and both messages, keyed by the sender's ids.
    assert lean.count(lean.crm_db, "SELECT count(*) FROM change_log") == 3
    assert (
        lean.count(
            lean.crm_db,
            "SELECT count(*) FROM messages WHERE external_message_id = ?",
            uuid.UUID(second).hex,
        )
        == 1
    )

    # A retry of the user's write stores nothing new and answers 200.
    status, _ = await post(
        lean, f"{tickets}/{ticket}/messages", {"id": second, "message": "second"}, user_header()
    )
    assert status == 200
    assert lean.count(lean.tma_db, "SELECT count(*) FROM outbox") == 2


async def test_the_user_api_refuses_what_the_product_refuses(lean: Lean) -> None:
    ticket = str(uuid.uuid4())
    tickets = f"{lean.tma_url}/api/support/tickets"
    body = {"id": ticket, "subject": "Help", "message": "first", "message_id": str(uuid.uuid4())}
    forged = {"Authorization": user_header()["Authorization"].replace("hash=", "hash=0")}
    assert (await post(lean, tickets, body, forged))[0] == 401
    assert (await post(lean, tickets, {**body, "message": ""}, user_header()))[0] == 422
    assert (await post(lean, tickets, {**body, "id": ticket.replace("-", "")}, user_header()))[
        0
    ] == 422
    assert (await post(lean, tickets, body, user_header()))[0] == 201
    message = {"id": str(uuid.uuid4()), "message": "x\x00"}
    assert (await post(lean, f"{tickets}/{ticket}/messages", message, user_header()))[0] == 422
    message["message"] = "not yours"
    assert (await post(lean, f"{tickets}/{ticket}/messages", message, user_header(7)))[0] == 404


async def test_the_receiver_checks_token_signature_link_and_dedupes(lean: Lean) -> None:
    tma, crm = TmaSettings(), CrmSettings()
    now = datetime.now(UTC).isoformat()
    ticket, message_id = str(uuid.uuid4()), str(uuid.uuid4())

    async def send(path: str, body: dict[str, Any], token: str = tma.peer_token) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            **signature_headers(
                tma.peer_signing_secret,
                msg_id=str(uuid.uuid4()),
                timestamp=int(time.time()),
                body=data,
            ),
        }
        async with lean.session.post(lean.crm_url + path, data=data, headers=headers) as response:
            assert response.headers["Contract-Version"] == CONTRACT_VERSION
            return response.status, await response.json(content_type=None)

    created = {
        "external_ticket_id": ticket,
        "subject": "Help",
        "message": "first",
        "external_message_id": str(uuid.uuid4()),
        "customer": {"telegram_user_id": 1, "first_name": "Anna"},
        "created_at": now,
    }
    status, accepted = await send("/api/integration/tickets", created)
    assert status == 201
    body = {
        "external_ticket_id": ticket,
        "external_message_id": message_id,
        "sender": "tma",
        "message": "hello",
        "created_at": now,
    }
    assert (await send("/api/integration/messages", body, token="wrong"))[0] == 401
    assert crm.inbound_tokens  # the token below is the accepted one
    status, first = await send("/api/integration/messages", body)
    assert status == 201
    status, again = await send("/api/integration/messages", body)
    assert (status, again["message_id"]) == (200, first["message_id"])
    assert (await send("/api/integration/messages", {**body, "message": "other"}))[0] == 409
    # The link check: our ticket id must belong to the sender's ticket.
    other = {**body, "ticket_id": accepted["ticket_id"], "external_ticket_id": str(uuid.uuid4())}
    assert (
        await send("/api/integration/messages", {**other, "external_message_id": str(uuid.uuid4())})
    )[0] == 409
    assert (await send("/api/integration/messages", {**body, "created_at": "yesterday"}))[0] == 422

    # A signature over other bytes is refused.
    data = json.dumps(body).encode()
    headers = {
        "Authorization": f"Bearer {tma.peer_token}",
        "Content-Type": "application/json",
        **signature_headers(
            tma.peer_signing_secret, msg_id="m1", timestamp=int(time.time()), body=b"{}"
        ),
    }
    url = lean.crm_url + "/api/integration/messages"
    async with lean.session.post(url, data=data, headers=headers) as response:
        assert response.status == 401
    assert lean.count(lean.crm_db, "SELECT count(*) FROM change_log") == 3  # ticket, 2 messages
