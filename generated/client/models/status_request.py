from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Self, TypeVar
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.ticket_status import TicketStatus
from ..types import UNSET, Unset

T = TypeVar("T", bound="StatusRequest")


@_attrs_define
class StatusRequest:
    """A status change of a ticket made on the sending side.

    Attributes:
        external_ticket_id (UUID): The sender's id of the ticket.
        status (TicketStatus): The ticket's lifecycle state, the same on both sides.
        changed_at (datetime.datetime): When the sender applied the change; the later change wins.
        ticket_id (UUID | Unset): The receiver's id of the ticket, when the sender knows it.
    """

    external_ticket_id: UUID
    status: TicketStatus
    changed_at: datetime.datetime
    ticket_id: UUID | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        external_ticket_id = str(self.external_ticket_id)

        status = self.status.value

        changed_at = self.changed_at.isoformat()

        ticket_id: str | Unset = UNSET
        if not isinstance(self.ticket_id, Unset):
            ticket_id = str(self.ticket_id)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "external_ticket_id": external_ticket_id,
                "status": status,
                "changed_at": changed_at,
            }
        )
        if ticket_id is not UNSET:
            field_dict["ticket_id"] = ticket_id

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        external_ticket_id = UUID(d.pop("external_ticket_id"))

        status = TicketStatus(d.pop("status"))

        changed_at = datetime.datetime.fromisoformat(d.pop("changed_at"))

        _ticket_id = d.pop("ticket_id", UNSET)
        ticket_id: UUID | Unset
        if isinstance(_ticket_id, Unset):
            ticket_id = UNSET
        else:
            ticket_id = UUID(_ticket_id)

        status_request = cls(
            external_ticket_id=external_ticket_id,
            status=status,
            changed_at=changed_at,
            ticket_id=ticket_id,
        )

        status_request.additional_properties = d
        return status_request

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
