"""A live worker keeps its leases while its round runs: an event it already sent is not taken
and sent again by another worker because a slow delivery in the same round outlasted the lease.

Found by the fault harness on PostgreSQL with three workers per side: reply notifications went
to Telegram twice, a lease length apart, with no worker killed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from integration_kit.dispatcher import Dispatcher, EventSender
from integration_kit.outbound import MESSAGE
from integration_kit.outbox import ClaimedEvent, Delivery, OutboxRepository
from integration_kit.retry import Outcome
from integration_kit.runtime import Runtime
from tests.support.pair import wired_pair
from tma_impl.notifications import NOTIFY_REPLY
from tma_impl.tables import Outbox, Ticket

LEASE_SECONDS = 0.6  # the round renews its leases every third of it (real time)
BOUND = 10  # only bounds a failing test


class HeldSender:
    """Delegates to a real sender, but only once released: a delivery slower than the lease."""

    def __init__(self, inner: EventSender) -> None:
        self.inner = inner
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, event: ClaimedEvent) -> Outcome:
        self.arrived.set()
        await self.release.wait()
        return await self.inner.send(event)

    async def record_deliveries(
        self, session: AsyncSession, deliveries: Sequence[Delivery]
    ) -> None:
        await self.inner.record_deliveries(session, deliveries)


class WatchedRepository(OutboxRepository):
    """The TMA's outbox, telling the test each time a round renewed its leases."""

    def __init__(self) -> None:
        super().__init__(Outbox, Ticket)
        self.renewed = asyncio.Event()

    async def renew(
        self, session: AsyncSession, ids: Sequence[int], *, owner: str, until: datetime
    ) -> None:
        await super().renew(session, ids, owner=owner, until=until)
        self.renewed.set()  # committed right after; the test reads the row to be sure


async def test_a_round_outliving_its_lease_is_not_sent_again_by_another_worker(
    db_kind: str, tmp_path: Path
) -> None:
    """Round 1 has sent a reply notification and waits on a slow delivery to the CRM past the
    lease; a second worker then finds nothing to take, and the user is notified once."""
    async with wired_pair(
        db_kind, tmp_path, lease_seconds=LEASE_SECONDS, peer_timeout_seconds=0.1
    ) as pair:
        ticket = await pair.open_ticket()
        await pair.sync()
        crm_ticket = await pair.crm_ticket_for(ticket["id"])
        await pair.operator_replies(crm_ticket["id"], "Looking into it.")
        await pair.crm_runtime.dispatcher.drain()
        # The TMA holds a reply notification (Telegram) and a user message for the CRM: two
        # streams that one round claims together.
        await pair.user_writes(ticket["id"], "Any news?")
        runtime = pair.tma_runtime
        real = runtime.dispatcher
        held = HeldSender(real.senders[MESSAGE])
        repository = WatchedRepository()
        first = Dispatcher(
            db=runtime.db,
            repository=repository,
            senders={**real.senders, MESSAGE: held},
            policy=real.policy,
            config=real.config,
            clock=pair.clock,
            name="first worker",
        )
        round_one = asyncio.create_task(first.run_once())
        async with asyncio.timeout(BOUND):
            await held.arrived.wait()
        assert len(pair.bot.calls_for(4242)) == 1  # sent, not yet acknowledged in the outbox

        # The clock passes the lease the round took; the round renews it meanwhile.
        pair.clock.advance(LEASE_SECONDS + 1)
        try:
            async with asyncio.timeout(BOUND):
                while True:
                    repository.renewed.clear()
                    await repository.renewed.wait()
                    if await _notification_leased_past(pair.clock.now(), runtime):
                        break
        except TimeoutError:
            pytest.fail("the running round never renewed its leases: another worker may take them")

        second = Dispatcher(
            db=runtime.db,
            repository=runtime.outbox,
            senders=real.senders,
            policy=real.policy,
            config=real.config,
            clock=pair.clock,
            name="second worker",
        )
        assert await second.run_once() == 0
        held.release.set()
        async with asyncio.timeout(BOUND):
            assert await round_one == 2
        assert len(pair.bot.calls_for(4242)) == 1


async def _notification_leased_past(now: datetime, runtime: Runtime) -> bool:
    async with runtime.db.sessions() as session:
        expires = await session.scalar(
            select(Outbox.lease_expires_at).where(Outbox.kind == NOTIFY_REPLY)
        )
    return expires is not None and expires > now
