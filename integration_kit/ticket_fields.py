"""Ticket fields whose every change carries its own `changed_at` (docs/design.md §3, §11).

Both sides hold such a field and change it; each side keeps, beside the value, the `changed_at`
of the value in force, and a change from the peer (live or through reconcile) is applied by one
rule: last writer wins. `status` is the first such field. A new one is a `TicketField`
declaration, a column pair on the tickets, and a request in the contract: the rule, the outbox
event and its sender are the ones here and in `integration_kit.outbound`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from pydantic import BaseModel

from generated import models
from generated.client import models as client_models
from integration_kit.schema import TicketColumns


class FieldChange(Protocol):
    """What every ticket field's request carries besides its value (the contract's shape)."""

    @property
    def ticket_id(self) -> uuid.UUID | None: ...

    @property
    def external_ticket_id(self) -> uuid.UUID: ...

    @property
    def changed_at(self) -> datetime: ...


def wins(changed_at: datetime, *, over: datetime | None) -> bool:
    """Last writer wins: a change wins over the value held when it is strictly newer.

    An equal `changed_at` keeps the value held, so a replay, or the echo of our own change,
    changes nothing, and both sides keep the same value whichever of two equal changes came
    first. A value never set (no `changed_at` held: a field added to tickets that existed
    before it) loses to any change.
    """
    return over is None or changed_at > over


@dataclass(frozen=True)
class TicketField:
    """A ticket field both sides change, with the contract's shapes of its change.

    `name` is the tickets' value column, the request's value field and the outbox event kind;
    `<name>_changed_at` is the column of the value's `changed_at`. `request` is the contract's
    request (generated.models: written into the outbox by the strict writer); `wire_request`
    and `answer` are the generated client's request and answer of the operation that carries
    it, whose answer names the receiver's `ticket_id`.
    """

    name: str
    request: type[BaseModel]
    wire_request: Any
    answer: type[Any]

    @property
    def changed_at_column(self) -> str:
        return f"{self.name}_changed_at"

    def held_at(self, ticket: TicketColumns) -> datetime | None:
        """The `changed_at` of the value this ticket holds."""
        at: datetime | None = getattr(ticket, self.changed_at_column)
        return at

    def value_of(self, request: FieldChange) -> Any:
        """The request's value as the column stores it (an enum by its value)."""
        value = getattr(request, self.name)
        return value.value if isinstance(value, Enum) else value

    def apply(self, ticket: TicketColumns, value: Any, changed_at: datetime) -> bool:
        """Apply a change from the peer if it wins (`wins`); an older or equal change is
        acknowledged and ignored. Returns whether it was applied."""
        if not wins(changed_at, over=self.held_at(ticket)):
            return False
        setattr(ticket, self.name, value)
        setattr(ticket, self.changed_at_column, changed_at)
        if changed_at > ticket.updated_at:
            ticket.updated_at = changed_at
        return True

    def change_request(self, ticket: TicketColumns) -> BaseModel:
        """The contract's request announcing the value this ticket holds now."""
        return self.request.model_validate(
            {
                "external_ticket_id": ticket.id,
                self.name: getattr(ticket, self.name),
                "changed_at": self.held_at(ticket),
            }
        )


STATUS = TicketField(
    name="status",
    request=models.StatusRequest,
    wire_request=client_models.StatusRequest,
    answer=client_models.StatusAccepted,
)
