"""Contains all the data models used in inputs/outputs"""

from .attachment import Attachment
from .change_item import ChangeItem
from .change_kind import ChangeKind
from .change_page import ChangePage
from .create_ticket_request import CreateTicketRequest
from .customer import Customer
from .field_error import FieldError
from .message_accepted import MessageAccepted
from .message_request import MessageRequest
from .problem import Problem
from .sender_type import SenderType
from .status_accepted import StatusAccepted
from .status_request import StatusRequest
from .ticket_accepted import TicketAccepted
from .ticket_status import TicketStatus

__all__ = (
    "Attachment",
    "ChangeItem",
    "ChangeKind",
    "ChangePage",
    "CreateTicketRequest",
    "Customer",
    "FieldError",
    "MessageAccepted",
    "MessageRequest",
    "Problem",
    "SenderType",
    "StatusAccepted",
    "StatusRequest",
    "TicketAccepted",
    "TicketStatus",
)
