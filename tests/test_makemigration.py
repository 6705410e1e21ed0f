"""`make migration` writes the revision a table change needs, and nothing when there is none."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String

from integration_kit.migrate import schema_differences, upgrade
from scripts.makemigration import main, make_migration
from tma_impl.tables import Base as TmaBase

ROOT = Path(__file__).resolve().parent.parent

# The TMA's tables with one more column, as a developer's edit of tables.py would leave them.
EXTENDED = MetaData(naming_convention=TmaBase.metadata.naming_convention)
for _table in TmaBase.metadata.sorted_tables:
    _table.to_metadata(EXTENDED)
EXTENDED.tables["tickets"].append_column(Column("priority", String(16), nullable=True))


def _migrations_comparing_with(tmp_path: Path, target: str) -> Path:
    migrations = tmp_path / "migrations"
    shutil.copytree(ROOT / "tma_impl" / "migrations", migrations)
    (migrations / "env.py").write_text(
        f"from integration_kit.migrate import run_env\nfrom {target}\n\nrun_env(metadata)\n"
    )
    return migrations


def test_a_new_column_gets_a_revision_that_builds_it(tmp_path: Path) -> None:
    migrations = _migrations_comparing_with(
        tmp_path, "tests.test_makemigration import EXTENDED as metadata"
    )
    numbers = [int(p.name.split("_")[3]) for p in (migrations / "versions").glob("*_*_*_*_*.py")]
    path = make_migration(migrations, EXTENDED, "add ticket priority")
    assert path is not None
    assert path.name.endswith(f"_{max(numbers) + 1:04d}_add_ticket_priority.py")
    assert "priority" in path.read_text()
    database = f"sqlite+aiosqlite:///{tmp_path / 'check.db'}"
    upgrade(migrations, database)
    assert asyncio.run(schema_differences(database, EXTENDED)) == []


def test_nothing_to_change_writes_nothing(tmp_path: Path) -> None:
    migrations = _migrations_comparing_with(
        tmp_path, "tma_impl.tables import Base\n\nmetadata = Base.metadata"
    )
    before = sorted(p.name for p in (migrations / "versions").iterdir())
    assert make_migration(migrations, TmaBase.metadata, "nothing") is None
    assert sorted(p.name for p in (migrations / "versions").iterdir()) == before


def test_both_sides_in_one_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`make migration SIDE=both` looks at each side; with both in step it writes nothing."""
    assert main(["both", "nothing"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "tma: the migrations already match tables.py; nothing written",
        "crm: the migrations already match tables.py; nothing written",
    ]
    assert main(["neither", "x"]) == 2
