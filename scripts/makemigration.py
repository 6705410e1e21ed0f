"""Write the Alembic revision that brings one side's migrations up to its table models.

    python -m scripts.makemigration tma "add ticket priority"
    make migration SIDE=tma MESSAGE="add ticket priority"          # the same
    make migration SIDE=both MESSAGE="add ticket priority"         # each side that needs one

`both` is for a change of the columns the sides share (integration_kit/schema.py): each side
gets its own revision, since each side's history is its own.

It migrates a scratch SQLite database to the current head, compares it with the side's
`tables.py`, and lets Alembic autogenerate the difference into a new, dated revision numbered
after the last one. Nothing to change: it says so and writes nothing. Read the revision before
committing it: autogenerate cannot tell a rename from a drop and an add, and writes no data
backfills.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData

from integration_kit.migrate import alembic_config, schema_differences, upgrade

ROOT = Path(__file__).resolve().parent.parent
SIDES = ("tma", "crm")
FILE_TEMPLATE = "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s"


def _metadata(side: str) -> MetaData:
    if side == "tma":
        from tma_impl.tables import Base as TmaBase

        return TmaBase.metadata
    from crm_impl.tables import Base as CrmBase

    return CrmBase.metadata


def _next_revision_id(script: ScriptDirectory) -> str:
    numbers = [int(r.revision) for r in script.walk_revisions() if r.revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def make_migration(migrations: Path, metadata: MetaData, message: str) -> Path | None:
    """The new revision's path, or None when `migrations` already build `metadata`.

    `metadata` must be what the folder's env.py compares with (the side's tables.py).
    """
    with tempfile.TemporaryDirectory(prefix="makemigration-") as scratch:
        url = f"sqlite+aiosqlite:///{scratch}/schema.db"
        upgrade(migrations, url)
        if not asyncio.run(schema_differences(url, metadata)):
            return None
        config = alembic_config(migrations, url)
        config.set_main_option("file_template", FILE_TEMPLATE)
        rev_id = _next_revision_id(ScriptDirectory.from_config(config))
        script = command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
    if script is None or isinstance(script, list):  # one head, one revision: never expected
        raise RuntimeError(f"alembic wrote no single revision: {script!r}")
    path = Path(script.path)
    # The repository's formatter, so the new file passes `make lint` as written.
    ruff = Path(sys.executable).parent / "ruff"
    subprocess.run([str(ruff), "format", "--quiet", str(path)], check=True)
    subprocess.run([str(ruff), "check", "--quiet", "--fix", str(path)], check=False)
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in (*SIDES, "both") or not argv[1].strip():
        print('usage: python -m scripts.makemigration tma|crm|both "what the revision does"')
        return 2
    for side in SIDES if argv[0] == "both" else (argv[0],):
        migrations = ROOT / f"{side}_impl" / "migrations"
        path = make_migration(migrations, _metadata(side), argv[1].strip())
        if path is None:
            print(f"{side}: the migrations already match tables.py; nothing written")
        else:
            print(f"wrote {path.relative_to(ROOT)}: read it before committing (renames, backfills)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
