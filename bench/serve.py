"""Serve one backend for the benchmarks: migrated SQLite, uvicorn with uvloop and httptools, and
the peer transport and dispatcher batching chosen on the command line (the baselines)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from integration_kit.gc_tuning import tune_for_serving
from integration_kit.migrate import upgrade
from integration_kit.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def build(args: argparse.Namespace) -> Runtime:
    url = f"sqlite:///{args.db}"
    common: dict[str, Any] = {"database_url": url, "port": args.port, "peer_url": args.peer_url}
    # Rate limits as the run asks: the product's defaults unless told otherwise.
    if args.integration_rate_limit is not None:
        common["integration_rate_limit"] = args.integration_rate_limit
    if args.rate_limit_storage:
        common["rate_limit_storage_url"] = args.rate_limit_storage
        common["rate_limit_key_prefix"] = args.rate_limit_prefix
    # Plain httpx is the baseline; None lets the backend use its default (aiohttp underneath).
    transport = (
        httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=100))
        if args.transport == "httpx"
        else None
    )
    runtime: Runtime
    if args.side == "tma":
        from tma_impl.app import build_runtime
        from tma_impl.settings import TmaSettings

        upgrade(ROOT / "tma_impl" / "migrations", url)
        runtime = build_runtime(TmaSettings(**common), peer_transport=transport)
    else:
        from crm_impl.app import build_runtime as build_crm
        from crm_impl.settings import CrmSettings

        upgrade(ROOT / "crm_impl" / "migrations", url)
        runtime = build_crm(CrmSettings(**common), peer_transport=transport)
    runtime.dispatcher.config = dataclasses.replace(
        runtime.dispatcher.config, batch_size=args.batch_size, per_stream=args.per_stream
    )
    return runtime


def without_change_log() -> None:
    """The receiving path as it was before the change feed: no change-log row per message."""
    from integration_kit import inbound

    async def no_row(*_args: object, **_kwargs: object) -> None:
        return None

    inbound.log_change = no_row  # type: ignore[assignment]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=["tma", "crm"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--peer-url", required=True)
    parser.add_argument("--transport", choices=["aiohttp", "httpx"], default="aiohttp")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--per-stream", type=int, default=20)
    parser.add_argument("--integration-rate-limit", help='e.g. "" for none')
    parser.add_argument("--rate-limit-storage", help="e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--rate-limit-prefix", default="ratelimit-bench")
    parser.add_argument(
        "--no-change-log",
        action="store_true",
        help="baseline: receive without writing the change feed's log row",
    )
    parser.add_argument(
        "--server",
        choices=["uvicorn", "granian"],
        default="uvicorn",
        help="the ASGI server (uvicorn with uvloop and httptools is the product's)",
    )
    return parser.parse_args(argv)


def app_from_env() -> Any:
    """The app for a server that imports its target (granian): arguments from the environment."""
    args = parse(json.loads(os.environ["BENCH_SERVE_ARGV"]))
    return make_app(args)


def make_app(args: argparse.Namespace) -> Any:
    if args.no_change_log:
        without_change_log()
    runtime = build(args)
    if args.side == "tma":
        from tma_impl.app import create_app
    else:
        from crm_impl.app import create_app
    app = create_app(runtime)
    tune_for_serving()  # as `serve` does
    return app


def main() -> int:
    args = parse()
    if args.server == "granian":
        from granian.constants import Interfaces, Loops
        from granian.log import LogLevels
        from granian.server import Server

        # Granian imports the app in its worker process: this module, arguments by environment.
        os.environ["BENCH_SERVE_ARGV"] = json.dumps(sys.argv[1:])
        os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT)])
        sys.path.insert(0, str(HERE))
        Server(
            "serve:app_from_env",
            address="127.0.0.1",
            port=args.port,
            interface=Interfaces.ASGI,
            workers=1,
            loop=Loops.uvloop,
            factory=True,
            log_level=LogLevels.warning,
        ).serve()
        return 0
    app = make_app(args)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
