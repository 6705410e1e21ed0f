"""convert the old CRM schema and its rows into the new model (revision 0001 of the main chain)

sender local -> crm, crm -> tma; messages numbered (`seq`) in the order they were written;
customer placeholders until `link`; project and external_url -> legacy_ticket_fields. One
transaction: it converts everything or nothing (on PostgreSQL the last step of an online
conversion, docs/cutover.md).

Revision ID: crm_legacy_convert
Revises: crm_legacy
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from crm_impl.legacy import SIDE
from integration_kit.legacy import convert

revision: str = "crm_legacy_convert"
down_revision: str | None = "crm_legacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    convert(SIDE)  # the SQL of each table: crm_impl.legacy.steps


def downgrade() -> None:
    raise NotImplementedError("restore the backup taken before the cut-over (docs/cutover.md)")
