"""Server-sent event streams for the console: the queue and one conversation.

The queue stream carries state, not a cursor: it says "the queue changed" (with a fingerprint of
the tables as its event id) and the page fetches the page of the queue it shows. A change can
therefore never be skipped, however late it commits; nothing across tickets needs ordering.

A conversation stream carries the ticket's messages in `seq` order, each with its seq as the
event id, so a reconnecting EventSource resumes after the last one it got (Last-Event-ID):
nothing missed, nothing twice. Within one ticket seq grows in commit order because every message
of a ticket is written under the ticket's row lock (see `crm_impl.operators.queue`). The
ticket's state (status, assignee, each reply's delivery) is sent as `state` events without an id
whenever it changes: state, so a repeat is harmless.

Streams look at the database every `console_poll_seconds`, so changes made by another API
process or a worker show up too. They end after `console_stream_seconds` (the browser reconnects
on its own), so no proxy holds a connection for ever, and at once when the server stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_impl.operators import queue
from crm_impl.operators.auth import still_signed_in
from crm_impl.operators.delivery import delivery_states
from crm_impl.settings import CrmSettings
from crm_impl.tables import Message, ReadMarker, Ticket
from generated.models import SenderType
from integration_kit.narrowing import narrowed
from integration_kit.runtime import runtime_of

BATCH = 200
KEEPALIVE_SECONDS = 15.0


def _event(kind: str, data: Any, event_id: str | int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def resume_point(request: Request, after: int | None) -> int:
    """Last-Event-ID (a reconnect) wins over the `after` the page opened the stream with."""
    header = request.headers.get("last-event-id", "").strip()
    if header.isdigit():
        return int(header)
    return after or 0


async def _queue_fingerprint(session: AsyncSession, operator_id: uuid.UUID) -> str:
    tickets = (
        await session.execute(
            select(
                func.count(),
                func.max(Ticket.updated_at),
                func.count(Ticket.assignee_id),
                func.max(Ticket.status_changed_at),
            )
        )
    ).one()
    by_status = (
        await session.execute(select(Ticket.status, func.count()).group_by(Ticket.status))
    ).all()
    messages = (await session.execute(select(func.count(), func.max(Message.seq)))).one()
    reads = (
        await session.execute(
            select(func.count(), func.sum(ReadMarker.last_read_seq)).where(
                ReadMarker.operator_id == operator_id
            )
        )
    ).one()
    # Assignments are counted per operator so that a ticket moving between two operators shows.
    assignees = (
        await session.execute(select(Ticket.assignee_id, func.count()).group_by(Ticket.assignee_id))
    ).all()
    raw = repr(
        (
            tuple(tickets),
            sorted(map(tuple, by_status)),
            tuple(messages),
            tuple(reads),
            sorted((str(a), n) for a, n in assignees),
        )
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


async def queue_events(request: Request, *, operator_id: uuid.UUID) -> AsyncIterator[str]:
    """`queue` events, one whenever the queue's tables changed since the last one."""
    runtime = runtime_of(request)
    settings = narrowed(runtime.settings, CrmSettings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.console_stream_seconds
    seen = request.headers.get("last-event-id") or None
    yield "retry: 1000\n\n"
    last_sent = loop.time()
    while loop.time() < deadline and not runtime.stopping.is_set():
        if not await still_signed_in(request):
            yield _event("signed-out", {})
            return
        async with runtime.db.sessions() as session:
            fingerprint = await _queue_fingerprint(session, operator_id)
        if fingerprint != seen:
            seen = fingerprint
            yield _event("queue", {"changed": True}, fingerprint)
            last_sent = loop.time()
        elif loop.time() - last_sent > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = loop.time()
        await asyncio.sleep(settings.console_poll_seconds)


async def _ticket_state(
    session: AsyncSession, *, operator_id: uuid.UUID, ticket_id: uuid.UUID
) -> dict[str, Any]:
    item = await queue.queue_item(session, operator_id=operator_id, ticket_id=ticket_id)
    replies = (
        await session.scalars(
            select(Message).where(
                Message.ticket_id == ticket_id, Message.sender_type == SenderType.crm.value
            )
        )
    ).all()
    deliveries = await delivery_states(session, ticket_id=ticket_id, messages=replies)
    return {
        "ticket": item.model_dump(mode="json"),
        "deliveries": {str(k): v.model_dump(mode="json") for k, v in deliveries.items()},
    }


async def conversation_events(
    request: Request, *, operator_id: uuid.UUID, ticket_id: uuid.UUID, after: int
) -> AsyncIterator[str]:
    """`message` events (id = seq) after `after`, and `state` events when the ticket changes."""
    runtime = runtime_of(request)
    settings = narrowed(runtime.settings, CrmSettings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.console_stream_seconds
    state: dict[str, Any] | None = None
    yield "retry: 1000\n\n"
    last_sent = loop.time()
    while loop.time() < deadline and not runtime.stopping.is_set():
        if not await still_signed_in(request):
            yield _event("signed-out", {})
            return
        async with runtime.db.sessions() as session:
            messages = (
                await session.scalars(
                    select(Message)
                    .where(Message.ticket_id == ticket_id, Message.seq > after)
                    .order_by(Message.seq)
                    .limit(BATCH)
                )
            ).all()
            deliveries = await delivery_states(session, ticket_id=ticket_id, messages=messages)
            current = await _ticket_state(session, operator_id=operator_id, ticket_id=ticket_id)
        for message in messages:
            data = queue.conversation_message(message, deliveries).model_dump(mode="json")
            yield _event("message", data, message.seq)
            after = message.seq
            last_sent = loop.time()
        if current != state:
            state = current
            yield _event("state", current)
            last_sent = loop.time()
        elif loop.time() - last_sent > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = loop.time()
        if len(messages) < BATCH:
            await asyncio.sleep(settings.console_poll_seconds)
