"""Tickets that exist before a contract run, and the hook that points generated requests at them.

Random ids only ever name tickets nobody has, so a fuzzer left alone would get 404 for nearly
every message and status change and never reach the code that stores them. The tickets here have
fixed ids, so generated cases (built when pytest collects, before any fixture runs) can name them.

`python -m tests.contract.seeding crm|tma` migrates and seeds the database the backend's settings
point at; the command-line contract run (scripts/contract.py) uses it for the servers it starts.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
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


def _digest(body: dict[str, object]) -> bytes:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).digest()


def fresh_id(digest: bytes, name: str) -> str:
    """A new id for field `name` of the case whose generated body hashes to `digest`.

    Derived from the generated body, never from uuid4: Hypothesis replays a case by its draws,
    and the replay must send the same ids (a stateful scenario whose answers change on replay is
    reported as a flaky strategy). Two cases with the same body get the same id: a replay (200).
    """
    return str(uuid.uuid5(_NAMESPACE, f"{name}:{digest.hex()}"))


class CaseClock:
    """The dates of valid cases: near the backend's time and one second later for each case, so
    last-writer-wins applies status changes in the order they are sent.

    A generated `changed_at` lies anywhere in years 1-9999: one in year 9000 would make every
    later change to its ticket stale, so few would be applied; a ticket created in year 9000
    holds that as its status time. `start` is the backend's clock (the manual clock's start in
    process, the wall clock for `make contract`).
    """

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.cases = 0

    def restart(self) -> None:
        """From `start` again: each stateful scenario begins on a reset database."""
        self.cases = 0

    def next(self) -> datetime:
        self.cases += 1
        return self.start + timedelta(seconds=self.cases)


def date_near_now(body: dict[str, object], clock: CaseClock, *, slot: int) -> None:
    """Date a valid case from `clock`: `changed_at` always (one in eight a day earlier: stale
    once its ticket has a newer status), `created_at` but one case in eight, which keeps its
    generated instant (anywhere in years 1-9999: valid data the receiver must take too)."""
    for name in ("created_at", "changed_at"):
        value = body.get(name)
        if not isinstance(value, str) or (name == "created_at" and slot == 4):
            continue
        at = clock.next() - (
            timedelta(days=1) if name == "changed_at" and slot == 3 else timedelta(0)
        )
        body[name] = written_like(at, value)


def aim_at_seeded_tickets(
    side: Side, case: schemathesis.Case, *, ids: bool = True, clock: CaseClock | None = None
) -> schemathesis.Case:
    """Point a generated request where it gets stored: a seeded ticket, the caller as sender,
    and, for a valid case, fresh ids and dates from `clock` (`date_near_now`).

    The choice is a hash of the generated body, so it repeats exactly with the generation. A value
    is only replaced when it is valid, by another valid one, so a negative case stays exactly as
    invalid as it was generated. One request in eight keeps what was generated (a ticket not
    known here: 404; a sender that is not the caller: 403), one in eight names a ticket by two
    ids that contradict each other (409), one in eight reuses the recurring message id (200 or
    409). Generated ids of valid cases recur (one `external_ticket_id` for most `createTicket`
    cases: 409), so the others get fresh ones. With `ids=False` the ticket ids are left alone
    (links supply them), no message id recurs, and every valid case gets the caller as sender,
    a fresh message id and dates from `clock`: stateful scenarios follow the success paths, the
    stateless runs the refusals too.
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
    digest = _digest(body)
    slot, pick = digest[0] % 8, digest[1]
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    tickets = SEEDED[side]
    ticket, other = tickets[pick % len(tickets)], tickets[(pick + 1) % len(tickets)]
    if positive and clock is not None and not (ids and slot == 0):
        date_near_now(body, clock, slot=slot)
    if case.operation.definition.raw.get("operationId") == "createTicket":
        if ids and slot == 0 and _is_uuid(body.get("external_ticket_id")):
            # The TMA's id of a ticket the CRM has: a replay with another body (409).
            body["external_ticket_id"] = str(ticket.sender_id)
        elif positive:
            for name in ("external_ticket_id", "external_message_id"):
                if _is_uuid(body.get(name)):
                    body[name] = fresh_id(digest, name)
        return case
    if slot == 0 and (ids or not positive):
        return case
    if body.get("sender") in CALLER.values():
        body["sender"] = CALLER[side]
    if ids and _is_uuid(body.get("ticket_id")):
        body["ticket_id"] = str((other if slot == 1 else ticket).receiver_id)
    if ids and _is_uuid(body.get("external_ticket_id")):
        body["external_ticket_id"] = str(ticket.sender_id)
    if ids and slot == 2 and _is_uuid(body.get("external_message_id")):
        body["external_message_id"] = str(RECURRING_MESSAGE_ID)
    elif positive and _is_uuid(body.get("external_message_id")):
        body["external_message_id"] = fresh_id(digest, "external_message_id")
    return case


def pair_ticket_ids(case: schemathesis.Case, known: dict[str, str], preferred: list[str]) -> None:
    """Make a valid stateful step name one ticket by both ids, as a real sender would.

    A link supplies each field on its own, at random: `ticket_id` from the answer may come with a
    generated `external_ticket_id` (409), or neither comes (404). `known` maps the receiver's
    ticket ids to the sender's; the id a link supplied is kept and its partner filled in, and a
    step that got neither names one of `preferred` (what the scenario created, in the order it
    did), else of `known`.
    """
    body = case.body
    if (
        case.meta is None
        or not case.meta.generation.mode.is_positive
        or not isinstance(body, dict)
        or case.operation.definition.raw.get("operationId") not in ("postMessage", "postStatus")
    ):
        return
    by_external = {external: ticket for ticket, external in known.items()}
    ticket_id = str(body.get("ticket_id", "")).lower()
    external = str(body.get("external_ticket_id", "")).lower()
    if ticket_id in known:
        body["external_ticket_id"] = known[ticket_id]
    elif external in by_external:
        if "ticket_id" in body:
            body["ticket_id"] = by_external[external]
    else:
        # Chosen by what was generated, not by the ids the backend made up (new on every run
        # of the scenario): replayed, the step names the same ticket of the scenario.
        generated = {k: v for k, v in body.items() if k not in ("ticket_id", "external_ticket_id")}
        choices = preferred or sorted(known)
        chosen = choices[_digest(generated)[1] % len(choices)]
        if "ticket_id" in body:
            body["ticket_id"] = chosen
        body["external_ticket_id"] = known[chosen]
    message_id = body.get("external_message_id")
    if _is_uuid(message_id) and message_id != str(RECURRING_MESSAGE_ID):
        # The id was made before the link named the ticket: two steps generated alike may now
        # be about different tickets, and must not share a message id (409).
        rest = {name: value for name, value in body.items() if name != "external_message_id"}
        body["external_message_id"] = fresh_id(_digest(rest), "external_message_id")


_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


_STYLE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt])[0-9:]{8}(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def written_like(at: datetime, generated: str) -> str:
    """`at` written as the generated date-time is: its `T`, its fraction digits, its offset.

    Only the instant is chosen; how it is spelled stays what Hypothesis generated.
    """
    style = _STYLE.fullmatch(generated)
    if style is None:
        return at.isoformat()
    separator, fraction, zone = style.groups()
    if zone in ("Z", "z"):
        local, suffix = at.astimezone(UTC), zone
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
        local, suffix = at.astimezone(timezone(offset)), zone
    text = local.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    if fraction:
        text += "." + f"{local.microsecond:06d}"[: len(fraction)].ljust(len(fraction), "0")
    return text + suffix


SPEC_PATH = Path(__file__).resolve().parents[2] / "spec" / "integration.yaml"


@functools.cache
def instant_ranges() -> dict[str, dict[str, tuple[datetime, datetime]]]:
    """Per operation, the request date-times and the range of instants the spec lets each name
    (its `x-instant-range` extension; JSON Schema's `date-time` format cannot say it)."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    ranges: dict[str, dict[str, tuple[datetime, datetime]]] = {}
    for methods in spec["paths"].values():
        for operation in methods.values():
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            if "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            for name, field in schema.get("properties", {}).items():
                if "x-instant-range" in field:
                    bounds = field["x-instant-range"]
                    ranges.setdefault(operation["operationId"], {})[name] = (
                        datetime.fromisoformat(bounds["minimum"]),
                        datetime.fromisoformat(bounds["maximum"]),
                    )
    return ranges


def _instant(value: str) -> datetime | None:
    """The UTC instant an RFC 3339 date-time names; None when it has none in years 1-9999."""
    found = _DATE_TIME.fullmatch(value)
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    fraction, sign, hours, minutes = found.groups()[6:]
    offset = timedelta(hours=int(hours or 0), minutes=int(minutes or 0))
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        zone = timezone(-offset if sign == "-" else offset)
        # A leap second (":60") is held as the last microsecond of its minute.
        local = datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=zone)
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def names_representable_instants(case: schemathesis.Case) -> bool:
    """False for a valid case whose date-time is outside the spec's `x-instant-range`.

    JSON Schema calls such a case valid and the spec does not (it answers 422), so it is not valid
    data: it is left out of the positive cases rather than expected to be accepted. Negative
    cases are left alone.
    """
    body = case.body
    if case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(body, dict):
        return True
    operation = str(case.operation.definition.raw.get("operationId", ""))
    for field, (earliest, latest) in instant_ranges().get(operation, {}).items():
        value = body.get(field)
        if not isinstance(value, str) or _DATE_TIME.fullmatch(value) is None:
            continue  # not a date-time at all: schemathesis's own business
        instant = _instant(value)
        if instant is None or not earliest <= instant <= latest:
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
