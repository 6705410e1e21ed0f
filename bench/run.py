"""`make bench`: delivery figures on this machine, each beside a baseline measured in the same run.

1. Relay: both backends served by uvicorn (uvloop, httptools) on loopback with SQLite; Mini App
   users post messages concurrently to the TMA's user API; the figure is messages per second
   stored on the CRM, then delivery latency p50/p99 at half that rate. Baseline: the same relay
   with the peer client on plain httpx instead of aiohttp.
2. Backlog: 10,000 events queued at the TMA while the CRM is down, left as a long outage leaves
   them (backed off up to the 10-minute cap), then the CRM comes back; the figure is seconds until
   all are stored on the CRM. Baseline: a dispatcher that claims one event per round.

Figures, not pass/fail; the load average at the start is recorded, since other work on the machine
moves them. Results go to build/bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tma_impl.settings import TmaSettings
from tma_impl.telegram import TelegramUser, mint_init_data

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench"
SERVE = Path(__file__).resolve().parent / "serve.py"
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how UTCDateTime stores a moment in SQLite


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Backend:
    """One backend process served by bench/serve.py."""

    side: str
    port: int
    db: Path
    peer_port: int
    options: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, log: Path) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            str(SERVE),
            self.side,
            "--port",
            str(self.port),
            "--db",
            str(self.db),
            "--peer-url",
            f"http://127.0.0.1:{self.peer_port}",
            *self.options,
        ]
        # Its own working folder, so no .env of the developer's changes the figures.
        with log.open("ab") as sink:
            return subprocess.Popen(
                command, cwd=self.db.parent, stdout=sink, stderr=subprocess.STDOUT
            )

    async def start(self, session: aiohttp.ClientSession, log: Path) -> float:
        """Start and wait until ready; returns the moment it answered ready."""
        self.process = self.spawn(log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.side} exited; see {log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.url}/health/ready") as response:
                    if response.status == 200:
                        return time.monotonic()
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.side} did not become ready; see {log}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)  # graceful: the dispatcher settles its round
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def count(db: Path, query: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return int(conn.execute(query).fetchone()[0])


async def wait_for_count(db: Path, query: str, target: int, within: float) -> float | None:
    """Poll until the query counts `target`; the moment it did, or None after `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if count(db, query) >= target:
            return time.monotonic()
        await asyncio.sleep(0.01)
    return None


class MiniAppUsers:
    """Mini App users posting through the TMA's user API, signed as the development bot."""

    def __init__(self, session: aiohttp.ClientSession, tma_url: str, users: int) -> None:
        self.session = session
        self.url = tma_url
        token = TmaSettings().dev_bot_token
        now = datetime.now(UTC)
        self.headers = [
            {
                "Authorization": "tma "
                + mint_init_data(
                    bot_token=token,
                    user=TelegramUser(id=100_000 + n, first_name=f"User{n}"),
                    auth_date=now,
                )
            }
            for n in range(users)
        ]
        self.tickets = [""] * users  # user n's ticket

    async def open_tickets(self, concurrency: int) -> None:
        async def one(n: int) -> None:
            ticket_id = str(uuid.uuid4())
            body = {
                "id": ticket_id,
                "subject": f"Bench ticket {n}",
                "message": "first message",
                "message_id": str(uuid.uuid4()),
            }
            await self._post("/api/support/tickets", body, self.headers[n])
            self.tickets[n] = ticket_id

        await gather_limited([one(n) for n in range(len(self.headers))], concurrency)

    async def write(self, n: int) -> str:
        """User n % users writes in their ticket; returns the message id."""
        user = n % len(self.tickets)
        message_id = str(uuid.uuid4())
        await self._post(
            f"/api/support/tickets/{self.tickets[user]}/messages",
            {"id": message_id, "message": f"message {n}"},
            self.headers[user],
        )
        return message_id

    async def _post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        for attempt in range(3):
            try:
                async with self.session.post(
                    self.url + path, json=body, headers=headers
                ) as response:
                    # 200: a retry of a write that was stored (the client's ids make it safe).
                    if response.status not in (200, 201):
                        raise RuntimeError(f"{path}: {response.status} {await response.text()}")
                    return
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                # The server closed an idle keep-alive connection as we reused it: send again.
                if attempt == 2:
                    raise


async def gather_limited(coroutines: list[Any], concurrency: int) -> None:
    limit = asyncio.Semaphore(concurrency)

    async def run(coroutine: Any) -> None:
        async with limit:
            await coroutine

    await asyncio.gather(*(run(c) for c in coroutines))


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@contextlib.contextmanager
def running(*backends: Backend) -> Iterator[None]:
    try:
        yield
    finally:
        for backend in backends:
            backend.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def delivered_times(db: Path) -> dict[str, datetime]:
    """When the TMA recorded each message as acknowledged by the CRM."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT json_extract(payload, '$.message_id'), delivered_at FROM outbox "
            "WHERE kind = 'message' AND state = 'delivered'"
        ).fetchall()
    return {
        message_id: datetime.strptime(at, SQLITE_TIME).replace(tzinfo=UTC)
        for message_id, at in rows
    }


@dataclass(frozen=True)
class Variant:
    """What is measured: the product as configured, or a baseline."""

    name: str
    role: str  # product | baseline
    tma: list[str] = field(default_factory=list)  # options for bench/serve.py
    crm: list[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.name.split()[0]


RELAY = [
    Variant("aiohttp", "product"),
    Variant("httpx", "baseline", ["--transport", "httpx"], ["--transport", "httpx"]),
]
BACKLOG = [
    Variant("batched", "product"),
    Variant("one-per-round", "baseline", ["--batch-size", "1", "--per-stream", "1"]),
]

# --- 1. relay -----------------------------------------------------------------------------------


async def relay(variant: Variant, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    folder = work / f"relay-{variant.slug}"
    folder.mkdir(parents=True)
    tma_port, crm_port = free_port(), free_port()
    crm = Backend("crm", crm_port, folder / "crm.db", tma_port, variant.crm)
    tma = Backend("tma", tma_port, folder / "tma.db", crm_port, variant.tma)
    crm_messages = "SELECT count(*) FROM messages"
    async with client() as session:
        with running(tma, crm):
            await crm.start(session, folder / "crm.log")
            await tma.start(session, folder / "tma.log")
            users = MiniAppUsers(session, tma.url, args.tickets)
            await users.open_tickets(args.concurrency)
            await wait_for_count(crm.db, crm_messages, args.tickets, 60)

            # Throughput: closed loop, `concurrency` posts in flight, until all are at the CRM.
            n = args.messages
            base = count(crm.db, crm_messages)
            started = time.monotonic()
            await gather_limited([users.write(i) for i in range(n)], args.concurrency)
            accepted = time.monotonic()
            done = await wait_for_count(crm.db, crm_messages, base + n, 300)
            if done is None:
                raise RuntimeError(f"relay {variant.name}: not all {n} messages reached the CRM")
            throughput = n / (done - started)

            # Latency at half that rate: open loop, each message sent at its scheduled moment.
            rate = throughput / 2
            total = max(int(rate * args.latency_seconds), 50)
            sent_at: dict[str, datetime] = {}

            async def timed(i: int) -> None:
                moment = datetime.now(UTC)
                sent_at[await users.write(n + i)] = moment

            base = count(crm.db, crm_messages)
            tasks: list[asyncio.Task[None]] = []
            start = time.monotonic()
            for i in range(total):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(timed(i)))
            await asyncio.gather(*tasks)
            if await wait_for_count(crm.db, crm_messages, base + total, 300) is None:
                raise RuntimeError(f"relay {variant.name}: latency messages did not all arrive")
        # Stopped: the TMA's last round is settled and its database is quiet.
        acknowledged = delivered_times(tma.db)
    latencies = [(acknowledged[m] - at).total_seconds() * 1000 for m, at in sent_at.items()]
    return {
        "variant": variant.name,
        "role": variant.role,
        "messages": n,
        "concurrency": args.concurrency,
        "accepted_per_s": round(n / (accepted - started)),
        "delivered_per_s": round(throughput),
        "latency_rate_per_s": round(rate),
        "latency_messages": total,
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
    }


# --- 2. backlog ---------------------------------------------------------------------------------


def as_after_a_long_outage(db: Path, cap_seconds: float) -> int:
    """Put every pending event where a long outage leaves it: ten failed attempts behind it,
    the next one due somewhere within the cap, because the peer was unavailable."""
    now = datetime.now(UTC)
    rng = random.Random(1)
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM outbox WHERE state = 'pending'")]
        conn.executemany(
            "UPDATE outbox SET attempts = 10, last_failure = 'unavailable', "
            "last_error = 'ConnectError: peer down', next_attempt_at = ?, "
            "lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
            [
                (
                    (now + timedelta(seconds=rng.uniform(0, cap_seconds))).strftime(SQLITE_TIME),
                    event_id,
                )
                for event_id in ids
            ],
        )
        conn.commit()
    return len(ids)


def copy_database(source: Path, target: Path) -> None:
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


async def queue_backlog(work: Path, args: argparse.Namespace) -> tuple[Path, int]:
    """The TMA database holding the backlog, made once through the user API with the CRM down:
    users open tickets and write, 10 events per ticket."""
    folder = work / "backlog-queued"
    folder.mkdir(parents=True)
    tickets = args.backlog // 10
    tma = Backend("tma", free_port(), folder / "tma.db", free_port())
    async with client() as session:
        with running(tma):
            await tma.start(session, folder / "tma.log")
            users = MiniAppUsers(session, tma.url, tickets)
            await users.open_tickets(args.concurrency)
            await gather_limited(
                [users.write(i) for i in range(args.backlog - tickets)], args.concurrency
            )
    return tma.db, tickets


async def backlog(
    variant: Variant, queued: Path, tickets: int, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    folder = work / f"backlog-{variant.slug}"
    folder.mkdir(parents=True)
    tma_port, crm_port = free_port(), free_port()
    crm = Backend("crm", crm_port, folder / "crm.db", tma_port, variant.crm)
    tma = Backend("tma", tma_port, folder / "tma.db", crm_port, variant.tma)
    copy_database(queued, tma.db)
    events = as_after_a_long_outage(tma.db, cap_seconds=600)
    query = "SELECT count(*) FROM messages"
    async with client() as session:
        with running(tma, crm):
            await tma.start(session, folder / "tma.log")  # the CRM is still down
            back = await crm.start(session, folder / "crm.log")
            first = await wait_for_count(crm.db, query, 1, args.backlog_timeout)
            done = await wait_for_count(crm.db, query, events, args.backlog_timeout)
            stored = count(crm.db, query)
    return {
        "variant": variant.name,
        "role": variant.role,
        "events": events,
        "tickets": tickets,
        "first_delivery_s": None if first is None else round(first - back, 2),
        "drain_s": None if done is None else round(done - back, 2),
        "stored": stored,
        "events_per_s": round(stored / ((done or time.monotonic()) - back)),
        "finished": done is not None,
    }


# --- report -------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = OUT / datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
        "work": str(work),
    }
    if "relay" in args.only:
        runs = [await relay(v, work, args) for v in RELAY]
        ours, base = runs
        results["relay"] = {
            "runs": runs,
            "throughput_vs_baseline": ratio(ours["delivered_per_s"], base["delivered_per_s"]),
            "p99_vs_baseline": ratio(ours["p99_ms"], base["p99_ms"]),
            "targets": {"delivered_per_s": 2000, "p99_ms": 50},
        }
        print("\nRelay on SQLite, end to end: user API -> TMA -> CRM stored")
        columns = ["variant", "role", "messages", "accepted_per_s", "delivered_per_s"]
        columns += ["latency_rate_per_s", "p50_ms", "p99_ms", "max_ms"]
        print(table(runs, columns))
        relay_results = results["relay"]
        print(
            f"product vs baseline (httpx): throughput x{relay_results['throughput_vs_baseline']},"
            f" p99 x{relay_results['p99_vs_baseline']}. "
            "Targets: 2,000 msg/s, p99 < 50 ms at half load."
        )
    if "backlog" in args.only:
        queued, tickets = await queue_backlog(work, args)
        runs = [await backlog(v, queued, tickets, work, args) for v in BACKLOG]
        ours, base = runs
        results["backlog"] = {
            "runs": runs,
            "speedup_vs_baseline": ratio(ours["events_per_s"], base["events_per_s"]),
            "target_s": 10,
            "within_target": bool(ours["finished"] and ours["drain_s"] < 10),
        }
        print(f"\nBacklog of {args.backlog} events after a long outage; the CRM is back at t=0")
        columns = ["variant", "role", "events", "first_delivery_s", "drain_s", "events_per_s"]
        print(table(runs, [*columns, "finished"]))
        backlog_results = results["backlog"]
        print(
            f"product vs baseline (one event per round): x{backlog_results['speedup_vs_baseline']}"
            f" events/s. Target: drained in < 10 s. An unfinished drain stopped at"
            f" {args.backlog_timeout} s."
        )
    if "miniapp" in args.only:
        from miniapp_bench import measure, report  # bench/miniapp_bench.py

        results["miniapp"] = await measure(work, args)
        report(results["miniapp"])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=5000, help="relay throughput messages")
    parser.add_argument("--tickets", type=int, default=100, help="relay tickets (one per user)")
    parser.add_argument("--concurrency", type=int, default=64, help="posts in flight")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--backlog", type=int, default=10_000, help="events queued")
    parser.add_argument("--backlog-timeout", type=float, default=90.0)
    parser.add_argument("--miniapp-streams", type=int, default=20, help="open Mini App streams")
    parser.add_argument("--miniapp-replies", type=int, default=100)
    parser.add_argument("--miniapp-rate", type=float, default=10.0, help="operator replies/s")
    parser.add_argument("--only", nargs="+", default=["relay", "backlog", "miniapp"])
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
