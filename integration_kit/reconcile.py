"""`reconcile`: read the peer's change feed, compare with what is held here, repair.

See docs/design.md §10.

The peer's records are applied by the live receiving rules themselves (`receive_message`,
`receive_status`, and on the CRM `createTicket`'s rule), so a repair is exactly what live
delivery would have stored, and running it twice, or beside live traffic, stores nothing twice.
Only this side's own records, lost by a restore from a backup and known from the peer's copies,
take another path: live rules refuse them (`sender` must be the caller, `createTicket` is the
CRM's), so they are taken back here, marked `restored_at`.

A dry run does the same work in a transaction that is rolled back, so it reports exactly the
differences a real run would repair.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from generated.client.models import ChangePage as ClientChangePage
from generated.client.models import Problem as ClientProblem
from generated.client.types import UNSET, Response
from generated.models import (
    ChangeItem,
    ChangePage,
    CreateTicketRequest,
    MessageRequest,
    SenderType,
    StatusRequest,
)
from integration_kit import changelog
from integration_kit.changelog import PEER_CURSOR, log_change
from integration_kit.feed import FeedTables
from integration_kit.inbound import (
    insert_unless_stored,
    receive_message,
    receive_status,
    status_after_customer_message,
    update_ticket,
)
from integration_kit.outbound import MESSAGE, STATUS
from integration_kit.outbox import OutboxRepository
from integration_kit.problems import CURSOR_EPOCH_CHANGED, ProblemError
from integration_kit.runtime import Runtime
from integration_kit.schema import ChangeKind, Channel, OutboxState, TicketColumns
from integration_kit.ticket_fields import wins

PAGE = 500
TICKET_CREATED = "ticket_created"  # the TMA's event kind for createTicket

ListChanges = Callable[..., Awaitable[Response[Any]]]
# Creates, from the peer's copy, a ticket this side does not hold; None when it cannot.
AdoptTicket = Callable[[AsyncSession, ChangeItem, datetime], Awaitable[TicketColumns | None]]
# Runs after a peer's message was stored by reconcile and had never reached this side before.
OnNewMessage = Callable[[AsyncSession, TicketColumns, Any, datetime], Awaitable[None]]


class ReconcileError(Exception):
    """The peer's feed could not be read; printed as one line."""


@dataclass(frozen=True)
class ReconcileSide:
    """What differs between the sides: who they are, their tables, their peer's feed."""

    side: SenderType
    feed: FeedTables
    outbox: OutboxRepository
    list_changes: ListChanges
    adopt_ticket: AdoptTicket
    message_columns: Callable[[MessageRequest], dict[str, Any]]
    on_new_message: OnNewMessage | None = None

    @property
    def peer(self) -> SenderType:
        return SenderType.crm if self.side is SenderType.tma else SenderType.tma


@dataclass
class Summary:
    """Differences found (dry run) or repaired, by kind."""

    counts: Counter[str] = field(default_factory=Counter)
    items_read: int = 0
    restarted: bool = False
    lines: list[str] = field(default_factory=list)

    def note(self, kind: str, line: str) -> None:
        self.counts[kind] += 1
        self.lines.append(f"{kind}: {line}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def render(self, *, dry_run: bool) -> str:
        verb = "differences found" if dry_run else "repaired"
        parts = ", ".join(f"{kind} {count}" for kind, count in sorted(self.counts.items()))
        head = f"{self.items_read} change(s) read; {verb}: {self.total}"
        return (
            head
            + (f" ({parts})" if parts else "")
            + (
                "; the peer's feed was read from its start (its epoch changed)"
                if self.restarted
                else ""
            )
        )


@dataclass
class _Seen:
    """What the peer's feed showed, for settling dead events afterwards."""

    status_at: dict[uuid.UUID, datetime] = field(default_factory=dict)


async def reconcile(
    runtime: Runtime,
    side: ReconcileSide,
    *,
    full: bool = False,
    since: datetime | None = None,
    dry_run: bool = False,
    page_size: int = PAGE,
) -> Summary:
    """Read the peer's feed (from the saved cursor, or all of it) and repair what differs.

    A run commits page by page; a dry run does all its work in one transaction that it rolls
    back, so a ticket it would create on one page is there for the messages of the next.
    """
    summary, seen = Summary(), _Seen()
    cursor: str | None = None
    if not full and since is None:
        async with runtime.db.transaction() as session:
            cursor = await changelog.read_state(session, side.feed.state, PEER_CURSOR)
    async with contextlib.AsyncExitStack() as stack:
        rehearsal = await stack.enter_async_context(runtime.db.sessions()) if dry_run else None
        if rehearsal is not None:
            stack.push_async_callback(rehearsal.rollback)

        async def in_transaction(work: Callable[[AsyncSession], Awaitable[None]]) -> None:
            if rehearsal is not None:
                await work(rehearsal)
                return
            async with runtime.db.transaction() as session:
                await work(session)

        while True:
            page = await _read_page(runtime, side, cursor, page_size)
            if page is None:  # the peer's epoch changed: everything again, from its start
                if cursor is None:
                    raise ReconcileError("the peer refused to read its feed from the start")
                summary.restarted, cursor = True, None
                continue
            summary.items_read += len(page.items)
            await in_transaction(_page_work(runtime, side, page, summary, seen, since))
            cursor = page.next_cursor
            if not page.has_more:
                break
        await in_transaction(lambda session: _settle_dead(session, runtime, side, summary, seen))
    return summary


def _page_work(
    runtime: Runtime,
    side: ReconcileSide,
    page: ChangePage,
    summary: Summary,
    seen: _Seen,
    since: datetime | None,
) -> Callable[[AsyncSession], Awaitable[None]]:
    async def work(session: AsyncSession) -> None:
        await _apply_page(session, runtime, side, page, summary, seen, since)

    return work


async def _read_page(
    runtime: Runtime, side: ReconcileSide, cursor: str | None, page_size: int
) -> ChangePage | None:
    response = await side.list_changes(
        client=runtime.peer, after=cursor if cursor is not None else UNSET, limit=page_size
    )
    if response.status_code == 200 and isinstance(response.parsed, ClientChangePage):
        return ChangePage.model_validate_json(response.content)
    if isinstance(response.parsed, ClientProblem) and response.parsed.type_ == CURSOR_EPOCH_CHANGED:
        return None
    detail = response.content.decode("utf-8", "replace")[:200]
    raise ReconcileError(f"the peer answered {response.status_code} to listChanges: {detail}")


async def _apply_page(
    session: AsyncSession,
    runtime: Runtime,
    side: ReconcileSide,
    page: ChangePage,
    summary: Summary,
    seen: _Seen,
    since: datetime | None,
) -> None:
    now = runtime.clock.now()
    for item in page.items:
        if since is not None and _item_time(item) < since:
            continue
        try:
            if item.ticket is not None:
                await _ticket(session, side, item, item.ticket, summary, now)
            elif item.message is not None:
                await _message(session, side, item, item.message, summary, now)
            elif item.status is not None:
                await _status(session, side, item.status, summary, seen)
        except ProblemError as exc:
            # A record the live rules refuse (a contradicting link): reported, never forced.
            summary.note("refused", f"{item.kind.value} at {item.position}: {exc.problem.detail}")
    await changelog.write_state(session, side.feed.state, PEER_CURSOR, page.next_cursor, now=now)


def _item_time(item: ChangeItem) -> datetime:
    if item.ticket is not None:
        return item.ticket.created_at
    if item.message is not None:
        return item.message.created_at
    if item.status is None:
        raise TypeError("a change item with no ticket, message or status")
    return item.status.changed_at


async def _find_ticket(
    session: AsyncSession, side: ReconcileSide, *, ours: uuid.UUID | None, theirs: uuid.UUID
) -> TicketColumns | None:
    model = side.feed.ticket
    clauses = [model.external_id == theirs]
    if ours is not None:
        clauses.append(model.id == ours)
    found = (await session.scalars(select(model).where(or_(*clauses)))).all()
    return found[0] if len(found) == 1 else None


async def _record_link(
    session: AsyncSession,
    side: ReconcileSide,
    ticket: TicketColumns,
    theirs: uuid.UUID,
    summary: Summary,
) -> None:
    if ticket.external_id is None:
        table = side.feed.ticket.__table__  # type: ignore[attr-defined]
        await session.execute(
            update(table).where(table.c.id == ticket.id).values(external_id=theirs)
        )
        ticket.external_id = theirs
        summary.note("link", f"ticket {ticket.id} is {theirs} on the peer")


async def _ticket(
    session: AsyncSession,
    side: ReconcileSide,
    item: ChangeItem,
    request: CreateTicketRequest,
    summary: Summary,
    now: datetime,
) -> None:
    theirs = request.external_ticket_id
    ticket = await _find_ticket(session, side, ours=item.peer_ticket_id, theirs=theirs)
    if ticket is None:
        adopted = await side.adopt_ticket(session, item, now)
        if adopted is not None:
            kind = "ticket_restored" if adopted.restored_at is not None else "ticket"
            summary.note(kind, f"{adopted.id} (peer's {theirs})")
        return
    await _record_link(session, side, ticket, theirs, summary)
    # The first message's link, when its answer was lost.
    if item.peer_message_id is not None:
        await _record_message_link(
            session, side, item.peer_message_id, request.external_message_id, summary
        )


async def _record_message_link(
    session: AsyncSession,
    side: ReconcileSide,
    ours: uuid.UUID,
    theirs: uuid.UUID,
    summary: Summary,
) -> bool:
    """Store the peer's id of our message where missing; False when we do not hold it."""
    model = side.feed.message
    stored = (
        await session.execute(select(model.external_message_id).where(model.id == ours))
    ).first()
    if stored is None:
        return False
    if stored[0] is None:
        table = model.__table__  # type: ignore[attr-defined]
        await session.execute(
            update(table).where(table.c.id == ours).values(external_message_id=theirs)
        )
        summary.note("message_link", f"message {ours} is {theirs} on the peer")
    return True


async def _message(
    session: AsyncSession,
    side: ReconcileSide,
    item: ChangeItem,
    request: MessageRequest,
    summary: Summary,
    now: datetime,
) -> None:
    ticket = await _find_ticket(
        session, side, ours=request.ticket_id, theirs=request.external_ticket_id
    )
    if ticket is None:
        summary.note("ticket_unknown", f"message {request.external_message_id}: no ticket here")
        return
    await _record_link(session, side, ticket, request.external_ticket_id, summary)
    if request.sender is side.side:
        # Our own message: the peer holds a copy (and its id of it is ours, peer_message_id).
        if item.peer_message_id is None:
            return
        if await _record_message_link(
            session, side, item.peer_message_id, request.external_message_id, summary
        ):
            return
        await _restore_own_message(session, side, ticket, item.peer_message_id, request, now)
        summary.note("message_restored", f"{item.peer_message_id} in ticket {ticket.id}")
        return
    model = side.feed.message
    held = await session.scalar(
        select(model.id).where(
            model.sender_type == request.sender.value,
            model.external_message_id == request.external_message_id,
        )
    )
    if held is not None:
        return
    # The peer's message, by the live rule (a concurrent live delivery stores it only once).
    extra = side.message_columns(request)
    if item.peer_message_id is not None:
        # We had stored it once (the peer knows our id): a restore lost it; keep the same id.
        extra = {**extra, "id": item.peer_message_id, "restored_at": now}
    _answer, message, stored_ticket, created = await receive_message(
        session,
        request=request,
        caller=side.peer,
        ticket_model=side.feed.ticket,
        message_model=side.feed.message,
        change_log=side.feed.log,
        extra=extra,
    )
    if not created:
        return
    if item.peer_message_id is not None:
        summary.note("message_restored", f"{message.id} in ticket {stored_ticket.id}")
        return
    summary.note("message", f"{message.id} in ticket {stored_ticket.id}")
    if side.on_new_message is not None:
        # Never stored here before, so never notified: told once, in this transaction.
        await side.on_new_message(session, stored_ticket, message, now)
        summary.counts["notified"] += 1


async def _restore_own_message(
    session: AsyncSession,
    side: ReconcileSide,
    ticket: TicketColumns,
    message_id: uuid.UUID,
    request: MessageRequest,
    now: datetime,
) -> None:
    values: dict[str, Any] = {
        "id": message_id,
        "ticket_id": ticket.id,
        "external_message_id": request.external_message_id,
        "sender_type": side.side.value,
        "body": request.message,
        "attachments": [
            a.model_dump(mode="json", exclude_none=True) for a in request.attachments or []
        ],
        "created_at": request.created_at,
        "restored_at": now,
        **side.message_columns(request),
    }
    model = side.feed.message
    statement = insert_unless_stored(session, model, key=("id",), returning="seq")
    if await session.scalar(statement, values) is None:
        return
    await log_change(
        session, side.feed.log, kind=ChangeKind.message, ticket_id=ticket.id, message_id=message_id
    )
    # The rules a stored message brings, as on receipt: a customer's message after a close
    # reopens the ticket (a close taken back earlier in the feed must not stay in force).
    changes: dict[str, Any] = {}
    if request.sender is SenderType.tma:
        status = status_after_customer_message(ticket, at=request.created_at)
        if status != ticket.status:
            changes["status"] = status
    if request.created_at > ticket.updated_at:
        changes["updated_at"] = request.created_at
    await update_ticket(session, ticket, changes)


async def _status(
    session: AsyncSession,
    side: ReconcileSide,
    request: StatusRequest,
    summary: Summary,
    seen: _Seen,
) -> None:
    ticket = await _find_ticket(
        session, side, ours=request.ticket_id, theirs=request.external_ticket_id
    )
    if ticket is None:
        summary.note("ticket_unknown", f"status of {request.external_ticket_id}: no ticket here")
        return
    await _record_link(session, side, ticket, request.external_ticket_id, summary)
    # The newest status change the peer holds, by the same rule as applying one.
    if wins(request.changed_at, over=seen.status_at.get(ticket.id)):
        seen.status_at[ticket.id] = request.changed_at
    # Last writer wins, by the live rule (an older or equal change is ignored).
    answer = await receive_status(
        session,
        request=request,
        ticket_model=side.feed.ticket,
        message_model=side.feed.message,
        change_log=side.feed.log,
    )
    if answer.applied:
        summary.note("status", f"ticket {ticket.id} {request.status.value} at {request.changed_at}")


async def _settle_dead(
    session: AsyncSession, runtime: Runtime, side: ReconcileSide, summary: Summary, seen: _Seen
) -> None:
    """Dead events whose effect the peer already has are resolved (recorded), releasing the
    events of their ticket behind them."""
    now = runtime.clock.now()
    dead = [
        event
        for event in await side.outbox.list_events(session, states=[OutboxState.dead], limit=10_000)
        if event.channel == Channel.peer
    ]
    for event in dead:
        if not await _peer_has(session, side, event.kind, event.ticket_id, event.payload, seen):
            continue
        await side.outbox.skip(
            session,
            event.id,
            now=now,
            note=f"[{now.isoformat()}] resolved by reconcile: the peer has its effect\n",
        )
        summary.note(
            "dead_resolved", f"event {event.id} ({event.kind}) of ticket {event.ticket_id}"
        )


async def _peer_has(
    session: AsyncSession,
    side: ReconcileSide,
    kind: str,
    ticket_id: uuid.UUID,
    payload: dict[str, Any],
    seen: _Seen,
) -> bool:
    if kind in (MESSAGE, TICKET_CREATED):
        # The peer's id of our message is known once it stored it (delivery or reconcile).
        message_id = uuid.UUID(payload["message_id"])
        model = side.feed.message
        theirs = await session.scalar(
            select(model.external_message_id).where(model.id == message_id)
        )
        if kind == TICKET_CREATED:
            linked = await session.scalar(
                select(side.feed.ticket.external_id).where(side.feed.ticket.id == ticket_id)
            )
            return theirs is not None and linked is not None
        return theirs is not None
    if kind == STATUS:
        changed_at = StatusRequest.model_validate(payload["request"]).changed_at
        # The peer has its effect when this change would lose to what the peer holds: the
        # event, delivered now, would be acknowledged and ignored there.
        at = seen.status_at.get(ticket_id)
        return at is not None and not wins(changed_at, over=at)
    return False
