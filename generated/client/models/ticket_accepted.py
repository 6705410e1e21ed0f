from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.ticket_status import TicketStatus

T = TypeVar("T", bound="TicketAccepted")


@_attrs_define
class TicketAccepted:
    """
    Attributes:
        ticket_id (UUID): The CRM's id of the ticket; the TMA stores it as the ticket's external id.
        external_ticket_id (UUID): The TMA's id of the ticket, echoed.
        message_id (UUID): The CRM's id of the first message.
        status (TicketStatus): The ticket's lifecycle state, the same on both sides.
    """

    ticket_id: UUID
    external_ticket_id: UUID
    message_id: UUID
    status: TicketStatus
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        ticket_id = str(self.ticket_id)

        external_ticket_id = str(self.external_ticket_id)

        message_id = str(self.message_id)

        status = self.status.value

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "ticket_id": ticket_id,
                "external_ticket_id": external_ticket_id,
                "message_id": message_id,
                "status": status,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        ticket_id = UUID(d.pop("ticket_id"))

        external_ticket_id = UUID(d.pop("external_ticket_id"))

        message_id = UUID(d.pop("message_id"))

        status = TicketStatus(d.pop("status"))

        ticket_accepted = cls(
            ticket_id=ticket_id,
            external_ticket_id=external_ticket_id,
            message_id=message_id,
            status=status,
        )

        ticket_accepted.additional_properties = d
        return ticket_accepted

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
