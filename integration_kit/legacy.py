"""The cut-over from the audited old systems: what both sides do the same way.

Each side keeps its assumptions about its old database in its own `legacy` package (tables,
column types, sender words, the checks of its rows); this module runs them: stamping an existing
old database, `migrate --check`, and `migrate` across the legacy path (docs/cutover.md).

The legacy path is a second Alembic script directory per side: its baseline revision is the old
schema, its one upgrade converts that schema, with its data, into exactly the state revision
`0001` of the main chain creates (it runs `0001` itself for the new tables). `migrate` then stamps
the main chain at `0001` and upgrades to head like any other database.

On SQLite the conversion is one transaction (`convert_in_place`). On PostgreSQL it is made while
the old system still writes, and writes wait only for its last step
(`integration_kit.legacy_online`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from alembic import command, context
from sqlalchemy import Connection, inspect, pool, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.util import await_only

from integration_kit import legacy_online
from integration_kit.db import async_url
from integration_kit.legacy_model import (
    MAIN_BASE_REVISION,
    Finding,
    LegacyLayout,
    LegacyRefused,
    LegacySide,
    Step,
    check_rows,
    copy_statement,
    create_legacy_fields_table,
    defer_message_indexes,
    run_main_base,
    scrub_rows,
    sender_case,
    ticket_fields_step,
)
from integration_kit.migrate import alembic_config, upgrade

__all__ = [
    "MAIN_BASE_REVISION",
    "Finding",
    "LegacyLayout",
    "LegacyRefused",
    "LegacySide",
    "LegacyUnstamped",
    "Step",
    "check",
    "convert",
    "create_legacy_database",
    "create_legacy_fields_table",
    "legacy_uuid",
    "legacy_uuid_sql",
    "migrate",
    "prepare",
    "run_legacy_env",
    "sender_case",
    "stamp_legacy",
    "state_of",
    "ticket_fields_step",
]

# Integer ids of the old systems become UUIDs in this namespace, the same on every run and on
# every machine: uuid3(LEGACY_NAMESPACE, "<side>:<table>:<id>"). Version 3 (MD5) rather than 5
# (SHA-1): PostgreSQL has md5() built in, so the mapping runs inside one INSERT ... SELECT
# without an extension; SHA-1 would need pgcrypto on the production server.
LEGACY_NAMESPACE = uuid.UUID("6c1f0e4e-8f3a-5b1e-9d2c-4a7b3e2f1c00")


def legacy_uuid(name: str) -> uuid.UUID:
    """The UUID of a legacy integer id, named `<side>:<table>:<id>`."""
    return uuid.uuid3(LEGACY_NAMESPACE, name)


def legacy_uuid_sql(prefix: str, column: str, dialect: str) -> tuple[str, str]:
    """SQL computing `legacy_uuid(prefix + column)` row by row, as the database's own UUID value:
    (the expression, what to add to the FROM clause).

    PostgreSQL: md5 of namespace bytes + name, once per row (a LATERAL subquery the planner
    folds in), with the version and variant bits of RFC 4122 set by overlay and translate
    (cheaper per row than bit arithmetic: this runs a million times). SQLite: the function
    `register_functions` registers (stored as 32 hex digits, as SQLAlchemy's Uuid stores it).
    """
    if dialect == "sqlite":
        return f"legacy_uuid('{prefix}' || {column})", ""
    expression = (
        "overlay(overlay(legacy_digest.h placing '3' from 13) placing "
        "translate(substr(legacy_digest.h, 17, 1), '0123456789abcdef', '89ab89ab89ab89ab') "
        "from 17)::uuid"
    )
    lateral = (
        f", LATERAL (SELECT md5(decode('{LEGACY_NAMESPACE.hex}', 'hex') "
        f"|| convert_to('{prefix}' || {column}::text, 'UTF8')) AS h) AS legacy_digest"
    )
    return expression, lateral


def register_functions(connection: Connection) -> None:
    """SQLite: make `legacy_uuid(name)` callable in SQL on this connection (aiosqlite driver)."""
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if driver is None:  # a wiring mistake, never data: checked under python -O too
        raise RuntimeError("the SQLite connection has no driver connection")
    await_only(driver.create_function("legacy_uuid", 1, _sqlite_legacy_uuid, deterministic=True))


def _sqlite_legacy_uuid(name: str) -> str:
    return legacy_uuid(str(name)).hex


class LegacyUnstamped(Exception):
    """Old tables without an Alembic version: nothing is migrated before an operator stamps."""

    def __init__(self, side: LegacySide) -> None:
        super().__init__(
            "the database has tables but no Alembic version: an old one? Stamp it first with "
            f"`python -m {side.name}_impl migrate --stamp-legacy` (docs/cutover.md)"
        )


def state_of(url: str, side: LegacySide) -> str:
    """'legacy' (stamped, not converted), 'converted' (needs the main stamp), 'unstamped' (an old
    database nobody has stamped: tables, no Alembic version), or 'main'."""
    revisions = _version_rows(url)
    if revisions is None:
        return "unstamped"
    if side.baseline in revisions:
        return "legacy"
    if side.converted in revisions:
        return "converted"
    return "main"


def _version_rows(url: str) -> set[str] | None:
    """The Alembic versions stored; None for a database with tickets but no version table."""

    async def read() -> set[str] | None:
        engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(_read_versions)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _read_versions(connection: Connection) -> set[str] | None:
    found = inspect(connection)
    if not found.has_table("alembic_version"):
        return None if found.has_table("tickets") else set()
    return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def stamp_legacy(url: str, side: LegacySide) -> None:
    """Mark an existing old database as the legacy baseline (it has no Alembic version yet)."""
    if _version_rows(url) is not None:
        raise ValueError(
            "the database has an Alembic version or no tables: it is not an unstamped old one"
        )
    command.stamp(alembic_config(side.migrations, url), side.baseline)


def create_legacy_database(url: str, side: LegacySide) -> None:
    """Create the old schema in an empty database (fixtures, the benchmark), stamped legacy."""
    command.upgrade(alembic_config(side.migrations, url), side.baseline)


def check(url: str, side: LegacySide) -> list[Finding]:
    """The rows of a stamped old database that would break the new model."""

    async def run() -> list[Finding]:
        engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(check_rows, side.layout)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _on_connection(url: str, work: Callable[[Connection], None]) -> None:
    """Run `work` with a connection that begins its own transactions."""

    async def run() -> None:
        engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(work)
        finally:
            await engine.dispose()

    asyncio.run(run())


def prepare(url: str, side: LegacySide, *, scrub: bool = False) -> bool:
    """PostgreSQL: refuse rows that would break the new model (before anything changes), then
    make the online copy (`legacy_online.prepare`) while the old system keeps writing. False
    on SQLite, whose conversion is one transaction with nothing to prepare."""
    if state_of(url, side) != "legacy":
        raise ValueError("not an old database stamped legacy: nothing to prepare")
    if not url.startswith("postgres"):
        return False
    findings = check(url, side)
    if findings and not scrub:
        raise LegacyRefused(findings)
    _on_connection(url, lambda connection: legacy_online.prepare(connection, side, scrub=scrub))
    return True


def migrate(url: str, side: LegacySide, *, scrub: bool = False) -> bool:
    """Convert a stamped old database and upgrade it to head; True if it was a legacy one.

    Rows that would break the new model are refused before anything changes (unless `scrub`).
    SQLite: the conversion is one transaction; it fails as a whole and leaves the old schema and
    data as they were. PostgreSQL: `prepare`, then the short final step in one transaction; a
    failure leaves the old tables as they were and a second run finishes (legacy_online).
    """
    state = state_of(url, side)
    if state == "unstamped":
        raise LegacyUnstamped(side)
    if state == "legacy":
        if url.startswith("postgres"):
            prepare(url, side, scrub=scrub)
        config = alembic_config(side.migrations, url)
        config.attributes["scrub"] = scrub
        config.attributes["side"] = side
        command.upgrade(config, "heads")
        state = "converted"
    if state == "converted":
        # The converted schema is exactly what 0001 makes: from here the main chain takes over.
        command.stamp(alembic_config(side.main_migrations, url), MAIN_BASE_REVISION, purge=True)
    upgrade(side.main_migrations, url)
    return state == "converted"


# --- the env.py of a legacy script directory --------------------------------------------------


def run_legacy_env() -> None:
    """The body of a legacy directory's env.py: online only, one transaction on both databases."""
    url = context.config.get_main_option("sqlalchemy.url") or ""
    asyncio.run(_run_online(url))


async def _run_online(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_do_run)
    finally:
        await engine.dispose()


def _do_run(connection: Connection) -> None:
    with connection.begin():
        if connection.dialect.name == "sqlite":
            # pysqlite only begins a transaction before DML; DDL would commit statement by
            # statement. An explicit BEGIN makes the whole conversion one transaction.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        register_functions(connection)
        context.configure(connection=connection, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()


# --- the conversion revision's body -----------------------------------------------------------


def convert(side: LegacySide) -> None:
    """The body of a side's conversion revision, inside its one transaction: on PostgreSQL the
    final step of the online conversion (`legacy_online.finish`; `migrate` made the copy
    first), on SQLite the whole conversion (`convert_in_place`)."""
    from alembic import op

    bind = op.get_bind()
    scrub = bool(context.config.attributes.get("scrub", False))
    if bind.dialect.name == "postgresql":
        legacy_online.finish(bind, side, scrub=scrub)
        return
    conversion = begin_conversion(side, scrub=scrub)
    for step in side.steps(bind.dialect.name):
        op.execute(copy_statement(step, old="legacy_", new=""))
    end_conversion(conversion)


@dataclass
class Conversion:
    """A conversion in progress: its connection, and what to build again after the copy."""

    bind: Connection
    rebuild: list[str]


def begin_conversion(side: LegacySide, *, scrub: bool) -> Conversion:
    """The first half of the one-transaction conversion.

    Checks the old rows (scrubbing them if `migrate --scrub` asked for it, else refusing),
    moves the old tables aside as `legacy_tickets` / `legacy_messages`, and creates the new
    tables by running revision 0001 of the main chain itself, so they are exactly what a fresh
    database gets. The caller copies the rows across and calls `end_conversion`.
    """
    from alembic import op

    bind = op.get_bind()
    findings = check_rows(bind, side.layout)
    if findings:
        if not scrub:
            raise LegacyRefused(findings)
        scrub_rows(bind, side.layout, findings)
    op.rename_table("tickets", "legacy_tickets")
    op.rename_table("messages", "legacy_messages")
    run_main_base(side.main_migrations)
    return Conversion(bind, defer_message_indexes(bind))


def end_conversion(conversion: Conversion) -> None:
    """Build the deferred indexes, drop the old tables, and let the new sequence continue
    after the copied ids (PostgreSQL)."""
    from alembic import op

    bind = conversion.bind
    for statement in conversion.rebuild:
        op.execute(statement)
    op.drop_table("legacy_messages")
    op.drop_table("legacy_tickets")
    if bind.dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('messages', 'seq'), "
            "coalesce((SELECT max(seq) FROM messages), 0) + 1, false)"
        )
