"""`python -m crm_impl`: the shared commands plus `operators` (add, list, revoke, admin rights)."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from crm_impl.cutover import LINK
from crm_impl.legacy import SIDE as LEGACY
from crm_impl.settings import CrmSettings
from integration_kit import cutover_cli
from integration_kit.cli import BackendCommands, CommandError, main
from integration_kit.clock import SystemClock
from integration_kit.db import Database
from integration_kit.narrowing import narrowed
from integration_kit.settings import IntegrationSettings

# The app and the operator tables are imported by the commands that use them only: a command
# that fails on its settings or its database says so without first loading the web stack.
if TYPE_CHECKING:
    from crm_impl.tables import Operator
    from integration_kit.reconcile import ReconcileSide
    from integration_kit.runtime import Runtime

MIGRATIONS = Path(__file__).parent / "migrations"


def _add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    cutover_cli.add_link_command(sub)
    cutover_cli.add_backfill_command(sub)
    operators = sub.add_parser("operators", help="manage operator accounts and their tokens")
    op_sub = operators.add_subparsers(dest="operators_command", required=True)
    add = op_sub.add_parser("add", help="create an operator and print their token (shown once)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may replay and skip undelivered events")
    op_sub.add_parser("list", help="list operators")
    revoke = op_sub.add_parser("revoke", help="revoke an operator's token and console sessions")
    revoke.add_argument("operator_id")
    grant = op_sub.add_parser("grant-admin", help="let an operator replay and skip events")
    grant.add_argument("operator_id")
    take = op_sub.add_parser("revoke-admin", help="take admin rights back")
    take.add_argument("operator_id")


async def add_operator(
    db: Database, name: str, *, now: Any, admin: bool = False
) -> tuple[Operator, str]:
    """Create an operator; returns it with the plain token, which is stored only hashed."""
    from crm_impl.operators.auth import hash_token, new_token
    from crm_impl.tables import Operator

    name = name.strip()
    if not 1 <= len(name) <= 128:
        raise CommandError("an operator name is 1 to 128 characters")
    token = new_token()
    async with db.transaction() as session:
        operator = Operator(
            id=uuid.uuid4(),
            name=name,
            token_hash=hash_token(token),
            created_at=now,
            is_admin=admin,
        )
        session.add(operator)
    return operator, token


async def _operators(args: argparse.Namespace, settings: CrmSettings) -> int:
    from crm_impl.operators import sessions
    from crm_impl.tables import Operator

    db = Database.for_backend(settings, "crm")
    now = SystemClock().now()
    try:
        if args.operators_command == "add":
            operator, token = await add_operator(db, args.name, now=now, admin=args.admin)
            role = " (admin)" if operator.is_admin else ""
            print(f"operator {operator.name}{role} created: id {operator.id}")
            print(f"token (shown once, keep it secret): {token}")
            return 0
        async with db.transaction() as session:
            if args.operators_command == "list":
                rows = (await session.scalars(select(Operator).order_by(Operator.created_at))).all()
                for op in rows:
                    state = f"revoked {op.revoked_at:%Y-%m-%d}" if op.revoked_at else "active"
                    state += ", admin" if op.is_admin else ""
                    print(f"{op.id}  {state:25} {op.name}")
                print(f"{len(rows)} operator(s)")
                return 0
            try:
                operator_id = uuid.UUID(args.operator_id)
            except ValueError:
                raise CommandError(f"{args.operator_id!r} is not an operator id (a UUID)") from None
            found = await session.get(Operator, operator_id)
            if found is None:
                raise CommandError(f"no operator {operator_id}")
            if args.operators_command == "grant-admin":
                found.is_admin = True
                print(f"operator {found.name} is an admin: may replay and skip events")
                return 0
            if args.operators_command == "revoke-admin":
                found.is_admin = False
                print(f"operator {found.name} is no longer an admin")
                return 0
            found.revoked_at = found.revoked_at or now
            await sessions.end_all_of(session, found.id)
            print(f"operator {found.name} revoked; their token and console sessions no longer work")
            return 0
    finally:
        await db.dispose()


def _handle_operators(args: argparse.Namespace, settings: IntegrationSettings) -> int:
    return asyncio.run(_operators(args, narrowed(settings, CrmSettings)))


def _build(settings: IntegrationSettings) -> Runtime:
    from crm_impl.app import build_runtime

    return build_runtime(narrowed(settings, CrmSettings))


def _create_app(runtime: Runtime) -> Any:
    from crm_impl.app import create_app

    return create_app(runtime)


def _reconcile_side(runtime: Runtime) -> ReconcileSide:
    from crm_impl.integration.reconcile import reconcile_side

    return reconcile_side(outbox=runtime.outbox, clock=runtime.clock)


COMMANDS = BackendCommands(
    name="crm",
    load_settings=CrmSettings,
    build_runtime=_build,
    create_app=_create_app,
    migrations=MIGRATIONS,
    add_commands=_add_commands,
    legacy=LEGACY,
    reconcile_side=_reconcile_side,
    handlers={
        "link": lambda args, settings: asyncio.run(
            cutover_cli.run_link(Database.for_backend(settings, "crm"), LINK, args)
        ),
        "backfill": lambda args, settings: asyncio.run(
            cutover_cli.run_backfill(
                Database.for_backend(settings, "crm"),
                LINK,
                args,
                now=SystemClock().now(),
                backfill=None,
            )
        ),
        "operators": _handle_operators,
    },
    database_commands=frozenset({"operators", "link", "backfill"}),
)


def run() -> int:
    return main(COMMANDS)
