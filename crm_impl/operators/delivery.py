"""Delivery as operators see it: each reply's state, the undelivered events, replay and skip.

A reply is "delivered" when its row holds the Mini App's id for it (`external_message_id`),
which the dispatcher records in the transaction that settles the delivery; that lasts, while
delivered outbox rows are purged after the retention period. Pending and failing come from the
reply's outbox row, which is never purged while undelivered.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_impl.operators.schemas import Delivery, DeliveryState, OutboxEventOut
from crm_impl.tables import Message, Operator, Outbox, Ticket
from generated.models import SenderType
from integration_kit.outbound import MESSAGE
from integration_kit.outbox import OutboxRepository
from integration_kit.problems import CONFLICT, NOT_FOUND, ProblemError
from integration_kit.schema import Channel, OutboxState


def _delivery(row: Outbox | None, blocker: Outbox | None) -> Delivery:
    if row is None:
        # A reply's event is written with it and only purged once delivered (then the reply
        # holds the peer's id) or skipped: with neither, it was skipped and purged since.
        return Delivery(state=DeliveryState.skipped)
    if row.state == OutboxState.skipped:
        return Delivery(
            state=DeliveryState.skipped,
            attempts=row.attempts,
            last_error=row.last_error,
            event_id=row.id,
        )
    dead = row.state == OutboxState.dead
    if not dead and row.last_error is None and blocker is not None:
        # Not tried yet because an earlier event of the ticket fails: order is kept per ticket,
        # so this reply fails with it.
        return Delivery(
            state=DeliveryState.failing,
            attempts=blocker.attempts,
            last_error=blocker.last_error,
            dead=blocker.state == OutboxState.dead,
            event_id=row.id,
            held_back_by=blocker.id,
        )
    failing = dead or row.last_error is not None
    return Delivery(
        state=DeliveryState.failing if failing else DeliveryState.pending,
        attempts=row.attempts,
        last_error=row.last_error,
        dead=dead,
        event_id=row.id,
    )


async def delivery_states(
    session: AsyncSession, *, ticket_id: uuid.UUID, messages: Sequence[Message]
) -> dict[uuid.UUID, Delivery]:
    """The delivery of each operator reply among `messages`, by message id."""
    replies = [m for m in messages if m.sender_type == SenderType.crm.value]
    states = {
        m.id: Delivery(state=DeliveryState.delivered)
        for m in replies
        if m.external_message_id is not None
    }
    waiting = {str(m.id): m.id for m in replies if m.external_message_id is None}
    if not waiting:
        return states
    # Every undelivered event of the ticket, in order: a reply waits behind the earlier ones.
    rows = (
        await session.scalars(
            select(Outbox)
            .where(
                Outbox.ticket_id == ticket_id,
                Outbox.channel == Channel.peer,
                Outbox.state != OutboxState.delivered,
            )
            .order_by(Outbox.id)
        )
    ).all()
    by_message: dict[str, tuple[Outbox, Outbox | None]] = {}
    blocker: Outbox | None = None
    for row in rows:
        if row.kind == MESSAGE:
            by_message[str(row.payload.get("message_id"))] = (row, blocker)
        if blocker is None and (row.state == OutboxState.dead or row.last_error is not None):
            blocker = row if row.state != OutboxState.skipped else None
    for key, message_id in waiting.items():
        event, held_by = by_message.get(key, (None, None))
        states[message_id] = _delivery(event, held_by)
    return states


async def undelivered_events(
    session: AsyncSession, repository: OutboxRepository, *, state: str | None, limit: int
) -> list[OutboxEventOut]:
    """Pending and dead events (or one of the two), oldest first, with their tickets' subjects."""
    states = [state] if state else [OutboxState.pending, OutboxState.dead]
    events = await repository.list_events(session, states=states, limit=limit)
    ticket_ids = {event.ticket_id for event in events}
    subjects: dict[uuid.UUID, str] = {}
    if ticket_ids:
        found = await session.execute(
            select(Ticket.id, Ticket.subject).where(Ticket.id.in_(ticket_ids))
        )
        subjects = {row.id: row.subject for row in found}
    return [
        OutboxEventOut(
            id=e.id,
            ticket_id=e.ticket_id,
            ticket_subject=subjects.get(e.ticket_id),
            kind=e.kind,
            state=e.state,
            attempts=e.attempts,
            created_at=e.created_at,
            next_attempt_at=e.next_attempt_at,
            last_failure=e.last_failure,
            last_error=e.last_error,
            resolution=e.resolution,
        )
        for e in events
    ]


async def _dead_event(session: AsyncSession, repository: OutboxRepository, event_id: int) -> None:
    event = await repository.get(session, event_id)
    if event is None:
        raise ProblemError(404, NOT_FOUND, "Not found", f"No outbox event {event_id}.")
    if event.state != OutboxState.dead:
        raise ProblemError(
            409,
            CONFLICT,
            "Conflict",
            f"Event {event_id} is {event.state}: only dead events can be replayed or skipped.",
        )


def _by(operator: Operator) -> str:
    return f"operator {operator.name} ({operator.id}) in the console"


async def replay(
    session: AsyncSession,
    repository: OutboxRepository,
    *,
    event_id: int,
    operator: Operator,
    now: datetime,
) -> None:
    """Put a dead event back in line, as `outbox replay` does; recorded with who did it."""
    await _dead_event(session, repository, event_id)
    note = f"[{now.isoformat()}] replayed by {_by(operator)}\n"
    if not await repository.replay(session, event_id, now=now, note=note):
        raise ProblemError(409, CONFLICT, "Conflict", f"Event {event_id} is no longer dead.")


async def skip(
    session: AsyncSession,
    repository: OutboxRepository,
    *,
    event_id: int,
    operator: Operator,
    reason: str,
    now: datetime,
) -> None:
    """Give up on a dead event, as `outbox skip` does; recorded with the reason and who."""
    await _dead_event(session, repository, event_id)
    note = f"[{now.isoformat()}] skipped by {_by(operator)}: {reason.strip()}\n"
    if not await repository.skip(session, event_id, now=now, note=note):
        raise ProblemError(409, CONFLICT, "Conflict", f"Event {event_id} is no longer dead.")
