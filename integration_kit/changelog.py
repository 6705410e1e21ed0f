"""The change log: one row per ticket, message and applied status change, written in the change's
own transaction, and the cursor that reads it (docs/design.md §10).

Order and the cursor's guarantee. Rows are read in (xid, seq) order, and on PostgreSQL only rows
whose transaction id lies below the oldest transaction of this database still in flight (see
HORIZON). Every transaction below that horizon has ended, so the set of rows under it is
final: no row can later appear before a position already handed out. A `seq` alone would not do:
a transaction that took seq 7 may commit after one that took seq 8, and a reader that had passed
8 would never see 7. On SQLite `xid` is 0 and the single writer makes commit order seq order.

A restore from a backup rewinds `seq`, so a cursor also names the database's epoch, a random id
kept in `feed_state`; `restored` draws a new one, and a cursor of another epoch (or one beyond
the last position held) is refused, telling the reader to start again.
"""

from __future__ import annotations

import functools
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert, literal, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from integration_kit.hot_sql import hot_sql
from integration_kit.problems import CURSOR_EPOCH_CHANGED, CURSOR_NOT_VALID, ProblemError
from integration_kit.schema import ChangeKind, ChangeLogColumns, FeedStateColumns

CURSOR_VERSION = "1"
EPOCH = "epoch"
PEER_CURSOR = "peer_cursor"
_EPOCH = re.compile(r"[0-9a-f]{32}")
_NUMBER = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True, order=True)
class Position:
    """A place in one database's feed: after the row (xid, seq)."""

    xid: int
    seq: int


@dataclass(frozen=True)
class Cursor:
    epoch: str
    position: Position

    def encode(self) -> str:
        return f"{CURSOR_VERSION}.{self.epoch}.{self.position.xid}.{self.position.seq}"


def cursor_not_valid(detail: str) -> ProblemError:
    return ProblemError(400, CURSOR_NOT_VALID, "Cursor not valid", detail)


def epoch_changed(detail: str) -> ProblemError:
    return ProblemError(422, CURSOR_EPOCH_CHANGED, "Cursor from another epoch", detail)


def decode_cursor(value: str) -> Cursor:
    """The cursor a page answered; anything else is a 400 with its own problem type."""
    parts = value.split(".")
    if (
        len(parts) != 4
        or parts[0] != CURSOR_VERSION
        or not _EPOCH.fullmatch(parts[1])
        or not all(_NUMBER.fullmatch(part) for part in parts[2:])
        or max(int(parts[2]), int(parts[3])) >= 2**63
    ):
        raise cursor_not_valid(f"{value[:64]!r} is not a cursor of this change feed.")
    return Cursor(parts[1], Position(int(parts[2]), int(parts[3])))


def new_epoch() -> str:
    return secrets.token_hex(16)


async def read_state(session: AsyncSession, model: type[FeedStateColumns], name: str) -> str | None:
    return await session.scalar(select(model.value).where(model.name == name))


async def write_state(
    session: AsyncSession, model: type[FeedStateColumns], name: str, value: str, *, now: datetime
) -> None:
    table = model.__table__  # type: ignore[attr-defined]
    insert_ = (
        postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    )
    statement = insert_(table).values(name=name, value=value, updated_at=now)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["name"], set_={"value": value, "updated_at": now}
        )
    )


async def current_epoch(
    session: AsyncSession, model: type[FeedStateColumns], *, now: datetime
) -> str:
    """This database's epoch, drawn on first use (a fresh database has none)."""
    epoch = await read_state(session, model, EPOCH)
    if epoch is None:
        table = model.__table__  # type: ignore[attr-defined]
        dialect = session.get_bind().dialect.name
        insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await session.execute(
            insert_(table)
            .values(name=EPOCH, value=new_epoch(), updated_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        epoch = await read_state(session, model, EPOCH)
        if epoch is None:  # just written, by us or a concurrent first reader
            raise RuntimeError("the feed epoch was written and is not there")
    return epoch


async def restored(session: AsyncSession, model: type[FeedStateColumns], *, now: datetime) -> str:
    """After a restore from a backup: a new epoch (cursors of the old one are refused, so the
    peer reads everything again) and no saved peer cursor (the next reconcile reads it all)."""
    epoch = new_epoch()
    await write_state(session, model, EPOCH, epoch, now=now)
    table = model.__table__  # type: ignore[attr-defined]
    await session.execute(table.delete().where(table.c.name == PEER_CURSOR))
    return epoch


# --- writing --------------------------------------------------------------------------------


async def log_change(
    session: AsyncSession,
    model: type[ChangeLogColumns],
    *,
    kind: ChangeKind,
    ticket_id: uuid.UUID,
    message_id: uuid.UUID | None = None,
    status: str | None = None,
    changed_at: datetime | None = None,
) -> None:
    """The change's log row, written in the caller's transaction (on the driver: hot_sql)."""
    hot = await hot_sql(session)
    await hot.execute(
        _log_insert(hot.dialect_name, model.__table__),  # type: ignore[attr-defined]
        {
            "kind": kind.value,
            "ticket_id": ticket_id,
            "message_id": message_id,
            "status": status,
            "changed_at": changed_at,
        },
    )


@functools.cache
def _log_insert(dialect: str, table: Table) -> Any:
    # Built once per table (statements built per request showed up in profiles). The xid is the
    # writing transaction's own, taken by the database in the same statement.
    xid = text("pg_current_xact_id()::text::bigint") if dialect == "postgresql" else literal(0)
    return insert(table).values(xid=xid)


# --- reading --------------------------------------------------------------------------------


# The oldest transaction of this database still writing, as a 64-bit xid; the next xid to be
# given out when none is. Every transaction below it has ended, so its rows are all visible to
# any later snapshot, and no row can appear below it any more.
#
# Why not `pg_snapshot_xmin(pg_current_snapshot())`: that is the oldest transaction of the whole
# server, so one long write in another database (a migration, a DROP DATABASE) held every page
# of the feed back. Only a transaction of this database can write its change log.
#
# Order matters and is kept by the statement: the next xid comes from the statement's snapshot,
# taken before pg_stat_activity is read, so a transaction that takes its xid in between is at
# or above it (and counts for nothing). pg_stat_activity shows 32-bit xids: each is placed
# relative to the 64-bit next xid by its signed distance (running transactions are within 2^31
# of it); `back` is how far below the next xid it lies. Transactions prepared for
# two-phase commit are not in pg_stat_activity; the backends never prepare any.
HORIZON = text(
    """
    WITH n AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next)
    SELECT n.next - coalesce(max(greatest(d.back, 0)), 0)
    FROM n
    LEFT JOIN LATERAL (
        SELECT ((n.next % 4294967296) - a.backend_xid::text::bigint + 6442450944)
            % 4294967296 - 2147483648 AS back
        FROM pg_stat_activity AS a
        WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL
    ) AS d ON true
    GROUP BY n.next
    """
)


@dataclass(frozen=True)
class LogRow:
    position: Position
    kind: ChangeKind
    ticket_id: uuid.UUID
    message_id: uuid.UUID | None
    status: str | None
    changed_at: datetime | None


async def read_log(
    session: AsyncSession,
    model: type[ChangeLogColumns],
    *,
    after: Position,
    limit: int,
) -> list[LogRow]:
    """Up to `limit` rows after `after`, in position order, never past an open transaction."""
    log = model
    query = (
        select(
            log.seq, log.xid, log.kind, log.ticket_id, log.message_id, log.status, log.changed_at
        )
        .where(tuple_(log.xid, log.seq) > tuple_(literal(after.xid), literal(after.seq)))
        .order_by(log.xid, log.seq)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        # First the horizon, then (a later statement, so a later snapshot) the rows below it.
        horizon = int(await session.scalar(HORIZON) or 0)
        query = query.where(log.xid < horizon)
    rows = (await session.execute(query)).all()
    return [
        LogRow(
            position=Position(row.xid, row.seq),
            kind=ChangeKind(row.kind),
            ticket_id=row.ticket_id,
            message_id=row.message_id,
            status=row.status,
            changed_at=row.changed_at,
        )
        for row in rows
    ]


async def last_position(session: AsyncSession, model: type[ChangeLogColumns]) -> Position:
    """The greatest position held (committed or not yet visible aside): (0, 0) when empty."""
    row = (
        await session.execute(
            select(model.xid, model.seq).order_by(model.xid.desc(), model.seq.desc()).limit(1)
        )
    ).first()
    return Position(row.xid, row.seq) if row is not None else Position(0, 0)


def check_cursor_epoch(cursor: Cursor, epoch: str) -> None:
    if cursor.epoch != epoch:
        raise epoch_changed(
            "The cursor was made by another epoch of this database (it was restored from a "
            "backup since, or the cursor is another database's): read again from the start."
        )


def page_positions(rows: Sequence[LogRow], after: Position) -> Position:
    return rows[-1].position if rows else after
