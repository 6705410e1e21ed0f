"""`make contract`: the schemathesis command line against both backends, served on loopback.

As a team's CI would run it against a staging server: each backend runs as its own process
(`python -m <side>_impl serve`, uvicorn) on a free port of 127.0.0.1, with a fresh SQLite database
in a temporary folder, migrated and seeded with the tickets the contract tests aim at. Then
`schemathesis run spec/integration.yaml` checks the operations the spec assigns to that side
(`--include-tag`), with every phase and check and the settings of schemathesis.toml (a fixed seed,
no example database, valid data must not be answered 401); a hook signs every request
(tests/contract/cli_hooks.py). Each run writes a JUnit report; the
script fails if either run found anything, and always stops the servers.

Environment:
  CONTRACT_EXAMPLES  fuzzing cases per operation (default 100; the examples, coverage and
                     stateful phases add their own)
  CONTRACT_REPORTS   where the JUnit reports and server logs go (default build/contract)
  CONTRACT_SEED      another seed than schemathesis.toml's, to explore beyond the usual cases
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from scripts.local_stack import free_port, stop_processes, wait_until_live

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "spec" / "integration.yaml"
CONFIG = ROOT / "schemathesis.toml"
BIN = Path(sys.executable).parent
SIDES = ("crm", "tma")
# Each side's inbound token; the peer URLs point at each other, as deployed.
TOKENS = {"crm": "contract-cli-tma-to-crm", "tma": "contract-cli-crm-to-tma"}
# Each side's inbound signing secret (Standard Webhooks); the hooks sign schemathesis's requests.
SECRETS = {
    "crm": "whsec_Y29udHJhY3QtY2xpIHRtYS10by1jcm0gc2lnbmluZyBzZWNyZXQ=",
    "tma": "whsec_Y29udHJhY3QtY2xpIGNybS10by10bWEgc2lnbmluZyBzZWNyZXQ=",
}
DEFAULT_EXAMPLES = 100


def side_env(side: str, data_dir: Path, peer_port: int) -> dict[str, str]:
    prefix, peer = side.upper(), "tma" if side == "crm" else "crm"
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        f"{prefix}_ENVIRONMENT": "development",
        f"{prefix}_DATABASE_URL": "",  # a fresh SQLite file in data_dir, whatever the shell says
        f"{prefix}_DATA_DIR": str(data_dir),
        f"{prefix}_INBOUND_TOKENS": TOKENS[side],
        f"{prefix}_PEER_URL": f"http://127.0.0.1:{peer_port}",
        f"{prefix}_PEER_TOKEN": TOKENS[peer],
        f"{prefix}_INBOUND_SIGNING_SECRETS": SECRETS[side],
        f"{prefix}_PEER_SIGNING_SECRET": SECRETS[peer],
    }


def run_checked(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


@contextmanager
def served(workdir: Path, reports: Path) -> Iterator[dict[str, str]]:
    """Both backends migrated, seeded and listening; yields each side's base URL."""
    ports = {side: free_port() for side in SIDES}
    processes: list[subprocess.Popen[bytes]] = []
    with ExitStack() as logs:
        try:
            urls = {}
            for side in SIDES:
                peer = "tma" if side == "crm" else "crm"
                env = side_env(side, workdir / side, ports[peer])
                python = [sys.executable, "-m"]
                run_checked([*python, "tests.contract.seeding", side], env)  # migrate, seed
                log = logs.enter_context(open(reports / f"{side}-server.log", "wb"))
                serve = [f"{side}_impl", "serve", "--host", "127.0.0.1", "--port", str(ports[side])]
                processes.append(
                    subprocess.Popen(
                        [*python, *serve, "--no-migrate"], cwd=ROOT, env=env, stdout=log, stderr=log
                    )
                )
                urls[side] = f"http://127.0.0.1:{ports[side]}"
                wait_until_live(urls[side], processes[-1])
            yield urls
        finally:
            stop_processes(processes)


def schemathesis_run(side: str, url: str, examples: int, reports: Path) -> int:
    """One schemathesis command-line run against `side`; its exit code (0: no finding)."""
    command = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(CONFIG),
        "run",
        str(SPEC),
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {TOKENS[side]}",
        "--include-tag",
        side,
        "--max-examples",
        str(examples),
        "--workers",
        "1",
        "--report",
        "junit",
        "--report-junit-path",
        str(reports / f"{side}.xml"),
        "--no-color",
    ]
    if os.environ.get("CONTRACT_SEED"):
        command += ["--seed", os.environ["CONTRACT_SEED"]]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.contract.cli_hooks",
        "CONTRACT_SIDE": side,
        "CONTRACT_SIGNING_SECRET": SECRETS[side],
    }
    print(f"\n=== {side}: {' '.join(command[3:])}", flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


def main() -> int:
    examples = int(os.environ.get("CONTRACT_EXAMPLES", DEFAULT_EXAMPLES))
    reports = Path(os.environ.get("CONTRACT_REPORTS", ROOT / "build" / "contract")).resolve()
    reports.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="contract-") as tmp, served(Path(tmp), reports) as urls:
        codes = {side: schemathesis_run(side, urls[side], examples, reports) for side in SIDES}
    elapsed = time.monotonic() - started
    for side, code in codes.items():
        verdict = "no findings" if code == 0 else f"FAILED (exit code {code})"
        print(f"contract {side}: {verdict}; report {reports / f'{side}.xml'}")
    print(f"contract: {examples} fuzzing cases per operation, {elapsed:.0f} s")
    return 0 if all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
