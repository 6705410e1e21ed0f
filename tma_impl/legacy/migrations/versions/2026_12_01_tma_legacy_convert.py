"""convert the old TMA schema and its rows into the new model (revision 0001 of the main chain)

theme -> subject; sender local -> tma, crm -> crm; integer message ids -> `seq` (their order) and
a UUID derived from them (tma_impl.legacy.message_uuid); a Telegram user row per old user_id
(refreshed from initData on the user's next request); project and external_url ->
legacy_ticket_fields. One transaction: it converts everything or nothing.

Revision ID: tma_legacy_convert
Revises: tma_legacy
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

from integration_kit.legacy import begin_conversion, end_conversion, legacy_uuid_sql, sender_case
from tma_impl.legacy import LAYOUT, MESSAGE_PREFIX, SIDE

revision: str = "tma_legacy_convert"
down_revision: str | None = "tma_legacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    conversion = begin_conversion(LAYOUT, SIDE.main_migrations)
    op.execute(
        "INSERT INTO telegram_users (id, first_name, updated_at) "
        "SELECT user_id, '', max(updated_at) FROM legacy_tickets GROUP BY user_id"
    )
    op.execute(
        "INSERT INTO tickets (id, subject, status, status_changed_at, created_at, updated_at, "
        "telegram_user_id) "
        "SELECT id, theme, status, updated_at, created_at, updated_at, user_id FROM legacy_tickets"
    )
    new_id, digest = legacy_uuid_sql(MESSAGE_PREFIX, "id", conversion.bind.dialect.name)
    op.execute(
        "INSERT INTO messages (seq, id, ticket_id, sender_type, body, attachments, created_at) "  # noqa: S608 - constants of the legacy layout, no input
        f"SELECT id, {new_id}, ticket_id, {sender_case(LAYOUT)}, message, attachments, "
        f"created_at FROM legacy_messages{digest} ORDER BY id"
    )
    end_conversion(conversion)


def downgrade() -> None:
    raise NotImplementedError("restore the backup taken before the cut-over (docs/cutover.md)")
