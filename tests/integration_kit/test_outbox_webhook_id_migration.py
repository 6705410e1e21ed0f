"""The outbox_webhook_id revision on both sides: events written before it get an id each, kept by
every later attempt (the sender's `webhook-id`)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from crm_impl.cli import MIGRATIONS as CRM_MIGRATIONS
from integration_kit.db import UTCDateTime, async_url
from integration_kit.migrate import upgrade
from tests.support.databases import empty_database
from tma_impl.cli import MIGRATIONS as TMA_MIGRATIONS

MIGRATIONS = {"tma": TMA_MIGRATIONS, "crm": CRM_MIGRATIONS}


@pytest.mark.parametrize("side", ["tma", "crm"])
async def test_events_written_before_the_revision_get_distinct_ids(
    side: str, db_kind: str, tmp_path: Path
) -> None:
    async with empty_database(db_kind, tmp_path) as url:
        await asyncio.to_thread(upgrade, MIGRATIONS[side], url, "0001")
        engine = create_async_engine(async_url(url))
        now = datetime(2026, 11, 30, tzinfo=UTC)
        # The table as revision 0001 made it (the ORM model has the new column already).
        outbox = sa.table(
            "outbox",
            sa.column("ticket_id", sa.Uuid()),
            sa.column("channel", sa.String()),
            sa.column("kind", sa.String()),
            sa.column("payload", sa.JSON()),
            sa.column("state", sa.String()),
            sa.column("attempts", sa.Integer()),
            sa.column("created_at", UTCDateTime()),
            sa.column("next_attempt_at", UTCDateTime()),
        )
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    outbox.insert(),
                    [
                        {
                            "ticket_id": uuid.uuid4(),
                            "channel": "peer",
                            "kind": "message",
                            "payload": {},
                            "state": state,
                            "attempts": 0,
                            "created_at": now,
                            "next_attempt_at": now,
                        }
                        for state in ("pending", "dead", "delivered")
                    ],
                )
            await asyncio.to_thread(upgrade, MIGRATIONS[side], url)
            async with engine.connect() as connection:
                ids = (await connection.execute(sa.text("SELECT webhook_id FROM outbox"))).all()
                columns = await connection.run_sync(
                    lambda sync: sa.inspect(sync).get_columns("outbox")
                )
                indexes = await connection.run_sync(
                    lambda sync: sa.inspect(sync).get_indexes("outbox")
                )
        finally:
            await engine.dispose()
    values = [uuid.UUID(str(row[0])) for row in ids]
    assert len(values) == 3
    assert len(set(values)) == 3
    [column] = [c for c in columns if c["name"] == "webhook_id"]
    assert column["nullable"] is False
    # SQLite rebuilds the table to make the column NOT NULL: its indexes must survive that.
    assert {index["name"] for index in indexes} >= {"ix_outbox_due", "ix_outbox_stream"}
