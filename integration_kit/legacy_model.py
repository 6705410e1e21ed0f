"""The cut-over's description of an old database: what a side's legacy package fills in (where
its old tables keep things, how each new table is filled from them), the checks of old rows
against the new model, and --scrub. Read by `integration_kit.legacy` (one transaction) and
`integration_kit.legacy_online` (PostgreSQL, online); docs/cutover.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Connection,
    Text,
    Uuid,
    bindparam,
    cast,
    column,
    func,
    inspect,
    or_,
    select,
    table,
    text,
)
from sqlalchemy import update as sql_update
from sqlalchemy.sql import TableClause
from sqlalchemy.types import TypeEngine

from integration_kit.migrate import alembic_config

SUBJECT_MAX = 255  # the contract's bounds (spec/integration.yaml)
BODY_MAX = 4096
STATUSES = frozenset({"open", "in_progress", "closed"})
TELEGRAM_FILE_MARK = "api.telegram.org/file/"
BATCH = 10_000
MAIN_BASE_REVISION = "0001"  # what the legacy path converts to


@dataclass(frozen=True)
class LegacyLayout:
    """Where a side's old tables keep what the checks look at (its legacy package fills it in)."""

    ticket_subject: str  # the subject's column in the old `tickets`
    message_id: TypeEngine[Any]  # the type of the old `messages.id`
    message_body: str  # the body's column in the old `messages`
    senders: Mapping[str, str]  # the old `messages.sender` words -> the new sender_type


@dataclass(frozen=True)
class Step:
    """One new table filled from the old ones, as SQL with placeholders (see `render`).

    `select` yields the rows of `columns`, restricted by `{where}`, a condition on `source_key`
    (the expression whose values are the new table's `key`). `changed` selects the keys to redo
    when old rows changed during the online copy (from `{changed_tickets}` and
    `{changed_messages}`, the ids the old tables' triggers logged); `keep` are columns an update
    of an existing row leaves alone (a number given once).
    """

    table: str
    columns: tuple[str, ...]
    select: str
    key: str
    source_key: str
    changed: str
    keep: tuple[str, ...] = ()


def render(template: str, **values: str) -> str:
    """Fill a step's placeholders (`str.format` would trip over braces in SQL)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def copy_statement(step: Step, *, old: str, new: str, where: str = "1 = 1") -> str:
    """INSERT ... SELECT filling `step`'s table in schema prefix `new` (`""` or `"name."`) from
    the old tables `{old}tickets` / `{old}messages`, the rows `where` selects."""
    select = render(
        step.select,
        old_tickets=f"{old}tickets",
        old_messages=f"{old}messages",
        new=new,
        where=where,
    )
    return f"INSERT INTO {new}{step.table} ({', '.join(step.columns)}) {select}"


def ticket_fields_step() -> Step:
    """`legacy_ticket_fields`: the old `project` and `external_url`, the same on both sides."""
    return Step(
        table="legacy_ticket_fields",
        columns=("ticket_id", "project", "external_url"),
        select=(
            "SELECT id, project, external_url FROM {old_tickets} "
            "WHERE (project IS NOT NULL OR external_url IS NOT NULL) AND {where}"
        ),
        key="ticket_id",
        source_key="id",
        changed="SELECT id FROM {changed_tickets}",
    )


def sender_case(layout: LegacyLayout) -> str:
    """SQL mapping the old sender word to the new sender_type (the words are the side's own)."""
    whens = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in layout.senders.items())
    return f"CASE sender {whens} END"


@dataclass(frozen=True)
class LegacySide:
    """One side's legacy path: its Alembic directory, its layout and how its tables are filled."""

    name: str
    migrations: Path  # the legacy script directory
    main_migrations: Path
    baseline: str  # the revision an existing old database is stamped with
    layout: LegacyLayout
    steps: Callable[[str], list[Step]]  # by dialect name, in the order they run

    @property
    def converted(self) -> str:
        head = ScriptDirectory.from_config(alembic_config(self.migrations, "sqlite://")).get_heads()
        return str(head[0])


# --- what would break a new constraint ------------------------------------------------------


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


class LegacyRefused(Exception):
    """The old data would break the new model and scrubbing was not asked for."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = list(findings)
        super().__init__(
            f"{len(findings)} legacy row(s) would break the new model; nothing was changed. "
            "See them with `migrate --check`; `migrate --scrub` truncates and scrubs them"
        )


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


def _only(name: str, changed: str | None, column: str = "id") -> str:
    """A condition on `column` (an old `name`'s id): every row, or those logged in `changed`."""
    if changed is None:
        return "1 = 1"
    return f"{column} IN (SELECT id FROM {changed}.changed_{name})"  # noqa: S608 - constants


def _duplicates(
    connection: Connection, name: str, id_type: TypeEngine[Any], changed: str | None
) -> list[Finding]:
    """Ids stored more than once: the new tables' keys forbid it, an old table may not have."""
    rows = connection.execute(
        # S608: `name` is a legacy table's name and `changed` our schema's, never input.
        text(
            f"SELECT id, count(*), min(created_at), max(created_at) FROM {name} "  # noqa: S608
            f"WHERE {_only(name, changed)} GROUP BY id HAVING count(*) > 1"
        ).columns(column("id", id_type))
    ).all()
    scrub = "keeps the row created first, with the status written last" if name == "tickets" else ""
    return [
        Finding(name, value, "id", f"stored {n} times (created {first} to {last})", scrub)
        for value, n, first, last in rows
    ]


def _orphans(
    connection: Connection, id_type: TypeEngine[Any], changed: str | None
) -> list[Finding]:
    """Messages naming a ticket that is not stored: the new foreign key forbids them."""
    rows = connection.execute(
        text(
            "SELECT m.id, m.ticket_id FROM messages m WHERE "  # noqa: S608 - our schema's name
            f"{_only('messages', changed, 'm.id')} AND NOT EXISTS "
            "(SELECT 1 FROM tickets t WHERE t.id = m.ticket_id) ORDER BY m.id"
        ).columns(column("id", id_type), column("ticket_id", Uuid()))
    ).all()
    return [
        Finding("messages", row_id, "ticket_id", f"names ticket {ticket}, which is not stored", "")
        for row_id, ticket in rows
    ]


def check_rows(
    connection: Connection, layout: LegacyLayout, *, changed: str | None = None
) -> list[Finding]:
    """Every old row that would break a constraint of the new model, by row; with `changed`
    (the online copy's schema), only the rows the old tables' triggers logged there.

    Read in keyset batches, so a large messages table is never held in memory at once.
    """
    tickets, messages = _tables(layout)
    findings = (
        _duplicates(connection, "tickets", Uuid(), changed)
        + _duplicates(connection, "messages", layout.message_id, changed)
        + _orphans(connection, layout.message_id, changed)
    )
    subject = tickets.c[layout.ticket_subject]
    for row_id, value, status in connection.execute(
        select(tickets.c.id, subject, tickets.c.status)
        .where(text(_only("tickets", changed)))
        .order_by(tickets.c.id)
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
        query = select(messages.c.id, body, messages.c.sender, messages.c.attachments).where(
            text(_only("messages", changed))
        )
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
    """Apply --scrub to the rows found: duplicate tickets merged, subjects and bodies cut or
    filled and without NUL, Telegram file URL attachments removed. Refuses what cannot be
    scrubbed."""
    manual = [f for f in findings if not f.scrub]
    if manual:
        raise LegacyRefused(manual)
    tickets, messages = _tables(layout)
    done: set[tuple[str, Any, str]] = set()
    # Merge duplicates first: a ticket stored twice is then one row to cut or fill.
    for finding in sorted(findings, key=lambda f: f.column != "id"):
        key = (finding.table, finding.row_id, finding.column)
        if key in done:
            continue
        done.add(key)
        if finding.column == "id":
            _merge_duplicate_ticket(connection, finding.row_id)
            continue
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
        connection.execute(sql_update(target).where(where).values({finding.column: new}))


def _merge_duplicate_ticket(connection: Connection, ticket_id: Any) -> None:
    """One row for a ticket stored several times (a retried creation): the first created, with
    the status and time of the row written last. Its messages name the id, so they all stay."""
    row = "ctid" if connection.dialect.name == "postgresql" else "rowid"
    latest = (
        "(SELECT {column} FROM tickets WHERE id = :id ORDER BY updated_at DESC LIMIT 1)"
    ).format
    ticket = bindparam("id", ticket_id, type_=Uuid())
    connection.execute(
        text(
            f"UPDATE tickets SET status = {latest(column='status')}, "  # noqa: S608 - constants
            f"updated_at = {latest(column='updated_at')} WHERE id = :id"
        ).bindparams(ticket)
    )
    connection.execute(
        text(
            f"DELETE FROM tickets WHERE id = :id AND {row} <> "  # noqa: S608 - a constant
            f"(SELECT {row} FROM tickets WHERE id = :id ORDER BY created_at, {row} LIMIT 1)"
        ).bindparams(ticket)
    )


# --- building the new schema ----------------------------------------------------------------


def run_main_base(main_migrations: Path) -> None:
    """Revision 0001 of the main chain, run by the conversion itself (inside an Alembic
    operations context), so the new tables are exactly what a fresh database gets; then
    `legacy_ticket_fields`."""
    script = ScriptDirectory.from_config(alembic_config(main_migrations, "sqlite://"))
    base = script.get_revision(MAIN_BASE_REVISION)
    if base is None:
        raise RuntimeError(f"the main chain has no revision {MAIN_BASE_REVISION}")
    base.module.upgrade()
    create_legacy_fields_table()


def defer_message_indexes(bind: Connection) -> list[str]:
    """PostgreSQL: drop the new `messages` table's unique constraints, foreign key and indexes
    (not its primary key, which the copy fills in order) and return the statements that build
    them again, exactly as revision 0001 made them. One bulk build after the copy costs about
    half of maintaining them row by row (random UUIDs in a unique index, a trigger per foreign
    key check). The `messages` found is the first on the search path; the statements name the
    tables as that search path sees them, so they run under the same one."""
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
