from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="Attachment")


@_attrs_define
class Attachment:
    """Metadata of a file; the integration never fetches it. The URL is https and never a Telegram
    file URL (those embed the bot token).

        Attributes:
            url (str):
            file_name (str):
            mime_type (str):
            size (int): Declared size in bytes, at most 20 MB.
    """

    url: str
    file_name: str
    mime_type: str
    size: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        url = self.url

        file_name = self.file_name

        mime_type = self.mime_type

        size = self.size

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "url": url,
                "file_name": file_name,
                "mime_type": mime_type,
                "size": size,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        d = dict(src_dict)
        url = d.pop("url")

        file_name = d.pop("file_name")

        mime_type = d.pop("mime_type")

        size = d.pop("size")

        attachment = cls(
            url=url,
            file_name=file_name,
            mime_type=mime_type,
            size=size,
        )

        attachment.additional_properties = d
        return attachment

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
