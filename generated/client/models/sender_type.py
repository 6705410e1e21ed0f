from enum import StrEnum


class SenderType(StrEnum):
    CRM = "crm"
    TMA = "tma"

    def __str__(self) -> str:
        return str(self.value)
