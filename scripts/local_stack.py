"""Start both backends as local processes on loopback, for `make run` and `make demo`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# S105: the development tokens, published on purpose (production refuses them).
TMA_TO_CRM_TOKEN = "dev-tma-to-crm"  # noqa: S105
CRM_TO_TMA_TOKEN = "dev-crm-to-tma"  # noqa: S105


@dataclass(frozen=True)
class Stack:
    tma_url: str
    crm_url: str
    data_dir: Path

    def env(self, side: str) -> dict[str, str]:
        """The environment a command of `side` needs to reach this stack's database."""
        prefix = side.upper()
        return {**os.environ, f"{prefix}_DATA_DIR": str(self.data_dir)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now (bound as uvicorn binds, with SO_REUSEADDR,
    so a port a stopped server left in TIME_WAIT counts as free)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def refuse_taken_ports(ports: dict[str, int]) -> None:
    """Stop with one line when a port is taken: the health checks would otherwise be answered
    by whatever listens there (an earlier `make run`), and this stack would seem to run."""
    taken = [f"{name}={port}" for name, port in ports.items() if not port_is_free(port)]
    if taken:
        raise SystemExit(
            f"error: port {', '.join(taken)} already in use (an earlier `make run` still "
            "running?): stop it, or choose free ports, e.g. `make run TMA_PORT=8100 CRM_PORT=8101`"
        )


def _side_env(side: str, *, port: int, peer_port: int, data_dir: Path) -> dict[str, str]:
    prefix = side.upper()
    inbound, outbound = (
        (CRM_TO_TMA_TOKEN, TMA_TO_CRM_TOKEN)
        if side == "tma"
        else (TMA_TO_CRM_TOKEN, CRM_TO_TMA_TOKEN)
    )
    return {
        **os.environ,
        f"{prefix}_ENVIRONMENT": "development",
        f"{prefix}_DATA_DIR": str(data_dir),
        f"{prefix}_PORT": str(port),
        f"{prefix}_INBOUND_TOKENS": inbound,
        f"{prefix}_PEER_URL": f"http://127.0.0.1:{peer_port}",
        f"{prefix}_PEER_TOKEN": outbound,
    }


def wait_until_live(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"the backend at {url} exited with code {process.returncode} (see its log)"
            )
        try:
            if httpx.get(f"{url}/health/live", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the backend at {url} did not answer within {timeout:.0f} s")


@contextmanager
def local_stack(
    data_dir: Path, *, tma_port: int, crm_port: int, quiet: bool = False
) -> Iterator[Stack]:
    """Both backends with their in-process dispatchers, migrated SQLite files in `data_dir`."""
    refuse_taken_ports({"TMA_PORT": tma_port, "CRM_PORT": crm_port})
    data_dir.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    with ExitStack() as logs:
        try:
            for side, port, peer_port in (
                ("crm", crm_port, tma_port),
                ("tma", tma_port, crm_port),
            ):
                env = _side_env(side, port=port, peer_port=peer_port, data_dir=data_dir)
                # Quiet: each server's output goes to <data_dir>/<side>.log, for when it fails.
                log = logs.enter_context(open(data_dir / f"{side}.log", "ab")) if quiet else None
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", f"{side}_impl", "serve"],
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=log,
                    )
                )
            tma_url, crm_url = f"http://127.0.0.1:{tma_port}", f"http://127.0.0.1:{crm_port}"
            wait_until_live(crm_url, processes[0])
            wait_until_live(tma_url, processes[1])
            yield Stack(tma_url, crm_url, data_dir)
        finally:
            stop_processes(processes)


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Ask every process to stop (graceful shutdown), then kill any still there after 10 s."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_command(side: str, stack: Stack, *args: str) -> str:
    """Run `python -m <side>_impl ARGS` against the stack's database; return its output."""
    result = subprocess.run(
        [sys.executable, "-m", f"{side}_impl", *args],
        cwd=ROOT,
        env=stack.env(side),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{side} {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout
