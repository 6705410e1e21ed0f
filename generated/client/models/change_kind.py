from enum import StrEnum


class ChangeKind(StrEnum):
    MESSAGE = "message"
    STATUS = "status"
    TICKET = "ticket"

    def __str__(self) -> str:
        return str(self.value)
