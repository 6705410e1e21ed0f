"""The console's event streams: a conversation stream resumes from Last-Event-ID with nothing
missed and nothing twice, also while two API processes write to one database; the queue stream
says when the queue changed.

Each stream is opened for a short time (`console_stream_seconds`), so every test also goes
through many reconnects, exactly as a browser's EventSource does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE, STDOUT
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from crm_impl import tables as crm
from crm_impl.app import build_runtime, create_app
from crm_impl.cli import add_operator
from crm_impl.settings import CrmSettings
from scripts.local_stack import free_port
from tests.browser.support import live_server
from tests.e2e.helpers import linked_ticket
from tests.support.pair import Pair


@dataclass
class Event:
    kind: str
    data: dict[str, Any]
    id: str | None


def parse(body: str) -> list[Event]:
    events = []
    for block in body.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "event" in fields:
            events.append(Event(fields["event"], json.loads(fields["data"]), fields.get("id")))
    return events


def quick_streams(settings: Any, seconds: float = 0.3) -> None:
    assert isinstance(settings, CrmSettings)
    settings.console_poll_seconds = 0.02
    settings.console_stream_seconds = seconds


@asynccontextmanager
async def second_api_process(pair: Pair) -> AsyncIterator[FastAPI]:
    """Another CRM API process on the same database: its own engine, pool and runtime."""
    settings = pair.crm_runtime.settings.model_copy()
    runtime = build_runtime(settings, clock=pair.clock)
    runtime.run_dispatcher = False
    try:
        yield create_app(runtime)
    finally:
        await runtime.close()


async def read_stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], last_id: str | None
) -> list[Event]:
    """One connection, until the server ends it; sends Last-Event-ID as a browser would."""
    extra = {"Last-Event-ID": last_id} if last_id else {}
    response = await client.get(url, headers={**headers, **extra})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse(response.text)


async def test_a_conversation_stream_resumes_without_missing_or_repeating_messages(
    pair: Pair,
) -> None:
    """Replies through two API processes and customer messages from the Mini App, all written
    while a reader on the second process reconnects again and again."""
    quick_streams(pair.crm_runtime.settings)
    ticket = await linked_ticket(pair)
    async with second_api_process(pair) as other_app:
        quick_streams(other_app.state.runtime.settings)
        other = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other_app), base_url="http://crm.test"
        )
        url = f"/api/crm/tickets/{ticket.crm_id}/events?after=0"
        written = asyncio.Event()
        reconnected = asyncio.Event()

        async def write() -> None:
            for round_ in range(6):
                # Each round is written while another connection is open: the reader resumes
                # through six reconnects at least, each in the middle of the writes.
                reconnected.clear()
                await reconnected.wait()
                replies = [
                    client.post(
                        f"/api/crm/tickets/{ticket.crm_id}/messages",
                        json={"id": str(uuid.uuid4()), "message": f"reply {round_}.{n}"},
                        headers=pair.operator_headers,
                    )
                    for n, client in enumerate((pair.crm, other, pair.crm, other))
                ]
                answers = await asyncio.gather(*replies)
                assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
                await pair.user_writes(ticket.tma_id, f"customer {round_}")
                await pair.tma_runtime.dispatcher.run_once()
            written.set()

        writer = asyncio.create_task(write())
        seen: list[Event] = []
        last_id: str | None = None
        connections = 0
        async with other:
            while True:
                connections += 1
                done_before = written.is_set()
                reconnected.set()
                batch = await read_stream(other, url, pair.operator_headers, last_id)
                messages = [e for e in batch if e.kind == "message"]
                seen += messages
                if messages:
                    last_id = messages[-1].id
                if done_before:
                    break  # this connection began after the last write: it has everything
                assert connections < 500
        await writer

    view = await pair.conversation_in_crm(ticket.crm_id)
    stored = [(m["seq"], m["id"]) for m in view["messages"]]
    received = [(int(e.id or 0), e.data["id"]) for e in seen]
    assert len(stored) == 1 + 6 * 5
    assert received == stored  # every message, once, in order
    assert connections > 6  # it really did reconnect


async def test_state_events_carry_status_and_delivery_changes(pair: Pair) -> None:
    quick_streams(pair.crm_runtime.settings)
    ticket = await linked_ticket(pair)
    reply = await pair.operator_replies(ticket.crm_id, "On it")
    url = f"/api/crm/tickets/{ticket.crm_id}/events"

    async def latest_state() -> dict[str, Any]:
        view = await pair.conversation_in_crm(ticket.crm_id)
        events = await read_stream(pair.crm, url, pair.operator_headers, str(view["last_seq"]))
        assert [e.kind for e in events] == ["state"]  # no message again after Last-Event-ID
        return events[-1].data

    state = await latest_state()
    assert state["ticket"]["status"] == "in_progress"
    assert state["deliveries"][reply["id"]]["state"] == "pending"
    await pair.sync()
    state = await latest_state()
    assert state["deliveries"][reply["id"]]["state"] == "delivered"


async def test_a_stream_ends_with_signed_out_once_the_operator_is_revoked(pair: Pair) -> None:
    quick_streams(pair.crm_runtime.settings, seconds=30)
    ticket = await linked_ticket(pair)
    boris, token = await add_operator(pair.crm_runtime.db, "Boris", now=pair.clock.now())
    async with (
        live_server(pair.crm_app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=20) as client,
        client.stream(
            "GET",
            f"/api/crm/tickets/{ticket.crm_id}/events",
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await anext(lines) == "retry: 1000"  # the stream is open
        async with pair.crm_runtime.db.transaction() as session:
            await session.execute(
                update(crm.Operator)
                .where(crm.Operator.id == boris.id)
                .values(revoked_at=pair.clock.now())
            )
        rest = [line async for line in lines]  # ends long before its 30 s
    assert "event: signed-out" in rest


async def test_the_queue_stream_says_when_the_queue_changed(pair: Pair) -> None:
    quick_streams(pair.crm_runtime.settings)
    first = await read_stream(pair.crm, "/api/crm/queue/events", pair.operator_headers, None)
    assert [e.kind for e in first] == ["queue"]  # the state at connection time
    fingerprint = first[0].id
    quiet = await read_stream(pair.crm, "/api/crm/queue/events", pair.operator_headers, fingerprint)
    assert quiet == []  # nothing changed since that event
    await linked_ticket(pair, subject="New one")
    changed = await read_stream(
        pair.crm, "/api/crm/queue/events", pair.operator_headers, fingerprint
    )
    assert [e.kind for e in changed] == ["queue"]
    assert changed[0].id != fingerprint


async def test_serve_stops_at_once_with_a_stream_open(tmp_path: Path) -> None:
    """`serve` on SIGTERM ends its open event streams instead of waiting for them."""
    port = free_port()
    env = {
        **os.environ,
        "CRM_DATABASE_URL": f"sqlite:///{tmp_path / 'crm.db'}",
        "CRM_CONSOLE_STREAM_SECONDS": "600",
        "CRM_DISPATCHER_ENABLED": "false",
    }

    async def run(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crm_impl", *args, env=env, stdout=PIPE, stderr=STDOUT
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, output
        return output.decode()

    await run("migrate")
    token = (await run("operators", "add", "Maria")).strip().splitlines()[-1].split(": ", 1)[1]
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crm_impl",
        "serve",
        "--port",
        str(port),
        "--no-migrate",
        env=env,
        stdout=PIPE,
        stderr=STDOUT,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            while True:
                try:
                    if (await client.get("/health/live")).status_code == 200:
                        break
                except httpx.TransportError:
                    assert server.returncode is None, "serve exited before it listened"
                    await asyncio.sleep(0.05)  # not listening yet: poll until it is
            async with client.stream(
                "GET", "/api/crm/queue/events", headers={"Authorization": f"Bearer {token}"}
            ) as response:
                lines = response.aiter_lines()
                async for line in lines:
                    if line == "event: queue":
                        break  # the stream is open and in its loop
                server.send_signal(signal.SIGTERM)
                rest = [line async for line in lines]  # the server ends the stream
        assert "event: signed-out" not in rest
        output, _ = await asyncio.wait_for(server.communicate(), timeout=30)
        # uvicorn re-raises the signal it stopped on once it has shut down.
        assert server.returncode in (0, -signal.SIGTERM)
        assert b"Traceback" not in output, output.decode()
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
