"""convert the old CRM schema and its rows into the new model (revision 0001 of the main chain)

sender local -> crm, crm -> tma; messages numbered (`seq`) in the order they were written;
customer placeholders until `link`; project and external_url -> legacy_ticket_fields. One
transaction: it converts everything or nothing.

Revision ID: crm_legacy_convert
Revises: crm_legacy
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

from crm_impl.legacy import LAYOUT, SIDE, UNKNOWN_CUSTOMER_ID, UNKNOWN_CUSTOMER_NAME
from integration_kit.legacy import begin_conversion, end_conversion, sender_case

revision: str = "crm_legacy_convert"
down_revision: str | None = "crm_legacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    conversion = begin_conversion(LAYOUT, SIDE.main_migrations)
    op.execute(
        "INSERT INTO tickets (id, subject, status, status_changed_at, created_at, updated_at, "  # noqa: S608 - constants of the legacy layout, no input
        "customer_telegram_id, customer_first_name) "
        f"SELECT id, subject, status, updated_at, created_at, updated_at, {UNKNOWN_CUSTOMER_ID}, "
        f"'{UNKNOWN_CUSTOMER_NAME}' FROM legacy_tickets"
    )
    op.execute(
        "INSERT INTO messages (seq, id, ticket_id, sender_type, body, attachments, created_at) "  # noqa: S608 - constants of the legacy layout, no input
        "SELECT row_number() OVER (ORDER BY created_at, id), id, ticket_id, "
        f"{sender_case(LAYOUT)}, message, attachments, created_at FROM legacy_messages"
    )
    end_conversion(conversion)


def downgrade() -> None:
    raise NotImplementedError("restore the backup taken before the cut-over (docs/cutover.md)")
