"""Delivers outbox events: claims a batch, sends concurrently across tickets and in order within
each, then settles the whole batch in one transaction.

Runs inside the web process (woken right after each commit that wrote an event, with a polling
fallback) or alone as the `worker` command; several workers may share a PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from integration_kit.clock import Clock, SystemClock
from integration_kit.db import Database
from integration_kit.failures import is_database_error, is_database_outage, one_line
from integration_kit.outbox import ClaimedEvent, Delivery, OutboxRepository
from integration_kit.retry import (
    Delivered,
    Dropped,
    Failure,
    GiveUp,
    Outcome,
    RetryLater,
    RetryPolicy,
)
from integration_kit.signing import signing_event

log = logging.getLogger(__name__)


class EventSender(Protocol):
    """Sends one kind of event and records what the receiver answered."""

    async def send(self, event: ClaimedEvent) -> Outcome: ...

    async def record_deliveries(
        self, session: AsyncSession, deliveries: Sequence[Delivery]
    ) -> None:
        """Store the receivers' ids of these events (a whole round's worth, so in few statements);
        runs in the transaction that marks them delivered."""


@dataclass
class DispatcherStats:
    """Counters since start, exported as metrics."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    dropped: int = 0
    rounds: int = 0
    by_failure: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class DispatcherConfig:
    batch_size: int = 200
    per_stream: int = 20
    concurrency: int = 64
    poll_seconds: float = 1.0
    lease_seconds: float = 60.0
    send_timeout_seconds: float = 10.0
    # While rounds fail (the database is away): wait this long, doubling up to the cap.
    outage_base_seconds: float = 1.0
    outage_cap_seconds: float = 30.0


class Dispatcher:
    """The delivery loop of one process."""

    def __init__(
        self,
        *,
        db: Database,
        repository: OutboxRepository,
        senders: Mapping[str, EventSender],
        policy: RetryPolicy,
        config: DispatcherConfig,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.repository = repository
        self.senders = senders
        self.policy = policy
        self.config = config
        self.clock = clock or SystemClock()
        # S311: retry jitter only spreads retries out; nothing secret comes from it.
        self.rng = rng or random.Random()  # noqa: S311
        self.owner = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = DispatcherStats()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # Until a channel is known healthy, a success there wakes its backed-off events (this also
        # covers waits scheduled by a previous process).
        self._channel_failing: dict[str, bool] = defaultdict(lambda: True)

    # --- lifecycle ---------------------------------------------------------------------------

    def wake(self) -> None:
        """Run a round now instead of at the next poll (called after a commit wrote events)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run_forever(), name=f"dispatcher {self.owner}")

    async def stop(self) -> None:
        """Finish the round in flight (its results are settled), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def run_forever(self) -> None:
        failed_rounds = 0
        while not self._stopping:
            try:
                handled = await self.run_once()
            except Exception as exc:
                # The database went away (or a bug): delivery must not die, nor spin. Try again
                # after a short capped backoff, one log line per attempt; a traceback only for
                # an error that is not an outage, or with --debug.
                failed_rounds += 1
                delay = min(
                    self.config.outage_cap_seconds,
                    self.config.outage_base_seconds * 2 ** min(failed_rounds - 1, 32),
                )
                database = is_database_error(exc)
                what = "database unavailable" if is_database_outage(exc) else "round failed"
                log.warning(
                    "%s (attempt %d): %s; next attempt in %g s",
                    what,
                    failed_rounds,
                    one_line(exc),
                    delay,
                    exc_info=not database or log.isEnabledFor(logging.DEBUG),
                )
                await self._pause(delay)
                continue
            if failed_rounds:
                log.info("dispatcher works again after %d failed attempt(s)", failed_rounds)
                failed_rounds = 0
            if handled or self._stopping:
                continue
            await self._pause(self.config.poll_seconds)

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if woken (a new event, or stop())."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    # --- one round ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim, send and settle one batch; returns the number of events attempted."""
        self._wake.clear()
        now = self.clock.now()
        async with self.db.transaction() as session:
            events = await self.repository.claim(
                session,
                owner=self.owner,
                now=now,
                lease_seconds=self.config.lease_seconds,
                limit=self.config.batch_size,
                per_stream=self.config.per_stream,
                skip_locked=not self.db.is_sqlite,
            )
        if not events:
            return 0
        self.stats.rounds += 1
        lease_deadline = now + timedelta(seconds=self.config.lease_seconds)
        streams: dict[tuple[uuid.UUID, str], list[ClaimedEvent]] = defaultdict(list)
        for event in events:
            streams[event.stream].append(event)
        results: list[tuple[ClaimedEvent, Outcome]] = []
        limit = asyncio.Semaphore(self.config.concurrency)

        async def send_stream(stream_events: list[ClaimedEvent]) -> None:
            async with limit:
                for event in stream_events:
                    if self._stopping and results:
                        return  # shutting down: leave the rest to be released
                    remaining = (lease_deadline - self.clock.now()).total_seconds()
                    if remaining < self.config.send_timeout_seconds:
                        return  # the lease could expire mid-send; let the next round take it
                    outcome = await self._send(event)
                    results.append((event, outcome))
                    if not isinstance(outcome, Delivered | Dropped):
                        return  # order: nothing behind a failed event goes before it

        # While the round sends, its leases are kept alive: an event sent early in a round whose
        # slowest delivery outlasts the lease would otherwise be taken and sent again by another
        # worker; only a crashed worker's leases expire. The keeper stops before the settle,
        # which updates the same rows (both at once could deadlock on PostgreSQL).
        keeper = asyncio.create_task(self._keep_leases([event.id for event in events]))
        try:
            await asyncio.gather(*(send_stream(batch) for batch in streams.values()))
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        attempted = {event.id for event, _ in results}
        unattempted = [event.id for event in events if event.id not in attempted]
        await self._settle(results, unattempted)
        return len(results)

    async def _keep_leases(self, ids: list[int]) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            until = self.clock.now() + timedelta(seconds=self.config.lease_seconds)
            try:
                async with self.db.transaction() as session:
                    await self.repository.renew(session, ids, owner=self.owner, until=until)
            except Exception as exc:
                log.warning(
                    "renewing the leases of a running round failed: %s",
                    one_line(exc),
                    exc_info=not is_database_error(exc) or log.isEnabledFor(logging.DEBUG),
                )

    async def _send(self, event: ClaimedEvent) -> Outcome:
        sender = self.senders.get(event.kind)
        if sender is None:
            return GiveUp(f"no sender for event kind {event.kind!r}")
        try:
            if event.webhook_id is None:
                return await sender.send(event)
            with signing_event(str(event.webhook_id)):
                return await sender.send(event)
        except Exception as exc:  # timeouts, resets, refused connections: the peer is unavailable
            return RetryLater(Failure.unavailable, f"{type(exc).__name__}: {_safe(exc)}")

    async def _settle(
        self, results: list[tuple[ClaimedEvent, Outcome]], unattempted: list[int]
    ) -> None:
        now = self.clock.now()
        recovered: set[str] = set()
        # A channel that answered anything this round is up: an event failing there fails on its
        # own (a peer bug on that payload, say) and keeps its backoff, instead of being woken by
        # every success of the others and retried round after round.
        answered = {
            event.channel
            for event, outcome in results
            if not (isinstance(outcome, RetryLater) and outcome.failure == Failure.unavailable)
        }
        async with self.db.transaction() as session:
            accepted = [
                (event, outcome.result)
                for event, outcome in results
                if isinstance(outcome, Delivered)
            ]
            delivered = await self._record_deliveries(session, accepted)
            for event, _ in accepted:
                if event.id in delivered and self._channel_failing[event.channel]:
                    recovered.add(event.channel)
            for event, outcome in results:
                if isinstance(outcome, RetryLater):
                    if outcome.failure == Failure.unavailable and event.channel in answered:
                        outcome = replace(outcome, failure=Failure.failing)
                    await self._record_retry(session, event, outcome, now)
                elif isinstance(outcome, Dropped):
                    await self.repository.mark_dropped(
                        session, event.id, now=now, note=outcome.detail
                    )
                    self.stats.dropped += 1
                elif isinstance(outcome, GiveUp):
                    await self.repository.mark_dead(session, event.id, error=outcome.detail)
                    self.stats.dead += 1
                    log.warning(
                        "event %s (%s, ticket %s) is dead: %s",
                        event.id,
                        event.kind,
                        event.ticket_id,
                        outcome.detail,
                    )
            await self.repository.mark_delivered(session, list(delivered), now=now)
            self.stats.delivered += len(delivered)
            await self.repository.release(session, unattempted, owner=self.owner)
            for channel in recovered:
                woken = await self.repository.wake_unavailable(session, channel=channel, now=now)
                self._channel_failing[channel] = False
                if woken:
                    log.info("%s answers again: %d waiting events are due now", channel, woken)
        if recovered:
            self.wake()

    async def _record_deliveries(self, session: AsyncSession, accepted: list[Delivery]) -> set[int]:
        """Record the receivers' answers, each kind's in one go; returns the ids recorded.

        Should a kind's batch fail, its events are recorded one by one, so only the event whose
        answer cannot be stored (say, its ids contradict a stored link) is parked as dead, for an
        operator, rather than resent forever; the others of the round are delivered as usual.
        """
        by_kind: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in accepted:
            by_kind[delivery[0].kind].append(delivery)
        recorded: set[int] = set()
        for kind, deliveries in by_kind.items():
            sender = self.senders[kind]
            batches = [deliveries]
            while batches:
                batch = batches.pop()
                try:
                    async with session.begin_nested():
                        await sender.record_deliveries(session, batch)
                except Exception as exc:
                    if is_database_outage(exc):
                        # Not this answer's fault: the whole settle fails and the round's events
                        # are sent again once their lease runs out (receivers are idempotent).
                        raise
                    if len(batch) > 1:
                        batches += [[delivery] for delivery in reversed(batch)]
                        continue
                    event = batch[0][0]
                    log.exception("recording the answer to event %s failed", event.id)
                    await self.repository.mark_dead(
                        session,
                        event.id,
                        error=f"delivered, but recording the answer failed: {_safe(exc)}",
                    )
                    self.stats.dead += 1
                else:
                    recorded.update(event.id for event, _ in batch)
        return recorded

    async def _record_retry(
        self, session: AsyncSession, event: ClaimedEvent, outcome: RetryLater, now: datetime
    ) -> None:
        if outcome.failure == Failure.unavailable:
            self._channel_failing[event.channel] = True
        if self.policy.expired(now=now, created_at=event.created_at):
            await self.repository.mark_dead(
                session, event.id, error=f"gave up after the maximum age: {outcome.detail}"
            )
            self.stats.dead += 1
            return
        next_at = self.policy.next_attempt(
            now=now, attempts=event.attempts + 1, retry_after=outcome.retry_after, rng=self.rng
        )
        await self.repository.mark_retry(
            session,
            event.id,
            next_attempt_at=next_at,
            failure=outcome.failure,
            error=outcome.detail,
        )
        self.stats.retried += 1
        self.stats.by_failure[outcome.failure] += 1
        log.info(
            "event %s (%s, ticket %s) retries at %s: %s",
            event.id,
            event.kind,
            event.ticket_id,
            next_at.isoformat(),
            outcome.detail,
        )

    async def drain(self, *, max_rounds: int = 10_000) -> int:
        """Run rounds until nothing is due; for tests and the demo. Returns events attempted."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            if not handled:
                return total
            total += handled
        return total


def _safe(exc: BaseException) -> str:
    """An exception's text, short; tokens never reach here (they live in headers, not messages)."""
    return str(exc)[:300]
