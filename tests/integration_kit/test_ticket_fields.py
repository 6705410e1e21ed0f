"""The one last-writer-wins rule and the one event of ticket fields (docs/design.md §3, §11).

Status is the first field; a second, test-only field (`priority`, not in the contract) goes
through the same declaration to show that nothing in the rule or the event is status's own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import AwareDatetime, BaseModel, TypeAdapter
from sqlalchemy import select

from integration_kit.outbound import STATUS, enqueue_field_event
from integration_kit.outbox import enqueue
from integration_kit.ticket_fields import STATUS as STATUS_FIELD
from integration_kit.ticket_fields import TicketField, wins
from tests.e2e.helpers import linked_ticket
from tests.integration_kit.outbox_rows import outbox_rows
from tests.support.pair import Pair
from tma_impl.tables import Ticket as TmaTicket

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


class PriorityRequest(BaseModel):
    """A test-only field's request, shaped as the contract shapes a field change."""

    ticket_id: uuid.UUID | None = None
    external_ticket_id: uuid.UUID
    priority: str
    changed_at: AwareDatetime


# Only the rule and the event are exercised: there is no operation to send it with.
PRIORITY = TicketField(name="priority", request=PriorityRequest, wire_request=None, answer=object)


@dataclass
class TicketStub:
    """The columns the rule reads and writes: a status pair and a test-only priority pair."""

    id: uuid.UUID
    status: str
    status_changed_at: datetime
    updated_at: datetime
    priority: str | None = None
    priority_changed_at: datetime | None = None


@pytest.mark.parametrize(
    ("incoming", "held", "expected"),
    [
        pytest.param(T0 + SECOND, T0, True, id="newer wins"),
        pytest.param(T0 - SECOND, T0, False, id="older loses"),
        pytest.param(T0, T0, False, id="equal keeps the value held"),
        pytest.param(T0 + timedelta(microseconds=1), T0, True, id="a microsecond newer wins"),
        pytest.param(T0, None, True, id="nothing held: any change wins"),
    ],
)
def test_last_writer_wins(incoming: datetime, held: datetime | None, expected: bool) -> None:
    assert wins(incoming, over=held) is expected


@pytest.mark.parametrize(
    ("changed_at", "applied"),
    [
        pytest.param(T0 + SECOND, True, id="newer"),
        pytest.param(T0 - SECOND, False, id="older"),
        pytest.param(T0, False, id="equal"),
    ],
)
def test_status_is_applied_by_the_rule(changed_at: datetime, applied: bool) -> None:
    ticket = TicketStub(id=uuid.uuid4(), status="open", status_changed_at=T0, updated_at=T0)
    assert STATUS_FIELD.apply(ticket, "closed", changed_at) is applied
    if applied:
        assert (ticket.status, ticket.status_changed_at, ticket.updated_at) == (
            "closed",
            changed_at,
            changed_at,
        )
    else:
        assert (ticket.status, ticket.status_changed_at, ticket.updated_at) == ("open", T0, T0)


def test_a_change_never_moves_updated_at_back() -> None:
    # A ticket touched by a later message than the status change it now receives.
    later = T0 + 10 * SECOND
    ticket = TicketStub(id=uuid.uuid4(), status="open", status_changed_at=T0, updated_at=later)
    assert STATUS_FIELD.apply(ticket, "closed", T0 + SECOND)
    assert ticket.updated_at == later


def test_a_second_field_follows_the_same_rule_and_leaves_status_alone() -> None:
    ticket = TicketStub(id=uuid.uuid4(), status="open", status_changed_at=T0, updated_at=T0)
    # Never set (a field added to tickets that existed before it): the first change wins, even
    # one older than the ticket's last update.
    assert PRIORITY.apply(ticket, "high", T0 - SECOND)
    assert PRIORITY.apply(ticket, "low", T0 - SECOND) is False
    assert PRIORITY.apply(ticket, "low", T0 + SECOND)
    assert (ticket.priority, ticket.priority_changed_at) == ("low", T0 + SECOND)
    assert (ticket.status, ticket.status_changed_at) == ("open", T0)
    request = PRIORITY.change_request(ticket)
    assert PRIORITY.value_of(request) == "low"
    assert request.model_dump(mode="json") == {
        "ticket_id": None,
        "external_ticket_id": str(ticket.id),
        "priority": "low",
        "changed_at": "2026-12-01T10:00:01Z",
    }


def _iso(at: datetime) -> Any:
    return TypeAdapter(AwareDatetime).dump_python(at, mode="json")


async def test_the_event_of_any_field_has_the_kind_and_payload_status_events_always_had(
    pair: Pair,
) -> None:
    """Status events keep their kind and wire format (rows written before the upgrade and after
    it are alike), and a second field's event has the same shape under its own kind."""
    linked = await linked_ticket(pair)
    runtime = pair.tma_runtime
    at = T0 + 5 * SECOND
    # Written and looked at, never committed: the priority has no sender to deliver it.
    async with runtime.db.sessions() as session:
        ticket = await session.scalar(
            select(TmaTicket).where(TmaTicket.id == uuid.UUID(linked.tma_id))
        )
        assert ticket is not None
        ticket.status, ticket.status_changed_at = "closed", at
        enqueue_field_event(session, runtime.outbox.model, STATUS_FIELD, ticket=ticket, now=at)
        stub = TicketStub(
            id=ticket.id,
            status="closed",
            status_changed_at=at,
            updated_at=at,
            priority="high",
            priority_changed_at=at,
        )
        enqueue_field_event(session, runtime.outbox.model, PRIORITY, ticket=stub, now=at)
        written = {r.kind: r.payload for r in session.new if isinstance(r, runtime.outbox.model)}
    assert STATUS == "status"
    # The payload the status sender wrote before it was generic (StatusRequest, as JSON).
    assert written == {
        STATUS: {
            "request": {
                "external_ticket_id": linked.tma_id,
                "status": "closed",
                "changed_at": _iso(at),
            }
        },
        "priority": {
            "request": {
                "external_ticket_id": linked.tma_id,
                "priority": "high",
                "changed_at": _iso(at),
            }
        },
    }


async def test_a_status_event_written_before_the_upgrade_is_delivered(pair: Pair) -> None:
    """An outbox row as the status sender wrote it before the generic one replaced it, still
    pending at the upgrade, is sent by the generic sender and applied by the peer."""
    linked = await linked_ticket(pair)
    runtime = pair.tma_runtime
    at = pair.clock.now() + SECOND
    async with runtime.db.transaction() as session:
        enqueue(
            session,
            runtime.outbox.model,
            ticket_id=uuid.UUID(linked.tma_id),
            kind="status",
            now=pair.clock.now(),
            payload={
                "request": {
                    "external_ticket_id": linked.tma_id,
                    "status": "closed",
                    "changed_at": _iso(at),
                }
            },
        )
    await pair.sync()
    assert [row.state for row in await outbox_rows(runtime, kind="status")] == ["delivered"]
    crm_ticket = await pair.crm_ticket_for(linked.tma_id)
    assert (crm_ticket["status"], crm_ticket["status_changed_at"]) == ("closed", _iso(at))
