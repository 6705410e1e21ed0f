"""The outbox table's operations: enqueue in the caller's transaction, claim, settle, inspect.

Per-ticket order: within a stream (one ticket, one channel) an event is handed out only when every
earlier event of the stream is delivered. A dead event therefore holds its stream back until an
operator replays or skips it, so order is never broken silently.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from integration_kit.hot_sql import hot_sql
from integration_kit.schema import Channel, OutboxColumns, OutboxState, TicketColumns


@dataclass(frozen=True)
class ClaimedEvent:
    """A snapshot of an outbox row leased to this dispatcher, with the peer's id of its ticket."""

    id: int
    ticket_id: uuid.UUID
    channel: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    peer_ticket_id: uuid.UUID | None
    webhook_id: uuid.UUID | None = None  # its webhook-id; None only for events built by hand

    @property
    def stream(self) -> tuple[uuid.UUID, str]:
        return (self.ticket_id, self.channel)


# An event the receiver accepted, with what it answered (its ids).
Delivery = tuple[ClaimedEvent, Any]


def enqueue(
    session: AsyncSession,
    model: type[OutboxColumns],
    *,
    ticket_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    channel: Channel = Channel.peer,
) -> OutboxColumns:
    """Add an event to the caller's transaction; the dispatcher is woken once it commits."""
    row = model(**_pending_event(ticket_id, kind, payload, now, channel))
    session.add(row)
    session.info["outbox_written"] = True
    return row


async def enqueue_now(
    session: AsyncSession,
    model: type[OutboxColumns],
    *,
    ticket_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    channel: Channel = Channel.peer,
) -> None:
    """`enqueue` for a hot path: the row is inserted at once, on the driver (hot_sql), instead
    of added to the session for its flush (the unit of work cost more than the insert)."""
    hot = await hot_sql(session)
    await hot.execute(
        _outbox_insert(model.__table__),  # type: ignore[attr-defined]
        _pending_event(ticket_id, kind, payload, now, channel),
    )
    session.info["outbox_written"] = True


def _pending_event(
    ticket_id: uuid.UUID, kind: str, payload: dict[str, Any], now: datetime, channel: Channel
) -> dict[str, Any]:
    """The columns of a new event, due now (one webhook id for all its attempts)."""
    return {
        "webhook_id": uuid.uuid4(),
        "ticket_id": ticket_id,
        "channel": channel,
        "kind": kind,
        "payload": payload,
        "state": OutboxState.pending,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


@functools.cache
def _outbox_insert(table: Table) -> Any:
    return insert(table)


class OutboxRepository:
    """All SQL on one backend's outbox table."""

    def __init__(self, model: type[OutboxColumns], ticket_model: type[TicketColumns]) -> None:
        self.model = model
        self.ticket_model = ticket_model

    def _update(self) -> Any:
        """An UPDATE of the outbox that leaves ORM objects in the session alone: the repository
        reads rows as plain values, and syncing loaded objects was most of a bulk update's cost."""
        return update(self.model).execution_options(synchronize_session=False)

    def _blocked_by_earlier(self) -> Any:
        """An earlier undelivered event of the same stream exists."""
        outbox, earlier = self.model, aliased(self.model)
        return (
            select(earlier.id)
            .where(
                earlier.ticket_id == outbox.ticket_id,
                earlier.channel == outbox.channel,
                earlier.state.in_([OutboxState.pending, OutboxState.dead]),
                earlier.id < outbox.id,
            )
            .exists()
        )

    @staticmethod
    def _lease_free(model: Any, now: datetime) -> Any:
        return or_(model.lease_expires_at.is_(None), model.lease_expires_at < now)

    async def claim(
        self,
        session: AsyncSession,
        *,
        owner: str,
        now: datetime,
        lease_seconds: float,
        limit: int,
        per_stream: int,
        skip_locked: bool,
    ) -> list[ClaimedEvent]:
        """Lease up to `limit` due stream heads and up to `per_stream` events behind each.

        The lease is a row update, so the database lock ends with this transaction: nothing is
        held across the HTTP call, and a crashed owner's lease simply expires.
        """
        outbox = self.model
        until = now + timedelta(seconds=lease_seconds)
        heads = (
            select(outbox.id)
            .where(
                outbox.state == OutboxState.pending,
                outbox.next_attempt_at <= now,
                self._lease_free(outbox, now),
                ~self._blocked_by_earlier(),
            )
            .order_by(outbox.next_attempt_at, outbox.id)
            .limit(limit)
        )
        if skip_locked:
            heads = heads.with_for_update(skip_locked=True)
        head_ids = list((await session.scalars(heads)).all())
        if not head_ids:
            return []
        # The conditional update is the claim: of two workers racing for a row, one gets it back.
        claimed_heads = await self._lease(session, head_ids, owner=owner, now=now, until=until)
        table = self.model.__table__  # type: ignore[attr-defined]
        # Plain rows, not ORM objects: a round claims thousands.
        rows = list(
            (await session.execute(select(table).where(table.c.id.in_(claimed_heads)))).all()
        )
        if per_stream > 1:
            rows += await self._claim_followers(
                session, rows, owner=owner, now=now, until=until, per_stream=per_stream
            )
        peer_ids = await self._peer_ticket_ids(session, {row.ticket_id for row in rows})
        return sorted(
            (
                ClaimedEvent(
                    id=row.id,
                    ticket_id=row.ticket_id,
                    channel=row.channel,
                    kind=row.kind,
                    payload=row.payload,
                    attempts=row.attempts,
                    created_at=row.created_at,
                    peer_ticket_id=peer_ids.get(row.ticket_id),
                    webhook_id=row.webhook_id,
                )
                for row in rows
            ),
            key=lambda event: event.id,
        )

    async def _lease(
        self,
        session: AsyncSession,
        ids: Sequence[int],
        *,
        owner: str,
        now: datetime,
        until: datetime,
    ) -> list[int]:
        outbox = self.model
        result = await session.execute(
            self._update()
            .where(
                outbox.id.in_(ids),
                outbox.state == OutboxState.pending,
                self._lease_free(outbox, now),
            )
            .values(lease_owner=owner, lease_expires_at=until)
            .returning(outbox.id)
        )
        return [row[0] for row in result.all()]

    async def _claim_followers(
        self,
        session: AsyncSession,
        heads: Sequence[Row[Any]],
        *,
        owner: str,
        now: datetime,
        until: datetime,
        per_stream: int,
    ) -> list[Row[Any]]:
        """The events right behind each head, so one round can send several per ticket in order."""
        outbox = self.model.__table__  # type: ignore[attr-defined]
        head_of = {(row.ticket_id, row.channel): row.id for row in heads}
        candidates = (
            await session.execute(
                select(outbox)
                .where(
                    outbox.c.ticket_id.in_({ticket for ticket, _ in head_of}),
                    outbox.c.state.in_([OutboxState.pending, OutboxState.dead]),
                )
                .order_by(outbox.c.id)
            )
        ).all()
        wanted: list[Row[Any]] = []
        taken: dict[tuple[uuid.UUID, str], int] = {}
        stopped: set[tuple[uuid.UUID, str]] = set()
        for row in candidates:
            stream = (row.ticket_id, row.channel)
            if stream not in head_of or row.id <= head_of[stream] or stream in stopped:
                continue
            usable = (
                row.state == OutboxState.pending
                and row.next_attempt_at <= now
                and (row.lease_expires_at is None or row.lease_expires_at < now)
                and taken.get(stream, 1) < per_stream
            )
            if not usable:
                stopped.add(stream)  # a gap: nothing behind it may go before it
                continue
            taken[stream] = taken.get(stream, 1) + 1
            wanted.append(row)
        if not wanted:
            return []
        leased = set(
            await self._lease(
                session, [row.id for row in wanted], owner=owner, now=now, until=until
            )
        )
        # Keep each stream's run only up to the first row another worker took meanwhile.
        kept: list[Row[Any]] = []
        broken: set[tuple[uuid.UUID, str]] = set()
        release: list[int] = []
        for row in wanted:
            stream = (row.ticket_id, row.channel)
            if stream in broken or row.id not in leased:
                broken.add(stream)
                if row.id in leased:
                    release.append(row.id)
                continue
            kept.append(row)
        if release:
            await self.release(session, release, owner=owner)
        return kept

    async def _peer_ticket_ids(
        self, session: AsyncSession, ticket_ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, uuid.UUID | None]:
        ticket = self.ticket_model
        rows = await session.execute(
            select(ticket.id, ticket.external_id).where(ticket.id.in_(ticket_ids))
        )
        return {row[0]: row[1] for row in rows.all()}

    async def renew(
        self, session: AsyncSession, ids: Sequence[int], *, owner: str, until: datetime
    ) -> None:
        """Extend the leases this owner still holds on pending events (a round still running)."""
        if not ids:
            return
        outbox = self.model
        await session.execute(
            self._update()
            .where(
                outbox.id.in_(ids),
                outbox.lease_owner == owner,
                outbox.state == OutboxState.pending,
            )
            .values(lease_expires_at=until)
        )

    async def release(self, session: AsyncSession, ids: Sequence[int], *, owner: str) -> None:
        """Give back leases without an attempt (shutdown, or behind a failed event)."""
        if not ids:
            return
        outbox = self.model
        await session.execute(
            self._update()
            .where(outbox.id.in_(ids), outbox.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )

    async def mark_delivered(
        self, session: AsyncSession, ids: Sequence[int], *, now: datetime
    ) -> None:
        if not ids:
            return
        outbox = self.model
        await session.execute(
            self._update()
            .where(outbox.id.in_(ids))
            .values(
                state=OutboxState.delivered,
                delivered_at=now,
                lease_owner=None,
                lease_expires_at=None,
                last_failure=None,
                attempts=outbox.attempts + 1,
            )
        )

    async def mark_retry(
        self,
        session: AsyncSession,
        event_id: int,
        *,
        next_attempt_at: datetime,
        failure: str,
        error: str,
    ) -> None:
        outbox = self.model
        await session.execute(
            self._update()
            .where(outbox.id == event_id)
            .values(
                attempts=outbox.attempts + 1,
                next_attempt_at=next_attempt_at,
                last_failure=failure,
                last_error=error[:2000],
                lease_owner=None,
                lease_expires_at=None,
            )
        )

    async def mark_dead(self, session: AsyncSession, event_id: int, *, error: str) -> None:
        outbox = self.model
        await session.execute(
            self._update()
            .where(outbox.id == event_id)
            .values(
                state=OutboxState.dead,
                attempts=outbox.attempts + 1,
                last_error=error[:2000],
                lease_owner=None,
                lease_expires_at=None,
            )
        )

    async def mark_dropped(
        self, session: AsyncSession, event_id: int, *, now: datetime, note: str
    ) -> None:
        outbox = self.model
        await session.execute(
            self._update()
            .where(outbox.id == event_id)
            .values(
                state=OutboxState.skipped,
                attempts=outbox.attempts + 1,
                delivered_at=now,
                last_error=note[:2000],
                resolution=f"dropped: {note}"[:2000],
                lease_owner=None,
                lease_expires_at=None,
            )
        )

    async def wake_unavailable(self, session: AsyncSession, *, channel: str, now: datetime) -> int:
        """Make events waiting out a backoff for an unreachable peer due now: it answers again."""
        outbox = self.model
        result = await session.execute(
            self._update()
            .where(
                outbox.state == OutboxState.pending,
                outbox.channel == channel,
                outbox.next_attempt_at > now,
                outbox.last_failure == "unavailable",
            )
            .values(next_attempt_at=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    # --- operator actions and inspection -------------------------------------------------

    async def list_events(
        self, session: AsyncSession, *, states: Sequence[str], limit: int = 100
    ) -> list[OutboxColumns]:
        outbox = self.model
        rows = await session.scalars(
            select(outbox).where(outbox.state.in_(states)).order_by(outbox.id).limit(limit)
        )
        return list(rows.all())

    async def get(self, session: AsyncSession, event_id: int) -> OutboxColumns | None:
        return await session.get(self.model, event_id)

    async def replay(
        self, session: AsyncSession, event_id: int, *, now: datetime, note: str
    ) -> bool:
        """Put a dead event back in line, due now; the action is recorded on the row."""
        outbox = self.model
        result = await session.execute(
            self._update()
            .where(outbox.id == event_id, outbox.state == OutboxState.dead)
            .values(
                state=OutboxState.pending,
                next_attempt_at=now,
                created_at=now,
                resolution=func.coalesce(outbox.resolution, "") + note,
            )
        )
        return bool(getattr(result, "rowcount", 0))

    async def skip(self, session: AsyncSession, event_id: int, *, now: datetime, note: str) -> bool:
        """Give up on a dead event on purpose, releasing the events behind it; recorded."""
        outbox = self.model
        result = await session.execute(
            self._update()
            .where(outbox.id == event_id, outbox.state == OutboxState.dead)
            .values(
                state=OutboxState.skipped,
                delivered_at=now,
                resolution=func.coalesce(outbox.resolution, "") + note,
            )
        )
        return bool(getattr(result, "rowcount", 0))

    async def stats(self, session: AsyncSession, *, now: datetime) -> dict[str, float]:
        """Counts by state and the age in seconds of the oldest pending event."""
        outbox = self.model
        counts = dict(
            (await session.execute(select(outbox.state, func.count()).group_by(outbox.state))).all()
        )
        oldest = await session.scalar(
            select(func.min(outbox.created_at)).where(outbox.state == OutboxState.pending)
        )
        return {
            "pending": float(counts.get(OutboxState.pending, 0)),
            "delivered": float(counts.get(OutboxState.delivered, 0)),
            "dead": float(counts.get(OutboxState.dead, 0)),
            "skipped": float(counts.get(OutboxState.skipped, 0)),
            "oldest_pending_age_seconds": (now - oldest).total_seconds() if oldest else 0.0,
        }

    async def purge_delivered(self, session: AsyncSession, *, older_than: datetime) -> int:
        """Delete delivered (or skipped) events past the retention; never pending or dead ones."""
        outbox = self.model
        result = await session.execute(
            delete(outbox).where(
                and_(
                    outbox.state.in_([OutboxState.delivered, OutboxState.skipped]),
                    outbox.delivered_at < older_than,
                )
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)
