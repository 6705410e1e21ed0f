"""The command line both backends share: serve, migrate, worker, outbox, purge, reconcile,
restored.

Each backend's `__main__` describes itself with a `BackendCommands` and may add its own commands.
Errors are printed as one line that says what to do, with exit code 2 (1 for an error nobody
foresaw), never as a traceback unless asked for with `--debug`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from integration_kit import changelog, cutover_cli
from integration_kit.failures import Where, describe, first_line
from integration_kit.gc_tuning import tune_for_serving
from integration_kit.legacy import LegacySide
from integration_kit.migrate import upgrade
from integration_kit.preflight import check_database
from integration_kit.reconcile import ReconcileError, ReconcileSide, reconcile
from integration_kit.settings import IntegrationSettings
from integration_kit.settings_rules import describe_settings_error

if TYPE_CHECKING:  # the web stack is imported only by the commands that run it
    from integration_kit.runtime import Runtime

# Each line names the request it was written for (`-` outside one); see request_context.py.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


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
    # The backend's own commands that need a migrated database (checked before they run).
    database_commands: frozenset[str] = frozenset()
    legacy: LegacySide | None = None  # the way from the audited old system (docs/cutover.md)
    reconcile_side: Callable[[Runtime], ReconcileSide] | None = None


def main(backend: BackendCommands, argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {backend.name}_impl")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback behind an error (accepted anywhere on the line)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="serve the API (with the dispatcher unless --no-dispatcher)"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int, help="0: any free port (the one taken is printed)")
    serve.add_argument(
        "--no-dispatcher",
        action="store_true",
        help="deliver with separate `worker` processes instead",
    )
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate before serving")
    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    cutover_cli.add_migrate_options(migrate)
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
    if backend.reconcile_side is not None:
        rec = sub.add_parser(
            "reconcile", help="compare with the peer's change feed and repair what differs"
        )
        start = rec.add_mutually_exclusive_group()
        start.add_argument("--full", action="store_true", help="read the peer's whole feed")
        start.add_argument(
            "--since", type=_instant, help="only changes at or after TIME (ISO 8601, with offset)"
        )
        rec.add_argument(
            "--dry-run", action="store_true", help="print the differences, change nothing"
        )
        sub.add_parser(
            "restored",
            help="after restoring this database from a backup: new feed epoch, full reconcile next",
        )
    backend.add_commands(sub)
    words = list(sys.argv[1:] if argv is None else argv)
    # `--debug` may follow the command too (`worker --debug`), where a user tends to add it.
    debug = "--debug" in words
    args = parser.parse_args([word for word in words if word != "--debug"])
    # Configure logging only where nobody has yet (a fresh process), as basicConfig itself does: a
    # host that calls main() in-process (tests) keeps its own logging set-up.
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format=LOG_FORMAT,
        )
        from integration_kit.request_context import RequestIdFilter  # loads the web stack

        for handler in logging.getLogger().handlers:
            handler.addFilter(RequestIdFilter())  # `-` outside a request
        # httpx logs every request URL at INFO; the Bot API's URL carries the bot token.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        # Alembic says every revision it runs; `migrate` and `serve` say in one line where the
        # database stands, so what a newcomer sees first is where to go, not the schema's history.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    if debug:
        # Our modules attach tracebacks to their one-line failure logs at DEBUG.
        logging.getLogger("integration_kit").setLevel(logging.DEBUG)
    prefix = f"{backend.name.upper()}_"
    try:
        settings = backend.load_settings()
    except ValidationError as exc:
        return _fail(f"invalid settings: {describe_settings_error(exc, prefix)}", debug=debug)
    except SettingsError as exc:
        return _fail(f"invalid settings: {exc}", debug=debug)
    where = Where(
        url=settings.resolved_database_url(backend.name),
        prefix=prefix,
        program=f"python -m {backend.name}_impl",
    )
    try:
        if _uses_a_migrated_database(backend, args):
            check_database(where, backend.migrations)
        if args.command == "serve":
            return _serve(backend, settings, args)
        if args.command == "migrate":
            if backend.legacy is not None:
                url = settings.resolved_database_url(backend.name)
                code = cutover_cli.migrate(backend.legacy, url, args)
                if code is not None:
                    return code
            else:
                _migrate(backend, settings)
            print(f"{backend.name}: database at {_where(settings, backend)} is up to date")
            return 0
        if args.command == "worker":
            return asyncio.run(_worker(backend, settings))
        if args.command == "outbox":
            return asyncio.run(_outbox(backend, settings, args))
        if args.command == "reconcile":
            return asyncio.run(_reconcile(backend, settings, args))
        if args.command == "restored":
            return asyncio.run(_restored(backend, settings))
        return backend.handlers[args.command](args, settings)
    except (CommandError, cutover_cli.CutoverError, ReconcileError) as exc:
        return _fail(str(exc), debug=debug)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        line = describe(exc, where)
        if line is None:
            return _fail(
                f"unexpected {type(exc).__name__}: {first_line(exc)}"
                + ("" if debug else " (run again with --debug for the traceback)"),
                debug=debug,
                code=1,
            )
        return _fail(line, debug=debug)


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset (say Z or +01:00)")
    return value.astimezone(UTC)


async def _reconcile(
    backend: BackendCommands, settings: IntegrationSettings, args: argparse.Namespace
) -> int:
    if backend.reconcile_side is None:
        raise CommandError(f"{backend.name} has no change feed to reconcile")
    runtime = backend.build_runtime(settings)
    try:
        summary = await reconcile(
            runtime,
            backend.reconcile_side(runtime),
            full=args.full,
            since=args.since,
            dry_run=args.dry_run,
        )
    finally:
        await runtime.close()
    for line in summary.lines:
        print(("would repair " if args.dry_run else "repaired ") + line)
    print(f"{backend.name}: {summary.render(dry_run=args.dry_run)}")
    return 0


async def _restored(backend: BackendCommands, settings: IntegrationSettings) -> int:
    runtime = backend.build_runtime(settings)
    try:
        if backend.reconcile_side is None:
            raise CommandError(f"{backend.name} has no change feed")
        side = backend.reconcile_side(runtime)
        async with runtime.db.transaction() as session:
            epoch = await changelog.restored(session, side.feed.state, now=runtime.clock.now())
    finally:
        await runtime.close()
    print(
        f"{backend.name}: feed epoch is now {epoch}; the peer reads this feed again from its "
        f"start, and the next `reconcile` here reads the peer's whole feed"
    )
    return 0


def _uses_a_migrated_database(backend: BackendCommands, args: argparse.Namespace) -> bool:
    """Commands that need the schema in place; `serve` migrates first unless told not to."""
    if args.command == "serve":
        return bool(args.no_migrate)
    return args.command in {"worker", "outbox", "reconcile", "restored"} | backend.database_commands


def _fail(message: str, *, debug: bool, code: int = 2) -> int:
    """Print one line (after the traceback, when asked for it) and return the exit code."""
    if debug and sys.exc_info()[1] is not None:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return code


def _where(settings: IntegrationSettings, backend: BackendCommands) -> str:
    return settings.resolved_database_url(backend.name).split("@")[-1]


def _migrate(backend: BackendCommands, settings: IntegrationSettings) -> None:
    url = settings.resolved_database_url(backend.name)
    if backend.legacy is not None:
        cutover_cli.refuse_legacy(backend.legacy, url)
    upgrade(backend.migrations, url)


def _serve(
    backend: BackendCommands, settings: IntegrationSettings, args: argparse.Namespace
) -> int:
    import uvicorn

    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    # Bound first, before migrating and saying we listen: a port already taken (say, by an
    # earlier `make run`) is refused in one line instead of a uvicorn log after "listening".
    sock = _bind(host, port, backend)
    if not args.no_migrate:
        try:
            _migrate(backend, settings)
        except BaseException:
            sock.close()
            raise
    runtime = backend.build_runtime(settings)
    runtime.run_dispatcher = settings.dispatcher_enabled and not args.no_dispatcher
    app = backend.create_app(runtime)
    print(f"{backend.name}: listening on http://{host}:{sock.getsockname()[1]}", flush=True)
    tune_for_serving()
    from integration_kit.serving import StoppingServer

    # A stop waits for open responses, and event streams stay open until the client goes: they
    # are told at once (Runtime.stopping, Runtime.on_stopping) and end; the timeout cuts the rest.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    server = StoppingServer(config, runtime)
    with sock:
        server.run(sockets=[sock])
    return 0 if server.started else 3


def _bind(host: str, port: int, backend: BackendCommands) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a port left in TIME_WAIT by a stopped server may be reused at once.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening from here on (connections wait in the backlog until uvicorn accepts them),
        # so "listening on" is true when it is printed.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise CommandError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): another process serves "
            f"there (an earlier `make run`?); stop it, or choose another port with --port or "
            f"{backend.name.upper()}_PORT"
        ) from None
    return sock


async def _worker(backend: BackendCommands, settings: IntegrationSettings) -> int:
    runtime = backend.build_runtime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tune_for_serving()
    runtime.start_delivery()
    print(f"{backend.name}: worker {runtime.dispatcher.owner} delivering", flush=True)
    await stop.wait()
    # Graceful: the round in flight is settled, so nothing is left leased to a dead process.
    await runtime.close()
    return 0


async def _outbox(
    backend: BackendCommands, settings: IntegrationSettings, args: argparse.Namespace
) -> int:
    from integration_kit.schema import OutboxState

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
