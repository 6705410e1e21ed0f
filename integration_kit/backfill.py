"""Backfill: the messages of before the cut-over, matched across the sides or sent once.

The old TMA never sent its users' follow-ups to the CRM (the audit's TODO), while the first
message of each ticket and every operator reply exist on both sides, without ids that name each
other. Old bodies carry no id, so a message here is matched to the peer's copy by ticket, sender,
body and time (within a window, each copy used once, in order). What matches gets its
`external_message_id` on both sides; a TMA user's message with no copy is sent through the outbox,
in order, like any new message. docs/cutover.md says where matching can fail.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from integration_kit.schema import MessageColumns, TicketColumns

COLUMNS = ("tma_ticket_id", "crm_ticket_id", "message_id", "sender_type", "body", "created_at")
DEFAULT_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class PeerMessage:
    """A message of a linked ticket as the other side holds it, without a link yet."""

    tma_ticket_id: uuid.UUID
    crm_ticket_id: uuid.UUID
    message_id: uuid.UUID
    sender_type: str
    body: str
    created_at: datetime


@dataclass
class Matching:
    """The outcome of matching one ticket's old messages against the peer's copies."""

    pairs: list[tuple[MessageColumns, PeerMessage]] = field(default_factory=list)
    only_here: list[MessageColumns] = field(default_factory=list)
    only_there: list[PeerMessage] = field(default_factory=list)


def match(
    ours: Sequence[MessageColumns], theirs: Sequence[PeerMessage], *, window: timedelta
) -> Matching:
    """Pair each of `ours` (in order) with the earliest unused copy of the same sender and body
    written within `window`; the rest is only here or only there."""
    result = Matching()
    unused = sorted(theirs, key=lambda m: m.created_at)
    for message in ours:
        found = next(
            (
                peer
                for peer in unused
                if peer.sender_type == message.sender_type
                and peer.body == message.body
                and abs(peer.created_at - message.created_at) <= window
            ),
            None,
        )
        if found is None:
            result.only_here.append(message)
        else:
            unused.remove(found)
            result.pairs.append((message, found))
    result.only_there = unused
    return result


def write_peer_messages(path: Path, messages: Iterable[PeerMessage]) -> int:
    count = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for m in messages:
            writer.writerow(
                [
                    m.tma_ticket_id,
                    m.crm_ticket_id,
                    m.message_id,
                    m.sender_type,
                    m.body,
                    m.created_at.isoformat(),
                ]
            )
            count += 1
    return count


def read_peer_messages(path: Path) -> list[PeerMessage]:
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if set(COLUMNS) - set(reader.fieldnames or []):
                raise ValueError(f"{path}: the columns are not {', '.join(COLUMNS)}")
            made = []
            for number, row in enumerate(reader, start=2):
                try:
                    made.append(
                        PeerMessage(
                            tma_ticket_id=uuid.UUID(row["tma_ticket_id"]),
                            crm_ticket_id=uuid.UUID(row["crm_ticket_id"]),
                            message_id=uuid.UUID(row["message_id"]),
                            sender_type=row["sender_type"],
                            body=row["body"],
                            created_at=datetime.fromisoformat(row["created_at"]),
                        )
                    )
                except ValueError as exc:
                    raise ValueError(f"{path} line {number}: {exc}") from None
            return made
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


async def unlinked_messages(
    session: AsyncSession,
    ticket_model: type[TicketColumns],
    message_model: type[MessageColumns],
    *,
    side: str,
    legacy_peer_id: Callable[[uuid.UUID], uuid.UUID],
) -> list[PeerMessage]:
    """This side's messages that have no id on the other side yet: what the other side matches
    against (`backfill --export`). A ticket not linked yet is named by the old systems' shared
    id, so the other side also learns which tickets exist here (it must not create them)."""
    rows = await session.execute(
        select(ticket_model.id, ticket_model.external_id, message_model)
        .join(message_model, message_model.ticket_id == ticket_model.id)
        .where(message_model.external_message_id.is_(None))
        .order_by(message_model.seq)
    )
    made = []
    for ours, linked, message in rows:
        theirs: uuid.UUID = linked if linked is not None else legacy_peer_id(ours)
        tma, crm = (ours, theirs) if side == "tma" else (theirs, ours)
        made.append(
            PeerMessage(tma, crm, message.id, message.sender_type, message.body, message.created_at)
        )
    return made


async def record_pairs(
    session: AsyncSession, message_model: type[MessageColumns], pairs: Sequence[tuple[str, str]]
) -> int:
    """Set `external_message_id` where it is still empty: (our message id, their message id)."""
    if not pairs:
        return 0
    table = message_model.__table__  # type: ignore[attr-defined]
    values = [{"ours": uuid.UUID(ours), "theirs": uuid.UUID(theirs)} for ours, theirs in pairs]
    # Counted first: executemany's rowcount is not reported by every driver (asyncpg).
    open_ids = [v["ours"] for v in values]
    waiting = 0
    for start in range(0, len(open_ids), 1000):
        waiting += (
            await session.scalar(
                select(func.count())
                .select_from(table)
                .where(
                    table.c.id.in_(open_ids[start : start + 1000]),
                    table.c.external_message_id.is_(None),
                )
            )
            or 0
        )
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("ours"), table.c.external_message_id.is_(None))
        .values(external_message_id=bindparam("theirs")),
        values,
    )
    return waiting


def write_matched(path: Path, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> int:
    """The pairs for the other side, as (its message id, our message id)."""
    count = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("message_id", "external_message_id"))
        for theirs, ours in pairs:
            writer.writerow((theirs, ours))
            count += 1
    return count


def read_matched(path: Path) -> list[tuple[str, str]]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return [
            (str(uuid.UUID(r["message_id"])), str(uuid.UUID(r["external_message_id"])))
            for r in rows
        ]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a file of matched messages ({exc})") from None
