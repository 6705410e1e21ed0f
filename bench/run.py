"""`make bench`: delivery figures on this machine, each beside a baseline measured in the same run.

1. Relay: both backends served by uvicorn (uvloop, httptools) on loopback with SQLite; Mini App
   users post messages concurrently to the TMA's user API; the figure is messages per second
   stored on the CRM, then delivery latency p50/p99 at half that rate. Baseline: the same relay
   with the peer client on plain httpx instead of aiohttp.
2. Backlog: 10,000 events queued at the TMA while the CRM is down, left as a long outage leaves
   them (backed off up to the 10-minute cap), then the CRM comes back; the figure is seconds until
   all are stored on the CRM. Baseline: a dispatcher that claims one event per round.
3. Rate limits on the receiver: the CRM alone, the peer's postMessage sent straight to it (closed
   loop); requests per second and latency with the limits in process and in Redis. Baseline: the
   same with no limit. Relay and backlog also report the most requests one caller made in one
   window of each limit (`rate_limit_peaks`): what the default limits must sit above.
4. Receiver: the CRM alone, served the same way, receiving postMessage from 64 concurrent
   callers (the TMA's part played by the bench); the figure is messages per second stored.
   Baseline: the same receiver without the change feed's log row, so the ratio is what the
   feed's bookkeeping costs on the receiving path.

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
from prometheus_client.parser import text_string_to_metric_families

from crm_impl.settings import CrmSettings
from generated import CONTRACT_VERSION
from integration_kit.migrate import upgrade
from integration_kit.signing import signature_headers
from tma_impl.settings import TmaSettings
from tma_impl.telegram import TelegramUser, mint_init_data

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench"
SERVE = Path(__file__).resolve().parent / "serve.py"
LEAN = Path(__file__).resolve().parent / "lean_relay.py"  # the lean reference (its docstring)
MIGRATIONS = {"tma": ROOT / "tma_impl" / "migrations", "crm": ROOT / "crm_impl" / "migrations"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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
    kind: str = "product"  # product: bench/serve.py; lean: bench/lean_relay.py

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, log: Path) -> subprocess.Popen[bytes]:
        env = None
        if self.kind == "lean":
            env = {**os.environ, **lean_secrets()}
        command = [
            sys.executable,
            str(LEAN if self.kind == "lean" else SERVE),
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
                command, cwd=self.db.parent, stdout=sink, stderr=subprocess.STDOUT, env=env
            )

    async def start(self, session: aiohttp.ClientSession, log: Path) -> float:
        """Start and wait until ready; returns the moment it answered ready."""
        if self.kind == "lean" and not self.db.exists():
            # The same schema as the product's: its own migrations make the lean's database.
            await asyncio.to_thread(upgrade, MIGRATIONS[self.side], f"sqlite:///{self.db}")
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


def lean_secrets() -> dict[str, str]:
    """The product's development secrets, handed to the lean relay (which imports nothing of it)."""
    tma, crm = TmaSettings(), CrmSettings()
    return {
        "LEAN_BOT_TOKEN": tma.dev_bot_token,
        "LEAN_PEER_TOKEN": tma.peer_token,
        "LEAN_SIGNING_SECRET": tma.peer_signing_secret,
        "LEAN_ACCEPTED_SECRETS": ",".join(crm.inbound_signing_secrets),
        "LEAN_INBOUND_TOKENS": ",".join(crm.inbound_tokens),
        "LEAN_CONTRACT_VERSION": CONTRACT_VERSION,
    }


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (an ASGI server may serve from a child process)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(parents.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU used so far by these processes and their children (from /proc)."""
    total = 0
    for root in pids:
        for pid in process_tree(root):
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rfind(")") + 2 :].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of a backend (its process tree), in MB."""
    kb = 0
    for child in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
    return round(kb / 1024, 1)


def pid_of(backend: Backend) -> int:
    if backend.process is None:
        raise RuntimeError(f"{backend.side} is not running")
    return backend.process.pid


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


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


async def rate_peaks(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """A backend's rate_limit_peak_count samples: "scope limit" -> the most requests one caller
    made in one window of that limit."""
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    return {
        f"{sample.labels['scope']} {sample.labels['limit']}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "rate_limit_peak_count"
    }


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
        self.latency_seconds = 5.0

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
    kind: str = "product"  # product: bench/serve.py; lean: bench/lean_relay.py

    @property
    def slug(self) -> str:
        return self.name.split()[0]


SECTIONS = ["relay", "receiver", "backlog", "ratelimit", "miniapp", "pg", "servers", "profile"]
DEFAULT_SECTIONS = ["relay", "backlog", "pg", "receiver", "ratelimit", "miniapp"]
PRODUCT = Variant("product", "product")
LEAN_RELAY = Variant("lean", "lean", kind="lean")
HTTPX = Variant("httpx", "baseline", ["--transport", "httpx"], ["--transport", "httpx"])
SERVERS = [
    Variant("uvicorn", "product"),
    Variant("granian", "candidate", ["--server", "granian"], ["--server", "granian"]),
]
BACKLOG = [
    Variant("batched", "product"),
    Variant("one-per-round", "baseline", ["--batch-size", "1", "--per-stream", "1"]),
]

# --- 1. relay -----------------------------------------------------------------------------------


async def relay(
    variant: Variant,
    work: Path,
    args: argparse.Namespace,
    *,
    round_: int = 0,
    latency_rate: float | None = None,
    latency: bool = True,
) -> dict[str, Any]:
    """One relay run: throughput with server CPU per message, then latency at `latency_rate`
    (half this run's own rate when None), then each backend's RSS."""
    folder = work / f"relay-{variant.slug}-{round_}"
    folder.mkdir(parents=True)
    tma_port, crm_port = free_port(), free_port()
    crm = Backend("crm", crm_port, folder / "crm.db", tma_port, variant.crm, kind=variant.kind)
    tma = Backend("tma", tma_port, folder / "tma.db", crm_port, variant.tma, kind=variant.kind)
    crm_messages = "SELECT count(*) FROM messages"
    load = load_average()
    async with client() as session:
        with running(tma, crm):
            await crm.start(session, folder / "crm.log")
            await tma.start(session, folder / "tma.log")
            users = MiniAppUsers(session, tma.url, args.tickets)
            users.latency_seconds = args.latency_seconds
            await users.open_tickets(args.concurrency)
            await wait_for_count(crm.db, crm_messages, args.tickets, 60)

            # Throughput: closed loop, `concurrency` posts in flight, until all are at the CRM.
            n = args.messages
            base = count(crm.db, crm_messages)
            cpu_before = [cpu_seconds([pid_of(tma)]), cpu_seconds([pid_of(crm)])]
            started = time.monotonic()
            await gather_limited([users.write(i) for i in range(n)], args.concurrency)
            accepted = time.monotonic()
            done = await wait_for_count(crm.db, crm_messages, base + n, 300)
            if done is None:
                raise RuntimeError(f"relay {variant.name}: not all {n} messages reached the CRM")
            cpu_used = [
                cpu_seconds([pid_of(tma)]) - cpu_before[0],
                cpu_seconds([pid_of(crm)]) - cpu_before[1],
            ]
            throughput = n / (done - started)
            result: dict[str, Any] = {
                "variant": variant.name,
                "role": variant.role,
                "round": round_,
                "load_avg": load,
                "messages": n,
                "concurrency": args.concurrency,
                "accepted_per_s": round(n / (accepted - started)),
                "delivered_per_s": round(throughput),
                "cpu_ms_per_msg": round(sum(cpu_used) / n * 1000, 3),
                "tma_cpu_ms_per_msg": round(cpu_used[0] / n * 1000, 3),
                "crm_cpu_ms_per_msg": round(cpu_used[1] / n * 1000, 3),
            }
            if latency:
                result.update(await latency_phase(users, crm, n, latency_rate or throughput / 2))
            result["rss_mb"] = {"tma": rss_mb(pid_of(tma)), "crm": rss_mb(pid_of(crm))}
            if variant.kind == "product":
                result["rate_limit_peaks"] = {
                    "tma": await rate_peaks(session, tma.url),
                    "crm": await rate_peaks(session, crm.url),
                }
        # Stopped: the TMA's last round is settled and its database is quiet.
        if latency:
            acknowledged = delivered_times(tma.db)
            sent_at: dict[str, datetime] = result.pop("sent_at")
            latencies = [(acknowledged[m] - at).total_seconds() * 1000 for m, at in sent_at.items()]
            result["p50_ms"] = round(statistics.median(latencies), 1)
            result["p99_ms"] = round(percentile(latencies, 99), 1)
            result["max_ms"] = round(max(latencies), 1)
    return result


async def latency_phase(
    users: MiniAppUsers, crm: Backend, offset: int, rate: float
) -> dict[str, Any]:
    """Open loop at `rate`: each message sent at its scheduled moment; the send times by id."""
    crm_messages = "SELECT count(*) FROM messages"
    total = max(int(rate * users.latency_seconds), 50)
    sent_at: dict[str, datetime] = {}

    async def timed(i: int) -> None:
        moment = datetime.now(UTC)
        sent_at[await users.write(offset + i)] = moment

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
        raise RuntimeError("relay: latency messages did not all arrive")
    return {"latency_rate_per_s": round(rate), "latency_messages": total, "sent_at": sent_at}


# --- PostgreSQL: API processes and 1, 2, 4 workers per side ------------------------------------

PG_URL = os.environ.get(
    "BENCH_DATABASE_URL",
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)


def pg_url(name: str, driver: str = "postgresql+asyncpg") -> str:
    from sqlalchemy.engine import make_url

    return make_url(PG_URL).set(drivername=driver, database=name).render_as_string(False)


async def pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg_url(make_url_database(PG_URL), "postgresql"), timeout=3)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def make_url_database(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or "postgres"


async def pg_answers() -> bool:
    try:
        await pg_admin("SELECT 1")
    except (OSError, TimeoutError, Exception):  # any failure: not reachable
        return False
    return True


async def pg_count(name: str, query: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(pg_url(name, "postgresql"))
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def pg_wait(name: str, query: str, target: int, within: float) -> float | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await pg_count(name, query) >= target:
            return time.monotonic()
        await asyncio.sleep(0.02)
    return None


@dataclass
class Processes:
    """Backend processes started with the product's own commands (`serve`, `worker`)."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, side: str, command: list[str], env: dict[str, str], log: Path) -> None:
        with log.open("ab") as sink:
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", f"{side}_impl", *command],
                    cwd=log.parent,
                    env={**os.environ, **env},
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            )

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_ready(session: aiohttp.ClientSession, url: str, procs: Processes) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs.procs):
            raise RuntimeError(f"a backend process exited before {url} was ready")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{url}/health/ready") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


async def pg_relay(workers: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The relay on PostgreSQL: one API process per side (`serve --no-dispatcher`) and `workers`
    dispatcher processes per side (`worker`), on fresh databases."""
    folder = work / f"pg-{workers}"
    folder.mkdir(parents=True)
    tag = uuid.uuid4().hex[:8]
    names = {side: f"bench_{side}_{tag}" for side in ("tma", "crm")}
    ports = {"tma": free_port(), "crm": free_port()}
    load = load_average()
    for side, name in names.items():
        await pg_admin(f'CREATE DATABASE "{name}"')
        await asyncio.to_thread(upgrade, MIGRATIONS[side], pg_url(name))
    procs = Processes()
    try:
        for side, peer in (("crm", "tma"), ("tma", "crm")):
            prefix = side.upper()
            env = {
                f"{prefix}_DATABASE_URL": pg_url(names[side]),
                f"{prefix}_PEER_URL": f"http://127.0.0.1:{ports[peer]}",
                f"{prefix}_PORT": str(ports[side]),
            }
            log = folder / f"{side}.log"
            procs.start(side, ["serve", "--no-dispatcher", "--no-migrate"], env, log)
            for _ in range(workers):
                procs.start(side, ["worker"], env, log)
        crm_messages = "SELECT count(*) FROM messages"
        async with client() as session:
            for side in ("crm", "tma"):
                await wait_ready(session, f"http://127.0.0.1:{ports[side]}", procs)
            users = MiniAppUsers(session, f"http://127.0.0.1:{ports['tma']}", args.tickets)
            await users.open_tickets(args.concurrency)
            if await pg_wait(names["crm"], crm_messages, args.tickets, 60) is None:
                raise RuntimeError(f"pg {workers}: the tickets did not reach the CRM")
            n = args.pg_messages
            base = await pg_count(names["crm"], crm_messages)
            cpu_before = cpu_seconds(procs.pids())
            started = time.monotonic()
            await gather_limited([users.write(i) for i in range(n)], args.concurrency)
            accepted = time.monotonic()
            done = await pg_wait(names["crm"], crm_messages, base + n, 300)
            if done is None:
                raise RuntimeError(f"pg {workers}: not all {n} messages reached the CRM")
            cpu = cpu_seconds(procs.pids()) - cpu_before
    finally:
        procs.stop()
        for name in names.values():
            with contextlib.suppress(Exception):
                await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "workers_per_side": workers,
        "load_avg": load,
        "messages": n,
        "accepted_per_s": round(n / (accepted - started)),
        "delivered_per_s": round(n / (done - started)),
        "cpu_ms_per_msg": round(cpu / n * 1000, 3),
    }


# --- 3. receiver ---------------------------------------------------------------------------------

RECEIVER = [
    Variant("with-change-log", "product"),
    Variant("without-change-log", "baseline", [], ["--no-change-log"]),
]
TMA_TO_CRM = {"Authorization": "Bearer dev-tma-to-crm"}  # the CRM's development token
# The TMA's development signing secret, which the CRM's development settings accept.
TMA_SIGNING_SECRET = TmaSettings.model_fields["peer_signing_secret"].default


def signed(body: dict[str, Any], token_headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """The body's bytes and the headers of a request as the TMA sends it: bearer token and
    Standard Webhooks signature (docs/delivery.md), so the bench pays what a peer pays."""
    data = json.dumps(body).encode()
    headers = {
        **token_headers,
        "Content-Type": "application/json",
        **signature_headers(
            TMA_SIGNING_SECRET, msg_id=str(uuid.uuid4()), timestamp=int(time.time()), body=data
        ),
    }
    return data, headers


async def receiver(
    variant: Variant, work: Path, args: argparse.Namespace, round_: int
) -> dict[str, Any]:
    folder = work / f"receiver-{variant.slug}-{round_}"
    folder.mkdir(parents=True)
    crm = Backend("crm", free_port(), folder / "crm.db", free_port(), variant.crm)
    url = f"{crm.url}/api/integration"
    async with client() as session:
        with running(crm):
            await crm.start(session, folder / "crm.log")
            tickets = [str(uuid.uuid4()) for _ in range(args.tickets)]

            async def post(path: str, body: dict[str, Any]) -> None:
                data, headers = signed(body, TMA_TO_CRM)
                async with session.post(url + path, data=data, headers=headers) as response:
                    if response.status not in (200, 201):
                        raise RuntimeError(f"{path}: {response.status} {await response.text()}")

            now = datetime.now(UTC).isoformat()
            await gather_limited(
                [
                    post(
                        "/tickets",
                        {
                            "external_ticket_id": ticket,
                            "subject": "Bench ticket",
                            "message": "first message",
                            "external_message_id": str(uuid.uuid4()),
                            "customer": {"telegram_user_id": 100_000 + n, "first_name": "U"},
                            "created_at": now,
                        },
                    )
                    for n, ticket in enumerate(tickets)
                ],
                args.concurrency,
            )
            n = args.messages
            started = time.monotonic()
            await gather_limited(
                [
                    post(
                        "/messages",
                        {
                            "external_ticket_id": tickets[i % len(tickets)],
                            "external_message_id": str(uuid.uuid4()),
                            "sender": "tma",
                            "message": f"message {i}",
                            "created_at": now,
                        },
                    )
                    for i in range(n)
                ],
                args.concurrency,
            )
            elapsed = time.monotonic() - started
    return {
        "variant": variant.name,
        "role": variant.role,
        "messages": n,
        "stored_per_s": round(n / elapsed),
        "log_rows": count(crm.db, "SELECT count(*) FROM change_log"),
    }


# --- 2. backlog ---------------------------------------------------------------------------------


def as_after_a_long_outage(db: Path, cap_seconds: float) -> int:
    """Put every pending event where a long outage leaves it: ten failed attempts behind it,
    the next one due somewhere within the cap, because the peer was unavailable."""
    now = datetime.now(UTC)
    # S311: seeded, so every run spreads the backlog the same way; nothing secret.
    rng = random.Random(1)  # noqa: S311
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
            peaks = {"crm": await rate_peaks(session, crm.url)}
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
        "rate_limit_peaks": peaks,
    }


# --- 3. rate limits on the receiver ------------------------------------------------------------

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PEER_TOKEN = "dev-tma-to-crm"  # noqa: S105 - the CRM's published development inbound token


def receiving_variants(prefix: str) -> list[Variant]:
    # The limit is set far above what the loop can reach, so every variant pays for the check and
    # none is refused: the difference is the cost of counting, not of 429s.
    high = ["--integration-rate-limit", "1000000/second"]
    return [
        Variant("no limit", "baseline", crm=["--integration-rate-limit", ""]),
        Variant("in-process", "product", crm=high),
        Variant(
            "redis",
            "product",
            crm=[*high, "--rate-limit-storage", REDIS_URL, "--rate-limit-prefix", prefix],
        ),
    ]


def redis_answers() -> bool:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


async def check_cost(storage_url: str, checks: int) -> float:
    """Microseconds per limiter check in this process, one caller, against `storage_url`."""
    from integration_kit.ratelimit import RateLimiter

    prefix = f"ratelimit-bench-{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(
        limits={"bench": "1000000/second"}, storage_url=storage_url, key_prefix=prefix
    )
    try:
        for _ in range(100):  # warm-up: the connection, the Lua script
            await limiter.check("bench", "warm-up")
        started = time.perf_counter()
        for _ in range(checks):
            await limiter.check("bench", "caller")
        elapsed = time.perf_counter() - started
    finally:
        await limiter.close()
        if storage_url:
            delete_bench_keys(prefix)
    return round(elapsed / checks * 1e6, 1)


@dataclass
class Receiver:
    """One CRM of the receiving benchmark and what its bursts measured."""

    variant: Variant
    backend: Backend
    ticket: str = field(default_factory=lambda: str(uuid.uuid4()))
    rates: list[float] = field(default_factory=list)  # requests per second, one per burst
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    async def post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> None:
        data, headers = signed(body, {"Authorization": f"Bearer {PEER_TOKEN}"})
        started = time.perf_counter()
        async with session.post(self.backend.url + path, data=data, headers=headers) as response:
            await response.read()
            self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
        self.latencies.append((time.perf_counter() - started) * 1000)

    def message(self, n: int) -> dict[str, Any]:
        return {
            "external_ticket_id": self.ticket,
            "external_message_id": str(uuid.uuid4()),
            "sender": "tma",
            "message": f"message {n}",
            "created_at": datetime.now(UTC).isoformat(),
        }

    async def burst(self, session: aiohttp.ClientSession, n: int, concurrency: int) -> float:
        started = time.monotonic()
        await gather_limited(
            [self.post(session, "/api/integration/messages", self.message(i)) for i in range(n)],
            concurrency,
        )
        return n / (time.monotonic() - started)


async def receiving(
    variants: list[Variant], work: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """All variants served at once; bursts of postMessage take turns between them, in rotating
    order, so load from elsewhere on the machine falls on every variant alike."""
    receivers = []
    for variant in variants:
        folder = work / f"receiving-{variant.slug}"
        folder.mkdir(parents=True)
        backend = Backend("crm", free_port(), folder / "crm.db", free_port(), variant.crm)
        receivers.append(Receiver(variant, backend))
    now = datetime.now(UTC).isoformat()
    rounds = max(args.receiving_rounds, 1)
    per_burst = max(args.receiving // rounds, 1)
    async with client() as session:
        with running(*(r.backend for r in receivers)):
            for receiver in receivers:
                await receiver.backend.start(session, receiver.backend.db.parent / "crm.log")
                await receiver.post(
                    session,
                    "/api/integration/tickets",
                    {
                        "external_ticket_id": receiver.ticket,
                        "subject": "Bench",
                        "message": "first",
                        "external_message_id": str(uuid.uuid4()),
                        "customer": {"telegram_user_id": 100_001, "first_name": "Bench"},
                        "created_at": now,
                    },
                )
                # A warm-up, not counted: connections, caches, the Redis script loaded.
                await receiver.burst(session, 200, args.concurrency)
                receiver.latencies.clear()
                receiver.statuses.clear()
            for turn in range(rounds):
                for receiver in (
                    receivers[turn % len(receivers) :] + receivers[: turn % len(receivers)]
                ):
                    receiver.rates.append(
                        await receiver.burst(session, per_burst, args.concurrency)
                    )
    return [
        {
            "variant": r.variant.name,
            "role": r.variant.role,
            "requests": per_burst * rounds,
            "rounds": rounds,
            "per_s": round(statistics.median(r.rates)),
            "p50_ms": round(statistics.median(r.latencies), 2),
            "p99_ms": round(percentile(r.latencies, 99), 2),
            "statuses": {str(k): v for k, v in sorted(r.statuses.items())},
        }
        for r in receivers
    ]


# --- report -------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["delivered_per_s", "accepted_per_s", "cpu_ms_per_msg", "tma_cpu_ms_per_msg"]
    keys += ["crm_cpu_ms_per_msg", "p50_ms", "p99_ms", "max_ms", "latency_rate_per_s"]
    out: dict[str, Any] = {key: median_of(runs, key) for key in keys}
    out["rss_mb"] = {
        side: max(r["rss_mb"][side] for r in runs if "rss_mb" in r) for side in ("tma", "crm")
    }
    out["runs"] = len(runs)
    return out


async def relay_section(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Product and lean alternated (A/B/A/B) so drift in the machine's load falls on both; the
    lean's latency is measured at half of the product's peak rate of the same round; the httpx
    baseline once at the end."""
    product_runs, lean_runs = [], []
    for round_ in range(args.rounds):
        ours = await relay(PRODUCT, work, args, round_=round_)
        product_runs.append(ours)
        half = ours["delivered_per_s"] / 2
        lean_runs.append(await relay(LEAN_RELAY, work, args, round_=round_, latency_rate=half))
    baseline = await relay(HTTPX, work, args)
    product, lean = medians(product_runs), medians(lean_runs)
    return {
        "runs": [*product_runs, *lean_runs, baseline],
        "product": product,
        "lean": lean,
        "baseline": baseline,
        "product_vs_lean": {
            "throughput": ratio(product["delivered_per_s"], lean["delivered_per_s"]),
            "cpu_per_msg": ratio(product["cpu_ms_per_msg"], lean["cpu_ms_per_msg"]),
            "p99": ratio(product["p99_ms"], lean["p99_ms"]),
        },
        "product_vs_baseline": {
            "throughput": ratio(product["delivered_per_s"], baseline["delivered_per_s"]),
            "cpu_per_msg": ratio(product["cpu_ms_per_msg"], baseline["cpu_ms_per_msg"]),
        },
    }


def print_relay(relay_results: dict[str, Any]) -> None:
    print(
        "\nRelay on SQLite, end to end: user API -> TMA -> CRM stored (product / lean alternated)"
    )
    columns = ["variant", "round", "delivered_per_s", "cpu_ms_per_msg", "tma_cpu_ms_per_msg"]
    columns += ["crm_cpu_ms_per_msg", "latency_rate_per_s", "p50_ms", "p99_ms", "rss_mb"]
    print(table(relay_results["runs"], [*columns, "load_avg"]))
    vs_lean, vs_base = relay_results["product_vs_lean"], relay_results["product_vs_baseline"]
    print(
        f"medians, product / lean: throughput x{vs_lean['throughput']}, CPU per message"
        f" x{vs_lean['cpu_per_msg']}, p99 x{vs_lean['p99']}; product / httpx baseline:"
        f" throughput x{vs_base['throughput']}, CPU per message x{vs_base['cpu_per_msg']}"
    )


async def servers_section(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The product under each ASGI server, alternated, throughput and CPU per message only."""
    try:
        import granian  # noqa: F401 - only whether it is installed
    except ImportError:
        print("\ngranian is not installed (.venv/bin/pip install granian): servers skipped")
        return {"skipped": "granian not installed"}
    runs = [
        await relay(v, work, args, round_=i, latency=False)
        for i in range(args.server_rounds)
        for v in SERVERS
    ]
    figures = {}
    for v in SERVERS:
        own = [r for r in runs if r["variant"] == v.name]
        figures[v.name] = {
            "delivered_per_s": median_of(own, "delivered_per_s"),
            "cpu_ms_per_msg": median_of(own, "cpu_ms_per_msg"),
        }
    print("\nASGI servers: the product relay on SQLite, throughput phase only, alternated")
    columns = ["variant", "round", "delivered_per_s", "cpu_ms_per_msg", "tma_cpu_ms_per_msg"]
    print(table(runs, [*columns, "crm_cpu_ms_per_msg", "rss_mb", "load_avg"]))
    print("medians: " + "; ".join(f"{k} {v}" for k, v in figures.items()))
    return {"runs": runs, "medians": figures}


# Where a sample's time goes: the leaf-most frame whose file matches decides (first match wins,
# from the leaf up), so time in json called by SQLAlchemy counts as json.
PROFILE_GROUPS = [
    ("sqlite (driver calls)", ("sqlite_inline.py", "aiosqlite", "sqlite3/")),
    ("json", ("json/",)),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("validation (pydantic, contract bodies)", ("pydantic", "contract_body.py", "api_body.py")),
    ("signing (Standard Webhooks, hmac)", ("signing.py", "standardwebhooks", "hmac.py")),
    ("initData check", ("initdata.py",)),
    ("peer client (generated, httpx, aiohttp client)",
     ("generated/", "httpx", "aiohttp/client", "aiohttp/connector", "aiohttp/streams")),
    ("web stack (uvicorn, starlette, fastapi)",
     ("uvicorn/", "starlette/", "fastapi/", "httptools")),
    ("rate limits", ("ratelimit.py", "throttle.py", "limits/")),
    ("metrics and logging", ("prometheus_client", "logging/", "request_context.py")),
    ("event loop (asyncio, uvloop)", ("asyncio/", "uvloop")),
    ("uuid, datetime, other stdlib", ("uuid.py", "_strptime.py", "enum.py", "re/", "functools.py")),
]  # fmt: skip


def group_samples(raw: str) -> dict[str, int]:
    """Samples per group from py-spy's raw (collapsed) output: `frame;frame;... count`."""
    totals: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = stack.split(";")
        group = "own code (routes, services, dispatcher)"
        for frame in reversed(frames):
            found = next((g for g, keys in PROFILE_GROUPS if any(k in frame for k in keys)), None)
            if found:
                group = found
                break
        totals[group] = totals.get(group, 0) + int(number)
    return totals


def start_spy(spy: Path, pid: int, out: Path) -> subprocess.Popen[bytes]:
    # Non-blocking: the process is not paused to be sampled, so the profile barely slows it.
    command = [str(spy), "record", "--nonblocking", "--format", "raw", "--rate", "200"]
    return subprocess.Popen(
        [*command, "--pid", str(pid), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def profile_section(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """py-spy samples both product backends during a relay's throughput phase; the shares of
    time per group of code (PROFILE_GROUPS)."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("\npy-spy is not installed (.venv/bin/pip install py-spy): profile skipped")
        return {"skipped": "py-spy not installed"}
    folder = work / "profile"
    folder.mkdir(parents=True)
    tma_port, crm_port = free_port(), free_port()
    crm = Backend("crm", crm_port, folder / "crm.db", tma_port)
    tma = Backend("tma", tma_port, folder / "tma.db", crm_port)
    shares: dict[str, dict[str, float]] = {}
    async with client() as session:
        with running(tma, crm):
            await crm.start(session, folder / "crm.log")
            await tma.start(session, folder / "tma.log")
            users = MiniAppUsers(session, tma.url, args.tickets)
            await users.open_tickets(args.concurrency)
            await wait_for_count(crm.db, "SELECT count(*) FROM messages", args.tickets, 60)
            spies = {
                backend.side: start_spy(spy, pid_of(backend), folder / f"{backend.side}.txt")
                for backend in (tma, crm)
            }
            await asyncio.sleep(1)  # py-spy attached
            base = count(crm.db, "SELECT count(*) FROM messages")
            n = args.messages
            await gather_limited([users.write(i) for i in range(n)], args.concurrency)
            await wait_for_count(crm.db, "SELECT count(*) FROM messages", base + n, 300)
            for spy_process in spies.values():
                spy_process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                spy_process.wait(timeout=30)
    for side in ("tma", "crm"):
        path = folder / f"{side}.txt"
        totals = group_samples(path.read_text()) if path.exists() else {}
        whole = sum(totals.values()) or 1
        shares[side] = {
            group: round(samples / whole * 100, 1)
            for group, samples in sorted(totals.items(), key=lambda item: -item[1])
        }
    print("\nProfile of the product under the relay (py-spy, share of each backend's samples, %)")
    for side, groups in shares.items():
        print(f"{side}: " + ", ".join(f"{g} {v}" for g, v in groups.items()))
    return {"shares_percent": shares, "stacks": str(folder)}


def drained(run: dict[str, Any]) -> str:
    if run["drain_s"] is None:
        return f"unfinished: {run['stored']} stored ({run['events_per_s']}/s) when it stopped"
    return f"{run['drain_s']} s ({run['events_per_s']}/s)"


def verdict(met: bool | None, short: str) -> str:
    if met is None:
        return "not measured"
    return "met" if met else f"short by {short}"


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 13 with what this run measured and whether it is met."""
    rows: list[dict[str, Any]] = []
    relay_results = results.get("relay")
    if relay_results:
        product, lean = relay_results["product"], relay_results["lean"]
        tp = relay_results["product_vs_lean"]["throughput"]
        cpu = relay_results["product_vs_lean"]["cpu_per_msg"]
        rows.append(
            {
                "target": "SQLite msg/s >= 0.8x lean",
                "measured": f"{product['delivered_per_s']:.0f} / {lean['delivered_per_s']:.0f}"
                f" = x{tp}",
                "verdict": verdict(
                    tp >= 0.8 if tp else None, f"x{round(0.8 / tp, 2) if tp else '?'}"
                ),
            }
        )
        rows.append(
            {
                "target": "CPU/msg <= 1.3x lean",
                "measured": f"{product['cpu_ms_per_msg']} / {lean['cpu_ms_per_msg']} ms = x{cpu}",
                "verdict": verdict(
                    cpu <= 1.3 if cpu else None, f"x{round(cpu / 1.3, 2) if cpu else '?'}"
                ),
            }
        )
        p99 = product["p99_ms"]
        rows.append(
            {
                "target": "p99 < 20 ms at half peak",
                "measured": f"{p99} ms at {product['latency_rate_per_s']:.0f}/s"
                f" (lean {lean['p99_ms']} ms)",
                "verdict": verdict(p99 < 20, f"{round(p99 - 20, 1)} ms"),
            }
        )
        rss = max(product["rss_mb"].values())
        rows.append(
            {
                "target": "RSS < 150 MB per backend",
                "measured": f"tma {product['rss_mb']['tma']}, crm {product['rss_mb']['crm']} MB"
                f" (lean {lean['rss_mb']['tma']}, {lean['rss_mb']['crm']})",
                "verdict": verdict(rss < 150, f"{round(rss - 150, 1)} MB"),
            }
        )
    backlog_results = results.get("backlog")
    if backlog_results:
        ours = backlog_results["runs"][0]
        drain = ours["drain_s"]
        rows.append(
            {
                "target": "10,000-event drain < 5 s",
                "measured": f"{drained(ours)}; one per round:"
                f" {drained(backlog_results['runs'][1])}",
                "verdict": verdict(
                    drain is not None and drain < 5, f"{round((drain or 0) - 5, 2)} s"
                ),
            }
        )
    pg = results.get("pg", {})
    if "runs" in pg:
        curve = {r["workers_per_side"]: r["delivered_per_s"] for r in pg["runs"]}
        rows.append(
            {
                "target": "PostgreSQL 1/2/4 workers curve",
                "measured": ", ".join(f"{w}: {v} msg/s" for w, v in curve.items()),
                "verdict": "measured",
            }
        )
        if relay_results and 1 in curve:
            sqlite = relay_results["product"]["delivered_per_s"]
            rows.append(
                {
                    "target": "PostgreSQL 1 worker >= SQLite",
                    "measured": f"{curve[1]} vs {sqlite:.0f} msg/s",
                    "verdict": verdict(curve[1] >= sqlite, f"x{round(sqlite / curve[1], 2)}"),
                }
            )
    elif pg:
        rows.append({"target": "PostgreSQL curve", "measured": pg["skipped"], "verdict": "skipped"})
    return rows  # fmt: skip


def print_summary(rows: list[dict[str, Any]]) -> None:
    if rows:
        print("\nTargets (issue 13; same-run figures on a shared, loaded machine):")
        print(table(rows, ["target", "measured", "verdict"]))


def markdown(results: dict[str, Any]) -> str:
    """The tables of docs/performance.md, from one run's results."""
    lines = [
        f"Run of {results['started']}, load average {results['machine']['load_avg_at_start']}"
        f" at the start, {results['machine'].get('load_avg_at_end')} at the end"
        f" ({results['machine']['cpus']} cores, shared).",
        "",
    ]
    relay_results = results.get("relay")
    if relay_results:
        product, lean, base = (
            relay_results["product"],
            relay_results["lean"],
            relay_results["baseline"],
        )
        vs = relay_results["product_vs_lean"]
        lines += [
            f"| relay on SQLite (medians of {product['runs']} alternated runs) | product | lean |"
            " product / lean | httpx baseline |",
            "|---|---|---|---|---|",
            f"| delivered msg/s | {product['delivered_per_s']:.0f} |"
            f" {lean['delivered_per_s']:.0f} |"
            f" x{vs['throughput']} | {base['delivered_per_s']} |",
            f"| server CPU ms per message (TMA + CRM) | {product['cpu_ms_per_msg']}"
            f" ({product['tma_cpu_ms_per_msg']} + {product['crm_cpu_ms_per_msg']}) |"
            f" {lean['cpu_ms_per_msg']} ({lean['tma_cpu_ms_per_msg']} +"
            f" {lean['crm_cpu_ms_per_msg']}) |"
            f" x{vs['cpu_per_msg']} | {base['cpu_ms_per_msg']} |",
            f"| p50 / p99 ms at {product['latency_rate_per_s']:.0f} msg/s"
            " (half the product's peak) |"
            f" {product['p50_ms']} / {product['p99_ms']} | {lean['p50_ms']} / {lean['p99_ms']} |"
            f" p99 x{vs['p99']} | {base.get('p50_ms')} / {base.get('p99_ms')} (at its own half) |",
            f"| RSS MB after the run, TMA / CRM | {product['rss_mb']['tma']} /"
            f" {product['rss_mb']['crm']} |"
            f" {lean['rss_mb']['tma']} / {lean['rss_mb']['crm']} | | {base['rss_mb']['tma']} /"
            f" {base['rss_mb']['crm']} |",
            "",
        ]
    backlog_results = results.get("backlog")
    if backlog_results:
        ours, base = backlog_results["runs"]
        lines += [
            "| backlog of 10,000 events after a long outage | product | one event per round |",
            "|---|---|---|",
            f"| drained in | {drained(ours)} | {drained(base)} |",
            "",
        ]
    pg = results.get("pg", {})
    if "runs" in pg:
        lines += [
            "| PostgreSQL, workers per side (API processes separate) | delivered msg/s |"
            " CPU ms per message (all processes) |",
            "|---|---|---|",
            *(
                f"| {r['workers_per_side']} | {r['delivered_per_s']} | {r['cpu_ms_per_msg']} |"
                for r in pg["runs"]
            ),
            "",
        ]
    servers = results.get("servers", {})
    if "medians" in servers:
        lines += ["| ASGI server (product relay) | delivered msg/s | CPU ms per message |",
                  "|---|---|---|"]  # fmt: skip
        lines += [
            f"| {name} | {f['delivered_per_s']} | {f['cpu_ms_per_msg']} |"
            for name, f in servers["medians"].items()
        ]
        lines.append("")
    profile = results.get("profile", {})
    if "shares_percent" in profile:
        shares = profile["shares_percent"]
        groups = sorted({g for side in shares.values() for g in side},
                        key=lambda g: -sum(side.get(g, 0) for side in shares.values()))  # fmt: skip
        lines += ["| where the product's time goes (py-spy, % of samples) | TMA | CRM |",
                  "|---|---|---|"]  # fmt: skip
        lines += [
            f"| {g} | {shares['tma'].get(g, 0)} | {shares['crm'].get(g, 0)} |" for g in groups
        ]
        lines.append("")
    if results.get("summary"):
        lines += ["| target | measured | verdict |", "|---|---|---|"]
        lines += [
            f"| {r['target']} | {r['measured']} | {r['verdict']} |" for r in results["summary"]
        ]
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = OUT / datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": load_average()},
        "work": str(work),
    }
    if "relay" in args.only:
        results["relay"] = await relay_section(work, args)
        print_relay(results["relay"])
    if "servers" in args.only:
        results["servers"] = await servers_section(work, args)
    if "profile" in args.only:
        results["profile"] = await profile_section(work, args)
    if "pg" in args.only:
        if await pg_answers():
            runs = [await pg_relay(w, work, args) for w in args.pg_workers]
            results["pg"] = {"runs": runs}
            print(
                f"\nRelay on PostgreSQL ({args.pg_messages} messages): one API process per side,"
                " N `worker` processes per side"
            )
            print(table(runs, ["workers_per_side", "delivered_per_s", "accepted_per_s",
                               "cpu_ms_per_msg", "load_avg"]))  # fmt: skip
        else:
            print(f"\nPostgreSQL is not answering at {PG_URL}: the PostgreSQL section is skipped")
            results["pg"] = {"skipped": f"PostgreSQL not reachable at {PG_URL}"}
    if "receiver" in args.only:
        # Alternated, several rounds each, so drift in the machine's load falls on both alike.
        runs = [
            await receiver(v, work, args, i) for i in range(args.receiver_rounds) for v in RECEIVER
        ]
        ours = statistics.median(r["stored_per_s"] for r in runs if r["role"] == "product")
        base = statistics.median(r["stored_per_s"] for r in runs if r["role"] == "baseline")
        results["receiver"] = {"runs": runs, "with_vs_without_change_log": ratio(ours, base)}
        print("\nReceiver on SQLite: postMessage stored by the CRM, 64 callers")
        print(table(runs, ["variant", "role", "messages", "stored_per_s", "log_rows"]))
        print(
            f"with the change log vs without: x{results['receiver']['with_vs_without_change_log']}"
            " messages/s (the feed's cost on the receiving path)"
        )
    if "backlog" in args.only:
        queued, tickets = await queue_backlog(work, args)
        runs = [await backlog(v, queued, tickets, work, args) for v in BACKLOG]
        ours, base = runs
        results["backlog"] = {
            "runs": runs,
            "speedup_vs_baseline": ratio(ours["events_per_s"], base["events_per_s"]),
            "target_s": 5,
            "within_target": bool(ours["finished"] and ours["drain_s"] < 5),
        }
        print(f"\nBacklog of {args.backlog} events after a long outage; the CRM is back at t=0")
        columns = ["variant", "role", "events", "first_delivery_s", "drain_s", "events_per_s"]
        print(table(runs, [*columns, "finished"]))
        backlog_results = results["backlog"]
        print(
            f"product vs baseline (one event per round): x{backlog_results['speedup_vs_baseline']}"
            f" events/s. Target: drained in < 5 s. An unfinished drain stopped at"
            f" {args.backlog_timeout} s."
        )
    if "ratelimit" in args.only:
        prefix = f"ratelimit-bench-{uuid.uuid4().hex[:8]}"
        variants = receiving_variants(prefix)
        if not redis_answers():
            print(f"\nRedis is not answering at {REDIS_URL}: the Redis variant is left out")
            variants = variants[:2]
        try:
            runs = await receiving(variants, work, args)
        finally:
            if len(variants) == 3:
                delete_bench_keys(prefix)
        base = runs[0]
        cost = {"in-process": await check_cost("", 5000)}
        if len(variants) == 3:
            cost["redis"] = await check_cost(REDIS_URL, 5000)
        results["ratelimit"] = {
            "runs": runs,
            "check_us": cost,
            "throughput_vs_no_limit": {
                r["variant"]: ratio(r["per_s"], base["per_s"]) for r in runs
            },
            "p50_vs_no_limit": {r["variant"]: ratio(r["p50_ms"], base["p50_ms"]) for r in runs},
            "p99_vs_no_limit": {r["variant"]: ratio(r["p99_ms"], base["p99_ms"]) for r in runs},
        }
        print(
            f"\nRate limits on the receiver: postMessage straight to the CRM, {args.receiving}"
            f" requests per variant in {args.receiving_rounds} bursts taking turns,"
            f" {args.concurrency} in flight; per_s is the median burst"
        )
        print(table(runs, ["variant", "role", "requests", "per_s", "p50_ms", "p99_ms", "statuses"]))
        rl = results["ratelimit"]
        print(
            "vs no limit: throughput "
            + ", ".join(f"{k} x{v}" for k, v in rl["throughput_vs_no_limit"].items())
            + "; p50 "
            + ", ".join(f"{k} x{v}" for k, v in rl["p50_vs_no_limit"].items())
        )
        print(
            "one limiter check, sequential, in the bench process: "
            + ", ".join(f"{k} {v} µs" for k, v in cost.items())
        )
    for section in ("relay", "backlog"):
        for run in results.get(section, {}).get("runs", []):
            if "rate_limit_peaks" in run:
                print(f"{section} {run['variant']}: rate-limit peaks {run['rate_limit_peaks']}")
    if "miniapp" in args.only:
        from miniapp_bench import measure, report  # bench/miniapp_bench.py

        results["miniapp"] = await measure(work, args)
        report(results["miniapp"])
    results["machine"]["load_avg_at_end"] = load_average()
    results["summary"] = summary(results)
    print_summary(results["summary"])
    return results


def delete_bench_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=5000, help="relay throughput messages")
    parser.add_argument("--tickets", type=int, default=100, help="relay tickets (one per user)")
    parser.add_argument("--concurrency", type=int, default=64, help="posts in flight")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--receiver-rounds", type=int, default=3, help="receiver runs per variant")
    parser.add_argument("--backlog", type=int, default=10_000, help="events queued")
    parser.add_argument("--backlog-timeout", type=float, default=90.0)
    parser.add_argument(
        "--receiving", type=int, default=6000, help="rate-limit section: requests per variant"
    )
    parser.add_argument("--receiving-rounds", type=int, default=6, help="bursts per variant")
    parser.add_argument("--miniapp-streams", type=int, default=20, help="open Mini App streams")
    parser.add_argument("--miniapp-replies", type=int, default=100)
    parser.add_argument("--miniapp-rate", type=float, default=10.0, help="operator replies/s")
    parser.add_argument("--rounds", type=int, default=2, help="relay: product/lean alternations")
    parser.add_argument("--server-rounds", type=int, default=2, help="servers: runs per server")
    parser.add_argument("--pg-messages", type=int, default=3000, help="PostgreSQL relay messages")
    parser.add_argument(
        "--pg-workers", type=int, nargs="+", default=[1, 2, 4], help="workers per side"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=DEFAULT_SECTIONS,
        help="sections to run (default: all but servers and profile, which need granian and"
        " py-spy installed)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="also print the tables of docs/performance.md (written to build/bench/results.md)",
    )
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (OUT / "results.md").write_text(markdown(results))
    if args.markdown:
        print("\n" + markdown(results))
    print(f"\nwritten to {OUT / 'results.json'} and {OUT / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
