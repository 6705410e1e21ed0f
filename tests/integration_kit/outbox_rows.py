"""Reading a backend's outbox table the way an operator would, for assertions."""

from __future__ import annotations

from sqlalchemy import select

from integration_kit.runtime import Runtime
from integration_kit.schema import OutboxColumns


async def outbox_rows(runtime: Runtime, *, kind: str | None = None) -> list[OutboxColumns]:
    """Every outbox row of `runtime` (of one kind if given), oldest first."""
    model = runtime.outbox.model
    query = select(model).order_by(model.id)
    if kind is not None:
        query = query.where(model.kind == kind)
    async with runtime.db.sessions() as session:
        return list((await session.scalars(query)).all())


async def outbox_row(runtime: Runtime, event_id: int) -> OutboxColumns:
    async with runtime.db.sessions() as session:
        row = await session.get(runtime.outbox.model, event_id)
    assert row is not None, f"no outbox event {event_id}"
    return row
