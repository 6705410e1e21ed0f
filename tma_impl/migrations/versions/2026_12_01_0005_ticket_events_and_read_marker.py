"""ticket events (the Mini App's live stream) and the user's read marker

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import integration_kit.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ticket_events",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "message_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("sender_type", sa.String(length=8), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", integration_kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_seq"],
            ["messages.seq"],
            name=op.f("fk_ticket_events_message_seq_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_events_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ticket_id", "seq", name=op.f("pk_ticket_events")),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("read_event_seq", sa.Integer(), server_default="0", nullable=False)
        )
    # Conversations that exist already get their messages as events, in the order stored; the
    # user has read them (no old reply shows up as unread after the upgrade).
    op.execute(
        """
        INSERT INTO ticket_events
            (ticket_id, seq, kind, message_seq, sender_type, status, created_at)
        SELECT m.ticket_id,
               ROW_NUMBER() OVER (PARTITION BY m.ticket_id ORDER BY m.seq),
               'message', m.seq, m.sender_type, t.status, m.created_at
        FROM messages m JOIN tickets t ON t.id = m.ticket_id
        """
    )
    op.execute(
        """
        UPDATE tickets SET read_event_seq = COALESCE(
            (SELECT MAX(e.seq) FROM ticket_events e WHERE e.ticket_id = tickets.id), 0)
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("read_event_seq")
    op.drop_table("ticket_events")
