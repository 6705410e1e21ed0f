"""A database that held tickets before the change feed existed offers them in its feed once
upgraded: the feed's revision logs what is already there (tickets, messages, statuses)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from sqlalchemy import select

from crm_impl.tables import ChangeLog
from integration_kit.migrate import alembic_config, upgrade
from tests.e2e.helpers import linked_ticket
from tests.support.databases import MIGRATIONS
from tests.support.pair import wired_pair


async def test_history_from_before_the_feed_enters_the_feed(db_kind: str, tmp_path: Path) -> None:
    async with wired_pair(db_kind, tmp_path) as pair:
        linked = await linked_ticket(pair)
        await pair.operator_replies(linked.crm_id, "On it.")
        await pair.sync()
        url = pair.crm_runtime.settings.database_url
        # Back to the schema before the feed (its log gone), then up again, as an upgrade runs.
        config = alembic_config(MIGRATIONS["crm"], url)
        await asyncio.to_thread(command.downgrade, config, "0003")
        await asyncio.to_thread(upgrade, MIGRATIONS["crm"], url)

        async with pair.crm_runtime.db.sessions() as session:
            rows = (await session.scalars(select(ChangeLog).order_by(ChangeLog.seq))).all()
        kinds = [(row.kind, row.message_id is not None) for row in rows]
        # The ticket, then its two messages (the customer's first, the operator's reply), then
        # its status (in progress since the reply).
        assert kinds == [("ticket", False), ("message", True), ("message", True), ("status", False)]
        assert rows[-1].status == "in_progress"

        feed = await pair.crm.get(
            "/api/integration/changes",
            params={"limit": 100},
            headers={"Authorization": "Bearer test-tma-to-crm"},
        )
        assert feed.status_code == 200, feed.text
        items = feed.json()["items"]
        assert [i["message"]["message"] for i in items if i.get("message")] == [
            "I paid but the order is unpaid.",
            "On it.",
        ]
