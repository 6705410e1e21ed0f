"""The CRM's side of the cut-over commands: what `link` needs to know of it."""

from __future__ import annotations

from typing import Any

from crm_impl.legacy import UNKNOWN_CUSTOMER_ID, UNKNOWN_CUSTOMER_NAME, peer_ticket_id
from crm_impl.tables import Message, Ticket
from integration_kit.link import LinkSide
from integration_kit.schema import TicketColumns


def _fill_customer(ticket: TicketColumns, customer: dict[str, Any]) -> None:
    """A converted ticket's placeholder customer becomes the TMA's Telegram user."""
    if not isinstance(ticket, Ticket):  # LINK below is the CRM's: a wiring mistake otherwise
        raise TypeError(f"expected a CRM ticket, got {type(ticket).__name__}")
    if ticket.customer_telegram_id != UNKNOWN_CUSTOMER_ID:
        return
    ticket.customer_telegram_id = customer["telegram_user_id"]
    ticket.customer_first_name = (customer.get("first_name") or UNKNOWN_CUSTOMER_NAME)[:64]
    ticket.customer_last_name = customer.get("last_name")
    ticket.customer_username = customer.get("username")
    ticket.customer_language = customer.get("language_code")


LINK = LinkSide(
    name="crm",
    ticket_model=Ticket,
    message_model=Message,
    legacy_peer_id=peer_ticket_id,
    fill_customer=_fill_customer,
)
