from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Self, TypeVar
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.ticket_status import TicketStatus

T = TypeVar("T", bound="StatusAccepted")


@_attrs_define
class StatusAccepted:
    """
    Attributes:
        ticket_id (UUID): The receiver's id of the ticket.
        status (TicketStatus): The ticket's lifecycle state, the same on both sides.
        status_changed_at (datetime.datetime): The `changed_at` of the status the receiver now holds.
        applied (bool): False when the change was older than or equal to the one already applied.
    """

    ticket_id: UUID
    status: TicketStatus
    status_changed_at: datetime.datetime
    applied: bool
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        ticket_id = str(self.ticket_id)

        status = self.status.value

        status_changed_at = self.status_changed_at.isoformat()

        applied = self.applied

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "ticket_id": ticket_id,
                "status": status,
                "status_changed_at": status_changed_at,
                "applied": applied,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        ticket_id = UUID(d.pop("ticket_id"))

        status = TicketStatus(d.pop("status"))

        status_changed_at = datetime.datetime.fromisoformat(d.pop("status_changed_at"))

        applied = d.pop("applied")

        status_accepted = cls(
            ticket_id=ticket_id,
            status=status,
            status_changed_at=status_changed_at,
            applied=applied,
        )

        status_accepted.additional_properties = d
        return status_accepted

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
