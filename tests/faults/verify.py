"""Reads both databases directly (read-only) and compares them with what the load wrote.

Per-ticket order is the order each side *wrote* its messages (docs/design.md §5: the messages
one side writes in a ticket appear on the other side in the order they were written). Two people
writing at the same moment on two systems have no single true order, so the interleaving of the
user's and the operator's messages may differ between the sides; each writer's sequence may not.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from crm_impl import tables as crm_tables
from integration_kit.db import async_url
from integration_kit.schema import OutboxState
from tests.faults.load import TicketRecord
from tma_impl import tables as tma_tables

KILL_SLACK_SECONDS = 0.5
# A notification sent up to this long before a backup may still be unacknowledged in the copy
# (a worker settles a whole round after sending it), so the restored copy sends it again.
ROUND_SLACK_SECONDS = 10.0
MessageRow = tuple[int, uuid.UUID, uuid.UUID, uuid.UUID | None, str]


@dataclass
class SideData:
    """One side's tickets, messages and outbox, as stored."""

    tickets: dict[uuid.UUID, tuple[uuid.UUID | None, str, datetime]]
    messages: list[MessageRow]  # (seq, id, ticket_id, external_message_id, sender_type)
    outbox: list[
        tuple[int, str, str, str, int, bool]
    ]  # id, kind, channel, state, attempts, replayed
    restored_replies: int = 0  # operator replies reconcile took back after a restore
    reconciled_events: int = 0  # dead events reconcile resolved (the peer had their effect)


@dataclass
class Verdict:
    """The figures of one run and every broken invariant found."""

    messages: int = 0
    tickets: int = 0
    status_changes: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unlinked: int = 0
    status_mismatches: int = 0
    events: dict[str, Counter[str]] = field(default_factory=dict)  # side -> state -> count
    retries: dict[str, int] = field(default_factory=dict)  # side -> failed attempts
    replayed: dict[str, int] = field(default_factory=dict)  # side -> events replayed by hand
    notifications: int = 0  # reply notifications enqueued (one per reply stored in the TMA)
    notifications_sent: int = 0  # sendMessage calls the stand-in Telegram received
    notifications_missing: int = 0  # replies whose user was never notified
    notifications_repeated: int = 0  # extra sends (a worker killed after sending, before ack)
    notifications_unexplained: int = 0  # extra sends with no worker crash to explain them
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


def read_only_engine(url: str) -> AsyncEngine:
    """SQLite opened read-only (and taking no write lock); PostgreSQL as it is."""
    parsed = make_url(async_url(url))
    if parsed.drivername.startswith("sqlite"):
        path = parsed.database or ""
        return create_async_engine(f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true")
    # Pre-ping: a database restored during the run drops every connection to it.
    return create_async_engine(parsed, pool_pre_ping=True)


class Databases:
    """Read-only access to both sides' databases."""

    def __init__(self, tma_url: str, crm_url: str) -> None:
        self.engines: dict[str, AsyncEngine] = {
            "tma": read_only_engine(tma_url),
            "crm": read_only_engine(crm_url),
        }

    async def close(self) -> None:
        for engine in self.engines.values():
            await engine.dispose()

    @staticmethod
    def _tables(side: str) -> Any:
        return tma_tables if side == "tma" else crm_tables

    async def progress(self, side: str) -> tuple[int, Counter[str]]:
        """Cheap: the number of messages and outbox events by state."""
        t = self._tables(side)
        async with self.engines[side].connect() as conn:
            messages = int(await conn.scalar(select(func.count()).select_from(t.Message)) or 0)
            states = Counter(
                {
                    str(state): int(count)
                    for state, count in (
                        await conn.execute(
                            select(t.Outbox.state, func.count()).group_by(t.Outbox.state)
                        )
                    ).all()
                }
            )
        return messages, states

    async def dead_events(self, side: str) -> list[tuple[int, str, dict[str, Any]]]:
        t = self._tables(side)
        async with self.engines[side].connect() as conn:
            rows = await conn.execute(
                select(t.Outbox.id, t.Outbox.kind, t.Outbox.payload).where(
                    t.Outbox.state == OutboxState.dead
                )
            )
            return [(int(r[0]), str(r[1]), dict(r[2])) for r in rows.all()]

    async def load(self, side: str) -> SideData:
        t = self._tables(side)
        async with self.engines[side].connect() as conn:
            tickets = {
                r[0]: (r[1], str(r[2]), r[3])
                for r in (
                    await conn.execute(
                        select(
                            t.Ticket.id,
                            t.Ticket.external_id,
                            t.Ticket.status,
                            t.Ticket.status_changed_at,
                        )
                    )
                ).all()
            }
            messages: list[MessageRow] = [
                (int(r[0]), r[1], r[2], r[3], str(r[4]))
                for r in (
                    await conn.execute(
                        select(
                            t.Message.seq,
                            t.Message.id,
                            t.Message.ticket_id,
                            t.Message.external_message_id,
                            t.Message.sender_type,
                        ).order_by(t.Message.seq)
                    )
                ).all()
            ]
            outbox = [
                (int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), r[5] is not None)
                for r in (
                    await conn.execute(
                        select(
                            t.Outbox.id,
                            t.Outbox.kind,
                            t.Outbox.channel,
                            t.Outbox.state,
                            t.Outbox.attempts,
                            t.Outbox.resolution,
                        )
                    )
                ).all()
            ]
            restored_replies = int(
                await conn.scalar(
                    select(func.count())
                    .select_from(t.Message)
                    .where(t.Message.sender_type == "crm", t.Message.restored_at.is_not(None))
                )
                or 0
            )
            reconciled = int(
                await conn.scalar(
                    select(func.count())
                    .select_from(t.Outbox)
                    .where(
                        t.Outbox.state == OutboxState.skipped,
                        t.Outbox.resolution.contains("resolved by reconcile"),
                    )
                )
                or 0
            )
        return SideData(
            tickets=tickets,
            messages=messages,
            outbox=outbox,
            restored_replies=restored_replies,
            reconciled_events=reconciled,
        )


def _stream(
    messages: list[MessageRow], ticket: uuid.UUID | None, sender: str, *, key: str
) -> list[uuid.UUID | None]:
    """A ticket's messages from one writer in stored order, as own ids or as the sender's ids."""
    return [
        (row[1] if key == "id" else row[3])
        for row in messages
        if row[2] == ticket and row[4] == sender
    ]


def _compare(
    verdict: Verdict,
    where: str,
    expected: list[uuid.UUID],
    stored: list[uuid.UUID | None],
) -> None:
    """Exactly once and in order: the stored sequence must be the written one."""
    counts = Counter(stored)
    written = set(expected)
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    lost = [m for m in expected if m not in counts]
    unknown = [m for m in counts if m not in written]
    verdict.lost += len(lost)
    verdict.duplicated += duplicated + len(unknown)
    if lost:
        verdict.problem(f"{where}: {len(lost)} message(s) missing, e.g. {lost[0]}")
    if duplicated or unknown:
        verdict.problem(f"{where}: {duplicated} duplicate(s), {len(unknown)} unknown message(s)")
    seen: list[uuid.UUID | None] = []
    for item in stored:
        if item not in seen and item in written:
            seen.append(item)
    wanted = [m for m in expected if m in counts]
    misplaced = sum(1 for a, b in zip(seen, wanted, strict=True) if a != b)
    if misplaced:
        verdict.out_of_order += misplaced
        verdict.problem(f"{where}: {misplaced} message(s) out of the written order")


def verify(
    records: list[TicketRecord],
    tma: SideData,
    crm: SideData,
    *,
    notified: dict[str, list[float]],
    tma_worker_kills: list[float],
    tma_restore: tuple[float, float] | None = None,
) -> Verdict:
    """Every invariant of the run; each failure counted and described.

    `notified` holds the times each reply's Telegram notification was sent; a reply notified
    twice is explained only by a TMA worker killed between the first send and the repeat
    (at-least-once: it sent, and died before recording it), or by a restore of the TMA's
    database (`tma_restore`: the copy's and the restore's times) when the first send came after
    the copy was taken, or a round before it: the restored database does not know it was sent.
    Anything else is double delivery.
    """
    verdict = Verdict(
        messages=sum(len(r.user_messages) + len(r.operator_messages) for r in records),
        tickets=len(records),
        status_changes=sum(r.status_changes for r in records),
    )
    if len(tma.tickets) != len(records) or len(crm.tickets) != len(records):
        verdict.problem(
            f"tickets: {len(records)} opened, {len(tma.tickets)} in the TMA, "
            f"{len(crm.tickets)} in the CRM"
        )
    tma_by_id = {row[1]: row for row in tma.messages}
    crm_by_id = {row[1]: row for row in crm.messages}
    for record in records:
        name = f"ticket {record.index}"
        tma_ticket = tma.tickets.get(record.tma_id)
        crm_ticket = crm.tickets.get(record.crm_id) if record.crm_id else None
        if tma_ticket is None or crm_ticket is None:
            verdict.unlinked += 1
            verdict.problem(f"{name}: missing (tma {tma_ticket}, crm {crm_ticket})")
            continue
        if tma_ticket[0] != record.crm_id or crm_ticket[0] != record.tma_id:
            verdict.unlinked += 1
            verdict.problem(f"{name}: ticket ids not linked both ways")
        if tma_ticket[1:] != crm_ticket[1:]:
            verdict.status_mismatches += 1
            verdict.problem(
                f"{name}: status {tma_ticket[1]}@{tma_ticket[2]} in the TMA, "
                f"{crm_ticket[1]}@{crm_ticket[2]} in the CRM"
            )
        # What each side wrote, on its own side and on the other side.
        _compare(
            verdict,
            f"{name} user→TMA",
            record.user_messages,
            _stream(tma.messages, record.tma_id, "tma", key="id"),
        )
        _compare(
            verdict,
            f"{name} user→CRM",
            record.user_messages,
            _stream(crm.messages, record.crm_id, "tma", key="external"),
        )
        _compare(
            verdict,
            f"{name} operator→CRM",
            record.operator_messages,
            _stream(crm.messages, record.crm_id, "crm", key="id"),
        )
        _compare(
            verdict,
            f"{name} operator→TMA",
            record.operator_messages,
            _stream(tma.messages, record.tma_id, "crm", key="external"),
        )
    verdict.unlinked += _unlinked_messages(verdict, tma_by_id, crm_by_id)
    for side, data in (("tma", tma), ("crm", crm)):
        states = Counter(row[3] for row in data.outbox)
        verdict.events[side] = states
        verdict.retries[side] = sum(max(row[4] - 1, 0) for row in data.outbox)
        verdict.replayed[side] = sum(1 for row in data.outbox if row[5])
        # Skipped by reconcile (the peer had the event's effect) is a resolution, not a problem.
        states_left = states - Counter({OutboxState.skipped.value: data.reconciled_events})
        for state in (OutboxState.pending, OutboxState.dead, OutboxState.skipped):
            if states_left[state]:
                verdict.problem(f"{side} outbox: {states_left[state]} event(s) {state}")
    # Every operator reply is told to the user exactly once (enqueued with the stored message).
    # A reply taken back by reconcile after a restore had been notified before the restore:
    # its notification row went with the restore, and it is not notified again.
    replies_in_tma = sum(1 for row in tma.messages if row[4] == "crm") - tma.restored_replies
    verdict.notifications = sum(1 for row in tma.outbox if row[1] == "notify_reply")
    if verdict.notifications != replies_in_tma:
        verdict.problem(
            f"{verdict.notifications} reply notifications for {replies_in_tma} operator replies"
        )
    bodies = [body for record in records for body in record.operator_bodies]
    verdict.notifications_sent = sum(len(times) for times in notified.values())
    for body in bodies:
        times = sorted(notified.get(body, []))
        if not times:
            verdict.notifications_missing += 1
            continue
        for repeat in times[1:]:
            verdict.notifications_repeated += 1
            # The first send may be handled here a moment after the kill that followed it.
            restored = tma_restore is not None and (
                tma_restore[0] - ROUND_SLACK_SECONDS <= times[0] <= tma_restore[1] <= repeat
            )
            if restored:
                continue
            if not any(times[0] - KILL_SLACK_SECONDS <= k <= repeat for k in tma_worker_kills):
                verdict.notifications_unexplained += 1
                near = min((abs(kill - times[0]) for kill in tma_worker_kills), default=-1.0)
                verdict.problem(
                    f"{body!r} notified again {repeat - times[0]:.2f} s later "
                    f"(nearest kill {near:.3f} s from the first)"
                )
    if verdict.notifications_missing:
        verdict.problem(f"{verdict.notifications_missing} replies never notified to the user")
    return verdict


def _unlinked_messages(
    verdict: Verdict,
    tma_by_id: dict[uuid.UUID, MessageRow],
    crm_by_id: dict[uuid.UUID, MessageRow],
) -> int:
    """Each message knows the other side's id of it, and that row points back."""
    crm_by_external = {(row[4], row[3]): row for row in crm_by_id.values()}
    tma_by_external = {(row[4], row[3]): row for row in tma_by_id.values()}
    broken = 0
    for own, other_by_external, sender in (
        (tma_by_id, crm_by_external, "tma"),
        (crm_by_id, tma_by_external, "crm"),
    ):
        for row in own.values():
            if row[4] != sender:
                continue
            copy = other_by_external.get((sender, row[1]))
            if copy is None or row[3] != copy[1]:
                broken += 1
                verdict.problem(f"{sender} message {row[1]} is not linked both ways")
    return broken
