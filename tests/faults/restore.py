"""A restore from backup during a fault run: one side's database is copied while traffic flows,
later lost and replaced by that copy, and `restored` + `reconcile` make both sides whole again.

The operator's procedure (docs/design.md §10), step by step: stop the side; restore its database
from the backup; `restored` (new feed epoch); `reconcile` on the restored side (it takes back
what the peer holds), start it again; `reconcile` on the peer (it reads the restored side's feed
from its start). Changes that had not reached the peer before the database was lost cannot come
back from it; the harness lets the side's workers hand over what is pending before it stops, so
the run can demand that nothing is lost, and reports what the restore took away.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from crm_impl import tables as crm_tables
from integration_kit.schema import Channel, OutboxState
from tests.faults.cluster import Side, wait_ready
from tests.faults.verify import Databases
from tma_impl import tables as tma_tables

DRAIN_TIMEOUT_SECONDS = 60.0


@dataclass
class RestoreReport:
    """The figures of one restore."""

    side: str
    backup_at: float = 0.0  # monotonic
    restored_at: float = 0.0  # monotonic, when the copy was back in place
    lost: dict[str, int] = field(default_factory=dict)  # kind -> rows the restore took away
    reconcile: dict[str, str] = field(default_factory=dict)  # side -> reconcile's summary line
    final: dict[str, str] = field(default_factory=dict)  # side -> summary after convergence
    seconds: float = 0.0  # from stopping the side to both reconciles done
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds

    def lines(self) -> list[str]:
        lost = ", ".join(f"{kind} {n}" for kind, n in sorted(self.lost.items()))
        return [
            f"restore of the {self.side.upper()} from a copy taken "
            f"{self.restored_at - self.backup_at:.1f} s earlier: lost by the restore {lost}; "
            f"stop to reconciled {self.seconds:.1f} s "
            f"({', '.join(f'{step} {t:.1f} s' for step, t in self.timings.items())})",
            *(f"  reconcile {side}: {line}" for side, line in self.reconcile.items()),
            *(f"  reconcile {side} after converging: {line}" for side, line in self.final.items()),
        ]


def _pg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def take_backup(side: Side, workdir: Path) -> Path:
    """A consistent copy of the live database, taken while traffic flows."""
    url = make_url(side.database_url)
    target = (
        workdir / f"{side.name}-backup.{'db' if url.drivername.startswith('sqlite') else 'dump'}"
    )
    if url.drivername.startswith("sqlite"):
        await asyncio.to_thread(_sqlite_copy, str(url.database), str(target))
    else:
        await _command("pg_dump", "-Fc", "-f", str(target), _pg_dsn(side.database_url))
    return target


async def put_back(side: Side, backup: Path, admin_sql: object) -> None:
    """Replace the side's database with the backup (the side is stopped)."""
    url = make_url(side.database_url)
    if url.drivername.startswith("sqlite"):
        await asyncio.to_thread(_sqlite_copy, str(backup), str(url.database))
        return
    assert callable(admin_sql)
    await admin_sql(f'DROP DATABASE "{url.database}" WITH (FORCE)')
    await admin_sql(f'CREATE DATABASE "{url.database}"')
    await _command("pg_restore", "--no-owner", "-d", _pg_dsn(side.database_url), str(backup))


def _sqlite_copy(source: str, target: str) -> None:
    # SQLite's backup API: a consistent image (WAL included) written into the target as one
    # transaction, so readers of the target see the old or the new database, never a mix.
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


async def _command(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({process.returncode}): {err.decode()[-500:]}")


async def counts(databases: Databases, side: str) -> dict[str, int]:
    """Rows that a restore can take away: tickets, messages, applied status changes."""
    t = tma_tables if side == "tma" else crm_tables
    async with databases.engines[side].connect() as conn:
        status = await conn.scalar(
            select(func.count()).select_from(t.ChangeLog).where(t.ChangeLog.kind == "status")
        )
        return {
            "tickets": int(await conn.scalar(select(func.count()).select_from(t.Ticket)) or 0),
            "messages": int(await conn.scalar(select(func.count()).select_from(t.Message)) or 0),
            "status changes": int(status or 0),
        }


async def wait_drained(databases: Databases, side: str) -> None:
    """Until the side has nothing pending or dead to hand to the peer (bounded)."""
    t = tma_tables if side == "tma" else crm_tables
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        async with databases.engines[side].connect() as conn:
            waiting = await conn.scalar(
                select(func.count())
                .select_from(t.Outbox)
                .where(
                    t.Outbox.state.in_([OutboxState.pending, OutboxState.dead]),
                    t.Outbox.channel == Channel.peer,
                )
            )
        if not waiting:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{side}: outbox not drained within {DRAIN_TIMEOUT_SECONDS} s")


async def run_command(side: Side, *args: str) -> str:
    """A command line of the side, tried again when it fails (a fault may break its request)."""
    for attempt in range(8):
        try:
            return await asyncio.to_thread(side.run, *args)
        except RuntimeError:
            if attempt == 7:
                raise
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


def summary_line(output: str) -> str:
    """The last line `reconcile` prints: its summary."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1].split(": ", 1)[-1] if lines else ""


async def restart(side: Side, workers: int) -> None:
    for slot in list(side.apis):
        side.start_api(slot)
    for slot in range(workers):
        side.start_worker(slot)
    await asyncio.gather(
        *(wait_ready(side.api_ports[slot], process) for slot, process in side.apis.items())
    )
