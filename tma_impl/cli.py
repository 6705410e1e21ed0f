"""`python -m tma_impl`: the shared commands plus `mint-initdata` for development."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integration_kit import cutover_cli
from integration_kit.cli import BackendCommands, CommandError, main
from integration_kit.clock import SystemClock
from integration_kit.db import Database
from integration_kit.narrowing import narrowed
from integration_kit.settings import Environment, IntegrationSettings
from tma_impl.cutover import LINK, backfill_step
from tma_impl.legacy import SIDE as LEGACY
from tma_impl.settings import TmaSettings
from tma_impl.telegram import TelegramUser, mint_init_data

if TYPE_CHECKING:
    from integration_kit.reconcile import ReconcileSide
    from integration_kit.runtime import Runtime

MIGRATIONS = Path(__file__).parent / "migrations"


def _add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    cutover_cli.add_link_command(sub)
    cutover_cli.add_backfill_command(sub)
    mint = sub.add_parser(
        "mint-initdata", help="print valid initData for a test user (development only)"
    )
    mint.add_argument("--user-id", type=int, default=100001)
    mint.add_argument("--first-name", default="Test")
    mint.add_argument("--username", default=None)
    mint.add_argument("--language", default="en")
    mint.add_argument("--header", action="store_true", help="print as an Authorization header")


def _mint(args: argparse.Namespace, any_settings: IntegrationSettings) -> int:
    settings = narrowed(any_settings, TmaSettings)
    if settings.environment is not Environment.development:
        raise CommandError("mint-initdata only works with TMA_ENVIRONMENT=development")
    if args.user_id < 1:
        raise CommandError("--user-id must be a positive Telegram user id")
    user = TelegramUser(
        id=args.user_id,
        first_name=args.first_name,
        username=args.username,
        language_code=args.language,
    )
    init_data = mint_init_data(
        bot_token=settings.dev_bot_token, user=user, auth_date=SystemClock().now()
    )
    print(f"Authorization: tma {init_data}" if args.header else init_data)
    return 0


# The app is imported by the commands that use it only: a command that fails on its settings or
# its database says so without first loading the whole web stack.
def _build(settings: IntegrationSettings) -> Runtime:
    from tma_impl.app import build_runtime

    return build_runtime(narrowed(settings, TmaSettings))


def _create_app(runtime: Runtime) -> Any:
    from tma_impl.app import create_app

    return create_app(runtime)


def _reconcile_side(runtime: Runtime) -> ReconcileSide:
    from tma_impl.integration.reconcile import reconcile_side

    return reconcile_side(outbox=runtime.outbox)


COMMANDS = BackendCommands(
    name="tma",
    load_settings=TmaSettings,
    build_runtime=_build,
    create_app=_create_app,
    migrations=MIGRATIONS,
    add_commands=_add_commands,
    legacy=LEGACY,
    reconcile_side=_reconcile_side,
    handlers={
        "link": lambda args, settings: asyncio.run(
            cutover_cli.run_link(Database.for_backend(settings, "tma"), LINK, args)
        ),
        "backfill": lambda args, settings: asyncio.run(
            cutover_cli.run_backfill(
                Database.for_backend(settings, "tma"),
                LINK,
                args,
                now=SystemClock().now(),
                backfill=backfill_step,
            )
        ),
        "mint-initdata": _mint,
    },
    database_commands=frozenset({"link", "backfill"}),
)


def run() -> int:
    return main(COMMANDS)
