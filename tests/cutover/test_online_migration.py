"""PostgreSQL's online conversion: the copy is made while the old system writes, and what it
writes meanwhile (new rows, updates, deletes) is in the new model after the final step, as if
the whole conversion had run at once; a bad row written meanwhile is refused by the final step,
which leaves the old tables as they were."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from crm_impl import tables as crm
from integration_kit.db import async_url
from integration_kit.legacy import LegacyRefused, migrate, prepare, state_of
from tests.cutover.legacy_data import (
    SIDES,
    T0,
    history,
    legacy_database,
    messages_table,
    seed,
    tickets_table,
)
from tests.cutover.test_legacy_migration import _query
from tma_impl import tables as tma
from tma_impl.legacy import message_uuid

pytestmark = pytest.mark.parametrize("db_kind", ["postgresql"])


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    from tests.support.databases import POSTGRES_URL

    if not POSTGRES_URL:
        pytest.skip("the online conversion is PostgreSQL's")


async def _write(url: str, *statements: Any) -> None:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(statement)
    finally:
        await engine.dispose()


async def test_tma_writes_during_the_copy_arrive(db_kind: str, tmp_path: Path) -> None:
    tickets = history(3)
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        await seed(tma_url, crm_url, tickets)
        side = SIDES["tma"]
        assert await asyncio.to_thread(prepare, tma_url, side) is True
        assert await asyncio.to_thread(state_of, tma_url, side) == "legacy"
        # The old TMA keeps working: a new ticket of a new user with a message, a reply edited,
        # a message deleted, a status changed.
        opened = uuid.uuid4()
        old_tickets, old_messages = tickets_table("tma"), messages_table("tma")
        await _write(
            tma_url,
            insert(old_tickets).values(
                id=opened,
                theme="New one",
                status="open",
                project=None,
                external_url=None,
                created_at=T0,
                updated_at=T0,
                user_id=4242,
            ),
            insert(old_messages).values(
                ticket_id=opened, sender="local", message="Hello?", attachments=[], created_at=T0
            ),
            update(old_messages).where(old_messages.c.id == 2).values(message="Edited"),
            delete(old_messages).where(old_messages.c.id == 3),
            update(old_tickets).where(old_tickets.c.id == tickets[1].id).values(status="closed"),
        )
        assert await asyncio.to_thread(migrate, tma_url, side) is True
        messages = await _query(tma_url, select(tma.Message).order_by(tma.Message.seq))
        statuses = dict(await _query(tma_url, select(tma.Ticket.id, tma.Ticket.status)))
        users = {u for (u,) in await _query(tma_url, select(tma.TelegramUser.id))}
        leftovers = await _query(
            tma_url, text("SELECT nspname FROM pg_namespace WHERE nspname = 'legacy_cutover'")
        )
    expected_seqs = [n for n in range(1, 12 + 2) if n != 3]
    assert [m.seq for (m,) in messages] == expected_seqs
    assert [m.id for (m,) in messages] == [message_uuid(n) for n in expected_seqs]
    by_seq = {m.seq: m for (m,) in messages}
    assert by_seq[2].body == "Edited"
    assert (by_seq[13].ticket_id, by_seq[13].body, by_seq[13].sender_type) == (
        opened,
        "Hello?",
        "tma",
    )
    assert statuses[tickets[1].id] == "closed"
    assert statuses[opened] == "open"
    assert users == {t.user_id for t in tickets} | {4242}
    assert leftovers == []  # the copy's schema and the triggers are gone


async def test_crm_writes_during_the_copy_are_numbered_after(db_kind: str, tmp_path: Path) -> None:
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        own = await seed(tma_url, crm_url, history(2))
        side = SIDES["crm"]
        await asyncio.to_thread(prepare, crm_url, side)
        before = await _query(crm_url, select(messages_table("crm").c.id))
        late = uuid.uuid4()
        await _write(
            crm_url,
            insert(messages_table("crm")).values(
                id=late,
                ticket_id=own,
                sender="local",
                message="Late",
                attachments=[],
                created_at=T0,  # older than most: still numbered after the copied ones
            ),
        )
        await asyncio.to_thread(migrate, crm_url, side)
        messages = await _query(crm_url, select(crm.Message).order_by(crm.Message.seq))
    assert len(messages) == len(before) + 1
    assert messages[-1][0].id == late
    assert messages[-1][0].sender_type == "crm"


async def test_a_bad_row_written_during_the_copy_is_refused_by_the_last_step(
    db_kind: str, tmp_path: Path
) -> None:
    """The final step checks what was written since the copy: it refuses, changing nothing;
    the old system goes on; once the row is fixed `migrate` finishes from the same copy."""
    tickets = history(2)
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        await seed(tma_url, crm_url, tickets)
        side = SIDES["tma"]
        await asyncio.to_thread(prepare, tma_url, side)
        old_messages = messages_table("tma")
        await _write(
            tma_url, update(old_messages).where(old_messages.c.id == 1).values(message="z" * 5000)
        )
        with pytest.raises(LegacyRefused) as refused:
            await asyncio.to_thread(migrate, tma_url, side)
        assert [(f.row_id, f.problem) for f in refused.value.findings] == [
            (1, "body is 5000 characters, over 4096")
        ]
        assert await asyncio.to_thread(state_of, tma_url, side) == "legacy"
        assert len(await _query(tma_url, select(old_messages))) == 8
        await _write(
            tma_url, update(old_messages).where(old_messages.c.id == 1).values(message="fixed")
        )
        await asyncio.to_thread(migrate, tma_url, side)
        [(body,)] = await _query(tma_url, select(tma.Message.body).where(tma.Message.seq == 1))
    assert body == "fixed"
