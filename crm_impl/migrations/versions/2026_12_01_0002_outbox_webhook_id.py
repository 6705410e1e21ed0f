"""outbox webhook_id: each event's stable Standard Webhooks id

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 16:30:00

Existing events get a fresh id each: they have never been signed, so no receiver has seen one.
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_id", sa.Uuid(), nullable=True))
    outbox = sa.table(
        "outbox", sa.column("id", sa.BigInteger()), sa.column("webhook_id", sa.Uuid())
    )
    bind = op.get_bind()
    ids = bind.execute(sa.select(outbox.c.id)).scalars().all()
    if ids:
        bind.execute(
            sa.update(outbox)
            .where(outbox.c.id == sa.bindparam("row_id"))
            .values(webhook_id=sa.bindparam("new_id")),
            [{"row_id": row_id, "new_id": uuid.uuid4()} for row_id in ids],
        )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("webhook_id", existing_type=sa.Uuid(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("webhook_id")
