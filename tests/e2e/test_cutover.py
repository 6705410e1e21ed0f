"""The cut-over runbook of docs/cutover.md, played end to end on both databases.

Two old systems with history (built from the legacy baselines), an old-style TMA speaking the
audited routes to the upgraded CRM during the window, then the TMA's migration, link, backfill,
the switch, and new traffic both ways. At the end every ticket and message that existed before
exists exactly once on each side, the links are recorded, and new traffic flows. Each step's
duration is printed (`pytest -s`); docs/cutover.md quotes them.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from crm_impl import tables as crm
from integration_kit.db import async_url
from integration_kit.legacy_routes import LegacyRouteSettings
from integration_kit.runtime import Runtime
from tests.cutover.legacy_data import (
    history,
    legacy_database,
    messages_table,
    seed,
    tickets_table,
)
from tests.cutover.old_peer import OldTma
from tests.cutover.test_migrate_cli import commands
from tests.e2e.helpers import run_cli
from tests.support.pair import wired_pair
from tma_impl import tables as tma

OLD_TOKEN = "old-deploy-token"
WINDOW = LegacyRouteSettings(
    routes_enabled=True, deploy_token=OLD_TOKEN, sunset=datetime(2027, 1, 31, tzinfo=UTC)
)


class _Given:
    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> str:
        return self.url

    async def __aexit__(self, *_exc: object) -> None:
        return None


@contextmanager
def step(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started


async def _unstamp(url: str) -> None:
    """An old production database has no Alembic version: the runbook stamps it."""
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TABLE alembic_version"))
    finally:
        await engine.dispose()


async def _old_tma_writes(url: str, ticket: uuid.UUID, body: str, at: datetime) -> None:
    """The old TMA storing its own ticket (it then calls the CRM's old route)."""
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(tickets_table("tma")),
                {
                    "id": ticket,
                    "theme": "Opened during the window",
                    "status": "open",
                    "project": "shop",
                    "external_url": None,
                    "created_at": at,
                    "updated_at": at,
                    "user_id": 3000,
                },
            )
            await connection.execute(
                insert(messages_table("tma")),
                {
                    "ticket_id": ticket,
                    "sender": "local",
                    "message": body,
                    "attachments": [],
                    "created_at": at,
                },
            )
    finally:
        await engine.dispose()


async def _everything(runtime: Runtime, ticket: Any, message: Any) -> dict[uuid.UUID, Any]:
    """Per ticket: its link, and its messages as (sender, body, linked?) in stored order."""
    async with runtime.db.sessions() as session:
        tickets = (await session.scalars(select(ticket))).all()
        messages = (await session.scalars(select(message).order_by(message.seq))).all()
    found: dict[uuid.UUID, Any] = {t.id: {"link": t.external_id, "messages": []} for t in tickets}
    for m in messages:
        found[m.ticket_id]["messages"].append(
            (m.sender_type, m.body, m.external_message_id is not None)
        )
    return found


@asynccontextmanager
async def old_systems(kind: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    async with (
        legacy_database(kind, "tma", tmp_path) as tma_url,
        legacy_database(kind, "crm", tmp_path) as crm_url,
    ):
        yield tma_url, crm_url


async def test_the_cutover_runbook(db_kind: str, tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    tickets = history(3)
    [lost] = [dataclasses.replace(t, id=uuid.uuid4(), user_id=2000) for t in history(1)]
    async with old_systems(db_kind, tmp_path) as (tma_url, crm_url):
        phoned = await seed(tma_url, crm_url, tickets, tma_only=[lost])
        await _unstamp(tma_url)
        await _unstamp(crm_url)
        tma_cli, crm_cli = commands("tma", tma_url), commands("crm", crm_url)
        files = {name: str(tmp_path / f"{name}.csv") for name in ("crm-pairs", "tma-pairs")}
        files |= {name: str(tmp_path / f"{name}.csv") for name in ("crm-messages", "matched")}

        # 1. The CRM first: stamp, check, migrate.
        with step(timings, "1. CRM: stamp, check, migrate"):
            assert await run_cli(crm_cli, ["migrate", "--stamp-legacy"]) == 0
            assert await run_cli(crm_cli, ["migrate", "--check"]) == 0
            assert await run_cli(crm_cli, ["migrate"]) == 0

        def databases(_kind: str, side: str, _tmp: Path) -> _Given:
            return _Given(tma_url if side == "tma" else crm_url)

        async with wired_pair(db_kind, tmp_path, database=databases, legacy=WINDOW) as pair:
            # 2. The window: the new CRM (old routes on, outbox held) beside the old TMA.
            old = OldTma(token=OLD_TOKEN)
            new_tma = pair.to_tma.inner
            pair.to_tma.inner = old.transport()
            during = uuid.uuid4()
            with step(timings, "2. window: old TMA opens a ticket, an operator replies"):
                await _old_tma_writes(tma_url, during, "Opened in the window", pair.clock.now())
                answer = await old.open_ticket(
                    pair.crm,
                    ticket_id=during,
                    theme="Opened during the window",
                    message="Opened in the window",
                )
                assert answer.status_code == 201, answer.text
                assert "Sunset" in answer.headers
                # The old CRM's ticket had the old TMA's id (crm_impl.legacy).
                await pair.operator_replies(str(tickets[0].id), "Reply in the window")
            # Held: the CRM's dispatcher does not run in the window; nothing reached the old TMA.
            assert old.webhooks == []

            # 3. The TMA: stamp, check, migrate.
            with step(timings, "3. TMA: stamp, check, migrate"):
                assert await run_cli(tma_cli, ["migrate", "--stamp-legacy"]) == 0
                assert await run_cli(tma_cli, ["migrate", "--check"]) == 0
                assert await run_cli(tma_cli, ["migrate"]) == 0

            # 4. Link, both ways.
            with step(timings, "4. link"):
                assert await run_cli(crm_cli, ["link", "--export", files["crm-pairs"]]) == 0
                assert await run_cli(tma_cli, ["link"]) == 0
                argv = ["link", "--pairs", files["crm-pairs"], "--export", files["tma-pairs"]]
                assert await run_cli(tma_cli, argv) == 0
                assert await run_cli(crm_cli, ["link", "--pairs", files["tma-pairs"]]) == 0

            # 5. Backfill.
            with step(timings, "5. backfill"):
                argv = ["backfill", "--export", files["crm-messages"]]
                assert await run_cli(crm_cli, argv) == 0
                argv = ["backfill", "--peer-messages", files["crm-messages"]]
                argv += ["--write-matched", files["matched"]]
                assert await run_cli(tma_cli, argv) == 0
                argv = ["backfill", "--record-matched", files["matched"]]
                assert await run_cli(crm_cli, argv) == 0

            # 6. The switch: the new TMA serves, both dispatchers run.
            with step(timings, "6. switch: deliver the backfill and the held replies"):
                pair.to_tma.inner = new_tma
                # The commands queued on the real clock; the pair's clock catches up with it.
                pair.clock.set(datetime.now(UTC) + timedelta(seconds=1))
                await pair.sync()

            # 7. New traffic, both ways.
            with step(timings, "7. new traffic both ways"):
                await pair.user_writes(str(tickets[1].id), "New from the Mini App", user_id=1001)
                await pair.operator_replies(str(tickets[1].id), "New from the CRM")
                fresh = await pair.open_ticket(subject="A new ticket", user_id=4242)
                await pair.sync()

            in_tma = await _everything(pair.tma_runtime, tma.Ticket, tma.Message)
            in_crm = await _everything(pair.crm_runtime, crm.Ticket, crm.Message)

    for name, seconds in timings.items():
        print(f"cutover [{db_kind}] {name}: {seconds * 1000:.0f} ms")

    # Every ticket of before (and of the window) once on each side, linked both ways.
    assert in_crm.pop(phoned)["messages"] == [("crm", "Customer called about a refund", False)]
    by_tma = in_tma
    assert len(by_tma) == len(in_crm) == len(tickets) + 3  # + lost, + window, + fresh
    for crm_id, theirs in in_crm.items():
        ours = by_tma[theirs["link"]]
        assert ours["link"] == crm_id
        # The same messages on both sides, each once, each linked to its copy.
        assert Counter(m[:2] for m in ours["messages"]) == Counter(
            m[:2] for m in theirs["messages"]
        )
        assert all(linked for *_m, linked in ours["messages"] + theirs["messages"])
    for ticket in tickets:
        bodies = [body for _s, body, _l in in_tma[ticket.id]["messages"]]
        expected = [body for _s, body, _at in ticket.tma]
        assert bodies[: len(expected)] == expected
    assert [b for _s, b, _l in in_tma[tickets[0].id]["messages"]][-1] == "Reply in the window"
    assert [b for _s, b, _l in in_tma[tickets[1].id]["messages"]][-2:] == [
        "New from the Mini App",
        "New from the CRM",
    ]
    assert [b for _s, b, _l in in_tma[lost.id]["messages"]] == [b for _s, b, _a in lost.tma]
    assert uuid.UUID(fresh["id"]) in by_tma
    assert during in by_tma
