"""Each side's migrations build exactly the schema its table models describe.

A column added to a model without a migration (or a migration that drifts from the model) fails
here, on SQLite and PostgreSQL, with Alembic's own list of differences. `make migration` writes
the missing revision.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_impl.tables import Base as CrmBase
from integration_kit.migrate import schema_differences
from tests.support.databases import fresh_database
from tma_impl.tables import Base as TmaBase

METADATA = {"tma": TmaBase.metadata, "crm": CrmBase.metadata}


@pytest.mark.parametrize("side", ["tma", "crm"])
async def test_the_migrated_schema_is_the_table_models(
    db_kind: str, side: str, tmp_path: Path
) -> None:
    async with fresh_database(db_kind, side, tmp_path) as url:
        differences = await schema_differences(url, METADATA[side])
    assert differences == [], (
        f"{side}: migrations and tables.py differ (run `make migration SIDE={side} "
        f'MESSAGE="..."`): {differences}'
    )
