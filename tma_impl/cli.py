"""`python -m tma_impl`: the shared commands plus `mint-initdata` for development."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from integration_kit.cli import BackendCommands, CommandError, main
from integration_kit.clock import SystemClock
from integration_kit.settings import Environment, IntegrationSettings
from tma_impl.app import build_runtime, create_app
from tma_impl.integration.reconcile import reconcile_side
from tma_impl.settings import TmaSettings
from tma_impl.telegram import TelegramUser, mint_init_data

MIGRATIONS = Path(__file__).parent / "migrations"


def _add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    mint = sub.add_parser(
        "mint-initdata", help="print valid initData for a test user (development only)"
    )
    mint.add_argument("--user-id", type=int, default=100001)
    mint.add_argument("--first-name", default="Test")
    mint.add_argument("--username", default=None)
    mint.add_argument("--language", default="en")
    mint.add_argument("--header", action="store_true", help="print as an Authorization header")


def _mint(args: argparse.Namespace, settings: IntegrationSettings) -> int:
    assert isinstance(settings, TmaSettings)
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


def _build(settings: IntegrationSettings) -> Any:
    assert isinstance(settings, TmaSettings)
    return build_runtime(settings)


COMMANDS = BackendCommands(
    name="tma",
    load_settings=TmaSettings,
    build_runtime=_build,
    create_app=create_app,
    migrations=MIGRATIONS,
    add_commands=_add_commands,
    reconcile_side=lambda runtime: reconcile_side(outbox=runtime.outbox),
    handlers={"mint-initdata": _mint},
)


def run() -> int:
    return main(COMMANDS)
