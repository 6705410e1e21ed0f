from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.change_kind import ChangeKind
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.create_ticket_request import CreateTicketRequest
    from ..models.message_request import MessageRequest
    from ..models.status_request import StatusRequest


T = TypeVar("T", bound="ChangeItem")


@_attrs_define
class ChangeItem:
    """One change this side holds. `ticket` for a ticket (with its first message), `message` for
    a message written on either side, `status` for a status change applied here (by this
    side or received from the peer). The request shapes are filled as this side would send
    them: `external_ticket_id` and `external_message_id` are this side's ids, `ticket_id`
    the reader's id of the ticket when known, and `sender` who wrote the message.

        Attributes:
            kind (ChangeKind): What a change-feed item carries.
            position (str): The cursor that reads on after this item.
            ticket (CreateTicketRequest | Unset): A ticket opened in the Mini App, with its first message.
            peer_ticket_id (UUID | Unset): The reader's id of the ticket, when this side knows it.
            message (MessageRequest | Unset): One message of a ticket, written on the sending side.
            peer_message_id (UUID | Unset): The reader's id of the message, when this side knows it.
            status (StatusRequest | Unset): A status change of a ticket made on the sending side.
    """

    kind: ChangeKind
    position: str
    ticket: CreateTicketRequest | Unset = UNSET
    peer_ticket_id: UUID | Unset = UNSET
    message: MessageRequest | Unset = UNSET
    peer_message_id: UUID | Unset = UNSET
    status: StatusRequest | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        kind = self.kind.value

        position = self.position

        ticket: dict[str, Any] | Unset = UNSET
        if not isinstance(self.ticket, Unset):
            ticket = self.ticket.to_dict()

        peer_ticket_id: str | Unset = UNSET
        if not isinstance(self.peer_ticket_id, Unset):
            peer_ticket_id = str(self.peer_ticket_id)

        message: dict[str, Any] | Unset = UNSET
        if not isinstance(self.message, Unset):
            message = self.message.to_dict()

        peer_message_id: str | Unset = UNSET
        if not isinstance(self.peer_message_id, Unset):
            peer_message_id = str(self.peer_message_id)

        status: dict[str, Any] | Unset = UNSET
        if not isinstance(self.status, Unset):
            status = self.status.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "kind": kind,
                "position": position,
            }
        )
        if ticket is not UNSET:
            field_dict["ticket"] = ticket
        if peer_ticket_id is not UNSET:
            field_dict["peer_ticket_id"] = peer_ticket_id
        if message is not UNSET:
            field_dict["message"] = message
        if peer_message_id is not UNSET:
            field_dict["peer_message_id"] = peer_message_id
        if status is not UNSET:
            field_dict["status"] = status

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.create_ticket_request import CreateTicketRequest
        from ..models.message_request import MessageRequest
        from ..models.status_request import StatusRequest

        d = dict(src_dict)
        kind = ChangeKind(d.pop("kind"))

        position = d.pop("position")

        _ticket = d.pop("ticket", UNSET)
        ticket: CreateTicketRequest | Unset
        if isinstance(_ticket, Unset):
            ticket = UNSET
        else:
            ticket = CreateTicketRequest.from_dict(_ticket)

        _peer_ticket_id = d.pop("peer_ticket_id", UNSET)
        peer_ticket_id: UUID | Unset
        if isinstance(_peer_ticket_id, Unset):
            peer_ticket_id = UNSET
        else:
            peer_ticket_id = UUID(_peer_ticket_id)

        _message = d.pop("message", UNSET)
        message: MessageRequest | Unset
        if isinstance(_message, Unset):
            message = UNSET
        else:
            message = MessageRequest.from_dict(_message)

        _peer_message_id = d.pop("peer_message_id", UNSET)
        peer_message_id: UUID | Unset
        if isinstance(_peer_message_id, Unset):
            peer_message_id = UNSET
        else:
            peer_message_id = UUID(_peer_message_id)

        _status = d.pop("status", UNSET)
        status: StatusRequest | Unset
        if isinstance(_status, Unset):
            status = UNSET
        else:
            status = StatusRequest.from_dict(_status)

        change_item = cls(
            kind=kind,
            position=position,
            ticket=ticket,
            peer_ticket_id=peer_ticket_id,
            message=message,
            peer_message_id=peer_message_id,
            status=status,
        )

        change_item.additional_properties = d
        return change_item

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
