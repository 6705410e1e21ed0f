"""`make run` (scripts/run_local.py) as a person meets it: ports and data folder from TMA_PORT,
CRM_PORT and DATA_DIR; a second start while the first still runs is refused in one line instead
of "listening" while talking to the first; the development operator is made once and reused."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
TOKEN = re.compile(r"^  (\S+)$", re.MULTILINE)
READY = "Ctrl-C stops both."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tma_port: int, crm_port: int, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TMA_", "CRM_"))}
    env.update(
        {
            "TMA_PORT": str(tma_port),
            "CRM_PORT": str(crm_port),
            "DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass
class Started:
    process: asyncio.subprocess.Process
    output: str

    @property
    def operator_token(self) -> str:
        # The first indented single word after the operator line is the token.
        after = self.output.split("operator", 1)[1]
        match = TOKEN.search(after)
        assert match, self.output
        return match.group(1)


async def _read_until_ready(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + 120
    while READY not in output:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"`make run` did not start in time:\n{output}"
        line = await asyncio.wait_for(process.stdout.readline(), remaining)
        assert line, f"`make run` ended before it was ready:\n{output}"
        output += line.decode()
    return output


@asynccontextmanager
async def make_run(env: dict[str, str]) -> AsyncIterator[Started]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.run_local",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield Started(process, await _read_until_ready(process))
    finally:
        with suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(60):
                await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    assert process.returncode == 0


async def _operators(env: dict[str, str], data_dir: Path) -> list[str]:
    listing = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crm_impl",
        "operators",
        "list",
        cwd=ROOT,
        env={**env, "CRM_DATA_DIR": str(data_dir)},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await listing.communicate()
    assert listing.returncode == 0
    return [line for line in out.decode().splitlines() if "active" in line]


async def test_make_run_refuses_taken_ports_and_reuses_its_operator(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    tma_port, crm_port = _free_port(), _free_port()
    env = _env(tma_port, crm_port, data_dir)

    async with make_run(env) as first:
        assert f"listens on http://127.0.0.1:{tma_port}" in first.output
        assert f"listens on http://127.0.0.1:{crm_port}" in first.output
        assert "An operator was created for you" in first.output
        token = first.operator_token
        assert (data_dir / "dev-operator.token").read_text().strip() == token
        assert (data_dir / "tma.db").exists()
        assert (data_dir / "crm.db").exists()

        # A second `make run` on the same ports while the first runs.
        second = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scripts.run_local",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await second.communicate()
        assert second.returncode != 0
        assert out.decode() == ""
        [line] = err.decode().strip().splitlines()
        assert line.startswith(f"error: port TMA_PORT={tma_port}, CRM_PORT={crm_port} already in")
        assert "Traceback" not in err.decode()
        # The first one is untouched and still serves.
        assert first.process.returncode is None
        async with httpx.AsyncClient() as client:
            me = await client.get(
                f"http://127.0.0.1:{crm_port}/api/crm/me",
                headers={"Authorization": f"Bearer {token}"},
            )
        assert me.status_code == 200

    async with make_run(env) as again:
        assert "Your operator, as before" in again.output
        assert again.operator_token == token
    assert len(await _operators(env, data_dir)) == 1


async def test_make_run_refuses_a_port_another_program_listens_on(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken, free = other.getsockname()[1], _free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scripts.run_local",
            cwd=ROOT,
            env=_env(free, taken, tmp_path / "data"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    assert process.returncode != 0
    assert out.decode() == ""
    assert err.decode().strip() == (
        f"error: port CRM_PORT={taken} already in use (an earlier `make run` still running?): "
        "stop it, or choose free ports, e.g. `make run TMA_PORT=8100 CRM_PORT=8101`"
    )
    assert not (tmp_path / "data").exists()  # nothing started, nothing written
