"""The command line both backends share: serve, migrate, worker, outbox, purge.

Each backend's `__main__` describes itself with a `BackendCommands` and may add its own commands.
Errors are printed as one readable line with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.exc import DBAPIError

from integration_kit.gc_tuning import tune_for_serving
from integration_kit.migrate import upgrade
from integration_kit.runtime import Runtime
from integration_kit.schema import OutboxState
from integration_kit.settings import IntegrationSettings


class CommandError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


@dataclass
class BackendCommands:
    name: str
    load_settings: Callable[[], IntegrationSettings]
    build_runtime: Callable[[IntegrationSettings], Runtime]
    create_app: Callable[[Runtime], Any]
    migrations: Path
    add_commands: Callable[[argparse._SubParsersAction[Any]], None] = lambda _sub: None
    handlers: dict[str, Callable[[argparse.Namespace, IntegrationSettings], int]] = field(
        default_factory=dict
    )


def main(backend: BackendCommands, argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {backend.name}_impl")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="serve the API (with the dispatcher unless --no-dispatcher)"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--no-dispatcher",
        action="store_true",
        help="deliver with separate `worker` processes instead",
    )
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate before serving")
    sub.add_parser("migrate", help="create or upgrade the database schema")
    sub.add_parser("worker", help="run the dispatcher alone (scale-out)")
    outbox = sub.add_parser("outbox", help="inspect and repair deliveries")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True)
    listing = outbox_sub.add_parser("list", help="list pending and dead events")
    listing.add_argument("--state", choices=["pending", "dead", "all"], default="all")
    listing.add_argument("--limit", type=int, default=100)
    replay = outbox_sub.add_parser("replay", help="put a dead event back in line")
    replay.add_argument("event_id", type=int)
    skip = outbox_sub.add_parser("skip", help="give up on a dead event, releasing its ticket")
    skip.add_argument("event_id", type=int)
    skip.add_argument("--reason", required=True)
    outbox_sub.add_parser("purge", help="delete delivered events older than the retention")
    backend.add_commands(sub)
    args = parser.parse_args(argv)
    # Configure logging only where nobody has yet (a fresh process), as basicConfig itself does: a
    # host that calls main() in-process (tests) keeps its own logging set-up.
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        # httpx logs every request URL at INFO; the Bot API's URL carries the bot token.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = backend.load_settings()
    except ValidationError as exc:
        print(f"error: invalid settings: {_validation_summary(exc)}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            return _serve(backend, settings, args)
        if args.command == "migrate":
            _migrate(backend, settings)
            print(f"{backend.name}: database at {_where(settings, backend)} is up to date")
            return 0
        if args.command == "worker":
            return asyncio.run(_worker(backend, settings))
        if args.command == "outbox":
            return asyncio.run(_outbox(backend, settings, args))
        return backend.handlers[args.command](args, settings)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        print(f"error: {_database_problem(exc, backend)}", file=sys.stderr)
        return 2


def _database_problem(exc: DBAPIError, backend: BackendCommands) -> str:
    """What went wrong with the database, in one line, without its URL or the SQL."""
    text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return (
            f"the database has no tables yet: run `python -m {backend.name}_impl migrate` ({text})"
        )
    return f"database unavailable: {text}"


def _validation_summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
        for err in exc.errors()
    )


def _where(settings: IntegrationSettings, backend: BackendCommands) -> str:
    return settings.resolved_database_url(backend.name).split("@")[-1]


def _migrate(backend: BackendCommands, settings: IntegrationSettings) -> None:
    upgrade(backend.migrations, settings.resolved_database_url(backend.name))


def _serve(
    backend: BackendCommands, settings: IntegrationSettings, args: argparse.Namespace
) -> int:
    import uvicorn

    if not args.no_migrate:
        _migrate(backend, settings)
    runtime = backend.build_runtime(settings)
    runtime.run_dispatcher = settings.dispatcher_enabled and not args.no_dispatcher
    app = backend.create_app(runtime)
    host, port = args.host or settings.host, args.port or settings.port
    print(f"{backend.name}: listening on http://{host}:{port}", flush=True)
    tune_for_serving()
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    # A stop waits for open responses; event streams stay open until the client goes, so they
    # are told (runtime.stopping) as soon as the stop signal arrives, and end.
    handle_exit = server.handle_exit

    def stop_streams_then_exit(sig: int, frame: Any) -> None:
        runtime.stopping.set()
        handle_exit(sig, frame)

    server.handle_exit = stop_streams_then_exit  # type: ignore[method-assign]
    server.run()
    return 0 if server.started else 3


async def _worker(backend: BackendCommands, settings: IntegrationSettings) -> int:
    runtime = backend.build_runtime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tune_for_serving()
    runtime.dispatcher.start()
    print(f"{backend.name}: worker {runtime.dispatcher.owner} delivering", flush=True)
    await stop.wait()
    # Graceful: the round in flight is settled, so nothing is left leased to a dead process.
    await runtime.close()
    return 0


async def _outbox(
    backend: BackendCommands, settings: IntegrationSettings, args: argparse.Namespace
) -> int:
    runtime = backend.build_runtime(settings)
    repo, now = runtime.outbox, runtime.clock.now()
    try:
        async with runtime.db.transaction() as session:
            if args.outbox_command == "list":
                states = (
                    [OutboxState.pending, OutboxState.dead] if args.state == "all" else [args.state]
                )
                rows = await repo.list_events(session, states=states, limit=args.limit)
                header = f"{'id':>8}  {'state':8} {'kind':16} {'ticket':36}  attempts"
                print(header + "  next attempt / error")
                for row in rows:
                    tail = (
                        row.last_error
                        if row.state == OutboxState.dead
                        else (
                            row.next_attempt_at.isoformat(timespec="seconds")
                            + (f"  ({row.last_error})" if row.last_error else "")
                        )
                    )
                    print(
                        f"{row.id:>8}  {row.state:8} {row.kind:16} {row.ticket_id!s:36}  "
                        f"{row.attempts:>8}  {tail}"
                    )
                print(f"{len(rows)} event(s)")
                return 0
            if args.outbox_command == "purge":
                cutoff = now - timedelta(days=settings.retention_days)
                count = await repo.purge_delivered(session, older_than=cutoff)
                print(
                    f"purged {count} delivered event(s) older than {settings.retention_days} days"
                )
                return 0
            event = await repo.get(session, args.event_id)
            if event is None:
                raise CommandError(f"no outbox event {args.event_id}")
            if event.state != OutboxState.dead:
                raise CommandError(
                    f"event {args.event_id} is {event.state}, not dead: only dead events can be "
                    f"{'replayed' if args.outbox_command == 'replay' else 'skipped'}"
                )
            if args.outbox_command == "replay":
                await repo.replay(
                    session,
                    args.event_id,
                    now=now,
                    note=f"[{now.isoformat()}] replayed from the command line\n",
                )
                print(f"event {args.event_id} replayed: it is pending and due now")
                return 0
            await repo.skip(
                session,
                args.event_id,
                now=now,
                note=f"[{now.isoformat()}] skipped: {args.reason}\n",
            )
            print(f"event {args.event_id} skipped; later events of ticket {event.ticket_id} may go")
            return 0
    finally:
        await runtime.close()
