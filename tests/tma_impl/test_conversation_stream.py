"""The Mini App's live conversation stream across two API processes on one database: events are
numbered per ticket under the ticket's row lock, so a stream served by one process sees what the
other wrote, in order, and a reconnect after the last event seen misses nothing and repeats
nothing.

Process A is the wired pair's TMA (the CRM's replies and status changes reach it through the real
CRM and its dispatcher, run by the test); process B is a second TMA runtime on A's database,
served on loopback, with its own engine, pool and wake-ups: it shares only the database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from integration_kit.runtime import Runtime
from tests.browser.support import live_server
from tests.e2e.helpers import linked_ticket
from tests.support.event_stream import StreamReader
from tests.support.pair import Pair
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN
from tma_impl.app import build_runtime, create_app
from tma_impl.settings import TmaSettings


@asynccontextmanager
async def second_process(pair: Pair, poll_seconds: float = 0.2) -> AsyncIterator[Any]:
    """Process B: another TMA runtime on the pair's TMA database, served on loopback."""
    runtime = build_runtime(
        TmaSettings(
            database_url=pair.tma_runtime.settings.database_url,
            peer_url="http://crm.invalid",
            bot_token=FAKE_BOT_TOKEN,
            live_poll_seconds=poll_seconds,
        ),
        clock=pair.clock,
    )
    runtime.run_dispatcher = False
    try:
        async with (
            live_server(create_app(runtime)) as base_url,
            httpx.AsyncClient(base_url=base_url) as client,
        ):
            yield client, runtime
    finally:
        await runtime.close()


async def status(pair: Pair, crm_id: str, value: str) -> None:
    response = await pair.crm.post(
        f"/api/crm/tickets/{crm_id}/status", json={"status": value}, headers=pair.operator_headers
    )
    assert response.status_code == 200, response.text


async def user_writes_on(client: httpx.AsyncClient, pair: Pair, ticket_id: str, text: str) -> None:
    response = await client.post(
        f"/api/support/tickets/{ticket_id}/messages",
        json={"id": str(uuid.uuid4()), "message": text},
        headers=pair.user_headers(),
    )
    assert response.status_code == 201, response.text


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"]["body"] if e["kind"] == "message" else e["status"] for e in events]


async def history(pair: Pair, ticket_id: str) -> list[tuple[int, str]]:
    """The conversation as process A reads it from the database: (seq, body or status)."""
    conversation = await pair.conversation_in_tma(ticket_id)
    items = [(m["seq"], m["body"]) for m in conversation["messages"]]
    items += [(c["seq"], c["status"]) for c in conversation["status_changes"]]
    return sorted(items)


def seen(stream: StreamReader) -> list[tuple[int, str]]:
    return list(zip([e["seq"] for e in stream.events], bodies(stream.events), strict=True))


async def test_a_stream_on_one_process_sees_the_others_writes_and_resumes_without_gaps(
    pair: Pair,
) -> None:
    linked = await linked_ticket(pair)  # event 1: the first message, written through A
    async with second_process(pair) as (client, _runtime):
        stream = StreamReader(client, linked.tma_id, pair.user_headers())
        await stream.connect(after=0)
        await stream.wait_for(lambda events: len(events) == 1)

        await pair.operator_replies(linked.crm_id, "reply 1")
        await status(pair, linked.crm_id, "in_progress")
        await pair.sync()  # stored through A
        await stream.wait_for(lambda events: "in_progress" in bodies(events))

        await stream.disconnect()  # the phone lost its network
        await pair.operator_replies(linked.crm_id, "reply 2")
        await pair.sync()
        await user_writes_on(client, pair, linked.tma_id, "user 2")
        await status(pair, linked.crm_id, "closed")
        await pair.sync()
        await stream.connect()  # resumes after the last event it saw
        await pair.operator_replies(linked.crm_id, "reply 3")
        await pair.sync()
        expected = await history(pair, linked.tma_id)
        await stream.wait_for(lambda events: len(events) == len(expected))

        # Every event once, in order, as the database holds them; each write is among them.
        assert seen(stream) == expected
        assert [seq for seq, _ in expected] == list(range(1, len(expected) + 1))
        labels = [label for _, label in expected]
        for label in ("reply 1", "in_progress", "reply 2", "user 2", "closed", "reply 3"):
            assert labels.count(label) == 1, labels
        assert labels.index("reply 2") < labels.index("user 2") < labels.index("reply 3")
        [reply] = [e["message"] for e in stream.events if bodies([e]) == ["reply 1"]]
        assert (reply["sender_type"], reply["operator_name"]) == ("crm", pair.operator_name)
        assert stream.events[-1]["status"] == "closed"  # an operator's reply does not reopen
        assert stream.connections == 2
        await stream.disconnect()


async def test_concurrent_writes_through_both_processes_get_one_gapless_sequence(
    pair: Pair,
) -> None:
    """Writers on both processes at once: every event gets its own number, none is skipped, and
    a stream reads them all in the order they committed."""
    linked = await linked_ticket(pair)
    async with second_process(pair) as (client, _runtime):
        stream = StreamReader(client, linked.tma_id, pair.user_headers())
        await stream.connect(after=0)
        for n in range(10):
            await pair.operator_replies(linked.crm_id, f"op {n}")
        # The CRM's dispatcher delivers the replies to A while the user writes through B.
        writes = [user_writes_on(client, pair, linked.tma_id, f"user {n}") for n in range(10)]
        await asyncio.gather(pair.sync(), *writes)
        expected = await history(pair, linked.tma_id)
        await stream.wait_for(lambda events: len(events) == len(expected))
        # A fresh read of the conversation through A agrees with the stream from B.
        assert seen(stream) == expected
        assert [seq for seq, _ in expected] == list(range(1, len(expected) + 1))
        messages = [label for _, label in expected if label.startswith(("op ", "user "))]
        assert sorted(messages) == sorted(
            [f"op {n}" for n in range(10)] + [f"user {n}" for n in range(10)]
        )
        await stream.disconnect()


async def test_on_postgresql_another_processs_commit_wakes_the_stream(pair: Pair) -> None:
    """With B's poll a minute away (longer than the test waits), only NOTIFY/LISTEN can bring
    A's events to B's stream."""
    if not pair.tma_runtime.db.url.startswith("postgresql"):
        pytest.skip("NOTIFY/LISTEN is PostgreSQL's; SQLite streams poll")
    linked = await linked_ticket(pair)
    async with second_process(pair, poll_seconds=60) as (client, _runtime):
        stream = StreamReader(client, linked.tma_id, pair.user_headers())
        await stream.connect(after=0)
        await stream.wait_for(lambda events: len(events) == 1)
        await pair.operator_replies(linked.crm_id, "from the other process")
        await status(pair, linked.crm_id, "in_progress")
        await pair.sync()
        expected = await history(pair, linked.tma_id)
        await stream.wait_for(lambda events: len(events) == len(expected))
        assert seen(stream) == expected
        assert "from the other process" in bodies(stream.events)
        await stream.disconnect()


async def test_streams_end_as_soon_as_the_server_is_asked_to_stop(pair: Pair) -> None:
    """A stream lasts minutes; a stopping server must not wait for it (`serve` calls the
    runtime's on_stopping hooks when it gets SIGTERM or SIGINT)."""
    ticket = await pair.open_ticket()
    async with second_process(pair, poll_seconds=60) as (client, runtime):
        response_ended = asyncio.Event()

        async def read() -> None:
            url = f"/api/support/tickets/{ticket['id']}/events"
            async with client.stream("GET", url, headers=pair.user_headers()) as response:
                async for _line in response.aiter_lines():
                    pass
            response_ended.set()

        reader = asyncio.create_task(read())
        stream = StreamReader(client, ticket["id"], pair.user_headers())
        await stream.connect(after=0)  # a second stream, to know the server is streaming
        stopping: Runtime = runtime
        for callback in stopping.on_stopping:
            callback()
        async with asyncio.timeout(10):
            await response_ended.wait()
        await reader
        await stream.disconnect()
