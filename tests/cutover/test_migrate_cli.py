"""The legacy path from the command line: stamp an existing old database, check, migrate."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from crm_impl.cli import COMMANDS as CRM_COMMANDS
from crm_impl.settings import CrmSettings
from integration_kit.cli import BackendCommands
from integration_kit.cutover_cli import CutoverError, refuse_legacy
from integration_kit.db import async_url
from tests.cutover.legacy_data import SIDES, history, legacy_database, seed
from tests.e2e.helpers import run_cli
from tma_impl.cli import COMMANDS as TMA_COMMANDS
from tma_impl.settings import TmaSettings


def commands(side: str, url: str) -> BackendCommands:
    if side == "tma":
        return dataclasses.replace(
            TMA_COMMANDS, load_settings=lambda: TmaSettings(database_url=url)
        )
    return dataclasses.replace(CRM_COMMANDS, load_settings=lambda: CrmSettings(database_url=url))


async def _unstamp(url: str) -> None:
    """What an old production database looks like: its tables, no Alembic version."""
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TABLE alembic_version"))
            await connection.execute(
                text("UPDATE tickets SET subject = subject || :long"), {"long": "!" * 300}
            )
    finally:
        await engine.dispose()


async def test_stamp_check_refuse_scrub_from_the_command_line(
    db_kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An old CRM database: `migrate` refuses before it is stamped; after `--stamp-legacy`,
    `--check` lists the over-long subjects by row (exit 1), plain `migrate` refuses and changes
    nothing (exit 2), `--scrub` converts; `--check` then has nothing to check."""
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        tickets = history(2)
        await seed(tma_url, crm_url, tickets)
        await _unstamp(crm_url)
        cli = commands("crm", crm_url)
        capsys.readouterr()

        # Unstamped, an old database is neither migrated nor served.
        assert await run_cli(cli, ["migrate"]) == 2
        assert "Stamp it first with `python -m crm_impl migrate --stamp-legacy`" in (
            capsys.readouterr().err
        )
        with pytest.raises(CutoverError, match="Stamp it first"):
            await asyncio.to_thread(refuse_legacy, SIDES["crm"], crm_url)
        assert await run_cli(cli, ["migrate", "--stamp-legacy"]) == 0
        assert await run_cli(cli, ["migrate", "--stamp-legacy"]) == 2  # stamped already
        with pytest.raises(CutoverError, match="run `python -m crm_impl migrate --check`"):
            # what `serve` says before migrating
            await asyncio.to_thread(refuse_legacy, SIDES["crm"], crm_url)
        capsys.readouterr()

        assert await run_cli(cli, ["migrate", "--check"]) == 1
        out = capsys.readouterr().out.splitlines()
        assert out[-1] == "3 row(s) would break the new model"
        for ticket in tickets:
            assert (
                f"tickets {ticket.id} subject: subject is {len(ticket.subject) + 300} characters, "
                "over 255 (--scrub cuts or fills it)"
            ) in out

        assert await run_cli(cli, ["migrate"]) == 2
        assert "nothing was changed" in capsys.readouterr().err
        assert await run_cli(cli, ["migrate", "--check"]) == 1

        assert await run_cli(cli, ["migrate", "--scrub"]) == 0
        assert await run_cli(cli, ["migrate", "--check"]) == 0
        assert "not an old database" in capsys.readouterr().out
        await asyncio.to_thread(refuse_legacy, SIDES["crm"], crm_url)  # serve may now start
