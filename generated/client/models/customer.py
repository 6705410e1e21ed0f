from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="Customer")


@_attrs_define
class Customer:
    """The Telegram user who opened the ticket.

    Attributes:
        telegram_user_id (int):
        first_name (str):
        last_name (str | Unset):
        username (str | Unset):
        language_code (str | Unset):
    """

    telegram_user_id: int
    first_name: str
    last_name: str | Unset = UNSET
    username: str | Unset = UNSET
    language_code: str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        telegram_user_id = self.telegram_user_id

        first_name = self.first_name

        last_name = self.last_name

        username = self.username

        language_code = self.language_code

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "telegram_user_id": telegram_user_id,
                "first_name": first_name,
            }
        )
        if last_name is not UNSET:
            field_dict["last_name"] = last_name
        if username is not UNSET:
            field_dict["username"] = username
        if language_code is not UNSET:
            field_dict["language_code"] = language_code

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        telegram_user_id = d.pop("telegram_user_id")

        first_name = d.pop("first_name")

        last_name = d.pop("last_name", UNSET)

        username = d.pop("username", UNSET)

        language_code = d.pop("language_code", UNSET)

        customer = cls(
            telegram_user_id=telegram_user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
        )

        customer.additional_properties = d
        return customer

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
