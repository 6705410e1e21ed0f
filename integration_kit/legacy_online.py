"""The conversion of an old PostgreSQL database while the old system still writes to it.

Writes are blocked only during a short final phase (docs/cutover.md, "Migrating a large
database"):

1. `prepare` (the old system keeps writing): in one transaction, the schema `legacy_cutover`
   gets the new tables (revision 0001 of the main chain, run there) and the old `tickets` and
   `messages` get triggers that log the id of every row written from then on. Then, in one
   REPEATABLE READ transaction (one snapshot), the old rows are checked again and copied into
   the new tables; then the new tables' indexes and foreign key are built, and the copy is
   marked done. Reading the old tables takes no lock a writer waits for, and the new tables are
   used by nobody yet, so none of this blocks the old system (CREATE INDEX CONCURRENTLY would
   buy nothing: nobody writes the tables being indexed).
2. `finish`, inside the conversion revision's one transaction: lock the old tables against
   writes, check the rows logged since, redo them (insert, update, delete) in the new tables,
   compare the row counts, drop the old tables and move the new ones into their place. Its
   cost grows with what was written during the copy, not with the size of the database.

A failure leaves either the old tables as they were (plus, after step 1's first transaction,
the schema `legacy_cutover` and its triggers, which only log) or the converted database; never
anything between. Running `migrate` again finishes a completed copy, or starts an unfinished
one over. `DROP SCHEMA legacy_cutover CASCADE` abandons it (the triggers go with it).
"""

# ruff: noqa: S608 - SQL built from constants and the legacy packages' steps, never from input
from __future__ import annotations

from collections.abc import Sequence

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, text

from integration_kit.legacy_model import (
    LegacyRefused,
    LegacySide,
    Step,
    check_rows,
    copy_statement,
    defer_message_indexes,
    render,
    run_main_base,
    scrub_rows,
)

SCHEMA = "legacy_cutover"
NEW = f"{SCHEMA}."
LOCK_TIMEOUT = "10s"  # a long transaction of the old system holding its tables: fail, not queue


def _old_schema(connection: Connection) -> str:
    return f'"{connection.execute(text("SELECT current_schema()")).scalar_one()}".'


def _exists(connection: Connection) -> bool:
    found = connection.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": SCHEMA}
    )
    return found.first() is not None


def copied(connection: Connection) -> bool:
    """Whether `prepare` completed here (its copy is kept up to date by the triggers)."""
    if not _exists(connection):
        return False
    return bool(connection.execute(text(f"SELECT count(*) FROM {SCHEMA}.progress")).scalar_one())


def abandon(connection: Connection) -> None:
    """Drop an unfinished copy, its change logs and the old tables' triggers."""
    with connection.begin():
        connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))


def prepare(connection: Connection, side: LegacySide, *, scrub: bool) -> None:
    """Step 1: a complete copy of the old rows in `legacy_cutover`, kept up to date by triggers.
    Nothing to do if a completed one is there; an unfinished one is started over."""
    with connection.begin():
        done = copied(connection)
        old = _old_schema(connection)
    if done:
        return
    abandon(connection)
    with connection.begin():
        connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        connection.execute(text(f"SET LOCAL search_path TO {SCHEMA}"))
        with Operations.context(MigrationContext.configure(connection)):
            run_main_base(side.main_migrations)
        rebuild = defer_message_indexes(connection)
        connection.execute(text(f"CREATE TABLE {SCHEMA}.progress (done text NOT NULL)"))
        for name in ("tickets", "messages"):
            _log_changes(connection, old, name)
    try:
        with connection.begin():
            # One snapshot: the rows checked are the rows copied. Every later write is logged.
            connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            findings = check_rows(connection, side.layout)
            if findings:
                if not scrub:
                    raise LegacyRefused(findings)
                scrub_rows(connection, side.layout, findings)
            for step in side.steps("postgresql"):
                connection.execute(text(copy_statement(step, old=old, new=NEW)))
    except BaseException:
        abandon(connection)  # nothing copied is kept: the next run starts over
        raise
    with connection.begin():
        connection.execute(text(f"SET LOCAL search_path TO {SCHEMA}"))
        for statement in rebuild:
            connection.execute(text(statement))
        for step in side.steps("postgresql"):
            connection.execute(text(f"ANALYZE {NEW}{step.table}"))
        connection.execute(text(f"INSERT INTO {SCHEMA}.progress VALUES ('copied')"))


def _log_changes(connection: Connection, old: str, name: str) -> None:
    """A trigger on the old table `name` logging the id of every row inserted, updated or
    deleted into `legacy_cutover.changed_<name>` (the old id before and after an update)."""
    log = f"{SCHEMA}.changed_{name}"
    connection.execute(text(f"CREATE TABLE {log} AS SELECT id FROM {old}{name} WITH NO DATA"))
    connection.execute(
        text(
            f"CREATE FUNCTION {SCHEMA}.log_{name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF TG_OP <> 'INSERT' THEN INSERT INTO {log} VALUES (OLD.id); END IF; "
            f"IF TG_OP <> 'DELETE' THEN INSERT INTO {log} VALUES (NEW.id); END IF; "
            "RETURN NULL; END $$"
        )
    )
    connection.execute(
        text(
            f"CREATE TRIGGER legacy_cutover_log AFTER INSERT OR UPDATE OR DELETE ON {old}{name} "
            f"FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.log_{name}()"
        )
    )


def finish(bind: Connection, side: LegacySide, *, scrub: bool) -> None:
    """Step 2, inside the conversion's transaction: writes to the old tables wait from here to
    its commit, after which the old tables are gone."""
    if not copied(bind):
        raise RuntimeError("no completed copy of the old rows: run `migrate`, which makes it first")
    old = _old_schema(bind)
    bind.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    bind.execute(text(f"LOCK TABLE {old}tickets, {old}messages IN EXCLUSIVE MODE"))
    findings = check_rows(bind, side.layout, changed=SCHEMA)
    if findings:
        if not scrub:
            raise LegacyRefused(findings)
        scrub_rows(bind, side.layout, findings)
    redo(bind, side.steps("postgresql"), old=old)
    for name in ("tickets", "messages"):
        counts = [
            bind.execute(text(f"SELECT count(*) FROM {schema}{name}")).scalar_one()
            for schema in (old, NEW)
        ]
        if counts[0] != counts[1]:  # a write the triggers missed: triggers disabled, TRUNCATE
            raise RuntimeError(
                f"the copy of {name} has {counts[1]} rows, the old table {counts[0]}: start "
                f"over with `DROP SCHEMA {SCHEMA} CASCADE` and `migrate`"
            )
    swap(bind, old)


def redo(bind: Connection, steps: Sequence[Step], *, old: str) -> None:
    """Bring the new tables up to date with the old rows logged as written during the copy:
    the keys to redo are found first (before anything changes); then rows are inserted or
    updated in step order (a ticket before its messages) and rows whose old row is gone are
    deleted in the reverse order (messages before their ticket)."""
    values = {
        "old_tickets": f"{old}tickets",
        "old_messages": f"{old}messages",
        "new": NEW,
        "changed_tickets": f"{SCHEMA}.changed_tickets",
        "changed_messages": f"{SCHEMA}.changed_messages",
    }
    for step in steps:
        bind.execute(
            text(
                f"CREATE TEMP TABLE redo_{step.table} ON COMMIT DROP AS "
                f"SELECT DISTINCT * FROM ({render(step.changed, **values)}) AS changed"
            )
        )
    for step in steps:
        where = f"{step.source_key} IN (SELECT * FROM redo_{step.table})"
        updated = [c for c in step.columns if c != step.key and c not in step.keep]
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in updated)
        bind.execute(
            text(
                f"{copy_statement(step, old=old, new=NEW, where=where)} "
                f"ON CONFLICT ({step.key}) DO UPDATE SET {assignments}"
            )
        )
    for step in reversed(steps):
        where = f"{step.source_key} IN (SELECT * FROM redo_{step.table})"
        still = render(step.select, **values, where=where)
        bind.execute(
            text(
                f"DELETE FROM {NEW}{step.table} WHERE {step.key} IN "
                f"(SELECT * FROM redo_{step.table}) AND {step.key} NOT IN "
                f"(SELECT s.{step.key} FROM ({still}) AS s({', '.join(step.columns)}))"
            )
        )


def swap(bind: Connection, old: str) -> None:
    """The old tables out, the new ones (with their sequences and indexes) in."""
    tables = bind.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = :schema "
            "AND tablename NOT LIKE 'changed\\_%' AND tablename <> 'progress'"
        ),
        {"schema": SCHEMA},
    ).scalars()
    moved = list(tables)
    bind.execute(text(f"DROP TABLE {old}messages, {old}tickets"))
    for name in moved:
        bind.execute(text(f"ALTER TABLE {NEW}{name} SET SCHEMA {old.rstrip('.')}"))
    bind.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    # New messages continue after the copied numbers.
    bind.execute(
        text(
            "SELECT setval(pg_get_serial_sequence('messages', 'seq'), "
            "coalesce((SELECT max(seq) FROM messages), 0) + 1, false)"
        )
    )
