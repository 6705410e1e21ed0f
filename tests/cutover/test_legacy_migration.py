"""The legacy path: an old database, stamped and migrated, has exactly a fresh database's schema
and every old row in the new model; rows that would break it are found by row, never half-migrated.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData, delete, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from crm_impl import tables as crm
from integration_kit import legacy, legacy_online
from integration_kit.db import async_url
from integration_kit.legacy import LegacyRefused, check, migrate, state_of
from tests.cutover.legacy_data import (
    SIDES,
    T0,
    history,
    legacy_database,
    messages_table,
    seed,
    tickets_table,
)
from tests.support.databases import fresh_database
from tma_impl import tables as tma
from tma_impl.legacy import message_uuid

METADATA: dict[str, MetaData] = {"tma": tma.Base.metadata, "crm": crm.Base.metadata}


def _schema(connection: Connection) -> dict[str, Any]:
    """Everything reflection tells about the schema: tables, columns, keys, indexes."""
    found = inspect(connection)
    schema: dict[str, Any] = {}
    for name in sorted(found.get_table_names()):
        schema[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in found.get_columns(name)
            ],
            "pk": found.get_pk_constraint(name),
            "fks": sorted(
                (str(fk["name"]), fk["constrained_columns"], fk["referred_table"], fk["options"])
                for fk in found.get_foreign_keys(name)
            ),
            "indexes": sorted(
                (str(i["name"]), i["column_names"], i["unique"]) for i in found.get_indexes(name)
            ),
            "uniques": sorted(
                (str(u["name"]), u["column_names"]) for u in found.get_unique_constraints(name)
            ),
        }
    return schema


def _differences(connection: Connection, metadata: MetaData) -> list[str]:
    """What Alembic's autogenerate would still change to reach the models."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return sorted(str(diff) for diff in compare_metadata(context, metadata))


async def _inspect(url: str, side: str) -> tuple[dict[str, Any], list[str]]:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as connection:
            schema = await connection.run_sync(_schema)
            diffs = await connection.run_sync(_differences, METADATA[side])
    finally:
        await engine.dispose()
    return schema, diffs


async def _query(url: str, statement: Any) -> list[Any]:
    engine = create_async_engine(async_url(url))
    try:
        async with AsyncSession(engine) as session:
            return list((await session.execute(statement)).all())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("side", ["tma", "crm"])
async def test_a_migrated_legacy_database_has_exactly_the_schema_of_a_fresh_one(
    db_kind: str, side: str, tmp_path: Path
) -> None:
    """Reflection of every table, column, key and index is identical, and Alembic's compare
    finds the same (nothing more) between each database and the models."""
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
        fresh_database(db_kind, side, tmp_path) as fresh_url,
    ):
        await seed(tma_url, crm_url, history(2))
        url = tma_url if side == "tma" else crm_url
        assert await asyncio.to_thread(state_of, url, SIDES[side]) == "legacy"
        await asyncio.to_thread(migrate, url, SIDES[side])
        assert await asyncio.to_thread(state_of, url, SIDES[side]) == "main"
        migrated, migrated_diffs = await _inspect(url, side)
        fresh, fresh_diffs = await _inspect(fresh_url, side)
    assert "messages" in migrated  # the comparison compares something
    assert migrated == fresh
    assert migrated_diffs == fresh_diffs


async def test_the_tma_rows_arrive_in_the_new_model(db_kind: str, tmp_path: Path) -> None:
    """theme -> subject, local -> tma, crm -> crm, integer ids -> seq and their fixed UUIDs,
    users created, project and external_url kept."""
    tickets = history(2)
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        await seed(tma_url, crm_url, tickets)
        await asyncio.to_thread(migrate, tma_url, SIDES["tma"])
        stored = await _query(tma_url, select(tma.Ticket).order_by(tma.Ticket.created_at))
        messages = await _query(tma_url, select(tma.Message).order_by(tma.Message.seq))
        users = await _query(tma_url, select(tma.TelegramUser.id).order_by(tma.TelegramUser.id))
        kept = await _query(tma_url, select(tma.LegacyTicketFields))
    assert [(t.id, t.subject, t.external_id) for (t,) in stored] == [
        (t.id, t.subject, None) for t in tickets
    ]
    expected = [(t.id, sender, body) for t in tickets for sender, body, _ in t.tma]
    assert [(m.ticket_id, m.sender_type, m.body) for (m,) in messages] == [
        (ticket, "tma" if sender == "local" else "crm", body) for ticket, sender, body in expected
    ]
    assert [m.seq for (m,) in messages] == list(range(1, len(expected) + 1))
    assert [m.id for (m,) in messages] == [message_uuid(n) for n in range(1, len(expected) + 1)]
    assert [u for (u,) in users] == [t.user_id for t in tickets]
    assert sorted((k.ticket_id, k.project, k.external_url) for (k,) in kept) == sorted(
        (t.id, t.project, t.external_url) for t in tickets
    )


async def test_the_crm_rows_arrive_in_the_new_model(db_kind: str, tmp_path: Path) -> None:
    """local -> crm, crm -> tma on the CRM; message ids kept; numbered in the order written."""
    tickets = history(2)
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        own = await seed(tma_url, crm_url, tickets)
        old = await _query(crm_url, select(messages_table("crm")))
        await asyncio.to_thread(migrate, crm_url, SIDES["crm"])
        messages = await _query(crm_url, select(crm.Message).order_by(crm.Message.seq))
        stored = await _query(crm_url, select(crm.Ticket.id, crm.Ticket.subject))
    by_id = {row.id: row for row in old}
    assert {m.id for (m,) in messages} == set(by_id)
    for (message,) in messages:
        was = by_id[message.id].sender
        assert message.sender_type == {"local": "crm", "crm": "tma"}[was]
    times = [m.created_at for (m,) in messages]
    assert times == sorted(times)
    assert {row.id for row in stored} == {t.id for t in tickets} | {own}


async def _bad_rows(tma_url: str) -> tuple[uuid.UUID, int]:
    ticket = uuid.uuid4()
    at = history(1)[0]
    engine = create_async_engine(async_url(tma_url))
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(tickets_table("tma")),
                {
                    "id": ticket,
                    "theme": "x" * 300,
                    "status": "open",
                    "project": None,
                    "external_url": None,
                    "created_at": T0,
                    "updated_at": T0,
                    "user_id": at.user_id,
                },
            )
            rows = [
                ("local", "y" * 5000, []),
                ("local", " \t\n", []),
                ("crm", "ok", [{"url": "https://api.telegram.org/file/bot123:SECRET/photo.jpg"}]),
            ]
            for sender, body, attachments in rows:
                await connection.execute(
                    insert(messages_table("tma")),
                    {
                        "ticket_id": ticket,
                        "sender": sender,
                        "message": body,
                        "attachments": attachments,
                        "created_at": T0,
                    },
                )
    finally:
        await engine.dispose()
    return ticket, 3


async def test_check_reports_by_row_and_migrate_refuses_without_scrub(
    db_kind: str, tmp_path: Path
) -> None:
    """Over-long subject and body and a Telegram file URL are reported by table, row and column;
    migrate without --scrub changes nothing; with it the rows are cut and scrubbed."""
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        await seed(tma_url, crm_url, history(1))
        ticket, _ = await _bad_rows(tma_url)
        side = SIDES["tma"]
        findings = await asyncio.to_thread(check, tma_url, side)
        assert sorted((f.table, f.column, f.problem) for f in findings) == [
            (
                "messages",
                "attachments",
                "attachment 0 is a Telegram file URL (it carries the bot token)",
            ),
            ("messages", "message", "body is 5000 characters, over 4096"),
            ("messages", "message", "body is empty"),
            ("tickets", "theme", "subject is 300 characters, over 255"),
        ]
        assert [f.row_id for f in findings if f.table == "tickets"] == [ticket]
        with pytest.raises(LegacyRefused):
            await asyncio.to_thread(migrate, tma_url, side)
        assert await asyncio.to_thread(state_of, tma_url, side) == "legacy"
        assert len(await _query(tma_url, select(tickets_table("tma")))) == 2

        await asyncio.to_thread(migrate, tma_url, side, scrub=True)
        [(subject,)] = await _query(
            tma_url, select(tma.Ticket.subject).where(tma.Ticket.id == ticket)
        )
        bodies = await _query(
            tma_url,
            select(tma.Message.body, tma.Message.attachments).where(
                tma.Message.ticket_id == ticket
            ),
        )
    assert subject == "x" * 254 + "…"
    assert [(len(body), attachments) for body, attachments in bodies] == [
        (4096, []),
        (len("(empty message)"), []),
        (2, []),
    ]


async def test_nul_is_found_and_scrubbed(tmp_path: Path) -> None:
    """SQLite keeps NUL in text (PostgreSQL refuses it at write, so an old PostgreSQL has none)."""
    async with (
        legacy_database("sqlite", "tma", tmp_path) as tma_url,
        legacy_database("sqlite", "crm", tmp_path) as crm_url,
    ):
        [old] = history(1)
        old.subject = "Broken\x00 subject"
        await seed(tma_url, crm_url, [old])
        side = SIDES["crm"]
        findings = await asyncio.to_thread(check, crm_url, side)
        assert [(f.table, f.row_id, f.problem) for f in findings] == [
            ("tickets", old.id, "subject contains NUL")
        ]
        await asyncio.to_thread(migrate, crm_url, side, scrub=True)
        [(subject,)] = await _query(
            crm_url, select(crm.Ticket.subject).where(crm.Ticket.id == old.id)
        )
    assert subject == "Broken subject"


@pytest.mark.parametrize("side", ["tma", "crm"])
async def test_a_conversion_that_fails_midway_leaves_the_old_database_as_it_was(
    db_kind: str, side: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the rows were copied and before the old tables are dropped (SQLite: in the
    one transaction; PostgreSQL: in the final step, the online copy made): the old schema, its
    rows and its legacy stamp are all still there; a second run then succeeds."""
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        await seed(tma_url, crm_url, history(2))
        url = tma_url if side == "tma" else crm_url
        before = await _query(url, select(messages_table(side)))

        def crash(*_args: Any) -> None:
            raise RuntimeError("power cut")

        if db_kind == "sqlite":
            monkeypatch.setattr(legacy, "end_conversion", crash)
        else:
            monkeypatch.setattr(legacy_online, "swap", crash)
        with pytest.raises(RuntimeError, match="power cut"):
            await asyncio.to_thread(migrate, url, SIDES[side])
        schema, _ = await _inspect(url, side)
        assert set(schema) == {"alembic_version", "tickets", "messages"}
        assert "legacy_ticket_fields" not in schema
        assert await _query(url, select(messages_table(side))) == before
        assert await asyncio.to_thread(state_of, url, SIDES[side]) == "legacy"

        monkeypatch.undo()
        await asyncio.to_thread(migrate, url, SIDES[side])
        assert await asyncio.to_thread(state_of, url, SIDES[side]) == "main"


async def test_duplicate_tickets_and_orphan_messages_are_found_refused_then_merged(
    db_kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old CRM's ticket id came from the TMA and was no key (crm_impl.legacy): a retried
    creation stored a ticket twice, and a message may name no stored ticket. `--check` reports
    both by row (exit 1); `migrate` refuses and changes nothing; `--scrub` merges the duplicate
    but refuses the orphan, which only a person can place; once it is fixed, `--scrub`
    converts with one ticket carrying every message of both rows."""
    from tests.cutover.test_migrate_cli import commands
    from tests.e2e.helpers import run_cli

    tickets = history(2)
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        await seed(tma_url, crm_url, tickets)
        twice = tickets[0]
        retried = T0 + timedelta(seconds=5)
        orphan, nowhere = uuid.uuid4(), uuid.uuid4()
        engine = create_async_engine(async_url(crm_url))
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    insert(tickets_table("crm")),
                    {
                        "id": twice.id,
                        "subject": twice.subject,
                        "status": "in_progress",
                        "project": "shop",
                        "external_url": None,
                        "created_at": retried,
                        "updated_at": T0 + timedelta(days=1),
                    },
                )
                await connection.execute(
                    insert(messages_table("crm")),
                    {
                        "id": orphan,
                        "ticket_id": nowhere,
                        "sender": "local",
                        "message": "Where did this go?",
                        "attachments": [],
                        "created_at": T0,
                    },
                )
        finally:
            await engine.dispose()
        before = await _query(crm_url, select(tickets_table("crm")))
        cli = commands("crm", crm_url)
        capsys.readouterr()

        assert await run_cli(cli, ["migrate", "--check"]) == 1
        out = capsys.readouterr().out.splitlines()
        assert out[-1] == "2 row(s) would break the new model"
        [duplicate] = [line for line in out if line.startswith(f"tickets {twice.id} id:")]
        assert duplicate.startswith(f"tickets {twice.id} id: stored 2 times (created ")
        assert duplicate.endswith(
            "(--scrub keeps the row created first, with the status written last)"
        )
        assert (
            f"messages {orphan} ticket_id: names ticket {nowhere}, which is not stored "
            "(fix it by hand, --scrub cannot)"
        ) in out

        assert await run_cli(cli, ["migrate"]) == 2
        assert "nothing was changed" in capsys.readouterr().err
        assert await asyncio.to_thread(state_of, crm_url, SIDES["crm"]) == "legacy"
        assert await _query(crm_url, select(tickets_table("crm"))) == before

        assert await run_cli(cli, ["migrate", "--scrub"]) == 2
        err = capsys.readouterr().err
        assert f"messages {orphan} ticket_id" in err
        assert f"tickets {twice.id}" not in err  # what --scrub can do is not refused
        assert await _query(crm_url, select(tickets_table("crm"))) == before

        old_messages = messages_table("crm")
        await _write(crm_url, delete(old_messages).where(old_messages.c.ticket_id == nowhere))
        assert await run_cli(cli, ["migrate", "--scrub"]) == 0
        merged = await _query(
            crm_url,
            select(crm.Ticket.status, crm.Ticket.created_at).where(crm.Ticket.id == twice.id),
        )
        messages = await _query(
            crm_url, select(crm.Message.body).where(crm.Message.ticket_id == twice.id)
        )
    assert [(status, created.astimezone(UTC)) for status, created in merged] == [
        ("in_progress", T0)
    ]
    assert len(messages) == len(twice.crm)


async def _write(url: str, statement: Any) -> None:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            await connection.execute(statement)
    finally:
        await engine.dispose()
