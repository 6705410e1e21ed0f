"""Old databases with history, built from the legacy baselines (tma_impl.legacy, crm_impl.legacy).

The history is one a pair of old systems would have: tickets the old TMA sent to the old CRM (the
CRM ticket has the TMA's id), operator replies that reached the TMA, users' follow-ups that never
reached the CRM (the audit's TODO), and a CRM ticket that never came from the TMA.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    String,
    Text,
    Uuid,
    column,
    insert,
    table,
)
from sqlalchemy.ext.asyncio import create_async_engine

from crm_impl.legacy import SIDE as CRM_SIDE
from integration_kit.db import async_url
from integration_kit.legacy import LegacySide, create_legacy_database
from tests.support.databases import empty_database
from tma_impl.legacy import SIDE as TMA_SIDE

SIDES: dict[str, LegacySide] = {"tma": TMA_SIDE, "crm": CRM_SIDE}
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def tickets_table(side: str) -> Any:
    subject = "theme" if side == "tma" else "subject"
    columns = [
        column("id", Uuid()),
        column(subject, Text()),
        column("status", String()),
        column("project", String()),
        column("external_url", Text()),
        column("created_at", DateTime(timezone=True)),
        column("updated_at", DateTime(timezone=True)),
    ]
    if side == "tma":
        columns.append(column("user_id", BigInteger()))
    return table("tickets", *columns)


def messages_table(side: str) -> Any:
    return table(
        "messages",
        column("id", Integer() if side == "tma" else Uuid()),
        column("ticket_id", Uuid()),
        column("sender", String()),
        column("message", Text()),
        column("attachments", JSON()),
        column("created_at", DateTime(timezone=True)),
    )


@asynccontextmanager
async def legacy_database(kind: str, side: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database given the old schema of `side` and stamped as legacy."""
    (tmp_path / side).mkdir(exist_ok=True)
    async with empty_database(kind, tmp_path / side) as url:
        await asyncio.to_thread(create_legacy_database, url, SIDES[side])
        yield url


async def insert_rows(url: str, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            await connection.execute(statement, list(rows))
    finally:
        await engine.dispose()


@dataclass
class OldTicket:
    id: uuid.UUID
    subject: str
    user_id: int
    # (sender as the TMA says it, body, minutes after T0): what each side stored
    tma: list[tuple[str, str, int]] = field(default_factory=list)
    crm: list[tuple[str, str, int]] = field(default_factory=list)
    project: str | None = "shop"
    external_url: str | None = None


def history(tickets: int = 3) -> list[OldTicket]:
    """Tickets as two old systems hold them after a while of one-way messaging."""
    made = []
    for n in range(tickets):
        at = 10 * n
        opened = ("local", f"Ticket {n}: my order {n} is unpaid", at)
        reply = ("crm", f"Looking into order {n}", at + 1)
        follow_up = ("local", f"Still unpaid ({n})", at + 2)
        second_reply = ("crm", "Fixed, sorry!", at + 3)
        made.append(
            OldTicket(
                id=uuid.uuid4(),
                subject=f"Order {n} unpaid",
                user_id=1000 + n,
                # The TMA has everything: its user's messages and the replies the webhook brought.
                tma=[opened, reply, follow_up, second_reply],
                # The CRM never got the follow-up (the audit's TODO).
                crm=[opened, reply, second_reply],
                external_url=f"https://shop.example/orders/{n}",
            )
        )
    return made


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def seed(
    tma_url: str, crm_url: str, tickets: Sequence[OldTicket], *, tma_only: Sequence[OldTicket] = ()
) -> uuid.UUID:
    """Write `tickets` into both old databases, plus one CRM-only ticket (returns its id), and
    `tma_only`: tickets whose creation never reached the old CRM."""
    tma_tickets, crm_tickets, tma_messages, crm_messages = [], [], [], []
    for ticket in [*tickets, *tma_only]:
        if ticket in tma_only:  # no operator ever saw it
            ticket.tma, ticket.crm = [m for m in ticket.tma if m[0] == "local"], []
        common = {
            "id": ticket.id,
            "status": "open",
            "project": ticket.project,
            "external_url": ticket.external_url,
            "created_at": _at(ticket.tma[0][2]),
            "updated_at": _at(ticket.tma[-1][2]),
        }
        tma_tickets.append({**common, "theme": ticket.subject, "user_id": ticket.user_id})
        if ticket not in tma_only:
            crm_tickets.append({**common, "subject": ticket.subject})
        for sender, body, minute in ticket.tma:
            tma_messages.append(
                {
                    "ticket_id": ticket.id,
                    "sender": sender,
                    "message": body,
                    "attachments": [],
                    "created_at": _at(minute),
                }
            )
        for sender, body, minute in ticket.crm:
            # The CRM's words: local = its operator, crm = what came through its old route.
            crm_messages.append(
                {
                    "id": uuid.uuid4(),
                    "ticket_id": ticket.id,
                    "sender": "crm" if sender == "local" else "local",
                    "message": body,
                    # The CRM stored what arrived a little later than the TMA wrote it.
                    "attachments": [],
                    "created_at": _at(minute) + timedelta(seconds=2 if sender == "local" else 0),
                }
            )
    own = uuid.uuid4()
    crm_tickets.append(
        {
            "id": own,
            "subject": "Phoned in",
            "status": "closed",
            "project": None,
            "external_url": None,
            "created_at": T0,
            "updated_at": T0,
        }
    )
    crm_messages.append(
        {
            "id": uuid.uuid4(),
            "ticket_id": own,
            "sender": "local",
            "message": "Customer called about a refund",
            "attachments": [],
            "created_at": T0,
        }
    )
    await insert_rows(tma_url, insert(tickets_table("tma")), tma_tickets)
    await insert_rows(tma_url, insert(messages_table("tma")), tma_messages)
    await insert_rows(crm_url, insert(tickets_table("crm")), crm_tickets)
    await insert_rows(crm_url, insert(messages_table("crm")), crm_messages)
    return own
