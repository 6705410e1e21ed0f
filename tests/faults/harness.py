"""The fault-injection harness: both backends as separate processes on loopback, a breakable proxy
in each direction, a load in both directions, a fault schedule, and the final comparison.

    TMA API processes ◄── to_tma proxy ◄── CRM workers
    TMA workers ──► to_crm proxy ──► CRM API processes

Each side's PEER_URL points at the proxy in front of the other side. The load talks to the API
processes directly, through the public user and operator APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from integration_kit.schema import OutboxState
from tests.faults import restore
from tests.faults.bot import FakeTelegram
from tests.faults.cluster import BOT_TOKEN, Side, Timing, add_operator, free_port, wait_ready
from tests.faults.load import Load, LoadConfig
from tests.faults.proxy import Fault, FaultKind, FaultProxy
from tests.faults.verify import Databases, Verdict, verify
from tma_impl.settings import TmaSettings

FIRE_TIMEOUT_SECONDS = 30.0  # an armed proxy fault waits this long for a request to break


@dataclass(frozen=True)
class HarnessConfig:
    """One run's shape: database, processes per side, load size and pace, fault schedule."""

    kind: str  # "sqlite" or "postgresql"
    messages: int
    postgres_url: str = ""
    api_processes: int = 1  # per side
    workers: int = 1  # per side
    concurrency: int = 20  # tickets written at once
    min_load_seconds: float = 40.0  # spread the load so the fault schedule happens under traffic
    burst: int = 2  # requests broken per proxy fault step
    downtime_seconds: float = 1.0  # how long a stopped peer stays down
    gap_seconds: float = 0.5  # between two fault steps
    converge_timeout_seconds: float = 180.0
    status_change_rate: float = 0.08
    inject_faults: bool = True  # False: the same load without faults, as a baseline
    timing: Timing = field(default_factory=Timing)
    seed: int = 5
    # "tma" or "crm": copy that side's database early in the load, restore it from the copy
    # later while traffic goes on, then `restored` and `reconcile` on both sides.
    restore_side: str = ""

    @classmethod
    def for_kind(cls, kind: str, messages: int, postgres_url: str = "") -> HarnessConfig:
        """SQLite: one API process and one worker per side; PostgreSQL: scale-out, 2 and 3.

        On PostgreSQL each worker sends at most 16 at once: ten processes with pools of up to
        20 connections must stay within the server's 100 by default.
        """
        if kind == "postgresql":
            return cls(
                kind,
                messages,
                postgres_url,
                api_processes=2,
                workers=3,
                timing=Timing(dispatcher_concurrency=16),
            )
        return cls(kind, messages)


@dataclass
class Report:
    """What a run measured; `lines()` prints it."""

    config: HarnessConfig
    verdict: Verdict
    faults: Counter[str]
    unexpected_dead: list[str]
    killed_workers: dict[str, list[float]]
    wire_resends: int
    client_retries: int
    load_seconds: float
    converge_after_last_fault: float
    converge_after_last_write: float
    total_seconds: float
    restore: restore.RestoreReport | None = None

    def lines(self) -> list[str]:
        v, c = self.verdict, self.config
        per = f"{c.api_processes} API process(es) + {c.workers} worker(s) per side"
        fault_list = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items()))
        events = {
            side: ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))
            for side, counts in v.events.items()
        }
        return [
            f"fault-injection run on {c.kind}: {per}",
            f"messages: {v.messages} in {v.tickets} tickets "
            f"({v.status_changes} status changes), written in {self.load_seconds:.1f} s "
            f"({v.messages / max(self.load_seconds, 0.001):.0f} msg/s)",
            f"faults injected: {sum(self.faults.values())} ({fault_list})",
            f"retries: TMA outbox {v.retries.get('tma', 0)} failed attempts, "
            f"CRM outbox {v.retries.get('crm', 0)}; deliveries re-sent on the wire "
            f"{self.wire_resends} (absorbed by the receivers' dedupe); "
            f"the load's own re-sent requests {self.client_retries}",
            f"outbox TMA: {events.get('tma')}; CRM: {events.get('crm')}; "
            f"replayed by hand after injected refusals: TMA {v.replayed.get('tma', 0)}, "
            f"CRM {v.replayed.get('crm', 0)}",
            f"Telegram notifications: {v.notifications_sent} sent for {v.notifications} replies "
            f"(missing {v.notifications_missing}, repeated {v.notifications_repeated} after "
            f"{len(self.killed_workers['tma'])} TMA worker kill(s) between send and "
            f"acknowledge, unexplained {v.notifications_unexplained})",
            f"lost {v.lost}, duplicated {v.duplicated}, out of order {v.out_of_order}, "
            f"unlinked {v.unlinked}, status mismatches {v.status_mismatches}, "
            f"unexpected dead {len(self.unexpected_dead)}",
            (
                f"converged {self.converge_after_last_fault:.1f} s after the last fault "
                if self.faults
                else "converged (no faults injected) "
            )
            + f"({self.converge_after_last_write:.1f} s after the last write); "
            f"whole run {self.total_seconds:.1f} s",
            *(self.restore.lines() if self.restore else []),
        ]


class Harness:
    """Owns every process, proxy and database of one run; `close()` always cleans them up."""

    def __init__(self, config: HarnessConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.urls: dict[str, str] = {}
        self._pg_databases: list[str] = []
        self.sides: dict[str, Side] = {}
        self.to_crm: FaultProxy | None = None
        self.to_tma: FaultProxy | None = None
        self.databases: Databases | None = None
        self.telegram = FakeTelegram()
        self.operator_tokens: list[str] = []
        self.faults: Counter[str] = Counter()
        self.killed_workers: dict[str, list[float]] = {"tma": [], "crm": []}  # kill times
        self.refused: set[str] = set()
        self.unexpected_dead: list[str] = []
        self.last_fault_end = 0.0
        self._closed = False
        # A restore and the chaos steps that stop processes never act on a side at once.
        self._processes = asyncio.Lock()
        self.restore: restore.RestoreReport | None = None

    # --- setup and teardown ------------------------------------------------------------------

    async def setup(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("tma", "crm"):
            self.urls[name] = await self._new_database(name)
        n = self.config.api_processes
        api_ports = {name: [free_port() for _ in range(n)] for name in ("tma", "crm")}
        self.to_crm = FaultProxy("to_crm", api_ports["crm"])
        self.to_tma = FaultProxy("to_tma", api_ports["tma"])
        proxy_ports = {"crm": await self.to_crm.start(), "tma": await self.to_tma.start()}
        await self.telegram.start()
        for name, peer in (("tma", "crm"), ("crm", "tma")):
            self.sides[name] = Side(
                name=name,
                database_url=self.urls[name],
                workdir=self.workdir,
                api_ports=api_ports[name],
                peer_proxy_port=proxy_ports[peer],
                timing=self.config.timing,
                bot_api_url=self.telegram.base_url,
            )
        tma, crm = self.sides["tma"], self.sides["crm"]
        await asyncio.gather(
            asyncio.to_thread(tma.run, "migrate"), asyncio.to_thread(crm.run, "migrate")
        )
        self.operator_tokens = list(
            await asyncio.gather(
                *(asyncio.to_thread(add_operator, crm, name) for name in ("Olga", "Pavel"))
            )
        )
        for side in self.sides.values():
            for slot in range(self.config.api_processes):
                side.start_api(slot)
            for slot in range(self.config.workers):
                side.start_worker(slot)
        await asyncio.gather(
            *(
                wait_ready(side.api_ports[slot], process)
                for side in self.sides.values()
                for slot, process in side.apis.items()
            )
        )
        self.databases = Databases(self.urls["tma"], self.urls["crm"])

    async def _new_database(self, side: str) -> str:
        if self.config.kind == "sqlite":
            return f"sqlite+aiosqlite:///{self.workdir / f'{side}.db'}"
        name = f"faults_{side}_{uuid.uuid4().hex[:12]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        self._pg_databases.append(name)
        url = make_url(self.config.postgres_url).set(drivername="postgresql+asyncpg", database=name)
        return url.render_as_string(hide_password=False)

    async def _admin(self, statement: str) -> None:
        """CREATE or DROP DATABASE on the server of TEST_DATABASE_URL (outside a transaction)."""
        url = make_url(self.config.postgres_url).set(drivername="postgresql+asyncpg")
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    def kill_processes(self) -> None:
        """Synchronous safety net (a finalizer): no process outlives the run."""
        for side in self.sides.values():
            side.kill_all()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.kill_processes()
        for proxy in (self.to_crm, self.to_tma):
            if proxy is not None:
                await proxy.close()
        await self.telegram.close()
        if self.databases is not None:
            await self.databases.close()
        for name in self._pg_databases:
            with contextlib.suppress(Exception):
                await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def logs(self) -> str:
        return "\n".join(side.log_tail() for side in self.sides.values())

    # --- the run -----------------------------------------------------------------------------

    async def run(self) -> Report:
        assert self.databases is not None
        started = time.monotonic()
        load = Load(
            LoadConfig(
                messages=self.config.messages,
                concurrency=self.config.concurrency,
                min_seconds=self.config.min_load_seconds,
                status_change_rate=self.config.status_change_rate,
                seed=self.config.seed,
            ),
            tma_urls=[f"http://127.0.0.1:{port}" for port in self.sides["tma"].api_ports],
            crm_urls=[f"http://127.0.0.1:{port}" for port in self.sides["crm"].api_ports],
            operator_tokens=self.operator_tokens,
            bot_token=TmaSettings(bot_token=BOT_TOKEN).dev_bot_token,
        )
        stop_operator = asyncio.Event()
        operator = asyncio.create_task(self._operator(stop_operator), name="operator replays")
        chaos = asyncio.create_task(self._chaos(load), name="chaos")
        restoring = asyncio.create_task(self._restore_during(load), name="restore")
        try:
            await load.run()
            await chaos
            await restoring
            converged = await self._converge(load.written, operator)
            await load.find_crm_tickets()  # tickets that reached the CRM after the load ended
            if self.restore is not None:
                # Once converged, the feeds agree too: reconcile finds nothing on either side.
                for name, side in self.sides.items():
                    output = await restore.run_command(side, "reconcile", "--full")
                    self.restore.final[name] = restore.summary_line(output)
        finally:
            chaos.cancel()
            restoring.cancel()
            stop_operator.set()
            await asyncio.gather(chaos, operator, restoring, return_exceptions=True)
        tma = await self.databases.load("tma")
        crm = await self.databases.load("crm")
        assert self.to_crm is not None
        assert self.to_tma is not None
        resends = sum(
            n - 1 for proxy in (self.to_crm, self.to_tma) for n in proxy.received.values() if n > 1
        )
        return Report(
            config=self.config,
            verdict=verify(
                load.records,
                tma,
                crm,
                notified=self.telegram.sends,
                tma_worker_kills=self.killed_workers["tma"],
                tma_restore=(
                    (self.restore.backup_at, self.restore.restored_at)
                    if self.restore is not None and self.restore.side == "tma"
                    else None
                ),
            ),
            killed_workers=self.killed_workers,
            faults=self.faults,
            unexpected_dead=self.unexpected_dead,
            wire_resends=resends,
            client_retries=load.client_retries,
            load_seconds=load.finished_monotonic - load.started_monotonic,
            converge_after_last_fault=converged - self.last_fault_end,
            converge_after_last_write=converged - load.finished_monotonic,
            total_seconds=time.monotonic() - started,
            restore=self.restore,
        )

    async def _until_written(self, load: Load, share: float) -> None:
        # The load counts its writes; nothing signals a count, so it is polled.
        while load.written < self.config.messages * share and not load.finished.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    async def _restore_during(self, load: Load) -> None:
        """Copy a side's database a quarter into the load; at 60 % lose it and restore the copy
        while the load goes on, by the operator's procedure (tests/faults/restore.py)."""
        name = self.config.restore_side
        if not name:
            return
        assert self.databases is not None
        side, peer = self.sides[name], self.sides["crm" if name == "tma" else "tma"]
        report = restore.RestoreReport(side=name)
        await self._until_written(load, 0.25)
        backup = await restore.take_backup(side, self.workdir)
        report.backup_at = time.monotonic()
        await self._until_written(load, 0.6)
        async with self._processes:
            stopping = mark = time.monotonic()

            def step(name: str) -> None:
                nonlocal mark
                now = time.monotonic()
                report.timings[name] = now - mark
                mark = now

            # No new writes; the workers hand over what is pending, then stop too.
            await asyncio.gather(*(side.stop(process) for process in side.apis.values()))
            await restore.wait_drained(self.databases, name)
            await asyncio.gather(*(side.stop(process) for process in side.worker_procs.values()))
            step("stop and drain")
            before = await restore.counts(self.databases, name)
            await restore.put_back(side, backup, self._admin)
            report.restored_at = time.monotonic()
            after = await restore.counts(self.databases, name)
            report.lost = {kind: before[kind] - after[kind] for kind in before}
            await restore.run_command(side, "restored")
            step("restore")
            output = await restore.run_command(side, "reconcile")
            report.reconcile[name] = restore.summary_line(output)
            step(f"reconcile {name}")
            await restore.restart(side, self.config.workers)
            step("restart")
            output = await restore.run_command(peer, "reconcile")
            report.reconcile[peer.name] = restore.summary_line(output)
            step(f"reconcile {peer.name}")
            report.seconds = time.monotonic() - stopping
        self.restore = report

    async def _converge(self, expected_messages: int, operator: asyncio.Task[None]) -> float:
        """Until both sides hold every message and no event is pending or dead; bounded."""
        assert self.databases is not None
        deadline = time.monotonic() + self.config.converge_timeout_seconds
        while True:
            status = {side: await self.databases.progress(side) for side in ("tma", "crm")}
            if all(
                messages == expected_messages
                and not states[OutboxState.pending]
                and not states[OutboxState.dead]
                for messages, states in status.values()
            ):
                return time.monotonic()
            if operator.done():
                operator.result()  # the operator's replay failed: say why, do not time out
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not converged after {self.config.converge_timeout_seconds} s: "
                    f"{expected_messages} messages expected; (messages, outbox) by side: {status}"
                )
            await asyncio.sleep(0.2)

    async def _operator(self, stop: asyncio.Event) -> None:
        """An operator who replays the events the test expects to go dead, and only those."""
        assert self.databases is not None
        seen: set[tuple[str, int]] = set()
        while not stop.is_set():
            for name, side in self.sides.items():
                try:
                    dead = await self.databases.dead_events(name)
                except DBAPIError:
                    continue  # the database is being restored: look again next time
                for event_id, kind, payload in dead:
                    if (name, event_id) in seen:
                        continue
                    seen.add((name, event_id))
                    key = f"/api/integration/messages:{payload.get('message_id')}"
                    if kind == "message" and key in self.refused:
                        await self._replay(side, event_id)
                    else:
                        self.unexpected_dead.append(f"{name} event {event_id} ({kind})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def _replay(self, side: Side, event_id: int) -> None:
        """`outbox replay ID` from the command line, tried again if it fails (say, PostgreSQL
        has no connection to spare at that moment), as an operator would."""
        for attempt in range(5):
            try:
                await asyncio.to_thread(side.run, "outbox", "replay", str(event_id))
                return
            except RuntimeError:
                if attempt == 4:
                    raise
                await asyncio.sleep(1.0)

    # --- the faults --------------------------------------------------------------------------

    def _schedule(
        self, cycle: int
    ) -> tuple[list[Callable[[], Awaitable[None]]], list[Callable[[], Awaitable[None]]]]:
        """One cycle of every fault kind in both directions: the faults that need traffic to
        fire on, then the peer restarts, which do not."""
        tma, crm = self.sides["tma"], self.sides["crm"]
        to_crm, to_tma = self.to_crm, self.to_tma
        assert to_crm is not None
        assert to_tma is not None
        odd = cycle % 2 == 1
        burst = self.config.burst
        slow = self.config.timing.peer_timeout_seconds + 0.5
        return [
            lambda: self._proxy_faults(to_crm, FaultKind.duplicate, burst),
            lambda: self._proxy_faults(to_tma, FaultKind.drop_response, burst),
            lambda: self._kill_worker(tma, to_crm, forward_first=odd, late_release=odd),
            lambda: self._proxy_faults(to_crm, FaultKind.reset, burst),
            lambda: self._proxy_faults(to_tma, FaultKind.slow, burst, delay=slow, first=not odd),
            lambda: self._proxy_faults(to_crm, FaultKind.refuse, 1, path="/messages"),
            lambda: self._proxy_faults(to_tma, FaultKind.duplicate, burst),
            lambda: self._proxy_faults(to_crm, FaultKind.drop_response, burst),
            lambda: self._kill_worker(crm, to_tma, forward_first=not odd, late_release=not odd),
            lambda: self._proxy_faults(to_tma, FaultKind.reset, burst),
            lambda: self._proxy_faults(to_crm, FaultKind.slow, burst, delay=slow, first=odd),
            lambda: self._proxy_faults(to_tma, FaultKind.refuse, 1, path="/messages"),
        ], [
            lambda: self._restart_peer(crm, signal.SIGKILL if odd else signal.SIGTERM),
            lambda: self._restart_peer(tma, signal.SIGTERM if odd else signal.SIGKILL),
        ]

    async def _chaos(self, load: Load) -> None:
        """Every fault kind once (the load holds back its last writes until the faults that
        need traffic have fired), then again and again while the load runs."""
        if not self.config.inject_faults:
            load.gate.set()
            return  # a baseline run
        for cycle in itertools.count():
            traffic_steps, restarts = self._schedule(cycle)
            for step in traffic_steps:
                if load.finished.is_set():
                    return  # without traffic these cannot fire; the test counts them
                await self._step(step)
            load.gate.set()
            for step in restarts:
                if load.finished.is_set() and cycle > 0:
                    return
                await self._step(step)
            if load.finished.is_set():
                return

    async def _step(self, step: Callable[[], Awaitable[None]]) -> None:
        await step()
        self.last_fault_end = time.monotonic()
        await asyncio.sleep(self.config.gap_seconds)

    async def _proxy_faults(
        self,
        proxy: FaultProxy,
        kind: FaultKind,
        count: int,
        *,
        delay: float = 0.0,
        first: bool = True,
        path: str = "",
    ) -> None:
        faults = [
            proxy.arm(Fault(kind, path_suffix=path, delay_seconds=delay, forward_first=first))
            for _ in range(count)
        ]
        for fault in faults:
            try:
                await asyncio.wait_for(fault.fired.wait(), FIRE_TIMEOUT_SECONDS)
            except TimeoutError:
                proxy.disarm(fault)  # no traffic came: not counted as injected
                continue
            if kind is FaultKind.refuse and fault.key is not None:
                self.refused.add(fault.key)
            self.faults[kind.value] += 1
        if kind is FaultKind.slow:
            await asyncio.sleep(delay)  # let the late answers go before the next step

    async def _kill_worker(
        self, sender: Side, proxy: FaultProxy, *, forward_first: bool, late_release: bool
    ) -> None:
        """SIGKILL the worker whose request the proxy holds (sent, not acknowledged), restart
        it, and release the request later: before or after the lease lets another send it."""
        async with self._processes:
            await self._kill_worker_now(
                sender, proxy, forward_first=forward_first, late_release=late_release
            )

    async def _kill_worker_now(
        self, sender: Side, proxy: FaultProxy, *, forward_first: bool, late_release: bool
    ) -> None:
        fault = proxy.arm(Fault(FaultKind.hold, forward_first=forward_first))
        try:
            await asyncio.wait_for(fault.fired.wait(), FIRE_TIMEOUT_SECONDS)
        except TimeoutError:
            proxy.disarm(fault)
            return
        assert fault.client_port is not None
        victim = sender.worker_owning(fault.client_port, proxy.port)
        victims = [victim] if victim is not None else list(sender.worker_procs.values())
        for process in victims:
            self.killed_workers[sender.name].append(time.monotonic())
            await sender.stop(process, signal.SIGKILL)
            sender.start_worker(process.slot)
        self.faults["worker_sigkill"] += len(victims)
        if late_release:
            await asyncio.sleep(self.config.timing.lease_seconds + 1.0)
        else:
            await asyncio.sleep(0.2)
        fault.release.set()

    async def _restart_peer(self, side: Side, signum: int) -> None:
        """Stop every API process of a side (graceful or killed), keep it down, start it again."""
        async with self._processes:
            await self._restart_peer_now(side, signum)

    async def _restart_peer_now(self, side: Side, signum: int) -> None:
        await asyncio.gather(*(side.stop(process, signum) for process in side.apis.values()))
        name = "peer_stopped_sigterm" if signum == signal.SIGTERM else "peer_killed_sigkill"
        self.faults[name] += 1
        await asyncio.sleep(self.config.downtime_seconds)
        for slot in list(side.apis):
            side.start_api(slot)
        await asyncio.gather(
            *(wait_ready(side.api_ports[slot], process) for slot, process in side.apis.items())
        )
