"""Every assumption about the old CRM, in one place (docs/cutover.md explains each).

The audit describes the old CRM's API, not its database. Where it is silent this package decides,
so a team whose old schema differs changes this package and nothing else:

- `tickets`: `id` UUID. The old CRM took the `ticket_id` the TMA sent with
  `POST /api/v1/support/ticket` as its own ticket's id (the audit: it stored no `external_id`, yet
  its webhooks named the TMA's ticket): a ticket that came from the TMA has the TMA's UUID here.
  `subject` TEXT (unbounded), `status`, `project`, `external_url`, `created_at`, `updated_at`
  (timestamps with time zone, UTC). No customer columns: the old body had none, so a converted
  ticket has customer 0 / "-" until `link` copies the Telegram user from the TMA.
- `messages`: `id` UUID, `ticket_id`, `sender` (`local` = an operator's reply written here; `crm` =
  what arrived through the old integration route, i.e. from the TMA: the old code named the route,
  not the side), `message` TEXT, `attachments` JSON, `created_at`. No operator table: old replies
  have no author.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import Uuid

from integration_kit.legacy import LegacyLayout, LegacySide

HERE = Path(__file__).parent

LAYOUT = LegacyLayout(
    ticket_subject="subject",
    message_id=Uuid(),
    message_body="message",
    # "local" meant "this side": an operator in the CRM. The same word maps differently on the TMA.
    senders={"local": "crm", "crm": "tma"},
)
UNKNOWN_CUSTOMER_ID = 0  # until `link` copies the ticket's Telegram user from the TMA
UNKNOWN_CUSTOMER_NAME = "-"

SIDE = LegacySide(
    name="crm",
    migrations=HERE / "migrations",
    main_migrations=HERE.parent / "migrations",
    baseline="crm_legacy",
    layout=LAYOUT,
)


def peer_ticket_id(ticket_id: uuid.UUID) -> uuid.UUID:
    """The old TMA's id of a ticket that came from it: the same UUID, the old CRM took it."""
    return ticket_id
