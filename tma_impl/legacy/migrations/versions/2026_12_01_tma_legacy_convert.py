"""convert the old TMA schema and its rows into the new model (revision 0001 of the main chain)

theme -> subject; sender local -> tma, crm -> crm; integer message ids -> `seq` (their order) and
a UUID derived from them (tma_impl.legacy.message_uuid); a Telegram user row per old user_id
(refreshed from initData on the user's next request); project and external_url ->
legacy_ticket_fields. One transaction: it converts everything or nothing (on PostgreSQL the
last step of an online conversion, docs/cutover.md).

Revision ID: tma_legacy_convert
Revises: tma_legacy
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from integration_kit.legacy import convert
from tma_impl.legacy import SIDE

revision: str = "tma_legacy_convert"
down_revision: str | None = "tma_legacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    convert(SIDE)  # the SQL of each table: tma_impl.legacy.steps


def downgrade() -> None:
    raise NotImplementedError("restore the backup taken before the cut-over (docs/cutover.md)")
