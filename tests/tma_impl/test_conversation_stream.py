"""The Mini App's live conversation stream across two API processes on one database: events are
numbered per ticket under the ticket's row lock, so a stream served by one process sees what the
other wrote, in order, and a reconnect after the last event seen misses nothing and repeats
nothing. (Two runtimes in this process stand for two processes: each has its own engine, pool and
wake-ups, and they share only the database.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_kit.runtime import Runtime
from tests.browser.support import live_server
from tests.e2e.helpers import AS_CRM, message_body
from tests.support.databases import POSTGRES_URL, fresh_database
from tests.support.event_stream import StreamReader
from tests.support.pair import CRM_TO_TMA_TOKEN, TMA_TO_CRM_TOKEN
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN
from tma_impl.app import build_runtime, create_app
from tma_impl.settings import TmaSettings
from tma_impl.telegram import TelegramUser, mint_init_data

ANNA = TelegramUser(id=4242, first_name="Anna", language_code="en")


def user_headers() -> dict[str, str]:
    init_data = mint_init_data(bot_token=FAKE_BOT_TOKEN, user=ANNA, auth_date=datetime.now(UTC))
    return {"Authorization": f"tma {init_data}"}


@dataclass
class Process:
    client: httpx.AsyncClient
    runtime: Runtime


@asynccontextmanager
async def two_api_processes(
    db_kind: str, tmp_path: Path, poll_seconds: float = 0.2
) -> AsyncIterator[list[Process]]:
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(fresh_database(db_kind, "tma", tmp_path))
        processes = []
        for _ in range(2):
            runtime = build_runtime(
                TmaSettings(
                    database_url=url,
                    inbound_tokens=[CRM_TO_TMA_TOKEN],
                    peer_url="http://crm.invalid",
                    peer_token=TMA_TO_CRM_TOKEN,
                    bot_token=FAKE_BOT_TOKEN,
                    bot_api_base_url="http://bot.invalid",
                    live_poll_seconds=poll_seconds,
                )
            )
            runtime.run_dispatcher = False
            stack.push_async_callback(runtime.close)
            base_url = await stack.enter_async_context(live_server(create_app(runtime)))
            client = await stack.enter_async_context(httpx.AsyncClient(base_url=base_url))
            processes.append(Process(client=client, runtime=runtime))
        yield processes


async def open_ticket(process: Process) -> str:
    body = {
        "id": str(uuid.uuid4()),
        "subject": "Payment failed",
        "message": "first",
        "message_id": str(uuid.uuid4()),
    }
    response = await process.client.post("/api/support/tickets", json=body, headers=user_headers())
    assert response.status_code == 201, response.text
    return body["id"]


async def operator_reply(process: Process, ticket_id: str, crm_id: str, text: str) -> None:
    body = message_body(
        sender="crm",
        ticket_id=ticket_id,
        external_ticket_id=crm_id,
        created_at=datetime.now(UTC),
        text=text,
        operator_name="Maria",
    )
    response = await process.client.post("/api/integration/messages", json=body, headers=AS_CRM)
    assert response.status_code == 201, response.text


async def operator_status(process: Process, ticket_id: str, crm_id: str, status: str) -> None:
    body = {
        "ticket_id": ticket_id,
        "external_ticket_id": crm_id,
        "status": status,
        "changed_at": datetime.now(UTC).isoformat(),
    }
    response = await process.client.post("/api/integration/status", json=body, headers=AS_CRM)
    assert response.status_code == 200, response.text


async def user_writes(process: Process, ticket_id: str, text: str) -> None:
    response = await process.client.post(
        f"/api/support/tickets/{ticket_id}/messages",
        json={"id": str(uuid.uuid4()), "message": text},
        headers=user_headers(),
    )
    assert response.status_code == 201, response.text


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"]["body"] if e["kind"] == "message" else e["status"] for e in events]


async def test_a_stream_on_one_process_sees_the_others_writes_and_resumes_without_gaps(
    db_kind: str, tmp_path: Path
) -> None:
    async with two_api_processes(db_kind, tmp_path) as (writer, streamer):
        ticket_id, crm_id = await open_ticket(writer), str(uuid.uuid4())
        stream = StreamReader(streamer.client, ticket_id, user_headers())
        await stream.connect(after=0)
        await stream.wait_for(lambda events: len(events) == 1)

        await operator_reply(writer, ticket_id, crm_id, "reply 1")
        await operator_status(writer, ticket_id, crm_id, "in_progress")
        await stream.wait_for(lambda events: len(events) == 3)

        await stream.disconnect()  # the phone lost its network
        await operator_reply(writer, ticket_id, crm_id, "reply 2")
        await user_writes(streamer, ticket_id, "user 2")
        await operator_status(writer, ticket_id, crm_id, "closed")
        await stream.connect()  # resumes after the last event it saw
        await operator_reply(writer, ticket_id, crm_id, "reply 3")
        await stream.wait_for(lambda events: len(events) == 7)

        assert [e["seq"] for e in stream.events] == list(range(1, 8))
        assert bodies(stream.events) == [
            "first",
            "reply 1",
            "in_progress",
            "reply 2",
            "user 2",
            "closed",
            "reply 3",
        ]
        reply = stream.events[1]["message"]
        assert (reply["sender_type"], reply["operator_name"]) == ("crm", "Maria")
        assert stream.events[-1]["status"] == "closed"  # an operator's reply does not reopen
        assert stream.connections == 2
        await stream.disconnect()


async def test_concurrent_writes_through_both_processes_get_one_gapless_sequence(
    db_kind: str, tmp_path: Path
) -> None:
    """Writers on both processes at once: every event gets its own number, none is skipped, and
    a stream reads them all in the order they committed."""
    async with two_api_processes(db_kind, tmp_path) as (first, second):
        ticket_id, crm_id = await open_ticket(first), str(uuid.uuid4())
        stream = StreamReader(second.client, ticket_id, user_headers())
        await stream.connect(after=0)
        writes = [operator_reply(first, ticket_id, crm_id, f"op {n}") for n in range(10)]
        writes += [user_writes(second, ticket_id, f"user {n}") for n in range(10)]
        await asyncio.gather(*writes)
        await stream.wait_for(lambda events: len(events) == 21)
        assert [e["seq"] for e in stream.events] == list(range(1, 22))
        assert sorted(bodies(stream.events)[1:]) == sorted(
            [f"op {n}" for n in range(10)] + [f"user {n}" for n in range(10)]
        )
        # A fresh read of the conversation agrees with the stream.
        conversation = (
            await first.client.get(f"/api/support/tickets/{ticket_id}", headers=user_headers())
        ).json()
        assert conversation["last_seq"] == 21
        assert [m["seq"] for m in conversation["messages"]] == list(range(1, 22))
        await stream.disconnect()


@pytest.mark.parametrize("db_kind", ["postgresql"] if POSTGRES_URL else [])
async def test_on_postgresql_another_processs_commit_wakes_the_stream(
    db_kind: str, tmp_path: Path
) -> None:
    """With the poll a minute away (longer than the test waits), only NOTIFY/LISTEN can bring
    the other process's events."""
    async with two_api_processes(db_kind, tmp_path, poll_seconds=60) as (writer, streamer):
        ticket_id, crm_id = await open_ticket(writer), str(uuid.uuid4())
        stream = StreamReader(streamer.client, ticket_id, user_headers())
        await stream.connect(after=0)
        await stream.wait_for(lambda events: len(events) == 1)
        await operator_reply(writer, ticket_id, crm_id, "from the other process")
        await operator_status(writer, ticket_id, crm_id, "in_progress")
        await stream.wait_for(lambda events: len(events) == 3)
        assert bodies(stream.events) == ["first", "from the other process", "in_progress"]
        await stream.disconnect()


async def test_streams_end_as_soon_as_the_server_is_asked_to_stop(tmp_path: Path) -> None:
    """A stream lasts minutes; a stopping server must not wait for it (`serve` calls the
    runtime's on_stopping hooks when it gets SIGTERM or SIGINT)."""
    async with two_api_processes("sqlite", tmp_path, poll_seconds=60) as (first, _second):
        ticket_id = await open_ticket(first)
        response_ended = asyncio.Event()

        async def read() -> None:
            url = f"/api/support/tickets/{ticket_id}/events"
            async with first.client.stream("GET", url, headers=user_headers()) as response:
                async for _line in response.aiter_lines():
                    pass
            response_ended.set()

        reader = asyncio.create_task(read())
        stream = StreamReader(first.client, ticket_id, user_headers())
        await stream.connect(after=0)  # a second stream, to know the server is streaming
        for callback in first.runtime.on_stopping:
            callback()
        async with asyncio.timeout(10):
            await response_ended.wait()
        await reader
        await stream.disconnect()
