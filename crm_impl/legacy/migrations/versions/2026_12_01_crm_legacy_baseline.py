"""the old CRM's schema, as crm_impl.legacy describes it

An existing old database is stamped with this revision (`python -m crm_impl legacy stamp`);
upgrading an empty database to it builds the old schema (test fixtures, the benchmark).

Revision ID: crm_legacy
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_legacy"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Constraint names as the database chose them: the old systems had no naming convention.
    # `tickets.id` is the TMA's id, taken as it came and never made a key (crm_impl.legacy):
    # indexed, not unique, so messages cannot name it in a foreign key.
    op.create_table(
        "tickets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("project", sa.String(255), nullable=True),
        sa.Column("external_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("tickets_id_idx", "tickets", ["id"])
    op.create_table(
        "messages",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("sender", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("messages_ticket_id_idx", "messages", ["ticket_id"])


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("tickets")
