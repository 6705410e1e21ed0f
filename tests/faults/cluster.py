"""The backends as real processes: API processes (`serve --no-dispatcher`) and `worker` processes
per side, each in its own process group so a kill reaches everything it started.

Every process is started, stopped and killed by its id; `Side.kill_all()` kills whatever is left
and runs from the harness's teardown and a synchronous finalizer, so a failing run leaves nothing
behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

BOT_TOKEN = "424242:faults-harness-bot-token"
TMA_TO_CRM_TOKEN = "faults-tma-to-crm"
CRM_TO_TMA_TOKEN = "faults-crm-to-tma"
# Standard Webhooks signing secrets of each direction (whsec_ + base64 of 33 bytes).
TMA_TO_CRM_SECRET = "whsec_ZmF1bHRzIGhhcm5lc3M6IHRtYS10by1jcm0gc2VjcmV0"
CRM_TO_TMA_SECRET = "whsec_ZmF1bHRzIGhhcm5lc3M6IGNybS10by10bWEgc2VjcmV0"
STARTUP_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Timing:
    """Delivery timing for the harness: short, so faults resolve in seconds, not minutes."""

    peer_timeout_seconds: float = 1.0
    lease_seconds: float = 3.0
    retry_base_seconds: float = 0.2
    retry_cap_seconds: float = 2.0
    poll_seconds: float = 0.2
    dispatcher_concurrency: int = 32


@dataclass
class Process:
    """One running command of a side."""

    role: str
    slot: int
    popen: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        # Its own process group (start_new_session): the signal reaches all it started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def wait(self, timeout: float) -> bool:
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close_log(self) -> None:
        self.log.close()


@dataclass
class Side:
    """One backend (`tma` or `crm`): its database, its API ports and its processes."""

    name: str
    database_url: str
    workdir: Path
    api_ports: list[int]
    peer_proxy_port: int
    timing: Timing
    bot_api_url: str = ""  # the TMA's Telegram Bot API (a stand-in on loopback)
    apis: dict[int, Process] = field(default_factory=dict)
    worker_procs: dict[int, Process] = field(default_factory=dict)
    spawned: list[Process] = field(default_factory=list)  # every process ever started here

    @property
    def prefix(self) -> str:
        return self.name.upper()

    def env(self) -> dict[str, str]:
        """The process environment: the caller's, minus any TMA_/CRM_ settings, plus ours."""
        env = {
            key: value for key, value in os.environ.items() if not key.startswith(("TMA_", "CRM_"))
        }
        inbound, outbound = (
            (CRM_TO_TMA_TOKEN, TMA_TO_CRM_TOKEN)
            if self.name == "tma"
            else (TMA_TO_CRM_TOKEN, CRM_TO_TMA_TOKEN)
        )
        accepted, signing = (
            (CRM_TO_TMA_SECRET, TMA_TO_CRM_SECRET)
            if self.name == "tma"
            else (TMA_TO_CRM_SECRET, CRM_TO_TMA_SECRET)
        )
        timing = self.timing
        p = self.prefix
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                f"{p}_ENVIRONMENT": "development",
                f"{p}_DATABASE_URL": self.database_url,
                f"{p}_DATA_DIR": str(self.workdir),
                f"{p}_INBOUND_TOKENS": inbound,
                f"{p}_PEER_URL": f"http://127.0.0.1:{self.peer_proxy_port}",
                f"{p}_PEER_TOKEN": outbound,
                f"{p}_INBOUND_SIGNING_SECRETS": accepted,
                f"{p}_PEER_SIGNING_SECRET": signing,
                f"{p}_PEER_TIMEOUT_SECONDS": str(timing.peer_timeout_seconds),
                f"{p}_RETRY__BASE_SECONDS": str(timing.retry_base_seconds),
                f"{p}_RETRY__CAP_SECONDS": str(timing.retry_cap_seconds),
                f"{p}_DISPATCHER_POLL_SECONDS": str(timing.poll_seconds),
                f"{p}_DISPATCHER_CONCURRENCY": str(timing.dispatcher_concurrency),
                f"{p}_LEASE_SECONDS": str(timing.lease_seconds),
            }
        )
        if self.name == "tma":
            env["TMA_BOT_TOKEN"] = BOT_TOKEN
            env["TMA_BOT_API_BASE_URL"] = self.bot_api_url
        return env

    def run(self, *args: str, timeout: float = 120.0) -> str:
        """Run a one-off command of this side (migrate, operators add, outbox replay)."""
        result = subprocess.run(
            [sys.executable, "-m", f"{self.name}_impl", *args],
            env=self.env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"`{self.name} {' '.join(args)}` failed ({result.returncode}): {result.stderr}"
            )
        return result.stdout

    def _spawn(self, role: str, slot: int, args: list[str]) -> Process:
        log = (self.workdir / f"{self.name}-{role}{slot}.log").open("ab")
        popen = subprocess.Popen(
            [sys.executable, "-m", f"{self.name}_impl", *args],
            env=self.env(),
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(role=role, slot=slot, popen=popen, log=log)
        self.spawned.append(process)
        return process

    def start_api(self, slot: int) -> Process:
        port = self.api_ports[slot]
        process = self._spawn(
            "api", slot, ["serve", "--port", str(port), "--no-dispatcher", "--no-migrate"]
        )
        self.apis[slot] = process
        return process

    def start_worker(self, slot: int) -> Process:
        process = self._spawn("worker", slot, ["worker"])
        self.worker_procs[slot] = process
        return process

    async def stop(
        self, process: Process, signum: int = signal.SIGTERM, grace_seconds: float = 15.0
    ) -> None:
        """Signal it and wait (off the loop); one that does not stop in time is killed."""
        process.signal(signum)
        if not await asyncio.to_thread(process.wait, grace_seconds):
            process.signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 10)
        process.close_log()

    def kill_all(self) -> None:
        """SIGKILL every process group of this side still running, then reap them."""
        for process in self.spawned:
            if process.alive():
                process.signal(signal.SIGKILL)
        for process in self.spawned:
            process.wait(10)
            with contextlib.suppress(Exception):
                process.close_log()

    def worker_owning(self, client_port: int, proxy_port: int) -> Process | None:
        """The worker whose TCP connection to the proxy comes from `client_port` (Linux /proc)."""
        inode = _socket_inode(client_port, proxy_port)
        if inode is None:
            return None
        target = f"socket:[{inode}]"
        for process in self.worker_procs.values():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{process.pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) == target:
                            return process
        return None

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in sorted(self.workdir.glob(f"{self.name}-*.log")):
            text = path.read_text(errors="replace").splitlines()
            out.append(f"--- {path.name} (last {lines} lines)")
            out.extend(text[-lines:])
        return "\n".join(out)


def _socket_inode(local_port: int, remote_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, remote, inode = parts[1], parts[2], parts[9]
                if (
                    int(local.rsplit(":", 1)[1], 16) == local_port
                    and int(remote.rsplit(":", 1)[1], 16) == remote_port
                    and inode != "0"
                ):
                    return inode
    return None


async def wait_ready(port: int, process: Process) -> None:
    """Until the API process answers its readiness check (its database answers too)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(
                    f"{process.role}{process.slot} exited: {process.popen.returncode}"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(
                    f"http://127.0.0.1:{port}/health/ready",
                    timeout=aiohttp.ClientTimeout(total=2),
                ) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"API process on port {port} not ready in {STARTUP_TIMEOUT_SECONDS} s")


OPERATOR_TOKEN = re.compile(r"token \(shown once, keep it secret\): (\S+)")


def add_operator(crm: Side, name: str) -> str:
    """`python -m crm_impl operators add NAME`; returns the token it prints once."""
    output = crm.run("operators", "add", name)
    match = OPERATOR_TOKEN.search(output)
    if match is None:
        raise RuntimeError(f"no token in the output of `operators add`: {output!r}")
    return match.group(1)
