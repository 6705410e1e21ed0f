"""`link`: record `external_id` on both sides for tickets that existed before the cut-over.

A pair is (TMA ticket id, CRM ticket id). Pairs come from this side's own data (a ticket with a
message the other side wrote must exist there: the side's legacy package says under which id),
or from a CSV exported by the other side (`link --export`). Linking is idempotent: a pair already
recorded is counted, never changed; a pair that contradicts a recorded link is reported.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from integration_kit.schema import MessageColumns, TicketColumns

COLUMNS = (
    "tma_ticket_id",
    "crm_ticket_id",
    "telegram_user_id",
    "first_name",
    "last_name",
    "username",
    "language_code",
)


@dataclass(frozen=True)
class Pair:
    tma_ticket_id: uuid.UUID
    crm_ticket_id: uuid.UUID
    customer: dict[str, Any] = field(default_factory=dict)  # the TMA's user, for the CRM


@dataclass
class LinkReport:
    linked: int = 0
    already: int = 0
    refused: list[str] = field(default_factory=list)
    unlinked: list[uuid.UUID] = field(default_factory=list)  # tickets here still without a link

    def lines(self) -> list[str]:
        lines = [f"could not link: {reason}" for reason in self.refused]
        lines.append(
            f"linked {self.linked}, already linked {self.already}, could not link "
            f"{len(self.refused)}; tickets here without a link: {len(self.unlinked)}"
        )
        return lines


# Sets the CRM's placeholder customer from a pair's Telegram user (nothing on the TMA).
FillCustomer = Callable[[TicketColumns, dict[str, Any]], None]


@dataclass(frozen=True)
class LinkSide:
    """What `link` needs to know of one side."""

    name: str  # "tma" or "crm"
    ticket_model: type[TicketColumns]
    message_model: type[MessageColumns]
    # The old peer's id of a ticket of ours that reached it (the legacy package's assumption).
    legacy_peer_id: Callable[[uuid.UUID], uuid.UUID]
    fill_customer: FillCustomer | None = None
    # The TMA's Telegram user of a ticket, written into its export for the CRM.
    export_customer: Callable[[AsyncSession, Any], Awaitable[dict[str, Any]]] | None = None

    def own(self, pair: Pair) -> uuid.UUID:
        return pair.tma_ticket_id if self.name == "tma" else pair.crm_ticket_id

    def peer(self, pair: Pair) -> uuid.UUID:
        return pair.crm_ticket_id if self.name == "tma" else pair.tma_ticket_id

    @property
    def peer_sender(self) -> str:
        return "crm" if self.name == "tma" else "tma"


def read_pairs(path: Path) -> list[Pair]:
    """Pairs from a CSV with a header naming at least tma_ticket_id and crm_ticket_id."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"tma_ticket_id", "crm_ticket_id"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: no column {', '.join(sorted(missing))}")
            pairs = []
            for number, row in enumerate(reader, start=2):
                try:
                    tma, crm = uuid.UUID(row["tma_ticket_id"]), uuid.UUID(row["crm_ticket_id"])
                    user = row.get("telegram_user_id") or ""
                    customer = (
                        {
                            "telegram_user_id": int(user),
                            **{k: row.get(k) or None for k in COLUMNS[3:]},
                        }
                        if user
                        else {}
                    )
                except ValueError as exc:
                    raise ValueError(f"{path} line {number}: {exc}") from None
                pairs.append(Pair(tma, crm, customer))
            return pairs
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


def write_pairs(path: Path, pairs: Iterable[Pair]) -> int:
    count = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for pair in pairs:
            customer = pair.customer
            writer.writerow(
                [pair.tma_ticket_id, pair.crm_ticket_id]
                + [
                    "" if customer.get(k) is None else customer.get(k)
                    for k in ("telegram_user_id", *COLUMNS[3:])
                ]
            )
            count += 1
    return count


async def pairs_from_own_data(session: AsyncSession, side: LinkSide) -> list[Pair]:
    """Tickets without a link that hold a message the other side wrote: the peer has them."""
    tickets, messages = side.ticket_model, side.message_model
    rows = await session.scalars(
        select(tickets.id)
        .where(
            tickets.external_id.is_(None),
            exists().where(
                messages.ticket_id == tickets.id, messages.sender_type == side.peer_sender
            ),
        )
        .order_by(tickets.created_at, tickets.id)
    )
    made = []
    for own in rows:
        peer = side.legacy_peer_id(own)
        made.append(Pair(own, peer) if side.name == "tma" else Pair(peer, own))
    return made


async def link(session: AsyncSession, side: LinkSide, pairs: Sequence[Pair]) -> LinkReport:
    """Record each pair's link on this side; idempotent; reports what it could not link."""
    model = side.ticket_model
    report = LinkReport()
    for pair in pairs:
        own, peer = side.own(pair), side.peer(pair)
        ticket = await session.get(model, own, with_for_update=True)
        if ticket is None:
            report.refused.append(f"{own}: no such ticket here")
            continue
        if side.fill_customer is not None and pair.customer:
            side.fill_customer(ticket, pair.customer)
        if ticket.external_id == peer:
            report.already += 1
            continue
        if ticket.external_id is not None:
            report.refused.append(f"{own}: linked to {ticket.external_id} already, not to {peer}")
            continue
        other = await session.scalar(select(model.id).where(model.external_id == peer))
        if other is not None:
            report.refused.append(f"{own}: {peer} is the link of ticket {other} here")
            continue
        ticket.external_id = peer
        await session.flush()
        report.linked += 1
    report.unlinked = list(
        await session.scalars(
            select(model.id).where(model.external_id.is_(None)).order_by(model.created_at)
        )
    )
    return report


async def export_pairs(session: AsyncSession, side: LinkSide) -> list[Pair]:
    """The pairs this side can vouch for: its linked tickets, and (the CRM) every other ticket
    under the old systems' shared id, for the TMA to check against its own tickets."""
    rows = (await session.scalars(select(side.ticket_model).order_by("created_at"))).all()
    pairs = []
    for ticket in rows:
        peer = ticket.external_id
        if peer is None and side.name == "crm":
            peer = side.legacy_peer_id(ticket.id)
        if peer is None:
            continue
        customer = (
            await side.export_customer(session, ticket) if side.export_customer is not None else {}
        )
        pairs.append(
            Pair(ticket.id, peer, customer)
            if side.name == "tma"
            else Pair(peer, ticket.id, customer)
        )
    return pairs
