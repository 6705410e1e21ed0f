from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.attachment import Attachment
    from ..models.customer import Customer


T = TypeVar("T", bound="CreateTicketRequest")


@_attrs_define
class CreateTicketRequest:
    """A ticket opened in the Mini App, with its first message.

    Attributes:
        external_ticket_id (UUID): The TMA's id of the ticket; the idempotency key of this operation.
        subject (str):
        message (str): Body of the first message.
        external_message_id (UUID): The TMA's id of the first message.
        customer (Customer): The Telegram user who opened the ticket.
        created_at (datetime.datetime):
        attachments (list[Attachment] | Unset):
    """

    external_ticket_id: UUID
    subject: str
    message: str
    external_message_id: UUID
    customer: Customer
    created_at: datetime.datetime
    attachments: list[Attachment] | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        external_ticket_id = str(self.external_ticket_id)

        subject = self.subject

        message = self.message

        external_message_id = str(self.external_message_id)

        customer = self.customer.to_dict()

        created_at = self.created_at.isoformat()

        attachments: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.attachments, Unset):
            attachments = []
            for componentsschemas_attachments_item_data in self.attachments:
                componentsschemas_attachments_item = (
                    componentsschemas_attachments_item_data.to_dict()
                )
                attachments.append(componentsschemas_attachments_item)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "external_ticket_id": external_ticket_id,
                "subject": subject,
                "message": message,
                "external_message_id": external_message_id,
                "customer": customer,
                "created_at": created_at,
            }
        )
        if attachments is not UNSET:
            field_dict["attachments"] = attachments

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.attachment import Attachment
        from ..models.customer import Customer

        d = dict(src_dict)
        external_ticket_id = UUID(d.pop("external_ticket_id"))

        subject = d.pop("subject")

        message = d.pop("message")

        external_message_id = UUID(d.pop("external_message_id"))

        customer = Customer.from_dict(d.pop("customer"))

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        _attachments = d.pop("attachments", UNSET)
        attachments: list[Attachment] | Unset = UNSET
        if _attachments is not UNSET:
            attachments = []
            for componentsschemas_attachments_item_data in _attachments:
                componentsschemas_attachments_item = Attachment.from_dict(
                    componentsschemas_attachments_item_data
                )

                attachments.append(componentsschemas_attachments_item)

        create_ticket_request = cls(
            external_ticket_id=external_ticket_id,
            subject=subject,
            message=message,
            external_message_id=external_message_id,
            customer=customer,
            created_at=created_at,
            attachments=attachments,
        )

        create_ticket_request.additional_properties = d
        return create_ticket_request

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
