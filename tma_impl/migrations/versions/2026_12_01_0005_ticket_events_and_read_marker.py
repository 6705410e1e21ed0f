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
    # On PostgreSQL the fill of a large database (a converted one of 1,000,000 messages:
    # docs/cutover.md, "Migrating a large database") is the side's downtime, so:
    # - the table is filled before its foreign keys exist, which are added after: each is then
    #   checked by one join, not row by row. The resulting schema and rows are the same. (SQLite
    #   cannot add a foreign key to an existing table: there they are declared from the start.)
    # - the sort the events' numbering needs gets the memory to run at once: with the default
    #   4 MB the planner reads the messages through their ticket index instead, one random page
    #   per message (11 s against 7 s for the fill measured there). For this revision only.
    # - the read markers are set by one grouped pass over the events, not a lookup per ticket.
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("SET LOCAL work_mem = '256MB'")
    # (column, the table and column it names)
    foreign_keys = [("message_seq", "messages", "seq"), ("ticket_id", "tickets", "id")]
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
        *(
            []
            if postgresql
            else [
                sa.ForeignKeyConstraint(
                    [column],
                    [f"{referred}.{key}"],
                    name=op.f(f"fk_ticket_events_{column}_{referred}"),
                    ondelete="CASCADE",
                )
                for column, referred, key in foreign_keys
            ]
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
    if postgresql:
        # A ticket without events keeps the column's default, 0. (UPDATE ... FROM needs SQLite
        # 3.33: SQLite keeps the statement below, which says the same.)
        op.execute(
            """
            UPDATE tickets SET read_event_seq = e.last
            FROM (SELECT ticket_id, MAX(seq) AS last FROM ticket_events GROUP BY ticket_id) AS e
            WHERE e.ticket_id = tickets.id
            """
        )
    else:
        op.execute(
            """
            UPDATE tickets SET read_event_seq = COALESCE(
                (SELECT MAX(e.seq) FROM ticket_events e WHERE e.ticket_id = tickets.id), 0)
            """
        )
    if postgresql:
        for column, referred, key in foreign_keys:
            op.create_foreign_key(
                op.f(f"fk_ticket_events_{column}_{referred}"),
                "ticket_events",
                referred,
                [column],
                [key],
                ondelete="CASCADE",
            )
        op.execute("SET LOCAL work_mem TO DEFAULT")  # later revisions run as they always did


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("read_event_seq")
    op.drop_table("ticket_events")
