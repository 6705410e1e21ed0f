"""`link`: tickets from before the cut-over get their links on both sides, from each side's own
data or a CSV of pairs; idempotent; what cannot be linked is reported."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from crm_impl import tables as crm
from integration_kit.db import async_url
from integration_kit.legacy import migrate
from tests.cutover.legacy_data import SIDES, history, legacy_database, seed
from tests.cutover.test_migrate_cli import commands
from tests.e2e.helpers import run_cli
from tma_impl import tables as tma


async def _links(
    url: str, model: type[tma.Ticket] | type[crm.Ticket]
) -> dict[uuid.UUID, uuid.UUID | None]:
    engine = create_async_engine(async_url(url))
    try:
        async with AsyncSession(engine) as session:
            rows = await session.execute(select(model.id, model.external_id))
            return dict(rows.all())
    finally:
        await engine.dispose()


async def _customers(url: str) -> dict[uuid.UUID, int]:
    engine = create_async_engine(async_url(url))
    try:
        async with AsyncSession(engine) as session:
            rows = await session.execute(select(crm.Ticket.id, crm.Ticket.customer_telegram_id))
            return dict(rows.all())
    finally:
        await engine.dispose()


async def test_link_from_own_data_and_exports_is_complete_idempotent_and_reports(
    db_kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three tickets both old systems hold, one only the CRM has (phoned in), one whose creation
    never reached the CRM. After link on both sides the three are linked both ways with the
    CRM's customers filled in; the other two are reported; a second run changes nothing."""
    tickets = history(3)
    [lost] = [dataclasses.replace(t, id=uuid.uuid4(), user_id=2000) for t in history(1)]
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        phoned = await seed(tma_url, crm_url, tickets, tma_only=[lost])
        await asyncio.to_thread(migrate, tma_url, SIDES["tma"])
        await asyncio.to_thread(migrate, crm_url, SIDES["crm"])
        tma_cli, crm_cli = commands("tma", tma_url), commands("crm", crm_url)
        crm_csv, tma_csv = tmp_path / "crm-pairs.csv", tmp_path / "tma-pairs.csv"
        capsys.readouterr()

        for _round in range(2):
            assert await run_cli(tma_cli, ["link"]) == 0
            assert await run_cli(crm_cli, ["link", "--export", str(crm_csv)]) == 0
            assert (
                await run_cli(tma_cli, ["link", "--pairs", str(crm_csv), "--export", str(tma_csv)])
                == 0
            )
            assert await run_cli(crm_cli, ["link", "--pairs", str(tma_csv)]) == 0
            out = capsys.readouterr().out.splitlines()
            tma_links, crm_links = (
                await _links(tma_url, tma.Ticket),
                await _links(crm_url, crm.Ticket),
            )
            assert tma_links == {**{t.id: t.id for t in tickets}, lost.id: None}
            assert crm_links == {**{t.id: t.id for t in tickets}, phoned: None}
            assert f"could not link: {phoned}: no such ticket here" in out
            customers = await _customers(crm_url)
            assert {t.id: customers[t.id] for t in tickets} == {t.id: t.user_id for t in tickets}
        # The second round linked nothing new and said so.
        assert "linked 0, already linked 3, could not link 1; tickets here without a link: 1" in out
        with crm_csv.open() as handle:
            assert len(list(csv.DictReader(handle))) == 4  # three linked, and the phoned-in one


async def test_link_refuses_a_pair_that_contradicts_a_link_and_a_bad_file(
    db_kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tickets = history(2)
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        await seed(tma_url, crm_url, tickets)
        await asyncio.to_thread(migrate, tma_url, SIDES["tma"])
        tma_cli = commands("tma", tma_url)
        assert await run_cli(tma_cli, ["link"]) == 0
        other = uuid.uuid4()
        pairs = tmp_path / "pairs.csv"
        pairs.write_text(
            "tma_ticket_id,crm_ticket_id\n"
            f"{tickets[0].id},{other}\n"
            f"{uuid.uuid4()},{tickets[1].id}\n"
        )
        capsys.readouterr()
        assert await run_cli(tma_cli, ["link", "--pairs", str(pairs)]) == 0
        out = capsys.readouterr().out
        assert (
            f"could not link: {tickets[0].id}: linked to {tickets[0].id} already, not to {other}"
            in out
        )
        assert "linked 0, already linked 0, could not link 2" in out
        assert (await _links(tma_url, tma.Ticket))[tickets[0].id] == tickets[0].id

        pairs.write_text("tma_ticket_id,crm_ticket_id\nnot-a-uuid,x\n")
        assert await run_cli(tma_cli, ["link", "--pairs", str(pairs)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert err[0].startswith(f"error: {pairs} line 2:")
