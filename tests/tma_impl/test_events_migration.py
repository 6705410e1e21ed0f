"""The migration that adds conversation events gives existing conversations their history: each
ticket's messages become its events in the order stored, already read by the user."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from integration_kit.db import Database
from integration_kit.migrate import upgrade
from tests.support.databases import MIGRATIONS, empty_database

TICKET = "INSERT INTO telegram_users (id, first_name, updated_at) VALUES (7, 'Anna', :at)"


async def test_existing_messages_become_read_events(db_kind: str, tmp_path: Path) -> None:
    async with empty_database(db_kind, tmp_path) as url:
        await asyncio.to_thread(upgrade, MIGRATIONS["tma"], url, "0001")
        db = Database(url)
        tickets = [uuid.uuid4(), uuid.uuid4()]
        at = datetime.now(UTC).replace(tzinfo=None)
        async with db.engine.begin() as connection:
            await connection.execute(text(TICKET), {"at": at})
            for ticket in tickets:
                await connection.execute(
                    text(
                        "INSERT INTO tickets (id, subject, status, status_changed_at, created_at,"
                        " updated_at, telegram_user_id) VALUES (:id, 's', 'in_progress', :at, :at,"
                        " :at, 7)"
                    ),
                    {"id": ticket.hex if db_kind == "sqlite" else ticket, "at": at},
                )
            for n, (ticket, sender) in enumerate(
                [(0, "tma"), (1, "tma"), (0, "crm"), (1, "crm"), (0, "tma")]
            ):
                key = tickets[ticket]
                await connection.execute(
                    text(
                        "INSERT INTO messages (id, ticket_id, sender_type, body, attachments,"
                        " created_at) VALUES (:id, :ticket, :sender, :body, '[]', :at)"
                    ),
                    {
                        "id": uuid.uuid4().hex if db_kind == "sqlite" else uuid.uuid4(),
                        "ticket": key.hex if db_kind == "sqlite" else key,
                        "sender": sender,
                        "body": f"m{n}",
                        "at": at,
                    },
                )
        await db.dispose()

        await asyncio.to_thread(upgrade, MIGRATIONS["tma"], url)

        db = Database(url)
        async with db.engine.connect() as connection:
            events = (
                await connection.execute(
                    text(
                        "SELECT m.body, e.seq, e.kind, e.sender_type, e.status FROM ticket_events e"
                        " JOIN messages m ON m.seq = e.message_seq ORDER BY m.seq"
                    )
                )
            ).all()
            markers = (
                await connection.execute(text("SELECT read_event_seq FROM tickets ORDER BY 1"))
            ).scalars()
            read = list(markers)
        await db.dispose()
        assert [tuple(row) for row in events] == [
            ("m0", 1, "message", "tma", "in_progress"),
            ("m1", 1, "message", "tma", "in_progress"),
            ("m2", 2, "message", "crm", "in_progress"),
            ("m3", 2, "message", "crm", "in_progress"),
            ("m4", 3, "message", "tma", "in_progress"),
        ]
        assert read == [2, 3]  # nothing that existed before shows as unread
