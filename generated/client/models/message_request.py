from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.sender_type import SenderType
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.attachment import Attachment


T = TypeVar("T", bound="MessageRequest")


@_attrs_define
class MessageRequest:
    """One message of a ticket, written on the sending side.

    Attributes:
        external_ticket_id (UUID): The sender's id of the ticket.
        external_message_id (UUID): The sender's id of the message; with `sender`, the idempotency key.
        sender (SenderType): Which side wrote a message.
        message (str):
        created_at (datetime.datetime):
        ticket_id (UUID | Unset): The receiver's id of the ticket, when the sender knows it.
        attachments (list[Attachment] | Unset):
        operator_name (str | Unset): Display name of the operator who wrote a CRM reply.
    """

    external_ticket_id: UUID
    external_message_id: UUID
    sender: SenderType
    message: str
    created_at: datetime.datetime
    ticket_id: UUID | Unset = UNSET
    attachments: list[Attachment] | Unset = UNSET
    operator_name: str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        external_ticket_id = str(self.external_ticket_id)

        external_message_id = str(self.external_message_id)

        sender = self.sender.value

        message = self.message

        created_at = self.created_at.isoformat()

        ticket_id: str | Unset = UNSET
        if not isinstance(self.ticket_id, Unset):
            ticket_id = str(self.ticket_id)

        attachments: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.attachments, Unset):
            attachments = []
            for componentsschemas_attachments_item_data in self.attachments:
                componentsschemas_attachments_item = (
                    componentsschemas_attachments_item_data.to_dict()
                )
                attachments.append(componentsschemas_attachments_item)

        operator_name = self.operator_name

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "external_ticket_id": external_ticket_id,
                "external_message_id": external_message_id,
                "sender": sender,
                "message": message,
                "created_at": created_at,
            }
        )
        if ticket_id is not UNSET:
            field_dict["ticket_id"] = ticket_id
        if attachments is not UNSET:
            field_dict["attachments"] = attachments
        if operator_name is not UNSET:
            field_dict["operator_name"] = operator_name

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.attachment import Attachment

        d = dict(src_dict)
        external_ticket_id = UUID(d.pop("external_ticket_id"))

        external_message_id = UUID(d.pop("external_message_id"))

        sender = SenderType(d.pop("sender"))

        message = d.pop("message")

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        _ticket_id = d.pop("ticket_id", UNSET)
        ticket_id: UUID | Unset
        if isinstance(_ticket_id, Unset):
            ticket_id = UNSET
        else:
            ticket_id = UUID(_ticket_id)

        _attachments = d.pop("attachments", UNSET)
        attachments: list[Attachment] | Unset = UNSET
        if _attachments is not UNSET:
            attachments = []
            for componentsschemas_attachments_item_data in _attachments:
                componentsschemas_attachments_item = Attachment.from_dict(
                    componentsschemas_attachments_item_data
                )

                attachments.append(componentsschemas_attachments_item)

        operator_name = d.pop("operator_name", UNSET)

        message_request = cls(
            external_ticket_id=external_ticket_id,
            external_message_id=external_message_id,
            sender=sender,
            message=message,
            created_at=created_at,
            ticket_id=ticket_id,
            attachments=attachments,
            operator_name=operator_name,
        )

        message_request.additional_properties = d
        return message_request

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
