"""`make bench-cutover`: the legacy migration of an old TMA database of N messages on PostgreSQL.

Builds an old TMA database (tma_impl/legacy's schema, 10 messages a ticket, bodies of a
realistic length), then runs `migrate` as the command does (the row check, the conversion in
one transaction, the main chain) while a probe takes the write lock an INSERT needs on
`messages` every 20 ms: the longest probe wait is the longest time writes were blocked.
Baseline of the same run: copying the same messages once into a new table with one
`CREATE TABLE AS` (what any conversion that rewrites the table costs at least).

Figures, not pass/fail. Needs a PostgreSQL server: `--url postgresql://user@host/postgres`
(or TEST_DATABASE_URL); the database it makes, `cutover_bench_<pid>`, is dropped at the end.
Results go to build/bench/legacy_migration.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from integration_kit import legacy
from tma_impl.legacy import SIDE

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


async def fill(dsn: str, messages: int) -> None:
    """N messages over N/10 tickets and N/20 users, written by set-based SQL."""
    tickets = max(1, messages // 10)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """
            INSERT INTO tickets (id, user_id, theme, status, project, external_url,
                                 created_at, updated_at)
            SELECT md5('ticket' || n)::uuid, 1000 + n % $2, 'Order ' || n || ' is unpaid',
                   (ARRAY['open', 'in_progress', 'closed'])[1 + n % 3], 'shop',
                   'https://shop.example/orders/' || n,
                   now() - interval '1 day' * (n % 300), now() - interval '1 day' * (n % 300)
            FROM generate_series(1, $1) AS n
            """,
            tickets,
            max(1, messages // 20),
        )
        await connection.execute(
            """
            INSERT INTO messages (ticket_id, sender, message, attachments, created_at)
            SELECT md5('ticket' || (1 + n % $2))::uuid,
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


class Probe:
    """Takes the lock an INSERT into `messages` takes, again and again, from its own thread."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.longest = 0.0
        self.probes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    async with connection.transaction():
                        await connection.execute("LOCK TABLE messages IN ROW EXCLUSIVE MODE")
                except asyncpg.PostgresError:
                    pass  # the table it waited for was dropped: it waited all the same
                self.longest = max(self.longest, time.perf_counter() - started)
                self.probes += 1
                await asyncio.sleep(PROBE_EVERY)
        finally:
            await connection.close()

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


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


def run(url: str, messages: int) -> dict[str, Any]:
    """Build, measure and drop one old database of `messages` messages."""
    name = f"cutover_bench_{os.getpid()}"
    asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))
    target = make_url(url).set(drivername="postgresql+asyncpg", database=name)
    target_url = target.render_as_string(hide_password=False)
    dsn = _dsn(url, name)
    try:
        started = time.perf_counter()
        legacy.create_legacy_database(target_url, SIDE)
        asyncio.run(fill(dsn, messages))
        built = time.perf_counter() - started
        copy = asyncio.run(baseline(dsn))
        started = time.perf_counter()
        findings = legacy.check(target_url, SIDE)
        checked = time.perf_counter() - started
        with Probe(dsn) as probe:
            started = time.perf_counter()
            legacy.migrate(target_url, SIDE)
            migrated = time.perf_counter() - started
        return {
            "messages": messages,
            "findings": len(findings),
            "build_seconds": round(built, 2),
            "check_seconds": round(checked, 2),
            "migrate_seconds": round(migrated, 2),
            "writes_blocked_longest_seconds": round(probe.longest, 2),
            "probes": probe.probes,
            "baseline_copy_seconds": round(copy, 2),
            "migrate_vs_baseline": round(migrated / copy, 1) if copy else None,
        }
    finally:
        asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--url", default=os.environ.get("TEST_DATABASE_URL", ""))
    parser.add_argument("--out", type=Path, default=OUT / "legacy_migration.json")
    args = parser.parse_args()
    if not args.url.startswith("postgres"):
        parser.error("a PostgreSQL URL is needed: --url or TEST_DATABASE_URL")
    result = run(args.url, args.messages)
    for key, value in result.items():
        print(f"{key:32} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
