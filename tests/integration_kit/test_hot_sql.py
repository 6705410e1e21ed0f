"""Statements run on the driver (integration_kit/hot_sql.py) are part of the session's
transaction, convert values as SQLAlchemy does, fail as SQLAlchemy would, and see what the
session wrote before them; on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, event, func, insert, inspect, select
from sqlalchemy.exc import IntegrityError

from integration_kit.hot_sql import hot_sql, load_object, row_object, row_query
from integration_kit.outbox import enqueue_now
from tests.support.pair import Pair
from tma_impl.tables import Message, Outbox, Ticket

PROBE = "probe"  # the outbox kind these tests write, so their rows are told apart


class Failed(Exception):
    pass


async def probes(pair: Pair) -> int:
    async with pair.tma_runtime.db.transaction() as session:
        return int(await session.scalar(select(func.count()).where(Outbox.kind == PROBE)) or 0)


async def a_ticket(pair: Pair) -> uuid.UUID:
    return uuid.UUID((await pair.open_ticket())["id"])


async def test_a_hot_write_commits_and_rolls_back_with_its_session(pair: Pair) -> None:
    ticket_id = await a_ticket(pair)
    db = pair.tma_runtime.db

    async def write_then_fail() -> None:
        async with db.transaction() as session:
            await enqueue_now(
                session, Outbox, ticket_id=ticket_id, kind=PROBE, payload={}, now=pair.clock.now()
            )
            raise Failed

    with pytest.raises(Failed):
        await write_then_fail()
    assert await probes(pair) == 0
    async with db.transaction() as session:
        await enqueue_now(
            session, Outbox, ticket_id=ticket_id, kind=PROBE, payload={}, now=pair.clock.now()
        )
    assert await probes(pair) == 1


async def test_values_go_in_and_come_out_as_through_sqlalchemy(pair: Pair) -> None:
    ticket_id = await a_ticket(pair)
    now = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    payload: dict[str, Any] = {"text": "привет", "n": [1, 2]}
    db = pair.tma_runtime.db
    async with db.transaction() as session:
        await enqueue_now(
            session, Outbox, ticket_id=ticket_id, kind=PROBE, payload=payload, now=now
        )
    async with db.transaction() as session:
        # Read back through the ORM: what the hot insert stored is what SQLAlchemy would have.
        row = await session.scalar(select(Outbox).where(Outbox.kind == PROBE))
        assert row is not None
        assert (row.ticket_id, row.payload, row.created_at) == (ticket_id, payload, now)
        # And read through the driver: converted the same way (UUID, aware datetime, JSON).
        hot = await hot_sql(session)
        found = await hot.first(
            select(Outbox.ticket_id, Outbox.created_at, Outbox.payload).where(Outbox.id == row.id),
            {},
        )
    assert found == (ticket_id, now, payload)


async def test_a_driver_error_is_sqlalchemys_and_rolls_the_session_back(pair: Pair) -> None:
    ticket_id = await a_ticket(pair)
    db = pair.tma_runtime.db
    async with db.transaction() as session:
        message_id = await session.scalar(select(Message.id).where(Message.ticket_id == ticket_id))
    values = {
        "id": message_id,  # taken: the primary key refuses it
        "ticket_id": ticket_id,
        "sender_type": "tma",
        "body": "again",
        "attachments": [],
        "created_at": pair.clock.now(),
    }

    async def write_then_insert_a_duplicate() -> None:
        async with db.transaction() as session:
            await enqueue_now(
                session, Outbox, ticket_id=ticket_id, kind=PROBE, payload={}, now=pair.clock.now()
            )
            await (await hot_sql(session)).execute(insert(Message.__table__), values)

    with pytest.raises(IntegrityError):
        await write_then_insert_a_duplicate()
    assert await probes(pair) == 0


async def test_objects_added_to_the_session_are_written_before_a_hot_statement(
    pair: Pair,
) -> None:
    user_ticket = await a_ticket(pair)
    db = pair.tma_runtime.db
    now = pair.clock.now()
    async with db.transaction() as session:
        user = await session.scalar(select(Ticket.telegram_user_id).where(Ticket.id == user_ticket))
        ticket = Ticket(
            id=uuid.uuid4(),
            telegram_user_id=user,
            subject="Added, not flushed",
            status="open",
            status_changed_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(ticket)
        # The message refers to the ticket: without the flush its foreign key would refuse it.
        hot = await hot_sql(session)
        await hot.execute(
            insert(Message.__table__),
            {
                "id": uuid.uuid4(),
                "ticket_id": ticket.id,
                "sender_type": "tma",
                "body": "hello",
                "attachments": [],
                "created_at": now,
            },
        )
    async with db.transaction() as session:
        count = await session.scalar(select(func.count()).where(Message.ticket_id == ticket.id))
    assert count == 1


async def test_hot_statements_are_reported_to_statement_listeners(pair: Pair) -> None:
    ticket_id = await a_ticket(pair)
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = pair.tma_runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        async with pair.tma_runtime.db.transaction() as session:
            await enqueue_now(
                session, Outbox, ticket_id=ticket_id, kind=PROBE, payload={}, now=pair.clock.now()
            )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert [s.split()[:3] for s in seen] == [["INSERT", "INTO", "outbox"]]


async def test_a_loaded_object_is_what_the_orm_would_load(pair: Pair) -> None:
    ticket_id = await a_ticket(pair)
    db = pair.tma_runtime.db
    by_id = row_query(Ticket).where(Ticket.id == bindparam("key"))
    async with db.transaction() as session:
        loaded = await load_object(session, Ticket, by_id, {"key": ticket_id})
        assert loaded is not None
        state = inspect(loaded)
        assert state.persistent
        assert not session.dirty
        assert state.identity == (ticket_id,)
        # The ORM's own query finds the same object, as it would one it had loaded itself.
        assert await session.get(Ticket, ticket_id) is loaded
        assert await load_object(session, Ticket, by_id, {"key": ticket_id}) is loaded
        through_orm = await session.execute(
            select(Ticket).where(Ticket.id == ticket_id).execution_options(populate_existing=True)
        )
        assert through_orm.scalar_one() is loaded
        before = loaded.subject
        loaded.subject = "changed through the loaded object"
        assert list(session.dirty) == [loaded]
    # Only the change was flushed, on commit.
    async with db.transaction() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        assert ticket.subject == "changed through the loaded object" != before


async def test_a_loaded_object_changed_in_a_failed_transaction_is_not_written(pair: Pair) -> None:
    ticket_id = await a_ticket(pair)
    db = pair.tma_runtime.db
    by_id = row_query(Ticket).where(Ticket.id == bindparam("key"))
    subject: list[str] = []

    async def change_then_fail() -> None:
        async with db.transaction() as session:
            loaded = await load_object(session, Ticket, by_id, {"key": ticket_id})
            assert loaded is not None
            subject.append(loaded.subject)
            loaded.subject = "never stored"
            await session.flush()
            raise Failed

    with pytest.raises(Failed):
        await change_then_fail()
    async with db.transaction() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        assert [ticket.subject] == subject


def test_a_row_object_holds_its_values_in_no_session() -> None:
    values = {"id": uuid.uuid4(), "body": "hello", "seq": 7}
    message = row_object(Message, values)
    assert isinstance(message, Message)
    assert (message.id, message.body, message.seq) == (values["id"], "hello", 7)
    state = inspect(message)
    assert state.transient
    assert state.session_id is None
