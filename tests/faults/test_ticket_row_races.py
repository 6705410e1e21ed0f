"""With several API processes on PostgreSQL, a local write to a ticket (the user writing, an
operator replying or changing the status) and a change arriving from the peer for the same
ticket never overwrite each other: the local write reads the ticket under a row lock.

Found by the fault harness with two API processes per side: the TMA showed a ticket `open`
that the CRM showed `in_progress`, both with the same change time. The user's message had read
the ticket while it was still closed, and its reopening overwrote the operator's status change
that another process had applied in between.

Also here: the same ticket or message arriving twice at the same moment in two processes (a
sender's retry racing its first attempt) is stored once.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from crm_impl.integration.service import receive_ticket
from crm_impl.tables import ChangeLog as CrmChangeLog
from crm_impl.tables import Message as CrmMessage
from crm_impl.tables import Ticket as CrmTicket
from generated.models import (
    CreateTicketRequest,
    Customer,
    MessageRequest,
    SenderType,
    StatusRequest,
    TicketStatus,
)
from integration_kit.inbound import receive_message, receive_status
from tests.support.pair import Pair
from tma_impl.tables import ChangeLog, Message, Ticket

BOUND = 10  # only bounds a failing test


async def test_a_user_message_does_not_undo_a_status_change_applied_meanwhile(pair: Pair) -> None:
    """The CRM's `in_progress` is being applied when the user writes on the closed ticket: the
    message waits for it, and the ticket stays `in_progress`, as in the CRM."""
    if not pair.tma_runtime.db.url.startswith("postgresql"):
        pytest.skip("SQLite runs one write transaction at a time; the race needs PostgreSQL")
    ticket = await pair.open_ticket()
    await pair.sync()
    closed = await pair.tma.post(
        f"/api/support/tickets/{ticket['id']}/status",
        json={"status": "closed"},
        headers=pair.user_headers(),
    )
    assert closed.status_code == 200, closed.text
    await pair.sync()
    crm_ticket = await pair.crm_ticket_for(ticket["id"])
    changed_at = pair.clock.now() + timedelta(seconds=1)
    pair.clock.advance(2)  # the user writes after the operator's change

    db = pair.tma_runtime.db
    async with db.transaction() as applying:
        # Another API process applies the CRM's change and has not committed yet.
        await receive_status(
            applying,
            request=StatusRequest(
                external_ticket_id=uuid.UUID(crm_ticket["id"]),
                ticket_id=uuid.UUID(ticket["id"]),
                status=TicketStatus.in_progress,
                changed_at=changed_at,
            ),
            ticket_model=Ticket,
            change_log=ChangeLog,
            message_model=Message,
        )
        writing = asyncio.create_task(pair.user_writes(ticket["id"], "Still broken."))
        async with asyncio.timeout(BOUND):
            await _until_a_transaction_waits_for_a_lock(pair)
    async with asyncio.timeout(BOUND):
        await writing

    async with db.sessions() as session:
        stored = await session.get(Ticket, uuid.UUID(ticket["id"]))
    assert stored is not None
    assert (stored.status, stored.status_changed_at) == ("in_progress", changed_at)


async def _until_a_transaction_waits_for_a_lock(pair: Pair) -> None:
    """PostgreSQL's own view is the hook: the user's request is blocked behind the change."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while True:
        async with pair.tma_runtime.db.engine.connect() as connection:
            if await connection.scalar(query):
                return
        await asyncio.sleep(0.01)


async def test_the_same_ticket_and_message_arriving_twice_at_once_are_stored_once(
    pair: Pair,
) -> None:
    """Two API processes receive the same createTicket and then the same postMessage at the same
    moment (a sender's retry racing its first attempt): one stores, the other answers as a replay
    with the same ids, and nothing is stored twice."""
    runtime = pair.crm_runtime
    now = pair.clock.now()
    ticket = CreateTicketRequest(
        external_ticket_id=uuid.uuid4(),
        subject="Twice at once",
        message="first",
        external_message_id=uuid.uuid4(),
        created_at=now,
        customer=Customer(telegram_user_id=77, first_name="Anna"),
    )
    message = MessageRequest(
        external_ticket_id=ticket.external_ticket_id,
        external_message_id=uuid.uuid4(),
        sender=SenderType.tma,
        message="second",
        created_at=now,
    )

    async def create() -> tuple[uuid.UUID, bool]:
        async with runtime.db.transaction() as session:
            answer, created = await receive_ticket(session, request=ticket, clock=pair.clock)
            await asyncio.sleep(0.05)  # hold the transaction open while the other one runs
            return answer.ticket_id, created

    async def post() -> tuple[uuid.UUID, bool]:
        async with runtime.db.transaction() as session:
            answer, _, _, created = await receive_message(
                session,
                request=message,
                caller=SenderType.tma,
                ticket_model=CrmTicket,
                message_model=CrmMessage,
                change_log=CrmChangeLog,
            )
            await asyncio.sleep(0.05)
            return answer.message_id, created

    for attempt in (create, post):
        (first_id, first_new), (second_id, second_new) = await asyncio.wait_for(
            asyncio.gather(attempt(), attempt()), BOUND
        )
        assert first_id == second_id
        assert sorted([first_new, second_new]) == [False, True]
    async with runtime.db.sessions() as session:
        tickets = await session.scalar(
            text("SELECT count(*) FROM tickets WHERE external_id = :e"),
            {
                "e": ticket.external_ticket_id.hex
                if runtime.db.is_sqlite
                else ticket.external_ticket_id
            },
        )
        messages = await session.scalar(
            text("SELECT count(*) FROM messages WHERE body IN ('first', 'second')")
        )
    assert (tickets, messages) == (1, 2)
