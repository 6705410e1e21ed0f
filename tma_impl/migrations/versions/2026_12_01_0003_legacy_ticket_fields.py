"""legacy_ticket_fields: the old systems' project and external_url of a ticket

Empty on a database that never was an old one; the legacy path (docs/cutover.md) fills it, and
may have created it already.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

from integration_kit.legacy import create_legacy_fields_table

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_legacy_fields_table()


def downgrade() -> None:
    op.drop_table("legacy_ticket_fields")
