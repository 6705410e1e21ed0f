"""`make bench-cutover`: the legacy migration of an old TMA database of N messages on PostgreSQL.

Builds an old TMA database (tma_impl/legacy's schema; `--side crm`: an old CRM's,
crm_impl/legacy's; 10 messages a ticket, bodies of a realistic length), then runs `migrate` as
the command does (the row check, the online copy, the final step, the main chain) while the old
system writes: a writer inserts a message every 20 ms and edits an old one every 40 ms, each in
its own transaction, until the old tables are gone. Every write it committed must be in the
converted database (checked).

Two figures of blocking, since they differ: the old system's longest stalled statement (how long
its writes waited on the final step's lock), and the window with no side taking writes, from the
final step's lock to the database at head (the old tables are gone from the final step's commit
on, and the new backend cannot serve before the main chain is done). Each part's time is
reported, and each main-chain revision's, with the machine's load average.
Baseline of the same run: copying the same messages once into a new table with one
`CREATE TABLE AS` (what any conversion that rewrites the table costs at least).

Figures, not pass/fail. Needs a PostgreSQL server: `--url postgresql://user@host/postgres`
(or TEST_DATABASE_URL); the database it makes, `cutover_bench_<pid>`, is dropped at the end.
Results go to build/bench/legacy_migration.json.
"""

# ruff: noqa: S608 - SQL built from this module's constants, never from input
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from crm_impl.legacy import SIDE as CRM_SIDE
from integration_kit import legacy, legacy_online
from integration_kit.legacy import LegacySide
from tma_impl.legacy import SIDE as TMA_SIDE

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench"
PROBE_EVERY = 0.02


def _dsn(url: str, database: str) -> str:
    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(_dsn(url, make_url(url).database or "postgres"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


SIDES: dict[str, LegacySide] = {"tma": TMA_SIDE, "crm": CRM_SIDE}
# How each old side keys a message (the TMA by an integer it numbers itself, the CRM by a UUID
# it is given: here the fill's md5('message' || n)), to edit one and to insert one.
MESSAGE_KEY = {"tma": "$1::bigint", "crm": "md5('message' || $1::bigint)::uuid"}
NEW_MESSAGE = {
    "tma": ("", ""),
    "crm": ("id, ", "gen_random_uuid(), "),
}


async def fill(dsn: str, messages: int, side: str) -> None:
    """N messages over N/10 tickets (and N/20 users on the TMA), written by set-based SQL."""
    tickets = max(1, messages // 10)
    tma = side == "tma"
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f"""
            INSERT INTO tickets (id, {"user_id, theme" if tma else "subject"}, status, project,
                                 external_url, created_at, updated_at)
            SELECT md5('ticket' || n)::uuid, {"1000 + n % $2, " if tma else ""}
                   'Order ' || n || ' is unpaid',
                   (ARRAY['open', 'in_progress', 'closed'])[1 + n % 3], 'shop',
                   'https://shop.example/orders/' || n,
                   now() - interval '1 day' * (n % 300), now() - interval '1 day' * (n % 300)
            FROM generate_series(1, $1) AS n
            """,
            *([tickets, max(1, messages // 20)] if tma else [tickets]),
        )
        await connection.execute(
            f"""
            INSERT INTO messages ({"" if tma else "id, "}ticket_id, sender, message,
                                  attachments, created_at)
            SELECT {"" if tma else "md5('message' || n)::uuid, "}
                   md5('ticket' || (1 + n % $2))::uuid,
                   CASE WHEN n % 3 = 0 THEN 'crm' ELSE 'local' END,
                   repeat('The payment for my order has not arrived yet. ', 3) || n,
                   '[]'::json, now() - interval '1 second' * ($1 - n)
            FROM generate_series(1, $1) AS n
            """,
            messages,
            tickets,
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


class Writer:
    """The old system at work during the migration, from its own thread: every 20 ms a user's
    message is inserted and, every other round, an old message is edited, each in its own
    transaction. The longest a statement took is the longest time writes were blocked. It stops
    at the first write the database refuses: the old tables are gone, the new system's turn."""

    def __init__(self, dsn: str, messages: int, side: str) -> None:
        self.dsn = dsn
        self.messages = messages
        self.side = side
        self.longest = 0.0
        self.written = 0  # inserts committed
        self.edited = 0
        self.stopped_by = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        id_column, id_value = NEW_MESSAGE[self.side]
        try:
            round_ = 0
            while not self._stop.is_set():
                round_ += 1
                started = time.perf_counter()
                try:
                    await connection.execute(
                        f"INSERT INTO messages ({id_column}ticket_id, sender, message, "
                        f"attachments, created_at) VALUES ({id_value}md5('ticket1')::uuid, "
                        "'local', 'Any news?', '[]', now())"
                    )
                    self.written += 1
                    if round_ % 2 == 0:
                        await connection.execute(
                            "UPDATE messages SET message = message || '.' "
                            f"WHERE id = {MESSAGE_KEY[self.side]}",
                            1 + round_ % self.messages,
                        )
                        self.edited += 1
                except asyncpg.PostgresError as exc:
                    self.stopped_by = type(exc).__name__
                    return
                finally:
                    self.longest = max(self.longest, time.perf_counter() - started)
                await asyncio.sleep(PROBE_EVERY)
        finally:
            await connection.close()

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Timed:
    """What each part of `migrate` took, by wrapping the functions it calls, and when each part
    started and ended (perf_counter), so the window with no side taking writes can be measured
    from the final step's start (its first statement locks the old tables) to the main chain's
    end (the database at head, when the new backend can serve)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}

    def wrap(self, owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            self.started.setdefault(label, started)
            try:
                return inner(*args, **kwargs)
            finally:
                self.ended[label] = time.perf_counter()
                self.seconds[label] = self.seconds.get(label, 0.0) + self.ended[label] - started

        setattr(owner, name, timed)


class Revisions(logging.Handler):
    """When Alembic starts each revision ("Running upgrade 0003 -> 0004, ..."): a revision
    lasts until the next one starts, the last until its chain's end."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.starts: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Running upgrade "):
            step = message.removeprefix("Running upgrade ").split(",", 1)[0]
            self.starts.append((step, time.perf_counter()))

    def __enter__(self) -> Revisions:
        logger = logging.getLogger("alembic.runtime.migration")
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        logger = logging.getLogger("alembic.runtime.migration")
        logger.removeHandler(self)
        logger.setLevel(self._level)

    def seconds(self, end: float) -> dict[str, float]:
        """Each revision's seconds, the last one's until `end`."""
        ends = [at for _step, at in self.starts[1:]] + [end]
        return {
            step: round(until - at, 2) for (step, at), until in zip(self.starts, ends, strict=True)
        }


async def _count(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM messages"))
    finally:
        await connection.close()


async def baseline(dsn: str) -> float:
    connection = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await connection.execute("CREATE TABLE baseline_copy AS SELECT * FROM messages")
        elapsed = time.perf_counter() - started
        await connection.execute("DROP TABLE baseline_copy")
        return elapsed
    finally:
        await connection.close()


def _load() -> str:
    """The machine's load average (1, 5, 15 min): the machine is shared, figures depend on it."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run(url: str, messages: int, side_name: str = "tma") -> dict[str, Any]:
    """Build, measure and drop one old database of `messages` messages of one side."""
    side = SIDES[side_name]
    name = f"cutover_bench_{os.getpid()}"
    asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))
    target = make_url(url).set(drivername="postgresql+asyncpg", database=name)
    target_url = target.render_as_string(hide_password=False)
    dsn = _dsn(url, name)
    try:
        started = time.perf_counter()
        legacy.create_legacy_database(target_url, side)
        asyncio.run(fill(dsn, messages, side_name))
        built = time.perf_counter() - started
        copy = asyncio.run(baseline(dsn))
        started = time.perf_counter()
        findings = legacy.check(target_url, side)
        checked = time.perf_counter() - started
        timed = Timed()
        timed.wrap(legacy, "check", "migrate_check")
        timed.wrap(legacy_online, "prepare", "prepare_online")
        timed.wrap(legacy_online, "finish", "final_step")
        timed.wrap(legacy, "upgrade", "main_chain")
        load_before = _load()
        with Writer(dsn, messages, side_name) as writer, Revisions() as revisions:
            started = time.perf_counter()
            legacy.migrate(target_url, side)
            at_head = time.perf_counter()
            migrated = at_head - started
        converted = asyncio.run(_count(dsn))
        if converted != messages + writer.written:  # every committed write was carried over
            raise RuntimeError(f"{converted} messages, {messages} + {writer.written} written")
        # The conversion revision is logged too; the main chain's revisions are those after it.
        main_chain = [(s, at) for s, at in revisions.starts if at >= timed.ended["final_step"]]
        revisions.starts = main_chain
        return {
            "side": side_name,
            "messages": messages,
            "findings": len(findings),
            "build_seconds": round(built, 2),
            "check_seconds": round(checked, 2),
            "migrate_seconds": round(migrated, 2),
            **{f"{key}_seconds": round(value, 2) for key, value in timed.seconds.items()},
            "main_chain_revision_seconds": revisions.seconds(at_head),
            # From the lock on the old tables to the database at head: neither the old system
            # nor the new one can take writes (the side is down for its users).
            "no_writes_window_seconds": round(at_head - timed.started["final_step"], 2),
            "writes_blocked_longest_seconds": round(writer.longest, 2),
            "writes_during_migrate": writer.written,
            "edits_during_migrate": writer.edited,
            "writer_stopped_by": writer.stopped_by,
            "baseline_copy_seconds": round(copy, 2),
            "migrate_vs_baseline": round(migrated / copy, 1) if copy else None,
            "load_average_before_after": f"{load_before} / {_load()}",
        }
    finally:
        asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--side", choices=sorted(SIDES), default="tma")
    parser.add_argument("--url", default=os.environ.get("TEST_DATABASE_URL", ""))
    parser.add_argument("--out", type=Path, default=OUT / "legacy_migration.json")
    args = parser.parse_args()
    if not args.url.startswith("postgres"):
        parser.error("a PostgreSQL URL is needed: --url or TEST_DATABASE_URL")
    result = run(args.url, args.messages, args.side)
    for key, value in result.items():
        print(f"{key:32} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
