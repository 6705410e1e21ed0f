"""The dispatcher running in the background, as in the web process: woken right after a commit,
polling as a fallback, and stopping gracefully with its round in flight settled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from integration_kit.dispatcher import Dispatcher
from integration_kit.schema import OutboxState
from tests.integration_kit.outbox_rows import outbox_rows
from tests.support.pair import Pair, wired_pair

# Timeouts only bound a failing test; a passing one never waits for them.
BOUND = 10


def watch_rounds(dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch) -> asyncio.Queue[int]:
    """A queue that receives the number of events attempted by each round the loop runs."""
    rounds: asyncio.Queue[int] = asyncio.Queue()
    run_once = dispatcher.run_once

    async def counted() -> int:
        handled = await run_once()
        rounds.put_nowait(handled)
        return handled

    monkeypatch.setattr(dispatcher, "run_once", counted)
    return rounds


async def next_round(rounds: asyncio.Queue[int]) -> int:
    async with asyncio.timeout(BOUND):
        return await rounds.get()


@asynccontextmanager
async def running_pair(
    db_kind: str, tmp_path: Path, poll_seconds: float
) -> AsyncIterator[tuple[Pair, str]]:
    """A pair with one delivered ticket, the TMA's dispatcher not yet started."""
    async with wired_pair(db_kind, tmp_path, dispatcher_poll_seconds=poll_seconds) as pair:
        ticket = await pair.open_ticket()
        await pair.sync()
        try:
            yield pair, ticket["id"]
        finally:
            await pair.tma_runtime.dispatcher.stop()


async def bodies_in_crm(pair: Pair, ticket_id: str) -> list[str]:
    crm_ticket = await pair.crm_ticket_for(ticket_id)
    return [m["body"] for m in (await pair.conversation_in_crm(crm_ticket["id"]))["messages"]]


async def test_a_commit_wakes_the_idle_dispatcher_at_once(
    db_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an hour between polls, a new message is still delivered right after its commit."""
    async with running_pair(db_kind, tmp_path, poll_seconds=3600) as (pair, ticket):
        dispatcher = pair.tma_runtime.dispatcher
        rounds = watch_rounds(dispatcher, monkeypatch)
        dispatcher.start()
        assert await next_round(rounds) == 0  # idle: it now waits for a wake-up or the poll

        await pair.user_writes(ticket, "hello right away")
        assert await next_round(rounds) == 1
        assert await bodies_in_crm(pair, ticket) == [
            "I paid but the order is unpaid.",
            "hello right away",
        ]


async def test_an_event_falling_due_without_a_commit_is_found_by_the_poll(
    db_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_pair(db_kind, tmp_path, poll_seconds=0.05) as (pair, ticket):
        dispatcher = pair.tma_runtime.dispatcher
        rounds = watch_rounds(dispatcher, monkeypatch)
        pair.to_crm.down = True
        await pair.user_writes(ticket, "after the outage")
        dispatcher.start()
        assert await next_round(rounds) == 1  # failed: the retry is due in about a second
        assert await next_round(rounds) == 0  # nothing due: the loop waits for a wake-up or poll
        pair.to_crm.down = False
        pair.clock.advance(5)  # the retry falls due, but nothing commits, so nothing wakes it
        async with asyncio.timeout(BOUND):
            while await rounds.get() == 0:
                pass  # polls that came too early
        assert await bodies_in_crm(pair, ticket) == [
            "I paid but the order is unpaid.",
            "after the outage",
        ]


class Gate(httpx.AsyncBaseTransport):
    """Holds every request at the door until released, and says when one has arrived."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.entered.set()
        await self.release.wait()
        return await self.inner.handle_async_request(request)


async def test_stopping_settles_the_delivery_in_flight_and_releases_the_rest(
    db_kind: str, tmp_path: Path
) -> None:
    async with running_pair(db_kind, tmp_path, poll_seconds=3600) as (pair, ticket):
        dispatcher = pair.tma_runtime.dispatcher
        assert pair.to_crm.inner is not None
        gate = Gate(pair.to_crm.inner)
        pair.to_crm.inner = gate
        await pair.user_writes(ticket, "in flight")
        await pair.user_writes(ticket, "not yet sent")
        dispatcher.start()
        async with asyncio.timeout(BOUND):
            await gate.entered.wait()

        stopping = asyncio.create_task(dispatcher.stop())
        await asyncio.sleep(0)  # let stop() begin: it must wait for the request in flight
        assert not stopping.done()
        gate.release.set()
        async with asyncio.timeout(BOUND):
            await stopping
        assert not dispatcher.running

        rows = {
            row.payload["request"]["message"]: row
            for row in await outbox_rows(pair.tma_runtime, kind="message")
        }
        # The delivery in flight finished and was recorded; the next one was left, unleased.
        assert rows["in flight"].state == OutboxState.delivered
        assert rows["not yet sent"].state == OutboxState.pending
        assert rows["not yet sent"].attempts == 0
        assert rows["not yet sent"].lease_owner is None
        conversation = await pair.conversation_in_tma(ticket)
        assert [m["delivered"] for m in conversation["messages"]] == [True, True, False]

        # Nothing is lost: the next process (here the same one, restarted) sends the rest.
        await pair.sync()
        assert await bodies_in_crm(pair, ticket) == [
            "I paid but the order is unpaid.",
            "in flight",
            "not yet sent",
        ]
