"""The cut-over from the audited old systems: what both sides do the same way.

Each side keeps its assumptions about its old database in its own `legacy` package (tables,
column types, sender words, the checks of its rows); this module runs them: stamping an existing
old database, `migrate --check`, and `migrate` across the legacy path (docs/cutover.md).

The legacy path is a second Alembic script directory per side: its baseline revision is the old
schema, its one upgrade converts that schema, with its data, into exactly the state revision
`0001` of the main chain creates (it runs `0001` itself for the new tables). `migrate` then stamps
the main chain at `0001` and upgrades to head like any other database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Connection,
    Text,
    Uuid,
    cast,
    column,
    func,
    inspect,
    or_,
    pool,
    select,
    table,
    text,
    update,
)
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql import TableClause
from sqlalchemy.types import TypeEngine
from sqlalchemy.util import await_only

from integration_kit.db import async_url
from integration_kit.migrate import alembic_config, upgrade

# Integer ids of the old systems become UUIDs in this namespace, the same on every run and on
# every machine: uuid3(LEGACY_NAMESPACE, "<side>:<table>:<id>"). Version 3 (MD5) rather than 5
# (SHA-1): PostgreSQL has md5() built in, so the mapping runs inside one INSERT ... SELECT
# without an extension; SHA-1 would need pgcrypto on the production server.
LEGACY_NAMESPACE = uuid.UUID("6c1f0e4e-8f3a-5b1e-9d2c-4a7b3e2f1c00")
MAIN_BASE_REVISION = "0001"  # what the legacy path converts to


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


# --- what would break a new constraint ------------------------------------------------------

SUBJECT_MAX = 255  # the contract's bounds (spec/integration.yaml)
BODY_MAX = 4096
STATUSES = frozenset({"open", "in_progress", "closed"})
TELEGRAM_FILE_MARK = "api.telegram.org/file/"
BATCH = 10_000


@dataclass(frozen=True)
class LegacyLayout:
    """Where a side's old tables keep what the checks look at (its legacy package fills it in)."""

    ticket_subject: str  # the subject's column in the old `tickets`
    message_id: TypeEngine[Any]  # the type of the old `messages.id`
    message_body: str  # the body's column in the old `messages`
    senders: Mapping[str, str]  # the old `messages.sender` words -> the new sender_type


@dataclass(frozen=True)
class Finding:
    """One legacy row that would break the new model, and what --scrub does about it."""

    table: str
    row_id: Any
    column: str
    problem: str
    scrub: str  # what --scrub does; "" when it cannot be scrubbed

    def line(self) -> str:
        fix = f"--scrub {self.scrub}" if self.scrub else "fix it by hand, --scrub cannot"
        return f"{self.table} {self.row_id} {self.column}: {self.problem} ({fix})"


def _text_problems(value: str, *, limit: int) -> list[str]:
    problems = []
    if "\x00" in value:
        problems.append("contains NUL")
    cleaned = value.replace("\x00", "")
    if not cleaned.strip():
        problems.append("is empty")
    elif len(cleaned) > limit:
        problems.append(f"is {len(cleaned)} characters, over {limit}")
    return problems


def scrubbed_text(value: str, *, limit: int, empty: str) -> str:
    """NUL removed, cut to `limit` with an ellipsis, `empty` for a blank value."""
    cleaned = value.replace("\x00", "")
    if not cleaned.strip():
        return empty
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _telegram_file_urls(attachments: Any) -> list[int]:
    if not isinstance(attachments, list):
        return []
    return [
        index
        for index, item in enumerate(attachments)
        if isinstance(item, dict) and TELEGRAM_FILE_MARK in str(item.get("url", ""))
    ]


def _tables(layout: LegacyLayout) -> tuple[TableClause, TableClause]:
    tickets = table(
        "tickets",
        column("id", Uuid()),
        column(layout.ticket_subject, Text()),
        column("status", Text()),
    )
    messages = table(
        "messages",
        column("id", layout.message_id),
        column(layout.message_body, Text()),
        column("sender", Text()),
        column("attachments", JSON()),
    )
    return tickets, messages


def _duplicates(connection: Connection, name: str) -> list[Finding]:
    rows = connection.execute(
        # S608: `name` is one of the legacy layout's table names, never input.
        text(f"SELECT id, count(*) FROM {name} GROUP BY id HAVING count(*) > 1")  # noqa: S608
    ).all()
    return [Finding(name, value, "id", f"stored {n} times", "") for value, n in rows]


def check_rows(connection: Connection, layout: LegacyLayout) -> list[Finding]:
    """Every old row that would break a constraint of the new model, by row.

    Read in keyset batches, so a large messages table is never held in memory at once.
    """
    tickets, messages = _tables(layout)
    findings = _duplicates(connection, "tickets") + _duplicates(connection, "messages")
    subject = tickets.c[layout.ticket_subject]
    for row_id, value, status in connection.execute(
        select(tickets.c.id, subject, tickets.c.status).order_by(tickets.c.id)
    ):
        findings += [
            Finding("tickets", row_id, layout.ticket_subject, f"subject {p}", "cuts or fills it")
            for p in _text_problems(value, limit=SUBJECT_MAX)
        ]
        if status not in STATUSES:
            findings.append(Finding("tickets", row_id, "status", f"unknown status {status!r}", ""))
    body = messages.c[layout.message_body]
    suspects = _message_suspects(connection, layout, body, messages)
    last: Any = None
    while True:
        query = select(messages.c.id, body, messages.c.sender, messages.c.attachments)
        if suspects is not None:
            query = query.where(suspects)
        if last is not None:
            query = query.where(messages.c.id > last)
        batch = connection.execute(query.order_by(messages.c.id).limit(BATCH)).all()
        for row_id, value, sender, attachments in batch:
            findings += [
                Finding("messages", row_id, layout.message_body, f"body {p}", "cuts or fills it")
                for p in _text_problems(value, limit=BODY_MAX)
            ]
            if sender not in layout.senders:
                findings.append(
                    Finding("messages", row_id, "sender", f"unknown sender {sender!r}", "")
                )
            for index in _telegram_file_urls(attachments):
                findings.append(
                    Finding(
                        "messages",
                        row_id,
                        "attachments",
                        f"attachment {index} is a Telegram file URL (it carries the bot token)",
                        "removes it",
                    )
                )
        if len(batch) < BATCH:
            return findings
        last = batch[-1][0]


def _message_suspects(
    connection: Connection, layout: LegacyLayout, body: Any, messages: TableClause
) -> Any:
    """PostgreSQL: a condition every message row with a problem meets (and few others), so a
    million rows are not read into Python to find a handful: over-long, blank (no non-space
    character; Python's idea of whitespace is re-checked on the rows found), an unknown sender,
    a Telegram file URL anywhere in the attachments. NUL cannot occur: PostgreSQL refuses it in
    text. SQLite is read whole (it is fast at that, and keeps NUL)."""
    if connection.dialect.name != "postgresql":
        return None
    return or_(
        func.length(body) > BODY_MAX,
        body.op("!~")(r"[^\s\x1c-\x1f\x85]"),
        messages.c.sender.not_in(list(layout.senders)),
        cast(messages.c.attachments, Text).contains(TELEGRAM_FILE_MARK),
    )


def scrub_rows(connection: Connection, layout: LegacyLayout, findings: Sequence[Finding]) -> None:
    """Apply --scrub to the rows found: subjects and bodies cut or filled and without NUL,
    Telegram file URL attachments removed. Refuses what cannot be scrubbed."""
    manual = [f for f in findings if not f.scrub]
    if manual:
        raise LegacyRefused(manual)
    tickets, messages = _tables(layout)
    done: set[tuple[str, Any, str]] = set()
    for finding in findings:
        key = (finding.table, finding.row_id, finding.column)
        if key in done:
            continue
        done.add(key)
        target = tickets if finding.table == "tickets" else messages
        where = target.c.id == finding.row_id
        current = connection.execute(select(target.c[finding.column]).where(where)).scalar_one()
        if finding.column == "attachments":
            drop = set(_telegram_file_urls(current))
            new: Any = [item for index, item in enumerate(current) if index not in drop]
        elif finding.table == "tickets":
            new = scrubbed_text(current, limit=SUBJECT_MAX, empty="(no subject)")
        else:
            new = scrubbed_text(current, limit=BODY_MAX, empty="(empty message)")
        connection.execute(update(target).where(where).values({finding.column: new}))


# --- the side's legacy path -------------------------------------------------------------------


@dataclass(frozen=True)
class LegacySide:
    """One side's legacy path: its Alembic directory, and its checks and scrubbing of rows."""

    name: str
    migrations: Path  # the legacy script directory
    main_migrations: Path
    baseline: str  # the revision an existing old database is stamped with
    layout: LegacyLayout

    @property
    def converted(self) -> str:
        head = ScriptDirectory.from_config(alembic_config(self.migrations, "sqlite://")).get_heads()
        return str(head[0])


class LegacyUnstamped(Exception):
    """Old tables without an Alembic version: nothing is migrated before an operator stamps."""

    def __init__(self, side: LegacySide) -> None:
        super().__init__(
            "the database has tables but no Alembic version: an old one? Stamp it first with "
            f"`python -m {side.name}_impl migrate --stamp-legacy` (docs/cutover.md)"
        )


class LegacyRefused(Exception):
    """The old data would break the new model and scrubbing was not asked for."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = list(findings)
        super().__init__(
            f"{len(findings)} legacy row(s) would break the new model; nothing was changed. "
            "See them with `migrate --check`; `migrate --scrub` truncates and scrubs them"
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


def migrate(url: str, side: LegacySide, *, scrub: bool = False) -> bool:
    """Convert a stamped old database and upgrade it to head; True if it was a legacy one.

    The conversion is one transaction on both databases: it fails as a whole (refused rows, a
    crash) and leaves the old schema and data as they were.
    """
    state = state_of(url, side)
    if state == "unstamped":
        raise LegacyUnstamped(side)
    if state == "legacy":
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


# --- pieces of the conversion revisions -------------------------------------------------------


@dataclass
class Conversion:
    """A conversion in progress: its connection, and what to build again after the copy."""

    bind: Connection
    rebuild: list[str]


def begin_conversion(layout: LegacyLayout, main_migrations: Path) -> Conversion:
    """The first half of a side's conversion revision, inside its one transaction.

    Checks the old rows (scrubbing them if `migrate --scrub` asked for it, else refusing),
    moves the old tables aside as `legacy_tickets` / `legacy_messages`, and creates the new
    tables by running revision 0001 of the main chain itself, so they are exactly what a fresh
    database gets. The caller copies the rows across and calls `end_conversion`.
    """
    from alembic import op

    bind = op.get_bind()
    findings = check_rows(bind, layout)
    if findings:
        if not context.config.attributes.get("scrub", False):
            raise LegacyRefused(findings)
        scrub_rows(bind, layout, findings)
    op.rename_table("tickets", "legacy_tickets")
    op.rename_table("messages", "legacy_messages")
    script = ScriptDirectory.from_config(alembic_config(main_migrations, "sqlite://"))
    base = script.get_revision(MAIN_BASE_REVISION)
    if base is None:
        raise RuntimeError(f"the main chain has no revision {MAIN_BASE_REVISION}")
    base.module.upgrade()
    create_legacy_fields_table()
    return Conversion(bind, _defer_message_indexes(bind))


def _defer_message_indexes(bind: Connection) -> list[str]:
    """PostgreSQL: drop the new `messages` table's unique constraints, foreign key and indexes
    (not its primary key, which the copy fills in order) and return the statements that build
    them again, exactly as revision 0001 made them. One bulk build after the copy costs about
    half of maintaining them row by row (random UUIDs in a unique index, a trigger per foreign
    key check), and the copy is where writes are blocked. SQLite is fast enough without."""
    if bind.dialect.name != "postgresql":
        return []
    constraints = bind.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'messages'::regclass AND contype IN ('u', 'f') ORDER BY conname"
        )
    ).all()
    indexes = bind.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'messages' "
            "AND schemaname = current_schema() AND indexname NOT IN (SELECT conname FROM "
            "pg_constraint WHERE conrelid = 'messages'::regclass) ORDER BY indexname"
        )
    ).all()
    for name, _definition in constraints:
        bind.execute(text(f'ALTER TABLE messages DROP CONSTRAINT "{name}"'))
    for name, _definition in indexes:
        bind.execute(text(f'DROP INDEX "{name}"'))
    return [
        *(f'ALTER TABLE messages ADD CONSTRAINT "{n}" {d}' for n, d in constraints),
        *(definition for _name, definition in indexes),
    ]


def sender_case(layout: LegacyLayout) -> str:
    """SQL mapping the old sender word to the new sender_type (the words are the side's own)."""
    whens = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in layout.senders.items())
    return f"CASE sender {whens} END"


def end_conversion(conversion: Conversion) -> None:
    """Build the deferred indexes, copy the old fields with no place in the new model, drop the
    old tables, and let the new sequence continue after the copied ids (PostgreSQL)."""
    from alembic import op

    bind = conversion.bind
    for statement in conversion.rebuild:
        op.execute(statement)

    op.execute(
        "INSERT INTO legacy_ticket_fields (ticket_id, project, external_url) "
        "SELECT id, project, external_url FROM legacy_tickets "
        "WHERE project IS NOT NULL OR external_url IS NOT NULL"
    )
    op.drop_table("legacy_messages")
    op.drop_table("legacy_tickets")
    if bind.dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('messages', 'seq'), "
            "coalesce((SELECT max(seq) FROM messages), 0) + 1, false)"
        )


def create_legacy_fields_table() -> None:
    """`legacy_ticket_fields`: the old `project` and `external_url` of a ticket, where an
    operator can still see them. Created by the conversion or by the main chain, whichever
    comes first, so a fresh database and a converted one have the same schema."""
    import sqlalchemy as sa
    from alembic import op

    if inspect(op.get_bind()).has_table("legacy_ticket_fields"):
        return
    op.create_table(
        "legacy_ticket_fields",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=True),
        sa.Column("external_url", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name="fk_legacy_ticket_fields_ticket_id_tickets",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ticket_id", name="pk_legacy_ticket_fields"),
    )
