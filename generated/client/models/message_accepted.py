from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="MessageAccepted")


@_attrs_define
class MessageAccepted:
    """
    Attributes:
        message_id (UUID): The receiver's id of the message; the sender stores it as its external id.
        ticket_id (UUID): The receiver's id of the ticket.
        external_message_id (UUID): The sender's id of the message, echoed.
    """

    message_id: UUID
    ticket_id: UUID
    external_message_id: UUID
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        message_id = str(self.message_id)

        ticket_id = str(self.ticket_id)

        external_message_id = str(self.external_message_id)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "message_id": message_id,
                "ticket_id": ticket_id,
                "external_message_id": external_message_id,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        message_id = UUID(d.pop("message_id"))

        ticket_id = UUID(d.pop("ticket_id"))

        external_message_id = UUID(d.pop("external_message_id"))

        message_accepted = cls(
            message_id=message_id,
            ticket_id=ticket_id,
            external_message_id=external_message_id,
        )

        message_accepted.additional_properties = d
        return message_accepted

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
