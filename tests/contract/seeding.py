"""Tickets that exist before a contract run, and the hook that points generated requests at them.

Random ids only ever name tickets nobody has, so a fuzzer left alone would get 404 for nearly
every message and status change and never reach the code that stores them. The tickets here have
fixed ids, so generated cases (built when pytest collects, before any fixture runs) can name them.

`python -m tests.contract.seeding crm|tma` migrates and seeds the database the backend's settings
point at; the command-line contract run (scripts/contract.py) uses it for the servers it starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select

from crm_impl import tables as crm_tables
from integration_kit.db import Database
from tma_impl import tables as tma_tables

if TYPE_CHECKING:
    import schemathesis

Side = Literal["crm", "tma"]

# Seeded tickets' status was set at this time, before any generated `changed_at` but a few: a
# generated change is mostly newer (applied) and sometimes older (acknowledged and ignored).
SEEDED_STATUS_AT = datetime(1970, 1, 1, tzinfo=UTC)
# Where the in-process backends' manual clock starts; test requests are signed at its time.
CLOCK_START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
_NAMESPACE = uuid.UUID("6f0f3c1e-2a4b-4c8d-9e7f-0a1b2c3d4e5f")


def _fixed_id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, name)


@dataclass(frozen=True)
class SeededTicket:
    """A ticket the backend under test has, named by both sides' ids."""

    receiver_id: uuid.UUID  # the id the backend under test gave it (`ticket_id` in requests)
    sender_id: uuid.UUID  # the peer's id of it (`external_ticket_id` in requests)
    linked: bool = True  # False: the backend has not stored the peer's id yet


SEEDED: dict[Side, list[SeededTicket]] = {
    "crm": [
        SeededTicket(_fixed_id(f"crm-ticket-{i}"), _fixed_id(f"tma-ticket-{i}")) for i in range(6)
    ],
    "tma": [
        *(
            SeededTicket(_fixed_id(f"tma-ticket-{i}"), _fixed_id(f"crm-ticket-{i}"))
            for i in range(6)
        ),
        # The CRM's answer to createTicket was lost, so the TMA does not know the CRM's id yet:
        # the first message or status change that names the ticket by both ids records the link.
        *(
            SeededTicket(_fixed_id(f"tma-unlinked-{i}"), _fixed_id(f"crm-unlinked-{i}"), False)
            for i in range(2)
        ),
    ],
}
# One message id that recurs across generated cases, so replays (200) and the reuse of an
# idempotency key with another body (409) happen, not only first deliveries.
RECURRING_MESSAGE_ID = _fixed_id("recurring-message")
CALLER: dict[Side, str] = {"crm": "tma", "tma": "crm"}  # who calls the backend under test


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def aim_at_seeded_tickets(
    side: Side, case: schemathesis.Case, *, ids: bool = True
) -> schemathesis.Case:
    """Point a generated request where it gets stored: a seeded ticket, the caller as sender.

    The choice is a hash of the generated body, so it repeats exactly with the generation. A value
    is only replaced when it is valid, by another valid one, so a negative case stays exactly as
    invalid as it was generated. One request in eight keeps what was generated (a ticket not
    known here: 404; a sender that is not the caller: 403), one in eight names a ticket by two
    ids that contradict each other (409), one in eight reuses the recurring message id (200 or
    409). With `ids=False` only the sender is set: links supply the ids.
    """
    if case.operation.definition.raw.get("operationId") == "listChanges":
        # A cursor is only what a page answered: a made-up one is refused however well-formed
        # (400, or 422 for another epoch), so valid cases read from the start.
        if case.meta is not None and case.meta.generation.mode.is_positive and case.query:
            case.query.pop("after", None)
        return case
    body = case.body
    if not isinstance(body, dict):
        return case
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).digest()
    slot, pick = digest[0] % 8, digest[1]
    tickets = SEEDED[side]
    ticket, other = tickets[pick % len(tickets)], tickets[(pick + 1) % len(tickets)]
    if case.operation.definition.raw.get("operationId") == "createTicket":
        if ids and slot == 0 and _is_uuid(body.get("external_ticket_id")):
            # The TMA's id of a ticket the CRM has: a replay with another body (409).
            body["external_ticket_id"] = str(ticket.sender_id)
        return case
    if slot == 0:
        return case
    if body.get("sender") in CALLER.values():
        body["sender"] = CALLER[side]
    if not ids:
        return case
    if _is_uuid(body.get("ticket_id")):
        body["ticket_id"] = str((other if slot == 1 else ticket).receiver_id)
    if _is_uuid(body.get("external_ticket_id")):
        body["external_ticket_id"] = str(ticket.sender_id)
    if slot == 2 and _is_uuid(body.get("external_message_id")):
        body["external_message_id"] = str(RECURRING_MESSAGE_ID)
    return case


_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


def names_representable_instants(case: schemathesis.Case) -> bool:
    """False for a valid case whose date-time names an instant outside 0001-9999 UTC.

    The spec says in words that such a date-time answers 422 (JSON Schema cannot say it), so a
    case that JSON Schema calls valid but the spec's words do not is not valid data: it is left
    out of the positive cases rather than expected to be accepted.
    """
    body = case.body
    if case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(body, dict):
        return True
    for field in ("created_at", "changed_at"):
        found = _DATE_TIME.fullmatch(str(body.get(field, "")))
        if found is None:
            continue
        year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
        sign, hours, minutes = found.groups()[6:]
        offset = timedelta(hours=int(hours or 0), minutes=int(minutes or 0))
        try:
            zone = timezone(-offset if sign == "-" else offset)
            datetime(year, month, day, hour, minute, min(second, 59), tzinfo=zone).astimezone(UTC)
        except (ValueError, OverflowError):
            return False
    return True


async def seed(side: Side, db: Database) -> None:
    """Create the seeded tickets (and, on the TMA, the Telegram user who owns them)."""
    at = SEEDED_STATUS_AT
    async with db.transaction() as session:
        if side == "tma":
            session.add(tma_tables.TelegramUser(id=1000, first_name="Seeded", updated_at=at))
            await session.flush()
        for i, ticket in enumerate(SEEDED[side]):
            common = {
                "id": ticket.receiver_id,
                "external_id": ticket.sender_id if ticket.linked else None,
                "subject": f"Seeded ticket {i}",
                "status": "open",
                "status_changed_at": at,
                "created_at": at,
                "updated_at": at,
            }
            if side == "crm":
                session.add(
                    crm_tables.Ticket(
                        **common, customer_telegram_id=1000 + i, customer_first_name="Seeded"
                    )
                )
            else:
                session.add(tma_tables.Ticket(**common, telegram_user_id=1000))


async def reset(side: Side, db: Database) -> None:
    """Back to the seeded state: what a run stored goes, seeded tickets are as first seeded."""
    tables = crm_tables if side == "crm" else tma_tables
    seeded = {ticket.receiver_id: ticket for ticket in SEEDED[side]}
    async with db.transaction() as session:
        # Everything a run wrote, the change feed's log and the Mini App's events included, so
        # each scenario starts from the same state and gets the same answers to the same calls.
        if side == "tma":
            await session.execute(tma_tables.TicketEvent.__table__.delete())
        await session.execute(tables.ChangeLog.__table__.delete())
        await session.execute(tables.Outbox.__table__.delete())
        await session.execute(tables.Message.__table__.delete())
        await session.execute(
            tables.Ticket.__table__.delete().where(tables.Ticket.id.not_in(list(seeded)))
        )
        for ticket in (await session.scalars(select(tables.Ticket))).all():
            original = seeded[ticket.id]
            ticket.external_id = original.sender_id if original.linked else None
            ticket.status = "open"
            ticket.status_changed_at = ticket.updated_at = SEEDED_STATUS_AT
            if isinstance(ticket, tma_tables.Ticket):
                ticket.read_event_seq = 0


def migrate_and_seed(side: Side) -> None:
    """Migrate the database `side`'s settings point at, then seed it."""
    from crm_impl.settings import CrmSettings
    from integration_kit.migrate import upgrade
    from tma_impl.settings import TmaSettings

    settings = CrmSettings() if side == "crm" else TmaSettings()
    url = settings.resolved_database_url(side)
    upgrade(Path(__file__).resolve().parents[2] / f"{side}_impl" / "migrations", url)

    async def seeded() -> None:
        db = Database(url)
        try:
            await seed(side, db)
        finally:
            await db.dispose()

    asyncio.run(seeded())


if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) == 2 else ""
    if chosen not in ("crm", "tma"):
        raise SystemExit("usage: python -m tests.contract.seeding crm|tma")
    migrate_and_seed("crm" if chosen == "crm" else "tma")
