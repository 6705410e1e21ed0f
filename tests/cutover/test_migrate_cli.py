"""The legacy path from the command line: stamp an existing old database, check, migrate."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from crm_impl.cli import COMMANDS as CRM_COMMANDS
from crm_impl.settings import CrmSettings
from integration_kit.cli import BackendCommands
from integration_kit.cutover_cli import CutoverError, refuse_legacy
from integration_kit.db import async_url
from integration_kit.legacy import state_of
from tests.cutover.legacy_data import SIDES, T0, history, legacy_database, messages_table, seed
from tests.e2e.helpers import run_cli
from tests.support.databases import POSTGRES_URL
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


def _run_process(
    side: str, url: str, workdir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`python -m <side>_impl <args>` as an operator runs it (no .env of the developer's read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TMA_", "CRM_"))}
    prefix = side.upper()
    env |= {f"{prefix}_DATABASE_URL": url, f"{prefix}_DATA_DIR": str(workdir)}
    return subprocess.run(
        [sys.executable, "-m", f"{side}_impl", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _scalars(url: str, query: str) -> list[Any]:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(query))).scalars())
    finally:
        await engine.dispose()


COPY_SCHEMA = "SELECT nspname FROM pg_namespace WHERE nspname = 'legacy_cutover'"


async def _write(url: str, statement: Any) -> None:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            await connection.execute(statement)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("db_kind", ["postgresql"])
async def test_prepare_from_the_command_line(db_kind: str, tmp_path: Path) -> None:
    """`migrate --prepare` as a process, on PostgreSQL: a bad row refuses it by row and leaves
    nothing behind; then it copies while the old TMA goes on writing (and a second run keeps the
    copy); `migrate` finishes with what was written meanwhile; afterwards there is nothing to
    prepare."""
    if not POSTGRES_URL:
        pytest.skip("the online copy is PostgreSQL's")
    async with (
        legacy_database(db_kind, "tma", tmp_path) as tma_url,
        legacy_database(db_kind, "crm", tmp_path) as crm_url,
    ):
        await seed(tma_url, crm_url, history(2))
        old = messages_table("tma")
        await _write(tma_url, update(old).where(old.c.id == 1).values(message="z" * 5000))

        done = await asyncio.to_thread(
            _run_process, "tma", tma_url, tmp_path, "migrate", "--prepare"
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert "messages 1 message: body is 5000 characters, over 4096" in done.stderr
        assert "nothing was changed" in done.stderr.splitlines()[-1]
        assert await _scalars(tma_url, COPY_SCHEMA) == []

        await _write(tma_url, update(old).where(old.c.id == 1).values(message="fixed"))
        [ticket] = await _scalars(tma_url, "SELECT ticket_id FROM messages WHERE id = 1")
        for attempt in range(2):
            done = await asyncio.to_thread(
                _run_process, "tma", tma_url, tmp_path, "migrate", "--prepare"
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "tma: copied; stop the old system, then run migrate"
            assert await _scalars(tma_url, COPY_SCHEMA) == ["legacy_cutover"]
            assert await asyncio.to_thread(state_of, tma_url, SIDES["tma"]) == "legacy"
            # The copy is the first run's: the second keeps it (what was written after the first
            # is logged, and carried over by the final step, not copied again).
            assert await _scalars(tma_url, "SELECT count(*) FROM legacy_cutover.messages") == [8]
            # The old TMA still writes to its own tables.
            await _write(
                tma_url,
                insert(old).values(
                    ticket_id=ticket,
                    sender="local",
                    message=f"Written after prepare {attempt}",
                    attachments=[],
                    created_at=T0,
                ),
            )

        done = await asyncio.to_thread(_run_process, "tma", tma_url, tmp_path, "migrate")
        assert done.returncode == 0, done.stderr
        assert await _scalars(tma_url, COPY_SCHEMA) == []
        bodies = await _scalars(tma_url, "SELECT body FROM messages ORDER BY seq")
        assert bodies[0] == "fixed"
        assert bodies[-2:] == ["Written after prepare 0", "Written after prepare 1"]
        assert len(bodies) == 8 + 2

        done = await asyncio.to_thread(
            _run_process, "tma", tma_url, tmp_path, "migrate", "--prepare"
        )
        assert done.returncode == 2
        assert done.stderr.strip() == (
            "error: not an old database stamped legacy: nothing to prepare"
        )
