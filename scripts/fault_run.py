"""Run the fault-injection harness by hand, at any size, and print its figures.

    python scripts/fault_run.py --messages 10000
    python scripts/fault_run.py --messages 10000 --database postgresql \\
        --postgres-url postgresql://postgres@127.0.0.1:5432/postgres
    python scripts/fault_run.py --messages 2000 --restore tma    # a restore from backup too

Exit code 0 when nothing was lost, duplicated, reordered or left undelivered, else 1. Process
logs stay in the work folder (`--workdir`, a temporary folder by default) when a run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness lives in tests/faults

from tests.faults.harness import Harness, HarnessConfig, Report  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_DATABASE_URL", ""))
    parser.add_argument("--api-processes", type=int, help="per side (sqlite 1, postgresql 2)")
    parser.add_argument("--workers", type=int, help="per side (sqlite 1, postgresql 3)")
    parser.add_argument("--concurrency", type=int, default=100, help="tickets written at once")
    parser.add_argument(
        "--min-seconds", type=float, default=30.0, help="spread the load over at least this"
    )
    parser.add_argument("--burst", type=int, default=3, help="requests broken per fault step")
    parser.add_argument("--converge-timeout", type=float, default=600.0)
    parser.add_argument(
        "--status-rate", type=float, default=0.08, help="chance of a status change per step"
    )
    parser.add_argument(
        "--peer-timeout", type=float, default=1.0, help="the senders' HTTP timeout, seconds"
    )
    parser.add_argument(
        "--lease", type=float, default=3.0, help="a killed worker's events wait this long"
    )
    parser.add_argument(
        "--no-faults", action="store_true", help="the same load without faults (a baseline)"
    )
    parser.add_argument(
        "--rate-peaks",
        action="store_true",
        help="watch the API processes' /metrics and print the most requests one caller made in"
        " one window of each rate limit (the figures the default limits sit above)",
    )
    parser.add_argument(
        "--restore",
        choices=["tma", "crm"],
        help="restore this side from a copy taken earlier in the run, then reconcile both",
    )
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--seed", type=int, default=5)
    return parser.parse_args(argv)


async def run(
    config: HarnessConfig, workdir: Path, peaks: dict[tuple[str, str, str], float] | None = None
) -> Report:
    harness = Harness(config, workdir)
    stop = asyncio.Event()
    watcher: asyncio.Task[None] | None = None
    try:
        await harness.setup()
        if peaks is not None:
            watcher = asyncio.create_task(watch_rate_peaks(harness, peaks, stop))
        return await harness.run()
    except BaseException:
        print(harness.logs(), file=sys.stderr)
        raise
    finally:
        stop.set()
        if watcher is not None:
            await watcher
        await harness.close()


async def watch_rate_peaks(
    harness: Harness, peaks: dict[tuple[str, str, str], float], stop: asyncio.Event
) -> None:
    """Poll every API process's rate_limit_peak_count; keep the highest per side, scope, limit.

    Each process counts its own callers (in-process limits), so with several API processes per
    side these are per process.
    """
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            for name, side in harness.sides.items():
                for port in side.api_ports:
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                            text = await response.text()
                    except (aiohttp.ClientError, TimeoutError):
                        continue  # a process the chaos stopped
                    for family in text_string_to_metric_families(text):
                        for sample in family.samples:
                            if sample.name == "rate_limit_peak_count":
                                key = (name, sample.labels["scope"], sample.labels["limit"])
                                peaks[key] = max(peaks.get(key, 0.0), sample.value)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.database == "postgresql" and not args.postgres_url:
        print("error: --postgres-url (or TEST_DATABASE_URL) is needed", file=sys.stderr)
        return 2
    config = HarnessConfig.for_kind(args.database, args.messages, args.postgres_url)
    config = dataclasses.replace(
        config,
        concurrency=args.concurrency,
        min_load_seconds=args.min_seconds,
        burst=args.burst,
        converge_timeout_seconds=args.converge_timeout,
        seed=args.seed,
        status_change_rate=args.status_rate,
        inject_faults=not args.no_faults,
        timing=dataclasses.replace(
            config.timing, peer_timeout_seconds=args.peer_timeout, lease_seconds=args.lease
        ),
        api_processes=args.api_processes or config.api_processes,
        workers=args.workers or config.workers,
        restore_side=args.restore or "",
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fault-run-"))
    peaks: dict[tuple[str, str, str], float] | None = {} if args.rate_peaks else None
    report = asyncio.run(run(config, workdir, peaks))
    for line in report.lines():
        print(line)
    for (side, scope, limit), count in sorted((peaks or {}).items()):
        print(
            f"rate-limit peak: {side} {scope}: {count:.0f} requests of one caller in a window"
            f" of {limit}"
        )
    verdict = report.verdict
    clean = not verdict.problems and not report.unexpected_dead
    for problem in verdict.problems:
        print(f"PROBLEM: {problem}")
    if clean and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not clean:
        print(f"process logs: {workdir}")
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
