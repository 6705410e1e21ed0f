"""Before a command uses the database: does it answer, and is its schema the one this code has?

A worker that started on a database nobody migrated would fail every round; an operator command
would fail with a missing table half-way. Both now stop at once with one line that says what to
do (`failures.describe`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

from integration_kit.db import Database
from integration_kit.failures import DatabaseNotReady, Where


def _current_heads(connection: Connection) -> tuple[str, ...]:
    # Alembic says at INFO which dialect it found: noise before a command's own output.
    alembic_log = logging.getLogger("alembic.runtime.migration")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        return tuple(MigrationContext.configure(connection).get_current_heads())
    finally:
        alembic_log.setLevel(level)


async def _current_revisions(url: str) -> set[str]:
    db = Database(url, pool_size=1, max_overflow=0)
    try:
        async with db.engine.connect() as connection:
            return set(await connection.run_sync(_current_heads))
    finally:
        await db.dispose()


def check_database(where: Where, migrations: Path) -> None:
    """Return if the database answers and is migrated to this code's head; else raise
    `DatabaseNotReady`, or the driver's own error for a database that does not answer.
    Blocking: runs its own event loop."""
    parsed = make_url(where.url)
    database = parsed.database or ""
    if (
        parsed.drivername.startswith("sqlite")
        and database not in {"", ":memory:"}
        and not database.startswith("file:")
        and not Path(database).exists()
    ):
        # Connecting would create an empty file (and its folder) as a side effect.
        raise DatabaseNotReady(
            f"the database has no tables yet: run `{where.program} migrate` (there is no file "
            f"{database}; if the database is elsewhere, set {where.prefix}DATA_DIR or "
            f"{where.prefix}DATABASE_URL)"
        )
    current = asyncio.run(_current_revisions(where.url))
    script = ScriptDirectory(str(migrations))
    heads = set(script.get_heads())
    if current == heads:
        return
    migrate = f"run `{where.program} migrate`"
    if not current:
        raise DatabaseNotReady(f"the database has no tables yet: {migrate}")
    known = {revision.revision for revision in script.walk_revisions()}
    if current - known:
        raise DatabaseNotReady(
            f"the {where.name} was migrated by a newer version of this code (revision "
            f"{', '.join(sorted(current - known))}): run that version, or point "
            f"{where.prefix}DATABASE_URL at another database"
        )
    raise DatabaseNotReady(
        f"the {where.name} is at revision {', '.join(sorted(current))}, older than this "
        f"code's {', '.join(sorted(heads))}: {migrate}"
    )
